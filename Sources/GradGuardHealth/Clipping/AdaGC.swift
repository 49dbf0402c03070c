import Foundation
import GradGuardOptim
import GradGuardTensor

/// AdaGC (Wang et al. 2025, "AdaGC: Enhancing LLM Pretraining Stability via Adaptive Gradient
/// Clipping", arXiv 2502.11034, Algorithm 1): each tensor's gradient is clipped against an
/// exponential moving average of its own past clipped norms.
///
/// At step t (from 1), for tensor i with gradient gᵢ:
/// - warm-up, t < `warmupSteps` (or a tensor without history): global clipping,
///   h = min(λ_abs / (‖g‖ + ε), 1) on every tensor, and γᵢ ← min(γᵢ, ‖h·gᵢ‖) (the first
///   clipped norm starts γᵢ);
/// - after: hᵢ = min(λ_rel · max(γᵢ, ε) / max(‖gᵢ‖, ε), 1), ĝᵢ = hᵢ·gᵢ, and
///   γᵢ ← β·γᵢ + (1 − β)·‖ĝᵢ‖.
///
/// Defaults as the authors': λ_abs 1, λ_rel 1.05, β 0.98, 100 warm-up steps, ε 1e-8. The
/// paper's Adam + AdaGC is an optimizer; here AdaGC is a clipper, in front of any optimizer
/// (as the paper describes it: "optimizer-agnostic"). A NaN or infinite norm leaves the
/// gradients and γ untouched (the non-finite detector handles that step).
public final class AdaGC: GradientClipper {
    /// λ_abs (the warm-up's global threshold), λ_rel (each tensor's threshold over its γ), β (γ's EMA factor) and ε.
    public let lambdaAbs: Double, lambdaRel: Double, beta: Double, eps: Double
    /// Steps of global clipping before the per-tensor thresholds.
    public let warmupSteps: Int
    /// Steps clipped so far, and γ of each tensor by name (`gamma.<name>`).
    public struct State: SavedState, Equatable {
        /// Steps clipped so far.
        public var step = 0
        /// γ of each tensor, by name.
        public var gamma: [String: Double] = [:]
        /// The saved fields.
        public static let fields: [SavedField<State>] = [.whole("step", \.step), .table("gamma", \.gamma)]
    }
    /// The clipper's state.
    public private(set) var state = State()
    /// Steps clipped so far.
    public var step: Int { state.step }
    /// γ of each tensor, by name.
    public var gamma: [String: Double] { state.gamma }
    /// `adagc`.
    public var name: String { "adagc" }

    /// AdaGC with the authors' defaults unless given.
    public init(lambdaAbs: Double = 1, lambdaRel: Double = 1.05, beta: Double = 0.98, warmupSteps: Int = 100, eps: Double = 1e-8) {
        require(lambdaAbs > 0 && lambdaRel > 0 && beta >= 0 && beta < 1 && warmupSteps >= 0, "AdaGC: positive thresholds, β in [0, 1)")
        self.lambdaAbs = lambdaAbs
        self.lambdaRel = lambdaRel
        self.beta = beta
        self.warmupSteps = warmupSteps
        self.eps = eps
    }

    /// Clips globally during the warm-up, then each tensor against its own γ, and updates γ.
    public func clip(_ parameters: [NamedParameter]) throws -> ClipReport {
        let norms = gradientNorms(parameters)
        let global = l2(norms)
        guard global.isFinite else { return ClipReport(normBefore: Float(global), normAfter: Float(global)) }
        state.step += 1
        var scales = [Float](repeating: 1, count: parameters.count)
        let warm = state.step < warmupSteps
        let globalScale = Swift.min(lambdaAbs / (global + eps), 1)
        for (i, p) in parameters.enumerated() where p.tensor.grad != nil {
            if warm || state.gamma[p.name] == nil {
                scales[i] = Float(globalScale)
                let clipped = Double(Float(globalScale)) * norms[i]
                state.gamma[p.name] = Swift.min(state.gamma[p.name] ?? clipped, clipped)
            } else {
                let g = state.gamma[p.name]!
                let h = Swift.min(lambdaRel * Swift.max(g, eps) / Swift.max(norms[i], eps), 1)
                scales[i] = Float(h)
                state.gamma[p.name] = beta * g + (1 - beta) * Double(Float(h)) * norms[i]
            }
        }
        var touched: [String] = []
        for (i, p) in parameters.enumerated() where scales[i] < 1 {
            guard let g = p.tensor.grad else { continue }
            GradientClipping.scale([g], by: scales[i])
            touched.append(p.name)
        }
        let after = l2(zip(norms, scales).map { $0 * Double($1) })
        return ClipReport(
            normBefore: Float(global), normAfter: Float(after), scale: scales.min() ?? 1, threshold: warm ? Float(lambdaAbs) : nil,
            touched: touched)
    }

    /// The step count and every γ, for checkpoints.
    public func stateDict() -> ClipperState { state.saved }

    /// Restores a state `stateDict()` returned; throws for one that is not AdaGC's.
    public func load(stateDict: ClipperState) throws {
        guard let st = stateDict["step"] else { throw ClipperStateError.missingKey(clipper: name, key: "step") }
        guard st.count == 1, let n = Int(exactly: st[0]), n >= 0 else {
            throw ClipperStateError.badValue(clipper: name, key: "step", expected: "one whole number ≥ 0")
        }
        var g: [String: Double] = [:]
        for (k, v) in stateDict where k.hasPrefix("gamma.") {
            guard v.count == 1, v[0].isFinite, v[0] >= 0 else {
                throw ClipperStateError.badValue(clipper: name, key: k, expected: "one finite number ≥ 0")
            }
            g[String(k.dropFirst(6))] = v[0]
        }
        state = State(step: n, gamma: g)
    }
}
