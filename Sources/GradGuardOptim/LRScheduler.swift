import GradGuardTensor

/// What restoring a schedule's state found wrong.
public enum SchedulerStateError: Error, CustomStringConvertible, Equatable {
    case missingKey(String)
    /// A count that is not a whole number from 0 to 2⁵³.
    case badCount(key: String, value: Double)
    /// The key and what was wrong with it.
    public var description: String {
        switch self {
        case .missingKey(let k): return "scheduler state: missing key '\(k)'"
        case let .badCount(k, v): return "scheduler state: '\(k)' must be a whole number from 0 to 2^53, got \(v)"
        }
    }

    /// `state[key]`, which must be there.
    static func value(_ state: [String: Double], _ key: String) throws -> Double {
        guard let v = state[key] else { throw SchedulerStateError.missingKey(key) }
        return v
    }

    /// `state[key]` as a count.
    static func count(_ state: [String: Double], _ key: String) throws -> Int {
        let v = try value(state, key)
        guard v.isFinite, v >= 0, v <= 9_007_199_254_740_992, v == v.rounded() else { throw SchedulerStateError.badCount(key: key, value: v) }
        return Int(v)
    }
}

/// Applies an `LRSchedule` to an optimizer's parameter groups, as PyTorch's schedulers do:
/// on creation the groups get the step-0 values; each `step()` advances one step. The
/// starting rate and momentum of each group are taken when the scheduler is created.
///
/// ```swift
/// let scheduler = LRScheduler(optimizer, SequentialSchedule([LinearLR(startFactor: 0.1, totalIters: 100),
///                                                           CosineAnnealingLR(tMax: 900)], milestones: [100]))
/// for batch in data { …; optimizer.step(); scheduler.step() }
/// ```
public final class LRScheduler {
    /// The optimizer whose rates it sets.
    public let optimizer: any Optimizer
    /// The schedule's formula.
    public let schedule: any LRSchedule
    /// Steps taken so far (PyTorch's `last_epoch`).
    public private(set) var stepCount = 0
    /// Each group's rate when the scheduler was made (PyTorch's `base_lrs`).
    public let baseLRs: [Double]
    /// Each group's momentum (or β₁) when the scheduler was made, nil for a group without one.
    public let baseMomenta: [Double?]

    /// Applies `schedule` to `optimizer`, setting step 0's rates at once.
    public init(_ optimizer: any Optimizer, _ schedule: any LRSchedule) {
        self.optimizer = optimizer
        self.schedule = schedule
        baseLRs = optimizer.paramGroups.map(\.lr)
        baseMomenta = optimizer.paramGroups.map { $0[LRScheduler.momentumKey($0)] }
        apply()
    }

    static func momentumKey(_ g: ParamGroup) -> String { g["beta1"] != nil ? "beta1" : "momentum" }

    /// Advances one step and sets each group's rate (and momentum).
    public func step() {
        stepCount += 1
        apply()
    }

    /// The rates currently set, one per group.
    public var lastLR: [Double] { optimizer.paramGroups.map(\.lr) }

    private func apply() {
        for i in optimizer.paramGroups.indices {
            optimizer.paramGroups[i].lr = schedule.learningRate(step: stepCount, baseLR: baseLRs[i], group: i)
            let key = LRScheduler.momentumKey(optimizer.paramGroups[i])
            if let base = baseMomenta[i], let m = schedule.momentum(step: stepCount, baseMomentum: base, group: i) {
                optimizer.paramGroups[i][key] = m
            }
        }
    }

    /// The step count (the schedule itself is code, rebuilt by the caller).
    public func stateDict() -> [String: Double] { ["last_epoch": Double(stepCount)] }

    /// Restores `stateDict()` and sets the groups' values for that step.
    public func load(stateDict: [String: Double]) throws {
        stepCount = try SchedulerStateError.count(stateDict, "last_epoch")
        apply()
    }
}

