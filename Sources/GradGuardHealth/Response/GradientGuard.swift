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
    public let diagnostician: Diagnostician
    /// Applied steps (skipped ones do not count).
    public private(set) var step = 0
    public private(set) var skippedSteps = 0
    public private(set) var rollbacks = 0
    /// Applied steps undone by rollbacks (each rollback also loses the failed step itself).
    public private(set) var undoneSteps = 0
    public private(set) var incidents: [Incident] = []
    public private(set) var lrScale = 1.0
    /// Update-to-weight ratios every this many steps (0: never).
    public var updateRatioEvery = 1
    /// Watches how often the clipper acts (chronic over-clipping is reported once).
    public var clipRate = ClipRateMonitor()
    /// Called with each incident as it happens.
    public var onIncident: ((Incident) -> Void)?

    private let stateTensors: [Tensor]
    private var snapshot: TrainingSnapshot?
    /// The snapshot before `snapshot`: an escalated rollback goes there when the newest was
    /// taken at the very step that went wrong (its weights already in the bad region).
    private var previousSnapshot: TrainingSnapshot?
    private var healthyStreak = 0
    private var failedRecoveries = 0
    private var lastRecovery: Int? = nil
    /// The step of the snapshot the last rollback went to: going there again after a failed
    /// recovery means its weights are already in the bad region.
    private var lastRollbackTarget: Int? = nil
    /// Calls of `step(loss:)`, applied or not: the clock for recovery windows.
    private var attempts = 0
    private var healthyNorms = Window(500)
    private var lrHistory = Window(21)

    /// Guards the named `parameters`; `buffers` (running statistics) are included in snapshots.
    /// `layerTypes` maps module names to their layer type (`"Linear"`, `"Conv2d"`, …) for the
    /// initialisation checks; `init(model:…)` fills it.
    public init(parameters: [NamedParameter], buffers: [Tensor] = [], layerTypes: [String: String] = [:],
                optimizer: Optimizer, scheduler: LRScheduler? = nil,
                policy: GuardPolicy = GuardPolicy(), monitor: HealthMonitor = HealthMonitor(),
                probe: ActivationGradientProbe = ActivationGradientProbe()) {
        health = GradientHealth(parameters: parameters, probe: probe)
        self.monitor = monitor
        self.policy = policy
        self.optimizer = optimizer
        self.scheduler = scheduler
        diagnostician = Diagnostician(parameters: parameters, layerTypes: layerTypes)
        stateTensors = parameters.map(\.tensor) + buffers
    }

    public convenience init(model: Module, optimizer: Optimizer, scheduler: LRScheduler? = nil, policy: GuardPolicy = GuardPolicy(),
                            monitor: HealthMonitor = HealthMonitor(), probe: ActivationGradientProbe = ActivationGradientProbe()) {
        self.init(parameters: NamedParameter.of(model), buffers: model.namedBuffers().map(\.tensor),
                  layerTypes: Dictionary(model.namedModules().map { ($0.name, String(describing: type(of: $0.module))) },
                                         uniquingKeysWith: { a, _ in a }),
                  optimizer: optimizer,
                  scheduler: scheduler, policy: policy, monitor: monitor, probe: probe)
    }

    /// Inspects the gradients of the current step and applies or withholds it.
    public func step(loss: Float?) throws -> StepOutcome {
        if snapshot == nil && policy.snapshotEvery > 0 { takeSnapshot() }
        var stats = health.observe(step: step, loss: loss)
        var findings = monitor.inspect(stats)
        let exploding = findings.filter { $0.kind.isExploding }
        var actions = Set(findings.flatMap { policy.actions[$0.kind] ?? [.report] })
        // Non-finite gradients are never applied, whatever the policy says.
        if policy.protectNonFinite, findings.contains(where: { $0.kind == .nonFiniteGradient || $0.kind == .nonFiniteLoss }),
           !actions.contains(.rollback) {
            actions.insert(.skip)
        }
        var done: [String] = []
        var decision = StepOutcome.Decision.applied
        var clipReport: ClipReport? = nil

        attempts += 1
        let recovering = !actions.isDisjoint(with: [.skip, .backOff, .rollback])
        if recovering {
            if let last = lastRecovery, attempts - last <= policy.recoveryWindow { failedRecoveries += 1 } else { failedRecoveries = 1 }
            lastRecovery = attempts
        }
        // A recovery that did not hold (another within the window) is escalated: a skip
        // leaves the weights where the gradient is large, so the next batch spikes again;
        // go back to the last healthy snapshot, and lower the learning rate.
        var escalated = false
        if recovering && policy.escalateRepeats && failedRecoveries >= 2 {
            if !actions.contains(.backOff) { actions.insert(.backOff); escalated = true }
            if actions.contains(.skip), !actions.contains(.rollback), var target = snapshot {
                // The newest snapshot is no refuge when it was taken at the failing step, or
                // when the last rollback went there and trouble came back within the window.
                if target.step == step || target.step == lastRollbackTarget, let older = previousSnapshot, older.step < target.step {
                    target = older
                }
                if target.step < step {
                    snapshot = target
                    actions.insert(.rollback)
                    escalated = true
                }
            }
        }
        if !exploding.isEmpty { healthyStreak = 0 }
        if actions.contains(.rollback), let snap = snapshot {
            try snap.restore(optimizer: optimizer, scheduler: scheduler, clipper: policy.clipper)
            monitor.load(stateDict: snap.monitor)
            lastRollbackTarget = snap.step
            decision = .rolledBack(toStep: snap.step, undone: snap.step..<(step + 1))
            done.append("rolled back to the snapshot of step \(snap.step) (\(step - snap.step) steps undone)")
            undoneSteps += step - snap.step
            step = snap.step
            rollbacks += 1
        } else if actions.contains(.skip) || actions.contains(.rollback) {
            decision = .skipped
            skippedSteps += 1
            done.append(actions.contains(.rollback) ? "skipped the step (no snapshot to roll back to)" : "skipped the step")
        }
        if actions.contains(.backOff) {
            lrScale *= policy.backOffFactor
            done.append("learning rate ×\(formatNumber(policy.backOffFactor)) (scale now \(formatNumber(lrScale)))")
        }
        if escalated {
            done.append("escalated: the last recovery was within \(policy.recoveryWindow) steps")
        }

        if decision == .applied {
            if let clipper = policy.clipper {
                clipReport = try clipper.clip(health.parameters)
                if let r = clipReport, r.clipped, !findings.isEmpty { done.append("clipped (\(clipper.name)) \(formatNumber(Double(r.normBefore))) → \(formatNumber(Double(r.normAfter)))") }
                if let r = clipReport, let f = clipRate.record(step: stats.step, clip: r, recentNorms: Array(healthyNorms.values.suffix(clipRate.window))) {
                    findings.append(f)
                }
            }
            let wantRatios = updateRatioEvery > 0 && step % updateRatioEvery == 0
            if wantRatios { health.beforeUpdate() }
            applyOptimizerStep()
            if wantRatios { health.recordUpdate(into: &stats) }
            step += 1
            if exploding.isEmpty {
                healthyStreak += 1
                if stats.globalL2.isFinite { healthyNorms.append(Double(stats.globalL2)) }
                if lrScale < 1 && healthyStreak % policy.growAfter == 0 {
                    lrScale = Swift.min(1, lrScale * policy.growFactor)
                }
                if policy.snapshotEvery > 0 && step % policy.snapshotEvery == 0 { takeSnapshot() }
            }
        }
        monitor.record(stats, healthy: exploding.isEmpty && decision == .applied)
        lrHistory.append(optimizer.paramGroups.first?.lr ?? 0)

        var incident: Incident? = nil
        if !findings.isEmpty {
            let context = Diagnostician.Context(stats: stats, healthyNorms: healthyNorms.values,
                                                learningRate: optimizer.paramGroups.first.map { $0.lr * lrScale },
                                                earlierLearningRate: lrHistory.values.first, stepsSeen: attempts)
            let (causes, recs) = diagnostician.diagnose(findings, context: context)
            if done.isEmpty { done.append("reported") }
            let inc = Incident(step: stats.step, findings: findings, actions: done, blame: findings.first!.blame, causes: causes,
                               recommendations: recs)
            incidents.append(inc)
            onIncident?(inc)
            incident = inc
            if recovering && failedRecoveries >= policy.maxFailedRecoveries {
                throw TrainingDiverged(step: stats.step, failedRecoveries: failedRecoveries, incidents: incidents)
            }
        }
        return StepOutcome(decision: decision, stats: stats, clip: clipReport, findings: findings, incident: incident, lrScale: lrScale)
    }

    /// Records that the validation loss diverged and that the trainer put back the weights of
    /// the best evaluation (`bestStep`); backs off the learning rate. Returns the incident.
    @discardableResult
    public func validationDiverged(loss: Double, best: Double, bestStep: Int, stopping: Bool) -> Incident {
        lrScale *= policy.backOffFactor
        healthyStreak = 0
        var done = ["restored the weights and optimizer state of step \(bestStep) (the best validation loss)"]
        done.append("learning rate ×\(formatNumber(policy.backOffFactor)) (scale now \(formatNumber(lrScale)))")
        if stopping { done.append("stopped: the validation loss diverged \(policy.maxValidationRestores) times") }
        let finding = Finding(kind: .validationDivergence, step: step,
                              message: "validation loss \(formatNumber(loss)) is \(loss.isFinite ? formatNumber(loss / best) + "×" : "far above") the best \(formatNumber(best)) (step \(bestStep))",
                              evidence: ["loss": loss, "best": best, "best_step": Double(bestStep)])
        let causes = [Cause(kind: .learningRateTooHigh, confidence: 0.5,
                            evidence: "the training gradients stayed healthy while the validation loss rose: the updates move the model away from what generalises (too high a rate, or overfitting)")]
        let recs = ["lower the learning rate (or add a decaying schedule such as cosine), or stop earlier; add weight decay or dropout if the training loss keeps falling"]
        let inc = Incident(step: step, findings: [finding], actions: done, blame: [], causes: causes, recommendations: recs)
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
        scheduler?.step()
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
        State(step: step, skippedSteps: skippedSteps, rollbacks: rollbacks, healthyStreak: healthyStreak,
              failedRecoveries: failedRecoveries, attempts: attempts, lastRecovery: lastRecovery, lrScale: lrScale,
              healthyNorms: healthyNorms.values, lrHistory: lrHistory.values, monitor: monitor.stateDict(),
              clipper: policy.clipper?.stateDict(), clipRate: clipRate.stateDict())
    }

    public func load(state s: State) throws {
        if let c = s.clipper { try policy.clipper?.load(stateDict: c) }
        (step, skippedSteps, rollbacks, healthyStreak, failedRecoveries, attempts) =
            (s.step, s.skippedSteps, s.rollbacks, s.healthyStreak, s.failedRecoveries, s.attempts)
        lastRecovery = s.lastRecovery
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
        snapshot = TrainingSnapshot(step: step, tensors: stateTensors, optimizer: optimizer, scheduler: scheduler,
                                    clipper: policy.clipper, monitor: monitor.stateDict())
    }
}
