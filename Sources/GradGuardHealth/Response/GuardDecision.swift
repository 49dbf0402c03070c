/// What the guard knows between steps that a decision depends on: the recovery history
/// and where its snapshots are. `GradientGuard` keeps it; `GuardDecision.decide` reads it.
public struct GuardMemory: Sendable, Equatable {
    /// Applied steps so far.
    public var step = 0
    /// Calls of `GradientGuard.step`, applied or not: the clock for recovery windows.
    public var attempts = 0
    /// The attempt of the last recovery (skip, back-off or rollback).
    public var lastRecovery: Int? = nil
    /// Recoveries in a row, each within `recoveryWindow` attempts of the one before.
    public var failedRecoveries = 0
    /// Steps of the newest and the one-before snapshots.
    public var snapshotStep: Int? = nil
    /// The step of the snapshot before the newest.
    public var previousSnapshotStep: Int? = nil
    /// The step of the snapshot the last rollback went to.
    public var lastRollbackTarget: Int? = nil

    /// A fresh memory.
    public init() {}
}

/// What the guard will do with one step: a pure function of the step's findings, the
/// policy and the guard's memory (`decide`). `GradientGuard.step` measures, decides, then
/// acts on the decision.
public struct GuardDecision: Sendable, Equatable {
    /// What happens to the step's gradients.
    public enum Disposition: Sendable, Equatable {
        /// Clip (if there is a clipper) and apply the step.
        case apply
        /// Withhold the step; `noSnapshot` when a rollback was wanted and there is none.
        case skip(noSnapshot: Bool)
        /// Restore the snapshot of `toStep`: the newest one, or the one before it (`previous`).
        case rollback(toStep: Int, previous: Bool)
    }

    /// Apply, skip or roll back.
    public var disposition: Disposition
    /// Multiply the learning rate by the policy's back-off factor.
    public var backOff: Bool
    /// The previous recovery did not hold: a back-off or a rollback was added.
    public var escalated: Bool
    /// This step is a recovery (skip, back-off or rollback).
    public var recovering: Bool
    /// The memory after this decision (recovery counters, rollback target).
    public var memory: GuardMemory
    /// Give up after recording this step's incident: too many recoveries in a row failed.
    public var halt: Bool
    /// Scale the gradients to this global norm before applying (a spike's limit), when set.
    public var clipTo: Double? = nil
    /// Cap the learning rate by the curvature probe's reading (`GuardAction.cap`).
    public var cap = false

    /// Decides from `findings` (this step's), `policy` and `memory` (with `attempts` not yet
    /// counting this step).
    public static func decide(findings: [Finding], policy: GuardPolicy, memory: GuardMemory) -> GuardDecision {
        var m = memory
        var actions = Set(findings.flatMap { policy.actions[$0.kind] ?? [.report] })
        // A spike is skipped instead of clipped or reported when its loss is worse than the first
        // steps' too — the loss says the weights (or the batch) went wrong — if the policy would
        // clip it, or if it is beyond `spikeSkipRatio` whatever its action. A spike whose loss is
        // below the first steps' is a converged model's rare mistake (cross-entropy near zero
        // meets one misclassified example), which the loss shrugs off.
        let spikes = findings.filter { $0.kind == .spike }
        let lossUp = { (f: Finding) in (f.evidence["loss_ratio"] ?? .infinity) > 1 }
        if spikes.contains(where: { ($0.evidence["ratio"] ?? 0) > policy.spikeSkipRatio && lossUp($0) })
            || (actions.contains(.clip) && spikes.contains(where: lossUp))
        {
            actions.insert(.skip)
            actions.remove(.clip)
        }
        let cap = actions.remove(.cap) != nil
        let clipTo: Double? =
            actions.contains(.clip) ? spikes.compactMap { f in f.evidence["median"].flatMap { m in f.evidence["limit"].map { m * $0 } } }.min() : nil
        actions.remove(.clip)
        // Non-finite gradients are never applied, whatever the policy says.
        if policy.protectNonFinite, findings.contains(where: { $0.kind == .nonFiniteGradient || $0.kind == .nonFiniteLoss }),
            !actions.contains(.rollback)
        {
            actions.insert(.skip)
        }
        m.attempts += 1
        let recovering = !actions.isDisjoint(with: [.skip, .backOff, .rollback])
        if recovering {
            if let last = m.lastRecovery, m.attempts - last <= policy.recoveryWindow { m.failedRecoveries += 1 } else { m.failedRecoveries = 1 }
            m.lastRecovery = m.attempts
        }
        // A recovery that did not hold (another within the window) is escalated: a skip
        // leaves the weights where the gradient is large, so the next batch spikes again;
        // go back to the last healthy snapshot, and lower the learning rate.
        var escalated = false, previous = false
        if recovering && policy.escalateRepeats && m.failedRecoveries >= 2 {
            if !actions.contains(.backOff) { actions.insert(.backOff); escalated = true }
            if actions.contains(.skip), !actions.contains(.rollback), var target = m.snapshotStep {
                // The newest snapshot is no refuge when it was taken at the failing step, or
                // when the last rollback went there and trouble came back within the window.
                if target == m.step || target == m.lastRollbackTarget, let older = m.previousSnapshotStep, older < target {
                    target = older
                    previous = true
                }
                if target < m.step {
                    actions.insert(.rollback)
                    escalated = true
                } else {
                    previous = false
                }
            }
        }
        let disposition: Disposition
        if actions.contains(.rollback), let newest = m.snapshotStep {
            let to = previous ? m.previousSnapshotStep! : newest
            disposition = .rollback(toStep: to, previous: previous)
            m.lastRollbackTarget = to
        } else if actions.contains(.skip) || actions.contains(.rollback) {
            disposition = .skip(noSnapshot: actions.contains(.rollback))
        } else {
            disposition = .apply
        }
        return GuardDecision(
            disposition: disposition, backOff: actions.contains(.backOff), escalated: escalated, recovering: recovering,
            memory: m, halt: recovering && m.failedRecoveries >= policy.maxFailedRecoveries, clipTo: disposition == .apply ? clipTo : nil,
            cap: cap)
    }
}

extension GuardDecision {
    /// A number that differs when two decisions differ: what the ranks of a data-parallel job
    /// compare to check that they took the same one.
    public var digest: Double {
        var code: Double
        switch disposition {
        case .apply: code = 1
        case let .skip(noSnapshot): code = noSnapshot ? 3 : 2
        case let .rollback(toStep, previous): code = 4 + Double(toStep) * 2 + (previous ? 1 : 0)
        }
        code = code * 16 + (cap ? 8 : 0) + (backOff ? 4 : 0) + (escalated ? 2 : 0) + (halt ? 1 : 0)
        return code
    }
}
