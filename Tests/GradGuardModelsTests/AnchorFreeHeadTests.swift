import Foundation
import GradGuard
import XCTest
import _TestSupport

/// YOLOv8's head pieces against hand-computed cases of their published formulas.
final class AnchorFreeHeadTests: XCTestCase {
    func testDistributionFocalLossByHand() {
        // Uniform logits: both neighbouring bins cost log 4, whatever the split.
        let uniform = distributionFocalLoss(Tensor(shape: [1, 4], scalars: [0, 0, 0, 0]), Tensor([1.3]))
        XCTAssertEqual(uniform.item, Float(Foundation.log(4.0)), accuracy: 1e-6)
        // Logits 2, 1, 0, −1 and y = 0.5: S₀ = e²/Σ, S₁ = e/Σ, weights ½ and ½.
        let sum = Foundation.exp(2.0) + Foundation.exp(1.0) + 1 + Foundation.exp(-1.0)
        let expected = 0.5 * (Foundation.log(sum) - 2) + 0.5 * (Foundation.log(sum) - 1)
        XCTAssertEqual(distributionFocalLoss(Tensor(shape: [1, 4], scalars: [2, 1, 0, -1]), Tensor([0.5])).item, Float(expected), accuracy: 1e-5)
        // A target beyond the last bin is clamped to R − 1 − 0.01: weights 0.01 and 0.99 on bins 2 and 3.
        let clamped = distributionFocalLoss(Tensor(shape: [1, 4], scalars: [2, 1, 0, -1]), Tensor([5]))
        let byHand = 0.01 * (Foundation.log(sum) - 0) + 0.99 * (Foundation.log(sum) + 1)
        XCTAssertEqual(clamped.item, Float(byHand), accuracy: 1e-4)
        // The loss is smallest when the distribution puts y's weights on its two bins.
        XCTAssertLessThan(
            distributionFocalLoss(Tensor(shape: [1, 4], scalars: [0, 5, 4, 0]), Tensor([1.5])).item,
            distributionFocalLoss(Tensor(shape: [1, 4], scalars: [5, 0, 0, 4]), Tensor([1.5])).item)
        checkGradients([testTensor([3, 6], seed: 440)]) { t in distributionFocalLoss(t[0], Tensor([0.2, 2.7, 4.99])).sum() }
        XCTAssertEqual(expectedBin(Tensor(shape: [1, 4], scalars: [0, 0, 0, 0])).item, 1.5, accuracy: 1e-6)
    }

    func testTaskAlignedAssignmentByHand() {
        let truth = Box(x0: 0, y0: 0, x1: 10, y1: 10, classIndex: 0)
        let points: [(x: Double, y: Double)] = [(2, 2), (5, 5), (8, 8), (12, 12)]
        let scores = [[0.9], [0.5], [0.1], [0.9]]
        let predicted = [
            Box(x0: 0, y0: 0, x1: 10, y1: 10, classIndex: 0), Box(x0: 0, y0: 0, x1: 5, y1: 10, classIndex: 0),
            Box(x0: 0, y0: 0, x1: 10, y1: 10, classIndex: 0), Box(x0: 0, y0: 0, x1: 10, y1: 10, classIndex: 0)
        ]
        // u is the CIoU: 1 for the exact boxes; for the left half, IoU 0.5 less the centres'
        // distance² over the enclosing diagonal² (2.5² / 200) and α·v with
        // v = 4/π²·(atan 1 − atan 0.5)², α = v / (v + 0.5).
        let v = 4 / (Double.pi * Double.pi) * Foundation.pow(Foundation.atan(1.0) - Foundation.atan(0.5), 2)
        let half = 0.5 - 6.25 / 200 - v * v / (v + 0.5)
        XCTAssertEqual(TaskAlignedAssigner.completeIoU([0, 0, 10, 10], [0, 0, 5, 10]), half, accuracy: 1e-6)
        // t = s^0.5·u^6: 0.949, 0.707·u⁶ = 0.0071, 0.316; the point outside is no candidate.
        let a = TaskAlignedAssigner(topK: 2).assign(points: points, scores: scores, predicted: predicted, truths: [truth])
        XCTAssertEqual(a.box, [0, nil, 0, nil])
        XCTAssertEqual(a.score[0], 1, accuracy: 1e-6)  // the best point gets the best overlap, 1
        XCTAssertEqual(a.score[2], 0.1.squareRoot() / 0.9.squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(a.score[1], 0)
        // With k = 3 the weak point joins, scaled the same way.
        let k3 = TaskAlignedAssigner(topK: 3).assign(points: points, scores: scores, predicted: predicted, truths: [truth])
        XCTAssertEqual(k3.score[1], 0.5.squareRoot() * Foundation.pow(half, 6) / 0.9.squareRoot(), accuracy: 1e-6)
        // A box smaller than `minSide` is widened to it about its centre: the point at (6, 6)
        // lies outside the 4×4 box at (1, 1)–(5, 5) but inside it widened to 16.
        let small = Box(x0: 1, y0: 1, x1: 5, y1: 5, classIndex: 0)
        let near = [Box(x0: 1, y0: 1, x1: 5, y1: 5, classIndex: 0)]
        XCTAssertEqual(TaskAlignedAssigner().assign(points: [(6, 6)], scores: [[0.5]], predicted: near, truths: [small]).box, [nil])
        XCTAssertEqual(TaskAlignedAssigner(minSide: 16).assign(points: [(6, 6)], scores: [[0.5]], predicted: near, truths: [small]).box, [0])
        // A point inside two boxes keeps the one its predicted box overlaps most.
        let other = Box(x0: 4, y0: 4, x1: 20, y1: 20, classIndex: 1)
        let both = TaskAlignedAssigner().assign(
            points: [(6, 6)], scores: [[0.5, 0.5]], predicted: [Box(x0: 4, y0: 4, x1: 20, y1: 20, classIndex: 1)], truths: [truth, other])
        XCTAssertEqual(both.box, [1])
    }
}
