import Foundation
import GradGuardDistributed
import GradGuardNN
import GradGuardOptim
import GradGuardTensor

/// What the judge saw at one step: the statistics, every finding (what the decision reads)
/// and the findings worth a report (a converged model's mild spikes are reported once in
/// `StepJudge.quietSpikeSteps`).
public struct StepMeasurement: Sendable {
    /// The step's statistics.
    public var stats: StepStatistics
    /// Every finding of the step: the decision reads these.
    public var findings: [Finding]
    /// The findings recorded in an incident.
    public var reported: [Finding]
    /// Whether any finding is an exploding one (the step is not counted as healthy).
    public var exploding: Bool { findings.contains { $0.kind.isExploding } }
}

/// An update that moved a module by more than `StepJudge.largeUpdate` of its weight norm.
public struct LargeUpdate: Sendable {
    /// The finding, to report or act on.
    public let finding: Finding
    /// The learning-rate factor that brings the move under the limit (when the policy backs
    /// off on large updates): half of limit/ratio, at least the policy's factor, at most
    /// ×1/1000 at once.
    public let backOffFactor: Double
}

/// Gradient health's judgement of each step: measures it (statistics and detectors), decides
/// what to do (`GuardDecision.decide`, a pure function of the findings, the policy and the
/// memory), judges the update once applied, and diagnoses the incident. It performs no I/O
/// and calls nothing back: the step executor (`GradientGuard`, in GradGuardTrain) acts on
/// what it returns — clipping, skipping, rolling back, changing the rate, stepping the
/// optimizer and schedule — and tells it what was done.
public final class StepJudge {
    /// The statistics of every step.
    public let health: GradientHealth
    /// The detectors.
    public let monitor: HealthMonitor
    /// The clipper and the responses.
    public var policy: GuardPolicy
    /// Turns findings into causes and recommendations.
    public var diagnostician: Diagnostician
    /// Applied steps (skipped ones do not count).
    public var step: Int { memory.step }
    /// The recovery history and snapshot positions that decisions depend on.
    public var memory = GuardMemory()
    /// Update-to-weight ratios every this many steps (0: never).
    public var updateRatioEvery = 1
    /// An update that moves a module by more than this fraction of its weight norm is reported
    /// (`largeUpdate`; 0: never). A healthy step moves weights by about 0.1–1 %; a rate tens
    /// of times too high moves them by their own size on the first step, before the loss
    /// or the gradient shows anything.
    public var largeUpdate = 0.5
    private var largeUpdateQuietUntil = Int.min
    /// Steps after a reported spike of a converged model (its loss below the first steps')
    /// during which further such spikes are clipped without a report.
    public var quietSpikeSteps = 50
    private var quietSpikesUntil = Int.min
    /// The largest update ratio of any applied step so far.
    public private(set) var largestUpdate = 0.0
    /// Watches how often the clipper acts (chronic over-clipping is reported once).
    public var clipRate = ClipRateMonitor()
    /// Reports a rank whose local gradient norm keeps standing out.
    public var rankOutliers = RankOutlierMonitor()

    /// Global norms of recent healthy steps, and the learning rates of recent steps.
    var healthyNorms = Window(500)
    var lrHistory = Window(21)
    /// Losses of recent healthy steps and the largest module update ratio of recent applied
    /// steps, for the diagnosis (not saved in checkpoints: they refill within a few dozen steps).
    private var healthyLosses = Window(50)
    private var updateRatios = Window(20)
    /// The weights were out of scale for their fan-in before the first update.
    private var startedOutOfScale = false
    /// The curvature probe's recent readings (the margin history a diagnosis quotes).
    public private(set) var curvatureHistory: [CurvatureReading] = []
    /// Whether the last reading was above the warning level (a streak is reported once), and
    /// whether it met the level at all (two in a row at the level warn).
    private var curvatureWarned = false
    private var curvatureAtLevel = false
    /// The margins of the run's readings so far (after an adaptive optimizer's first steps).
    private var settledMargins = Window(50)
    /// Steps during which an adaptive optimizer's preconditioner is not judged: at its first
    /// steps P is built from one or two squared gradients (Adam's bias-corrected v̂₁ = g²), and
    /// P⁻¹H is far larger than the sharpness it settles at (GuardBench's healthy Adam runs read
    /// margins of 10–5000 at step 0 and under 1 from step 10 on).
    public var curvatureSettleSteps = 20

