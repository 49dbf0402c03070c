import Foundation
import GradGuardTensor

/// A learning-rate schedule in closed form: the rate (and optionally the momentum) of
/// parameter group `group` at step `step`, given the group's starting values. Formulas are
/// those of `torch.optim.lr_scheduler`; `LRScheduler` applies a schedule to an optimizer.
public protocol LRSchedule: Sendable {
    func learningRate(step: Int, baseLR: Double, group: Int) -> Double
    /// The momentum (SGD, RMSprop) or β₁ (Adam) to use, or nil to leave it alone.
    func momentum(step: Int, baseMomentum: Double, group: Int) -> Double?
}

extension LRSchedule {
    /// No momentum change.
    public func momentum(step: Int, baseMomentum: Double, group: Int) -> Double? { nil }
}

/// The base rate throughout.
public struct ConstantSchedule: LRSchedule {
    /// The constant schedule.
    public init() {}
    /// The base rate.
    public func learningRate(step: Int, baseLR: Double, group: Int) -> Double { baseLR }
}

/// `ConstantLR`: `factor · base` for the first `totalIters` steps, then `base`.
public struct ConstantLR: LRSchedule {
    /// The factor of the first steps, and how many steps it lasts.
    public let factor: Double, totalIters: Int
    /// PyTorch's defaults: a third of the rate for 5 steps.
    public init(factor: Double = 1.0 / 3, totalIters: Int = 5) { self.factor = factor; self.totalIters = totalIters }
    /// `factor · base` before `totalIters`, `base` from then on.
    public func learningRate(step: Int, baseLR: Double, group: Int) -> Double {
        step < totalIters ? baseLR * factor : baseLR
    }
}

/// `StepLR`: `base · γ^⌊step / stepSize⌋`.
public struct StepLR: LRSchedule {
    /// Steps between decays, and the decay.
    public let stepSize: Int, gamma: Double
    /// Decays by `gamma` every `stepSize` steps.
    public init(stepSize: Int, gamma: Double = 0.1) { self.stepSize = stepSize; self.gamma = gamma }
    /// `base · γ^⌊step/stepSize⌋`.
    public func learningRate(step: Int, baseLR: Double, group: Int) -> Double {
        baseLR * pow(gamma, Double(step / stepSize))
    }
}

/// `MultiStepLR`: `base · γ^(number of milestones ≤ step)`.
public struct MultiStepLR: LRSchedule {
    /// The steps at which the rate decays, and the decay.
    public let milestones: [Int], gamma: Double
    /// Decays by `gamma` at each milestone.
    public init(milestones: [Int], gamma: Double = 0.1) { self.milestones = milestones.sorted(); self.gamma = gamma }
    /// `base · γ^(milestones passed)`.
    public func learningRate(step: Int, baseLR: Double, group: Int) -> Double {
        baseLR * pow(gamma, Double(milestones.filter { $0 <= step }.count))
    }
}

/// `ExponentialLR`: `base · γ^step`.
public struct ExponentialLR: LRSchedule {
    /// The decay per step.
    public let gamma: Double
    /// Decays by `gamma` every step.
    public init(gamma: Double) { self.gamma = gamma }
    /// `base · γ^step`.
    public func learningRate(step: Int, baseLR: Double, group: Int) -> Double { baseLR * pow(gamma, Double(step)) }
}

/// `CosineAnnealingLR` (Loshchilov & Hutter, 2017, without restarts):
/// `η_min + (base − η_min)·(1 + cos(π·step/T_max))/2`.
public struct CosineAnnealingLR: LRSchedule {
    /// The half-period in steps, and the lowest rate.
    public let tMax: Int, etaMin: Double
    /// Cosine annealing from the base rate to `etaMin` over `tMax` steps.
    public init(tMax: Int, etaMin: Double = 0) { self.tMax = tMax; self.etaMin = etaMin }
    /// `etaMin + (base − etaMin)(1 + cos(π·step/tMax))/2`, continued periodically as PyTorch's.
    public func learningRate(step: Int, baseLR: Double, group: Int) -> Double {
        etaMin + (baseLR - etaMin) * (1 + cos(Double.pi * Double(step) / Double(tMax))) / 2
    }
}

/// `CosineAnnealingWarmRestarts`: cosine annealing over periods T₀, T₀·T_mult, T₀·T_mult², …
public struct CosineAnnealingWarmRestarts: LRSchedule {
    /// The first period, the period's growth factor, and the lowest rate.
    public let t0: Int, tMult: Int, etaMin: Double
    /// Cosine annealing restarted every period, each `tMult` times longer than the last.
    public init(t0: Int, tMult: Int = 1, etaMin: Double = 0) {
        require(t0 > 0 && tMult >= 1, "CosineAnnealingWarmRestarts needs T₀ > 0 and T_mult ≥ 1")
        self.t0 = t0; self.tMult = tMult; self.etaMin = etaMin
    }
    /// The cosine of the current period.
    public func learningRate(step: Int, baseLR: Double, group: Int) -> Double {
        var tCur = step, tI = t0
        while tCur >= tI { tCur -= tI; tI *= tMult }
        return etaMin + (baseLR - etaMin) * (1 + cos(Double.pi * Double(tCur) / Double(tI))) / 2
    }
}

