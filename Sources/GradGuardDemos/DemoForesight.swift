import Foundation
import GradGuard
import GradGuardRuns

extension Demo {
    /// A linear warm-up to a peak rate far too high for an 8-layer MLP (SGD, momentum 0.9):
    /// the curvature probe sees λ_max climb to the stability limit (2 + 2β)/η steps before the
    /// loss explodes; the default guard reacts once it has; the cap keeps the rate under the
    /// limit; lr-find picks a rate before training.
    func foresight(steps: Int, peak: Double) throws -> DemoTable {
        let (train, valid) = teacherData(train: 4096, validation: 512)
        let every = Swift.max(1, steps / 80)
        func mlp() -> Sequential {
            var layers: [any UnaryLayer] = []
            for i in 0..<8 { layers += [Linear(inputSize: i == 0 ? 32 : 64, outputSize: 64, weightInit: .kaimingNormal(nonlinearity: .relu)), ReLU()] }
            layers.append(Linear(inputSize: 64, outputSize: 10))
            return Sequential(layers)
        }
        // lr-find on the same model, before any training.
        DefaultGenerator.seed(UInt64(seed))
        let probeModel = mlp()
        var fs = LRFinder.Settings()
        (fs.batchSize, fs.seed, fs.end) = (64, UInt64(seed), 100)
        let found = try LRFinder(model: probeModel, optimizer: SGD(probeModel.parameters(), lr: peak, momentum: 0.9), settings: fs).run(on: train) {
            _, b in crossEntropy(probeModel(b.inputs), b.targets)
        }
        let foundRate = found.suggestion ?? peak / 100
        print("lr-find: " + found.explanation)

        let cap: GuardPolicy = {
            var p = GuardPolicy()
            p.actions[.edgeOfStability] = [.cap]
            return p
        }()
        let variants: [(name: String, policy: GuardPolicy, probe: Bool, warmup: Bool, lr: Double)] = [
            ("warm-up to \(formatNumber(peak)), watched (probe only)", .monitorOnly, true, true, peak),
            ("warm-up to \(formatNumber(peak)), default guard", GuardPolicy(), false, true, peak),
            ("warm-up to \(formatNumber(peak)), guard + curvature cap", cap, true, true, peak),
            ("lr-find's rate \(formatNumber(foundRate)), constant", .monitorOnly, true, false, foundRate)
        ]
        var lines: [String] = []
        for v in variants {
            DefaultGenerator.seed(UInt64(seed))
            let model = mlp()
            let opt = SGD(model.parameters(), lr: v.lr, momentum: 0.9)
            let scheduler = v.warmup ? LRScheduler(opt, LinearLR(startFactor: 0.01, totalIters: steps)) : nil
            var firstLoss: Float? = nil, explosion: Int? = nil
            let slug = v.name.split(separator: ",").last!.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: " ", with: "-")
                .replacingOccurrences(of: "'", with: "").replacingOccurrences(of: "(", with: "").replacingOccurrences(of: ")", with: "")
            let run = try fitRun(
                model, optimizer: opt, scheduler: scheduler, policy: v.policy, steps: steps, batchSize: 64,
                directory: "\(runsDirectory)/\(v.warmup ? "warmup-" : "lr-find-")\(slug)",
                config: """
                    # gradguard demo foresight
                    model: 8-layer ReLU MLP, width 64, kaiming
                    optimizer: SGD momentum 0.9, batch 64, \(steps) steps, \(v.warmup ? "rate warming up linearly from \(formatNumber(peak / 100)) to \(formatNumber(peak))" : "constant rate \(formatNumber(v.lr)) (lr-find)")
                    curvature probe: \(v.probe ? "every \(every) steps" : "off")
                    guard: \(v.name)
                    """, train: train, validation: valid,
                afterStep: { r in
                    if firstLoss == nil { firstLoss = r.loss }
                    if explosion == nil, !r.loss.isFinite || r.loss > 10 * (firstLoss ?? .infinity) { explosion = r.step }
                },
                curvature: v.probe ? TrainerConfig.CurvatureProbeConfig(every: every, iterations: 10, batch: 256) : .init(),
                loss: { _, b in crossEntropy(model(b.inputs), b.targets) })
            let g = run.trainer.guardian
            let warning = g.incidents.flatMap(\.findings).first { $0.kind == .edgeOfStability }
            let caps = g.incidents.flatMap(\.taken).filter { if case .capped = $0 { return true } else { return false } }.count
            let (loss, accuracy) = classification(model, valid)
            let diverged = run.diverged || !loss.isFinite
            let warned = warning.map { "step \($0.step) (margin \(formatNumber($0.evidence["margin"] ?? .nan)))" } ?? "–"
            let lead = warning.flatMap { w in explosion.map { "\($0 - w.step) steps" } } ?? "–"
            let peakMargin = g.curvature?.readings.map(\.margin).filter(\.isFinite).max()
            lines.append(
                "| \(v.name) | \(warned) | \(explosion.map(String.init) ?? "–") | \(lead) | \(peakMargin.map(formatNumber) ?? "–") | \(caps) | "
                    + "\(g.incidents.count) | \(diverged ? "diverged" : Demo.cell(accuracy)) |")
            print(lines.last!)
        }
        return table(
            "8-layer ReLU MLP (width 64) on teacher data (10 classes), SGD momentum 0.9 (stable while λ_max < 3.8/η), batch 64, \(steps) steps; curvature probe every \(every) steps on 256 examples; lr-find: \(found.explanation)",
            header:
                "run | first curvature warning | first NaN or 10× loss (step) | warning's lead | largest margin η·λ/c | caps | incidents | validation accuracy",
            rows: lines)
    }
}
