import Foundation

/// A probable cause of an incident, with its evidence.
public struct Cause: Sendable, Codable, Equatable {
    /// The causes the diagnosis can name.
    public enum Kind: String, Sendable, Codable {
        case learningRateTooHigh, initialisation, recurrentSpectralNorm, missingNormalisation, saturatingActivations
        /// A detector's usual failure modes: a warm-up shorter than the usual, a box-loss gain far
        /// above its default, a learning rate far above the linear-scaling rate for the batch.
        case warmupTooShort, boxLossGainTooHigh, learningRateTooHighForBatch
        /// One scale of a detector's decoupled head gets no assigned objects, hence no gradient.
        case unassignedScale
        /// The clipping threshold sits below the typical gradient norm.
        case clippingThresholdTooLow
        /// One batch unlike the others (corrupted inputs, wrong labels): its loss jumped while
        /// the weights had barely moved.
        case unusualBatch
    }
    /// Which cause.
    public let kind: Kind
    /// 0…1, used to rank the causes.
    public let confidence: Double
    /// The evidence, in a sentence with its numbers.
    public let evidence: String

    /// A cause with its confidence and evidence.
    public init(kind: Kind, confidence: Double, evidence: String) {
        (self.kind, self.confidence, self.evidence) = (kind, confidence, evidence)
    }
}

/// One thing the guard did at a step. Incidents record these; their text is rendered from them.
public enum TakenAction: Sendable, Codable, Equatable {
    /// Went back to the snapshot of `toStep`, undoing `undone` applied steps.
    case rolledBack(toStep: Int, undone: Int)
    /// Did not apply the step; `noSnapshot` when a rollback was wanted but there was none.
    case skipped(noSnapshot: Bool)
    /// Multiplied the learning rate by `factor`; `scale` is the multiplier now in force.
    case backedOff(factor: Double, scale: Double)
    /// Made the recovery stronger because the previous one, within `window` steps, did not hold.
    case escalated(window: Int)
    /// The clipper scaled the gradients from one global norm to another.
    case clipped(clipper: String, normBefore: Float, normAfter: Float)
    /// Recorded the finding and changed nothing.
    case reported
    /// Put back the weights and optimizer state of the best evaluation, at `step`.
    case restoredBest(step: Int)
    /// Stopped the run after the validation loss diverged `times` times.
    case stopped(times: Int)
    /// Capped the learning rate at `rate` (from `from`), for λ_max = `lambda` to sit at
    /// `margin` of the optimizer's stability limit; `scale` is the cap's multiplier now in force.
    case capped(from: Double, rate: Double, lambda: Double, margin: Double, scale: Double)

    /// The sentence shown in summaries, the report and `incidents.jsonl`'s `actions`.
    public var text: String {
        switch self {
        case let .rolledBack(to, undone): return "rolled back to the snapshot of step \(to) (\(undone) steps undone)"
        case let .skipped(noSnapshot): return noSnapshot ? "skipped the step (no snapshot to roll back to)" : "skipped the step"
        case let .backedOff(factor, scale): return "learning rate ×\(formatNumber(factor)) (scale now \(formatNumber(scale)))"
        case let .escalated(window): return "escalated: the last recovery was within \(window) steps"
        case let .clipped(name, before, after):
            return "clipped (\(name)) \(formatNumber(Double(before))) → \(formatNumber(Double(after)))"
        case .reported: return "reported"
        case let .restoredBest(step): return "restored the weights and optimizer state of step \(step) (the best validation loss)"
        case let .stopped(times): return "stopped: the validation loss diverged \(times) times"
        case let .capped(from, rate, lambda, margin, scale):
            return
                "learning rate capped \(formatNumber(from)) → \(formatNumber(rate)) (λ_max \(formatNumber(lambda)) at \(formatNumber(margin)) of the limit; cap ×\(formatNumber(scale)))"
        }
    }
}

/// One intervention of the guard: what was seen, what was done, who is to blame, why it
/// probably happened and what to change.
public struct Incident: Sendable, Codable {
    /// The step.
    public let step: Int
    /// What the detectors saw.
    public let findings: [Finding]
    /// What the guard did, in order.
    public let taken: [TakenAction]
    /// The same as sentences: `"skipped the step"`, `"learning rate ×0.5 (scale now 0.5)"`, …
    /// (all that records written before `taken` existed hold).
    public let actions: [String]
    /// The modules most to blame.
    public let blame: [Blame]
    /// Ranked, most likely first.
    public let causes: [Cause]
    /// What to change, most useful first.
    public var recommendations: [String]
    /// The replay record of the step (`replay/…` in the run directory), when one was kept.
    public var replay: String? = nil
    /// The batch's examples ranked by their gradient norm, when the data blame ran.
    public var samples: [SampleBlame]? = nil
    /// The curvature probe's margin history at this step, when the probe runs: "λ_max rose
    /// from 3.1 to 41 over 200 steps; at lr 0.3 the limit is 6.7 …, margin 6.1: use lr ≤ 0.045".
    public var curvature: String? = nil

