import Foundation
import GradGuardDistributed
import GradGuardHealth
import GradGuardNN
import GradGuardOptim
import GradGuardTensor

/// What the guard did with one step.
public struct StepOutcome: Sendable {
    /// What happened to the step's gradients.
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
    /// What happened to the step.
    public let decision: Decision
    /// What the step measured.
    public let stats: StepStatistics
    /// What the clipper did, when one ran.
    public let clip: ClipReport?
    /// Every finding of the step.
    public let findings: [Finding]
    /// The incident recorded for the step, if any.
    public let incident: Incident?
    /// The back-off's learning-rate multiplier in force after this step (1: as scheduled).
    public let lrScale: Double
    /// The curvature cap's multiplier in force after this step (1: no cap); the rate is
    /// scheduled × `lrScale` × `lrCap`.
    public var lrCap = 1.0
    /// Set when too many recoveries in a row failed: the run is to stop (`step` throws it).
    public var diverged: TrainingDiverged? = nil
    /// The incident's replay record or data blame could not be written (the incident is
    /// recorded without them; a trainer fails the step).
    public var replayError: (any Error)? = nil
}

/// When a learning-rate schedule advances: after every applied optimizer step, or at the
/// end of every epoch. `GradientGuard` is the one owner that steps it.
public enum ScheduleCadence: String, Codable, Sendable { case step, epoch }

/// What a step's replay record needs besides the weights: where its batches came from. The
/// trainer sets it before each step (`GradientGuard.step(loss:origin:)`).
public struct StepOrigin: Sendable {
    /// The step (updates applied before it).
    public var step: Int
    /// The epoch.
    public var epoch: Int
    /// The dataset indices of each micro-batch.
    public var microBatches: [[Int]]
    /// The default generator's state before the step's forward pass.
    public var random: [UInt64]

    /// Where a step's batch came from.
    public init(step: Int, epoch: Int, microBatches: [[Int]], random: [UInt64]) {
        (self.step, self.epoch, self.microBatches, self.random) = (step, epoch, microBatches, random)
    }
}

/// The step executor: gradient health for a training loop. Each step it has the judge
/// (`StepJudge`) measure the gradients and decide, then acts — clips, skips, rolls back,
/// changes the learning rate, steps the optimizer and the schedule — and keeps the replay
/// record and the data blame of an incident (`replay`). It replaces `optimizer.step()` in a
/// hand-written loop:
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
///
/// A loop that wants the phases itself calls the judge: `guardian.judge.measure(loss:)`,
/// `guardian.judge.decide(_:snapshotStep:previousSnapshotStep:)`, and acts on the
/// `GuardDecision` it returns (see `execute` for the order).
public final class GradientGuard {
    /// Measures and decides; holds the detectors, the policy and the diagnosis.
    public let judge: StepJudge
    /// The gradient statistics of every step.
    public var health: GradientHealth { judge.health }
    /// The detectors.
    public var monitor: HealthMonitor { judge.monitor }
    /// The clipper and the responses to each finding (settable between steps).
    public var policy: GuardPolicy {
        get { judge.policy }
        set { judge.policy = newValue }
    }
    /// Turns findings into incidents with causes and recommendations.
    public var diagnostician: Diagnostician {
        get { judge.diagnostician }
        set { judge.diagnostician = newValue }
    }
    /// The optimizer it steps.
    public let optimizer: any Optimizer
    /// The schedule it steps with the optimizer, if any.
    public let scheduler: LRScheduler?
    /// Whether the schedule steps every step or every epoch.
    public let scheduleCadence: ScheduleCadence
    /// Applied steps (skipped ones do not count).
    public var step: Int { judge.step }
    /// The recovery history and snapshot positions that decisions depend on.
    public var memory: GuardMemory { judge.memory }
    /// Steps not applied.
    public private(set) var skippedSteps = 0
    /// Rollbacks to a snapshot.
    public private(set) var rollbacks = 0
    /// Applied steps undone by rollbacks (each rollback also loses the failed step itself).
    public private(set) var undoneSteps = 0
    /// Every incident so far.
    public private(set) var incidents: [Incident] = []
    /// The back-off multiplier of the learning rate (1: none).
    public private(set) var lrScale = 1.0
    /// The curvature cap's learning-rate multiplier (1: none), set by `GuardAction.cap` at a
    /// probe and set again at every later probe while below 1 (lifted as the curvature relaxes).
    public private(set) var lrCap = 1.0
    /// The curvature probe (nil: none): λ_max against the optimizer's stability limit every
    /// `every` applied steps, before the step's update.
    public var curvature: CurvatureProbe?
    private var lastProbeAttempt: Int? = nil
    /// The ranks this guard trains with (nil or a world of one: a single process). In
    /// data-parallel training the guard averages the gradients over the ranks, sees every
    /// rank's statistics and takes the same decision as every other rank.
    public let communicator: (any Communicator)?
    /// Checks that every rank holds the same parameters every this many applied steps (0: never).
    public var parameterCheckEvery = 100
    private let exchange: RankExchange?
    /// The gradient averaging of a data-parallel guard (nil in a single process).
    public var gradientSync: GradientSync? { exchange?.sync }
    /// Keeps the replay record and ranks the examples of an incident's step (nil: neither).
    public var replay: ReplayKeeper?
    private var lastStepEnd = Date()

