import Foundation
import GradGuardDistributed
import GradGuardHealth
import GradGuardTensor

/// Appends the run's records as JSON Lines: `metrics.jsonl` (one object per step and per
/// evaluation) and `incidents.jsonl` (one per guard incident). Each line is written and
/// flushed as it comes, so a crash loses at most the line being written.
public final class RunRecorder {
    /// The run directory.
    public let directory: String
    private let metrics: AppendFile
    private let incidents: AppendFile
    private let encoder: JSONEncoder

    /// Opens (or creates) the two files in `directory`, cutting off a torn last line.
    public init(directory: String) throws {
        self.directory = directory
        let fm = FileManager.default
        do { try fm.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw FileError.cannotWrite(path: directory, reason: AtomicFile.reason(error))
        }
        // A torn last line (a crash mid-write) is cut off, so new records start whole.
        metrics = try AppendFile(path: directory + "/metrics.jsonl", wholeLines: true)
        incidents = try AppendFile(path: directory + "/incidents.jsonl", wholeLines: true)
        encoder = RunRecords.encoder([.sortedKeys])
    }

    func append<T: Encodable>(_ value: T, to file: AppendFile) throws {
        var data = try encoder.encode(value)
        data.append(0x0A)
        try file.append(data)
    }

    /// Appends a step's line to `metrics.jsonl`.
    public func record(_ metric: StepRecord) throws { try append(metric, to: metrics) }
    /// Appends an evaluation's line to `metrics.jsonl`.
    public func record(_ evaluation: EvaluationRecord) throws { try append(evaluation, to: metrics) }
    /// Appends an incident's line to `incidents.jsonl`.
    public func record(_ incident: Incident) throws { try append(incident, to: incidents) }
}

/// One line of `metrics.jsonl` for a training step.
public struct StepRecord: Codable, Sendable {
    /// `"step"`: what kind of line this is.
    public var kind = "step"
    /// The step: updates applied before it.
    public let step: Int
    /// The epoch it belongs to.
    public let epoch: Int
    /// The step's loss (the mean over every rank's batch).
    public let loss: Float
    /// The first group's scheduled learning rate (before the guard's scale).
    public let lr: Double
    /// The global gradient norm before clipping.
    public let gradNorm: Float
    /// The global gradient norm after clipping, when a clipper ran.
    public let gradNormAfterClip: Float?
    /// Whether the clipper changed the gradients.
    public let clipped: Bool
    /// Whether the step was not applied (skipped or rolled back).
    public let skipped: Bool
    /// The guard's multiplier of the rate (back-off times the curvature cap).
    public let lrScale: Double
    /// The clipper's name and its threshold at this step, in the clipper's own unit: a global
    /// norm for `global-norm`, `zclip` (where clipping starts) and `autoclip`, a group norm for
    /// `per-module`/`per-parameter`, a value for `value`, an RMS for `block-rms`, a ratio
    /// for `agc`. Absent in records written before they were kept, and with no clipper.
    public var clipper: String? = nil
    /// The clipper's threshold at this step, in its own unit.
    public var clipThreshold: Float? = nil
    /// Per-module gradient norms (every `moduleNormsEvery` steps).
    public let moduleNorms: [String: Float]?
    /// Per-module update-to-weight ratios (same steps).
    public let updateRatios: [String: Float]?
    /// Examples in this step over every rank (absent in records written before it was kept).
    public var batch: Int? = nil
    /// In data-parallel training, every rank's loss, local gradient norm and compute, wait
    /// and communication seconds (`loss` and `gradNorm` above are over all ranks).
    public var ranks: [RankStatistics]? = nil
    /// The curvature cap's multiplier when below 1 (`lrScale` includes it).
    public var lrCap: Double? = nil
    /// At the steps the curvature probe ran: λ_max (of P⁻¹H for an adaptive optimizer), the
    /// optimizer's stability limit c/η at the rate of the update, the stability margin
    /// η·λ_max/c, and the probe's seconds.
    public var lambdaMax: Double? = nil
    /// c/η: the largest λ the rate is stable for (probe steps).
    public var stabilityLimit: Double? = nil
    /// η·λ_max/c: 1 is the stability limit (probe steps).
    public var stabilityMargin: Double? = nil
    /// The probe's seconds at this step.
    public var curvatureSeconds: Double? = nil
    /// The probe's time so far over the training time so far (this process's), at probe steps.
    public var curvatureShare: Double? = nil
    /// A model with attention: the largest attention logit q·k/√d of the step over all layers,
    /// and each layer's (every `moduleNormsEvery` steps).
    public var maxAttentionLogit: Float? = nil
    /// Each attention layer's largest logit (every `moduleNormsEvery` steps).
    public var attentionLogits: [String: Float]? = nil

