import Foundation
import GradGuardData
import GradGuardHealth
import GradGuardNN
import GradGuardOptim
import GradGuardTensor

/// How `LRFinder` picks a rate from the sweep's smoothed loss curve.
public enum LRFindRule: String, Codable, Sendable, CaseIterable {
    /// fastai's default since 2.5 (`valley`): the longest stretch over which the loss keeps
    /// falling, and the rate about two thirds of the way down it.
    case valley
    /// The steepest descent of the loss against log(rate) (Lightning's `suggestion()`; Smith 2017).
    case steepest
    /// The rate of the lowest loss divided by ten (fastai's `minimum`).
    case minimum
}

/// The learning-rate range test (Smith 2017, "Cyclical learning rates for training neural
/// networks", arXiv 1506.01186; fastai's `lr_find`, Lightning's `Tuner.lr_find`): the rate
/// grows exponentially from `start` to `end` over at most `steps` optimizer steps, one batch
/// each; the loss is smoothed (an exponential moving average with bias correction, β = 0.98)
/// and the sweep stops once the smoothed loss exceeds `divergence` × its best or is not
/// finite. Nothing of the run is changed: the weights, buffers, optimizer state and
/// hyper-parameters, gradients and the default generator are put back afterwards (as
/// Lightning restores its checkpoint).
///
/// With `curvatureIterations` > 0 the curvature probe measures λ_max at the starting weights
/// first, and the stability limit c/λ_max of the optimizer is drawn over the curve and quoted
/// beside the suggestion. It does not move the suggestion: the curvature at initialisation
/// is often far above where it settles within the first steps (what a warm-up waits out,
/// Gilmer et al. 2021, arXiv 2110.04369), so the limit there is not the limit of the run.
public struct LRFinder {
    /// How the sweep runs and which rule suggests the rate.
    public struct Settings: Sendable, Equatable {
        /// The first and last rates of the exponential sweep.
        public var start = 1e-7, end = 10.0
        /// The most batches (rates) in the sweep.
        public var steps = 100
        /// The loss's exponential smoothing β.
        public var smoothing = 0.98
        /// The sweep stops once the smoothed loss passes this multiple of its best.
        public var divergence = 4.0
        /// The rule that picks the rate from the curve.
        public var rule = LRFindRule.valley
        /// Hessian-vector products of the curvature probe at the start (0: no probe).
        public var curvatureIterations = 20
        /// Examples per batch.
        public var batchSize = 32
        /// The seed of the batches' order.
        public var seed: UInt64 = 0
        /// fastai's defaults.
        public init() {}
    }

    /// The model swept (its weights are put back afterwards).
    public let model: Module
    /// The optimizer whose rate is swept (its state is put back afterwards).
    public let optimizer: any Optimizer
    /// How the sweep runs.
    public var settings: Settings

    /// A range test of `optimizer` on `model`.
    public init(model: Module, optimizer: any Optimizer, settings: Settings = Settings()) {
        (self.model, self.optimizer, self.settings) = (model, optimizer, settings)
    }

    /// Sweeps on batches of `data` (shuffled with `settings.seed`, epoch after epoch as needed)
    /// with the training loss `loss` of a batch.
    public func run(on data: any Dataset, loss: @escaping (Module, Batch) -> Tensor) throws -> LRFindResult {
        let loader = DataLoader(
            data, batchSize: Swift.min(settings.batchSize, Swift.max(data.count, 1)), shuffle: true, dropLast: false, seed: settings.seed)
        var epoch = 0
        var batches = loader.batches(epoch: 0)
        let model = self.model
        func next() throws -> Batch {
            if let (_, b) = try batches.nextBatch() { return b }
            epoch += 1
            batches = loader.batches(epoch: epoch)
            guard let (_, b) = try batches.nextBatch() else { throw LRFindError.emptyData }
            return b
        }
        let first = try next()
        return try run(probe: { loss(model, first) }, lossAt: { i in loss(model, i == 0 ? first : try next()) })
    }

