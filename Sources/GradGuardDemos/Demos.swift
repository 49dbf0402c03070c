import Foundation
import GradGuard
import GradGuardRuns

/// What a demo could not do: its settings are wrong, or its data are missing.
package enum DemoError: Error, CustomStringConvertible, Equatable {
    case usage(String)
    case missing(String)

    package var description: String {
        switch self {
        case let .usage(m), let .missing(m): return m
        }
    }
}

/// The canned, seeded experiments of `gradguard demo NAME` that put numbers on the remedies:
/// each trains a few runs into `runsDirectory` and returns (and prints) a table.
package struct Demo: Sendable {
    /// The demos, with what each does.
    package static let names = ["rnn", "init", "lr", "regularization", "detector", "charlm", "stabilizers", "foresight"]
    package static let help = """
        rnn: a vanilla RNN and an LSTM on the adding problem at a learning rate that explodes unguarded; unguarded vs global-norm clipping vs AutoClip vs ZClip.
        init: 30-layer MLP and CNN with N(0,1), Xavier and Kaiming initialisation, with and without BatchNorm: per-layer gradient norms at step 0 and after training, accuracy.
        lr: a learning-rate sweep: where plain SGD explodes, and how warm-up with a cosine schedule, and the guard's automatic back-off, rescue the high rates.
        regularization: no penalty vs L1 vs L2 vs decoupled weight decay on noisy labels: weight and gradient norms, validation loss.
        detector: the YOLO-style detector on generated shapes at an aggressive learning rate, unguarded vs guarded (clip at 10, warm-up, rollback): mAP.
        charlm: a char-LSTM on the built-in corpus (or --text FILE) at a high learning rate, unguarded vs guarded: bits per character and generated samples.
        stabilizers: a char-LSTM with Adam at a rate that spikes: none, global norm, AGC, AutoClip, ZClip, AdaGC, SPAM, StableAdamW update clipping, the full guard.
        foresight: a warm-up to a peak rate far too high: the curvature probe's warning (λ_max against the stability limit) steps before the explosion, the guard's cap on the rate, and lr-find's rate.
        """

    package var name: String
    /// charlm: a UTF-8 text file instead of the built-in corpus.
    package var text: String? = nil
    /// rnn: sequence length of the adding problem.
    package var length = 20
    /// Optimizer steps per run (nil: the demo's own), learning rate (nil: the demo's own).
    package var stepsOption: Int? = nil
    package var lrOption: Double? = nil
    /// rnn, charlm: sgd or adam, and SGD's momentum; rnn: the cells, a ReLU RNN.
    package var optimizer = "sgd"
    package var momentum = 0.0
    package var cells = "rnn,lstm"
    package var relu = false
    package var runsDirectory: String
    package var seed = 0
    /// Training examples of the init demo's CNN and of the detector demo (nil: theirs).
    package var examples: Int? = nil

    package init(name: String, runsDirectory: String? = nil) {
        self.name = name
        self.runsDirectory = runsDirectory ?? "runs/demo-\(name)"
    }

    /// Runs the demo with `seeds` seeds (seed, seed + 1, …) and prints the table, folded to
    /// medians with their range when there are several.
    package func run(seeds: Int = 1) throws {
        // Every number is checked against its documented range before any work.
        if let examples, !(4...1_000_000).contains(examples) { throw DemoError.usage("--examples must be in 4 … 1000000, got \(examples)") }
        guard (1...50).contains(seeds) else { throw DemoError.usage("--seeds must be in 1 … 50") }
        guard seed >= 0, seed <= Int(Int32.max) - seeds else { throw DemoError.usage("--seed must be in 0 … \(Int(Int32.max) - seeds), got \(seed)") }
        guard (2...1000).contains(length) else { throw DemoError.usage("--length must be in 2 … 1000 (steps of the adding problem), got \(length)") }
        if let s = stepsOption, !(1...1_000_000).contains(s) { throw DemoError.usage("--steps must be in 1 … 1000000, got \(s)") }
        if let lr = lrOption, !(lr.isFinite && lr > 0 && lr <= 1e6) { throw DemoError.usage("--lr must be a positive number up to 1e6, got \(lr)") }
        guard momentum.isFinite, (0..<1).contains(momentum) else { throw DemoError.usage("--momentum must be in 0 … 1 (excluded), got \(momentum)") }
        guard ["sgd", "adam"].contains(optimizer) else { throw DemoError.usage("--optimizer must be sgd or adam, got '\(optimizer)'") }
        guard Self.names.contains(name) else {
            throw DemoError.usage("unknown demo '\(name)': available: \(Self.names.joined(separator: ", "))")
        }
        var tables: [DemoTable] = []
        for k in 0..<seeds {
            var one = self
            one.seed = seed + k
            if seeds > 1 {
                one.runsDirectory = runsDirectory + "/seed-\(seed + k)"
                print("seed \(seed + k):")
            }
            tables.append(try one.runOnce())
        }
        DemoTable.folded(tables).print(runsDirectory: runsDirectory)
    }

    func runOnce() throws -> DemoTable {
        switch name {
        case "rnn": return try rnn(steps: stepsOption ?? 3000, lr: lrOption ?? 0.5)
        case "charlm": return try charlm(steps: stepsOption ?? 600, lr: lrOption ?? 40)
        case "init": return try initialisation(steps: stepsOption ?? 300)
        case "lr": return try learningRates(steps: stepsOption ?? 400)
        case "regularization": return try regularization(steps: stepsOption ?? 1500)
        case "stabilizers": return try stabilizers(steps: stepsOption ?? 400, lr: lrOption ?? 0.1)
        case "foresight": return try foresight(steps: stepsOption ?? 400, peak: lrOption ?? 10)
        default: return try detector(steps: stepsOption ?? 300, lr: lrOption ?? 0.1)
        }
    }

    /// The char-LSTM at a learning rate that destabilises it, with and without the guard.
    func charlm(steps: Int, lr: Double) throws -> DemoTable {
        let source = text ?? "built-in corpus"
        let corpus: CharCorpus
        do { corpus = try text.map { try CharCorpus.load(path: $0) } ?? CharCorpus(text: BuiltinCorpus.text) } catch let e as CorpusError {
            throw DemoError.missing(e.description)
        }
        let (train, valid) = try corpus.datasets(length: 64, source: source)
        var lines: [String] = []
        // The guarded run also watches the validation loss: at this rate the training
        // gradients can stay healthy while the model drifts away from what generalises.
        var guarded = GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 1))
        guarded.validationDivergence = 1.5
        for (gname, policy) in [("unguarded", GuardPolicy.monitorOnly), ("guarded: global-norm 1.0, validation watch", guarded)] {
            DefaultGenerator.seed(UInt64(seed))
            let model = CharLanguageModel(vocabularySize: corpus.vocabulary.count, embeddingSize: 32, hiddenSize: 128)
            let dir = "\(runsDirectory)/charlm-\(gname.hasPrefix("un") ? "unguarded" : "guarded")"
            let trainer = try fitRun(
                model, optimizer: demoOptimizer(model, lr: lr), policy: policy, steps: steps, directory: dir,
                config: """
                    # gradguard demo charlm
                    corpus: \(source)
                    optimizer: \(optimizer) lr \(lr), \(steps) steps
                    guard:
                      clipper: \(gname.hasPrefix("un") ? "none" : "global-norm")
                      max_norm: 1.0
                      validation_divergence: \(gname.hasPrefix("un") ? "off" : "1.5")
                    """, train: train, validation: valid
            ) { _, b in model.loss(b.inputs, b.targets) }.trainer
            let vb = try valid.batch(Array(0..<valid.count))  // the whole held-out tenth
            let loss = withoutGrad { Double(model.loss(vb.inputs, vb.targets).item) }
            let sample = corpus.decode(model.generate(prompt: corpus.encode("the "), length: 60, temperature: 0.5, seed: 1))
                .replacingOccurrences(of: "\n", with: " / ")
            let bpc = loss / Foundation.log(2.0)
            lines.append(
                "| \(gname) | \(bpc.isFinite ? String(format: "%.3f", bpc) : "\(bpc)") | \(trainer.guardian.incidents.count) | \(trainer.guardian.skippedSteps) | `the \(sample)` |"
            )
        }
        return table(
            "char-LSTM (Embedding 32 → LSTM 128 → Linear) on the \(source), \(optimizer) lr \(lr), \(steps) steps; unigram entropy \(String(format: "%.3f", corpus.unigramEntropy / Foundation.log(2.0))) bits/char",
            header: "run | validation bits/char | incidents | steps skipped | sample (temperature 0.5)", rows: lines)
    }

    /// The optimizer of the rnn and charlm demos (`--optimizer`, `--momentum`).
    func demoOptimizer(_ model: Module, lr: Double) -> any Optimizer {
        optimizer == "adam" ? Adam(model.parameters(), lr: lr) : SGD(model.parameters(), lr: lr, momentum: momentum)
    }

    /// Trains one demo run into a fresh `dir` (holding `config`) for `steps` steps, evaluating
    /// every tenth of them, and writes its report. A run the guard halts, or whose loss is not
    /// finite at the end, counts as diverged.
    func fitRun(
        _ model: Module, optimizer opt: any Optimizer, scheduler: LRScheduler? = nil, policy: GuardPolicy, monitor: HealthMonitor = HealthMonitor(),
        steps: Int, batchSize: Int = 32, directory dir: String, config: String, train: any Dataset, validation: (any Dataset)?,
        evaluate: ((Module, any Dataset) throws -> [String: Double])? = nil, afterStep: ((StepRecord) -> Void)? = nil,
        moduleParts: (any ModuleParts)? = nil, curvature: TrainerConfig.CurvatureProbeConfig = .init(), loss: @escaping (Module, Batch) -> Tensor
    ) throws -> (trainer: Trainer, diverged: Bool, gradNorms: [Double]) {
        var c = TrainerConfig()
        c.curvature = curvature
        c.epochs = 1_000_000
        c.maxSteps = steps
        c.batchSize = batchSize
        c.seed = UInt64(seed)
        c.evalEvery = Swift.max(5, steps / 10)
        c.checkpointEvery = steps
        // An earlier run of the demo is replaced; any other folder of that name is left whole.
        let lock: RunLock
        do { lock = try RunDirectoryError.claim(dir, ifExists: .overwrite) } catch RunDirectoryError.notARun {
            throw DemoError.usage("\(dir) exists and is not a run GradGuard made: the demo replaces only its own runs; choose another --runs-directory")
        }
        try AtomicFile.write(Data(config.utf8), to: dir + "/config.yaml")
        let trainer = try Trainer(
            model: model, optimizer: opt, scheduler: scheduler, policy: policy, monitor: monitor, config: c, runDirectory: dir, runLock: lock,
            moduleParts: moduleParts, evaluateDataset: evaluate, loss: loss)
        var norms: [Double] = []
        trainer.callbacks.afterStep = { r, _ in
            norms.append(Double(r.gradNorm))
            afterStep?(r)
        }
        var diverged = false
        do {
            let result = try trainer.fit(train: train, validation: validation)
            diverged = !(result.lastLoss.map { $0.isFinite } ?? true)
        } catch is TrainingDiverged { diverged = true }
        return (trainer, diverged, norms)
    }

    /// A number for a table: fixed or scientific, "nan"/"inf" as they are.
    static func cell(_ v: Double, _ format: String = "%.3f") -> String { v.isFinite ? String(format: format, v) : v.isNaN ? "NaN" : "\(v)" }

    struct Row {
        let cell: String, guardName: String
        let mse: Double, incidents: Int, skipped: Int, rollbacks: Int, lost: Int, diverged: Bool, seconds: Double
    }

    func rnn(steps: Int, lr: Double) throws -> DemoTable {
        let task = LongDependencyTask.adding
        let train = task.dataset(count: 4096, t: length, seed: UInt64(seed) &+ 1)
        let valid = task.dataset(count: 256, t: length, seed: UInt64(seed) &+ 2)
        let guards: [(String, () -> GuardPolicy)] = [
            ("unguarded", { GuardPolicy.monitorOnly }),
            ("global-norm 1.0", { GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 1)) }),
            ("autoclip p10", { GuardPolicy(clipper: AutoClip(percentile: 10)) }),
            ("zclip", { GuardPolicy(clipper: ZClip(maxNorm: 1)) })
        ]
        var rows: [Row] = []
        var dirs: [String] = []
        let chosen = try cells.split(separator: ",").map { name -> SequenceModel.Cell in
            guard let c = SequenceModel.Cell(rawValue: String(name)) else { throw DemoError.usage("unknown cell '\(name)': rnn, lstm or gru") }
            return c
        }
        for cell in chosen {
            for (gname, policy) in guards {
                DefaultGenerator.seed(UInt64(seed))
                let model = SequenceModel(cell: cell, inputSize: 2, hiddenSize: 32, outputSize: 1, forgetGateBias: 1, relu: relu)
                let dir = "\(runsDirectory)/\(cell.rawValue)-\(gname.split(separator: " ")[0])"
                let start = Date()
                let run = try fitRun(
                    model, optimizer: demoOptimizer(model, lr: lr), policy: policy(), steps: steps, directory: dir,
                    config: """
                        # gradguard demo rnn
                        task: adding, length: \(length)
                        model: \(cell.rawValue), hidden 32
                        optimizer: \(optimizer) lr \(lr)\(optimizer == "sgd" ? " momentum \(momentum)" : ""), batch 32, \(steps) steps
                        guard:
                          clipper: \(gname.hasPrefix("global-norm") ? "global-norm" : gname)
                          max_norm: 1.0
                        """, train: train, validation: valid
                ) { _, b in task.loss(model(b.inputs), b.targets) }
                let trainer = run.trainer
                let mse = withoutGrad { Double(task.loss(model(valid.inputs), valid.targets).item) }
                rows.append(
                    Row(
                        cell: cell.rawValue, guardName: gname, mse: mse, incidents: trainer.guardian.incidents.count,
                        skipped: trainer.guardian.skippedSteps, rollbacks: trainer.guardian.rollbacks,
                        lost: trainer.guardian.skippedSteps + trainer.guardian.undoneSteps + trainer.guardian.rollbacks,
                        diverged: run.diverged || !mse.isFinite || mse > 10 * task.baseline(length),
                        seconds: Date().timeIntervalSince(start)))
                dirs.append(dir)
                print(
                    String(
                        format: "%@ %@: validation MSE %@ (%.1f s)", cell.rawValue, gname, rows.last!.mse.isFinite ? String(format: "%.4f", mse) : "\(mse)",
                        rows.last!.seconds))
            }
        }
        try AtomicFile.write(Data(try RunReport.comparison(dirs).utf8), to: runsDirectory + "/compare.html")
        print("overlay: \(runsDirectory)/compare.html")
        return table(
            "adding problem, T = \(length); baseline (always predict 1): MSE \(String(format: "%.3f", task.baseline(length)))",
            header: "model | guard | validation MSE | beats baseline | incidents | steps skipped | rollbacks | steps lost",
            rows: rows.map { r in
                "| \(r.cell) | \(r.guardName) | \(Demo.cell(r.mse, "%.4f"))\(r.diverged ? " (diverged)" : "") | \(r.mse < task.baseline(length) ? "yes" : "no") | \(r.incidents) | \(r.skipped) | \(r.rollbacks) | \(r.lost) |"
            })
    }

    /// A demo's caption and Markdown table (`rows` already formatted as "| a | b |").
    func table(_ caption: String, header: String, rows: [String]) -> DemoTable {
        DemoTable(caption: caption, header: header, rows: rows.map(DemoTable.cells))
    }
}
