import Foundation
import GradGuardTensor

/// NaN or ±Inf in the loss, the gradients or the weights.
public final class NonFiniteDetector: GradientDetector {
    /// `non-finite`.
    public var name: String { "non-finite" }
    /// The detector (it keeps no history).
    public init() {}

    /// A finding for a non-finite loss, gradient or weight, naming the tensors.
    public func inspect(_ stats: StepStatistics, baselines: ModuleBaselines) -> Finding? {
        let badWeights = stats.nonFiniteWeights
        if !badWeights.isEmpty {
            let modules = Set(stats.tensors.filter { !$0.weightsFinite }.map(\.module))
            return Finding(
                kind: .nonFiniteWeights, step: stats.step,
                message: "weights are NaN or infinite in \(badWeights.joined(separator: ", "))",
                evidence: ["tensors": Double(badWeights.count)], blame: baselines.rank(stats, among: modules),
                tensors: badWeights)
        }
        if let loss = stats.loss, !loss.isFinite {
            return Finding(
                kind: .nonFiniteLoss, step: stats.step, message: "the loss is \(loss)",
                evidence: ["loss": Double(loss)], blame: baselines.rank(stats))
        }
        // Values that are NaN or ±Inf, or finite values so large that the norm overflows float32.
        let bad = stats.tensors.filter { !$0.gradientFinite || !$0.gradNorm.isFinite }
        guard !bad.isEmpty else { return nil }
        let nan = bad.reduce(0) { $0 + $1.nanCount }, inf = bad.reduce(0) { $0 + $1.infCount }
        let what = nan + inf > 0 ? "gradients hold \(nan) NaN and \(inf) infinite values" : "gradient norms overflow float32"
        return Finding(
            kind: .nonFiniteGradient, step: stats.step,
            message: "\(what) in \(bad.map(\.name).joined(separator: ", "))",
            evidence: ["nan": Double(nan), "inf": Double(inf), "tensors": Double(bad.count)],
            blame: baselines.rank(stats, among: Set(bad.map(\.module))), tensors: bad.map(\.name))
    }
}

/// A global gradient norm far above its running baseline, measured against the run's own noise.
///
/// After `warmup` healthy steps a norm is a spike when it is more than `factor` times the median
/// of the last `window` healthy norms (a median is not dragged up by the spikes it is meant to
/// catch) — or more than the run's own spread allows, `exp(sigmas · 1.4826 · MAD)` of the log
/// norms, when that is wider (cross-entropy near convergence: one misclassified example in a
/// batch lifts the norm several times) — and also above the median of the first `warmup`
/// healthy norms: a run that has converged to tiny gradients and meets a batch with the
/// gradient of its early steps has not blown up. Before the warm-up, from the second step on,
/// more than `extremeFactor` times the median is a spike (a blow-up in the first steps); from
/// the first step, a norm above the absolute `ceiling` (no float32 training is healthy with
/// a gradient norm of 1e8; a run that starts there has no baseline to compare with).
public final class SpikeDetector: GradientDetector {
    /// The multiple of the running median that is a spike, the median's window, steps before it judges, the multiple that is extreme at once, the absolute norm ceiling, and the robust σ of log norms the limit widens to.
    public let factor: Double, window: Int, warmup: Int, extremeFactor: Double, ceiling: Double, sigmas: Double
    /// What the detector keeps: the healthy norms, and the medians of the first `warmup`
    /// healthy norms and losses (nil until then).
    struct State: SavedState {
        var norms: Window
        var early: Double? = nil
        var earlyLoss: Double? = nil
        var firstLosses: [Double] = []
        static let fields: [SavedField<State>] = [
            .window("norms", \.norms), .optional("early", \.early), .optional("early_loss", \.earlyLoss), .numbers("first_losses", \.firstLosses)
        ]
    }
    private var state: State
    /// `spike`: the prefix of its state in checkpoints.
    public var name: String { "spike" }

    /// A detector with the given limits.
    public init(
        factor: Double = 6, window: Int = 100, warmup: Int = 10, extremeFactor: Double = 1000, ceiling: Double = 1e8, sigmas: Double = 5
    ) {
        require(factor > 1 && window >= warmup && warmup >= 3 && sigmas > 0, "SpikeDetector: factor > 1, window ≥ warmup ≥ 3, σ > 0")
        self.factor = factor
        self.extremeFactor = extremeFactor
        self.ceiling = ceiling
        self.window = window
        self.warmup = warmup
        self.sigmas = sigmas
        state = State(norms: Window(window))
    }

