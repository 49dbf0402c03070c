import Foundation
import GradGuardNN
import GradGuardOptim
import GradGuardTensor

/// What the guard did with one step.
public struct StepOutcome: Sendable {
    public enum Decision: Sendable, Equatable {
        /// The optimizer (and schedule) stepped.
        case applied
        /// The step was not applied.
        case skipped
        /// The run went back to the snapshot taken at step `toStep`; the batches of the steps
        /// in `undone` (up to and including the failed one) preceded the trouble and are best
        /// not fed again (what PaLM's authors did after a loss spike).
        case rolledBack(toStep: Int, undone: Range<Int>)
    }
    public let decision: Decision
    public let stats: StepStatistics
    public let clip: ClipReport?
    public let findings: [Finding]
    public let incident: Incident?
    /// The learning-rate multiplier in force after this step (1: as scheduled).
    public let lrScale: Double
}

/// When a learning-rate schedule advances: after every applied optimizer step, or at the
/// end of every epoch. `GradientGuard` is the one owner that steps it.
public enum ScheduleCadence: String, Codable, Sendable { case step, epoch }

/// Gradient health for a training loop: measures every step, runs the detectors, applies
/// the policy (clip, skip, back off, roll back, halt) and calls the optimizer. It replaces
/// `optimizer.step()` in a hand-written loop:
///
/// ```swift
/// let guardian = GradientGuard(model: model, optimizer: opt, policy: GuardPolicy(clipper: ZClip()))
/// for batch in batches {
///     opt.zeroGrad()
///     let loss = lossFunction(model(batch.x), batch.y)
///     loss.backward()
///     let outcome = try guardian.step(loss: loss.item)   // throws TrainingDiverged
/// }
/// ```
public final class GradientGuard {
    public let health: GradientHealth
    public let monitor: HealthMonitor
    public var policy: GuardPolicy
    public let optimizer: Optimizer
    public let scheduler: LRScheduler?
    public let scheduleCadence: ScheduleCadence
    public var diagnostician: Diagnostician
    /// Applied steps (skipped ones do not count).
    public var step: Int { memory.step }
    /// The recovery history and snapshot positions that decisions depend on.
    public private(set) var memory = GuardMemory()
    public private(set) var skippedSteps = 0
    public private(set) var rollbacks = 0
    /// Applied steps undone by rollbacks (each rollback also loses the failed step itself).
    public private(set) var undoneSteps = 0
    public private(set) var incidents: [Incident] = []
    public private(set) var lrScale = 1.0
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
    /// Called with each incident as it happens.
    public var onIncident: ((Incident) -> Void)?
    /// Called when a step has findings, after measuring and before acting: the weights are
    /// still those the step's forward pass used (a trainer keeps them for the step's replay).
    public var onFindings: ((StepStatistics, [Finding]) -> Void)?
    /// The ranks this guard trains with (nil or a world of one: a single process). In
    /// data-parallel training the guard averages the gradients over the ranks, sees every
    /// rank's statistics and takes the same decision as every other rank.
    public let communicator: (any Communicator)?
    /// Reports a rank whose local gradient norm keeps standing out.
    public var rankOutliers = RankOutlierMonitor()
    /// Checks that every rank holds the same parameters every this many applied steps (0: never).
    public var parameterCheckEvery = 100
    private let exchange: RankExchange?
    /// The gradient averaging of a data-parallel guard (nil in a single process).
    public var gradientSync: GradientSync? { exchange?.sync }
    private var lastStepEnd = Date()

    private let stateTensors: [Tensor]
    private var snapshot: TrainingSnapshot?
    /// The snapshot before `snapshot`: an escalated rollback goes there when the newest was
    /// taken at the very step that went wrong (its weights already in the bad region).
    private var previousSnapshot: TrainingSnapshot?
    private var healthyStreak = 0
    private var healthyNorms = Window(500)
    private var lrHistory = Window(21)
    /// Losses of recent healthy steps and the largest module update ratio of recent applied
    /// steps, for the diagnosis (not saved in checkpoints: they refill within a few dozen steps).
    private var healthyLosses = Window(50)
    private var updateRatios = Window(20)
    /// The weights were out of scale for their fan-in before the first update.
    private var startedOutOfScale = false