    /// Judges the named `parameters`. `layerTypes` maps module names to their layer type
    /// (`"Linear"`, `"Conv2d"`, …) for the initialisation checks.
    public init(
        parameters: [NamedParameter], layerTypes: [String: String] = [:], policy: GuardPolicy = GuardPolicy(),
        monitor: HealthMonitor = HealthMonitor(), probe: ActivationGradientProbe = ActivationGradientProbe()
    ) {
        health = GradientHealth(parameters: parameters, probe: probe)
        self.monitor = monitor
        self.policy = policy
        diagnostician = Diagnostician(parameters: parameters, layerTypes: layerTypes)
    }

    /// The layer type of every module of `model`, for `init(layerTypes:)`.
    public static func layerTypes(of model: Module) -> [String: String] {
        Dictionary(model.namedModules().map { ($0.name, String(describing: type(of: $0.module))) }, uniquingKeysWith: { a, _ in a })
    }

    // MARK: Measure

    /// Measures the current gradients: statistics, the detectors' findings, the initial-scale
    /// check before the first update. `loss` is the step's; in data-parallel training `ranks`
    /// holds every rank's statistics and `activations` the whole batch's activation
    /// gradients (the findings then name the ranks behind them).
    public func measure(
        loss: Float?, activations: [ActivationGradient]? = nil, ranks: [RankStatistics]? = nil, attentionLogits: [AttentionLogit]? = nil
    ) -> StepMeasurement {
        var stats = health.observe(step: step, loss: loss, activations: activations)
        stats.attentionLogits = attentionLogits
        var findings = monitor.inspect(stats)
        // Before the first update: weights out of scale for their fan-in (an N(0, 1) start).
        if memory.attempts == 0, let f = diagnostician.initialScaleFinding(step: stats.step) {
            findings.append(f)
            startedOutOfScale = true
        }
        if let ranks {
            findings = findings.map { $0.namingRanks(ranks) }
            if let f = rankOutliers.observe(step: stats.step, ranks: ranks) { findings.append(f) }
        }
        // A converged model's rare mistakes — spikes on batches whose loss is below that of the
        // first steps — are clipped every time but reported once in `quietSpikeSteps`: each is
        // an ordinary event of minibatch training.
        let mildSpikes = findings.allSatisfy { $0.kind == .spike && ($0.evidence["loss_ratio"] ?? .infinity) < 1 }
        var reported = findings
        if !findings.isEmpty && mildSpikes {
            if memory.attempts < quietSpikesUntil { reported = [] } else { quietSpikesUntil = memory.attempts + quietSpikeSteps }
        }
        return StepMeasurement(stats: stats, findings: findings, reported: reported)
    }