    /// The model whose weights a replay record holds (nil when built from parameters).
    private let model: Module?
    /// The model's attention layers, whose largest logits every step records (QK-clip's quantity).
    private let attentionLayers: [(name: String, layer: any AttentionLogitReporting)]
    private let stateTensors: [Tensor]
    private var snapshot: TrainingSnapshot?
    /// The snapshot before `snapshot`: an escalated rollback goes there when the newest was
    /// taken at the very step that went wrong (its weights already in the bad region).
    private var previousSnapshot: TrainingSnapshot?
    private var healthyStreak = 0

    /// Guards the named `parameters`; `buffers` (running statistics) are included in snapshots.
    /// `layerTypes` maps module names to their layer type (`"Linear"`, `"Conv2d"`, …) for the
    /// initialisation checks; `init(model:…)` fills it.
    public convenience init(
        parameters: [NamedParameter], buffers: [Tensor] = [], layerTypes: [String: String] = [:],
        optimizer: any Optimizer, scheduler: LRScheduler? = nil, scheduleCadence: ScheduleCadence = .step,
        policy: GuardPolicy = GuardPolicy(), monitor: HealthMonitor = HealthMonitor(),
        probe: ActivationGradientProbe = ActivationGradientProbe(), communicator: (any Communicator)? = nil,
        bucketBytes: Int = 25 << 20
    ) {
        self.init(
            judge: StepJudge(parameters: parameters, layerTypes: layerTypes, policy: policy, monitor: monitor, probe: probe),
            model: nil, buffers: buffers, optimizer: optimizer, scheduler: scheduler, scheduleCadence: scheduleCadence,
            communicator: communicator, bucketBytes: bucketBytes)
    }

    /// Guards `model`'s parameters (named as `namedParameters()` names them), its buffers in snapshots.
    public convenience init(
        model: Module, optimizer: any Optimizer, scheduler: LRScheduler? = nil, scheduleCadence: ScheduleCadence = .step,
        policy: GuardPolicy = GuardPolicy(),
        monitor: HealthMonitor = HealthMonitor(), probe: ActivationGradientProbe = ActivationGradientProbe(),
        communicator: (any Communicator)? = nil, bucketBytes: Int = 25 << 20
    ) {
        self.init(
            judge: StepJudge(
                parameters: NamedParameter.of(model), layerTypes: StepJudge.layerTypes(of: model), policy: policy, monitor: monitor, probe: probe),
            model: model, buffers: model.namedBuffers().map(\.tensor), optimizer: optimizer, scheduler: scheduler,
            scheduleCadence: scheduleCadence, communicator: communicator, bucketBytes: bucketBytes)
    }

    private init(
        judge: StepJudge, model: Module?, buffers: [Tensor], optimizer: any Optimizer, scheduler: LRScheduler?, scheduleCadence: ScheduleCadence,
        communicator: (any Communicator)?, bucketBytes: Int
    ) {
        self.judge = judge
        self.model = model
        attentionLayers = (model?.namedModules() ?? []).compactMap { name, m in (m as? any AttentionLogitReporting).map { (name, $0) } }
        self.communicator = communicator
        let parameters = judge.health.parameters
        exchange = communicator.flatMap { c in
            c.isDistributed
                ? RankExchange(communicator: c, sync: GradientSync(parameters: parameters, communicator: c, bucketBytes: bucketBytes)) : nil
        }
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scheduleCadence = scheduleCadence
        stateTensors = parameters.map(\.tensor) + buffers
    }

