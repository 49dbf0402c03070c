import Foundation
import GradGuard
import XCTest
import _TestSupport

final class LongDependencyTests: XCTestCase {
    func testAddingBaselineIsOneSixth() {
        let d = LongDependencyTask.adding.dataset(count: 20_000, t: 30, seed: 1)
        XCTAssertEqual(d.inputs.shape, [20_000, 30, 2])
        let y = d.targets.scalars.map(Double.init)
        let mse = y.map { ($0 - 1) * ($0 - 1) }.reduce(0, +) / Double(y.count)
        XCTAssertEqual(mse, LongDependencyTask.adding.baseline(30), accuracy: 0.005)
        // Exactly one marker in each half, and the target is the sum of the marked values.
        let x = d.inputs.scalars
        for n in 0..<50 {
            var marks: [Int] = [], sum: Float = 0
            for s in 0..<30 where x[(n * 30 + s) * 2 + 1] == 1 { marks.append(s); sum += x[(n * 30 + s) * 2] }
            XCTAssertEqual(marks.count, 2)
            XCTAssertTrue(marks[0] < 15 && marks[1] >= 15)
            XCTAssertEqual(sum, d.targets.scalars[n], accuracy: 1e-6)
        }
    }

    func testTemporalOrderClassesAreBalanced() {
        let d = LongDependencyTask.temporalOrder.dataset(count: 8000, t: 40, seed: 2)
        var counts = [Int](repeating: 0, count: 4)
        for c in d.targets.scalars { counts[Int(c)] += 1 }
        for c in counts { XCTAssertEqual(Double(c) / 8000, 0.25, accuracy: 0.02) }
        XCTAssertEqual(LongDependencyTask.temporalOrder.baseline(40), Foundation.log(4.0))
        // Every step carries exactly one symbol; X or Y appear exactly twice.
        let x = d.inputs.scalars
        for n in 0..<20 {
            var relevant = 0
            for s in 0..<40 {
                let row = (n * 40 + s) * 6
                XCTAssertEqual(x[row..<(row + 6)].reduce(0, +), 1)
                if x[row + 4] + x[row + 5] == 1 { relevant += 1 }
            }
            XCTAssertEqual(relevant, 2)
        }
    }

    func testCopyMemoryBaselineFormula() throws {
        let t = 30, task = LongDependencyTask.copyMemory
        let d = task.dataset(count: 500, t: t, seed: 3)
        XCTAssertEqual(d.inputs.shape, [500, t + 20, 10])
        // The memoryless strategy: blank with certainty, then uniform over the 8 symbols in the last 10 steps.
        var probs = [Float](repeating: 0, count: 500 * (t + 20) * 10)
        for n in 0..<500 {
            for s in 0..<(t + 20) {
                let row = (n * (t + 20) + s) * 10
                if s < t + 10 { probs[row + 8] = 1 } else { for k in 0..<8 { probs[row + k] = 1 / 8 } }
            }
        }
        let logits = Tensor(shape: [500, t + 20, 10], scalars: probs.map { Foundation.log(Swift.max($0, 1e-30)) })
        XCTAssertEqual(Double(task.loss(logits, d.targets).item), task.baseline(t), accuracy: 1e-4)
        XCTAssertEqual(task.baseline(t), 10 * Foundation.log(8.0) / 50, accuracy: 1e-12)
    }

    func testSequenceModelShapesAndNames() {
        let m = SequenceModel(cell: .lstm, inputSize: 2, hiddenSize: 8, outputSize: 1)
        XCTAssertEqual(
            m.namedParameters().map(\.name),
            [
                "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0",
                "head.weight", "head.bias"
            ])
        XCTAssertEqual(m(Tensor.randn([3, 7, 2])).shape, [3, 1])
        let p = SequenceModel(cell: .gru, inputSize: 10, hiddenSize: 8, outputSize: 10, perStep: true)
        XCTAssertEqual(p(Tensor.randn([3, 7, 10])).shape, [3, 7, 10])
    }

    /// The adding problem at T = 50 with an LSTM and clipping: MSE below 0.01 (the baseline
    /// is 0.167).
    func testLSTMSolvesTheAddingProblem() throws {
        DefaultGenerator.seed(4)
        let task = LongDependencyTask.adding
        let model = SequenceModel(cell: .lstm, inputSize: 2, hiddenSize: 32, outputSize: 1, forgetGateBias: 1)
        let c = testTrainerConfig(epochs: 40, batchSize: 32, seed: 4, evalEvery: 16)
        let trainer = try Trainer(
            model: model, optimizer: Adam(model.parameters(), lr: 0.03),
            policy: GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 1)), config: c
        ) { m, b in
            task.loss((m as! SequenceModel)(b.inputs), b.targets)
        }
        let valid = task.dataset(count: 256, t: 50, seed: 99)
        var best = Double.infinity
        trainer.callbacks.onEvaluation = { e in
            best = Swift.min(best, e.metrics["loss"]!)
            if best < 0.01 { trainer.requestStop() }  // early stopping keeps the test short
        }
        try trainer.fit(train: task.dataset(count: 1024, t: 50, seed: 5), validation: valid)
        XCTAssertLessThan(best, 0.01, "validation MSE against the baseline \(task.baseline(50))")
    }
}
