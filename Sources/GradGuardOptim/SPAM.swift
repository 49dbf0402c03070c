import Foundation
import GradGuardTensor

/// SPAM, Spike-Aware Adam with Momentum Reset (Huang et al. 2025, "SPAM: Spike-Aware Adam with
/// Momentum Reset for Stable LLM Training", arXiv 2501.06842, ICLR 2025), dense form (no sparse
/// momentum masks), step for step as the authors' `AdamW` of the SPAM-Optimizer repository:
///
/// - with T the optimizer steps taken so far, both moments are reset to zero at the start of
///   every step with (T + 1) mod ΔT = 0; each parameter's own step count (for the bias
///   corrections) is not reset;
/// - spike-aware clipping, once T + 1 ≥ `gradAccuSteps` and (T + 1) mod ΔT ≥ `gradAccuSteps`:
///   an entry with g² > θ·v (v before this step's update) becomes sign(g)·√(θ·v);
/// - m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², θ ← θ − η·√(1 − β₂ᵗ)/(1 − β₁ᵗ)·s·m/(√v + ε),
///   then θ ← θ − η·λ·θ;
/// - s = 1 − d(c), a cosine warm-up after each reset: c counts the steps since the last reset
///   (W + 1 + T before the first), d(c) = 0.99·(1 + cos(πc/(W + 1)))/2 for c < W, else 0.
///
/// Defaults as the authors': η 1e-3, β (0.9, 0.999), ε 1e-6, θ 5000, ΔT 500, W 150, 20
/// accumulation steps. T is kept in every group's options (`total_step`), so checkpoints
/// carry it with the hyper-parameters.
public final class SPAM: Optimizer {
    /// The parameter groups, each with its hyper-parameters.
    public var paramGroups: [ParamGroup]
    /// Each parameter's `step`, `exp_avg` and `exp_avg_sq`.
    public var state: [ObjectIdentifier: ParamState] = [:]

    /// One group's hyper-parameters, typed; a group's `options` hold them by name.
    public struct Hyperparameters: OptimizerHyperparameters, Equatable {
        /// The rate, the moments' decays β₁ and β₂, ε and weight decay (the authors' defaults).
        public var lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-6, weightDecay = 0.0
        /// θ: the spike threshold on g²/v (0: no spike clipping).
        public var threshold = 5000.0
        /// ΔT: steps between momentum resets.
        public var resetEvery = 500
        /// W: steps of the cosine warm-up after each reset.
        public var warmupSteps = 150
        /// Steps after a reset before spike clipping begins.
        public var gradAccuSteps = 20
        /// T: optimizer steps taken (kept in the options as `total_step`; not a setting).
        public internal(set) var totalSteps = 0

        /// The authors' defaults.
        public init() {}

        /// The hyper-parameters a group's options hold (defaults where absent).
        public init(options o: [String: Double]) {
            lr = o["lr"] ?? lr
            beta1 = o["beta1"] ?? beta1
            beta2 = o["beta2"] ?? beta2
            eps = o["eps"] ?? eps
            weightDecay = o["weight_decay"] ?? weightDecay
            threshold = o["threshold"] ?? threshold
            resetEvery = Int(o["delta_t"] ?? Double(resetEvery))
            warmupSteps = Int(o["warmup_steps"] ?? Double(warmupSteps))
            gradAccuSteps = Int(o["grad_accu_steps"] ?? Double(gradAccuSteps))
            totalSteps = Int(o["total_step"] ?? 0)
        }

        /// The hyper-parameters by name.
        public var options: [String: Double] {
            [
                "lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weightDecay, "threshold": threshold,
                "delta_t": Double(resetEvery), "warmup_steps": Double(warmupSteps), "grad_accu_steps": Double(gradAccuSteps)
            ]
        }
    }

    /// SPAM over parameter groups with hyper-parameters `h` where a group sets none.
    public init(_ groups: [ParamGroup], _ h: Hyperparameters = Hyperparameters()) {
        require(h.resetEvery >= 1 && h.warmupSteps >= 0 && h.gradAccuSteps >= 0 && h.threshold >= 0, "SPAM: ΔT ≥ 1, W ≥ 0, θ ≥ 0")
        var options = h.options
        options["total_step"] = 0
        paramGroups = ParamGroup.filled(groups, defaults: options)
    }

    /// SPAM over one group of parameters.
    public convenience init(_ params: [Tensor], lr: Double = 1e-3, _ h: Hyperparameters = Hyperparameters()) {
        var h = h
        h.lr = lr
        self.init([ParamGroup(params: params)], h)
    }

    /// The names of the state tensors.
    public var stateNames: Set<String>? { ["step", "exp_avg", "exp_avg_sq"] }

    /// Optimizer steps taken (T).
    public var totalSteps: Int { Int(paramGroups.first?.options["total_step"] ?? 0) }

    /// Steps since the last momentum reset at the start of step T (W + 1 + T before the first).
    static func stepsSinceReset(_ t: Int, _ h: Hyperparameters) -> Int {
        t + 1 >= h.resetEvery ? (t + 1) % h.resetEvery : h.warmupSteps + 1 + t
    }

    /// The warm-up factor s of step T.
    public static func warmupScale(_ t: Int, _ h: Hyperparameters) -> Double {
        let c = stepsSinceReset(t, h)
        guard c < h.warmupSteps else { return 1 }
        // torch's CosineAnnealingLR over W + 1 steps from 0.99, at step c.
        return 1 - 0.99 * (1 + Foundation.cos(Double.pi * Double(c) / Double(h.warmupSteps + 1))) / 2
    }

    /// One step: momentum resets on schedule, then every parameter's update.
    public func step() {
        applyUpdates()
        for i in paramGroups.indices { paramGroups[i].options["total_step", default: 0] += 1 }
    }

    /// One SPAM step of one parameter in place, as the authors' dense `step()` computes it.
    public func update(
        _ p: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>, state: inout ParamState, hyperparameters h: Hyperparameters
    ) {
        let total = h.totalSteps
        if (total + 1) % h.resetEvery == 0 {
            state["exp_avg"] = nil
            state["exp_avg_sq"] = nil
        }
        let m = state.buffer("exp_avg"), v = state.buffer("exp_avg_sq")
        let t = Double((state["step"]?.item ?? 0) + 1)
        state["step"] = Tensor(Float(t))
        let current = total + 1
        let clip = h.threshold != 0 && current >= h.gradAccuSteps && current % h.resetEvery >= h.gradAccuSteps
        let theta = Float(h.threshold), b1 = Float(h.beta1), b2 = Float(h.beta2), eps = Float(h.eps)
        let stepSize = Float(h.lr * (1 - Foundation.pow(h.beta2, t)).squareRoot() / (1 - Foundation.pow(h.beta1, t)))
        let scale = Float(Self.warmupScale(total, h))
        let decay = Float(-h.lr * h.weightDecay)
        m.withUnsafeMutableScalars { mb in
            v.withUnsafeMutableScalars { vb in
                for i in 0..<p.count {
                    var g = grad[i]
                    if clip && g * g > theta * vb[i] {
                        let limit = (vb[i] * theta).squareRoot()
                        g = g > 0 ? limit : (g < 0 ? -limit : 0)
                    }
                    mb[i] = mb[i] * b1 + (1 - b1) * g
                    vb[i] = vb[i] * b2 + (1 - b2) * g * g
                    p[i] += -stepSize * scale * (mb[i] / (vb[i].squareRoot() + eps))
                    if decay != 0 { p[i] += p[i] * decay }
                }
            }
        }
    }
}