    /// The multiple of the median that counts as a spike now: `factor`, or the spread of the
    /// log norms when it is wider.
    public var threshold: Double {
        let logs = state.norms.values.map { Foundation.log($0) }
        guard logs.count >= warmup else { return extremeFactor }
        let m = median(logs)
        let mad = median(logs.map { Swift.abs($0 - m) })
        return Swift.max(factor, Foundation.exp(sigmas * 1.4826 * mad))
    }

    /// A spike (or a norm over the ceiling) at this step, blaming the modules that left their baselines.
    public func inspect(_ stats: StepStatistics, baselines: ModuleBaselines) -> Finding? {
        let n = Double(stats.globalL2)
        guard n.isFinite else { return nil }
        if n > ceiling {
            return Finding(
                kind: .normCeiling, step: stats.step,
                message: String(format: "gradient norm %.4g is above the ceiling %.4g", n, ceiling),
                evidence: ["norm": n, "ceiling": ceiling], blame: baselines.rank(stats))
        }
        guard state.norms.count >= 2 else { return nil }
        let base = median(state.norms.values)
        let limit = threshold
        guard n > limit * base else { return nil }
        if state.norms.count >= warmup, let early = state.early, n <= early { return nil }
        var evidence = ["norm": n, "median": base, "ratio": n / base, "limit": limit]
        // The step's loss against the loss of the first steps: above 1 the batch does worse than
        // the untrained model did; far below it, the spike is a converged model's rare mistake.
        if let l = stats.loss.map(Double.init), let e = state.earlyLoss, e > 0 { evidence["loss_ratio"] = l.isFinite ? l / e : 1e300 }
        return Finding(
            kind: .spike, step: stats.step,
            message: String(format: "gradient norm %.4g is %.1f× its running median %.4g (limit %.1f×)", n, n / base, base, limit),
            evidence: evidence, blame: baselines.rank(stats))
    }

    /// Adds a healthy step's norm to the window.
    public func record(_ stats: StepStatistics, healthy: Bool) {
        guard healthy && stats.globalL2.isFinite && stats.globalL2 > 0 else { return }
        state.norms.append(Double(stats.globalL2))
        if state.early == nil, state.norms.count == warmup { state.early = median(state.norms.values) }
        if state.earlyLoss == nil, let l = stats.loss.map(Double.init), l.isFinite {
            state.firstLosses.append(l)
            if state.firstLosses.count == warmup { state.earlyLoss = median(state.firstLosses) }
        }
    }

    /// The healthy norms remembered (for percentile recommendations).
    public var recentNorms: [Double] { state.norms.values }

    /// The window of norms, for checkpoints.
    public func stateDict() -> SavedNumbers { state.saved }
    /// Restores a window `stateDict()` returned.
    public func load(stateDict: SavedNumbers) { state.read(stateDict) }
}

/// Exponential growth that has not yet reached NaN: over the last `window` steps the log
/// of the global norm rises along a straight line (R² ≥ `minR2`) by at least `minRise`
/// in all, all but one of the steps by at least `minStepGrowth`×. Reported once per episode.
public final class GrowthDetector: GradientDetector {
    /// Steps of the trend, the rise over them, the fit's R² and the growth per step that make sustained growth.
    public let window: Int, minRise: Double, minR2: Double, minStepGrowth: Double
    struct State: SavedState {
        var logs: Window
        var quietUntil = Int.min
        static let fields: [SavedField<State>] = [.window("logs", \.logs), .whole("quietUntil", \.quietUntil, default: Int.min)]
    }
    var state: State
    /// `growth`: the prefix of its state in checkpoints.
    public var name: String { "growth" }

    /// A detector with the given trend limits.
    public init(window: Int = 8, minRise: Double = 20, minR2: Double = 0.9, minStepGrowth: Double = 1.1) {
        require(window >= 4 && minRise > 1 && minStepGrowth >= 1, "GrowthDetector: window ≥ 4, rise > 1")
        self.window = window
        self.minRise = minRise
        self.minR2 = minR2
        self.minStepGrowth = minStepGrowth
        state = State(logs: Window(window))
    }

