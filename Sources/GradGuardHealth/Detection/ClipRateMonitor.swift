import Foundation

/// Chronic over-clipping: more than `threshold` of the last `window` applied steps were
/// clipped. A clipper that acts on nearly every step no longer catches spikes; it scales
/// every update down, which with SGD is a smaller learning rate chosen by accident. Reported
/// once, and again only after the clip rate has fallen below `rearm`.
public struct ClipRateMonitor: Sendable {
    /// Steps remembered, the clipped share that is reported, and the share below which it re-arms.
    public let window: Int, threshold: Double, rearm: Double
    /// Whether each remembered step was clipped, and whether a report may be made.
    struct State: SavedState {
        var clipped: [Bool] = []
        var armed = true
        static let fields: [SavedField<State>] = [.flags("clipped", \.clipped), .flag("armed", \.armed, default: true)]
    }
    private var state = State()

    /// A monitor with the given window and shares.
    public init(window: Int = 100, threshold: Double = 0.5, rearm: Double = 0.25) {
        self.window = window
        self.threshold = threshold
        self.rearm = rearm
    }

    /// The fraction of the remembered steps that were clipped.
    public var rate: Double { state.clipped.isEmpty ? 0 : Double(state.clipped.filter { $0 }.count) / Double(state.clipped.count) }

    /// Records an applied step; returns a finding when the clip rate has just crossed the threshold.
    public mutating func record(step: Int, clip: ClipReport, recentNorms: [Double]) -> Finding? {
        state.clipped.append(clip.clipped)
        if state.clipped.count > window { state.clipped.removeFirst(state.clipped.count - window) }
        guard state.clipped.count >= window else { return nil }
        if !state.armed {
            if rate < rearm { state.armed = true }
            return nil
        }
        guard rate > threshold else { return nil }
        state.armed = false
        let median = median(recentNorms)
        var evidence = ["clip_rate": rate, "window": Double(window)]
        if let t = clip.threshold { evidence["threshold"] = Double(t) }
        if median.isFinite { evidence["median_norm"] = median }
        let thresholdText = clip.threshold.map { " at \(formatNumber(Double($0)))" } ?? ""
        return Finding(
            kind: .overClipping, step: step,
            message: String(format: "%.0f %% of the last %d steps were clipped", 100 * rate, window)
                + thresholdText + (median.isFinite ? " (median gradient norm \(formatNumber(median)))" : "")
                + ": the clipper scales nearly every update down, acting as a smaller learning rate",
            evidence: evidence)
    }

    /// Which remembered steps were clipped, for checkpoints.
    public func stateDict() -> SavedNumbers { state.saved }

    /// Restores a state `stateDict()` returned.
    public mutating func load(stateDict: SavedNumbers) { state.read(stateDict) }
}
