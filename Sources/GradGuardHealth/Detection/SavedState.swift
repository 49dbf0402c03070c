/// Named lists of numbers: the form in which clippers, detectors and monitors keep their state
/// in checkpoints (`guardState.clipper`, `guardState.monitor`, `guardState.clipRate`).
public typealias SavedNumbers = [String: [Double]]

/// A component's state as one typed value (a detector's histories, a clipper's statistics),
/// saved as named lists of numbers: every field is declared once with its key (`fields`), and
/// writing and reading back are the same for all (`saved`, `read`).
public protocol SavedState: Sendable {
    static var fields: [SavedField<Self>] { get }
}

/// One field of a `SavedState`: its key and how its value is written as lists of numbers and
/// read back (a field the saved state lacks takes its default).
public struct SavedField<Root>: @unchecked Sendable {  // pure closures over key paths into a value type: immutable
    let key: String
    let write: (Root, inout SavedNumbers) -> Void
    let read: (inout Root, SavedNumbers) -> Void

    /// A list of numbers saved as it is.
    public static func numbers(_ key: String, _ path: WritableKeyPath<Root, [Double]>) -> SavedField {
        SavedField(key: key, write: { $1[key] = $0[keyPath: path] }, read: { $0[keyPath: path] = $1[key] ?? [] })
    }
    /// A bounded window of values (it keeps its capacity).
    static func window(_ key: String, _ path: WritableKeyPath<Root, Window>) -> SavedField {
        SavedField(key: key, write: { $1[key] = $0[keyPath: path].values }, read: { $0[keyPath: path].values = $1[key] ?? [] })
    }
    /// A number saved as a list of one (`d` when absent).
    public static func number(_ key: String, _ path: WritableKeyPath<Root, Double>, default d: Double = 0) -> SavedField {
        SavedField(key: key, write: { $1[key] = [$0[keyPath: path]] }, read: { $0[keyPath: path] = $1[key]?.first ?? d })
    }
    /// A value or none: `[x]`, or for none `[]` (`omitWhenNil`: no key at all).
    public static func optional(_ key: String, _ path: WritableKeyPath<Root, Double?>, omitWhenNil: Bool = false) -> SavedField {
        SavedField(
            key: key,
            write: { state, out in
                if let v = state[keyPath: path] { out[key] = [v] } else if !omitWhenNil { out[key] = [] }
            }, read: { $0[keyPath: path] = $1[key]?.first })
    }
    /// A whole number saved as a list of one (`d` when absent or not whole).
    public static func whole(_ key: String, _ path: WritableKeyPath<Root, Int>, default d: Int = 0) -> SavedField {
        SavedField(
            key: key, write: { $1[key] = [Double($0[keyPath: path])] }, read: { $0[keyPath: path] = $1[key]?.first.flatMap(Int.init(savedValue:)) ?? d })
    }
    /// A flag saved as 0 or 1 (`d` when absent).
    public static func flag(_ key: String, _ path: WritableKeyPath<Root, Bool>, default d: Bool = false) -> SavedField {
        SavedField(key: key, write: { $1[key] = [$0[keyPath: path] ? 1 : 0] }, read: { $0[keyPath: path] = $1[key]?.first.map { $0 != 0 } ?? d })
    }
    /// Flags saved as 0s and 1s.
    public static func flags(_ key: String, _ path: WritableKeyPath<Root, [Bool]>) -> SavedField {
        SavedField(key: key, write: { $1[key] = $0[keyPath: path].map { $0 ? 1 : 0 } }, read: { $0[keyPath: path] = ($1[key] ?? []).map { $0 != 0 } })
    }
    /// A record per name, under `key.name`; a saved record that does not read is left out.
    public static func table<R: SavedRecord>(_ key: String, _ path: WritableKeyPath<Root, [String: R]>) -> SavedField {
        named(key, path, write: \.numbers, read: { _, v in R(numbers: v) })
    }
    /// A bounded window per name, under `key.name`, each of `capacity` values.
    static func windows(_ key: String, _ path: WritableKeyPath<Root, [String: Window]>, capacity: KeyPath<Root, Int>) -> SavedField {
        named(
            key, path, write: \.values,
            read: { root, v in
                var w = Window(root[keyPath: capacity])
                w.values = v
                return w
            })
    }
    /// A value per name under `key.name`, each written as a list of numbers and read back
    /// (nil: left out).
    private static func named<V>(
        _ key: String, _ path: WritableKeyPath<Root, [String: V]>, write: @escaping (V) -> [Double], read: @escaping (Root, [Double]) -> V?
    ) -> SavedField {
        let prefix = key + "."
        return SavedField(
            key: key,
            write: { state, out in for (name, v) in state[keyPath: path] { out[prefix + name] = write(v) } },
            read: { state, saved in
                var table: [String: V] = [:]
                for (k, v) in saved where k.hasPrefix(prefix) { if let value = read(state, v) { table[String(k.dropFirst(prefix.count))] = value } }
                state[keyPath: path] = table
            })
    }
}

/// A small record saved as one list of numbers (a module's departure: [step, ratio]).
public protocol SavedRecord {
    init?(numbers: [Double])
    var numbers: [Double] { get }
}

/// One number is saved as a list of one.
extension Double: SavedRecord {
    /// The one number of a list of one.
    public init?(numbers: [Double]) {
        guard numbers.count == 1 else { return nil }
        self = numbers[0]
    }
    /// The number as a list of one.
    public var numbers: [Double] { [self] }
}

extension SavedState {
    /// The state as named lists of numbers.
    public var saved: SavedNumbers {
        var out: SavedNumbers = [:]
        for f in Self.fields { f.write(self, &out) }
        return out
    }

    /// Reads `saved` back into this state; a field `saved` lacks takes its default, and a
    /// window keeps its capacity.
    public mutating func read(_ saved: SavedNumbers) {
        for f in Self.fields { f.read(&self, saved) }
    }
}
