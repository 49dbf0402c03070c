import GradGuardOptim
import GradGuardTensor

/// Clamps every gradient value to `[-clipValue, clipValue]` (`clip_grad_value_`).
public final class ClipByValue: GradientClipper {
    /// The largest gradient magnitude allowed.
    public let clipValue: Float
    /// `value`.
    public var name: String { "value" }

    /// Clamps every gradient value to ±`clipValue` (`clip_grad_value_`).
    public init(_ clipValue: Float) {
        require(clipValue >= 0, "ClipByValue: clipValue must be non-negative, got \(clipValue)")
        self.clipValue = clipValue
    }

    /// Clamps the values in place.
    public func clip(_ parameters: [NamedParameter]) throws -> ClipReport {
        let present = parameters.filter { $0.tensor.grad != nil }
        let results = GradientClipping.clamp(present.map { $0.tensor.grad! }, to: clipValue)
        let nb = Float(l2(results.map(\.normBefore))), na = Float(l2(results.map(\.normAfter)))
        return ClipReport(
            normBefore: nb, normAfter: na, scale: nb > 0 && nb.isFinite ? na / nb : 1, threshold: clipValue,
            touched: zip(present, results).filter { $0.1.changed }.map { $0.0.name })
    }
}

/// Rescales all gradients together so that their global norm is at most `maxNorm`, with
/// the exact semantics of `torch.nn.utils.clip_grad_norm_`: coefficient
/// `maxNorm / (norm + 1e-6)` clamped to 1, any norm order, and with `errorIfNonfinite` a
/// `NonFiniteNormError` instead of clipping a NaN or infinite norm (without it, like
/// PyTorch, a NaN norm multiplies the gradients by NaN). `measure` and `scale` are the two
/// halves, for callers that want to look at the norm before deciding.
public final class ClipByGlobalNorm: GradientClipper {
    /// The largest global norm allowed.
    public var maxNorm: Float
    /// The norm's order (2, 1, ∞ or p).
    public let normType: Float
    /// Whether a NaN or infinite norm throws (`NonFiniteNormError`) instead of being left to the detectors.
    public let errorIfNonfinite: Bool
    /// `global-norm`.
    public var name: String { "global-norm" }

    /// Clips the global norm at `maxNorm`, as `clip_grad_norm_`.
    public init(maxNorm: Float, normType: Float = 2, errorIfNonfinite: Bool = false) {
        require(maxNorm > 0 && normType > 0, "ClipByGlobalNorm: maxNorm and normType must be positive")
        self.maxNorm = maxNorm
        self.normType = normType
        self.errorIfNonfinite = errorIfNonfinite
    }

    /// The global gradient norm of order `normType`.
    public func measure(_ parameters: [NamedParameter]) -> Float {
        gradNorm(parameters.map(\.tensor), normType: normType)
    }

    /// Multiplies every gradient by `factor`.
    public func scale(_ parameters: [NamedParameter], by factor: Float) {
        scaleGradients(parameters.map(\.tensor), by: factor)
    }

    /// Scales every gradient by min(1, maxNorm/(norm + 1e-6)).
    public func clip(_ parameters: [NamedParameter]) throws -> ClipReport {
        let total = measure(parameters)
        if errorIfNonfinite && !total.isFinite { throw NonFiniteNormError(norm: total, normType: normType) }
        let coef = GradientClipping.coefficient(norm: Double(total), maxNorm: maxNorm)
        guard coef < 1 || coef.isNaN else { return ClipReport(normBefore: total, normAfter: total, threshold: maxNorm) }
        scale(parameters, by: coef)
        // An infinite norm gives coefficient 0 (as in PyTorch): the gradients become zeros.
        return ClipReport(
            normBefore: total, normAfter: coef == 0 ? 0 : total * coef, scale: coef, threshold: maxNorm,
            touched: parameters.filter { $0.tensor.grad != nil }.map(\.name))
    }
}

/// Clips groups of gradients separately, each to an L2 norm of at most `maxNorm` with
/// `clip_grad_norm_`'s coefficient: per module (DL4J's `ClipL2PerLayer`) or per parameter
/// tensor (`ClipL2PerParamType`).
public final class ClipPerGroup: GradientClipper {
    /// Whether each module's or each parameter's gradients form a group.
    public enum Grouping: String, Sendable, Codable { case module, parameter }
    /// The largest norm of a group.
    public let maxNorm: Float
    /// The groups.
    public let grouping: Grouping
    /// `per-module` or `per-parameter`.
    public var name: String { grouping == .module ? "per-module" : "per-parameter" }

    /// Clips each group's norm at `maxNorm`.
    public init(maxNorm: Float, per grouping: Grouping) {
        require(maxNorm > 0, "ClipPerGroup: maxNorm must be positive")
        self.maxNorm = maxNorm
        self.grouping = grouping
    }

    /// Scales each group whose norm is over `maxNorm` down to it.
    public func clip(_ parameters: [NamedParameter]) throws -> ClipReport {
        let norms = gradientNorms(parameters)
        let groups: [(String, [Int])] =
            grouping == .module
            ? parameters.moduleGroups.map { ($0.module, $0.indices) }
            : parameters.indices.map { (parameters[$0].name, [$0]) }
        var after = norms, touched: [String] = [], smallest: Float = 1
        for (label, members) in groups {
            let n = l2(members.map { norms[$0] })
            guard n.isFinite else { continue }
            let coef = GradientClipping.coefficient(norm: n, maxNorm: maxNorm)
            guard coef < 1 else { continue }
            GradientClipping.scale(members.compactMap { parameters[$0].tensor.grad }, by: coef)
            for i in members { after[i] = norms[i] * Double(coef) }
            touched.append(label.isEmpty ? "(root)" : label)
            smallest = Swift.min(smallest, coef)
        }
        return ClipReport(
            normBefore: Float(l2(norms)), normAfter: Float(l2(after)), scale: smallest, threshold: maxNorm,
            touched: touched)
    }
}

/// optax's `clip_by_block_rms`: every gradient tensor is divided by
/// `max(1, rms(g) / threshold)`, so that its root-mean-square is at most `threshold`.
public final class ClipByBlockRMS: GradientClipper {
    /// The largest RMS of a tensor's gradient.
    public let threshold: Float
    /// `block-rms`.
    public var name: String { "block-rms" }

    /// Clips each tensor's gradient RMS at `threshold` (optax's `clip_by_block_rms`).
    public init(threshold: Float) {
        require(threshold > 0, "ClipByBlockRMS: threshold must be positive")
        self.threshold = threshold
    }

    /// Scales each tensor whose gradient RMS is over the threshold down to it.
    public func clip(_ parameters: [NamedParameter]) throws -> ClipReport {
        let norms = gradientNorms(parameters)
        var after = norms, touched: [String] = [], smallest: Float = 1
        for (i, p) in parameters.enumerated() {
            guard let g = p.tensor.grad, g.count > 0, norms[i].isFinite else { continue }
            let rms = norms[i] / Double(g.count).squareRoot()
            let denom = Swift.max(1, Float(rms) / threshold)
            guard denom > 1 else { continue }
            GradientClipping.scale([g], by: 1 / denom)
            after[i] = norms[i] / Double(denom)
            touched.append(p.name)
            smallest = Swift.min(smallest, 1 / denom)
        }
        return ClipReport(
            normBefore: Float(l2(norms)), normAfter: Float(l2(after)), scale: smallest, threshold: threshold,
            touched: touched)
    }
}
