import Foundation
import GradGuard
import XCTest
import _TestSupport

/// The learning-rate range test: it leaves the run as it found it, stops at divergence, and
/// its rules pick the rates fastai's and Lightning's would.
final class LRFinderTests: XCTestCase {
    func testLeavesModelOptimizerAndRandomStateUntouched() throws {
        DefaultGenerator.seed(11)
        let model = Sequential(
            Linear(inputSize: 6, outputSize: 12), BatchNorm1d(numFeatures: 12), ReLU(), Dropout(p: 0.3), Linear(inputSize: 12, outputSize: 3))
        var g = RandomGenerator(seed: 5)
        let x = Tensor.randn([64, 6], generator: &g), y = Tensor(shape: [64], scalars: (0..<64).map { Float($0 % 3) })
        let data = TensorDataset(inputs: x, targets: y)
        let opt = Adam(model.parameters(), lr: 3e-3)
        let loss = { (m: Module, b: Batch) in crossEntropy((m as! Sequential)(b.inputs), b.targets) }
        // Two real steps first: the optimizer has state, the parameters gradients.
        for _ in 0..<2 {
            opt.zeroGrad()
            loss(model, try data.batch(Array(0..<16))).backward()
            opt.step()
        }
        loss(model, try data.batch(Array(16..<32))).backward()
        let weights = model.stateDict().mapValues(\.scalars)
        let state = opt.stateDict().mapValues(\.scalars)
        let groups = opt.hyperparameters()
        let grads = model.parameters().map { $0.grad?.scalars }
        let random = DefaultGenerator.with { $0.state }
        model.eval()
        var s = LRFinder.Settings()
        (s.steps, s.batchSize, s.curvatureIterations) = (40, 16, 5)
        let result = try LRFinder(model: model, optimizer: opt, settings: s).run(on: data, loss: loss)
        XCTAssertGreaterThan(result.rates.count, 5)
        XCTAssertNotNil(result.curvature)
        XCTAssertEqual(model.stateDict().mapValues(\.scalars), weights, "weights and running statistics")
        XCTAssertEqual(opt.stateDict().mapValues(\.scalars), state, "optimizer state")
        XCTAssertEqual(opt.hyperparameters(), groups, "learning rates and hyper-parameters")
        XCTAssertEqual(model.parameters().map { $0.grad?.scalars }, grads, "gradients")
        XCTAssertEqual(DefaultGenerator.with { $0.state }, random, "the default generator")
        XCTAssertFalse(model.training, "the module's mode")
    }

    func testStopsOnceTheLossDiverges() throws {
        DefaultGenerator.seed(3)
        let model = Sequential(Linear(inputSize: 4, outputSize: 8), Tanh(), Linear(inputSize: 8, outputSize: 2))
        var g = RandomGenerator(seed: 9)
        let x = Tensor.randn([128, 4], generator: &g)
        let data = TensorDataset(inputs: x, targets: Tensor(shape: [128], scalars: (0..<128).map { Float($0 % 2) }))
        var s = LRFinder.Settings()
        (s.start, s.end, s.steps, s.curvatureIterations) = (1e-4, 1e4, 100, 10)
        let r = try LRFinder(model: model, optimizer: SGD(model.parameters(), lr: 0.1), settings: s).run(on: data) { m, b in
            crossEntropy((m as! Sequential)(b.inputs), b.targets)
        }
        XCTAssertNotNil(r.stopped)
        XCTAssertLessThan(r.rates.count, 100)
        let suggestion = try XCTUnwrap(r.suggestion)
        XCTAssertLessThan(suggestion, r.rates.last!)
        // The curvature limit: SGD's 2/λ_max at the start.
        let c = try XCTUnwrap(r.curvature)
        XCTAssertEqual(r.curvatureLimit!, 2 / c.lambdaMax, accuracy: 1e-9 * r.curvatureLimit!)
    }

    /// The rules on a known curve: loss 4 falling to 1 over rates 1e-4…1e-1, then rising.
    func testRules() {
        let rates = (0..<40).map { 1e-4 * pow(10, Double($0) / 10) }
        let losses = (0..<40).map { i -> Double in i < 30 ? 4 - 3 * Double(i) / 29 : 1 + Double(i - 29) }
        func result(_ rule: LRFindRule, limit: Double? = nil) -> LRFindResult {
            LRFindResult(rates: rates, losses: losses, smoothed: losses, rule: rule, stopped: nil, curvature: nil, curvatureLimit: limit)
        }
        // Valley: the falling stretch is points 0…29 (30 long; fastai's start is 29 − 30 = −1, its
        // sections (29 − (−1))/3 = 10): index −1 + 10 + 5 = 14.
        XCTAssertEqual(result(.valley).ruleRate!, rates[14], accuracy: 1e-15)
        // Minimum ÷ 10: the lowest loss at point 29.
        XCTAssertEqual(result(.minimum).ruleRate!, rates[29] / 10, accuracy: 1e-15)
        // Steepest: on a fall that quickens (4 − 3(i/29)²) the last step down, from point 28.
        let quickening = (0..<40).map { i -> Double in i < 30 ? 4 - 3 * pow(Double(i) / 29, 2) : 1 + Double(i - 29) }
        let steep = LRFindResult(
            rates: rates, losses: quickening, smoothed: quickening, rule: .steepest, stopped: nil, curvature: nil, curvatureLimit: nil)
        XCTAssertEqual(steep.ruleRate!, rates[28], accuracy: 1e-15)
        // The stability limit is quoted, not imposed.
        XCTAssertEqual(result(.valley, limit: 1e-3).suggestion!, rates[14], accuracy: 1e-15)
        XCTAssertTrue(result(.valley, limit: 1e-3).explanation.contains("past it"))
    }
}
