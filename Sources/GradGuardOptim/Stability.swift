import Foundation
import GradGuardTensor

/// Where an optimizer stops being stable on a quadratic: its update is stable while
/// η·λ_max(P⁻¹H) < `threshold`, with H the loss Hessian and P the optimizer's diagonal
/// preconditioner (the identity for SGD). The curvature probe measures λ_max; the stability
/// margin is η·λ_max / `threshold`.
///
/// The thresholds follow from the update's linear recurrence on one eigen-direction of
/// curvature λ (its characteristic root reaches −1 at the threshold):
/// - gradient descent: ηλ < 2 (Cohen et al. 2021, "Gradient descent on neural networks
///   typically occurs at the edge of stability", arXiv 2103.00065);
/// - heavy-ball momentum β (PyTorch's SGD, dampening d): η(1 − d)λ < 2 + 2β (same paper,
///   appendix);
/// - Nesterov momentum β: ηλ < (2 + 2β)/(1 + 2β) (same analysis on PyTorch's Nesterov update
///   θ ← θ − η(g + β(βv + g)));
/// - Adam and AdamW with β₁ (and SPAM, the same moments): η·λ_max(P⁻¹H) < (2 + 2β₁)/(1 − β₁),
///   38 for β₁ = 0.9, with P = (1 − β₁ᵗ)(√v̂ + ε) (Cohen et al. 2022, "Adaptive gradient
///   methods at the edge of stability", arXiv 2207.14484);
/// - RMSprop: P = √v + ε (centred: √(v − ḡ²) + ε), threshold 2, or 2 + 2β with momentum β.
public struct StabilityRule: Sendable, Equatable, Codable {
    /// c in η·λ < c.
    public var threshold: Double
    /// Whether λ is that of the preconditioned Hessian P⁻¹H.
    public var preconditioned: Bool
    /// The rule in words, with its formula: "heavy-ball momentum 0.9: λ < (2 + 2β)/η".
    public var name: String

    /// A rule η·λ < `threshold`, on the preconditioned Hessian or not.
    public init(threshold: Double, preconditioned: Bool, name: String) {
        (self.threshold, self.preconditioned, self.name) = (threshold, preconditioned, name)
    }

    /// Plain gradient descent: ηλ < 2.
    public static let gradientDescent = StabilityRule(threshold: 2, preconditioned: false, name: "gradient descent: λ < 2/η")

    /// Heavy-ball momentum β with dampening d: η(1 − d)λ < 2 + 2β.
    public static func heavyBall(_ beta: Double, dampening: Double = 0) -> StabilityRule {
        StabilityRule(
            threshold: (2 + 2 * beta) / Swift.max(1 - dampening, 1e-12), preconditioned: false,
            name: "momentum \(short(beta))\(dampening == 0 ? "" : ", dampening \(short(dampening))"): λ < (2 + 2β)/η")
    }

    /// Nesterov momentum β: ηλ < (2 + 2β)/(1 + 2β).
    public static func nesterov(_ beta: Double) -> StabilityRule {
        StabilityRule(
            threshold: (2 + 2 * beta) / (1 + 2 * beta), preconditioned: false, name: "Nesterov momentum \(short(beta)): λ < (2 + 2β)/((1 + 2β)η)")
    }

    /// Adam's first moment β₁ on the preconditioned Hessian: η·λ(P⁻¹H) < (2 + 2β₁)/(1 − β₁).
    public static func adam(beta1: Double, name: String = "Adam") -> StabilityRule {
        StabilityRule(
            threshold: (2 + 2 * beta1) / Swift.max(1 - beta1, 1e-12), preconditioned: true,
            name: "\(name) β₁ \(short(beta1)): λ(P⁻¹H) < (2 + 2β₁)/((1 − β₁)η)")
    }

    /// RMSprop on the preconditioned Hessian, with heavy-ball momentum β (0: none).
    public static func rmsprop(momentum: Double) -> StabilityRule {
        StabilityRule(
            threshold: 2 + 2 * momentum, preconditioned: true,
            name: momentum == 0 ? "RMSprop: λ(P⁻¹H) < 2/η" : "RMSprop momentum \(short(momentum)): λ(P⁻¹H) < (2 + 2β)/η")
    }

    /// The largest curvature the rate `lr` is stable under: threshold / η.
    public func limit(lr: Double) -> Double { lr > 0 ? threshold / lr : .infinity }

    /// η·λ / threshold: below 1 the update is stable along the top eigen-direction.
    public func margin(lambda: Double, lr: Double) -> Double { lr * lambda / threshold }

    /// The rate at which `lambda` sits at `margin` of the limit.
    public func rate(lambda: Double, margin: Double) -> Double { lambda > 0 ? margin * threshold / lambda : .infinity }
}

/// An optimizer's stability rule and preconditioner, for the curvature probe. Optimizers
/// that do not describe themselves are taken as gradient descent.
public protocol StabilityDescribing {
    /// The rule of parameter group `group`.
    func stabilityRule(group: Int) -> StabilityRule
    /// The diagonal of P for `param` that the coming update uses, given its gradient `grad`
    /// (nil: the identity). Written into `into` (one value per element).
    func preconditioner(for param: Tensor, grad: Tensor?, group: Int, into: inout [Double]) -> Bool
}

