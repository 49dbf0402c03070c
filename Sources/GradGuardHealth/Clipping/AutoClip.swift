import Foundation
import GradGuardTensor

/// AutoClip (Seetharaman et al. 2020, "AutoClip: Adaptive Gradient Clipping for Source
/// Separation Networks"): every step the global L2 norm joins a history, and the gradients
/// are clipped (`clip_grad_norm_` coefficient) at the `percentile`-th percentile of that
/// history, linearly interpolated as NumPy's `percentile` does. The paper recommends p = 10.
///
/// The history keeps the last `historySize` finite norms (the paper keeps all of them; a
/// bound keeps memory and checkpoints small on long runs). A NaN or infinite norm is neither
/// recorded nor clipped: it is left for the detectors.
public final class AutoClip: GradientClipper {
    /// The percentile of the norm history that is the threshold.
    public let percentile: Double
    /// The most norms remembered.
    public let historySize: Int
    /// The finite norms so far, the last `historySize` of them.
    public struct State: SavedState, Equatable {
        /// The norms, oldest first.
        public var history: [Double] = []
        /// The saved fields.
        public static let fields: [SavedField<State>] = [.numbers("history", \.history)]
    }
    /// The clipper's state.
    public private(set) var state = State()
    /// The norms remembered, oldest first.
    public var history: [Double] { state.history }
    /// `autoclip`.
    public var name: String { "autoclip" }

    /// AutoClip at `percentile` (the paper's 10) over the last `historySize` norms.
    public init(percentile: Double = 10, historySize: Int = 10_000) {
        require((0...100).contains(percentile) && historySize > 0, "AutoClip: percentile in 0...100, history size positive")
        self.percentile = percentile
        self.historySize = historySize
    }

    /// NumPy's default ("linear") percentile of `values`.
    static func linearPercentile(_ values: [Double], _ q: Double) -> Double {
        let sorted = values.sorted()
        guard sorted.count > 1 else { return sorted.first ?? .nan }
        let pos = q / 100 * Double(sorted.count - 1)
        let lo = Int(pos.rounded(.down)), hi = Swift.min(lo + 1, sorted.count - 1)
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - Double(lo))
    }

    /// Records the norm, then clips at the percentile of the history.
    public func clip(_ parameters: [NamedParameter]) throws -> ClipReport {
        let norm = l2(gradientNorms(parameters))
        guard norm.isFinite else { return ClipReport(normBefore: Float(norm), normAfter: Float(norm)) }
        state.history.append(norm)
        if state.history.count > historySize { state.history.removeFirst(state.history.count - historySize) }
        let threshold = Float(Self.linearPercentile(history, percentile))
        return clipToGlobalNorm(parameters, norm: norm, maxNorm: threshold)
    }

    /// The norm history, for checkpoints.
    public func stateDict() -> ClipperState { state.saved }

    /// Restores a history `stateDict()` returned; throws for one that is not AutoClip's.
    public func load(stateDict: ClipperState) throws {
        guard let h = stateDict["history"] else { throw ClipperStateError.missingKey(clipper: name, key: "history") }
        guard h.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
            throw ClipperStateError.badValue(clipper: name, key: "history", expected: "finite non-negative norms")
        }
        var loaded = State()
        loaded.read(stateDict)
        loaded.history = Array(loaded.history.suffix(historySize))
        state = loaded
    }
}