    /// Sweeps with `lossAt(i)`, the training loss of the sweep's step i (its own batch), and
    /// `probe`, the loss of a fixed batch for the curvature at the start.
    public func run(probe: @escaping () throws -> Tensor, lossAt: (Int) throws -> Tensor) throws -> LRFindResult {
        let s = settings
        precondition(s.start > 0 && s.end > s.start && s.steps >= 2, "LRFinder: 0 < start < end, at least two steps")
        // Everything the sweep touches, to put back.
        let weights = model.stateDict().mapValues { $0.copy() }
        let optimizerState = optimizer.state.mapValues { st in ParamState(shape: st.shape, tensors: st.tensors.mapValues { $0.copy() }) }
        let groups = optimizer.paramGroups
        let grads = optimizer.parameters.map(\.grad)
        let random = DefaultGenerator.with { $0.state }
        let wasTraining = model.training
        defer {
            _ = try? model.load(stateDict: weights)
            optimizer.state = optimizerState
            optimizer.paramGroups = groups
            for (p, g) in zip(optimizer.parameters, grads) { p.grad = g }
            DefaultGenerator.with { g in if let r = RandomGenerator(state: random) { g = r } }
            model.train(wasTraining)
        }
        model.train()
        // The curvature at the start, on the probe's batch.
        var reading: CurvatureReading? = nil
        if s.curvatureIterations > 0 {
            optimizer.zeroGrad()
            try probe().backward()
            let probe = CurvatureProbe(
                parameters: optimizer.parameters, buffers: model.namedBuffers().map(\.tensor), every: 1, iterations: s.curvatureIterations,
                tolerance: 1e-3, loss: probe)
            // At rate 1: the limit is then the threshold over λ.
            reading = try probe.measure(step: 0, optimizer: optimizer, lr: 1)
            optimizer.zeroGrad()
        }
        let baseRates = groups.map(\.lr)
        let top = baseRates.max() ?? 0
        var rates: [Double] = [], losses: [Double] = [], smoothed: [Double] = []
        var average = 0.0, best = Double.infinity
        var stop: String? = nil
        for i in 0..<s.steps {
            let lr = s.start * Foundation.pow(s.end / s.start, Double(i) / Double(s.steps - 1))
            // Every group at the sweep's rate, in proportion to its own (discriminative rates keep their ratios).
            for g in optimizer.paramGroups.indices { optimizer.paramGroups[g].lr = top > 0 ? lr * baseRates[g] / top : lr }
            optimizer.zeroGrad()
            let l = try lossAt(i)
            let value = Double(l.item)
            rates.append(lr)
            losses.append(value)
            guard value.isFinite else {
                smoothed.append(.nan)
                stop = "the loss was not finite at rate \(formatNumber(lr))"
                break
            }
            average = s.smoothing * average + (1 - s.smoothing) * value
            let sm = average / (1 - Foundation.pow(s.smoothing, Double(i + 1)))
            smoothed.append(sm)
            best = Swift.min(best, sm)
            if i > 0, sm > s.divergence * best {
                stop = "the smoothed loss passed \(formatNumber(s.divergence))× its best at rate \(formatNumber(lr))"
                break
            }
            l.backward()
            optimizer.step()
        }
        // The rate whose margin is 1 (the reading was taken at rate 1).
        let limit = reading.map { $0.rate(atMargin: 1) }.flatMap { $0.isFinite && $0 > 0 ? $0 : nil }
        return LRFindResult(
            rates: rates, losses: losses, smoothed: smoothed, rule: s.rule, stopped: stop, curvature: reading, curvatureLimit: limit)
    }
}

/// Why the range test could not run.
public enum LRFindError: Error, CustomStringConvertible {
    case emptyData
    /// The reason, in one sentence.
    public var description: String { "lr-find: the training data has no examples" }
}

