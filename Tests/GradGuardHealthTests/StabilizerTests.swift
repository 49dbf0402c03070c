import Foundation
import GradGuard
import XCTest
import _TestSupport

/// The 2023–2026 stabilizers against their published algorithms, run by
/// Scripts/make_stabilizer_fixtures.py into Tests/Fixtures/stabilizers.safetensors.
final class StabilizerTests: XCTestCase {
    func params(_ a: Tensor, _ b: Tensor) -> [NamedParameter] {
        [("a.weight", a), ("b.bias", b)].map { name, g in
            let p = Tensor.zeros(g.shape).copy(requiresGrad: true)
            p.grad = g.copy()
            return NamedParameter(name: name, tensor: p)
        }
    }

    func runAdaGC(_ clipper: AdaGC, _ f: [String: Tensor], steps: Range<Int>) throws -> (a: [Tensor], b: [Tensor]) {
        let ga = try f.at("adagc.grads_a"), gb = try f.at("adagc.grads_b")
        var outA: [Tensor] = [], outB: [Tensor] = []
        for s in steps {
            let ps = params(ga.narrow(axis: 0, start: s, length: 1).reshaped([4, 3]), gb.narrow(axis: 0, start: s, length: 1).reshaped([5]))
            _ = try clipper.clip(ps)
            outA.append(ps[0].tensor.grad!)
            outB.append(ps[1].tensor.grad!)
        }
        return (outA, outB)
    }

    func testAdaGCFollowsAlgorithmOneOfTheAuthors() throws {
        let f = try fixture("stabilizers.safetensors")
        let adagc = AdaGC(lambdaAbs: 1, lambdaRel: 1.05, beta: 0.98, warmupSteps: 5)
        let (a, b) = try runAdaGC(adagc, f, steps: 0..<30)
        assertClose(Tensor.stack(a), try f.at("adagc.clipped_a"), rtol: 1e-5, atol: 1e-6, "tensor a")
        assertClose(Tensor.stack(b), try f.at("adagc.clipped_b"), rtol: 1e-5, atol: 1e-6, "tensor b")
        let gamma = try f.at("adagc.final_gamma").scalars
        XCTAssertEqual(adagc.gamma["a.weight"]!, Double(gamma[0]), accuracy: 1e-5 * Double(gamma[0]))
        XCTAssertEqual(adagc.gamma["b.bias"]!, Double(gamma[1]), accuracy: 1e-5 * Double(gamma[1]))
        // The spike of step 12 in tensor a is clipped hard.
        func norm(_ t: Tensor) -> Float { t.scalars.map { $0 * $0 }.reduce(0, +).squareRoot() }
        XCTAssertLessThan(norm(a[12]), 0.1 * norm(try f.at("adagc.grads_a").narrow(axis: 0, start: 12, length: 1)))
        // State round trip: a clipper restored at step 15 continues identically.
        let first = AdaGC(lambdaAbs: 1, lambdaRel: 1.05, beta: 0.98, warmupSteps: 5), resumed = AdaGC(lambdaAbs: 1, lambdaRel: 1.05, beta: 0.98, warmupSteps: 5)
        _ = try runAdaGC(first, f, steps: 0..<15)
        try resumed.load(stateDict: first.stateDict())
        let x = try runAdaGC(first, f, steps: 15..<30), y = try runAdaGC(resumed, f, steps: 15..<30)
        XCTAssertEqual(Tensor.stack(x.a).scalars, Tensor.stack(y.a).scalars)
        XCTAssertThrowsError(try resumed.load(stateDict: ["step": [-1]]))
        // From a run's settings.
        var s = ClipperSettings()
        s.adagcWarmupSteps = 5
        XCTAssertEqual((ClipperKind.adagc.make(s) as? AdaGC)?.warmupSteps, 5)
    }

    func statistics(_ step: Int, loss: Double, norm: Double) -> StepStatistics {
        StepStatistics(step: step, loss: Float(loss), globalNorm: Float(norm), tensors: [], modules: [])
    }

    func testRollingZScoreSkipsAsTheRuleSays() throws {
        let f = try fixture("stabilizers.safetensors")
        let losses = try f.at("zscore.losses").scalars, norms = try f.at("zscore.norms").scalars, skip = try f.at("zscore.skip").scalars
        let detector = RollingZScoreDetector(sigma: 4, window: 40)
        XCTAssertEqual(detector.minimumHistory, 20)
        var flagged: [Int] = []
        for i in 0..<losses.count {
            let stats = statistics(i, loss: Double(losses[i]), norm: Double(norms[i]))
            if let finding = detector.inspect(stats, baselines: ModuleBaselines()) {
                flagged.append(i)
                XCTAssertEqual(finding.kind, .zScoreSpike)
            }
            detector.record(stats, healthy: true)
        }
        XCTAssertEqual(flagged, skip.indices.filter { skip[$0] == 1 })
        XCTAssertTrue(flagged.contains(30) && flagged.contains(45), "\(flagged)")
        XCTAssertFalse(flagged.contains(75), "a loss far below the mean is no reason to skip")
        // Through the guard: a z-score spike is skipped by the standard policy.
        XCTAssertEqual(GuardPolicy.standardActions(clipping: true)[.zScoreSpike], [.skip])
    }
}