extension Optimizer {
    /// The rule of the group with the highest rate (the first group's for an optimizer that
    /// does not describe itself).
    public var stabilityRule: StabilityRule {
        guard let d = self as? any StabilityDescribing else { return .gradientDescent }
        let top = paramGroups.indices.max { paramGroups[$0].lr < paramGroups[$1].lr } ?? 0
        return d.stabilityRule(group: top)
    }

    /// The largest rate of any group: the one closest to its limit.
    public var largestRate: Double { paramGroups.map(\.lr).max() ?? 0 }

    /// The index of the group that holds `param`.
    public func group(of param: Tensor) -> Int {
        paramGroups.firstIndex { g in g.params.contains { $0 === param } } ?? 0
    }
}

extension SGD: StabilityDescribing {
    /// 2/η, or (2 + 2β)/η with heavy-ball momentum, or Nesterov's bound.
    public func stabilityRule(group: Int) -> StabilityRule {
        let h = Hyperparameters(options: paramGroups[group].options)
        if h.momentum == 0 { return .gradientDescent }
        return h.nesterov ? .nesterov(h.momentum) : .heavyBall(h.momentum, dampening: h.dampening)
    }

    /// No preconditioner: SGD's step follows the gradient.
    public func preconditioner(for param: Tensor, grad: Tensor?, group: Int, into: inout [Double]) -> Bool { false }
}

extension Adam: StabilityDescribing {
    /// (2 + 2β₁)/((1 − β₁)η) on the preconditioned Hessian.
    public func stabilityRule(group: Int) -> StabilityRule {
        .adam(beta1: Hyperparameters(options: paramGroups[group].options).beta1, name: decoupledWeightDecay ? "AdamW" : "Adam")
    }

    /// P = (1 − β₁ᵗ)(√(v_t/(1 − β₂ᵗ)) + ε) of the coming step t (v_t with this gradient).
    public func preconditioner(for param: Tensor, grad: Tensor?, group: Int, into p: inout [Double]) -> Bool {
        let h = Hyperparameters(options: paramGroups[group].options)
        let st = state[ObjectIdentifier(param)]
        let t = Double(st?["step"]?.item ?? 0) + 1
        let v = (h.amsgrad ? st?["max_exp_avg_sq"] : nil) ?? st?["exp_avg_sq"]
        let vs = v?.scalars, gs = grad?.scalars
        let bc1 = 1 - Foundation.pow(h.beta1, t), bc2 = 1 - Foundation.pow(h.beta2, t)
        for i in p.indices {
            let g = gs.map { Double($0[i]) } ?? 0
            let second = h.beta2 * (vs.map { Double($0[i]) } ?? 0) + (1 - h.beta2) * g * g
            p[i] = bc1 * ((second / bc2).squareRoot() + h.eps)
        }
        return true
    }
}

extension SPAM: StabilityDescribing {
    /// Adam's rule on the preconditioned Hessian.
    public func stabilityRule(group: Int) -> StabilityRule {
        .adam(beta1: Hyperparameters(options: paramGroups[group].options).beta1, name: "SPAM")
    }

    /// P = (1 − β₁ᵗ)(√(v̂_t) + ε) of the coming step, from the state and this gradient.
    public func preconditioner(for param: Tensor, grad: Tensor?, group: Int, into p: inout [Double]) -> Bool {
        let h = Hyperparameters(options: paramGroups[group].options)
        let vs = state[ObjectIdentifier(param)]?["exp_avg_sq"]?.scalars, gs = grad?.scalars
        for i in p.indices {
            let g = gs.map { Double($0[i]) } ?? 0
            p[i] = (1 - h.beta1) * ((h.beta2 * (vs.map { Double($0[i]) } ?? 0) + (1 - h.beta2) * g * g).squareRoot() + h.eps)
        }
        return true
    }
}

extension RMSprop: StabilityDescribing {
    /// 2/η, or (2 + 2β)/η with momentum β, on the preconditioned Hessian.
    public func stabilityRule(group: Int) -> StabilityRule {
        .rmsprop(momentum: Hyperparameters(options: paramGroups[group].options).momentum)
    }

    /// P = √v_t + ε (centred: √(v_t − ḡ_t²) + ε) of the coming step.
    public func preconditioner(for param: Tensor, grad: Tensor?, group: Int, into p: inout [Double]) -> Bool {
        let h = Hyperparameters(options: paramGroups[group].options)
        let st = state[ObjectIdentifier(param)]
        let vs = st?["square_avg"]?.scalars, ga = h.centered ? st?["grad_avg"]?.scalars : nil, gs = grad?.scalars
        let ps = param.scalars
        for i in p.indices {
            let g = (gs.map { Double($0[i]) } ?? 0) + h.weightDecay * Double(ps[i])
            let v = h.alpha * (vs.map { Double($0[i]) } ?? 0) + (1 - h.alpha) * g * g
            var second = v
            if h.centered {
                let m = h.alpha * (ga.map { Double($0[i]) } ?? 0) + (1 - h.alpha) * g
                second = v - m * m
            }
            p[i] = Swift.max(second, 0).squareRoot() + h.eps
        }
        return true
    }
}

/// A hyper-parameter as it is usually written (0.9, 0.999).
private func short(_ x: Double) -> String { String(format: "%g", x) }
