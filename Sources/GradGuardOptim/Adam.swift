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
///
/// With `updateClip` d > 0, StableAdamW's update clipping (Wortsman et al. 2023, "Stable and
/// low-precision training for large-scale vision-language models", arXiv 2304.13013, after
/// Adafactor's): each tensor's step is scaled by 1/max(1, RMS/d), RMS = √mean(g² / max(v/(1 −
/// β₂ᵗ), ε²)) with the second moment already updated — the authors' reference
/// (`StableAdamWUnfused`) folds the bias correction into β̂₂ = β₂(1 − β₂ᵗ⁻¹)/(1 − β₂ᵗ), which is
/// the same debiased average. Weight decay keeps the unscaled rate, as there.
public class Adam: Optimizer {
    /// The parameter groups, each with its hyper-parameters under PyTorch's names.
    public var paramGroups: [ParamGroup]
    /// Each parameter's `step`, `exp_avg`, `exp_avg_sq` (and `max_exp_avg_sq` with AMSGrad).
    public var state: [ObjectIdentifier: ParamState] = [:]
    /// Whether weight decay is decoupled (AdamW) or added to the gradient (Adam).
    public let decoupledWeightDecay: Bool

    /// One group's hyper-parameters, typed; a group's `options` hold them under PyTorch's names.
    public struct Hyperparameters: OptimizerHyperparameters, Equatable {
        /// The rate, the moments' decays β₁ and β₂, ε, weight decay and AMSGrad, with PyTorch's defaults.
        public var lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0.0, amsgrad = false
        /// StableAdamW's update-clipping threshold d (0: off).
        public var updateClip = 0.0

        /// Hyper-parameters with PyTorch's defaults unless given.
        public init(
            lr: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0, amsgrad: Bool = false,
            updateClip: Double = 0
        ) {
            (self.lr, self.beta1, self.beta2, self.eps, self.weightDecay, self.amsgrad) = (lr, beta1, beta2, eps, weightDecay, amsgrad)
            self.updateClip = updateClip
        }

        /// Read from a group's options (each missing one at PyTorch's default).
        public init(options o: [String: Double]) {
            self.init(
                lr: o["lr"] ?? 1e-3, beta1: o["beta1"] ?? 0.9, beta2: o["beta2"] ?? 0.999, eps: o["eps"] ?? 1e-8,
                weightDecay: o["weight_decay"] ?? 0, amsgrad: (o["amsgrad"] ?? 0) != 0, updateClip: o["update_clip"] ?? 0)
        }

        /// The hyper-parameters under PyTorch's names (`lr`, `beta1`, `beta2`, `eps`, `weight_decay`, `amsgrad`, `update_clip`).
        public var options: [String: Double] {
            var o = ["lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weightDecay, "amsgrad": amsgrad ? 1 : 0]
            if updateClip > 0 { o["update_clip"] = updateClip }
            return o
        }
    }

    /// Adam over parameter groups; `decoupled` makes the weight decay AdamW's.
    public init(
        _ groups: [ParamGroup], lr: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999,
        eps: Double = 1e-8, weightDecay: Double = 0, amsgrad: Bool = false, decoupled: Bool = false, updateClip: Double = 0
    ) {
        decoupledWeightDecay = decoupled
        paramGroups = ParamGroup.filled(
            groups,
            defaults: Hyperparameters(lr: lr, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay, amsgrad: amsgrad, updateClip: updateClip)
                .options)
    }

    /// The factor 1/max(1, RMS/d) of StableAdamW's update clipping for one tensor, from its
    /// gradient (after coupled weight decay) and its second moment before this step's update.
    static func updateClipScale(
        _ p: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>, v: UnsafeBufferPointer<Float>, h: Hyperparameters,
        t: Double, decoupled: Bool
    ) -> Float {
        let n = p.count
        guard n > 0 else { return 1 }
        let b2 = h.beta2, bc2 = 1 - Foundation.pow(b2, t), wd = h.weightDecay, floor = h.eps * h.eps
        var sum = 0.0
        for i in 0..<n {
            let g = decoupled ? Double(grad[i]) : Double(grad[i]) + wd * Double(p[i])
            let second = (b2 * Double(v[i]) + (1 - b2) * g * g) / bc2
            sum += g * g / Swift.max(second, floor)
        }
        let rms = (sum / Double(n)).squareRoot()
        return Float(1 / Swift.max(1, rms / h.updateClip))
    }

    /// Adam over one group of parameters.
    public convenience init(
        _ params: [Tensor], lr: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999,
        eps: Double = 1e-8, weightDecay: Double = 0, amsgrad: Bool = false, updateClip: Double = 0
    ) {
        self.init(
            [ParamGroup(params: params)], lr: lr, beta1: beta1, beta2: beta2, eps: eps,
            weightDecay: weightDecay, amsgrad: amsgrad, updateClip: updateClip)
    }

    /// The names of the state tensors, as PyTorch saves them.
    public var stateNames: Set<String>? { ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"] }

    /// One Adam step of one parameter in place, as `torch.optim.Adam` computes it.
    public func update(
        _ p: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>,
        state: inout ParamState, hyperparameters h: Hyperparameters
    ) {
        let lr = h.lr, b1 = h.beta1, b2 = h.beta2
        let eps = Float(h.eps), wd = Float(h.weightDecay), amsgrad = h.amsgrad
        let n = p.count
        let stepTensor = state["step"] ?? Tensor(0)
        let t = Double(stepTensor.item) + 1
        state["step"] = Tensor(Float(t))
        let m = state.buffer("exp_avg"), v = state.buffer("exp_avg_sq")
        let vmax = amsgrad ? state.buffer("max_exp_avg_sq") : nil
        let clipScale =
            h.updateClip > 0
            ? v.withUnsafeScalars { Self.updateClipScale(p, grad: grad, v: $0, h: h, t: t, decoupled: decoupledWeightDecay) } : 1
        // Bias corrections in Double, as PyTorch computes them in Python floats.
        let stepSize = Float(lr / (1 - Foundation.pow(b1, t))) * clipScale
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
    /// AdamW over parameter groups.
    public init(
        _ groups: [ParamGroup], lr: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999,
        eps: Double = 1e-8, weightDecay: Double = 0.01, amsgrad: Bool = false, updateClip: Double = 0
    ) {
        super.init(
            groups, lr: lr, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay,
            amsgrad: amsgrad, decoupled: true, updateClip: updateClip)
    }

    /// AdamW over one group of parameters.
    public convenience init(
        _ params: [Tensor], lr: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999,
        eps: Double = 1e-8, weightDecay: Double = 0.01, amsgrad: Bool = false, updateClip: Double = 0
    ) {
        self.init(
            [ParamGroup(params: params)], lr: lr, beta1: beta1, beta2: beta2, eps: eps,
            weightDecay: weightDecay, amsgrad: amsgrad, updateClip: updateClip)
    }
}
