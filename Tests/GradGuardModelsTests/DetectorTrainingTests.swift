import Foundation
import GradGuard
import XCTest
import _TestSupport

final class DetectorTrainingTests: TemporaryDirectoryTestCase {
    /// The detector overfits 64 shapes images: mAP@0.5 above 0.9 on the images it trained on.
    func testDetectorOverfitsSixtyFourShapesImages() throws {
        var o = ShapesDataset.Options(train: 64, val: 1, size: 64, seed: 5)
        o.maxObjects = 2
        let yaml = try ShapesDataset.write(to: tmp + "/shapes", options: o)
        let split = try DetectionSplit.load(try DetectionDataConfig.load(path: yaml), split: "train", policy: .fail)
        let data = DetectionDataset(split.samples, size: 64)
        DefaultGenerator.seed(5)
        let model = YOLODetector(classes: 3, width: 8, imageSize: 64)
        let loss = YOLOLoss(classes: 3, imageSize: 64)
        let c = testTrainerConfig(epochs: 1000, batchSize: 16, seed: 5, maxSteps: 180)
        let opt = Adam(model.parameterGroups(weightDecay: 0), lr: 0.006)
        let trainer = try Trainer(model: model, optimizer: opt, policy: GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 10)), config: c) { m, b in
            loss((m as! YOLODetector)(b.inputs), targets: b.targets).total
        }
        let start = Date()
        _ = try trainer.fit(train: data)
        let (map50, map5095, _) = try data.evaluate(model)
        print("detector overfit: mAP@0.5 \(map50), mAP@0.5:0.95 \(map5095), \(Date().timeIntervalSince(start)) s")
        XCTAssertGreaterThan(map50, 0.9)
    }
}