    /// Guards the named `parameters`; `buffers` (running statistics) are included in snapshots.
    /// `layerTypes` maps module names to their layer type (`"Linear"`, `"Conv2d"`, …) for the
    /// initialisation checks; `init(model:…)` fills it.
    public init(
        parameters: [NamedParameter], buffers: [Tensor] = [], layerTypes: [String: String] = [:],
        optimizer: Optimizer, scheduler: LRScheduler? = nil, scheduleCadence: ScheduleCadence = .step,
        policy: GuardPolicy = GuardPolicy(), monitor: HealthMonitor = HealthMonitor(),
        probe: ActivationGradientProbe = ActivationGradientProbe(), communicator: (any Communicator)? = nil,
        bucketBytes: Int = 25 << 20
    ) {
        health = GradientHealth(parameters: parameters, probe: probe)
        self.communicator = communicator
        exchange = communicator.flatMap { c in
            c.isDistributed
                ? RankExchange(communicator: c, sync: GradientSync(parameters: parameters, communicator: c, bucketBytes: bucketBytes)) : nil
        }
        self.monitor = monitor
        self.policy = policy
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scheduleCadence = scheduleCadence
        diagnostician = Diagnostician(parameters: parameters, layerTypes: layerTypes)
        stateTensors = parameters.map(\.tensor) + buffers
    }

    public convenience init(
        model: Module, optimizer: Optimizer, scheduler: LRScheduler? = nil, scheduleCadence: ScheduleCadence = .step,
        policy: GuardPolicy = GuardPolicy(),
        monitor: HealthMonitor = HealthMonitor(), probe: ActivationGradientProbe = ActivationGradientProbe(),
        communicator: (any Communicator)? = nil, bucketBytes: Int = 25 << 20
    ) {
        self.init(
            parameters: NamedParameter.of(model), buffers: model.namedBuffers().map(\.tensor),
            layerTypes: Dictionary(
                model.namedModules().map { ($0.name, String(describing: type(of: $0.module))) },
                uniquingKeysWith: { a, _ in a }),
            optimizer: optimizer,
            scheduler: scheduler, scheduleCadence: scheduleCadence, policy: policy, monitor: monitor, probe: probe,
            communicator: communicator, bucketBytes: bucketBytes)
    }

