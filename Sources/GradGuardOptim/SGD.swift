import CGradGuardKernels
import GradGuardTensor

/// Stochastic gradient descent with momentum, dampening, Nesterov momentum and coupled
/// weight decay, step for step as `torch.optim.SGD`:
///
///     g ← ∇ + λ·θ
///     b ← g (first step), else μ·b + (1 − τ)·g
///     g ← g + μ·b (Nesterov) or b
///     θ ← θ − η·g
public final class SGD: Optimizer {
    /// One group's hyper-parameters, typed; a group's `options` hold them under PyTorch's names.
    public struct Hyperparameters: OptimizerHyperparameters, Equatable {
        /// The rate, momentum, dampening, weight decay and Nesterov momentum, with PyTorch's defaults.
        public var lr: Double, momentum = 0.0, dampening = 0.0, weightDecay = 0.0, nesterov = false

        /// Hyper-parameters with PyTorch's defaults unless given.
        public init(lr: Double, momentum: Double = 0, dampening: Double = 0, weightDecay: Double = 0, nesterov: Bool = false) {
            (self.lr, self.momentum, self.dampening, self.weightDecay, self.nesterov) = (lr, momentum, dampening, weightDecay, nesterov)
        }

        /// Read from a group's options (each missing one at PyTorch's default).
        public init(options o: [String: Double]) {
            self.init(
                lr: o["lr"] ?? 0, momentum: o["momentum"] ?? 0, dampening: o["dampening"] ?? 0, weightDecay: o["weight_decay"] ?? 0,
                nesterov: (o["nesterov"] ?? 0) != 0)
        }

        /// The hyper-parameters under PyTorch's names.
        public var options: [String: Double] {
            ["lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weightDecay, "nesterov": nesterov ? 1 : 0]
        }
    }

    /// The parameter groups, each with its hyper-parameters under PyTorch's names.
    public var paramGroups: [ParamGroup]
    /// Each parameter's `momentum_buffer` (with momentum).
    public var state: [ObjectIdentifier: ParamState] = [:]

    /// SGD over parameter groups.
    public init(
        _ groups: [ParamGroup], lr: Double, momentum: Double = 0, dampening: Double = 0,
        weightDecay: Double = 0, nesterov: Bool = false
    ) {
        require(!nesterov || (momentum > 0 && dampening == 0), "Nesterov momentum requires a momentum and zero dampening")
        paramGroups = ParamGroup.filled(
            groups,
            defaults: Hyperparameters(lr: lr, momentum: momentum, dampening: dampening, weightDecay: weightDecay, nesterov: nesterov).options)
    }

    /// SGD over one group of parameters.
    public convenience init(
        _ params: [Tensor], lr: Double, momentum: Double = 0, dampening: Double = 0,
        weightDecay: Double = 0, nesterov: Bool = false
    ) {
        self.init(
            [ParamGroup(params: params)], lr: lr, momentum: momentum, dampening: dampening,
            weightDecay: weightDecay, nesterov: nesterov)
    }

    /// The names of the state tensors, as PyTorch saves them.
    public var stateNames: Set<String>? { ["momentum_buffer"] }

    /// One SGD step of one parameter in place, as `torch.optim.SGD` computes it.
    public func update(
        _ p: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>,
        state: inout ParamState, hyperparameters h: Hyperparameters
    ) {
        let lr = Float(h.lr), wd = Float(h.weightDecay), mu = Float(h.momentum), damp = Float(h.dampening), nesterov = h.nesterov
        let n = p.count
        let level = Kernels.level
        if level > .portable {
            let args = gg_sgd_args(
                lr: lr, weight_decay: wd, momentum: mu, dampening: damp,
                first: state["momentum_buffer"] == nil ? 1 : 0, nesterov: nesterov ? 1 : 0)
            let buf = mu == 0 ? nil : state.buffer("momentum_buffer")
            withOptionalScalars(buf) { b in
                withUnsafePointer(to: args) { a in
                    parallelFor(n, grain: 16_384) { r in
                        gg_sgd(
                            level.cValue, p.baseAddress! + r.lowerBound, grad.baseAddress! + r.lowerBound,
                            b.map { $0 + r.lowerBound }, r.count, a)
                    }
                }
            }
            return
        }
        if mu == 0 {
            parallelFor(n, grain: 16_384) { range in for i in range { p[i] -= lr * (grad[i] + wd * p[i]) } }
            return
        }
        let first = state["momentum_buffer"] == nil
        let buf = state.buffer("momentum_buffer")
        buf.withUnsafeMutableScalars { b in
            parallelFor(n, grain: 16_384) { range in
                for i in range {
                    let g = grad[i] + wd * p[i]
                    b[i] = first ? g : mu * b[i] + (1 - damp) * g
                    p[i] -= lr * (nesterov ? g + mu * b[i] : b[i])
                }
            }
        }
    }
}
