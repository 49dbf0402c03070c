import Foundation

/// What a detector saw.
public enum FindingKind: String, Sendable, Codable, CaseIterable {
    case nonFiniteLoss, nonFiniteGradient, nonFiniteWeights
    /// A global norm above the absolute ceiling (no baseline needed).
    case normCeiling
    case spike, growth, vanishing, lossDivergence
    /// The loss or the gradient norm far above its rolling mean in standard deviations
    /// (`RollingZScoreDetector`, OLMo-core's skip-step rule).
    case zScoreSpike
    /// The clipper acts on most steps: it has become a smaller learning rate, not a guard
    /// against spikes.
    case overClipping
    /// The validation loss rose far above its best while training went on.
    case validationDivergence
    /// One rank's local gradient norm stands out among the ranks on most recent steps
    /// (data-parallel training: a bad shard or a faulty host).
    case rankOutlier
    /// Weights far larger than their fan-in allows, seen before the first update (an N(0, 1)
    /// start): the gradients that follow are out of scale from step 0.
    case initialScale
    /// An applied update moved a module by a large fraction of its weight norm (a rate too high
    /// for the weights), reported after the step.
    case largeUpdate
    /// The loss has not fallen since the start over many steps (vanishing gradients, or a rate
    /// so high that training bounces).
    case stalled
    /// The curvature probe found the rate near or past the optimizer's stability limit
    /// (η·λ_max above the warning fraction of its threshold): foresight, before any spike.
    case edgeOfStability
    /// An attention layer's largest logit q·k/√d is high and still growing: the attention is
    /// collapsing onto single keys (attention-logit growth, Dehghani et al. 2023; what QK-clip
    /// and QK-norm prevent), a loss spike's usual forerunner in transformers.
    case attentionLogitGrowth

    /// Whether the step's gradients must not be applied as they are.
    public var isExploding: Bool {
        ![.vanishing, .overClipping, .validationDivergence, .rankOutlier, .initialScale, .largeUpdate, .stalled, .edgeOfStability, .attentionLogitGrowth]
            .contains(self)
    }
}

/// A module named in a finding, with how far it is from its own baseline.
public struct Blame: Sendable, Codable, Equatable {
    /// The module's dotted name.
    public let module: String
    /// Gradient norm now over the module's own healthy baseline (∞ for a non-finite norm).
    public let ratio: Float
    /// The step since which the module has been above `departureFactor` × its baseline.
    public let departedAt: Int?

    /// A module `ratio` times its baseline, above it since `departedAt`.
    public init(module: String, ratio: Float, departedAt: Int? = nil) {
        (self.module, self.ratio, self.departedAt) = (module, ratio, departedAt)
    }
}

/// A typed finding: the step, the evidence in numbers, and the modules ranked by blame
/// (first to depart from its own baseline, then by ratio).
public struct Finding: Sendable, Codable {
    /// What was seen.
    public let kind: FindingKind
    /// The step it was seen at.
    public let step: Int
    /// The finding in one sentence, with its numbers.
    public let message: String
    /// The numbers behind it, by name.
    public let evidence: [String: Double]
    /// The modules, most to blame first.
    public var blame: [Blame]
    /// Tensors concerned (non-finite gradients or weights, vanishing parameters).
    public let tensors: [String]
    /// The ranks of a data-parallel job behind the finding (nil: one process, or not known).
    public var ranks: [Int]? = nil

    /// A finding of `kind` at `step`.
    public init(
        kind: FindingKind, step: Int, message: String, evidence: [String: Double] = [:], blame: [Blame] = [],
        tensors: [String] = []
    ) {
        self.kind = kind
        self.step = step
        self.message = message
        self.evidence = evidence
        self.blame = blame
        self.tensors = tensors
    }
}

/// Looks at each step's statistics and reports what is wrong, if anything. Detectors keep
/// their history from healthy steps only: the monitor tells them whether the step was kept.
public protocol GradientDetector: AnyObject {
    var name: String { get }
    func inspect(_ stats: StepStatistics, baselines: ModuleBaselines) -> Finding?
    /// Called after every step with whether it was healthy (and applied).
    func record(_ stats: StepStatistics, healthy: Bool)
    /// The detector's history, for checkpoints (empty for stateless detectors): a stateful
    /// detector keeps a typed `SavedState` and writes it as named lists of numbers.
    func stateDict() -> SavedNumbers
    func load(stateDict: SavedNumbers)
}

extension GradientDetector {
    /// Nothing to remember.
    public func record(_ stats: StepStatistics, healthy: Bool) {}
    /// No state.
    public func stateDict() -> SavedNumbers { [:] }
    /// No state to restore.
    public func load(stateDict: SavedNumbers) {}
}

// MARK: - Small statistics helpers

func median(_ xs: [Double]) -> Double {
    guard !xs.isEmpty else { return .nan }
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Least-squares slope of ys against 0, 1, 2, … and the coefficient of determination.
func linearTrend(_ ys: [Double]) -> (slope: Double, r2: Double) {
    let n = Double(ys.count)
    guard ys.count >= 3 else { return (0, 0) }
    let mx = (n - 1) / 2, my = ys.reduce(0, +) / n
    var sxy = 0.0, sxx = 0.0, syy = 0.0
    for (i, y) in ys.enumerated() {
        let dx = Double(i) - mx, dy = y - my
        sxy += dx * dy
        sxx += dx * dx
        syy += dy * dy
    }
    let slope = sxy / sxx
    return (slope, syy > 0 ? (sxy * sxy) / (sxx * syy) : 0)
}

/// A bounded list of the latest values.
struct Window {
    let capacity: Int
    var values: [Double] = [] {
        didSet { if values.count > capacity { values.removeFirst(values.count - capacity) } }
    }
    init(_ capacity: Int) { self.capacity = capacity }
    mutating func append(_ v: Double) { values.append(v) }
    var count: Int { values.count }
}