/// `LinearLR` — linear warm-up: the factor goes from `startFactor` to `endFactor` over
/// `totalIters` steps, then stays.
public struct LinearLR: LRSchedule {
    /// The factors at the start and the end, and the steps between.
    public let startFactor: Double, endFactor: Double, totalIters: Int
    /// A linear change of the factor over `totalIters` steps (PyTorch's defaults: from a third to 1 in 5).
    public init(startFactor: Double = 1.0 / 3, endFactor: Double = 1, totalIters: Int = 5) {
        self.startFactor = startFactor; self.endFactor = endFactor; self.totalIters = totalIters
    }
    /// `base` times the factor interpolated to this step.
    public func learningRate(step: Int, baseLR: Double, group: Int) -> Double {
        baseLR * (startFactor + (endFactor - startFactor) * Double(min(step, totalIters)) / Double(totalIters))
    }
}

/// `PolynomialLR`: `base · (1 − min(step, total)/total)^power`.
public struct PolynomialLR: LRSchedule {
    /// The steps over which the rate decays, and the polynomial's power.
    public let totalIters: Int, power: Double
    /// A polynomial decay to 0 over `totalIters` steps.
    public init(totalIters: Int = 5, power: Double = 1) { self.totalIters = totalIters; self.power = power }
    /// `base · (1 − step/totalIters)^power`, 0 afterwards.
    public func learningRate(step: Int, baseLR: Double, group: Int) -> Double {
        baseLR * pow(1 - Double(min(step, totalIters)) / Double(totalIters), power)
    }
}

/// `OneCycleLR` (Smith & Topin, 2019), two phases: the rate rises from `maxLR/divFactor`
/// to `maxLR` over `pctStart` of the steps and falls to `initial/finalDivFactor`; momentum
/// moves the opposite way between `maxMomentum` and `baseMomentum`.
public struct OneCycleLR: LRSchedule {
    /// How the rate moves within a phase: by a cosine or linearly.
    public enum Anneal: Sendable { case cos, linear }
    /// The peak rate(s), the steps of the cycle, the rising phase's share, and the annealing.
    public let maxLR: [Double], totalSteps: Int, pctStart: Double, anneal: Anneal
    /// The starting rate is `maxLR/divFactor`; the final one `start/finalDivFactor`.
    public let divFactor: Double, finalDivFactor: Double
    /// Whether momentum cycles, between `maxMomentum` and `baseMomentum`.
    public let cycleMomentum: Bool, baseMomentum: Double, maxMomentum: Double

    /// `maxLR` holds one rate per group, or one for all.
    public init(
        maxLR: [Double], totalSteps: Int, pctStart: Double = 0.3, anneal: Anneal = .cos, divFactor: Double = 25,
        finalDivFactor: Double = 1e4, cycleMomentum: Bool = true, baseMomentum: Double = 0.85, maxMomentum: Double = 0.95
    ) {
        self.maxLR = maxLR; self.totalSteps = totalSteps; self.pctStart = pctStart; self.anneal = anneal
        self.divFactor = divFactor; self.finalDivFactor = finalDivFactor
        self.cycleMomentum = cycleMomentum; self.baseMomentum = baseMomentum; self.maxMomentum = maxMomentum
    }

    private func interpolate(_ start: Double, _ end: Double, _ pct: Double) -> Double {
        switch anneal {
        case .cos: return end + (start - end) / 2 * (cos(Double.pi * pct) + 1)
        case .linear: return (end - start) * pct + start
        }
    }

    /// (fraction through the phase, whether in the rising phase)
    private func phase(_ step: Int) -> (Double, Bool) {
        let upEnd = pctStart * Double(totalSteps) - 1, downEnd = Double(totalSteps - 1)
        let s = Double(step)
        if s <= upEnd { return (s / upEnd, true) }
        return ((s - upEnd) / (downEnd - upEnd), false)
    }

    /// The rate of the phase `step` is in.
    public func learningRate(step: Int, baseLR: Double, group: Int) -> Double {
        let peak = maxLR.count == 1 ? maxLR[0] : maxLR[group]
        let initial = peak / divFactor, minimum = initial / finalDivFactor
        let (pct, rising) = phase(step)
        return rising ? interpolate(initial, peak, pct) : interpolate(peak, minimum, pct)
    }

