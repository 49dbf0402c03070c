import Foundation
import GradGuard
import GradGuardRuns

extension Demo {
    /// One way of keeping a run stable, as the stabilizers demo compares them.
    struct Stabilizer {
        let name: String
        let policy: () -> GuardPolicy
        let optimizer: (Module, Double) -> any Optimizer
        /// Extra detectors of the guard (the full guard's z-score rule).
        var detectors: [any GradientDetector] = []
    }

    /// Loss spikes of a run: steps whose training loss is more than 1.5× the median of the 20
    /// before them (a non-finite loss counts).
    static func lossSpikes(_ losses: [Double]) -> Int {
        guard losses.count > 20 else { return 0 }
        var spikes = 0
        for i in 20..<losses.count {
            let window = losses[(i - 20)..<i].filter(\.isFinite).sorted()
            guard !window.isEmpty else { continue }
            let median = window[window.count / 2]
            if !losses[i].isFinite || losses[i] > 1.5 * median { spikes += 1 }
        }
        return spikes
    }

    /// The char-LSTM with Adam at a learning rate that spikes, trained with no stabilizer,
    /// each clipper, AdaGC, SPAM, StableAdamW's update clipping and the full guard.
    func stabilizers(steps: Int, lr: Double) throws -> DemoTable {
        let corpus = CharCorpus(text: BuiltinCorpus.text)
        let (train, valid) = try corpus.datasets(length: 64, source: "built-in corpus")
        let adam: (Module, Double) -> any Optimizer = { m, lr in Adam(m.parameters(), lr: lr) }
        func report(_ clipper: (any GradientClipper)?) -> () -> GuardPolicy {
            {
                var p = GuardPolicy.monitorOnly
                p.clipper = clipper
                return p
            }
        }
        let all: [Stabilizer] = [
            Stabilizer(name: "none", policy: report(nil), optimizer: adam),
            Stabilizer(name: "global-norm 1", policy: report(ClipByGlobalNorm(maxNorm: 1)), optimizer: adam),
            Stabilizer(name: "agc 0.01", policy: report(AdaptiveGradientClipping(clipping: 0.01, excludeFinalLayer: true)), optimizer: adam),
            Stabilizer(name: "autoclip p10", policy: report(AutoClip(percentile: 10)), optimizer: adam),
            Stabilizer(name: "zclip", policy: report(ZClip()), optimizer: adam),
            Stabilizer(name: "adagc", policy: report(AdaGC()), optimizer: adam),
            Stabilizer(
                name: "spam", policy: report(nil),
                optimizer: { m, lr in
                    // The authors' reset interval and warm-up (500, 150) scaled to the run: two
                    // resets in it, warm-up 3/10 of the interval.
                    var h = SPAM.Hyperparameters()
                    h.lr = lr
                    h.resetEvery = Swift.max(20, steps / 3)
                    h.warmupSteps = h.resetEvery * 3 / 10
                    return SPAM([ParamGroup(params: m.parameters())], h)
                }),
            Stabilizer(
                name: "update clipping (StableAdamW)", policy: report(nil), optimizer: { m, lr in AdamW(m.parameters(), lr: lr, weightDecay: 0, updateClip: 1) }
            ),
            Stabilizer(
                name: "full guard (global-norm 1, z-score skip)", policy: { GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 1)) }, optimizer: adam,
                detectors: [RollingZScoreDetector()])
        ]
        var lines: [String] = []
        for s in all {
            DefaultGenerator.seed(UInt64(seed))
            let model = CharLanguageModel(vocabularySize: corpus.vocabulary.count, embeddingSize: 32, hiddenSize: 128)
            let slug = s.name.split(separator: " ")[0]
            let dir = "\(runsDirectory)/\(slug)"
            let monitor = HealthMonitor()
            monitor.detectors += s.detectors
            let start = Date()
            var losses: [Double] = []
            let run = try fitRun(
                model, optimizer: s.optimizer(model, lr), policy: s.policy(), monitor: monitor, steps: steps, directory: dir,
                config: """
                    # gradguard demo stabilizers
                    corpus: built-in, char-LSTM embedding 32, hidden 128
                    optimizer: adam lr \(lr), \(steps) steps (spam: SPAM at the same rate, momentum reset every \(Swift.max(20, steps / 3)) steps)
                    stabilizer: \(s.name)
                    """, train: train, validation: valid, afterStep: { losses.append(Double($0.loss)) },
                loss: { _, b in model.loss(b.inputs, b.targets) })
            let seconds = Date().timeIntervalSince(start)
            let vb = try valid.batch(Array(0..<valid.count))
            let loss = withoutGrad { Double(model.loss(vb.inputs, vb.targets).item) }
            let diverged = run.diverged || !loss.isFinite
            print(String(format: "%@: validation loss %@ (%.1f s)", s.name, Demo.cell(loss, "%.4f"), seconds))
            lines.append(
                "| \(s.name) | \(Demo.cell(loss, "%.3f"))\(diverged ? " (diverged)" : "") | \(Demo.lossSpikes(losses)) | \(run.trainer.guardian.incidents.count) | \(run.trainer.guardian.skippedSteps) | \(String(format: "%.1f", seconds)) |"
            )
        }
        return table(
            "char-LSTM (Embedding 32 → LSTM 128 → Linear) on the built-in corpus, Adam lr \(lr) (SPAM, StableAdamW at the same rate; SPAM resets its moments every \(Swift.max(20, steps / 3)) steps), \(steps) steps, batch 32; a spike is a step whose training loss is over 1.5× the median of the 20 before",
            header: "stabilizer | validation loss | loss spikes | incidents | steps skipped | seconds", rows: lines)
    }
}