    /// Inspects the gradients of the current step and applies or withholds it, in three
    /// phases: measure (statistics and detectors), decide (`GuardDecision.decide`, a pure
    /// function of the findings, the policy and the guard's memory), act.
    ///
    /// In data-parallel training (a `communicator` of more than one rank) measuring starts by
    /// exchanging every rank's local statistics and averaging the gradients; every rank then
    /// measures the same averaged gradient, takes the same decision (checked) and issues the
    /// same collectives. `loss` is this rank's; the step's is the mean over the ranks.
    public func step(loss: Float?) throws -> StepOutcome {
        if snapshot == nil && policy.snapshotEvery > 0 { takeSnapshot() }
        // Measure.
        var gathered: RankExchange.Gathered? = nil
        var stepLoss = loss
        if let exchange {
            exchange.communicator.heartbeat(step: memory.attempts)
            let compute = Date().timeIntervalSince(lastStepEnd)
            // Every bucket's reduce-scatter starts (those backward has not started) before the
            // statistics exchange: collectives go in the same order on every rank.
            try exchange.sync.launchRemaining()
            let g = try exchange.gather(loss: loss, activations: health.probe.collect(), computeSeconds: compute)
            let start = Date()
            try exchange.sync.finish(present: g.present)
            gathered = g
            gathered!.ranks[exchange.communicator.rank].communicationSeconds = Date().timeIntervalSince(start)
            stepLoss = g.loss
        }
        var stats = health.observe(step: step, loss: stepLoss, activations: gathered?.activations)
        var findings = monitor.inspect(stats)
        // Before the first update: weights out of scale for their fan-in (an N(0, 1) start).
        if memory.attempts == 0, let f = diagnostician.initialScaleFinding(step: stats.step) {
            findings.append(f)
            startedOutOfScale = true
        }
        if let g = gathered {
            findings = findings.map { $0.namingRanks(g.ranks) }
            if let f = rankOutliers.observe(step: stats.step, ranks: g.ranks) { findings.append(f) }
        }
        let exploding = findings.filter { $0.kind.isExploding }
        // A converged model's rare mistakes — spikes on batches whose loss is below that of the
        // first steps — are clipped every time but reported once in `quietSpikeSteps`: each is
        // an ordinary event of minibatch training.
        let mildSpikes = findings.allSatisfy { $0.kind == .spike && ($0.evidence["loss_ratio"] ?? .infinity) < 1 }
        var reported = findings
        if !findings.isEmpty && mildSpikes {
            if memory.attempts < quietSpikesUntil { reported = [] } else { quietSpikesUntil = memory.attempts + quietSpikeSteps }
        }
        if !reported.isEmpty { onFindings?(stats, reported) }
        // Decide.
        memory.snapshotStep = snapshot?.step
        memory.previousSnapshotStep = previousSnapshot?.step
        let decision = GuardDecision.decide(findings: findings, policy: policy, memory: memory)
        memory = decision.memory
        findings = reported
        if let exchange, var g = gathered {
            g.ranks = try exchange.agree(on: decision, ranks: g.ranks, step: stats.step)
            stats.ranks = g.ranks
        }
        // Act.
        var taken: [TakenAction] = []
        var outcome = StepOutcome.Decision.applied
        var clipReport: ClipReport? = nil
        if !exploding.isEmpty { healthyStreak = 0 }
        switch decision.disposition {
        case let .rollback(toStep, previous):
            if previous { snapshot = previousSnapshot }
            guard let snap = snapshot, snap.step == toStep else { preconditionFailure("the guard's snapshot is not the one decided on") }
            try snap.restore(optimizer: optimizer, scheduler: scheduler, clipper: policy.clipper)
            monitor.load(stateDict: snap.monitor)
            // Every rank restored its own copy of the same snapshot: check that they agree.
            try exchange?.checkParameters(what: "after the rollback to step \(snap.step)")
            outcome = .rolledBack(toStep: snap.step, undone: snap.step..<(step + 1))
            taken.append(.rolledBack(toStep: snap.step, undone: step - snap.step))
            undoneSteps += step - snap.step
            memory.step = snap.step
            rollbacks += 1
        case let .skip(noSnapshot):
            outcome = .skipped
            skippedSteps += 1
            taken.append(.skipped(noSnapshot: noSnapshot))
        case .apply:
            break
        }
        if decision.backOff {
            lrScale *= policy.backOffFactor
            taken.append(.backedOff(factor: policy.backOffFactor, scale: lrScale))
        }
        if decision.escalated { taken.append(.escalated(window: policy.recoveryWindow)) }

        if outcome == .applied {
            if let limit = decision.clipTo, stats.globalL2.isFinite, Double(stats.globalL2) > limit, limit > 0 {
                let before = stats.globalL2
                scaleGradients(health.parameters.map(\.tensor), by: Float(limit / Double(before)))
                taken.append(.clipped(clipper: "spike limit", normBefore: before, normAfter: Float(limit)))
            }
            if let clipper = policy.clipper {
                let r = try clipper.clip(health.parameters)
                clipReport = r
                if r.clipped, !findings.isEmpty { taken.append(.clipped(clipper: clipper.name, normBefore: r.normBefore, normAfter: r.normAfter)) }
                if let f = clipRate.record(step: stats.step, clip: r, recentNorms: Array(healthyNorms.values.suffix(clipRate.window))) {
                    findings.append(f)
                }
            }
            let wantRatios = updateRatioEvery > 0 && step % updateRatioEvery == 0
            if wantRatios { health.beforeUpdate() }
            applyOptimizerStep()
            let undoLarge = largeUpdate > 0 && policy.actions[.largeUpdate]?.contains(.backOff) == true
            if wantRatios {
                // The weights before the step are kept while it is judged: to undo it, or to hand
                // them to `onFindings` (a trainer's replay record) when it is only reported.
                health.recordUpdate(into: &stats, keepForUndo: largeUpdate > 0)
                let moved = stats.modules.compactMap { m in m.updateRatio.flatMap { $0.isFinite ? (m.name, Double($0)) : nil } }
                if let top = moved.max(by: { $0.1 < $1.1 }) {
                    updateRatios.append(top.1)
                    largestUpdate = Swift.max(largestUpdate, top.1)
                    if largeUpdate > 0, top.1 > largeUpdate, stats.step >= largeUpdateQuietUntil {
                        largeUpdateQuietUntil = stats.step + 10
                        findings.append(
                            Finding(
                                kind: .largeUpdate, step: stats.step,
                                message:
                                    "the update moved \(top.0.isEmpty ? "the model" : top.0) by \(formatNumber(100 * top.1)) % of its weight norm in one step (limit \(formatNumber(100 * largeUpdate)) %)",
                                evidence: ["ratio": top.1, "limit": largeUpdate],
                                blame: moved.sorted { $0.1 > $1.1 }.prefix(5).map { Blame(module: $0.0, ratio: Float($0.1)) }))
                        // Seen after the step, so acted on here: the step is undone (the weights
                        // go back; the optimizer keeps the gradient in its state) and the rate
                        // backs off by enough to bring the move under the limit — half of
                        // limit/ratio, at least the policy's factor, at most ×1/1000 at once.
                        if undoLarge, !decision.backOff {
                            let factor = Swift.max(Swift.min(policy.backOffFactor, 0.5 * largeUpdate / top.1), 1e-3)
                            lrScale *= factor
                            healthyStreak = 0
                            if health.undoUpdate() {
                                taken.append(.rolledBack(toStep: step, undone: 1))
                                rollbacks += 1
                                // The weights are again those the step's forward pass used: a
                                // trainer can keep them for the step's replay.
                                if reported.isEmpty { onFindings?(stats, [findings.last!]) }
                            }
                            taken.append(.backedOff(factor: factor, scale: lrScale))
                        } else if reported.isEmpty, let onFindings {
                            let finding = findings.last!
                            health.withWeightsBeforeUpdate { onFindings(stats, [finding]) }
                        }
                    }
                }
            }
            memory.step += 1
            if let exchange, parameterCheckEvery > 0, step % parameterCheckEvery == 0 {
                try exchange.checkParameters(what: "at step \(step)")
            }
            if exploding.isEmpty {
                healthyStreak += 1
                if stats.globalL2.isFinite { healthyNorms.append(Double(stats.globalL2)) }
                if let l = stats.loss, l.isFinite { healthyLosses.append(Double(l)) }
                if lrScale < 1 && healthyStreak % policy.growAfter == 0 {
                    lrScale = Swift.min(1, lrScale * policy.growFactor)
                }
                if policy.snapshotEvery > 0 && step % policy.snapshotEvery == 0 { takeSnapshot() }
            }
        }
        monitor.record(stats, healthy: exploding.isEmpty && outcome == .applied)
        lrHistory.append(optimizer.paramGroups.first?.lr ?? 0)

        var incident: Incident? = nil
        if !findings.isEmpty {
            let context = Diagnostician.Context(
                stats: stats, healthyNorms: healthyNorms.values,
                learningRate: optimizer.paramGroups.first.map { $0.lr * lrScale },
                earlierLearningRate: lrHistory.values.first, stepsSeen: memory.attempts, recentLosses: healthyLosses.values,
                updateRatios: updateRatios.values, clipping: policy.clipper != nil, largestUpdate: largestUpdate,
                startedOutOfScale: startedOutOfScale)
            let (causes, recs) = diagnostician.diagnose(findings, context: context)
            if taken.isEmpty { taken.append(.reported) }
            let inc = Incident(
                step: stats.step, findings: findings, taken: taken, blame: findings.first!.blame, causes: causes,
                recommendations: recs)
            incidents.append(inc)
            onIncident?(inc)
            incident = inc
            if decision.halt {
                throw TrainingDiverged(step: stats.step, failedRecoveries: memory.failedRecoveries, incidents: incidents)
            }
        }
        lastStepEnd = Date()
        return StepOutcome(decision: outcome, stats: stats, clip: clipReport, findings: findings, incident: incident, lrScale: lrScale)
    }

