import Foundation
import GradGuard
import XCTest
import _TestSupport

/// Optimizer trajectories against torch.optim (Scripts/make_fixtures.py): two parameters,
/// six steps of fixed gradients, the parameters compared after every step.
final class OptimizerTests: XCTestCase {
    typealias Make = ([Tensor]) -> any Optimizer

    let configs: [(String, Make)] = [
        ("sgd", { SGD($0, lr: 0.1) }),
        ("sgd_momentum", { SGD($0, lr: 0.05, momentum: 0.9, dampening: 0.1, weightDecay: 0.01) }),
        ("sgd_nesterov", { SGD($0, lr: 0.05, momentum: 0.8, weightDecay: 0.02, nesterov: true) }),
        ("adam", { Adam($0, lr: 0.01) }),
        ("adam_wd_amsgrad", { Adam($0, lr: 0.02, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.1, amsgrad: true) }),
        ("adamw", { AdamW($0, lr: 0.01, weightDecay: 0.05) }),
        ("adamw_amsgrad", { AdamW($0, lr: 0.01, weightDecay: 0.05, amsgrad: true) }),
        (
            "sgd_groups",
            { ps in
                SGD([ParamGroup(params: [ps[0]]), ParamGroup(params: [ps[1]], lr: 0.01, weightDecay: 0.5)], lr: 0.1, momentum: 0.9)
            }
        ),
        (
            "adamw_groups",
            { ps in
                AdamW([ParamGroup(params: [ps[0]], weightDecay: 0), ParamGroup(params: [ps[1]], lr: 0.003)], lr: 0.01, weightDecay: 0.1)
            }
        ),
        ("rmsprop", { RMSprop($0, lr: 0.01) }),
        ("rmsprop_centered_momentum", { RMSprop($0, lr: 0.005, alpha: 0.9, eps: 1e-6, weightDecay: 0.1, momentum: 0.8, centered: true) })
    ]

    func run(_ name: String, _ make: Make, f: [String: Tensor], restartAt: Int? = nil) throws {
        let a = try f.at("optim.p0").copy(requiresGrad: true)
        let b = try f.at("optim.p1").copy(requiresGrad: true)
        var opt = make([a, b])
        for s in 0..<6 {
            if s == restartAt {
                // Save, rebuild the optimizer from scratch and restore: the trajectory must not change.
                let saved = opt.stateDict()
                let path = FileManager.default.temporaryDirectory.appendingPathComponent("opt-\(UUID().uuidString).safetensors").path
                try Safetensors.write(saved, to: path)
                opt = make([a, b])
                try opt.load(stateDict: Safetensors.read(path))
                try? FileManager.default.removeItem(atPath: path)
            }
            a.grad = try f.at("optim.grad0.\(s)").copy()
            b.grad = try f.at("optim.grad1.\(s)").copy()
            opt.step()
            assertClose(a, try f.at("\(name).p0.\(s)"), rtol: 1e-5, atol: 1e-6, "\(name) p0 step \(s)")
            assertClose(b, try f.at("\(name).p1.\(s)"), rtol: 1e-5, atol: 1e-6, "\(name) p1 step \(s)")
        }
    }

    func testTrajectoriesMatchTorchOptim() throws {
        let f = try fixture("optim.safetensors")
        // Every kernel level the processor runs (the update loops have AVX2 and AVX-512 versions).
        for level in Kernels.supportedLevels {
            try Kernels.withMaxLevel(level) { for (name, make) in configs { try run("\(name)", make, f: f) } }
        }
    }

    /// Long parameters (split over the workers, with tails of every length) give the same
    /// trajectory at every vector level as the portable loops, and so do their gradient norms.
    func testVectorLevelsMatchPortableOnLongParameters() {
        for count in [1, 13, 16, 37, 70_001] {
            let start = (0..<count).map { Float(($0 * 7919) % 997) / 997 - 0.5 }
            func trajectory(_ make: Make) -> ([Float], Float) {
                let p = Tensor(start).copy(requiresGrad: true)
                let opt = make([p])
                var norm: Float = 0
                for s in 0..<4 {
                    p.grad = Tensor(start.enumerated().map { i, v in v * Float(s + 1) + Float(i % 7) * 0.01 })
                    norm = gradNorm([p])
                    opt.step()
                }
                return (p.scalars, norm)
            }
            for (name, make) in configs where !name.hasSuffix("groups") {
                let (reference, refNorm) = Kernels.withMaxLevel(.portable) { trajectory(make) }
                forEachVectorLevel("\(name) update") { level in
                    let (got, norm) = Kernels.withMaxLevel(level) { trajectory(make) }
                    assertClose(Tensor(got), Tensor(reference), rtol: 1e-5, atol: 1e-6, "\(name) \(level) count \(count)")
                    XCTAssertEqual(norm, refNorm, accuracy: refNorm * 1e-5, "\(name) \(level) count \(count)")
                }
            }
        }
    }

    func testStateSavesAndRestoresMidway() throws {
        let f = try fixture("optim.safetensors")
        for (name, make) in configs { try run(name, make, f: f, restartAt: 3) }
    }

    func testLoadRejectsStateOfAnotherShapeWithoutChangingAnything() {
        let p = Tensor.zeros([3], requiresGrad: true)
        let opt = SGD([p], lr: 0.1, momentum: 0.9)
        XCTAssertThrowsError(try opt.load(stateDict: ["state.0.momentum_buffer": Tensor.zeros([4])])) { e in
            XCTAssertEqual(e as? OptimizerStateError, .shapeMismatch(key: "momentum_buffer", expected: [3], found: [4]))
        }
        XCTAssertThrowsError(try opt.load(stateDict: ["state.7.momentum_buffer": Tensor.zeros([3])])) { e in
            XCTAssertEqual(e as? OptimizerStateError, .unknownParameter(key: "state.7.momentum_buffer", parameterCount: 1))
        }
        XCTAssertTrue(opt.state.isEmpty)
    }