    /// A step's record from its values (`init(step:epoch:loss:outcome:guard:…)` builds one
    /// from what a `GradientGuard` returned).
    public init(
        step: Int, epoch: Int = 0, loss: Float, lr: Double, gradNorm: Float, gradNormAfterClip: Float? = nil, clipped: Bool = false,
        skipped: Bool = false, lrScale: Double = 1, clipper: String? = nil, clipThreshold: Float? = nil, moduleNorms: [String: Float]? = nil,
        updateRatios: [String: Float]? = nil, batch: Int? = nil, ranks: [RankStatistics]? = nil
    ) {
        (self.step, self.epoch, self.loss, self.lr, self.gradNorm, self.gradNormAfterClip) = (step, epoch, loss, lr, gradNorm, gradNormAfterClip)
        (self.clipped, self.skipped, self.lrScale, self.clipper, self.clipThreshold) = (clipped, skipped, lrScale, clipper, clipThreshold)
        (self.moduleNorms, self.updateRatios, self.batch, self.ranks) = (moduleNorms, updateRatios, batch, ranks)
    }
}

/// The curvature probe over a run, from its step records: for `diagnose` and the report.
public struct CurvatureSummary: Sendable {
    /// How many probes ran.
    public let probes: Int
    /// The records of the first and the last probe.
    public let first: StepRecord, last: StepRecord
    /// The record of the largest stability margin.
    public let sharpest: StepRecord
    /// The probe's share of the training time at the last probe.
    public let share: Double?

    /// The summary of the probe steps among `steps`, nil when the probe never ran.
    public init?(steps: [StepRecord]) {
        let probed = steps.filter { $0.lambdaMax != nil && $0.stabilityMargin != nil }
        guard let first = probed.first, let last = probed.last else { return nil }
        probes = probed.count
        (self.first, self.last) = (first, last)
        sharpest = probed.max { ($0.stabilityMargin ?? 0) < ($1.stabilityMargin ?? 0) }!
        share = probed.last { $0.curvatureShare != nil }?.curvatureShare
    }

    /// Lines for a terminal.
    public var lines: [String] {
        func n(_ x: Double?) -> String { x.map(formatNumber) ?? "–" }
        var out = [
            "curvature: \(probes) probe\(probes == 1 ? "" : "s") (steps \(first.step)–\(last.step)); λ_max \(n(first.lambdaMax)) → \(n(last.lambdaMax)); "
                + "stability limit c/η \(n(last.stabilityLimit)) at the last (margin \(n(last.stabilityMargin)))",
            "  largest margin η·λ_max/c: \(n(sharpest.stabilityMargin)) at step \(sharpest.step)"
                + ((sharpest.stabilityMargin ?? 0) >= 1 ? " — past the limit: the rate was unstable along the sharpest direction" : "")
        ]
        if let share { out.append("  probe time: \(formatNumber(100 * share)) % of training time") }
        return out
    }
}

/// One line of `metrics.jsonl` for an evaluation.
public struct EvaluationRecord: Codable, Sendable {
    /// `"eval"`: what kind of line this is.
    public var kind = "eval"
    /// The step at which it ran.
    public let step: Int
    /// The epoch it belongs to.
    public let epoch: Int
    /// The metrics by name (`loss`, `bits_per_char`, `map50`, …).
    public let metrics: [String: Double]

    /// An evaluation's record.
    public init(step: Int, epoch: Int = 0, metrics: [String: Double]) { (self.step, self.epoch, self.metrics) = (step, epoch, metrics) }
}
