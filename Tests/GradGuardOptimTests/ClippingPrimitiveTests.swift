import Foundation
import GradGuard
import XCTest
import _TestSupport

/// `GradientClipping`, the primitive every clipper is built on: norms of any order over
/// tensors split across the workers, the coefficient, scaling and clamping.
final class ClippingPrimitiveTests: XCTestCase {
    func naiveNorm(_ t: Tensor, _ p: Float) -> Double {
        if p == .infinity { return Double(t.scalars.map { Swift.abs($0) }.max() ?? 0) }
        return pow(t.scalars.reduce(0.0) { $0 + pow(Double(Swift.abs($1)), Double(p)) }, 1 / Double(p))
    }

    func testNormsOfEveryOrderOverChunkedTensors() {
        // 200 003 values: four pieces of 65 536 for the workers, with a tail.
        let tensors: [Tensor?] = [testTensor([200_003], seed: 900), nil, testTensor([7, 3], seed: 901), Tensor.zeros([0])]
        for p: Float in [1, 2, 3, .infinity] {
            let norms = GradientClipping.norms(tensors, order: p)
            XCTAssertEqual(norms.count, 4)
            for (i, t) in tensors.enumerated() {
                let expected = t.map { naiveNorm($0, p) } ?? 0
                XCTAssertEqual(norms[i], expected, accuracy: 1e-5 * Swift.max(1, expected), "order \(p) tensor \(i)")
            }
            let all = Tensor(shape: [200_024], scalars: tensors[0]!.scalars + tensors[2]!.scalars)
            XCTAssertEqual(GradientClipping.combine(norms, order: p), naiveNorm(all, p), accuracy: 1e-5 * naiveNorm(all, p))
        }
        XCTAssertTrue(GradientClipping.combine([1, .nan], order: 2).isNaN)
        var withNaN = testTensor([70_000], seed: 902).scalars
        withNaN[68_000] = .nan
        XCTAssertTrue(GradientClipping.norms([Tensor(withNaN)], order: .infinity)[0].isNaN, "a NaN in a later piece")
    }

    func testCoefficientScaleAndClamp() {
        XCTAssertEqual(GradientClipping.coefficient(norm: 10, maxNorm: 1), 1 / (10 + 1e-6), accuracy: 1e-7)
        XCTAssertEqual(GradientClipping.coefficient(norm: 0.5, maxNorm: 1), 1)
        XCTAssertEqual(GradientClipping.coefficient(norm: .infinity, maxNorm: 1), 0)
        XCTAssertTrue(GradientClipping.coefficient(norm: .nan, maxNorm: 1).isNaN)
        // Many small tensors shared out whole, a large one split: every value scaled once.
        let many = (0..<9).map { testTensor([1_000 + $0], seed: 903 + UInt64($0)) } + [testTensor([150_001], seed: 912)]
        let before = many.map(\.scalars)
        GradientClipping.scale(many, by: 0.25)
        for (t, b) in zip(many, before) { XCTAssertEqual(t.scalars, b.map { $0 * 0.25 }) }
        // One tensor listed twice is scaled twice (serially).
        let shared = Tensor([4, -8])
        GradientClipping.scale([shared, Tensor([1]), shared], by: 0.5)
        XCTAssertEqual(shared.scalars, [1, -2])
        let t = Tensor([3, -4, 0.5, .nan])
        GradientClipping.scale([t], by: 0.5)
        XCTAssertEqual(Array(t.scalars.prefix(3)), [1.5, -2, 0.25])
        let clamped = GradientClipping.clamp([t, Tensor([0.1, -0.2])], to: 1)
        XCTAssertEqual(Array(t.scalars.prefix(3)), [1, -1, 0.25])
        XCTAssertTrue(t.scalars[3].isNaN, "NaN stays NaN")
        XCTAssertEqual(clamped.map(\.changed), [true, false])
        XCTAssertEqual(clamped[1].normBefore, clamped[1].normAfter)
        XCTAssertEqual(clamped[1].normAfter, (0.01 + 0.04).squareRoot(), accuracy: 1e-7)
    }
}

/// Saved state from a damaged or hand-edited checkpoint is refused with an error, never a
/// trapped conversion; optimizers read their hyper-parameters typed.
final class SavedStateTests: XCTestCase {
    func testSchedulerStateWithBadCountsIsRefused() {
        let opt = SGD([Tensor.zeros([2])], lr: 0.1)
        let s = LRScheduler(opt, StepLR(stepSize: 2))
        for bad in [Double.nan, .infinity, 1e300, -1, 2.5] {
            XCTAssertThrowsError(try s.load(stateDict: ["last_epoch": bad])) {
                XCTAssertEqual("\($0)", "\(SchedulerStateError.badCount(key: "last_epoch", value: bad))", "\(bad)")
            }
        }
        XCTAssertNoThrow(try s.load(stateDict: ["last_epoch": 3]))
        let plateau = ReduceLROnPlateau(opt)
        XCTAssertThrowsError(try plateau.load(stateDict: ["best": 1, "num_bad_epochs": 1e30, "cooldown_counter": 0, "last_epoch": 0]))
        XCTAssertEqual(Int(savedValue: 1e30), nil)
        XCTAssertEqual(Int(savedValue: 42), 42)
    }

    func testHyperparametersAreTyped() {
        let sgd = SGD([Tensor.zeros([2])], lr: 0.1, momentum: 0.9, nesterov: true)
        XCTAssertEqual(SGD.Hyperparameters(options: sgd.paramGroups[0].options), SGD.Hyperparameters(lr: 0.1, momentum: 0.9, nesterov: true))
        let adam = Adam([Tensor.zeros([2])], lr: 0.002, amsgrad: true)
        XCTAssertEqual(Adam.Hyperparameters(options: adam.paramGroups[0].options), Adam.Hyperparameters(lr: 0.002, amsgrad: true))
        let rms = RMSprop([Tensor.zeros([2])], momentum: 0.5, centered: true)
        XCTAssertEqual(RMSprop.Hyperparameters(options: rms.paramGroups[0].options), RMSprop.Hyperparameters(momentum: 0.5, centered: true))
    }
}