    /// Sustained exponential growth of the global norm, when the recent norms fit one.
    public func inspect(_ stats: StepStatistics, baselines: ModuleBaselines) -> Finding? {
        let n = Double(stats.globalL2)
        guard n.isFinite, n > 0 else { return nil }
        state.logs.append(Foundation.log(n))
        guard state.logs.count == window, stats.step >= state.quietUntil else { return nil }
        let v = state.logs.values
        let (slope, r2) = linearTrend(v)
        let rise = Foundation.exp(v.last! - v.first!)
        let rising = zip(v.dropFirst(), v).filter { $0 - $1 >= Foundation.log(minStepGrowth) }.count
        guard rise >= minRise, r2 >= minR2, rising >= window - 2 else { return nil }
        state.quietUntil = stats.step + window
        return Finding(
            kind: .growth, step: stats.step,
            message: String(format: "gradient norm grew %.3g× over %d steps (×%.2f per step)", rise, window - 1, Foundation.exp(slope)),
            evidence: ["rise": rise, "perStep": Foundation.exp(slope), "r2": r2, "norm": n], blame: baselines.rank(stats))
    }
}

extension GrowthDetector {
    /// The recent norms, for checkpoints.
    public func stateDict() -> SavedNumbers { state.saved }
    /// Restores the norms `stateDict()` returned.
    public func load(stateDict: SavedNumbers) { state.read(stateDict) }
}

/// Vanishing gradients, sustained: watched activation gradients (for `patience` steps) or
/// module gradient norms relative to their weight norms (for `modulePatience` steps) more
/// than `peerRatio` below the largest of their peers, or below the absolute `floor`; every
/// gradient exactly zero (for `patience` steps).
public final class VanishingDetector: GradientDetector {
    /// A module below this share of its peers' median norm, the absolute floor, and the steps it must stay there.
    public let peerRatio: Double, floor: Double, patience: Int
    struct State: SavedState {
        var streak = 0
        static let fields: [SavedField<State>] = [.whole("streak", \.streak)]
    }
    private var state = State()
    /// `vanishing`: the prefix of its state in checkpoints.
    public var name: String { "vanishing" }

    /// The vanishing streaks, for checkpoints.
    public func stateDict() -> SavedNumbers { state.saved }
    /// Restores the streaks `stateDict()` returned.
    public func load(stateDict: SavedNumbers) { state.read(stateDict) }

    /// Steps a module alone must stay faint among its peers (activation gradients and an
    /// all-zero gradient need `patience`).
    public let modulePatience: Int

    /// A detector with the given thresholds and patience.
    public init(peerRatio: Double = 1e-3, floor: Double = 1e-10, patience: Int = 5, modulePatience: Int = 40) {
        require(peerRatio > 0 && peerRatio < 1 && patience >= 1, "VanishingDetector: ratio in (0, 1), patience ≥ 1")
        self.modulePatience = modulePatience
        self.peerRatio = peerRatio
        self.floor = floor
        self.patience = patience
    }

    /// The entries far below the largest, or under the floor, with their ratio to the largest.
    func faint(_ items: [(String, Double)]) -> [(String, Double)] {
        let finite = items.filter { $0.1.isFinite }
        guard let top = finite.map(\.1).max(), top > 0 else { return [] }
        return finite.filter { $0.1 < top * peerRatio || $0.1 < floor }.map { ($0.0, $0.1 / top) }.sorted { $0.1 < $1.1 }
    }