    /// Judges a curvature reading (taken before this step's update). A reading is at the level
    /// when its stability margin is at least `policy.curvatureWarning` and `policy.curvatureRise`
    /// times the median of the run's earlier margins — healthy runs hover at the edge of
    /// stability (margin ≈ 1, Cohen et al. 2021) with brief spikes, and what comes before a
    /// blow-up is the margin climbing past it and staying. An `edgeOfStability` finding needs two
    /// readings in a row at the level, or one at twice the warning (the first reading of a run:
    /// twice the warning). Every such reading is a finding (the decision caps on it); only the
    /// first of a streak is reported.
    public func curvature(_ r: CurvatureReading, into m: inout StepMeasurement) {
        curvatureHistory.append(r)
        if curvatureHistory.count > 50 { curvatureHistory.removeFirst() }
        m.stats.curvature = r
        let settled = !r.preconditioned || r.step >= curvatureSettleSteps
        guard settled, r.lambdaMax.isFinite, r.margin.isFinite else {
            curvatureWarned = false
            return
        }
        let earlier = settledMargins.values
        settledMargins.append(r.margin)
        let risen = earlier.isEmpty || r.margin >= policy.curvatureRise * Self.median(earlier)
        let atLevel = risen && r.margin >= policy.curvatureWarning
        let alarming = (risen && r.margin >= 2 * policy.curvatureWarning) || (atLevel && curvatureAtLevel && !earlier.isEmpty)
        curvatureAtLevel = atLevel
        guard alarming else {
            curvatureWarned = false
            return
        }
        let f = Finding(
            kind: .edgeOfStability, step: m.stats.step, message: Self.curvatureSentence(r, history: curvatureHistory, target: policy.capMargin),
            evidence: [
                "lambda_max": r.lambdaMax, "limit": r.limit, "margin": r.margin, "lr": r.lr, "threshold": r.threshold,
                "safe_lr": r.rate(atMargin: policy.capMargin)
            ])
        m.findings.append(f)
        if !curvatureWarned { m.reported.append(f) }
        curvatureWarned = true
    }