    /// An incident of `step`.
    public init(step: Int, findings: [Finding], taken: [TakenAction], blame: [Blame], causes: [Cause], recommendations: [String]) {
        (self.step, self.findings, self.taken, self.blame, self.causes, self.recommendations) = (step, findings, taken, blame, causes, recommendations)
        actions = taken.map(\.text)
    }

    enum CodingKeys: String, CodingKey { case step, findings, taken, actions, blame, causes, recommendations, replay, samples, curvature }

    /// Reads an incident, also one written before `taken` existed.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        step = try c.decode(Int.self, forKey: .step)
        findings = try c.decode([Finding].self, forKey: .findings)
        taken = try c.decodeIfPresent([TakenAction].self, forKey: .taken) ?? []
        actions = try c.decode([String].self, forKey: .actions)
        blame = try c.decode([Blame].self, forKey: .blame)
        causes = try c.decode([Cause].self, forKey: .causes)
        recommendations = try c.decode([String].self, forKey: .recommendations)
        replay = try c.decodeIfPresent(String.self, forKey: .replay)
        samples = try c.decodeIfPresent([SampleBlame].self, forKey: .samples)
        curvature = try c.decodeIfPresent(String.self, forKey: .curvature)
    }

    /// One paragraph for a terminal.
    public var summary: String {
        var lines = ["step \(step): " + findings.map(\.message).joined(separator: "; ")]
        if !blame.isEmpty {
            lines.append(
                "  blame: "
                    + blame.prefix(3).map { b in
                        let since = b.departedAt.map { " since step \($0)" } ?? ""
                        return "\(b.module.isEmpty ? "(root)" : b.module) (×\(formatNumber(Double(b.ratio)))\(since))"
                    }.joined(separator: ", "))
        }
        if !actions.isEmpty { lines.append("  done: " + actions.joined(separator: "; ")) }
        for c in causes { lines.append("  cause (\(Int((c.confidence * 100).rounded())) %): \(c.kind.rawValue) — \(c.evidence)") }
        if let curvature { lines.append("  curvature: \(curvature)") }
        for r in recommendations { lines.append("  try: \(r)") }
        if let replay { lines.append("  replay record: \(replay) (gradguard replay RUN --incident K re-runs the step)") }
        if let top = samples?.first { lines.append("  largest share of the gradient: \(top.source), \(Int((top.share * 100).rounded())) %") }
        return lines.joined(separator: "\n")
    }
}

/// One example of a step's batch and its share of the gradient: its loss and the L2 norm of the
/// gradient it alone gives (the batch run one example at a time).
public struct SampleBlame: Sendable, Codable, Equatable {
    /// The example's index in the dataset.
    public let index: Int
    /// Where it comes from: an image and its label file, a file and line, a stretch of text.
    public let source: String
    /// Its loss.
    public let loss: Float
    /// The L2 norm of its gradient.
    public let gradNorm: Float
    /// Its gradient norm over the sum of the batch's (0 … 1).
    public let share: Float

    /// An example's blame.
    public init(index: Int, source: String, loss: Float, gradNorm: Float, share: Float) {
        (self.index, self.source, self.loss, self.gradNorm, self.share) = (index, source, loss, gradNorm, share)
    }
}

/// Raised when the guard gives up: recoveries kept failing.
public struct TrainingDiverged: Error, CustomStringConvertible, Sendable {
    /// The step it gave up at.
    public let step: Int
    /// Recoveries in a row that failed.
    public let failedRecoveries: Int
    /// The run's incidents.
    public let incidents: [Incident]

    /// The guard gave up at `step`.
    public init(step: Int, failedRecoveries: Int, incidents: [Incident]) {
        (self.step, self.failedRecoveries, self.incidents) = (step, failedRecoveries, incidents)
    }

    /// Why the run halted, with the last incident's summary.
    public var description: String {
        "training diverged at step \(step) after \(failedRecoveries) failed recoveries\n"
            + (incidents.last?.summary ?? "")
    }
}

/// A number in short human form: 3 significant digits, scientific below 1e-3 or above 1e4.
public func formatNumber(_ x: Double) -> String {
    if !x.isFinite { return "\(x)" }
    let a = Swift.abs(x)
    if a != 0 && (a < 1e-3 || a >= 1e4) { return String(format: "%.2g", x) }
    return String(format: "%.3g", x)
}

/// `x` rounded to one significant digit (3e-4, 0.02, 2.1 stays 2): a value people type.
public func roundToOneDigit(_ x: Double) -> Double {
    guard x > 0, x.isFinite else { return x }
    let e = (x.log10Floor)
    let scale = pow10(e)
    return (x / scale).rounded() * scale
}

extension Double {
    var log10Floor: Int { Int(Foundation.log10(self).rounded(.down)) }
}

func pow10(_ e: Int) -> Double { Foundation.pow(10, Double(e)) }
