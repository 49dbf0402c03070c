import GradGuardTensor

/// A set of parameters that share hyper-parameters (PyTorch's `param_groups` entry).
/// Any option not set here takes the optimizer's default.
public struct ParamGroup {
    /// The tensors of the group.
    public var params: [Tensor]
    /// Hyper-parameters by PyTorch name: `lr`, `weight_decay`, `momentum`, `beta1`, …
    public var options: [String: Double]

    /// A group of `params` with `options` under PyTorch's names.
    public init(params: [Tensor], options: [String: Double] = [:]) {
        self.params = params
        self.options = options
    }

    /// A group of `params` with its own rate and weight decay, when given.
    public init(params: [Tensor], lr: Double? = nil, weightDecay: Double? = nil) {
        var o: [String: Double] = [:]
        o["lr"] = lr
        o["weight_decay"] = weightDecay
        self.init(params: params, options: o)
    }

    /// The learning rate of this group.
    public var lr: Double {
        get { options["lr"] ?? 0 }
        set { options["lr"] = newValue }
    }

    /// The hyper-parameter named `key` (PyTorch's name), nil when the group does not set it.
    public subscript(_ key: String) -> Double? {
        get { options[key] }
        set { options[key] = newValue }
    }
}

/// What loading an optimizer state found wrong.
public enum OptimizerStateError: Error, CustomStringConvertible, Equatable {
    case unknownParameter(key: String, parameterCount: Int)
    case shapeMismatch(key: String, expected: [Int], found: [Int])
    case groupCountMismatch(expected: Int, found: Int)
    /// The saved hyper-parameters are another optimizer's (an SGD state loaded into Adam).
    case optionsMismatch(group: Int, missing: [String], unexpected: [String])

    /// The mismatch, naming the key or the group.
    public var description: String {
        switch self {
        case let .unknownParameter(k, n): return "optimizer state '\(k)': names no parameter of this optimizer (it has \(n), numbered from 0)"
        case let .shapeMismatch(k, e, f): return "optimizer state '\(k)': expected shape \(e), found \(f)"
        case let .groupCountMismatch(e, f): return "optimizer state: \(f) parameter groups in the file, \(e) in the optimizer"
        case let .optionsMismatch(g, m, u):
            return "optimizer state: group \(g) was saved by another kind of optimizer"
                + (m.isEmpty ? "" : " (it lacks \(m.joined(separator: ", ")))") + (u.isEmpty ? "" : " (it has \(u.joined(separator: ", ")), unknown here)")
        }
    }
}

/// One group's hyper-parameters, typed (`SGD.Hyperparameters`, `Adam.Hyperparameters`, …);
/// a group's `options` hold them under PyTorch's names, which state dicts and schedules use.
public protocol OptimizerHyperparameters: Sendable {
    /// Read from a group's options (each missing one at the optimizer's default).
    init(options: [String: Double])
    /// The values under PyTorch's names.
    var options: [String: Double] { get }
}

/// An optimizer: the rule that changes one parameter from its gradient, its state and its
/// group's typed hyper-parameters (`update`). The loop over groups and parameters (each
/// group's hyper-parameters read once per step), state keeping, saving and loading are
/// default implementations, the same for every optimizer.
///
/// A new optimizer declares its `Hyperparameters`, stores `paramGroups` and `state`
/// (`ParamGroup.filled` gives groups their defaults), and implements `update`:
///
/// ```swift
/// final class SignSGD: Optimizer {
///     struct Hyperparameters: OptimizerHyperparameters {
///         var lr: Double
///         init(options o: [String: Double]) { lr = o["lr"] ?? 0.01 }
///         var options: [String: Double] { ["lr": lr] }
///     }
///     var paramGroups: [ParamGroup]
///     var state: [ObjectIdentifier: ParamState] = [:]
///     init(_ params: [Tensor], lr: Double) { paramGroups = ParamGroup.filled([ParamGroup(params: params)], defaults: ["lr": lr]) }
///     func update(_ p: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>, state: inout ParamState, hyperparameters h: Hyperparameters) {
///         for i in p.indices { p[i] -= Float(h.lr) * (grad[i] > 0 ? 1 : grad[i] < 0 ? -1 : 0) }
///     }
/// }
/// ```
public protocol Optimizer: AnyObject {
    associatedtype Hyperparameters: OptimizerHyperparameters
    var paramGroups: [ParamGroup] { get set }
    /// Per-parameter state (`momentum_buffer`, `exp_avg`, `step`, …), created on first use.
    var state: [ObjectIdentifier: ParamState] { get set }
    /// The names of the per-parameter state tensors this optimizer keeps (nil: not checked
    /// on load).
    var stateNames: Set<String>? { get }
    /// Applies one update to `param` (values changed in place) given its gradient. `state`
    /// starts empty for a parameter's first step.
    func update(
        _ param: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>, state: inout ParamState, hyperparameters: Hyperparameters)
    /// Updates every parameter that has a gradient (default: `applyUpdates()`).
    func step()
}

extension ParamGroup {
    /// `groups` with every option they do not set taken from `defaults`.
    public static func filled(_ groups: [ParamGroup], defaults: [String: Double]) -> [ParamGroup] {
        groups.map { g in
            var g = g
            for (k, v) in defaults where g.options[k] == nil { g.options[k] = v }
            return g
        }
    }
}

extension Optimizer {
    /// Any state name is accepted (an optimizer that lists its own refuses others on load).
    public var stateNames: Set<String>? { nil }

    /// Updates every parameter that has a gradient.
    public func step() { applyUpdates() }