/// What a range test saw, and the rate it suggests.
public struct LRFindResult: Codable, Sendable {
    /// The rate of each batch of the sweep.
    public let rates: [Double]
    /// Each batch's loss.
    public let losses: [Double]
    /// The smoothed, bias-corrected losses.
    public let smoothed: [Double]
    /// The rule that picked the suggestion.
    public let rule: LRFindRule
    /// Why the sweep stopped early (nil: it ran every step).
    public let stopped: String?
    /// The curvature probe at the starting weights (nil: off), and the optimizer's stable
    /// rate limit there, c/λ_max.
    public let curvature: CurvatureReading?
    /// c/λ_max at the starting weights, when the optimizer describes its stability rule.
    public let curvatureLimit: Double?

    /// A sweep's result.
    public init(
        rates: [Double], losses: [Double], smoothed: [Double], rule: LRFindRule, stopped: String?, curvature: CurvatureReading?, curvatureLimit: Double?
    ) {
        (self.rates, self.losses, self.smoothed, self.rule, self.stopped) = (rates, losses, smoothed, rule, stopped)
        (self.curvature, self.curvatureLimit) = (curvature, curvatureLimit)
    }

    /// The points the rules read: finite smoothed losses.
    var points: [(lr: Double, loss: Double)] { zip(rates, smoothed).filter { $0.1.isFinite }.map { ($0.0, $0.1) } }

    /// The rule's rate, before the curvature limit.
    public var ruleRate: Double? {
        let p = points
        guard p.count >= 3 else { return nil }
        switch rule {
        case .valley:
            // fastai's valley: the longest decreasing subsequence of the losses; the rate at
            // (1/3 + 1/6) of its length from its start.
            let n = p.count
            var lengths = [Int](repeating: 1, count: n)
            var maxStart = 0, maxEnd = 0
            for i in 1..<n {
                for j in 0..<i where p[i].loss < p[j].loss && lengths[i] < lengths[j] + 1 { lengths[i] = lengths[j] + 1 }
                if lengths[maxEnd] < lengths[i] {
                    maxEnd = i
                    maxStart = maxEnd - lengths[maxEnd]
                }
            }
            let sections = Double(maxEnd - maxStart) / 3
            let index = Swift.min(Swift.max(maxStart + Int(sections) + Int(sections / 2), 0), n - 1)
            return p[index].lr
        case .steepest:
            // Lightning skips the first 10 and the last point; the slope per log-rate.
            let lo = Swift.min(10, p.count - 2), hi = p.count - 1
            var best = (slope: Double.infinity, lr: p[lo].lr)
            for i in lo..<hi {
                let slope = (p[i + 1].loss - p[i].loss) / Foundation.log(p[i + 1].lr / p[i].lr)
                if slope < best.slope { best = (slope, p[i].lr) }
            }
            return best.lr
        case .minimum:
            return p.min { $0.loss < $1.loss }!.lr / 10
        }
    }

    /// The suggested rate: the rule's.
    public var suggestion: Double? { ruleRate }

    /// How the suggestion was chosen, in words.
    public var explanation: String {
        guard let s = suggestion else { return "no suggestion: the sweep saw fewer than three finite losses" }
        let rules: [LRFindRule: String] = [
            .valley: "fastai's valley rule (two thirds down the longest stretch of falling loss)",
            .steepest: "the steepest fall of the loss per log-rate", .minimum: "the rate of the lowest loss ÷ 10"
        ]
        var text = "suggested rate \(formatNumber(s)), by \(rules[rule]!)"
        if let limit = curvatureLimit {
            text +=
                "; stability limit at the starting weights \(formatNumber(limit)) (\(curvature?.rule ?? ""))"
                + (s > limit ? ": the suggestion is past it, so the first steps may spike (a warm-up helps)" : "")
        }
        return text
    }
}