    /// Vanishing gradients of the whole model, of modules or of watched activations, once they have lasted.
    public func inspect(_ stats: StepStatistics, baselines: ModuleBaselines) -> Finding? {
        let acts = faint(stats.activations.map { ($0.name, Double($0.norm)) })
        let withGrad = Set(stats.tensors.filter(\.hasGradient).map(\.module))
        // Each module's gradient relative to its weights (‖g‖/‖w‖, raw ‖g‖ when the weight norm is
        // not known): a BatchNorm's two vectors get a gradient thousands of times smaller than
        // a large convolution's without anything vanishing.
        // Modules of vectors only (normalisation layers, biases) are compared when nothing else
        // is: their small gradients say nothing about the signal flowing through the layers.
        let withMatrix = stats.modules.filter { withGrad.contains($0.name) && $0.holdsMatrix != false }
        let compared = withMatrix.isEmpty ? stats.modules.filter { withGrad.contains($0.name) } : withMatrix
        let graded = compared.map { m in
            (m.name, m.weightNorm > 0 && m.weightNorm.isFinite ? Double(m.gradNorm) / Double(m.weightNorm) : Double(m.gradNorm))
        }
        // Every gradient exactly zero: nothing trains (a collapse that drove the loss to an exact
        // minimum, saturated outputs, or a graph cut from the loss). No largest to compare with.
        let dead = !graded.isEmpty && graded.allSatisfy { $0.1 == 0 } && (stats.loss?.isFinite ?? true)
        let mods = dead ? graded.map { ($0.0, 0.0) } : faint(graded)
        guard !acts.isEmpty || !mods.isEmpty else { state.streak = 0; return nil }
        state.streak += 1
        // One module faint among its peers must stay so for `modulePatience` steps: early in
        // training a branch the loss barely uses yet (a detector's BatchNorm) is faint for a few
        // dozen steps and then learns.
        let needed = dead || !acts.isEmpty ? patience : Swift.max(patience, modulePatience)
        guard state.streak == needed else { return nil }
        let worst = (acts + mods).min { $0.1 < $1.1 }!
        let source = acts.isEmpty ? "module gradient norms" : "activation gradients"
        return Finding(
            kind: .vanishing, step: stats.step,
            message: dead
                ? "every gradient has been exactly zero for \(patience) steps" + (stats.loss.map { " (loss \(formatNumber(Double($0))))" } ?? "")
                    + ": nothing trains"
                : String(format: "%@ vanish for %d steps: %@ at %.2g of the largest", source, needed, worst.0, worst.1),
            evidence: ["ratio": worst.1, "steps": Double(needed)],
            blame: (acts.isEmpty ? mods : acts).prefix(5).map { Blame(module: $0.0, ratio: Float($0.1), departedAt: nil) },
            tensors: stats.tensors.filter { t in mods.contains { $0.0 == t.module } }.map(\.name))
    }
}

/// The loss far above its best — more than `factor` times the best running average (an
/// exponential average, α 0.1) while the running average itself, this step included, is
/// above `smoothedFactor` times its best (one noisy batch is not a divergence) — after
/// `warmup` steps; or rising steadily over `window` steps (R² ≥ `minR2`, up by `minRise`).
/// Either way the running average must also have given back `minGiveBack` of the progress
/// made since the start (its first value minus its best): near zero, ratios mean nothing
/// (0.10 against a best of 0.012 is noise of a converged cross-entropy, not a divergence).
/// The first rule must hold on `persistence` steps in a row.
public final class LossDivergenceDetector: GradientDetector {
    /// The limits of a divergence: the loss over the best, smoothed over the best, the window, the steps before it judges, and the trend's rise, R² and the progress given back.
    public let factor: Double, smoothedFactor: Double, window: Int, warmup: Int, minRise: Double, minR2: Double, minGiveBack: Double
    /// What the detector keeps: the best and running losses, the first running average (the
    /// loss at the start), the consecutive steps far above the best, the recent losses.
    struct State: SavedState {
        var best = Double.infinity
        var smoothed: Double? = nil
        var seen = 0
        var recent: Window
        var quietUntil = Int.min
        var start: Double? = nil
        var farSteps = 0
        static let fields: [SavedField<State>] = [
            .number("best", \.best, default: .infinity), .optional("smoothed", \.smoothed), .whole("seen", \.seen), .window("recent", \.recent),
            .whole("quietUntil", \.quietUntil, default: Int.min), .optional("start", \.start), .whole("far_steps", \.farSteps)
        ]
    }
    private var state: State
    /// Consecutive steps far above the best; `persistence` of them make a divergence (a
    /// healthy run's passing bump is one or two).
    public let persistence: Int
    /// `loss-divergence`: the prefix of its state in checkpoints.
    public var name: String { "loss-divergence" }

    /// A detector with the given limits.
    public init(
        factor: Double = 4, smoothedFactor: Double = 1.5, window: Int = 20, warmup: Int = 20, minRise: Double = 1.5,
        minR2: Double = 0.8, minGiveBack: Double = 0.3, persistence: Int = 3
    ) {
        require(persistence >= 1 && minGiveBack >= 0, "LossDivergenceDetector: persistence ≥ 1, give-back ≥ 0")
        self.persistence = persistence
        self.minGiveBack = minGiveBack
        self.factor = factor
        self.smoothedFactor = smoothedFactor
        self.window = window
        self.warmup = warmup
        self.minRise = minRise
        self.minR2 = minR2
        state = State(recent: Window(window))
    }

