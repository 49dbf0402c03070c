import Foundation
import GradGuardTensor

/// ZClip (Kumar et al. 2025, "ZClip: Adaptive Spike Mitigation for LLM Pre-Training"),
/// z-score mode with adaptive scaling, as the authors' reference implementation:
///
/// - for the first `warmupSteps` steps the global L2 norms are collected (and, if
///   `maxNorm` is set, clipped to it); then μ and σ² are their mean and population variance;
/// - afterwards z = (g − μ)/(σ + eps); when z > zThreshold the gradients are clipped to
///   μ + zThreshold·σ/(z/zThreshold) = μ + zThreshold²·σ/z (times `clipFactor`, and at most
///   `maxNorm`), with `clip_grad_norm_`'s coefficient;
/// - μ ← α·μ + (1−α)·x and σ² ← α·σ² + (1−α)·(x − μ)² (with the new μ), where x is the
///   clipping threshold when one was computed, else the norm.
///
/// Unlike the reference, a NaN or infinite norm never enters the statistics (one such step
/// would leave μ and σ NaN for the rest of the run) and is not clipped. The reference's
/// `max_grad_norm` defaults to 1.0; here `maxNorm` defaults to none.
public final class ZClip: GradientClipper {
    /// α (the EMA factor), the z-score that clips, ε, and a factor on the clipped norm.
    public let alpha: Double, zThreshold: Double, eps: Double, clipFactor: Double
    /// Steps whose norms start the mean and variance.
    public let warmupSteps: Int
    /// An absolute ceiling on the norm (nil: none).
    public let maxNorm: Float?
    /// The warm-up's norms, then the running mean and variance of the norm (both or neither).
    public struct State: SavedState, Equatable {
        /// The warm-up's norms.
        public var warmup: [Double] = []
        /// The running mean and variance of the norm, after the warm-up.
        public var mean: Double? = nil, variance: Double? = nil
        /// The saved fields.
        public static let fields: [SavedField<State>] = [
            .numbers("warmup", \.warmup), .optional("mean", \.mean, omitWhenNil: true), .optional("variance", \.variance, omitWhenNil: true)
        ]
    }
    /// The clipper's state.
    public private(set) var state = State()
    /// The running mean of the norm (nil in the warm-up).
    public var mean: Double? { state.mean }
    /// The running variance of the norm (nil in the warm-up).
    public var variance: Double? { state.variance }
    /// `zclip`.
    public var name: String { "zclip" }

    /// ZClip with the reference's defaults unless given.
    public init(
        alpha: Double = 0.97, zThreshold: Double = 2.5, warmupSteps: Int = 25, clipFactor: Double = 1,
        maxNorm: Float? = nil, eps: Double = 1e-6
    ) {
        require(alpha > 0 && alpha < 1 && zThreshold > 0 && warmupSteps > 0, "ZClip: alpha in (0, 1), positive threshold and warm-up")
        self.alpha = alpha
        self.zThreshold = zThreshold
        self.warmupSteps = warmupSteps
        self.clipFactor = clipFactor
        self.maxNorm = maxNorm
        self.eps = eps
    }

    /// The threshold the current statistics give for `norm`, or nil when it is no outlier.
    func threshold(for norm: Double) -> Double? {
        guard let mu = mean, let v = variance else { return nil }
        let std = v.squareRoot()
        let z = (norm - mu) / (std + eps)
        guard z > zThreshold else { return nil }
        return (mu + zThreshold * std / (z / zThreshold)) * clipFactor
    }

    /// Clips a norm whose z-score is over the threshold, then updates the mean and variance.
    public func clip(_ parameters: [NamedParameter]) throws -> ClipReport {
        let norm = l2(gradientNorms(parameters))
        guard norm.isFinite else { return ClipReport(normBefore: Float(norm), normAfter: Float(norm)) }
        guard let mu = mean, let v = variance else {
            state.warmup.append(norm)
            if state.warmup.count >= warmupSteps {
                let m = state.warmup.reduce(0, +) / Double(state.warmup.count)
                state.mean = m
                state.variance = state.warmup.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(state.warmup.count)
                state.warmup = []
            }
            if let maxNorm { return clipToGlobalNorm(parameters, norm: norm, maxNorm: maxNorm) }
            return ClipReport(normBefore: Float(norm), normAfter: Float(norm))
        }
        let adaptive = threshold(for: norm)
        var effective = adaptive ?? norm
        if let maxNorm { effective = Swift.min(effective, Double(maxNorm)) }
        var report =
            norm > effective
            ? clipToGlobalNorm(parameters, norm: norm, maxNorm: Float(effective))
            : ClipReport(normBefore: Float(norm), normAfter: Float(norm))
        // The threshold reported is where clipping starts: the norm whose z-score is zThreshold
        // (or maxNorm if lower). A norm above it is brought to `effective`, below the line.
        var boundary = mu + zThreshold * (v.squareRoot() + eps)
        if let maxNorm { boundary = Swift.min(boundary, Double(maxNorm)) }
        report.threshold = Float(boundary)
        let x = adaptive ?? norm
        let newMean = alpha * mu + (1 - alpha) * x
        state.mean = newMean
        state.variance = alpha * v + (1 - alpha) * (x - newMean) * (x - newMean)
        return report
    }

    /// The warm-up norms or the mean and variance, for checkpoints.
    public func stateDict() -> ClipperState { state.saved }

    /// Restores a state `stateDict()` returned; throws for one that is not ZClip's.
    public func load(stateDict: ClipperState) throws {
        guard stateDict["warmup"] != nil else { throw ClipperStateError.missingKey(clipper: name, key: "warmup") }
        let m = stateDict["mean"], v = stateDict["variance"]
        guard (m == nil) == (v == nil), m.map({ $0.count == 1 && $0[0].isFinite }) ?? true,
            v.map({ $0.count == 1 && $0[0].isFinite && $0[0] >= 0 }) ?? true
        else {
            throw ClipperStateError.badValue(clipper: name, key: "mean/variance", expected: "one finite number each, or neither")
        }
        var loaded = State()
        loaded.read(stateDict)
        state = loaded
    }
}