    func testParametersWithoutGradientAreLeftAlone() {
        let p = Tensor([1, 2], requiresGrad: true), q = Tensor([3], requiresGrad: true)
        let opt = Adam([p, q], lr: 0.1)
        p.grad = Tensor([1, 1])
        opt.step()
        XCTAssertEqual(q.scalars, [3])
        XCTAssertNotEqual(p.scalars, [1, 2])
        opt.zeroGrad()
        XCTAssertNil(p.grad)
    }
}

/// `clipGradNorm` and `clipGradValue` against `torch.nn.utils`.
final class ClipGradTests: XCTestCase {
    func parameters(_ f: [String: Tensor]) throws -> [Tensor] {
        try (0..<3).map { i in
            let g = try f.at("clip.grad.\(i)")
            let p = Tensor.zeros(g.shape, requiresGrad: true)
            p.grad = g.copy()
            return p
        }
    }

    func testNormClippingMatchesPyTorch() throws {
        let f = try fixture("clip.safetensors")
        for (tag, p) in [("2", Float(2)), ("1", 1), ("inf", .infinity), ("3", 3)] {
            let ps = try parameters(f)
            let total = clipGradNorm(ps, maxNorm: 1, normType: p)
            XCTAssertEqual(total, try f.at("clip.norm\(tag).total").item, accuracy: 1e-5 * total, "norm \(tag)")
            for (i, q) in ps.enumerated() {
                assertClose(q.grad!, try f.at("clip.norm\(tag).clipped.\(i)"), "norm \(tag) tensor \(i)")
            }
            XCTAssertEqual(gradNorm(ps, normType: p), 1, accuracy: 1e-4, "after clipping the norm is maxNorm")
        }
        let ps = try parameters(f)
        let total = clipGradNorm(ps, maxNorm: 1e4)
        XCTAssertEqual(total, try f.at("clip.large.total").item, accuracy: 1e-5 * total)
        for (i, q) in ps.enumerated() { assertClose(q.grad!, try f.at("clip.large.clipped.\(i)")) }
    }

    func testValueClippingMatchesPyTorch() throws {
        let f = try fixture("clip.safetensors")
        let ps = try parameters(f)
        clipGradValue(ps, clipValue: 0.5)
        for (i, q) in ps.enumerated() { XCTAssertEqual(q.grad!.scalars, try f.at("clip.value.clipped.\(i)").scalars) }
    }

    func testErrorIfNonfiniteThrowsAndLeavesGradientsAlone() {
        let p = Tensor.zeros([3], requiresGrad: true)
        p.grad = Tensor([1, .infinity, 2])
        XCTAssertThrowsError(try clipGradNorm([p], maxNorm: 1, errorIfNonfinite: true)) { e in
            XCTAssertEqual((e as? NonFiniteNormError)?.norm, .infinity)
        }
        XCTAssertEqual(p.grad!.scalars, [1, .infinity, 2])
        p.grad = Tensor([3, 4, 0])
        XCTAssertEqual(try clipGradNorm([p], maxNorm: 1, errorIfNonfinite: true), 5)
        XCTAssertEqual(p.grad!.scalars[0], 0.6, accuracy: 1e-6)
    }

    func testManyLargeTensorsUseTheParallelPath() {
        let ps = (0..<20).map { i -> Tensor in
            let p = Tensor.zeros([5000], requiresGrad: true)
            p.grad = Tensor.full([5000], Float(i % 3))
            return p
        }
        // Σ over tensors of 5000·v², v ∈ {0,1,2}: 7 ones and 6 twos → 5000·(7 + 24)
        XCTAssertEqual(gradNorm(ps), (5000 * 31 as Float).squareRoot(), accuracy: 1e-2)
    }
}

/// A small MLP trained for three steps exactly as in PyTorch: forward, cross-entropy,
/// backward, clip_grad_norm_(0.5), SGD with momentum.
final class EndToEndTests: XCTestCase {
    func testSmallMLPTrainsLikePyTorch() throws {
        let mlp = Sequential(
            Linear(inputSize: 6, outputSize: 8), Tanh(), Linear(inputSize: 8, outputSize: 8),
            ReLU(), Linear(inputSize: 8, outputSize: 3))
        try mlp.load(stateDict: Safetensors.read(fixturePath("mlp_state.safetensors")))
        let f = try fixture("mlp_train.safetensors")
        let opt = SGD(mlp.parameters(), lr: 0.1, momentum: 0.9)
        let x = try f.at("mlp.x"), y = try f.at("mlp.y")
        for s in 0..<3 {
            opt.zeroGrad()
            let logits = mlp(x)
            assertClose(logits, try f.at("mlp.step\(s).logits"), "logits step \(s)")
            let loss = crossEntropy(logits, y)
            assertClose(loss, try f.at("mlp.step\(s).loss"), "loss step \(s)")
            loss.backward()
            let total = clipGradNorm(mlp.parameters(), maxNorm: 0.5)
            XCTAssertEqual(total, try f.at("mlp.step\(s).total_norm").item, accuracy: 1e-5)
            for (name, p) in mlp.namedParameters() {
                assertClose(p.grad!, try f.at("mlp.step\(s).grad.\(name)"), "grad \(name) step \(s)")
            }
            opt.step()
        }
        for (name, t) in mlp.stateDict() { assertClose(t, try f.at("mlp.final.\(name)"), "final \(name)") }
    }
}
