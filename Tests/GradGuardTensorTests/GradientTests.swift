import GradGuard
import XCTest
import _TestSupport

/// Every differentiable op against central finite differences (see `checkGradients`).
final class GradientTests: XCTestCase {
    let a = { testTensor([3, 4], seed: 1) }
    let b = { testTensor([3, 4], seed: 2) }

    func testArithmeticWithBroadcasting() {
        checkGradients([a(), testTensor([4], seed: 3)]) { $0[0] + $0[1] }
        checkGradients([a(), testTensor([3, 1], seed: 3)]) { $0[0] - $0[1] }
        checkGradients([testTensor([2, 1, 4], seed: 4), testTensor([3, 1], seed: 5)]) { $0[0] * $0[1] }
        checkGradients([a(), testTensor([4], seed: 6, low: 0.5, high: 2)]) { $0[0] / $0[1] }
        checkGradients([a()]) { -$0[0] }
        checkGradients([a()]) { 2 * $0[0] + 1 - $0[0] / 4 }
    }

    func testPowers() {
        checkGradients([testTensor([3, 4], seed: 7, low: 0.2, high: 2)]) { $0[0].pow(3) }
        checkGradients([a()]) { $0[0].pow(2) }
        checkGradients([testTensor([3, 4], seed: 8, low: 0.5, high: 2), testTensor([4], seed: 9)]) { $0[0].pow($0[1]) }
        checkGradients([testTensor([3, 4], seed: 10, low: 0.2, high: 3)]) { $0[0].sqrt() }
    }

    func testElementaryFunctions() {
        checkGradients([a()]) { $0[0].exp() }
        checkGradients([testTensor([3, 4], seed: 11, low: 0.2, high: 3)]) { $0[0].log() }
        checkGradients([awayFromZero(a())]) { $0[0].abs() }
        checkGradients([testTensor([3, 4], seed: 12, low: -3, high: 3)]) { $0[0].tanh() }
        checkGradients([testTensor([3, 4], seed: 13, low: -4, high: 4)]) { $0[0].sigmoid() }
        checkGradients([testTensor([3, 4], seed: 17, low: -3, high: 3)]) { $0[0].atan() }
        assertClose(Tensor(shape: [3], scalars: [-1, 0, 1]).atan(), Tensor(shape: [3], scalars: [-0.78539816, 0, 0.78539816]), rtol: 1e-6, atol: 1e-7)
    }

    func testActivations() {
        checkGradients([awayFromZero(a())]) { $0[0].relu() }
        checkGradients([awayFromZero(a())]) { $0[0].leakyRelu(negativeSlope: 0.2) }
        checkGradients([testTensor([3, 4], seed: 14, low: -4, high: 4)]) { $0[0].silu() }
        checkGradients([testTensor([3, 4], seed: 15, low: -3, high: 3)]) { $0[0].gelu() }
        checkGradients([testTensor([3, 4], seed: 16, low: -3, high: 3)]) { $0[0].gelu(approximate: true) }
        // Values kept clear of the clamp bounds ±0.5.
        let x = Tensor(shape: [6], scalars: [-0.9, -0.3, 0.1, 0.35, 0.8, 1.4])
        checkGradients([x]) { $0[0].clamp(min: -0.5, max: 0.5) }
    }

    func testWhere() {
        let cond = Tensor(shape: [3, 4], scalars: [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1])
        checkGradients([a(), testTensor([4], seed: 17)]) { Tensor.where(cond, $0[0], $0[1]) }
    }

    func testReductions() {
        let x = testTensor([2, 3, 4], seed: 18)
        checkGradients([x]) { $0[0].sum() }
        checkGradients([x]) { $0[0].sum(axes: [0, 2], keepDims: true) }
        checkGradients([x]) { $0[0].sum(axis: -1) }
        checkGradients([x]) { $0[0].mean(axis: 1) }
        checkGradients([x]) { $0[0].mean() }
        checkGradients([x]) { $0[0].variance(axes: [1]) }
        checkGradients([x]) { $0[0].variance(axes: [0, 2], correction: 0, keepDims: true) }
        checkGradients([x]) { $0[0].max(axis: 1).values }
        checkGradients([x]) { $0[0].min(axis: 2, keepDims: true).values }
        checkGradients([x]) { $0[0].max() }
    }

    func testSoftmax() {
        let x = testTensor([3, 5], seed: 19, low: -3, high: 3)
        checkGradients([x]) { $0[0].softmax(axis: 1) }
        checkGradients([x]) { $0[0].softmax(axis: 0) }
        checkGradients([x]) { $0[0].logSoftmax(axis: -1) }
        checkGradients([testTensor([2, 3, 4], seed: 20)]) { $0[0].logSoftmax(axis: 1) }
    }

