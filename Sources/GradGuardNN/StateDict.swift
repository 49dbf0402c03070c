import GradGuardTensor

/// What `load(stateDict:strict:)` found wrong.
public enum StateDictError: Error, CustomStringConvertible, Equatable {
    /// Keys the model has but the state dict lacks, and keys it has that the model does not.
    case keyMismatch(missing: [String], unexpected: [String])
    /// A key whose stored shape differs from the model's.
    case shapeMismatch(key: String, expected: [Int], found: [Int])

    /// The mismatched keys or shapes, named.
    public var description: String {
        switch self {
        case let .keyMismatch(missing, unexpected):
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing keys: \(missing.joined(separator: ", "))") }
            if !unexpected.isEmpty { parts.append("unexpected keys: \(unexpected.joined(separator: ", "))") }
            return "state dict does not match the model: " + parts.joined(separator: "; ")
        case let .shapeMismatch(key, expected, found):
            return "state dict key '\(key)': the model expects shape \(expected), the file has \(found)"
        }
    }
}

/// The keys a non-strict load skipped.
public struct LoadReport: Equatable, Sendable {
    /// The model's keys the state dict lacked (left as they were).
    public let missingKeys: [String]
    /// The state dict's keys the model does not have (ignored).
    public let unexpectedKeys: [String]
}

extension Module {
    /// Parameters and buffers by dotted name (values shared, not copied).
    public func stateDict() -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (n, t) in namedParameters() { out[n] = t }
        for (n, t) in namedBuffers() { out[n] = t }
        return out
    }

    /// Names of parameters and buffers, in registration order.
    public func stateDictKeys() -> [String] { namedParameters().map(\.name) + namedBuffers().map(\.name) }

    /// Copies values from `stateDict` into this model's parameters and buffers.
    ///
    /// Shapes are checked for every key before any value is copied, so a failed load leaves
    /// the model unchanged. With `strict` (the default), any missing or unexpected key is an
    /// error; otherwise they are returned in the report.
    @discardableResult
    public func load(stateDict: [String: Tensor], strict: Bool = true) throws -> LoadReport {
        var own: [(String, Tensor)] = namedParameters().map { ($0.name, $0.tensor) }
        own += namedBuffers().map { ($0.name, $0.tensor) }
        let ownKeys = Set(own.map(\.0))
        let missing = own.map(\.0).filter { stateDict[$0] == nil }
        let unexpected = stateDict.keys.filter { !ownKeys.contains($0) }.sorted()
        if strict && (!missing.isEmpty || !unexpected.isEmpty) {
            throw StateDictError.keyMismatch(missing: missing, unexpected: unexpected)
        }
        for (key, t) in own {
            if let src = stateDict[key], src.shape != t.shape {
                throw StateDictError.shapeMismatch(key: key, expected: t.shape, found: src.shape)
            }
        }
        for (key, t) in own {
            if let src = stateDict[key] { t.assign(src) }
        }
        return LoadReport(missingKeys: missing, unexpectedKeys: unexpected)
    }
}