    /// A divergence of the loss from its best, when it has lasted.
    public func inspect(_ stats: StepStatistics, baselines: ModuleBaselines) -> Finding? {
        guard let l = stats.loss.map(Double.init), l.isFinite, stats.step >= state.quietUntil else { return nil }
        let smoothedNow = state.smoothed.map { 0.9 * $0 + 0.1 * l } ?? l
        let floor = state.best + minGiveBack * Swift.max((state.start ?? state.best) - state.best, 0)
        let far =
            state.seen >= warmup && state.best.isFinite && l > factor * state.best && smoothedNow > smoothedFactor * state.best && smoothedNow > floor
            && l - state.best > 1e-6
        state.farSteps = far ? state.farSteps + 1 : 0
        if far, state.farSteps >= persistence {
            state.farSteps = 0
            state.quietUntil = stats.step + window
            return Finding(
                kind: .lossDivergence, step: stats.step,
                message: String(format: "loss %.4g is %.1f× its best %.4g", l, l / state.best, state.best),
                evidence: ["loss": l, "best": state.best, "ratio": l / state.best], blame: baselines.rank(stats))
        }
        let trial = state.recent.values + [l]
        if trial.count >= window, state.seen >= warmup {
            let v = Array(trial.suffix(window))
            let (_, r2) = linearTrend(v)
            if r2 >= minR2, v.last! > minRise * v.first!, v.first! > 0, v.last! - v.first! > floor - state.best, smoothedNow > floor {
                state.quietUntil = stats.step + window
                return Finding(
                    kind: .lossDivergence, step: stats.step,
                    message: String(format: "loss rose steadily from %.4g to %.4g over %d steps", v.first!, v.last!, window),
                    evidence: ["from": v.first!, "to": v.last!, "r2": r2], blame: baselines.rank(stats))
            }
        }
        return nil
    }

    /// The best loss and recent losses, for checkpoints.
    public func stateDict() -> SavedNumbers { state.saved }

    /// Restores the state `stateDict()` returned.
    public func load(stateDict: SavedNumbers) { state.read(stateDict) }

    /// Adds a healthy step's loss to the history.
    public func record(_ stats: StepStatistics, healthy: Bool) {
        guard healthy, let l = stats.loss.map(Double.init), l.isFinite else { return }
        if state.start == nil { state.start = l }
        state.seen += 1
        state.recent.append(l)
        let s = state.smoothed.map { 0.9 * $0 + 0.1 * l } ?? l
        state.smoothed = s
        state.best = Swift.min(state.best, s)
    }
}

/// A loss or gradient norm more than `sigma` standard deviations above its mean over the last
/// `window` steps — the rolling z-score rule of OLMo-core's `SkipStepOptimizer`
/// (`get_step_factor`: at least max(20, window/2) earlier values, the unbiased standard
/// deviation of the earlier values only, defaults window 128 and σ factor 6). Two differences,
/// on purpose: only a value *above* the mean counts (OLMo-core takes |z|, so an unusually low
/// loss would skip a step too), and NaN/±Inf values never enter the history (the non-finite
/// detector handles those steps). Every step's finite values enter it, skipped or not, as there.
public final class RollingZScoreDetector: GradientDetector {
    /// The σ above the rolling mean that is reported, and the window of the mean and σ.
    public let sigma: Double, window: Int
    struct State: SavedState {
        var losses: Window, norms: Window
        static let fields: [SavedField<State>] = [.window("losses", \.losses), .window("norms", \.norms)]
    }
    private var state: State
    /// `zscore`: the prefix of its state in checkpoints.
    public var name: String { "zscore" }

    /// A detector at `sigma` over `window` steps (OLMo-core's 6 and 128).
    public init(sigma: Double = 6, window: Int = 128) {
        require(sigma > 0 && window >= 2, "RollingZScoreDetector: σ > 0, window ≥ 2")
        self.sigma = sigma
        self.window = window
        state = State(losses: Window(window), norms: Window(window))
    }

    /// Values needed before the rule applies.
    public var minimumHistory: Int { Swift.max(20, window / 2) }

    /// The z-score of `x` against `history` (unbiased standard deviation); nil with too short
    /// a history. A value above a constant history has z = ∞.
    func zScore(_ x: Double, _ history: [Double]) -> Double? {
        guard history.count >= minimumHistory, history.count >= 2, x.isFinite else { return nil }
        let mean = history.reduce(0, +) / Double(history.count)
        let variance = history.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(history.count - 1)
        let std = variance.squareRoot()
        if std == 0 { return x > mean ? .infinity : 0 }
        return (x - mean) / std
    }

