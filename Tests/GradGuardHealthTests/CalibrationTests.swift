import GradGuard
import XCTest
import _TestSupport

/// The detectors' and the diagnosis' calibration against the defects GuardBench found: ratios
/// near zero, a converged model's rare mistakes, and advice that contradicted the model.
final class CalibrationTests: XCTestCase {
    func stats(_ step: Int, loss: Float, norm: Float) -> StepStatistics {
        StepStatistics(
            step: step, loss: loss, globalNorm: norm, tensors: [TensorStatistics(name: "fc.weight", module: "fc", gradNorm: norm)],
            modules: [ModuleStatistics(name: "fc", gradNorm: norm)])
    }

    func feed(_ d: any GradientDetector, _ trace: [(Float, Float)]) -> [Finding] {
        var out: [Finding] = []
        for (i, (loss, norm)) in trace.enumerated() {
            let s = stats(i, loss: loss, norm: norm)
            let f = d.inspect(s, baselines: ModuleBaselines())
            d.record(s, healthy: f == nil || !(f!.kind.isExploding))
            if let f { out.append(f) }
        }
        return out
    }

    /// A cross-entropy converging from 2.3 to about 0.012 meets a batch at 0.10: noise, not a
    /// divergence (it was "8×" its best). A loss that gives back most of its progress for
    /// several steps is one.
    func testLossDivergenceNeedsToGiveBackProgress() {
        var trace: [(Float, Float)] = (0..<200).map { i in (Float(2.3 * Foundation.exp(-Double(i) / 30) + 0.012), 1) }
        trace += [(0.10, 1), (0.012, 1), (0.10, 1), (0.013, 1)]
        XCTAssertTrue(feed(LossDivergenceDetector(), trace).isEmpty)
        let diverging = trace + Array(repeating: (Float(1.8), Float(1)), count: 12)
        let found = feed(LossDivergenceDetector(), diverging)
        XCTAssertEqual(found.map(\.kind), [.lossDivergence])
        XCTAssertGreaterThanOrEqual(found.first?.step ?? 0, trace.count + 2, "three steps in a row")
    }

    /// A converged model's gradient norm, 7× its median on one batch with a small loss, is
    /// within the run's own spread once that spread is wide; a norm 50× the median is a spike.
    func testSpikeLimitFollowsTheRunsOwnSpread() {
        var g = RandomGenerator(seed: 3)
        // Log-normal norms with σ = 0.6 (heavy-tailed minibatch gradients).
        let noisy: [(Float, Float)] = (0..<120).map { _ in (0.05, Float(Foundation.exp(0.6 * g.nextNormal()))) }
        let d = SpikeDetector()
        XCTAssertTrue(feed(d, noisy + [(0.05, 7)]).isEmpty)
        XCTAssertGreaterThan(d.threshold, 6)
        let spike = feed(SpikeDetector(), noisy + [(0.05, 400)])
        XCTAssertEqual(spike.map(\.kind), [.spike])
        XCTAssertNotNil(spike.first?.evidence["loss_ratio"])
    }