    static func median(_ v: [Double]) -> Double {
        let s = v.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// "λ_max rose from 3.1 to 41 over 200 steps; at lr 0.3 the limit is 6.7 (margin 6.1): use lr ≤ 0.045".
    public static func curvatureSentence(_ r: CurvatureReading, history: [CurvatureReading], target: Double) -> String {
        let what = r.preconditioned ? "λ_max(P⁻¹H)" : "λ_max"
        var s = "\(what) \(formatNumber(r.lambdaMax))"
        if let first = history.first, first.step < r.step, first.lambdaMax.isFinite {
            let verb = r.lambdaMax >= first.lambdaMax ? "rose" : "fell"
            s = "\(what) \(verb) from \(formatNumber(first.lambdaMax)) to \(formatNumber(r.lambdaMax)) over \(r.step - first.step) steps"
        }
        return s
            + "; at lr \(formatNumber(r.lr)) the limit is \(formatNumber(r.limit)) (\(r.rule)), margin \(formatNumber(r.margin)): use lr ≤ \(formatNumber(r.rate(atMargin: target)))"
    }

    // MARK: Decide

    /// Decides what to do with the measured step, given the steps of the executor's newest
    /// and one-before snapshots; the memory moves on with the decision.
    public func decide(_ m: StepMeasurement, snapshotStep: Int?, previousSnapshotStep: Int?) -> GuardDecision {
        memory.snapshotStep = snapshotStep
        memory.previousSnapshotStep = previousSnapshotStep
        let decision = GuardDecision.decide(findings: m.findings, policy: policy, memory: memory)
        memory = decision.memory
        return decision
    }

    // MARK: What the executor did

    /// The executor restored the snapshot of `step`, whose detector state was `monitorState`.
    public func rolledBack(to step: Int, monitorState: [String: [Double]]) {
        monitor.load(stateDict: monitorState)
        memory.step = step
    }

    /// The clipper acted on an applied step; returns a finding when it clips too often.
    public func clipped(_ report: ClipReport, stats: StepStatistics) -> Finding? {
        clipRate.record(step: stats.step, clip: report, recentNorms: Array(healthyNorms.values.suffix(clipRate.window)))
    }

    /// Whether the update of this step is to be measured (`health.beforeUpdate()` then
    /// `judgeUpdate`).
    public var measuresUpdate: Bool { updateRatioEvery > 0 && step % updateRatioEvery == 0 }

    /// Judges the update just applied (after `health.beforeUpdate()` and the optimizer step):
    /// records every module's update ratio in `stats` and returns a large update, at most one
    /// in ten steps. The weights before the update are kept until the next step, to undo it or
    /// to hand them to a replay record (`health.undoUpdate`, `health.withWeightsBeforeUpdate`).
    public func judgeUpdate(_ stats: inout StepStatistics) -> LargeUpdate? {
        health.recordUpdate(into: &stats, keepForUndo: largeUpdate > 0)
        let moved = stats.modules.compactMap { m in m.updateRatio.flatMap { $0.isFinite ? (m.name, Double($0)) : nil } }
        guard let top = moved.max(by: { $0.1 < $1.1 }) else { return nil }
        updateRatios.append(top.1)
        largestUpdate = Swift.max(largestUpdate, top.1)
        guard largeUpdate > 0, top.1 > largeUpdate, stats.step >= largeUpdateQuietUntil else { return nil }
        largeUpdateQuietUntil = stats.step + 10
        let finding = Finding(
            kind: .largeUpdate, step: stats.step,
            message:
                "the update moved \(top.0.isEmpty ? "the model" : top.0) by \(formatNumber(100 * top.1)) % of its weight norm in one step (limit \(formatNumber(100 * largeUpdate)) %)",
            evidence: ["ratio": top.1, "limit": largeUpdate],
            blame: moved.sorted { $0.1 > $1.1 }.prefix(5).map { Blame(module: $0.0, ratio: Float($0.1)) })
        return LargeUpdate(finding: finding, backOffFactor: Swift.max(Swift.min(policy.backOffFactor, 0.5 * largeUpdate / top.1), 1e-3))
    }

    /// Whether the policy undoes a large update and backs off (otherwise it is reported).
    public var undoesLargeUpdates: Bool { largeUpdate > 0 && policy.actions[.largeUpdate]?.contains(.backOff) == true }

    /// The executor applied the step: the step count moves on, and a healthy step joins the
    /// baselines.
    public func applied(_ stats: StepStatistics, healthy: Bool) {
        memory.step += 1
        guard healthy else { return }
        if stats.globalL2.isFinite { healthyNorms.append(Double(stats.globalL2)) }
        if let l = stats.loss, l.isFinite { healthyLosses.append(Double(l)) }
    }

    /// The step is over: the detectors learn from it (when healthy and applied) and the
    /// scheduled learning rate joins the history.
    public func stepEnded(_ stats: StepStatistics, healthy: Bool, learningRate: Double) {
        monitor.record(stats, healthy: healthy)
        lrHistory.append(learningRate)
    }

    // MARK: Diagnose

    /// The incident of a step with findings: the causes and what to change, with what was
    /// done (`taken`; "reported" when nothing). `learningRate` is the rate in force (scheduled
    /// × back-off).
    public func incident(stats: StepStatistics, findings: [Finding], taken: [TakenAction], learningRate: Double?) -> Incident {
        let context = Diagnostician.Context(
            stats: stats, healthyNorms: healthyNorms.values, learningRate: learningRate,
            earlierLearningRate: lrHistory.values.first, stepsSeen: memory.attempts, recentLosses: healthyLosses.values,
            updateRatios: updateRatios.values, clipping: policy.clipper != nil, largestUpdate: largestUpdate,
            startedOutOfScale: startedOutOfScale, curvature: curvatureHistory, capMargin: policy.capMargin)
        let (causes, recs) = diagnostician.diagnose(findings, context: context)
        var incident = Incident(
            step: stats.step, findings: findings, taken: taken.isEmpty ? [.reported] : taken, blame: findings.first!.blame, causes: causes,
            recommendations: recs)
        // Every incident of a probed run quotes the margin history.
        if let r = curvatureHistory.last(where: { $0.lambdaMax.isFinite }) {
            incident.curvature = Self.curvatureSentence(r, history: curvatureHistory, target: policy.capMargin)
        }
        return incident
    }

    /// The incident of a validation loss that diverged (the executor put back the best
    /// evaluation's weights, of `bestStep`, and did `taken`).
    public func validationIncident(loss: Double, best: Double, bestStep: Int, taken: [TakenAction]) -> Incident {
        let finding = Finding(
            kind: .validationDivergence, step: step,
            message:
                "validation loss \(formatNumber(loss)) is \(loss.isFinite ? formatNumber(loss / best) + "×" : "far above") the best \(formatNumber(best)) (step \(bestStep))",
            evidence: ["loss": loss, "best": best, "best_step": Double(bestStep)])
        var causes = [
            Cause(
                kind: .learningRateTooHigh, confidence: 0.5,
                evidence:
                    "the training gradients stayed healthy while the validation loss rose: the updates move the model away from what generalises (too high a rate, or overfitting)"
            )
        ]
        var recs = [
            "lower the learning rate (or add a decaying schedule such as cosine), or stop earlier; add weight decay or dropout if the training loss keeps falling"
        ]
        // The run's settings that explain a divergence (a detector's warm-up, gain, rate for its batch) come first.
        let explained = diagnostician.settingCauses(step: step)
        causes.insert(contentsOf: explained.map(\.0), at: 0)
        recs.insert(contentsOf: explained.map(\.1), at: 0)
        return Incident(step: step, findings: [finding], taken: taken, blame: [], causes: causes, recommendations: recs)
    }

    // MARK: Saving and restoring

    /// What the curvature warning remembers: recent readings, the run's margins so far and
    /// whether the last reading warned.
    public struct CurvatureMemory: Sendable, Codable, Equatable {
        /// Recent readings.
        public var history: [CurvatureReading] = []
        /// The run's margins so far (after the settling steps).
        public var margins: [Double] = []
        /// Whether the last reading warned.
        public var warned = false
        /// Whether the last reading was at the level.
        public var atLevel = false
        /// An empty memory.
        public init() {}
    }

    /// The judge's part of a checkpoint: memory, baselines, detector and clip-rate state.
    public struct State: Sendable {
        /// The recovery history and snapshot positions.
        public var memory: GuardMemory
        /// Recent healthy norms and learning rates.
        public var healthyNorms, lrHistory: [Double]
        /// The detectors' histories.
        public var monitor: [String: [Double]]
        /// The clip-rate monitor's history.
        public var clipRate: [String: [Double]]
        /// The curvature warning's memory.
        public var curvature = CurvatureMemory()

        /// A state of the given parts.
        public init(memory: GuardMemory, healthyNorms: [Double], lrHistory: [Double], monitor: [String: [Double]], clipRate: [String: [Double]]) {
            (self.memory, self.healthyNorms, self.lrHistory, self.monitor, self.clipRate) = (memory, healthyNorms, lrHistory, monitor, clipRate)
        }
    }

    /// The judge's state now.
    public func stateDict() -> State {
        var s = State(
            memory: memory, healthyNorms: healthyNorms.values, lrHistory: lrHistory.values, monitor: monitor.stateDict(), clipRate: clipRate.stateDict())
        (s.curvature.history, s.curvature.margins, s.curvature.warned, s.curvature.atLevel) =
            (curvatureHistory, settledMargins.values, curvatureWarned, curvatureAtLevel)
        return s
    }

    /// Restores a state `stateDict()` returned.
    public func load(state s: State) {
        (memory.step, memory.failedRecoveries, memory.attempts, memory.lastRecovery) =
            (s.memory.step, s.memory.failedRecoveries, s.memory.attempts, s.memory.lastRecovery)
        healthyNorms.values = s.healthyNorms
        lrHistory.values = s.lrHistory
        monitor.load(stateDict: s.monitor)
        clipRate.load(stateDict: s.clipRate)
        (curvatureHistory, settledMargins.values, curvatureWarned, curvatureAtLevel) =
            (s.curvature.history, s.curvature.margins, s.curvature.warned, s.curvature.atLevel)
    }
}