    /// The largest attention logit of every attention layer at the step's forward pass (in
    /// data-parallel training, the largest over the ranks: every rank judges the same numbers);
    /// nil for a model without attention.
    func attentionLogits() throws -> [AttentionLogit]? {
        guard !attentionLayers.isEmpty else { return nil }
        var values = attentionLayers.map { Double($0.layer.maxAttentionLogit ?? -.infinity) }
        if let c = communicator, c.isDistributed {
            let all = try c.allGatherVariable(values)
            guard all.allSatisfy({ $0.count == values.count }) else {
                throw CommunicatorError.mismatch(what: "number of attention layers", ranks: all.indices.filter { all[$0].count != values.count })
            }
            values = values.indices.map { i in all.map { $0[i] }.max() ?? values[i] }
        }
        return zip(attentionLayers, values).compactMap { l, v in v.isInfinite && v < 0 ? nil : AttentionLogit(module: l.name, maxLogit: Float(v)) }
    }

    /// Inspects the gradients of the current step and applies or withholds it; throws
    /// `TrainingDiverged` when too many recoveries in a row failed (after the step's incident).
    @discardableResult
    public func step(loss: Float?, origin: StepOrigin? = nil) throws -> StepOutcome {
        let outcome = try execute(loss: loss, origin: origin)
        if let d = outcome.diverged { throw d }
        return outcome
    }

