import Foundation
import GradGuard
import XCTest
import _TestSupport

/// The curvature probe inside the guard: it leaves training bit for bit as it was when it takes
/// no action; the cap lowers the rate to its target margin and lifts as the curvature relaxes.
final class CurvatureGuardTests: XCTestCase {
    /// Twelve guarded SGD steps of a model with BatchNorm (running statistics) and dropout
    /// (random masks); returns the losses, the weights and the buffers.
    func train(probeEvery: Int) throws -> (losses: [Float], state: [String: [Float]], readings: Int) {
        DefaultGenerator.seed(7)
        let model = Sequential(
            Linear(inputSize: 8, outputSize: 16), BatchNorm1d(numFeatures: 16), ReLU(), Dropout(p: 0.2), Linear(inputSize: 16, outputSize: 3))
        var g = RandomGenerator(seed: 3)
        let x = Tensor.randn([32, 8], generator: &g), y = Tensor(shape: [32], scalars: (0..<32).map { Float($0 % 3) })
        let probeX = x.narrow(axis: 0, start: 0, length: 16), probeY = y.narrow(axis: 0, start: 0, length: 16)
        let opt = SGD(model.parameters(), lr: 0.05, momentum: 0.9)
        var policy = GuardPolicy()
        policy.curvatureWarning = .infinity
        let guardian = GradientGuard(model: model, optimizer: opt, policy: policy)
        if probeEvery > 0 {
            guardian.curvature = CurvatureProbe(
                parameters: model.parameters(), buffers: model.namedBuffers().map(\.tensor), every: probeEvery, iterations: 5
            ) { crossEntropy(model(probeX), probeY) }
        }
        var losses: [Float] = []
        for _ in 0..<12 {
            opt.zeroGrad()
            let l = crossEntropy(model(x), y)
            l.backward()
            losses.append(l.item)
            try guardian.step(loss: l.item)
        }
        let state = model.stateDict().mapValues(\.scalars)
        return (losses, state, guardian.curvature?.readings.count ?? 0)
    }

    func testProbeLeavesTrainingBitIdentical() throws {
        let plain = try train(probeEvery: 0)
        let probed = try train(probeEvery: 3)
        XCTAssertEqual(probed.readings, 4)
        XCTAssertEqual(plain.losses, probed.losses, "every loss bit for bit")
        XCTAssertEqual(plain.state, probed.state, "weights and running statistics bit for bit")
        // The generator after training: dropout drew the same masks, and no more.
        XCTAssertEqual(try train(probeEvery: 0).state, try train(probeEvery: 1).state)
    }

    /// L = ½·λ·w² has Hessian λ: at lr 0.5 under SGD (limit 2/η = 4) λ = 10 is at margin 2.5;
    /// the cap brings the rate to margin 0.5 (lr 0.1), and lifts it once λ falls to 1.
    func testCapLowersTheRateAndLiftsIt() throws {
        let w = Tensor(shape: [1], scalars: [1], requiresGrad: true)
        var lambda: Float = 10
        let loss = { (w * w).sum() * (0.5 * lambda) }
        let opt = SGD([w], lr: 0.5)
        var policy = GuardPolicy()
        policy.actions[.edgeOfStability] = [.cap]
        let guardian = GradientGuard(parameters: [NamedParameter(name: "w", tensor: w)], optimizer: opt, policy: policy)
        guardian.judge.largeUpdate = 0  // a one-parameter model moves by its own size
        guardian.curvature = CurvatureProbe(parameters: [w], every: 1, iterations: 3) { loss() }
        opt.zeroGrad()
        var l = loss()
        l.backward()
        let first = try guardian.step(loss: l.item)
        let reading = try XCTUnwrap(first.stats.curvature)
        XCTAssertEqual(reading.lambdaMax, 10, accuracy: 1e-3)
        XCTAssertEqual(reading.margin, 2.5, accuracy: 1e-3)
        XCTAssertTrue(first.findings.contains { $0.kind == .edgeOfStability })
        XCTAssertEqual(first.lrCap, 0.2, accuracy: 1e-3)
        guard case let .capped(from, rate, lambdaSeen, margin, scale)? = first.incident?.taken.first(where: { if case .capped = $0 { true } else { false } })
        else { return XCTFail("no cap recorded: \(first.incident?.actions ?? [])") }
        XCTAssertEqual(from, 0.5)
        XCTAssertEqual(rate, 0.1, accuracy: 1e-4)
        XCTAssertEqual(lambdaSeen, 10, accuracy: 1e-3)
        XCTAssertEqual(margin, 0.5)
        XCTAssertEqual(scale, 0.2, accuracy: 1e-4)
        // The update used the capped rate: w ← 1 − 0.1·10·1 = 0, and the schedule's rate is untouched.
        XCTAssertEqual(w.scalars[0], 0, accuracy: 1e-4)
        XCTAssertEqual(opt.paramGroups[0].lr, 0.5)
        XCTAssertTrue(first.incident!.findings[0].message.contains("use lr ≤ 0.1"), first.incident!.findings[0].message)
        XCTAssertTrue(first.incident!.curvature?.contains("margin 2.5") ?? false, "\(first.incident!.curvature ?? "no margin history")")
        // The curvature relaxes to λ = 1 (uncapped margin 0.25, under the target): the cap holds
        // while λ = 10 is among the last three probes, then lifts ×2 per probe.
        lambda = 1
        var caps: [Double] = []
        for _ in 0..<6 {
            w.assign(Tensor(shape: [1], scalars: [1]))
            opt.zeroGrad()
            l = loss()
            l.backward()
            caps.append(try guardian.step(loss: l.item).lrCap)
        }
        XCTAssertEqual(caps.map { ($0 * 1000).rounded() / 1000 }, [0.2, 0.2, 0.4, 0.8, 1, 1])
        XCTAssertEqual(w.scalars[0], 0.5, accuracy: 1e-5, "the full rate again: 1 − 0.5·1·1")
    }
}
