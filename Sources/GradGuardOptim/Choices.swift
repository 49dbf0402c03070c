import GradGuardSettings
import GradGuardTensor

/// The optimizer a run names and the hyper-parameters it gives it (`optimizer.*`).
public struct OptimizerSettings: SettingSection {
    /// The optimizer.
    public var kind = OptimizerKind.sgd
    /// The learning rate (0 stands for `auto`: the range test picks it).
    public var lr: Double
    /// SGD's momentum, RMSprop's momentum; unused by Adam and AdamW.
    public var momentum: Double
    /// Weight decay: L2 in the gradient for SGD, Adam and RMSprop, decoupled for AdamW.
    public var weightDecay: Double
    /// Adam and AdamW: StableAdamW's update-clipping threshold d (0: off).
    public var updateClip: Double
    /// SPAM: the spike threshold θ, the steps between momentum resets, the warm-up after each.
    public var spamThreshold = 5000.0
    /// SPAM's steps between momentum resets.
    public var spamResetEvery = 500
    /// SPAM's warm-up steps after each reset.
    public var spamWarmup = 150

    /// Settings with the given rate, momentum, weight decay and update clipping.
    public init(lr: Double = 0.05, momentum: Double = 0.9, weightDecay: Double = 0, updateClip: Double = 0) {
        (self.lr, self.momentum, self.weightDecay, self.updateClip) = (lr, momentum, weightDecay, updateClip)
    }

    /// The defaults: SGD at 0.05 with momentum 0.9.
    public init() { self.init(lr: 0.05) }

    /// `optimizer.lr: auto`: the rate is to be found by the range test before training.
    public var lrIsAuto: Bool { lr == 0 }

    /// The `optimizer.*` settings.
    public static let settings: [Setting<OptimizerSettings>] = [
        .choice("optimizer.kind", \.kind, "optimizer"),
        .double(
            "optimizer.lr", \.lr, in: 1e-12...100, or: "auto", storedAs: 0,
            "learning rate ('auto': found by the range test of gradguard lr-find before training, and written here)"),
        .double("optimizer.momentum", \.momentum, in: 0...0.9999, "momentum (SGD, RMSprop)"),
        .double("optimizer.weight_decay", \.weightDecay, in: 0...1, "weight decay"),
        .double(
            "optimizer.update_clip", \.updateClip, in: 0...1e6,
            "adam, adamw: StableAdamW's update clipping, each tensor's step scaled down when the RMS of g²/v exceeds this (0: off; 1 in the paper)"),
        .double(
            "optimizer.spam_threshold", \.spamThreshold, in: 0...1e12, "spam: clip entries with g² above this multiple of v (0: no spike clipping)",
            inapplicable: spamOnly),
        .int("optimizer.spam_reset_every", \.spamResetEvery, in: 1...Int(Int32.max), "spam: steps between momentum resets", inapplicable: spamOnly),
        .int("optimizer.spam_warmup", \.spamWarmup, in: 0...Int(Int32.max), "spam: cosine warm-up steps after each momentum reset", inapplicable: spamOnly)
    ]

    private static func spamOnly(_ s: OptimizerSettings) -> String? {
        s.kind == .spam ? nil : "is for optimizer.kind spam, got '\(s.kind.rawValue)'"
    }

    /// A combination of optimizer settings that cannot run, with the key to change.
    public func problem() -> (key: String, message: String)? {
        if updateClip > 0 && kind != .adam && kind != .adamw {
            return ("optimizer.update_clip", "StableAdamW's update clipping is for optimizer.kind adam or adamw, got '\(kind.rawValue)'")
        }
        return nil
    }

    /// The optimizer of `groups` these settings name.
    public func make(_ groups: [ParamGroup]) -> any Optimizer { kind.make(groups, self) }
}

/// The learning-rate schedule a run names (`schedule.*`).
public struct ScheduleSettings: SettingSection {
    /// The schedule.
    public var kind = ScheduleKind.constant
    /// Linear warm-up steps of the warm-up schedules.
    public var warmupSteps = 0

    /// The defaults: a constant rate.
    public init() {}

    /// The `schedule.*` settings.
    public static let settings: [Setting<ScheduleSettings>] = [
        .choice("schedule.kind", \.kind, "learning-rate schedule"),
        .int(
            "schedule.warmup_steps", \.warmupSteps, in: 0...Int(Int32.max),
            "linear warm-up steps (warmup: 0 means YOLOv5's max(3 epochs, 100 steps), at most half the run; warmup-cosine)")
    ]
}

/// The optimizers a run can name.
public enum OptimizerKind: String, SettingChoice {
    case sgd, adam, adamw, rmsprop, spam