    func testShapeOps() {
        let x = testTensor([2, 3, 4], seed: 21)
        checkGradients([x]) { $0[0].reshaped([6, -1]) * $0[0].reshaped([6, 4]) }
        checkGradients([x]) { $0[0].permuted([2, 0, 1]) }
        checkGradients([x]) { $0[0].transposed(0, 2) }
        checkGradients([x]) { $0[0].slice(axis: 2, start: 1, end: 4, step: 2) }
        checkGradients([x]) { $0[0].narrow(axis: 1, start: 1, length: 2) }
        checkGradients([x, testTensor([2, 2, 4], seed: 22)]) { Tensor.concatenate([$0[0], $0[1]], axis: 1) }
        checkGradients([x, testTensor([2, 3, 4], seed: 23)]) { Tensor.stack([$0[0], $0[1]], axis: 1) }
        checkGradients([x]) { inputs in
            let parts = inputs[0].split(sizes: [1, 3], axis: 2)
            return parts[0] * 2 + parts[1].sum(axis: 2, keepDims: true)
        }
        checkGradients([testTensor([3, 1], seed: 24)]) { $0[0].expanded(to: [2, 3, 4]) }
        checkGradients([x]) { $0[0].unsqueezed(1).squeezed(1).flattened() }
    }

    func testIndexing() {
        let table = testTensor([5, 3], seed: 25)
        let ids = Tensor(indices: [4, 0, 4, 2], shape: [2, 2])
        checkGradients([table]) { $0[0].indexSelect(axis: 0, indices: ids) }
        checkGradients([table]) { $0[0].indexSelect(axis: 1, indices: Tensor(indices: [2, 2, 0])) }
        let index = Tensor(indices: [0, 2, 1, 1, 0, 0], shape: [3, 2])
        checkGradients([testTensor([3, 3], seed: 26)]) { $0[0].gather(axis: 1, index: index) }
        checkGradients([testTensor([3, 3], seed: 27)]) { $0[0].gather(axis: 0, index: Tensor(indices: [2, 0, 1, 2], shape: [2, 2])) }
    }

    func testMatmul() {
        checkGradients([testTensor([3, 4], seed: 28), testTensor([4, 5], seed: 29)]) { $0[0].matmul($0[1]) }
        checkGradients([testTensor([2, 3, 4], seed: 30), testTensor([2, 4, 2], seed: 31)]) { $0[0].matmul($0[1]) }
        checkGradients([testTensor([2, 3, 4], seed: 32), testTensor([4, 2], seed: 33)]) { $0[0].matmul($0[1]) }
        checkGradients([testTensor([3, 4], seed: 34), testTensor([2, 4, 2], seed: 35)]) { $0[0].matmul($0[1]) }
    }

    func testLinear() {
        checkGradients([testTensor([2, 3, 4], seed: 36), testTensor([5, 4], seed: 37), testTensor([5], seed: 38)]) {
            Tensor.linear($0[0], weight: $0[1], bias: $0[2])
        }
        checkGradients([testTensor([3, 4], seed: 39), testTensor([2, 4], seed: 40)]) {
            Tensor.linear($0[0], weight: $0[1], bias: nil)
        }
    }

    func testLosses() {
        let targets = Tensor(indices: [2, 0, 4])
        checkGradients([testTensor([3, 5], seed: 41, low: -2, high: 2)]) { crossEntropy($0[0], targets) }
        checkGradients([testTensor([3, 5], seed: 42)]) { crossEntropy($0[0], Tensor(indices: [1, -100, 3]), reduction: .sum) }
        checkGradients([testTensor([3, 5], seed: 43)]) { crossEntropy($0[0], targets, reduction: .none) }
        checkGradients([testTensor([3, 4], seed: 44), testTensor([3, 4], seed: 45)]) { mseLoss($0[0], $0[1]) }
        let y = testTensor([2, 4], seed: 46, low: 0, high: 1)
        checkGradients([testTensor([2, 4], seed: 47, low: -3, high: 3), y]) {
            binaryCrossEntropyWithLogits($0[0], $0[1], posWeight: Tensor([1, 2, 0.5, 3]))
        }
    }

    func testGradientsAccumulateThroughReuse() {
        // x used three times: contributions must add.
        checkGradients([a()]) { x in x[0] * x[0] + x[0].exp() * x[0] }
    }
}
