import GradGuardOptim
import GradGuardTensor

/// What a clipper did at one step.
public struct ClipReport: Sendable, Codable, Equatable {
    /// Global L2 norm of the gradients before and after clipping.
    public var normBefore: Float
    /// Global L2 norm of the gradients after clipping.
    public var normAfter: Float
    /// The factor the gradients were multiplied by: the global one for norm clippers, the
    /// smallest over tensors or units for per-tensor and unit-wise ones (1: untouched).
    public var scale: Float
    /// The threshold this step (a norm, an RMS or a value, as the clipper defines it), if any.
    public var threshold: Float?
    /// Tensors changed, or units as `name[i]` for unit-wise clipping.
    public var touched: [String]

    /// Whether any gradient was changed.
    public var clipped: Bool { !touched.isEmpty }

    /// A report of the norms, the scale, the threshold and the tensors touched.
    public init(normBefore: Float, normAfter: Float, scale: Float = 1, threshold: Float? = nil, touched: [String] = []) {
        self.normBefore = normBefore
        self.normAfter = normAfter
        self.scale = scale
        self.threshold = threshold
        self.touched = touched
    }
}

/// A clipper's state for checkpoints: named lists of numbers (a stateful clipper keeps a typed
/// `SavedState` and writes it as these).
public typealias ClipperState = SavedNumbers

/// What loading a clipper state found wrong.
public enum ClipperStateError: Error, CustomStringConvertible, Equatable {
    case missingKey(clipper: String, key: String)
    case badValue(clipper: String, key: String, expected: String)

    /// The clipper, the key and what was expected, in one sentence.
    public var description: String {
        switch self {
        case let .missingKey(c, k): return "\(c) state: key '\(k)' is missing"
        case let .badValue(c, k, e): return "\(c) state: key '\(k)' must be \(e)"
        }
    }
}

/// One way of clipping gradients in place. Every clipper reports what it did and saves its
/// state (empty for stateless ones) so that a resumed run clips exactly as the original.
public protocol GradientClipper: AnyObject {
    /// A short name for reports (`"global-norm"`, `"agc"`, …).
    var name: String { get }
    /// Clips the gradients of `parameters` in place.
    func clip(_ parameters: [NamedParameter]) throws -> ClipReport
    func stateDict() -> ClipperState
    func load(stateDict: ClipperState) throws
}

extension GradientClipper {
    /// No state.
    public func stateDict() -> ClipperState { [:] }
    /// No state to restore.
    public func load(stateDict: ClipperState) throws {}
}

// MARK: - Shared pieces, all on `GradientClipping`

/// L2 norm of each gradient (0 for a parameter without one), over the workers.
func gradientNorms(_ parameters: [NamedParameter]) -> [Double] {
    GradientClipping.norms(parameters.map(\.tensor.grad))
}

/// The L2 norm of a list of L2 norms.
func l2(_ norms: [Double]) -> Double { GradientClipping.combine(norms) }

/// Scales every gradient so that the global L2 norm `norm` becomes at most `maxNorm`
/// (`clip_grad_norm_` semantics: a non-finite norm leaves the gradients untouched here, so
/// that adaptive clippers never spread a NaN; detectors deal with it). Returns the report.
func clipToGlobalNorm(_ parameters: [NamedParameter], norm: Double, maxNorm: Float) -> ClipReport {
    guard norm.isFinite else { return ClipReport(normBefore: Float(norm), normAfter: Float(norm), threshold: maxNorm) }
    let coef = GradientClipping.coefficient(norm: norm, maxNorm: maxNorm)
    guard coef < 1 else { return ClipReport(normBefore: Float(norm), normAfter: Float(norm), threshold: maxNorm) }
    let grads = parameters.compactMap(\.tensor.grad)
    GradientClipping.scale(grads, by: coef)
    return ClipReport(
        normBefore: Float(norm), normAfter: Float(norm) * coef, scale: coef, threshold: maxNorm,
        touched: parameters.filter { $0.tensor.grad != nil }.map(\.name))
}