    /// One step in three phases: the judge measures (statistics and detectors) and decides
    /// (`GuardDecision.decide`, a pure function of the findings, the policy and the memory);
    /// then the executor acts. A run that must stop is returned with `diverged` set (`step`
    /// throws it), so that its caller can record the incident first.
    ///
    /// In data-parallel training (a `communicator` of more than one rank) measuring starts by
    /// exchanging every rank's local statistics and averaging the gradients; every rank then
    /// measures the same averaged gradient, takes the same decision (checked) and issues the
    /// same collectives. `loss` is this rank's; the step's is the mean over the ranks.
    public func execute(loss: Float?, origin: StepOrigin? = nil) throws -> StepOutcome {
        if snapshot == nil && policy.snapshotEvery > 0 { takeSnapshot() }
        // Measure.
        var gathered: RankExchange.Gathered? = nil
        var batchActivations: [ActivationGradient]? = nil
        var stepLoss = loss
        if let exchange {
            exchange.communicator.heartbeat(step: memory.attempts)
            let compute = Date().timeIntervalSince(lastStepEnd)
            // Every bucket's reduce-scatter starts (those backward has not started) before the
            // statistics exchange: collectives go in the same order on every rank.
            try exchange.sync.launchRemaining()
            let probed = health.probe.collect()
            let g = try exchange.gather(
                loss: loss, gradientSums: localGradientSums(health.parameters), activations: probed.map(\.norm), computeSeconds: compute)
            let start = Date()
            try exchange.sync.finish(present: g.present)
            gathered = g
            gathered!.ranks[exchange.communicator.rank].communicationSeconds = Date().timeIntervalSince(start)
            stepLoss = g.loss
            // The whole batch's activation gradients (none when the ranks probed different ones).
            batchActivations = zip(probed, g.activationNorms).map { ActivationGradient(name: $0.name, norm: $1) }
        }
        var measured = judge.measure(loss: stepLoss, activations: batchActivations, ranks: gathered?.ranks, attentionLogits: try attentionLogits())
        // Foresight: the curvature against the stability limit of the rate the update will use.
        var reading: CurvatureReading? = nil
        if let probe = curvature, probe.isDue(step: step), lastProbeAttempt != step {
            lastProbeAttempt = step
            let r = try probe.measure(step: step, optimizer: optimizer, lr: optimizer.largestRate * lrScale * lrCap)
            judge.curvature(r, into: &measured)
            reading = r
        }
        var stats = measured.stats
        let exploding = measured.exploding
        // The weights the step's forward pass used (nothing has acted yet), for its replay.
        var forwardWeights: [String: Tensor]? = nil
        if !measured.reported.isEmpty { forwardWeights = replayWeights(origin) }
        // Decide.
        let decision = judge.decide(measured, snapshotStep: snapshot?.step, previousSnapshotStep: previousSnapshot?.step)
        var findings = measured.reported
        if let exchange, var g = gathered {
            g.ranks = try exchange.agree(onDecision: decision.digest, ranks: g.ranks, step: stats.step)
            stats.ranks = g.ranks
        }
        // Act.
        var taken: [TakenAction] = []
        var outcome = StepOutcome.Decision.applied
        var clipReport: ClipReport? = nil
        if exploding { healthyStreak = 0 }
        switch decision.disposition {
        case let .rollback(toStep, previous):
            if previous { snapshot = previousSnapshot }
            guard let snap = snapshot, snap.step == toStep else { preconditionFailure("the guard's snapshot is not the one decided on") }
            try snap.restore(optimizer: optimizer, scheduler: scheduler, clipper: policy.clipper)
            // Every rank restored its own copy of the same snapshot: check that they agree.
            try exchange?.checkParameters(what: "after the rollback to step \(snap.step)")
            outcome = .rolledBack(toStep: snap.step, undone: snap.step..<(step + 1))
            taken.append(.rolledBack(toStep: snap.step, undone: step - snap.step))
            undoneSteps += step - snap.step
            judge.rolledBack(to: snap.step, monitorState: snap.monitor)
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
        if let r = reading, r.lambdaMax.isFinite, r.lambdaMax > 0 {
            // At the edge of stability λ_max oscillates (the loss's catapults, Cohen et al. 2021):
            // the cap reads the largest of the last three probes, brings the margin at the
            // uncapped rate to the policy's target at once, and lifts as the curvature relaxes
            // by at most the back-off's growth factor per probe.
            // (The judge's history ends with this reading.)
            let lambda = judge.curvatureHistory.suffix(3).map(\.lambdaMax).filter(\.isFinite).max() ?? r.lambdaMax
            let uncapped = r.margin / lrCap * lambda / r.lambdaMax
            let wanted = Swift.min(1, policy.capMargin / uncapped)
            if decision.cap && wanted < lrCap {
                taken.append(.capped(from: r.lr, rate: r.lr * wanted / lrCap, lambda: lambda, margin: policy.capMargin, scale: wanted))
                lrCap = wanted
            } else if lrCap < 1 {
                lrCap = Swift.min(wanted, lrCap * policy.growFactor)
            }
        }

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
                if let f = judge.clipped(r, stats: stats) { findings.append(f) }
            }
            let measuresUpdate = judge.measuresUpdate
            if measuresUpdate { health.beforeUpdate() }
            applyOptimizerStep()
            if measuresUpdate, let large = judge.judgeUpdate(&stats) {
                findings.append(large.finding)
                // Seen after the step, so acted on here: the step is undone (the weights go
                // back; the optimizer keeps the gradient in its state) and the rate backs off
                // by enough to bring the move under the limit.
                if judge.undoesLargeUpdates, !decision.backOff {
                    lrScale *= large.backOffFactor
                    healthyStreak = 0
                    if health.undoUpdate() {
                        taken.append(.rolledBack(toStep: step, undone: 1))
                        rollbacks += 1
                        // The weights are again those the step's forward pass used.
                        if measured.reported.isEmpty { forwardWeights = replayWeights(origin) }
                    }
                    taken.append(.backedOff(factor: large.backOffFactor, scale: lrScale))
                } else if measured.reported.isEmpty {
                    _ = health.withWeightsBeforeUpdate { forwardWeights = replayWeights(origin) }
                }
            }
            judge.applied(stats, healthy: !exploding)
            if let exchange, parameterCheckEvery > 0, step % parameterCheckEvery == 0 {
                try exchange.checkParameters(what: "at step \(step)")
            }
            if !exploding {
                healthyStreak += 1
                if lrScale < 1 && healthyStreak % policy.growAfter == 0 {
                    lrScale = Swift.min(1, lrScale * policy.growFactor)
                }
                if policy.snapshotEvery > 0 && step % policy.snapshotEvery == 0 { takeSnapshot() }
            }
        }
        judge.stepEnded(stats, healthy: !exploding && outcome == .applied, learningRate: optimizer.paramGroups.first?.lr ?? 0)

