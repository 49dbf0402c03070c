import GradGuardTensor

/// What the guard may do about a finding.
public enum GuardAction: String, Sendable, Codable {
    /// Do not apply this step: optimizer state, step counters and the schedule stay as they
    /// were (a skipped step is not a step). Counted and reported.
    case skip
    /// Multiply the learning rate by `backOffFactor`; it grows back by `growFactor` after
    /// every `growAfter` healthy steps, up to the scheduled rate (as GradScaler does with its scale).
    case backOff
    /// Restore the last healthy snapshot (parameters, buffers, optimizer, schedule, clipper,
    /// random state) and report the batches since then, to be skipped.
    case rollback
    /// Scale this step's gradients down to the detector's limit (a spike's `limit` × its
    /// running median) and apply it: an outlier batch still teaches, at a normal step size.
    case clip
    /// Lower the learning rate until the stability margin η·λ_max/c (curvature probe) is
    /// `capMargin`; the cap is set again at every probe and lifted as the curvature relaxes.
    case cap
    /// Only record an incident.
    case report
}

/// Which actions follow which findings, and their parameters.
public struct GuardPolicy {
    /// Applied to the gradients of every step that is kept (nil: no clipping).
    public var clipper: (any GradientClipper)?
    /// The chain of actions per finding kind; kinds not listed are reported only.
    public var actions: [FindingKind: [GuardAction]]
    /// The learning-rate factor of a back-off.
    public var backOffFactor: Double
    /// Healthy steps after which a backed-off rate grows back.
    public var growAfter: Int
    /// The factor it grows back by (at most to its scheduled value).
    public var growFactor: Double
    /// Keep an in-memory snapshot every this many applied steps (0: never; rollback then
    /// falls back to skipping).
    public var snapshotEvery: Int
    /// Halt with `TrainingDiverged` after this many recoveries in a row fail: a recovery
    /// (skip, back-off or rollback) fails when another one is needed within
    /// `recoveryWindow` steps.
    public var maxFailedRecoveries: Int
    /// Attempts within which a second recovery means the first failed.
    public var recoveryWindow: Int
    /// Never apply a step whose gradients or loss are NaN or infinite, whatever the actions
    /// say (on by default; off only to watch an unprotected run blow up).
    public var protectNonFinite = true
    /// A recovery within `recoveryWindow` steps of the previous one (the first did not
    /// hold) also backs off the learning rate, and a skip becomes a rollback to the last
    /// healthy snapshot: skipping leaves the weights where the gradient is large.
    public var escalateRepeats = true
    /// When a validation loss exceeds this multiple of the best one so far (or is not
    /// finite), the trainer puts back the weights and optimizer state of the best
    /// evaluation and backs off the learning rate; after `maxValidationRestores` such
    /// returns it stops with the best weights (early stopping). nil: off. The training
    /// statistics cannot see this failure: a run can overfit or drift at a too-high rate
    /// with healthy gradients.
    public var validationDivergence: Double? = nil
    /// Validation restores before the run stops.
    public var maxValidationRestores = 3
    /// A spike more than this multiple of its running median, on a batch whose loss is above
    /// that of the first steps, is skipped whatever its action (clip or report): a gradient
    /// hundreds of times the usual with a loss worse than the untrained model's comes from a
    /// broken batch or broken weights, and even clipped it points nowhere useful.
    public var spikeSkipRatio = 100.0
    /// The stability margin m = η·λ_max/c at which the curvature probe reports
    /// `edgeOfStability` (1: at the limit of a quadratic model), when it is also
    /// `curvatureRise` times the run's median margin so far (chosen on GuardBench's tuning half).
    public var curvatureWarning = 1.0
    /// How many times the run's median margin a reading must also be.
    public var curvatureRise = 2.0
    /// The margin a `cap` brings the rate to.
    public var capMargin = 0.5

    /// Watches and reports, changes nothing: no clipping, no skipping, NaN applied as it
    /// comes. The baseline of the demos.
    public static var monitorOnly: GuardPolicy {
        var p = GuardPolicy(
            actions: Dictionary(uniqueKeysWithValues: FindingKind.allCases.map { ($0, [GuardAction.report]) }),
            snapshotEvery: 0)
        p.protectNonFinite = false
        p.spikeSkipRatio = .infinity
        return p
    }

    /// `actions` defaults to `standardActions(clipping:)` for the given clipper.
    public init(
        clipper: (any GradientClipper)? = nil, actions: [FindingKind: [GuardAction]]? = nil,
        backOffFactor: Double = 0.5, growAfter: Int = 100, growFactor: Double = 2, snapshotEvery: Int = 50,
        maxFailedRecoveries: Int = 5, recoveryWindow: Int = 10
    ) {
        require(backOffFactor > 0 && backOffFactor < 1 && growFactor >= 1 && growAfter > 0, "GuardPolicy: back-off in (0, 1), growth ≥ 1")
        self.clipper = clipper
        self.actions = actions ?? GuardPolicy.standardActions(clipping: clipper != nil)
        self.backOffFactor = backOffFactor
        self.growAfter = growAfter
        self.growFactor = growFactor
        self.snapshotEvery = snapshotEvery
        self.maxFailedRecoveries = maxFailedRecoveries
        self.recoveryWindow = recoveryWindow
    }

    /// Non-finite gradients or loss, or a norm above the ceiling: skip the step and back off. Non-finite weights and a
    /// diverging loss: roll back and back off. Growth: back off. A spike is left to the
    /// clipper when there is one (it clips every kept step) and clipped to the detector's
    /// limit when there is none — skipped when its loss is worse than the first steps' (or,
    /// with a clipper, beyond `spikeSkipRatio` with such a loss): a spike the loss shrugs off
    /// is a normal event of minibatch training, not a reason to lose a step.
    /// An update that moved a module by half its norm: undone, and the rate backed off (the
    /// rate outruns the weights) — reported only when a clipper bounds every step already.
    /// Attention logits growing without bound: back off (the rate drives the growth; on
    /// GuardBench's transformers it brought the ramped runs back to their healthy twins).
    /// Vanishing and everything else: report.
    public static func standardActions(clipping: Bool) -> [FindingKind: [GuardAction]] {
        [
            .nonFiniteLoss: [.skip, .backOff], .nonFiniteGradient: [.skip, .backOff], .nonFiniteWeights: [.rollback, .backOff],
            .normCeiling: [.skip, .backOff],
            .spike: clipping ? [.report] : [.clip], .zScoreSpike: [.skip], .growth: [.backOff], .lossDivergence: [.rollback, .backOff],
            .largeUpdate: clipping ? [.report] : [.backOff], .vanishing: [.report], .edgeOfStability: [.report], .attentionLogitGrowth: [.backOff]
        ]
    }
}