    /// One line for `gradguard settings`.
    public var help: String {
        switch self {
        case .sgd: return "SGD with momentum (torch.optim.SGD)"
        case .adam: return "Adam, L2 weight decay added to the gradient (torch.optim.Adam)"
        case .adamw: return "AdamW, decoupled weight decay (torch.optim.AdamW)"
        case .rmsprop: return "RMSprop with momentum (torch.optim.RMSprop)"
        case .spam: return "SPAM: Adam with momentum resets, spike-aware clipping and warm-up after each reset (Huang et al. 2025)"
        }
    }

    /// Whether `OptimizerSettings.momentum` means anything to this optimizer.
    public var usesMomentum: Bool { self == .sgd || self == .rmsprop }

    /// This optimizer over `groups` with the settings' hyper-parameters.
    public func make(_ groups: [ParamGroup], _ s: OptimizerSettings) -> any Optimizer {
        switch self {
        case .sgd: return SGD(groups, lr: s.lr, momentum: s.momentum, weightDecay: s.weightDecay)
        case .adam: return Adam(groups, lr: s.lr, weightDecay: s.weightDecay, updateClip: s.updateClip)
        case .adamw: return AdamW(groups, lr: s.lr, weightDecay: s.weightDecay, updateClip: s.updateClip)
        case .rmsprop: return RMSprop(groups, lr: s.lr, weightDecay: s.weightDecay, momentum: s.momentum)
        case .spam:
            var h = SPAM.Hyperparameters()
            (h.lr, h.weightDecay, h.threshold, h.resetEvery, h.warmupSteps) = (s.lr, s.weightDecay, s.spamThreshold, s.spamResetEvery, s.spamWarmup)
            return SPAM(groups, h)
        }
    }
}

/// The learning-rate schedules a run can name.
public enum ScheduleKind: String, SettingChoice {
    case constant, cosine, warmup
    case warmupCosine = "warmup-cosine"
    case warmupLinear = "warmup-linear"

    /// One line for `gradguard settings`.
    public var help: String {
        switch self {
        case .constant: return "the optimizer's rate throughout"
        case .cosine: return "cosine annealing to 0 over the run (CosineAnnealingLR)"
        case .warmup: return "Ultralytics' linear warm-up of rates (from 0) and momentum (from 0.8), then constant"
        case .warmupCosine: return "linear warm-up from 1 % over schedule.warmup_steps, then cosine annealing"
        case .warmupLinear: return "Ultralytics' default: the warm-up of warmup towards a rate that falls linearly, epoch by epoch, to 1 % at the last epoch"
        }
    }

    /// The schedule for a run of `totalSteps` optimizer steps, `stepsPerEpoch` a epoch.
    /// `warmupSteps` 0 means, for `.warmup`, YOLOv5's length: max(3 epochs, 100 steps), at
    /// most half the run. `startLR` gives some parameter groups another starting rate for
    /// `.warmup` (a detector's biases start at 0.1); `startMomentum` warms momentum up too.
    public func make(
        _ optimizer: any Optimizer, totalSteps: Int, stepsPerEpoch: Int, warmupSteps: Int,
        startLR: [Int: Double] = [:], startMomentum: Double? = nil
    ) -> LRScheduler? {
        switch self {
        case .constant: return nil
        case .cosine: return LRScheduler(optimizer, CosineAnnealingLR(tMax: totalSteps))
        case .warmup:
            let w = warmupSteps > 0 ? warmupSteps : Swift.max(1, Swift.min(totalSteps / 2, Swift.max(3 * stepsPerEpoch, 100)))
            return LRScheduler(optimizer, Warmup(steps: w, startLR: startLR, startMomentum: startMomentum))
        case .warmupLinear:
            let w = warmupSteps > 0 ? warmupSteps : Swift.max(1, Swift.min(totalSteps / 2, Swift.max(3 * stepsPerEpoch, 100)))
            let epochs = Swift.max(1, (totalSteps + stepsPerEpoch - 1) / Swift.max(1, stepsPerEpoch))
            return LRScheduler(
                optimizer,
                Warmup(
                    steps: w, startLR: startLR, startMomentum: startMomentum,
                    then: EpochLinearDecay(stepsPerEpoch: stepsPerEpoch, epochs: epochs)))
        case .warmupCosine:
            let w = Swift.max(1, warmupSteps)
            return LRScheduler(
                optimizer,
                SequentialSchedule(
                    [
                        LinearLR(startFactor: 0.01, totalIters: w),
                        CosineAnnealingLR(tMax: Swift.max(1, totalSteps - w))
                    ], milestones: [w]))
        }
    }
}
