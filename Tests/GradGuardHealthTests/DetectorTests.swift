import GradGuard
import XCTest
import _TestSupport

/// Detectors on scripted traces: a noisy but healthy run, then each fault injected at a
/// known step, blaming a known module.
final class DetectorTests: XCTestCase {
    let baseNorms: [(String, Double)] = [("embed", 0.3), ("rnn", 1.0), ("head", 0.5)]

    /// A noisy healthy step: each module's norm varies ×e^±0.35, the loss falls slowly with noise.
    func healthy(
        _ step: Int, _ g: inout RandomGenerator, scale: [String: Double] = [:], loss lossScale: Double = 1,
        nan: String? = nil
    ) -> StepStatistics {
        var modules: [ModuleStatistics] = [], tensors: [TensorStatistics] = []
        for (name, base) in baseNorms {
            let noise = Foundation.exp(0.35 * g.nextNormal())
            var n = Float(base * noise * (scale[name] ?? 1))
            if nan == name { n = .nan }
            modules.append(ModuleStatistics(name: name, gradNorm: n))
            tensors.append(TensorStatistics(name: "\(name).weight", module: name, gradNorm: n, nanCount: nan == name ? 3 : 0))
        }
        let global = Float(modules.map { Double($0.gradNorm * $0.gradNorm) }.reduce(0, +).squareRoot())
        let loss = Float((2 / (1 + Double(step) / 200) + 0.1 * g.nextUniform()) * lossScale)
        return StepStatistics(step: step, loss: loss, globalNorm: global, tensors: tensors, modules: modules)
    }

    /// Feeds steps to a monitor (healthy steps enter the history) and returns every finding.
    func run(
        _ monitor: HealthMonitor, steps: Range<Int>, seed: UInt64 = 7,
        make: (Int, inout RandomGenerator) -> StepStatistics
    ) -> [Finding] {
        var g = RandomGenerator(seed: seed)
        var all: [Finding] = []
        for s in steps {
            let stats = make(s, &g)
            let f = monitor.inspect(stats)
            monitor.record(stats, healthy: !f.contains { $0.kind.isExploding })
            all += f
        }
        return all
    }

    func testNoFalseAlarmOnALongNoisyHealthyRun() {
        for seed in [1, 2, 3] as [UInt64] {
            let findings = run(HealthMonitor(), steps: 0..<3000, seed: seed) { s, g in healthy(s, &g) }
            XCTAssertTrue(findings.isEmpty, "seed \(seed): \(findings.map { "\($0.step) \($0.kind): \($0.message)" })")
        }
    }

    func testSpikeCaughtAtItsStepBlamingTheModuleThatDepartedFirst() {
        let findings = run(HealthMonitor(), steps: 0..<200) { s, g in
            // head departs (×5, no global spike yet) at 150; rnn explodes (×100) at 151.
            healthy(s, &g, scale: s == 150 ? ["head": 5] : s == 151 ? ["head": 5, "rnn": 100] : [:])
        }
        let spikes = findings.filter { $0.kind == .spike }
        XCTAssertEqual(spikes.map(\.step), [151])
        XCTAssertEqual(spikes.first?.blame.first?.module, "head", "\(spikes.first?.blame ?? [])")
        XCTAssertEqual(spikes.first?.blame.first?.departedAt, 150)
        XCTAssertEqual(spikes.first?.blame.dropFirst().first?.module, "rnn")
    }

    func testSustainedGrowthCaughtBeforeNaN() {
        let findings = run(HealthMonitor(detectors: [GrowthDetector()]), steps: 0..<240) { s, g in
            healthy(s, &g, scale: s >= 200 ? ["rnn": Foundation.pow(1.8, Double(s - 199))] : [:])
        }
        let growth = findings.filter { $0.kind == .growth }
        XCTAssertEqual(growth.count, findings.count)
        XCTAssertEqual(growth.first.map { (200...210).contains($0.step) }, true, "\(growth.map(\.step))")
        XCTAssertEqual(growth.first?.blame.first?.module, "rnn")
    }

    func testNonFiniteGradientCaughtAtItsStepNamingTheTensor() {
        let findings = run(HealthMonitor(), steps: 0..<260) { s, g in healthy(s, &g, nan: s == 250 ? "head" : nil) }
        XCTAssertEqual(findings.map(\.kind), [.nonFiniteGradient])
        XCTAssertEqual(findings.first?.step, 250)
        XCTAssertEqual(findings.first?.tensors, ["head.weight"])
        XCTAssertEqual(findings.first?.blame.first?.module, "head")
    }

