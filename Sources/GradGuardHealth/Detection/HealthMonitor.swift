/// Runs a set of detectors on each step's statistics and keeps the per-module baselines
/// that rank blame. Usable alone from a hand-written loop:
///
/// ```swift
/// let monitor = HealthMonitor()
/// let findings = monitor.inspect(stats)
/// monitor.record(stats, healthy: findings.isEmpty)
/// ```
public final class HealthMonitor {
    /// The detectors, run in this order.
    public var detectors: [any GradientDetector]
    /// Every module's healthy gradient norms, for blame.
    public let baselines: ModuleBaselines

    /// The standard set: non-finite values, spikes, sustained growth, vanishing, loss
    /// divergence, a stalled loss and attention-logit growth (for models with attention).
    public init(detectors: [any GradientDetector]? = nil, baselines: ModuleBaselines = ModuleBaselines()) {
        self.detectors =
            detectors ?? [
                NonFiniteDetector(), SpikeDetector(), GrowthDetector(), VanishingDetector(),
                LossDivergenceDetector(), StallDetector(), AttentionLogitDetector()
            ]
        self.baselines = baselines
    }

    /// Every finding of this step, most severe first (non-finite values, then a norm above
    /// the ceiling, spikes, growth, loss divergence and vanishing).
    public func inspect(_ stats: StepStatistics) -> [Finding] {
        let order: [FindingKind] = [
            .nonFiniteWeights, .nonFiniteLoss, .nonFiniteGradient, .normCeiling, .spike, .zScoreSpike, .growth,
            .lossDivergence, .vanishing, .stalled, .attentionLogitGrowth
        ]
        // Kinds outside the list (a detector of the user's, the rank monitor's) come last.
        func rank(_ k: FindingKind) -> Int { order.firstIndex(of: k) ?? order.count }
        return detectors.compactMap { $0.inspect(stats, baselines: baselines) }
            .sorted { rank($0.kind) < rank($1.kind) }
    }

    /// Tells the detectors and baselines whether the step was healthy and applied, so that
    /// only healthy steps enter their histories.
    public func record(_ stats: StepStatistics, healthy: Bool) {
        baselines.update(stats, healthy: healthy)
        for d in detectors { d.record(stats, healthy: healthy) }
    }

    /// The detectors' and baselines' histories, for checkpoints: keys `<detector>.<key>` and
    /// `baselines.<key>`.
    public func stateDict() -> [String: [Double]] {
        var out: [String: [Double]] = [:]
        for d in detectors { for (k, v) in d.stateDict() { out["\(d.name).\(k)"] = v } }
        for (k, v) in baselines.stateDict() { out["baselines.\(k)"] = v }
        return out
    }

    /// Restores the histories `stateDict()` returned (keys of absent detectors are ignored).
    public func load(stateDict: [String: [Double]]) {
        for d in detectors {
            let prefix = d.name + "."
            d.load(
                stateDict: Dictionary(
                    uniqueKeysWithValues: stateDict.filter { $0.key.hasPrefix(prefix) }
                        .map { (String($0.key.dropFirst(prefix.count)), $0.value) }))
        }
        baselines.load(
            stateDict: Dictionary(
                uniqueKeysWithValues: stateDict.filter { $0.key.hasPrefix("baselines.") }
                    .map { (String($0.key.dropFirst(10)), $0.value) }))
    }

    /// The first detector of a type, to read its history.
    public func detector<D: GradientDetector>(_ type: D.Type) -> D? {
        detectors.lazy.compactMap { $0 as? D }.first
    }
}