    /// A moderate spike is clipped to the detector's limit and applied; a spike hundreds of
    /// times the median on a batch worse than the untrained model is skipped; the same spike on
    /// a batch whose loss is below the first steps' (a converged model's rare mistake) is clipped.
    func testSpikesAreClippedAndOnlyBrokenBatchesSkipped() {
        let policy = GuardPolicy()
        func spike(ratio: Double, lossRatio: Double) -> Finding {
            Finding(kind: .spike, step: 5, message: "", evidence: ["ratio": ratio, "median": 2, "limit": 8, "loss_ratio": lossRatio])
        }
        let moderate = GuardDecision.decide(findings: [spike(ratio: 12, lossRatio: 0.5)], policy: policy, memory: GuardMemory())
        XCTAssertEqual(moderate.disposition, .apply)
        XCTAssertEqual(moderate.clipTo, 16)
        XCTAssertFalse(moderate.recovering)
        let broken = GuardDecision.decide(findings: [spike(ratio: 500, lossRatio: 40)], policy: policy, memory: GuardMemory())
        XCTAssertEqual(broken.disposition, .skip(noSnapshot: false))
        let rareMistake = GuardDecision.decide(findings: [spike(ratio: 500, lossRatio: 0.2)], policy: policy, memory: GuardMemory())
        XCTAssertEqual(rareMistake.disposition, .apply)
        XCTAssertEqual(rareMistake.clipTo, 16)
        // With a clipper the spike is the clipper's.
        let clipped = GuardDecision.decide(
            findings: [spike(ratio: 12, lossRatio: 0.5)], policy: GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 1)), memory: GuardMemory())
        XCTAssertEqual(clipped.disposition, .apply)
        XCTAssertNil(clipped.clipTo)
    }

    /// A loss that has not moved in 250 steps is reported once; one that falls is not.
    func testStallIsReportedOnce() {
        let flat: [(Float, Float)] = (0..<400).map { i in (Float(1.386 + 0.01 * Foundation.sin(Double(i))), 1) }
        XCTAssertEqual(feed(StallDetector(), flat).map(\.step), [250])
        let falling: [(Float, Float)] = (0..<400).map { i in (Float(1.386 * Foundation.exp(-Double(i) / 300)), 1) }
        XCTAssertTrue(feed(StallDetector(), falling).isEmpty)
    }

    // MARK: The diagnosis speaks of the model it has

    func diagnostician(_ model: Module) -> Diagnostician {
        Diagnostician(
            parameters: NamedParameter.of(model),
            layerTypes: Dictionary(model.namedModules().map { ($0.name, String(describing: type(of: $0.module))) }, uniquingKeysWith: { a, _ in a }))
    }

    func observed(_ model: Module, step: Int, input: Tensor, loss: (Tensor) -> Tensor) -> StepStatistics {
        let l = loss(input)
        l.backward()
        return GradientHealth(model: model).observe(step: step, loss: l.item)
    }

    /// Gradients that vanish in a vanilla tanh RNN: saturating activations, and the advice to
    /// use a gated cell; in a GRU the same finding never advises "use an LSTM or GRU".
    func testSaturatingActivationsAndNoGatedCellAdviceToAGatedModel() {
        DefaultGenerator.seed(4)
        let x = Tensor.randn([8, 30, 4]), y = Tensor(shape: [8], scalars: (0..<8).map { Float($0 % 4) })
        for cell in [SequenceModel.Cell.rnn, .gru] {
            let model = SequenceModel(cell: cell, inputSize: 4, hiddenSize: 16, outputSize: 4)
            let stats = observed(model, step: 300, input: x) { crossEntropy(model($0), y) }
            let (causes, recs) = diagnostician(model).diagnose(
                [Finding(kind: .stalled, step: 300, message: "stalled")], context: .init(stats: stats, updateRatios: [0.002], startedOutOfScale: false))
            XCTAssertEqual(causes.first?.kind, .saturatingActivations, "\(cell): \(causes)")
            XCTAssertEqual(recs.contains { $0.contains("LSTM or GRU") || $0.contains("LSTM/GRU") }, cell == .rnn, "\(cell): \(recs)")
        }
    }

    /// Twenty-four ReLU layers at PyTorch's default scale without normalisation: depth without
    /// normalisation is the cause; with LayerNorm after each layer it is not.
    func testMissingNormalisationRanksFirstOnADeepPlainNet() {
        DefaultGenerator.seed(5)
        let x = Tensor.randn([16, 32]), y = Tensor(shape: [16], scalars: (0..<16).map { Float($0 % 4) })
        for layerNorm in [false, true] {
            var layers: [any UnaryLayer] = []
            for i in 0..<24 {
                layers.append(Linear(inputSize: i == 0 ? 32 : 64, outputSize: 64))
                if layerNorm { layers.append(LayerNorm([64])) }
                layers.append(ReLU())
            }
            layers.append(Linear(inputSize: 64, outputSize: 4))
            let model = Sequential(layers)
            let stats = observed(model, step: 4, input: x) { crossEntropy(model($0), y) }
            let (causes, recs) = diagnostician(model).diagnose(
                [Finding(kind: .vanishing, step: 4, message: "vanishing")], context: .init(stats: stats, startedOutOfScale: false))
            if layerNorm {
                XCTAssertFalse(causes.contains { $0.kind == .missingNormalisation }, "\(causes)")
            } else {
                XCTAssertEqual(causes.first?.kind, .missingNormalisation, "\(causes)")
                XCTAssertTrue(recs.first?.contains("BatchNorm") ?? false, "\(recs)")
            }
        }
    }

    /// Updates that move the weights by a fifth of their norm each step: the learning rate,
    /// with advice to lower it; no weight decay advised for a LayerNorm's parameters.
    func testLearningRateFromUpdateRatiosAndNoDecayForNormalisation() {
        DefaultGenerator.seed(6)
        let model = Sequential(Linear(inputSize: 8, outputSize: 16), LayerNorm([16]), ReLU(), Linear(inputSize: 16, outputSize: 2))
        let x = Tensor.randn([8, 8]), y = Tensor(shape: [8], scalars: (0..<8).map { Float($0 % 2) })
        var stats = observed(model, step: 40, input: x) { crossEntropy(model($0), y) }
        for i in stats.modules.indices { stats.modules[i].updateRatio = 0.4 }
        let spike = Finding(kind: .spike, step: 40, message: "spike", blame: [Blame(module: "1", ratio: 30)])
        let (causes, recs) = diagnostician(model).diagnose(
            [spike], context: .init(stats: stats, learningRate: 0.1, updateRatios: Array(repeating: 0.2, count: 10), startedOutOfScale: false))
        XCTAssertEqual(causes.first?.kind, .learningRateTooHigh, "\(causes)")
        XCTAssertTrue(recs.contains { $0.contains("lower the learning rate to 0.03") }, "\(recs)")
        XCTAssertFalse(recs.contains { $0.contains("weight decay") }, "\(recs)")
    }
}
