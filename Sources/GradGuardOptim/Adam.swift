import CGradGuardKernels
import Foundation
import GradGuardTensor

/// Adam (Kingma & Ba, 2015) with optional AMSGrad, and AdamW (Loshchilov & Hutter, 2019)
/// as the same rule with decoupled weight decay, step for step as `torch.optim.Adam` /
/// `torch.optim.AdamW`:
///
///     θ ← θ·(1 − η·λ) (AdamW)      or   g ← ∇ + λ·θ (Adam)
///     m ← m + (1 − β₁)(g − m),     v ← β₂·v + (1 − β₂)·g²
///     θ ← θ − η/(1 − β₁ᵗ) · m / (√v̂ / √(1 − β₂ᵗ) + ε),   v̂ = v or max(v̂, v) with AMSGrad
public class Adam: Optimizer {
    /// Whether weight decay is decoupled (AdamW) or added to the gradient (Adam).
    public let decoupledWeightDecay: Bool

    /// One group's hyper-parameters, typed; a group's `options` hold them under PyTorch's names.
    public struct Hyperparameters: Sendable, Equatable {
        public var lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0.0, amsgrad = false

        public init(lr: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0, amsgrad: Bool = false) {
            (self.lr, self.beta1, self.beta2, self.eps, self.weightDecay, self.amsgrad) = (lr, beta1, beta2, eps, weightDecay, amsgrad)
        }

        /// Read from a group's options (each missing one at PyTorch's default).
        public init(options o: [String: Double]) {
            self.init(
                lr: o["lr"] ?? 1e-3, beta1: o["beta1"] ?? 0.9, beta2: o["beta2"] ?? 0.999, eps: o["eps"] ?? 1e-8,
                weightDecay: o["weight_decay"] ?? 0, amsgrad: (o["amsgrad"] ?? 0) != 0)
        }

        public var options: [String: Double] {
            ["lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weightDecay, "amsgrad": amsgrad ? 1 : 0]
        }
    }

    public init(
        _ groups: [ParamGroup], lr: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999,
        eps: Double = 1e-8, weightDecay: Double = 0, amsgrad: Bool = false, decoupled: Bool = false
    ) {
        decoupledWeightDecay = decoupled
        super.init(
            groups: groups, defaults: Hyperparameters(lr: lr, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay, amsgrad: amsgrad).options)
    }

    public convenience init(
        _ params: [Tensor], lr: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999,
        eps: Double = 1e-8, weightDecay: Double = 0, amsgrad: Bool = false
    ) {
        self.init(
            [ParamGroup(params: params)], lr: lr, beta1: beta1, beta2: beta2, eps: eps,
            weightDecay: weightDecay, amsgrad: amsgrad)
    }

    public override var stateNames: Set<String>? { ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"] }

    public override func update(
        _ p: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>,
        state: inout ParamState, options o: [String: Double]
    ) {
        let h = Hyperparameters(options: o)
        let lr = h.lr, b1 = h.beta1, b2 = h.beta2
        let eps = Float(h.eps), wd = Float(h.weightDecay), amsgrad = h.amsgrad
        let n = p.count
        let stepTensor = state["step"] ?? Tensor(0)
        let t = Double(stepTensor.item) + 1
        state["step"] = Tensor(Float(t))
        let m = state.buffer("exp_avg"), v = state.buffer("exp_avg_sq")
        let vmax = amsgrad ? state.buffer("max_exp_avg_sq") : nil
        // Bias corrections in Double, as PyTorch computes them in Python floats.
        let stepSize = Float(lr / (1 - Foundation.pow(b1, t)))
        let bc2Sqrt = Float((1 - Foundation.pow(b2, t)).squareRoot())
        let decay = Float(1 - lr * Double(wd))
        let c1 = Float(1 - b1), fb2 = Float(b2), c2 = Float(1 - b2)
        let decoupled = decoupledWeightDecay
        let args = gg_adam_args(
            step_size: stepSize, bc2_sqrt: bc2Sqrt, decay: decay, c1: c1, beta2: fb2, c2: c2,
            eps: eps, weight_decay: wd, decoupled: decoupled ? 1 : 0)
        let level = Kernels.level
        // One pass per element, in PyTorch's order of operations; large tensors over the workers.
        m.withUnsafeMutableScalars { mb in
            v.withUnsafeMutableScalars { vb in
                withOptionalScalars(vmax) { mx in
                    if level > .portable {
                        withUnsafePointer(to: args) { a in
                            parallelFor(n, grain: 16_384) { r in
                                gg_adam(
                                    level.cValue, p.baseAddress! + r.lowerBound, grad.baseAddress! + r.lowerBound,
                                    mb.baseAddress! + r.lowerBound, vb.baseAddress! + r.lowerBound,
                                    mx.map { $0 + r.lowerBound }, r.count, a)
                            }
                        }
                        return
                    }
                    parallelFor(n, grain: 16_384) { range in
                        for i in range {
                            var g = grad[i]
                            if decoupled { p[i] *= decay } else { g += wd * p[i] }
                            mb[i] += c1 * (g - mb[i])
                            vb[i] = fb2 * vb[i] + c2 * g * g
                            var second = vb[i]
                            if let mx {
                                mx[i] = Swift.max(mx[i], vb[i])
                                second = mx[i]
                            }
                            p[i] -= stepSize * mb[i] / (second.squareRoot() / bc2Sqrt + eps)
                        }
                    }
                }
            }
        }
    }
}

/// AdamW: Adam with decoupled weight decay (default 0.01, as `torch.optim.AdamW`).
public final class AdamW: Adam {
    public init(
        _ groups: [ParamGroup], lr: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999,
        eps: Double = 1e-8, weightDecay: Double = 0.01, amsgrad: Bool = false
    ) {
        super.init(
            groups, lr: lr, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay,
            amsgrad: amsgrad, decoupled: true)
    }

    public convenience init(
        _ params: [Tensor], lr: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999,
        eps: Double = 1e-8, weightDecay: Double = 0.01, amsgrad: Bool = false
    ) {
        self.init(
            [ParamGroup(params: params)], lr: lr, beta1: beta1, beta2: beta2, eps: eps,
            weightDecay: weightDecay, amsgrad: amsgrad)
    }
}