    func testNonFiniteLossAndWeights() {
        var g = RandomGenerator(seed: 3)
        var s = healthy(5, &g)
        s.loss = .infinity
        XCTAssertEqual(HealthMonitor().inspect(s).map(\.kind), [.nonFiniteLoss])
        s.loss = 1
        s.tensors[1].weightsFinite = false
        let f = HealthMonitor().inspect(s)
        XCTAssertEqual(f.map(\.kind), [.nonFiniteWeights])
        XCTAssertEqual(f.first?.tensors, ["rnn.weight"])
    }

    func testFiniteGradientsWhoseNormOverflowsAreCaught() {
        let p = Tensor.zeros([3]).copy(requiresGrad: true)
        // Squares beyond float32: summed in Double, the norm still fits.
        p.grad = Tensor(shape: [3], scalars: [3e19, -2e20, 1])
        let health = GradientHealth(parameters: [NamedParameter(name: "layer.weight", tensor: p)])
        var stats = health.observe(step: 0, loss: 1)
        XCTAssertEqual(stats.tensors[0].gradMaxAbs, 2e20)
        XCTAssertEqual(Double(stats.globalL2), (9e38 + 4e40 + 1 as Double).squareRoot(), accuracy: 1e14)
        // Far above any healthy norm: a spike from the first step, without a baseline.
        let spike = SpikeDetector().inspect(stats, baselines: ModuleBaselines())
        XCTAssertEqual(spike?.kind, .normCeiling)
        XCTAssertTrue(spike?.message.contains("ceiling") ?? false, spike?.message ?? "")
        // A norm beyond float32 itself, from finite values.
        p.grad = Tensor(shape: [3], scalars: [3e38, -3e38, 1])
        stats = health.observe(step: 1, loss: 1)
        XCTAssertEqual(stats.tensors[0].nanCount + stats.tensors[0].infCount, 0)
        XCTAssertEqual(stats.globalL2, .infinity)
        let f = NonFiniteDetector().inspect(stats, baselines: ModuleBaselines())
        XCTAssertEqual(f?.kind, .nonFiniteGradient)
        XCTAssertTrue(f?.message.contains("overflow") ?? false, f?.message ?? "")
    }

    func testVanishingSustainedForItsPatience() {
        let findings = run(HealthMonitor(), steps: 0..<350) { s, g in healthy(s, &g, scale: s >= 300 ? ["embed": 1e-5] : [:]) }
        XCTAssertEqual(findings.map(\.kind), [.vanishing])
        XCTAssertEqual(findings.first?.step, 339)  // one module alone: 40 steps, 300…339
        XCTAssertEqual(findings.first?.blame.first?.module, "embed")
        // Activation gradients: the signal reaching the first layer a thousand times fainter.
        let v = VanishingDetector(patience: 1)
        var g = RandomGenerator(seed: 9)
        var st = healthy(0, &g)
        st.activations = [
            ActivationGradient(name: "3", norm: 0.2), ActivationGradient(name: "2", norm: 0.01),
            ActivationGradient(name: "1", norm: 1e-5)
        ]
        let found = v.inspect(st, baselines: ModuleBaselines())
        XCTAssertEqual(found?.blame.first?.module, "1")
        XCTAssertTrue(found?.message.contains("activation") ?? false)
    }

    /// Every gradient exactly zero (a detector collapsed at one step of a huge rate: every
    /// class logit saturated, the loss exactly 0) is vanishing too, though no module stands
    /// below another.
    func testEveryGradientZeroIsVanishing() {
        let findings = run(HealthMonitor(), steps: 0..<20) { s, g in
            healthy(s, &g, scale: s >= 10 ? Dictionary(uniqueKeysWithValues: self.baseNorms.map { ($0.0, 0) }) : [:])
        }
        XCTAssertEqual(findings.map(\.kind), [.vanishing])
        XCTAssertEqual(findings.first?.step, 14)
        XCTAssertTrue(findings.first?.message.contains("every gradient has been exactly zero for 5 steps") ?? false, findings.first?.message ?? "")
    }

    func testLossDivergenceCaughtAtItsStep() {
        let jump = run(HealthMonitor(), steps: 0..<360) { s, g in healthy(s, &g, loss: s >= 350 ? 8 : 1) }
        XCTAssertEqual(jump.first?.kind, .lossDivergence)
        XCTAssertEqual(jump.first?.step, 352, "three steps in a row far above the best")
        let creep = run(HealthMonitor(detectors: [LossDivergenceDetector()]), steps: 0..<400) { s, g in
            healthy(s, &g, loss: s >= 300 ? 1 + Double(s - 299) * 0.06 : 1)
        }
        XCTAssertEqual(creep.first?.kind, .lossDivergence)
        XCTAssertEqual(creep.first.map { (305...325).contains($0.step) }, true, "\(creep.map(\.step))")
    }
}
