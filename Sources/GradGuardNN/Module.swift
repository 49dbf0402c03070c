import GradGuardTensor

/// Declares the state-dict key of a parameter whose Swift name differs from PyTorch's.
///
/// ```swift
/// @ParameterInfo(key: "weight_ih_l0") var weightIH: Tensor
/// ```
@propertyWrapper
public struct ParameterInfo {
    /// The parameter.
    public var wrappedValue: Tensor
    /// Its key in the state dict.
    public let key: String
    /// A parameter saved under `key`.
    public init(wrappedValue: Tensor, key: String) {
        self.wrappedValue = wrappedValue
        self.key = key
    }
}

/// A tensor that belongs to the module's state but is not trained (running statistics).
/// It appears in `stateDict()` and `namedBuffers()`, never in `parameters()`.
@propertyWrapper
public struct Buffer {
    /// The buffer.
    public var wrappedValue: Tensor
    /// Its key in the state dict (nil: the property's name).
    public let key: String?
    /// A buffer saved under `key`, or under the property's name.
    public init(wrappedValue: Tensor, key: String? = nil) {
        self.wrappedValue = wrappedValue
        self.key = key
    }
}

/// A tensor the module uses but neither trains nor saves: a fixed mask, a table of
/// positions, a scale. It never appears in `parameters()`, `stateDict()` or
/// `namedBuffers()` (PyTorch's `register_buffer(…, persistent: False)`).
///
/// ```swift
/// @Constant var causalMask: Tensor
/// ```
@propertyWrapper
public struct Constant {
    /// The tensor.
    public var wrappedValue: Tensor
    /// A tensor neither trained nor saved.
    public init(wrappedValue: Tensor) { self.wrappedValue = wrappedValue }
}

/// The base of every layer and model.
///
/// Parameters, buffers and sub-modules are found from stored properties, as MLX Swift
/// finds them:
///
/// | stored property | becomes |
/// |---|---|
/// | `Tensor`, `Tensor?`, `[Tensor]`, `[String: Tensor]` | parameters (trained, saved, guarded) |
/// | `@ParameterInfo(key:) var w: Tensor` | a parameter saved under another key |
/// | `@Buffer var stat: Tensor` | a buffer (saved, not trained) |
/// | `@Constant var mask: Tensor` | nothing (neither trained nor saved) |
/// | `Module`, `Module?`, `[Module]`, `[String: Module]` | children, named `child.weight`, `layers.0.weight`, `heads.key.weight` |
///
/// Anything else that holds a module or a tensor — a tuple, a `lazy var`, a nested array, a
/// struct, a set — is not seen: it would be neither trained nor saved nor guarded. Such a
/// property is reported once per model class and property, naming it
/// (`Module.discoveryWarnings`), as is a plain `Tensor` property that does not require
/// gradients (declare it `@Buffer` or `@Constant`, or `freeze()` the module). A container
/// whose children live elsewhere overrides `namedChildren()` (as `Sequential` does).
open class Module {
    /// Training mode (dropout active, batch statistics used) or evaluation mode.
    public private(set) var training = true
    /// The dotted name of this module inside the model it was last run or named from
    /// (`""` for the root). Ops recorded while it runs carry this name.
    public internal(set) var path: String?
    /// Whether `freeze()` stopped this module's own parameters from training.
    public private(set) var frozen = false

    /// A module in training mode, its parameters found from its stored properties.
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
            } else if let ms = value as? [String: Module] {
                // Sorted keys: a dictionary has no order of its own, and names must be stable.
                for key in ms.keys.sorted() { out.append(("\(label).\(key)", ms[key]!)) }
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
            } else if let ts = value as? [String: Tensor] {
                for key in ts.keys.sorted() { out.append(("\(label).\(key)", ts[key]!)) }
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

    /// The stored properties of this module (not its children) that hold modules or tensors
    /// discovery cannot see, and plain `Tensor` properties that do not require gradients,
    /// each with what to do about it. Empty for a module whose state is all found.
    public func undiscoveredProperties() -> [DiscoveryWarning] {
        var out: [DiscoveryWarning] = []
        let type = String(describing: Swift.type(of: self))
        // A lazy var's storage keeps its label (`$__lazy_storage_$_name`): no underscore to strip.
        let lazyPrefix = "$__lazy_storage_$_"
        for (label, value) in Module.storedProperties(of: self) {
            if label.hasPrefix(lazyPrefix) {
                if Discovery.lazyHoldsState(value) {
                    out.append(DiscoveryWarning(type: type, property: String(label.dropFirst(lazyPrefix.count)), problem: .lazy))
                }
                continue
            }
            if value is ParameterInfo || value is Buffer || value is Constant || value is Module || value is [Module] || value is [String: Module]
                || value is [String: Tensor]
            {
                continue
            }
            if let t = value as? Tensor {
                if !t.requiresGrad && !frozen { out.append(DiscoveryWarning(type: type, property: label, problem: .constantTensor)) }
                continue
            }
            if let ts = value as? [Tensor] {
                if !frozen && ts.contains(where: { !$0.requiresGrad }) {
                    out.append(DiscoveryWarning(type: type, property: label, problem: .constantTensor))
                }
                continue
            }
            if Discovery.holdsState(value, depth: 0) {
                out.append(DiscoveryWarning(type: type, property: label, problem: .hidden(Discovery.shape(of: value))))
            }
        }
        return out
    }

    /// Reports every undiscovered property of this tree once per class and property through
    /// `Module.discoveryWarningHandler` (standard error by default).
    func reportUndiscovered() {
        for (_, m) in namedModules() {
            for w in m.undiscoveredProperties() where Discovery.firstTime(w) { Module.discoveryWarningHandler(w) }
        }
    }

    /// Where discovery warnings go (standard error by default); set it to collect them, or
    /// to `{ _ in }` to silence them.
    nonisolated(unsafe) public static var discoveryWarningHandler: (DiscoveryWarning) -> Void = { w in
        Discovery.printToStandardError("gradguard: warning: " + w.description + "\n")
    }

    /// Stops this module's parameters (and its children's) from training: `requiresGrad`
    /// becomes false, they stay in `parameters()` and `stateDict()`, optimizers pass them
    /// by (PyTorch's `requires_grad_(False)` on each). `unfreeze()` undoes it.
    public func freeze() { setFrozen(true) }

    /// Lets a frozen module's parameters train again.
    public func unfreeze() { setFrozen(false) }

    func setFrozen(_ value: Bool) {
        for (_, m) in namedModules() {
            m.frozen = value
            for (_, t) in m.localParameters() { t.requiresGrad = !value }
        }
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
        reportUndiscovered()
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
