import GradGuardTensor

/// Declares the state-dict key of a parameter whose Swift name differs from PyTorch's.
///
/// ```swift
/// @ParameterInfo(key: "weight_ih_l0") var weightIH: Tensor
/// ```
@propertyWrapper
public struct ParameterInfo {
    public var wrappedValue: Tensor
    public let key: String
    public init(wrappedValue: Tensor, key: String) {
        self.wrappedValue = wrappedValue
        self.key = key
    }
}

/// A tensor that belongs to the module's state but is not trained (running statistics).
/// It appears in `stateDict()` and `namedBuffers()`, never in `parameters()`.
@propertyWrapper
public struct Buffer {
    public var wrappedValue: Tensor
    public let key: String?
    public init(wrappedValue: Tensor, key: String? = nil) {
        self.wrappedValue = wrappedValue
        self.key = key
    }
}

/// The base of every layer and model.
///
/// Parameters, buffers and sub-modules are found from stored properties: a `Tensor`
/// property is a parameter, a `@Buffer` property a buffer, a `Module` (or array of
/// modules) a child. Names follow PyTorch: dotted paths such as `encoder.fc.bias` and
/// `0.weight` for array elements. A property can carry another key with
/// `@ParameterInfo(key:)`.
open class Module {
    /// Training mode (dropout active, batch statistics used) or evaluation mode.
    public private(set) var training = true
    /// The dotted name of this module inside the model it was last run or named from
    /// (`""` for the root). Ops recorded while it runs carry this name.
    public internal(set) var path: String?

    public init() {}

    // MARK: Discovery (override for containers whose children are not stored properties)

    /// The direct sub-modules with their local names.
    open func namedChildren() -> [(name: String, module: Module)] {
        var out: [(String, Module)] = []
        for (label, value) in Module.storedProperties(of: self) {
            if let m = value as? Module {
                out.append((label, m))
            } else if let ms = value as? [Module] {
                for (i, m) in ms.enumerated() { out.append(("\(label).\(i)", m)) }
            }
        }
        return out
    }

    /// This module's own parameters (not its children's) with their local names.
    open func localParameters() -> [(name: String, tensor: Tensor)] {
        var out: [(String, Tensor)] = []
        for (label, value) in Module.storedProperties(of: self) {
            if let info = value as? ParameterInfo {
                out.append((info.key, info.wrappedValue))
            } else if let t = value as? Tensor {
                out.append((label, t))
            } else if let ts = value as? [Tensor] {
                for (i, t) in ts.enumerated() { out.append(("\(label).\(i)", t)) }
            }
        }
        return out
    }

    /// This module's own buffers with their local names.
    open func localBuffers() -> [(name: String, tensor: Tensor)] {
        Module.storedProperties(of: self).compactMap { label, value in
            (value as? Buffer).map { ($0.key ?? label, $0.wrappedValue) }
        }
    }

    /// Stored properties from the most-derived class up, skipping `Module`'s own, with
    /// the underscore of property wrappers removed.
    static func storedProperties(of object: Module) -> [(String, Any)] {
        var out: [(String, Any)] = []
        var mirror: Mirror? = Mirror(reflecting: object)
        var chain: [Mirror] = []
        while let m = mirror, m.subjectType != Module.self {
            chain.append(m)
            mirror = m.superclassMirror
        }
        for m in chain.reversed() {
            for child in m.children {
                guard var label = child.label else { continue }
                if label.hasPrefix("_") { label.removeFirst() }
                out.append((label, child.value))
            }
        }
        return out
    }

    // MARK: Traversal

    /// Every module in the tree, this one first, with dotted names.
    public func namedModules(prefix: String = "") -> [(name: String, module: Module)] {
        var out: [(String, Module)] = [(prefix, self)]
        for (name, child) in namedChildren() {
            out += child.namedModules(prefix: prefix.isEmpty ? name : "\(prefix).\(name)")
        }
        return out
    }

    /// Every trainable tensor with its dotted name, in registration order.
    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        namedModules().flatMap { prefix, m in
            m.localParameters().map { (prefix.isEmpty ? $0.name : "\(prefix).\($0.name)", $0.tensor) }
        }
    }

    /// Every trainable tensor.
    public func parameters() -> [Tensor] { namedParameters().map(\.tensor) }

    /// Every buffer with its dotted name.
    public func namedBuffers() -> [(name: String, tensor: Tensor)] {
        namedModules().flatMap { prefix, m in
            m.localBuffers().map { (prefix.isEmpty ? $0.name : "\(prefix).\($0.name)", $0.tensor) }
        }
    }

    /// Names every module of this tree with its dotted path (the root gets `""`) and
    /// labels parameters with their names. Called automatically on first use.
    public func assignNames() {
        for (name, m) in namedModules() {
            m.path = name
            for (pname, t) in m.localParameters() { t.name = name.isEmpty ? pname : "\(name).\(pname)" }
        }
    }

    /// Runs `body` with this module's name attached to every recorded op.
    public func scoped<R>(_ body: () throws -> R) rethrows -> R {
        if path == nil { assignNames() }
        return try Autograd.withModule(path ?? "", body)
    }

    // MARK: Modes

    /// Sets training mode on this module and all its descendants.
    public func train(_ mode: Bool = true) {
        for (_, m) in namedModules() { m.training = mode }
    }

    /// Sets evaluation mode (`train(false)`).
    public func eval() { train(false) }

    /// Runs `body` in evaluation mode without recording gradients, then restores the mode
    /// the module was in (decoding, sampling, evaluating inside a training loop).
    public func inferring<R>(_ body: () throws -> R) rethrows -> R {
        let wasTraining = training
        eval()
        defer { train(wasTraining) }
        return try withoutGrad(body)
    }

    /// Clears the gradient of every parameter.
    public func zeroGrad() {
        for p in parameters() { p.grad = nil }
    }
}

/// A module that maps one tensor to one tensor.
public protocol UnaryLayer: Module {
    func forward(_ x: Tensor) -> Tensor
}

extension UnaryLayer {
    /// Runs `forward` with this module's name attached to the ops it records.
    public func callAsFunction(_ x: Tensor) -> Tensor { scoped { forward(x) } }
}