    /// Checks that every rank holds the same parameters (a digest per tensor); throws
    /// `CommunicatorError.mismatch` naming the first tensor that differs. Does nothing in a
    /// single process.
    public func checkParameters() throws {
        try exchange?.checkParameters(what: "at step \(step)")
    }

    /// Call before the last backward of a step in data-parallel training: the gradient
    /// buckets then start averaging while backward runs (without it they all start in `step`).
    public func prepareGradientSync() {
        exchange?.sync.arm()
    }

    /// Makes every rank's parameters and buffers rank 0's (at the start of training).
    public func broadcastParameters() throws {
        guard let c = communicator, c.isDistributed else { return }
        for t in stateTensors {
            try t.withUnsafeMutableScalars { try c.broadcast(UnsafeMutableRawBufferPointer($0), root: 0) }
        }
    }

    /// Records that the validation loss diverged and that the trainer put back the weights of
    /// the best evaluation (`bestStep`); backs off the learning rate. Returns the incident.
    @discardableResult
    public func validationDiverged(loss: Double, best: Double, bestStep: Int, stopping: Bool) -> Incident {
        lrScale *= policy.backOffFactor
        healthyStreak = 0
        var taken: [TakenAction] = [.restoredBest(step: bestStep), .backedOff(factor: policy.backOffFactor, scale: lrScale)]
        if stopping { taken.append(.stopped(times: policy.maxValidationRestores)) }
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
        let inc = Incident(step: step, findings: [finding], taken: taken, blame: [], causes: causes, recommendations: recs)
        incidents.append(inc)
        onIncident?(inc)
        return inc
    }