        var incident: Incident? = nil
        var diverged: TrainingDiverged? = nil
        var replayError: (any Error)? = nil
        if !findings.isEmpty {
            var inc = judge.incident(
                stats: stats, findings: findings, taken: taken, learningRate: optimizer.paramGroups.first.map { $0.lr * lrScale * lrCap })
            incidents.append(inc)
            if let replay, let origin, let forwardWeights, origin.step == inc.step, !(communicator?.isDistributed ?? false) {
                do { inc = try replay.keep(inc, origin: origin, stats: stats, weights: forwardWeights, attempt: memory.attempts) } catch {
                    replayError = error
                }
            }
            incident = inc
            if decision.halt { diverged = TrainingDiverged(step: stats.step, failedRecoveries: memory.failedRecoveries, incidents: incidents) }
        }
        lastStepEnd = Date()
        return StepOutcome(
            decision: outcome, stats: stats, clip: clipReport, findings: findings, incident: incident, lrScale: lrScale, lrCap: lrCap,
            diverged: diverged, replayError: replayError)
    }

    /// A copy of the model's weights for a replay record, when one may be kept.
    private func replayWeights(_ origin: StepOrigin?) -> [String: Tensor]? {
        guard replay != nil, origin != nil, let model else { return nil }
        return model.stateDict().mapValues { $0.copy() }
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
        let inc = judge.validationIncident(loss: loss, best: best, bestStep: bestStep, taken: taken)
        incidents.append(inc)
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
        let scale = lrScale * lrCap
        if scale != 1 { for i in optimizer.paramGroups.indices { optimizer.paramGroups[i].lr = scheduled[i] * scale } }
        optimizer.step()
        if scale != 1 { for i in optimizer.paramGroups.indices { optimizer.paramGroups[i].lr = scheduled[i] } }
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
        /// The counters of steps, skips, rollbacks, healthy streak, failed recoveries and attempts.
        public var step, skippedSteps, rollbacks, healthyStreak, failedRecoveries, attempts: Int
        /// The attempt of the last recovery.
        public var lastRecovery: Int?
        /// The back-off multiplier.
        public var lrScale: Double
        /// Recent healthy norms and learning rates.
        public var healthyNorms, lrHistory: [Double]
        /// The detectors' histories.
        public var monitor: [String: [Double]]
        /// The clipper's state.
        public var clipper: ClipperState?
        /// The clip-rate monitor's history (absent in checkpoints written before it existed).
        public var clipRate: [String: [Double]]?
        /// The curvature cap's multiplier (absent: none), and the curvature warning's memory
        /// (absent: the probe was off).
        public var lrCap: Double? = nil
        /// The curvature warning's memory.
        public var curvature: StepJudge.CurvatureMemory? = nil
    }

    /// The guard's state now, for a checkpoint.
    public func stateDict() -> State {
        let j = judge.stateDict()
        return State(
            step: j.memory.step, skippedSteps: skippedSteps, rollbacks: rollbacks, healthyStreak: healthyStreak,
            failedRecoveries: j.memory.failedRecoveries, attempts: j.memory.attempts, lastRecovery: j.memory.lastRecovery, lrScale: lrScale,
            healthyNorms: j.healthyNorms, lrHistory: j.lrHistory, monitor: j.monitor,
            clipper: policy.clipper?.stateDict(), clipRate: j.clipRate, lrCap: lrCap < 1 ? lrCap : nil,
            curvature: j.curvature == StepJudge.CurvatureMemory() ? nil : j.curvature)
    }

    /// Restores a state `stateDict()` returned; throws when the clipper's state does not fit.
    public func load(state s: State) throws {
        if let c = s.clipper { try policy.clipper?.load(stateDict: c) }
        var memory = GuardMemory()
        (memory.step, memory.failedRecoveries, memory.attempts, memory.lastRecovery) = (s.step, s.failedRecoveries, s.attempts, s.lastRecovery)
        var judged = StepJudge.State(memory: memory, healthyNorms: s.healthyNorms, lrHistory: s.lrHistory, monitor: s.monitor, clipRate: s.clipRate ?? [:])
        judged.curvature = s.curvature ?? StepJudge.CurvatureMemory()
        judge.load(state: judged)
        (skippedSteps, rollbacks, healthyStreak) = (s.skippedSteps, s.rollbacks, s.healthyStreak)
        lrScale = s.lrScale
        lrCap = s.lrCap ?? 1
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
