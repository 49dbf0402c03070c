import Foundation
import GradGuard
import GradGuardRuns

extension Demo {
    /// The YOLO-style detector on generated shapes at an aggressive learning rate, without
    /// protection and with Ultralytics' remedies (clip at 10, warm-up) plus the guard's rollback.
    func detector(steps: Int, lr: Double) throws -> DemoTable {
        let size = 128
        let o = ShapesDataset.Options(train: examples ?? 256, val: (examples ?? 256) / 4, size: size, seed: UInt64(seed))
        let yaml = try ShapesDataset.write(to: runsDirectory + "/shapes", options: o, replace: true)
        let config = try DetectionDataConfig.load(path: yaml)
        let train = DetectionDataset(
            try DetectionSplit.load(config, split: "train", policy: .fail).samples, size: size,
            augmentation: Augmentation(), seed: UInt64(seed))
        let valid = DetectionDataset(try DetectionSplit.load(config, split: "val", policy: .fail).samples, size: size)
        let criterion = YOLOLoss(classes: config.names.count, imageSize: size)
        let warm = Swift.max(1, steps / 6)
        let variants: [(name: String, clip: Bool, warmup: Bool, guarded: Bool)] = [
            ("unguarded", false, false, false), ("clip 10", true, false, false), ("clip 10 + warm-up", true, true, false),
            ("guarded: clip 10 + warm-up + rollback", true, true, true)
        ]
        var lines: [String] = []
        for v in variants {
            DefaultGenerator.seed(UInt64(seed))
            let model = YOLODetector(classes: config.names.count, width: 16, imageSize: size)
            let opt = SGD(model.parameterGroups(weightDecay: 5e-4), lr: lr, momentum: 0.937, nesterov: true)
            let scheduler = v.warmup ? LRScheduler(opt, Warmup(steps: warm, startLR: [YOLODetector.biasGroup: 0.1], startMomentum: 0.8)) : nil
            var policy: GuardPolicy
            if v.guarded {
                policy = GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 10))
            } else {
                // Clipping only: every other finding is reported, nothing skipped or undone.
                policy = GuardPolicy.monitorOnly
                policy.clipper = v.clip ? ClipByGlobalNorm(maxNorm: 10) : nil
            }
            let dir = "\(runsDirectory)/\(v.name.split(separator: ":")[0].replacingOccurrences(of: " + ", with: "-").replacingOccurrences(of: " ", with: "-"))"
            let start = Date()
            let run = try fitRun(
                model, optimizer: opt, scheduler: scheduler, policy: policy, steps: steps, batchSize: 16, directory: dir,
                config: """
                    # gradguard demo detector
                    data: \(yaml) (\(o.train) training, \(o.val) validation images, \(size)×\(size), augmented)
                    model: YOLO-style detector, width 16, strides 8 and 16
                    optimizer: SGD lr \(lr) momentum 0.937 nesterov, weight decay 5e-4, batch 16, \(steps) steps
                    schedule: \(v.warmup ? "warm-up over \(warm) steps (biases from 0.1, momentum from 0.8)" : "constant")
                    guard:
                      clipper: \(v.clip ? "global-norm" : "none")
                      max_norm: 10
                      actions: \(v.guarded ? "skip, back off, roll back" : "report only")
                    """, train: train, validation: valid,
                evaluate: { _, data in
                    let r = try DetectionDataset.evaluate(model, on: data)
                    return ["map50": r.map50, "map50_95": r.map50to95]
                },
                moduleParts: DetectorParts(),
                loss: { _, b in criterion(model(b.inputs), targets: b.targets).total })
            let (map50, map5095, _) = run.diverged ? (0, 0, nil) : try valid.evaluate(model)
            let g = run.trainer.guardian
            let finite = run.gradNorms.filter(\.isFinite)
            lines.append(
                "| \(v.name) | \(Demo.cell(map50)) | \(Demo.cell(map5095)) | \(run.diverged ? "yes" : "no") | \(Demo.cell(finite.max() ?? .nan, "%.3g")) | \(g.incidents.count) | \(g.skippedSteps) | \(g.rollbacks) |"
            )
            print(String(format: "%@: mAP@0.5 %@ (%.0f s)", v.name, Demo.cell(map50), Date().timeIntervalSince(start)))
        }
        return table(
            "YOLO-style detector on \(o.train) generated shapes images (\(size)×\(size), 3 classes), SGD lr \(lr) momentum 0.937, batch 16, \(steps) steps; validation on \(o.val) images",
            header: "run | mAP@0.5 | mAP@0.5:0.95 | diverged | largest ‖g‖ | incidents | steps skipped | rollbacks", rows: lines)
    }
}