    /// Drops the in-memory rollback snapshots (the weights were replaced from outside).
    public func forgetSnapshots() {
        snapshot = nil
        previousSnapshot = nil
    }

    /// The optimizer step at the backed-off rate; the scheduled rates are put back after, so
    /// the schedule never sees the back-off.
    private func applyOptimizerStep() {
        let scheduled = optimizer.paramGroups.map(\.lr)
        if lrScale != 1 { for i in optimizer.paramGroups.indices { optimizer.paramGroups[i].lr = scheduled[i] * lrScale } }
        optimizer.step()
        if lrScale != 1 { for i in optimizer.paramGroups.indices { optimizer.paramGroups[i].lr = scheduled[i] } }
        if scheduleCadence == .step { scheduler?.step() }
    }

    /// Steps an epoch-cadence schedule; call at the end of every epoch (the trainer does).
    public func epochEnded() {
        if scheduleCadence == .epoch { scheduler?.step() }
    }

    // MARK: Saving and restoring

    /// The guard's counters, learning-rate scale, histories, detector and clipper state, for
    /// checkpoints: a run resumed from them guards exactly as the original. (The in-memory
    /// rollback snapshot is not saved; after a resume the first one is taken anew.)
    public struct State: Codable, Sendable {
        public var step, skippedSteps, rollbacks, healthyStreak, failedRecoveries, attempts: Int
        public var lastRecovery: Int?
        public var lrScale: Double
        public var healthyNorms, lrHistory: [Double]
        public var monitor: [String: [Double]]
        public var clipper: ClipperState?
        /// The clip-rate monitor's history (absent in checkpoints written before it existed).
        public var clipRate: [String: [Double]]?
    }

    public func stateDict() -> State {
        State(
            step: memory.step, skippedSteps: skippedSteps, rollbacks: rollbacks, healthyStreak: healthyStreak,
            failedRecoveries: memory.failedRecoveries, attempts: memory.attempts, lastRecovery: memory.lastRecovery, lrScale: lrScale,
            healthyNorms: healthyNorms.values, lrHistory: lrHistory.values, monitor: monitor.stateDict(),
            clipper: policy.clipper?.stateDict(), clipRate: clipRate.stateDict())
    }

    public func load(state s: State) throws {
        if let c = s.clipper { try policy.clipper?.load(stateDict: c) }
        (memory.step, skippedSteps, rollbacks, healthyStreak, memory.failedRecoveries, memory.attempts) =
            (s.step, s.skippedSteps, s.rollbacks, s.healthyStreak, s.failedRecoveries, s.attempts)
        memory.lastRecovery = s.lastRecovery
        lrScale = s.lrScale
        healthyNorms.values = s.healthyNorms
        lrHistory.values = s.lrHistory
        monitor.load(stateDict: s.monitor)
        clipRate.load(stateDict: s.clipRate ?? [:])
        snapshot = nil
        previousSnapshot = nil
    }

    private func takeSnapshot() {
        previousSnapshot = snapshot
        snapshot = TrainingSnapshot(
            step: step, tensors: stateTensors, optimizer: optimizer, scheduler: scheduler,
            clipper: policy.clipper, monitor: monitor.stateDict())
    }
}