/// `ReduceLROnPlateau`: multiplies each group's rate by `factor` when the metric has not
/// improved by more than `threshold` for more than `patience` steps, then waits `cooldown`
/// steps; rates never go below `minLR`, and a change smaller than `eps` is skipped.
public final class ReduceLROnPlateau {
    /// Whether lower (`min`) or higher (`max`) values of the metric are better.
    public enum Mode: String, Sendable { case min, max }
    /// Whether `threshold` is relative to the best value or absolute.
    public enum ThresholdMode: String, Sendable { case rel, abs }

    /// The optimizer whose rates it lowers.
    public let optimizer: any Optimizer
    /// PyTorch's `mode`, `factor`, `patience`, `threshold` and `threshold_mode`.
    public let mode: Mode, factor: Double, patience: Int, threshold: Double, thresholdMode: ThresholdMode
    /// PyTorch's `cooldown`, `min_lr` (one per group) and `eps`.
    public let cooldown: Int, minLRs: [Double], eps: Double
    /// The best value of the metric so far.
    public private(set) var best: Double
    /// Steps since the metric last improved.
    public private(set) var numBadEpochs = 0
    /// Steps of cooldown left.
    public private(set) var cooldownCounter = 0
    /// Values of the metric recorded.
    public private(set) var lastEpoch = 0

    /// A plateau scheduler with PyTorch's defaults unless given.
    public init(
        _ optimizer: any Optimizer, mode: Mode = .min, factor: Double = 0.1, patience: Int = 10, threshold: Double = 1e-4,
        thresholdMode: ThresholdMode = .rel, cooldown: Int = 0, minLR: [Double] = [0], eps: Double = 1e-8
    ) {
        require(factor < 1, "ReduceLROnPlateau: factor must be below 1")
        self.optimizer = optimizer
        self.mode = mode; self.factor = factor; self.patience = patience; self.threshold = threshold
        self.thresholdMode = thresholdMode; self.cooldown = cooldown; self.eps = eps
        minLRs = minLR.count == 1 ? Array(repeating: minLR[0], count: optimizer.paramGroups.count) : minLR
        best = mode == .min ? .infinity : -.infinity
    }

    private func isBetter(_ a: Double) -> Bool {
        switch (mode, thresholdMode) {
        case (.min, .rel): return a < best * (1 - threshold)
        case (.min, .abs): return a < best - threshold
        case (.max, .rel): return a > best * (threshold + 1)
        case (.max, .abs): return a > best + threshold
        }
    }

    /// Records one value of the monitored metric.
    public func step(metric: Double) {
        lastEpoch += 1
        if isBetter(metric) {
            best = metric
            numBadEpochs = 0
        } else {
            numBadEpochs += 1
        }
        if cooldownCounter > 0 {
            cooldownCounter -= 1
            numBadEpochs = 0
        }
        if numBadEpochs > patience {
            for i in optimizer.paramGroups.indices {
                let old = optimizer.paramGroups[i].lr
                let new = Swift.max(old * factor, minLRs[i])
                if old - new > eps { optimizer.paramGroups[i].lr = new }
            }
            cooldownCounter = cooldown
            numBadEpochs = 0
        }
    }

    /// Each group's rate now.
    public var lastLR: [Double] { optimizer.paramGroups.map(\.lr) }

    /// The scheduler's counters and best value, for checkpoints.
    public func stateDict() -> [String: Double] {
        [
            "best": best, "num_bad_epochs": Double(numBadEpochs), "cooldown_counter": Double(cooldownCounter),
            "last_epoch": Double(lastEpoch)
        ]
    }

    /// Restores the state `stateDict()` returned; throws for a missing or malformed entry.
    public func load(stateDict s: [String: Double]) throws {
        // Everything is checked before anything changes.
        let values = (
            try SchedulerStateError.value(s, "best"), try SchedulerStateError.count(s, "num_bad_epochs"),
            try SchedulerStateError.count(s, "cooldown_counter"), try SchedulerStateError.count(s, "last_epoch")
        )
        (best, numBadEpochs, cooldownCounter, lastEpoch) = values
    }
}
