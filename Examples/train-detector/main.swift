// Trains the YOLO-style detector on a data.yaml under a guard and prints mAP.
// Usage: train-detector DATA.yaml [EPOCHS]
import Foundation
import GradGuard

do {
    let args = CommandLine.arguments
    let detection = try DetectionWorkload(dataYAML: args.count > 1 ? args[1] : "data/shapes/data.yaml")
    let optimizer = SGD(detection.parameterGroups(weightDecay: 5e-4), lr: 0.01, momentum: 0.937, nesterov: true)
    var config = TrainerConfig()
    config.epochs = args.count > 2 ? Int(args[2]) ?? 10 : 10
    config.batchSize = 16
    let guardPolicy = GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 10))
    let trainer = try Trainer(detection, optimizer: optimizer, policy: guardPolicy, config: config)
    let result = try trainer.fit(detection)
    let map50 = result.lastEvaluation?["map50"] ?? .nan
    print(String(format: "mAP@0.5 %.3f after %d steps, %d incidents", map50, result.steps, result.incidents))
} catch {
    FileHandle.standardError.write(Data("train-detector: \(error)\n".utf8))
    exit(1)
}