    /// Updates every parameter that has a gradient, each group's hyper-parameters read once.
    public func applyUpdates() {
        for group in paramGroups {
            let h = Hyperparameters(options: group.options)
            for p in group.params {
                guard let g = p.grad else { continue }
                var st = state.removeValue(forKey: ObjectIdentifier(p)) ?? ParamState(shape: p.shape)
                g.withUnsafeScalars { gb in
                    p.withUnsafeMutableScalars { pb in update(pb, grad: gb, state: &st, hyperparameters: h) }
                }
                state[ObjectIdentifier(p)] = st
            }
        }
    }

    /// Clears the gradient of every parameter.
    public func zeroGrad() {
        for group in paramGroups { for p in group.params { p.grad = nil } }
    }

    /// All parameters, in group order.
    public var parameters: [Tensor] { paramGroups.flatMap(\.params) }

    // MARK: Saving and restoring

    /// State and hyper-parameters as named tensors, keyed like PyTorch's `state_dict()`:
    /// `state.<i>.<name>` with `i` the parameter's position across groups, and
    /// `param_groups.<g>.<option>`.
    public func stateDict() -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (i, p) in parameters.enumerated() {
            for (name, t) in state[ObjectIdentifier(p)]?.tensors ?? [:] { out["state.\(i).\(name)"] = t.copy() }
        }
        for (gi, g) in paramGroups.enumerated() {
            for (k, v) in g.options { out["param_groups.\(gi).\(k)"] = Tensor(Float(v)) }
        }
        return out
    }

    /// Every group's hyper-parameters at full (Double) precision. `stateDict()` stores them
    /// as float32 tensors like PyTorch's file layout does; a checkpoint that must resume
    /// bit for bit saves these beside it and puts them back with `setHyperparameters`.
    public func hyperparameters() -> [[String: Double]] { paramGroups.map(\.options) }

    /// Restores `hyperparameters()`; the group count and each group's option names must match.
    public func setHyperparameters(_ groups: [[String: Double]]) throws {
        guard groups.count == paramGroups.count else {
            throw OptimizerStateError.groupCountMismatch(expected: paramGroups.count, found: groups.count)
        }
        for (i, g) in groups.enumerated() {
            let have = Set(paramGroups[i].options.keys), saved = Set(g.keys)
            if have != saved {
                throw OptimizerStateError.optionsMismatch(group: i, missing: have.subtracting(saved).sorted(), unexpected: saved.subtracting(have).sorted())
            }
        }
        for (i, g) in groups.enumerated() { paramGroups[i].options = g }
    }

    /// Restores what `stateDict()` returned for an optimizer over the same parameters.
    /// Everything is checked before anything changes.
    public func load(stateDict dict: [String: Tensor]) throws {
        let params = parameters
        var newState: [ObjectIdentifier: ParamState] = [:]
        for (key, t) in dict where key.hasPrefix("state.") {
            let parts = key.split(separator: ".", maxSplits: 2).map(String.init)
            guard parts.count == 3, let i = Int(parts[1]), i >= 0, i < params.count else {
                throw OptimizerStateError.unknownParameter(key: key, parameterCount: params.count)
            }
            newState[ObjectIdentifier(params[i]), default: ParamState(shape: params[i].shape)][parts[2]] = t.copy()
        }
        let groupIndices = Set(dict.keys.filter { $0.hasPrefix("param_groups.") }.compactMap { Int($0.split(separator: ".")[1]) })
        if !groupIndices.isEmpty && groupIndices.count != paramGroups.count {
            throw OptimizerStateError.groupCountMismatch(expected: paramGroups.count, found: groupIndices.count)
        }
        for p in params {
            for (name, t) in newState[ObjectIdentifier(p)]?.tensors ?? [:] where name != "step" && t.shape != p.shape {
                throw OptimizerStateError.shapeMismatch(key: name, expected: p.shape, found: t.shape)
            }
        }
        if let known = stateNames, let bad = newState.values.flatMap(\.tensors.keys).first(where: { !known.contains($0) }) {
            throw OptimizerStateError.optionsMismatch(group: 0, missing: [], unexpected: ["state '\(bad)'"])
        }
        for (key, _) in dict where key.hasPrefix("param_groups.") {
            let parts = key.split(separator: ".", maxSplits: 2).map(String.init)
            guard parts.count == 3, let gi = Int(parts[1]), gi < paramGroups.count else { continue }
            if paramGroups[gi].options[parts[2]] == nil {
                throw OptimizerStateError.optionsMismatch(group: gi, missing: [], unexpected: [parts[2]])
            }
        }
        state = newState
        for (key, t) in dict where key.hasPrefix("param_groups.") {
            let parts = key.split(separator: ".", maxSplits: 2).map(String.init)
            guard parts.count == 3, let gi = Int(parts[1]), gi < paramGroups.count else { continue }
            paramGroups[gi].options[parts[2]] = Double(t.item)
        }
    }
}

/// The optimizer state of one parameter: named tensors such as `momentum_buffer` or
/// `exp_avg`, empty before the parameter's first step.
public struct ParamState {
    /// The parameter's shape, which buffers take.
    public let shape: [Int]
    /// The buffers by name.
    public var tensors: [String: Tensor] = [:]

    /// The state of a parameter of `shape`.
    public init(shape: [Int], tensors: [String: Tensor] = [:]) {
        self.shape = shape
        self.tensors = tensors
    }

    /// The buffer named `key`, nil before it exists.
    public subscript(_ key: String) -> Tensor? {
        get { tensors[key] }
        set { tensors[key] = newValue }
    }

    /// The buffer named `key`, created as zeros of the parameter's shape when absent.
    public mutating func buffer(_ key: String) -> Tensor {
        if let t = tensors[key] { return t }
        let t = Tensor.zeros(shape)
        tensors[key] = t
        return t
    }
}
