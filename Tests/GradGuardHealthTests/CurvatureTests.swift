import GradGuard
import XCTest
import _TestSupport

/// The curvature probe: Hessian-vector products, Lanczos, the stability thresholds, λ_max
/// against PyTorch's full-Hessian eigendecomposition, and a probe that leaves training as it was.
final class CurvatureTests: XCTestCase {
    func params(_ f: [String: Tensor], _ prefix: String) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (k, v) in f where k.hasPrefix("\(prefix).param.") { out[String(k.dropFirst(prefix.count + 7))] = v }
        return out
    }

    func relative(_ a: Double, _ b: Double) -> Double { abs(a - b) / max(abs(b), 1e-12) }

    /// An indefinite quadratic L = ½ wᵀAw with known eigenvalues: Lanczos finds the largest
    /// algebraic one (3), not the largest in magnitude (−5); the finite-difference product is A·v.
    func testQuadraticExactHessian() throws {
        // A = Q diag(−5, 1, 2, 3) Qᵀ with Q a rotation.
        let c = cos(0.3), s = sin(0.3), c2 = cos(1.1), s2 = sin(1.1)
        let q: [[Double]] = [[c, -s, 0, 0], [s, c, 0, 0], [0, 0, c2, -s2], [0, 0, s2, c2]]
        let eig: [Double] = [-5, 1, 2, 3]
        var a = [Float](repeating: 0, count: 16)
        for i in 0..<4 { for j in 0..<4 { a[i * 4 + j] = Float((0..<4).reduce(0.0) { $0 + q[i][$1] * eig[$1] * q[j][$1] }) } }
        let matrix = Tensor(shape: [4, 4], scalars: a)
        let w = Tensor(shape: [1, 4], scalars: [0.3, -0.2, 0.5, 0.1], requiresGrad: true)
        let hvp = HessianVectorProduct(parameters: [w]) { (w.matmul(matrix) * w).sum() * 0.5 }
        let v: [Double] = [1, 2, -1, 0.5]
        let hv = try hvp.apply(v)
        for i in 0..<4 {
            let exact = (0..<4).reduce(0.0) { $0 + Double(a[i * 4 + $1]) * v[$1] }
            XCTAssertEqual(hv[i], exact, accuracy: 1e-4 * 5)
        }
        let top = try Lanczos.top(start: [1, 1, 1, 1], iterations: 10, tolerance: 1e-10) { try hvp.apply($0) }
        XCTAssertEqual(top.value, 3, accuracy: 1e-3)
        XCTAssertEqual(w.scalars, [0.3, -0.2, 0.5, 0.1], "the parameters are put back bit for bit")
    }

    func testTridiagonalTopEigenvalue() {
        // tridiag(1, 2, 1) of size 5: eigenvalues 2 + 2cos(kπ/6), top 2 + √3.
        let (theta, y) = Lanczos.topEigenpair([2, 2, 2, 2, 2], [1, 1, 1, 1])
        XCTAssertEqual(theta, 2 + 3.0.squareRoot(), accuracy: 1e-12)
        // Its eigenvector: sin(jπ/6).
        let expected = (1...5).map { sin(Double($0) * .pi / 6) }
        let n = expected.reduce(0) { $0 + $1 * $1 }.squareRoot()
        for (a, b) in zip(y, expected) { XCTAssertEqual(abs(a), b / n, accuracy: 1e-8) }
    }

    func testStabilityThresholds() {
        let p = [Tensor.zeros([2], requiresGrad: true)]
        XCTAssertEqual(SGD(p, lr: 0.1).stabilityRule.threshold, 2)
        XCTAssertEqual(SGD(p, lr: 0.1, momentum: 0.9).stabilityRule.threshold, 3.8, accuracy: 1e-12)
        XCTAssertEqual(SGD(p, lr: 0.1, momentum: 0.9, nesterov: true).stabilityRule.threshold, 3.8 / 2.8, accuracy: 1e-12)
        XCTAssertEqual(SGD(p, lr: 0.1, momentum: 0.5, dampening: 0.5).stabilityRule.threshold, 6, accuracy: 1e-12)
        let adam = Adam(p, lr: 1e-3)
        XCTAssertEqual(adam.stabilityRule.threshold, 38, accuracy: 1e-9)
        XCTAssertTrue(adam.stabilityRule.preconditioned)
        XCTAssertEqual(Adam(p, beta1: 0.5).stabilityRule.threshold, 6, accuracy: 1e-12)
        XCTAssertEqual(AdamW(p).stabilityRule.threshold, 38, accuracy: 1e-9)
        XCTAssertEqual(RMSprop(p).stabilityRule.threshold, 2)
        XCTAssertEqual(RMSprop(p, momentum: 0.9).stabilityRule.threshold, 3.8, accuracy: 1e-12)
        // The margin and the rate that gives a margin.
        let rule = StabilityRule.gradientDescent
        XCTAssertEqual(rule.limit(lr: 0.5), 4)
        XCTAssertEqual(rule.margin(lambda: 8, lr: 0.5), 2)
        XCTAssertEqual(rule.rate(lambda: 8, margin: 0.5), 0.125)
    }

    func mlp(_ f: [String: Tensor], _ prefix: String) throws -> (Sequential, () -> Tensor) {
        let model = Sequential(Linear(inputSize: 4, outputSize: 6), Tanh(), Linear(inputSize: 6, outputSize: 3))
        try model.load(stateDict: params(f, prefix))
        let x = try f.at("mlp.x"), y = try f.at("mlp.y")
        return (model, { crossEntropy(model(x), y) })
    }

    /// λ_max of an MLP's loss Hessian and one Hessian-vector product, against PyTorch's exact
    /// (double backward, full eigendecomposition): relative error ≤ 1e-3.
    func testMLPMatchesPyTorch() throws {
        let f = try fixture("curvature.safetensors")
        let (model, loss) = try mlp(f, "mlp")
        let probe = CurvatureProbe(parameters: model.parameters(), every: 1, iterations: 60, tolerance: 1e-9, loss: loss)
        let r = try probe.measure(step: 0, optimizer: SGD(model.parameters(), lr: 0.5), lr: 0.5)
        let expected = Double(try f.at("mlp.lambda_max").scalars[0])
        XCTAssertLessThan(relative(r.lambdaMax, expected), 1e-3, "λ_max \(r.lambdaMax) against PyTorch's \(expected)")
        print("curvature: MLP λ_max relative error \(relative(r.lambdaMax, expected))")
        XCTAssertEqual(r.margin, 0.5 * r.lambdaMax / 2, accuracy: 1e-12)
        // One product.
        let v = try f.at("mlp.v").scalars.map(Double.init), exact = try f.at("mlp.hv").scalars.map(Double.init)
        let hv = try HessianVectorProduct(parameters: model.parameters(), loss: loss).apply(v)
        let err = zip(hv, exact).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
        let size = exact.reduce(0) { $0 + $1 * $1 }.squareRoot()
        XCTAssertLessThan(err / size, 1e-3, "‖Hv − exact‖/‖exact‖")
    }

    /// Adam's preconditioned sharpness λ_max(P⁻¹H), P of the coming step, against PyTorch.
    func testAdamPreconditionedMatchesPyTorch() throws {
        let f = try fixture("curvature.safetensors")
        let (model, loss) = try mlp(f, "adam")
        let adam = Adam(model.parameters(), lr: 1e-2)
        for (i, p) in model.parameters().enumerated() {
            adam.state[ObjectIdentifier(p)] = ParamState(
                shape: p.shape,
                tensors: [
                    "exp_avg": try f.at("adam.state.\(i).exp_avg"), "exp_avg_sq": try f.at("adam.state.\(i).exp_avg_sq"),
                    "step": try f.at("adam.state.\(i).step")
                ])
        }
        loss().backward()
        let grads = model.parameters().map { $0.grad!.scalars }
        let probe = CurvatureProbe(parameters: model.parameters(), every: 1, iterations: 60, tolerance: 1e-9, loss: loss)
        let r = try probe.measure(step: 3, optimizer: adam, lr: 1e-2)
        let expected = Double(try f.at("adam.lambda_max").scalars[0])
        XCTAssertTrue(r.preconditioned)
        XCTAssertEqual(r.threshold, 38, accuracy: 1e-9)
        XCTAssertLessThan(relative(r.lambdaMax, expected), 1e-3, "λ_max(P⁻¹H) \(r.lambdaMax) against PyTorch's \(expected)")
        print("curvature: Adam λ_max(P⁻¹H) relative error \(relative(r.lambdaMax, expected))")
        XCTAssertEqual(model.parameters().map { $0.grad!.scalars }, grads, "the step's gradients are put back")
    }

    /// A one-layer LSTM read at its last step, against PyTorch.
    func testLSTMMatchesPyTorch() throws {
        let f = try fixture("curvature.safetensors")
        let lstm = LSTM(inputSize: 2, hiddenSize: 3, batchFirst: true)
        let head = Linear(inputSize: 3, outputSize: 2)
        let all = params(f, "lstm")
        try lstm.load(stateDict: all.filter { $0.key.hasPrefix("rnn.") }.reduce(into: [:]) { $0[String($1.key.dropFirst(4))] = $1.value })
        try head.load(stateDict: all.filter { $0.key.hasPrefix("head.") }.reduce(into: [:]) { $0[String($1.key.dropFirst(5))] = $1.value })
        // PyTorch's parameter order.
        let named = Dictionary(
            uniqueKeysWithValues: lstm.namedParameters().map { ("rnn." + $0.name, $0.tensor) } + head.namedParameters().map { ("head." + $0.name, $0.tensor) })
        let order = ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0", "head.weight", "head.bias"]
        let parameters = order.map { named[$0]! }
        let x = try f.at("lstm.x"), y = try f.at("lstm.y")
        let loss = { crossEntropy(head(lstm(x).output.narrow(axis: 1, start: 4, length: 1).reshaped([4, 3])), y) }
        let probe = CurvatureProbe(parameters: parameters, every: 1, iterations: 100, tolerance: 1e-9, loss: loss)
        let r = try probe.measure(step: 0, optimizer: SGD(parameters, lr: 0.1), lr: 0.1)
        let expected = Double(try f.at("lstm.lambda_max").scalars[0])
        XCTAssertLessThan(relative(r.lambdaMax, expected), 1e-3, "λ_max \(r.lambdaMax) against PyTorch's \(expected)")
        print("curvature: LSTM λ_max relative error \(relative(r.lambdaMax, expected)) in \(r.iterations) products")
        let v = try f.at("lstm.v").scalars.map(Double.init), exact = try f.at("lstm.hv").scalars.map(Double.init)
        let hv = try HessianVectorProduct(parameters: parameters, loss: loss).apply(v)
        let err = zip(hv, exact).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
        XCTAssertLessThan(err / exact.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-3)
    }
}
