import Foundation
import GradGuard
import XCTest
import _TestSupport

@testable import GradGuardTrain

final class WeightEMATests: TemporaryDirectoryTestCase {
    func testTheAverageFollowsItsFormula() throws {
        let model = Sequential(Linear(inputSize: 2, outputSize: 1), BatchNorm1d(numFeatures: 1))
        let ema = WeightEMA(model: model, decay: 0.9, tau: 2)
        let w0 = model.stateDict()["0.weight"]!.scalars
        var expected = w0.map(Double.init)
        for u in 1...4 {
            // Move the weights, then fold them in: d = 0.9·(1 − e^(−u/2)), ema ← d·ema + (1 − d)·w.
            let w = model.parameters()[0]
            w.withUnsafeMutableScalars { for i in $0.indices { $0[i] += Float(u) } }
            model.stateDict()["1.num_batches_tracked"]!.assign(Tensor(Float(u)))
            ema.update(model)
            let d = 0.9 * (1 - Foundation.exp(-Double(u) / 2))
            XCTAssertEqual(ema.decay(at: u), d, accuracy: 1e-15)
            expected = zip(expected, w.scalars).map { d * $0 + (1 - d) * Double($1) }
            for (a, b) in zip(ema.shadow["0.weight"]!.scalars, expected) { XCTAssertEqual(Double(a), b, accuracy: 1e-5) }
            // A count is copied, not averaged.
            XCTAssertEqual(ema.shadow["1.num_batches_tracked"]!.item, Float(u))
        }
        XCTAssertEqual(ema.updates, 4)
        // The averaged weights are in the model only inside the call.
        let own = model.parameters()[0].scalars
        let inside = try ema.withAveragedWeights(in: model) { model.parameters()[0].scalars }
        XCTAssertEqual(inside, ema.shadow["0.weight"]!.scalars)
        XCTAssertEqual(model.parameters()[0].scalars, own)
    }

    func testTheTrainerEvaluatesTheAverageAndCheckpointsIt() throws {
        func make() throws -> Trainer {
            DefaultGenerator.seed(2)
            let model = Sequential(Linear(inputSize: 4, outputSize: 8), ReLU(), Linear(inputSize: 8, outputSize: 3))
            var c = TrainerConfig()
            (c.epochs, c.batchSize, c.seed) = (2, 8, 1)
            c.weightAverage = TrainerConfig.WeightAverage(decay: 0.99, tau: 5)
            let t = try Trainer(model: model, optimizer: SGD(model.parameters(), lr: 0.1), config: c, runDirectory: tmp + "/run", ifExists: .resume) { m, b in
                crossEntropy((m as! Sequential)(b.inputs), b.targets)
            }
            return t
        }
        var g = RandomGenerator(seed: 9)
        let data = TensorDataset(inputs: Tensor.randn([64, 4], generator: &g), targets: Tensor(shape: [64], scalars: (0..<64).map { Float($0 % 3) }))
        var updates = 0, bias: [Float] = []
        do {
            let t = try make()
            let result = try t.fit(train: data, validation: data)
            XCTAssertEqual(t.ema?.updates, result.steps)
            // The last evaluation is the average's, not the raw weights'.
            let model = t.model as! Sequential
            let raw = withoutGrad { Double(crossEntropy(model(data.inputs), data.targets).item) }
            let averaged = try t.ema!.withAveragedWeights(in: model) { withoutGrad { Double(crossEntropy(model(data.inputs), data.targets).item) } }
            XCTAssertEqual(result.lastEvaluation?["loss"] ?? .nan, averaged, accuracy: 1e-6)
            XCTAssertNotEqual(raw, averaged)
            // Checkpointed with its update count.
            let saved = try CheckpointStore(directory: tmp + "/run/checkpoints").loadLatest().checkpoint
            XCTAssertEqual(saved.tensors["ema"]?["0.weight"]?.scalars, t.ema!.shadow["0.weight"]!.scalars)
            updates = t.ema!.updates
            bias = t.ema!.shadow["2.bias"]!.scalars
        }
        // A resumed trainer has the same average.
        let resumed = try make()
        try resumed.resume()
        XCTAssertEqual(resumed.ema?.updates, updates)
        XCTAssertEqual(resumed.ema?.shadow["2.bias"]?.scalars, bias)
    }
}

final class DetectorReportTests: XCTestCase {
    func testTheDetectorsModulesFallIntoBackboneNeckAndHead() {
        XCTAssertEqual(DetectorParts().part(of: "backbone.3.conv"), "backbone")
        for m in ["lateral.bn", "fuse3.conv", "down.conv", "fuse4.bn"] { XCTAssertEqual(DetectorParts().part(of: m), "neck", m) }
        XCTAssertEqual(DetectorParts().part(of: "heads.1"), "head")
        XCTAssertNil(DetectorParts().part(of: "lstm"), "other models are not grouped")
        // Every module of the detector has a part.
        for model in [YOLODetector(classes: 3, width: 8), YOLODetector(classes: 3, width: 8, head: .decoupled, scales: 3, block: .c2f)] {
            for (name, _) in model.namedParameters() {
                let module = name.split(separator: ".").dropLast().joined(separator: ".")
                XCTAssertNotNil(DetectorParts().part(of: module), name)
            }
        }
        XCTAssertEqual(DetectorParts().part(of: "decoupled.2.box.0.bn"), "head")
        XCTAssertEqual(DetectorParts().part(of: "fuse5.m.0.cv1.conv"), "neck")
    }
}
