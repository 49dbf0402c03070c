import GradGuard
import XCTest
import _TestSupport

/// Statistics of large draws against the formulas of torch.nn.init. With n values the
/// sample standard deviation has a relative standard error ≈ 1/√(2n); the tolerances are
/// several of those.
final class InitTests: XCTestCase {
    func std(_ t: Tensor) -> Float { t.variance(correction: 0).item.squareRoot() }

    func testVarianceOfEachInitialiser() {
        DefaultGenerator.seed(11)
        let shape = [300, 200, 3, 3]  // fan-in 1800, fan-out 2700, 540 000 values → std rel. error ≈ 0.1 %
        let (fi, fo) = (Float(1800), Float(2700))
        let cases: [(String, Tensor, Float)] = [
            ("xavierUniform", Init.xavierUniform(shape, gain: 2), 2 * (2 / (fi + fo)).squareRoot()),
            ("xavierNormal", Init.xavierNormal(shape), (2 / (fi + fo)).squareRoot()),
            ("kaimingUniform fan-in relu", Init.kaimingUniform(shape, nonlinearity: .relu), (2 / fi).squareRoot()),
            ("kaimingNormal fan-out", Init.kaimingNormal(shape, mode: .fanOut, nonlinearity: .relu), (2 / fo).squareRoot()),
            (
                "kaimingNormal leaky", Init.kaimingNormal(shape, nonlinearity: .leakyRelu(negativeSlope: 0.2)),
                (2 / (1 + 0.04) / fi).squareRoot()
            ),
            ("lecunNormal", Init.lecunNormal(shape), (1 / fi).squareRoot()),
            ("normal", Init.normal(shape, mean: 0, std: 0.3), 0.3),
            ("uniform", Init.uniform(shape, low: -0.5, high: 0.5), (1.0 / 12).squareRoot()),
            ("PyTorch Linear default", Linear(inputSize: 1800, outputSize: 300).weight, (1 / (3 * fi)).squareRoot())
        ]
        for (name, t, expected) in cases {
            XCTAssertEqual(std(t), expected, accuracy: expected * 0.01, name)
            XCTAssertEqual(t.mean().item, 0, accuracy: expected * 0.01, "\(name) mean")
        }
        let c = Init.constant([3, 2], 0.25)
        XCTAssertEqual(c.scalars, [Float](repeating: 0.25, count: 6))
        XCTAssertEqual(Nonlinearity.tanh.gain, 5.0 / 3)
    }

    func testOrthogonalRowsOrColumnsAreOrthonormal() {
        DefaultGenerator.seed(12)
        for shape in [[64, 64], [96, 32], [32, 96], [16, 4, 3, 3]] {
            let w = Init.orthogonal(shape, gain: 1.5)
            let m = w.reshaped([shape[0], -1])
            let tall = m.shape[0] >= m.shape[1]
            let gram = tall ? m.transposed().matmul(m) : m.matmul(m.transposed())
            let k = gram.shape[0]
            for i in 0..<k {
                for j in 0..<k {
                    XCTAssertEqual(gram.scalars[i * k + j], i == j ? 2.25 : 0, accuracy: 1e-4, "\(shape) (\(i), \(j))")
                }
            }
        }
    }

    func testLayersTakeInitialiserOverrides() {
        let fc = Linear(inputSize: 4, outputSize: 3, weightInit: .constant(0.5), biasInit: .zeros)
        XCTAssertEqual(fc.weight.scalars, [Float](repeating: 0.5, count: 12))
        XCTAssertEqual(fc.bias!.scalars, [0, 0, 0])
        let lstm = LSTM(inputSize: 3, hiddenSize: 8, recurrentInit: .orthogonal(), biasInit: .zeros)
        let whh = lstm.weightsHH[0]  // [32, 8]: orthonormal columns
        assertClose(whh.transposed().matmul(whh), Tensor(shape: [8, 8], scalars: (0..<64).map { $0 % 9 == 0 ? 1 : 0 }), atol: 1e-5)
        XCTAssertTrue(lstm.biasesIH[0].scalars.allSatisfy { $0 == 0 })
        let conv = Conv2d(2, 3, kernelSize: 3, weightInit: .kaimingNormal(nonlinearity: .relu))
        XCTAssertEqual(conv.weight.shape, [3, 2, 3, 3])
    }

    func testRecurrentNamesAndShapesFollowPyTorch() {
        let gru = GRU(inputSize: 3, hiddenSize: 5, numLayers: 2)
        XCTAssertEqual(
            gru.namedParameters().map(\.name),
            [
                "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"
            ])
        XCTAssertEqual(gru.parameters().map(\.shape), [[15, 3], [15, 5], [15], [15], [15, 5], [15, 5], [15], [15]])
        let cell = LSTMCell(inputSize: 3, hiddenSize: 2)
        XCTAssertEqual(cell.namedParameters().map(\.name), ["weight_ih", "weight_hh", "bias_ih", "bias_hh"])
        let bn = BatchNorm2d(numFeatures: 4)
        XCTAssertEqual(bn.stateDictKeys(), ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"])
    }

    func testRecurrentDropoutBetweenLayersOnlyInTraining() {
        let lstm = LSTM(inputSize: 2, hiddenSize: 3, numLayers: 2, dropout: 0.5)
        let x = Tensor.randn([5, 4, 2])
        lstm.eval()
        let a = lstm(x).output, b = lstm(x).output
        XCTAssertEqual(a.scalars, b.scalars, "no dropout in evaluation")
        lstm.train()
        XCTAssertNotEqual(lstm(x).output.scalars, lstm(x).output.scalars, "dropout masks differ between calls")
    }
}
