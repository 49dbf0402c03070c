import Foundation
import GradGuard
import XCTest
import _TestSupport

final class DetectorTrainingTests: TemporaryDirectoryTestCase {
    /// mAP@0.5 of a detector (width 8, two scales, conv blocks) trained with Adam on 64 shapes
    /// images of 64 pixels, on those images.
    func overfit(head: DetectorHead, steps: Int, lr: Double) throws -> Double {
        var o = ShapesDataset.Options(train: 64, val: 1, size: 64, seed: 5)
        o.maxObjects = 2
        let yaml = try ShapesDataset.write(to: tmp + "/shapes", options: o)
        let split = try DetectionSplit.load(try DetectionDataConfig.load(path: yaml), split: "train", policy: .fail)
        let data = DetectionDataset(split.samples, size: 64)
        DefaultGenerator.seed(5)
        let model = YOLODetector(classes: 3, width: 8, imageSize: 64, head: head)
        let loss = YOLOLoss(for: model, imageSize: 64)
        let c = testTrainerConfig(epochs: 1000, batchSize: 16, seed: 5, maxSteps: steps)
        let opt = Adam(model.parameterGroups(weightDecay: 0), lr: lr)
        let trainer = try Trainer(model: model, optimizer: opt, policy: GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 10)), config: c) { _, b in
            loss(model(b.inputs), targets: b.targets).total
        }
        let start = Date()
        _ = try trainer.fit(train: data)
        let (map50, map5095, _) = try data.evaluate(model)
        print("\(head) detector overfit: mAP@0.5 \(map50), mAP@0.5:0.95 \(map5095), \(Date().timeIntervalSince(start)) s")
        return map50
    }

    /// The detector overfits 64 shapes images: mAP@0.5 above 0.9 on the images it trained on.
    func testDetectorOverfitsSixtyFourShapesImages() throws {
        XCTAssertGreaterThan(try overfit(head: .coupled, steps: 180, lr: 0.006), 0.9)
    }

    /// So does the decoupled head with its loss (DFL, task-aligned assignment).
    func testDecoupledDetectorOverfitsShapes() throws {
        XCTAssertGreaterThan(try overfit(head: .decoupled, steps: 240, lr: 0.006), 0.9)
    }
}
