import GradGuard
import GradGuardBench
import XCTest
import _TestSupport

/// GuardBench's smallest configurations, and the defects it found: a guard that fought
/// healthy runs, missed an N(0, 1) start, and advised what contradicted the model.
final class GuardBenchTests: XCTestCase {
    func config(_ name: String) throws -> BenchConfig {
        try XCTUnwrap(BenchCatalog.all.first { $0.name == name }, "no configuration \(name)")
    }

    /// The catalogue spans what the issue asks for, in two halves.
    func testCatalogueSpansArchitecturesOptimizersLossesAndHalves() {
        let all = BenchCatalog.all
        XCTAssertGreaterThanOrEqual(all.count, 40)
        XCTAssertEqual(Set(all.map(\.optimizer)), Set(BenchOptimizer.allCases))
        XCTAssertEqual(Set(all.map(\.objective)), [.crossEntropy, .mse, .bce])
        for half in BenchHalf.allCases { XCTAssertGreaterThanOrEqual(all.filter { $0.half == half }.count, 20) }
        XCTAssertEqual(Set(all.map(\.name)).count, all.count, "names are unique")
        for c in all {
            XCTAssertEqual(c.faults.first, BenchFault.none, "\(c.name): the healthy twin comes first")
            XCTAssertGreaterThan(c.faults.count, 1, "\(c.name): no failing variant")
        }
        let planted = Set(all.flatMap(\.faults).compactMap(\.planted))
        XCTAssertEqual(planted, [.learningRateTooHigh, .initialisation, .missingNormalisation, .saturatingActivations, .recurrentSpectralNorm, .unusualBatch])
    }

    /// The smallest configuration end to end: the healthy run converges and the default guard
    /// leaves it alone; every failing variant fails unguarded, is flagged in time and its
    /// planted cause ranks first.
    func testSmallestConfigurationEndToEnd() throws {
        let c = try config("mlp3-sgd-mse")
        var results: [BenchRunResult] = []
        for fault in c.faults {
            for setting in [GuardSetting.monitorOnly, .standard] { results.append(try BenchRunner.run(c, fault: fault, seed: 1, setting: setting)) }
        }
        let truths = BenchScoring.truths(results)
        XCTAssertEqual(truths["mlp3-sgd-mse|healthy|1"]?.verdict, .healthy, truths.description)
        let s = BenchScoring.summarise(results, setting: .standard, half: nil)
        XCTAssertEqual(s.healthyRuns, 1)
        XCTAssertEqual(s.falseInterventions, 0, s.intervenedOn.joined(separator: "; "))
        XCTAssertEqual(s.falseFindings, 0)
        // The rate and the N(0, 1) start fail unguarded; the poisoned batch, with this seed, does not.
        XCTAssertGreaterThanOrEqual(s.failingRuns, 2, truths.values.map { "\($0.fault): \($0.verdict) \($0.reason)" }.joined(separator: "; "))
        XCTAssertEqual(s.flagged, s.failingRuns, "missed: \(s.missed)")
        XCTAssertEqual(s.diagnosed, s.diagnosable, "misdiagnosed: \(s.misdiagnosed)")
        // The poisoned batch is skipped (its spike is hundreds of times the median and its loss
        // worse than the untrained model's) and named as the cause.
        let poisoned = try XCTUnwrap(results.first { $0.fault == BenchFault.poisonedBatch(step: 150).label && $0.setting == .standard })
        XCTAssertGreaterThan(poisoned.score, 0.9 * (truths["mlp3-sgd-mse|healthy|1"]?.healthyScore ?? 1))
        XCTAssertEqual(poisoned.firstCause, .unusualBatch)
    }

    /// The model of issue 25 (1×5 convolution → GRU → two pre-norm residual blocks → Linear,
    /// AdamW 3e-3, noisy chirps): healthy, it needs no help, and neither the default policy nor
    /// one with a global-norm clipper at 1 skips, rolls back or lowers the rate (they took 62 %
    /// of its steps and ×0.125 of its rate before).
    func testChirpModelHealthyRunIsLeftAlone() throws {
        let c = try config("hybrid-gru-adamw")
        let unguarded = try BenchRunner.run(c, fault: .none, seed: 1, setting: .monitorOnly)
        for policy in [GuardPolicy(), GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 1))] {
            let r = try BenchRunner.run(c, fault: .none, seed: 1, setting: .standard, policy: policy)
            XCTAssertFalse(r.intervened, "skips \(r.skipped), rollbacks \(r.rollbacks), back-offs \(r.backOffs): \(r.findings.map(\.message))")
            XCTAssertGreaterThanOrEqual(r.score, unguarded.score - 0.02)
            XCTAssertLessThanOrEqual(r.findings.count, 2, r.findings.map(\.message).joined(separator: "\n"))
        }
    }

    /// The same model from N(0, 1) weights is reported before its first update (it went
    /// unreported for 65 steps), with initialisation as the cause and no clipping threshold
    /// taken from its out-of-scale norms.
    func testNormalInitialisationIsReportedAtStepZero() throws {
        let c = try config("hybrid-gru-adamw")
        let task = try c.task(.normalInit, seed: 1)
        let guardian = GradientGuard(model: task.model, optimizer: task.optimizer)
        task.optimizer.zeroGrad()
        let loss = try task.loss(0)
        loss.backward()
        let outcome = try guardian.step(loss: loss.item)
        let incident = try XCTUnwrap(outcome.incident)
        XCTAssertEqual(incident.step, 0)
        XCTAssertTrue(outcome.findings.contains { $0.kind == .initialScale }, outcome.findings.map(\.message).joined(separator: "\n"))
        XCTAssertEqual(incident.causes.first?.kind, .initialisation)
        XCTAssertFalse(incident.recommendations.contains { $0.contains("clip the global norm") }, incident.recommendations.joined(separator: "\n"))
        XCTAssertFalse(incident.recommendations.contains { $0.contains("LSTM/GRU") || $0.contains("LSTM or GRU") })
    }

    /// The healthy twin's initialisation is never reported.
    func testHealthyInitialisationIsNotReported() throws {
        for name in ["hybrid-gru-adamw", "mlp6-sgd", "cnn-sgd", "rnn-adding-sgd-momentum-mse", "lm-lstm-adam"] {
            let task = try config(name).task(.none, seed: 1)
            let d = Diagnostician(
                parameters: NamedParameter.of(task.model),
                layerTypes: Dictionary(task.model.namedModules().map { ($0.name, String(describing: type(of: $0.module))) }, uniquingKeysWith: { a, _ in a }))
            XCTAssertNil(d.initialScaleFinding(step: 0), name)
        }
    }

    /// Each planted cause the diagnosis names ranks first on its configuration: a rate too
    /// high, a recurrent weight with a large spectral norm, depth without normalisation.
    func testPlantedCausesRankFirst() throws {
        let cases: [(String, BenchFault)] = [
            ("mlp3-sgd-mse", .rate(30)), ("rnn-adding-sgd-momentum-mse", .recurrentGain(2.5)), ("mlp6-sgd", .deep(24)),
            ("mlp6-sgd", .normalInit)
        ]
        for (name, fault) in cases {
            let r = try BenchRunner.run(try config(name), fault: fault, seed: 1, setting: .monitorOnly)
            XCTAssertEqual(r.firstCause, fault.planted, "\(name) \(fault.label): \(r.findings.prefix(3).map(\.message))")
        }
    }
}