    /// The momentum, moving against the rate (nil without `cycleMomentum`).
    public func momentum(step: Int, baseMomentum: Double, group: Int) -> Double? {
        guard cycleMomentum else { return nil }
        let (pct, rising) = phase(step)
        return rising ? interpolate(maxMomentum, self.baseMomentum, pct) : interpolate(self.baseMomentum, maxMomentum, pct)
    }
}

/// `SequentialLR`: schedule `i` runs from milestone `i − 1` on, counting its steps from
/// there (warm-up then cosine: `SequentialSchedule([LinearLR(...), CosineAnnealingLR(...)], milestones: [w])`).
public struct SequentialSchedule: LRSchedule {
    /// The schedules, and the steps at which each hands over to the next.
    public let schedules: [any LRSchedule], milestones: [Int]
    /// Runs `schedules` one after another, switching at `milestones`.
    public init(_ schedules: [any LRSchedule], milestones: [Int]) {
        require(schedules.count == milestones.count + 1, "SequentialSchedule needs one milestone fewer than schedules")
        self.schedules = schedules; self.milestones = milestones
    }
    private func locate(_ step: Int) -> (Int, Int) {
        let i = milestones.filter { $0 <= step }.count
        return (i, i == 0 ? step : step - milestones[i - 1])
    }
    /// The rate of the schedule in force, counted from its milestone.
    public func learningRate(step: Int, baseLR: Double, group: Int) -> Double {
        let (i, local) = locate(step)
        return schedules[i].learningRate(step: local, baseLR: baseLR, group: group)
    }
    /// The momentum of the schedule in force.
    public func momentum(step: Int, baseMomentum: Double, group: Int) -> Double? {
        let (i, local) = locate(step)
        return schedules[i].momentum(step: local, baseMomentum: baseMomentum, group: group)
    }
}

/// The warm-up of Ultralytics YOLO: for the first `steps` steps each group's rate is
/// interpolated linearly from its start value (`startLR[group]`, default 0 — YOLO starts
/// the bias group at `warmup_bias_lr` = 0.1) to what `then` gives at that step, and the
/// momentum from `startMomentum` (YOLO's `warmup_momentum` = 0.8) to the group's own.
/// After the warm-up, `then` alone.
public struct Warmup: LRSchedule {
    /// Steps of warm-up.
    public let steps: Int
    /// Each group's starting rate (0 where absent).
    public let startLR: [Int: Double]
    /// The momentum at the start (nil: momentum is not warmed up).
    public let startMomentum: Double?
    /// The schedule the warm-up leads into.
    public let then: any LRSchedule

    /// A warm-up of `steps` steps into `then`.
    public init(steps: Int, startLR: [Int: Double] = [:], startMomentum: Double? = nil, then: any LRSchedule = ConstantSchedule()) {
        self.steps = steps; self.startLR = startLR; self.startMomentum = startMomentum; self.then = then
    }

    private func interp(_ step: Int, _ a: Double, _ b: Double) -> Double {
        a + (b - a) * Double(step) / Double(steps)
    }

    /// The rate interpolated from the group's start to `then`'s, then `then`'s.
    public func learningRate(step: Int, baseLR: Double, group: Int) -> Double {
        let target = then.learningRate(step: step, baseLR: baseLR, group: group)
        return step >= steps ? target : interp(step, startLR[group] ?? 0, target)
    }

    /// The momentum interpolated from `startMomentum` to the group's own, then `then`'s or the group's.
    public func momentum(step: Int, baseMomentum: Double, group: Int) -> Double? {
        let target = then.momentum(step: step, baseMomentum: baseMomentum, group: group)
        guard let start = startMomentum else { return target }
        // Past the warm-up the group's own momentum is restored (unless `then` sets one).
        return step >= steps ? (target ?? baseMomentum) : interp(step, start, target ?? baseMomentum)
    }
}

/// Ultralytics' default decay (`lf` with `cos_lr` off): the rate falls linearly from the base
/// rate to `final` times it, epoch by epoch, reaching it at the last epoch:
/// lr = base · ((1 − e/E)·(1 − final) + final), e = ⌊step / stepsPerEpoch⌋.
public struct EpochLinearDecay: LRSchedule {
    /// Optimizer steps per epoch.
    public let stepsPerEpoch: Int
    /// Epochs of the run.
    public let epochs: Int
    /// The fraction of the base rate at the end (Ultralytics' `lrf`).
    public let final: Double

    /// A linear decay per epoch to `final` of the base rate.
    public init(stepsPerEpoch: Int, epochs: Int, final: Double = 0.01) {
        self.stepsPerEpoch = Swift.max(1, stepsPerEpoch); self.epochs = Swift.max(1, epochs); self.final = final
    }

    /// The rate of the epoch `step` falls in.
    public func learningRate(step: Int, baseLR: Double, group: Int) -> Double {
        let e = Double(Swift.min(step / stepsPerEpoch, epochs))
        return baseLR * ((1 - e / Double(epochs)) * (1 - final) + final)
    }
}