    /// A loss or norm more than `sigma` σ above its rolling mean.
    public func inspect(_ stats: StepStatistics, baselines: ModuleBaselines) -> Finding? {
        var worst: (what: String, value: Double, z: Double, mean: Double)? = nil
        let candidates: [(String, Double?, [Double])] = [
            ("loss", stats.loss.map(Double.init), state.losses.values), ("gradient norm", Double(stats.globalL2), state.norms.values)
        ]
        for (what, value, history) in candidates {
            guard let value, let z = zScore(value, history), z > sigma, z > (worst?.z ?? -.infinity) else { continue }
            worst = (what, value, z, history.reduce(0, +) / Double(history.count))
        }
        guard let w = worst else { return nil }
        return Finding(
            kind: .zScoreSpike, step: stats.step,
            message: String(
                format: "%@ %.4g is %@σ above its mean %.4g over the last %d steps (limit %gσ)", w.what, w.value,
                w.z.isFinite ? String(format: "%.1f", w.z) : "∞", w.mean, w.what == "loss" ? state.losses.count : state.norms.count, sigma),
            evidence: ["value": w.value, "z": w.z.isFinite ? w.z : 1e300, "mean": w.mean, "sigma": sigma], blame: baselines.rank(stats))
    }

    /// Adds a step's finite loss and norm to the windows.
    public func record(_ stats: StepStatistics, healthy: Bool) {
        if let l = stats.loss, l.isFinite { state.losses.append(Double(l)) }
        if stats.globalL2.isFinite { state.norms.append(Double(stats.globalL2)) }
    }

    /// The windows, for checkpoints.
    public func stateDict() -> SavedNumbers { state.saved }
    /// Restores the windows `stateDict()` returned.
    public func load(stateDict: SavedNumbers) { state.read(stateDict) }
}

/// A loss that has not fallen: after `patience` healthy steps, the mean of the last `window`
/// losses is still above (1 − `minDrop`) times the mean of the first `window`. Gradients that
/// vanish before they reach the layers that matter (a tanh RNN over long sequences), or a rate
/// so high that training bounces, look like this and like nothing else: no norm is out of
/// place. Reported once.
public final class StallDetector: GradientDetector {
    /// Steps before it judges, the steps averaged at each end, and the least drop that counts as progress.
    public let patience: Int, window: Int, minDrop: Double
    struct State: SavedState {
        var first: [Double] = []
        var recent: Window
        var seen = 0
        var reported = false
        static let fields: [SavedField<State>] = [
            .numbers("first", \.first), .window("recent", \.recent), .whole("seen", \.seen), .flag("reported", \.reported)
        ]
    }
    private var state: State
    /// `stall`: the prefix of its state in checkpoints.
    public var name: String { "stall" }

    /// A detector with the given patience, window and drop.
    public init(patience: Int = 250, window: Int = 20, minDrop: Double = 0.05) {
        require(patience >= 2 * window && window >= 2 && minDrop > 0 && minDrop < 1, "StallDetector: patience ≥ 2·window, drop in (0, 1)")
        self.patience = patience
        self.window = window
        self.minDrop = minDrop
        state = State(recent: Window(window))
    }

    /// A loss that has not fallen by `minDrop` since the start, once, after `patience` steps.
    public func inspect(_ stats: StepStatistics, baselines: ModuleBaselines) -> Finding? {
        guard !state.reported, state.seen >= patience, state.first.count == window, let l = stats.loss.map(Double.init), l.isFinite else { return nil }
        let start = state.first.reduce(0, +) / Double(window)
        let now = (state.recent.values.suffix(window - 1) + [l]).reduce(0, +) / Double(window)
        guard start > 0, now >= (1 - minDrop) * start else { return nil }
        state.reported = true
        return Finding(
            kind: .stalled, step: stats.step,
            message: String(format: "the loss has not fallen in %d steps: %.4g now against %.4g at the start", state.seen, now, start),
            evidence: ["start": start, "now": now, "steps": Double(state.seen)], blame: baselines.rank(stats))
    }

    /// Adds a healthy step's loss to the start or the recent window.
    public func record(_ stats: StepStatistics, healthy: Bool) {
        guard healthy, let l = stats.loss.map(Double.init), l.isFinite else { return }
        state.seen += 1
        if state.first.count < window { state.first.append(l) }
        state.recent.append(l)
    }

    /// The first and recent losses, for checkpoints.
    public func stateDict() -> SavedNumbers { state.saved }
    /// Restores the losses `stateDict()` returned.
    public func load(stateDict: SavedNumbers) { state.read(stateDict) }
}