/// The detector's usual failure modes, each from the setting that causes it.
final class DetectorDiagnosisTests: XCTestCase {
    func causes(_ edit: (inout DetectorDiagnosis) -> Void, step: Int = 10) -> [Cause.Kind] {
        var h = DetectorDiagnosis()
        (h.warmupSteps, h.usualWarmupSteps, h.boxGain, h.defaultBoxGain) = (100, 100, 0.05, 0.05)
        (h.learningRate, h.batchSize, h.referenceRate, h.referenceBatch) = (0.01, 64, 0.01, 64)
        edit(&h)
        var d = Diagnostician(parameters: [])
        d.rules = [h]
        return d.settingCauses(step: step).map(\.0.kind)
    }

    func testEachSettingNamesItsOwnCause() {
        XCTAssertEqual(causes { _ in }, [], "the usual settings explain nothing")
        XCTAssertEqual(causes { $0.warmupSteps = 0 }, [.warmupTooShort])
        XCTAssertEqual(causes({ $0.warmupSteps = 0 }, step: 500), [], "long after the start, the warm-up is not the cause")
        XCTAssertEqual(causes { $0.boxGain = 1 }, [.boxLossGainTooHigh])
        XCTAssertEqual(causes { $0.batchSize = 8 }, [.learningRateTooHighForBatch])
        XCTAssertEqual(causes { $0.learningRate = 0.02 }, [], "twice the linear-scaling rate is within reason")
        var d = Diagnostician(parameters: [])
        var h = DetectorDiagnosis()
        (h.learningRate, h.batchSize, h.referenceRate, h.referenceBatch) = (0.5, 8, 0.01, 64)
        d.rules = [h]
        XCTAssertEqual(d.settingCauses(step: 3).first?.1, "lower the learning rate to 0.001 for a batch of 8, or raise the batch towards 64")
    }

    /// A vanishing finding confined to one scale of the decoupled head is that scale getting no
    /// assigned objects; a deep stack of convolutions each followed by BatchNorm at PyTorch's
    /// default scale is not an initialisation problem (BatchNorm is scale-invariant), while the
    /// same stack without BatchNorm is.
    func testUnassignedScaleAndBatchNormScaleInvariance() {
        func stack(batchNorm: Bool) -> Diagnostician {
            var params: [NamedParameter] = [], types: [String: String] = [:]
            for i in 0..<12 {
                // PyTorch's default: uniform ±1/√fan_in, 0.41 of the √2/√fan_in scale.
                let w = (Tensor.rand([16, 16, 3, 3]) * 2 - 1) * Float(1 / Foundation.sqrt(144.0))
                params.append(NamedParameter(name: "backbone.\(i).conv.weight", tensor: w))
                types["backbone.\(i).conv"] = "Conv2d"
                if batchNorm { types["backbone.\(i).bn"] = "BatchNorm2d" }
            }
            var d = Diagnostician(parameters: params, layerTypes: types)
            var h = DetectorDiagnosis()
            h.headStrides = [8, 16, 32]
            d.rules = [h]
            return d
        }
        let blame = ["decoupled.2.box.0.bn", "decoupled.2.box.1.bn", "decoupled.2.boxOut"].map { Blame(module: $0, ratio: 1e-11, departedAt: nil) }
        let finding = Finding(kind: .vanishing, step: 4, message: "module gradient norms vanish", blame: blame)
        let context = Diagnostician.Context(stats: StepStatistics(step: 4, loss: 1, globalNorm: 1, tensors: [], modules: []), stepsSeen: 5)
        let withBN = stack(batchNorm: true).diagnose([finding], context: context)
        XCTAssertEqual(withBN.causes.map(\.kind), [.unassignedScale])
        XCTAssertTrue(withBN.recommendations.first?.contains("model.scales 2") ?? false, "\(withBN.recommendations)")
        XCTAssertTrue(stack(batchNorm: false).diagnose([finding], context: context).causes.contains { $0.kind == .initialisation })
        // Faint modules spread over the network are not one unassigned scale.
        let spread = Finding(
            kind: .vanishing, step: 4, message: "",
            blame: [Blame(module: "decoupled.2.box.0.bn", ratio: 1e-11, departedAt: nil), Blame(module: "backbone.3.conv", ratio: 1e-9, departedAt: nil)])
        XCTAssertFalse(stack(batchNorm: true).diagnose([spread], context: context).causes.contains { $0.kind == .unassignedScale })
    }
}
