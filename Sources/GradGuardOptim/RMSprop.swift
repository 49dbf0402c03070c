import GradGuardTensor

/// RMSprop (Hinton, 2012) step for step as `torch.optim.RMSprop`:
///
///     g ← ∇ + λ·θ
///     v ← α·v + (1 − α)·g²
///     centered: ḡ ← ḡ + (1 − α)(g − ḡ),  d = √(v − ḡ²) + ε;  else d = √v + ε
///     momentum: b ← μ·b + g/d,  θ ← θ − η·b;  else θ ← θ − η·g/d
public final class RMSprop: Optimizer {
    /// The parameter groups, each with its hyper-parameters under PyTorch's names.
    public var paramGroups: [ParamGroup]
    /// Each parameter's `step`, `square_avg`, and `grad_avg` (centred) and `momentum_buffer` (with momentum).
    public var state: [ObjectIdentifier: ParamState] = [:]

    /// One group's hyper-parameters, typed; a group's `options` hold them under PyTorch's names.
    public struct Hyperparameters: OptimizerHyperparameters, Equatable {
        /// The rate, the squares' decay α, ε, weight decay, momentum and centring, with PyTorch's defaults.
        public var lr = 0.01, alpha = 0.99, eps = 1e-8, weightDecay = 0.0, momentum = 0.0, centered = false

        /// Hyper-parameters with PyTorch's defaults unless given.
        public init(lr: Double = 0.01, alpha: Double = 0.99, eps: Double = 1e-8, weightDecay: Double = 0, momentum: Double = 0, centered: Bool = false) {
            (self.lr, self.alpha, self.eps, self.weightDecay, self.momentum, self.centered) = (lr, alpha, eps, weightDecay, momentum, centered)
        }

        /// Read from a group's options (each missing one at PyTorch's default).
        public init(options o: [String: Double]) {
            self.init(
                lr: o["lr"] ?? 0.01, alpha: o["alpha"] ?? 0.99, eps: o["eps"] ?? 1e-8, weightDecay: o["weight_decay"] ?? 0,
                momentum: o["momentum"] ?? 0, centered: (o["centered"] ?? 0) != 0)
        }

        /// The hyper-parameters under PyTorch's names.
        public var options: [String: Double] {
            ["lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weightDecay, "momentum": momentum, "centered": centered ? 1 : 0]
        }
    }

    /// RMSprop over parameter groups.
    public init(
        _ groups: [ParamGroup], lr: Double = 0.01, alpha: Double = 0.99, eps: Double = 1e-8,
        weightDecay: Double = 0, momentum: Double = 0, centered: Bool = false
    ) {
        paramGroups = ParamGroup.filled(
            groups,
            defaults: Hyperparameters(lr: lr, alpha: alpha, eps: eps, weightDecay: weightDecay, momentum: momentum, centered: centered).options)
    }

    /// RMSprop over one group of parameters.
    public convenience init(
        _ params: [Tensor], lr: Double = 0.01, alpha: Double = 0.99, eps: Double = 1e-8,
        weightDecay: Double = 0, momentum: Double = 0, centered: Bool = false
    ) {
        self.init(
            [ParamGroup(params: params)], lr: lr, alpha: alpha, eps: eps, weightDecay: weightDecay,
            momentum: momentum, centered: centered)
    }

    /// The names of the state tensors, as PyTorch saves them.
    public var stateNames: Set<String>? { ["step", "square_avg", "grad_avg", "momentum_buffer"] }

    /// One RMSprop step of one parameter in place, as `torch.optim.RMSprop` computes it.
    public func update(
        _ p: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>,
        state: inout ParamState, hyperparameters h: Hyperparameters
    ) {
        let lr = Float(h.lr), alpha = Float(h.alpha), eps = Float(h.eps)
        let wd = Float(h.weightDecay), mu = Float(h.momentum), centered = h.centered
        state["step"] = Tensor((state["step"]?.item ?? 0) + 1)
        let sq = state.buffer("square_avg")
        let avgGrad = centered ? state.buffer("grad_avg") : nil
        let buf = mu > 0 ? state.buffer("momentum_buffer") : nil
        let n = p.count
        sq.withUnsafeMutableScalars { v in
            withOptionalScalars(avgGrad) { ga in
                withOptionalScalars(buf) { b in
                    parallelFor(n, grain: 16_384) { range in
                        for i in range {
                            let g = grad[i] + wd * p[i]
                            v[i] = alpha * v[i] + (1 - alpha) * g * g
                            let denom: Float
                            if let ga {
                                ga[i] += (1 - alpha) * (g - ga[i])
                                denom = (v[i] - ga[i] * ga[i]).squareRoot() + eps
                            } else {
                                denom = v[i].squareRoot() + eps
                            }
                            if let b {
                                b[i] = mu * b[i] + g / denom
                                p[i] -= lr * b[i]
                            } else {
                                p[i] -= lr * g / denom
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Runs `body` with the mutable storage of `t`, or with nil when there is no tensor.
func withOptionalScalars<R>(_ t: Tensor?, _ body: (UnsafeMutablePointer<Float>?) -> R) -> R {
    guard let t else { return body(nil) }
    return t.withUnsafeMutableScalars { body($0.baseAddress) }
}
