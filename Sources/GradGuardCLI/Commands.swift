import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

/// Settings that can be given as flags as well as in the YAML file.
struct SettingFlags: ParsableArguments {
    @Option(name: .long, help: "Run name (runs/<name>/).") var name: String?
    @Option(name: .long, parsing: .unconditional, help: "Seed.") var seed: Int?
    @Option(name: .long, parsing: .unconditional, help: "Epochs.") var epochs: Int?
    @Option(name: .customLong("max-steps"), parsing: .unconditional, help: "Stop after this many steps.") var maxSteps: Int?
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Examples per micro-batch.") var batchSize: Int?
    @Option(name: .long, parsing: .unconditional, help: "Learning rate.") var lr: Double?
    @Option(name: .long, help: ArgumentHelp("Optimizer.", discussion: OptimizerKind.helpLines)) var optimizer: OptimizerKind?
    @Option(name: .long, help: ArgumentHelp("Gradient clipper.", discussion: ClipperKind.helpLines)) var clipper: ClipperKind?
    @Option(name: .customLong("max-norm"), parsing: .unconditional, help: "The norm threshold of global-norm and per-module clipping (guard.max_norm).")
    var maxNorm: Double?
    @Option(name: .customLong("set"), parsing: .singleValue, help: "Any setting as key=value (repeatable).") var set: [String] = []

    /// Writes the flags' settings into `c`, each through its key path, checked as `--set`
    /// would check it.
    func apply(to c: inout RunConfig) throws {
        let source = "flags"
        if let name { try c.set(\.name, to: name, source: source) }
        if let seed { try c.set(\.seed, to: seed, source: source) }
        if let epochs { try c.set(\.training.epochs, to: epochs, source: source) }
        if let maxSteps { try c.set(\.training.maxSteps, to: maxSteps, source: source) }
        if let batchSize { try c.set(\.training.batchSize, to: batchSize, source: source) }
        if let lr { try c.set(\.optimizer.lr, to: lr, source: source) }
        if let optimizer { try c.set(\.optimizer.kind, to: optimizer, source: source) }
        if let clipper { try c.set(\.guard.clipper, to: clipper, source: source) }
        if let maxNorm { try c.set(\.guard.clipping.maxNorm, to: maxNorm, source: source) }
    }
}

struct OutputFlags: ParsableArguments {
    @Flag(name: .long, help: "Print nothing but errors.") var quiet = false
    @Flag(name: .long, help: "Print one JSON object per step.") var json = false
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a run from a YAML config (defaults when omitted).")
    @Option(name: .long, help: "YAML configuration file.") var config: String?
    @OptionGroup var settings: SettingFlags
    @OptionGroup var output: OutputFlags
    @Flag(name: .long, help: "Replace an existing run of the same name.") var overwrite = false

    func run() throws {
        var c = RunConfig()
        do {
            if let config { c = try RunConfig.load(path: config) }
            try settings.apply(to: &c)
            try c.apply(overrides: settings.set)
            try c.resolveModelDefaults()
            try c.validate(source: config ?? "settings")
        } catch let e as ConfigError {
            throw fail(e.description, code: e.unreadable ? Exit.missing : Exit.usage)
        }
        // The run records where its data are, whichever folder later commands run from.
        if !c.data.path.isEmpty && !c.data.path.hasPrefix("/") {
            c.data.path = (FileManager.default.currentDirectoryPath + "/" + c.data.path as NSString).standardizingPath
        }
        let dir = c.runsDirectory + "/" + c.name
        // Under mpirun: rank 0 checks and makes the run directory; every rank then reads the
        // data and trains.
        let world = try Launch.communicator(timeout: c.distributed.timeout)
        c.worldSize = world.size
        let existed = FileManager.default.fileExists(atPath: dir)
        if existed && overwrite && !c.data.path.isEmpty && isInside(c.data.path, dir) {
            throw fail("data.path \(c.data.path) is inside the run \(dir) that --overwrite would replace: move the data out first", code: Exit.usage)
        }
        var lock: RunLock? = nil
        var w: RunSetup? = nil
        try Launch.onRankZero(world) {
            if existed {
                guard overwrite else {
                    throw fail("run directory \(dir) exists: resume it with `gradguard resume \(c.name)`, or pass --overwrite", code: Exit.usage)
                }
                // Only a directory GradGuard itself made as a run is replaced; one that merely
                // holds a config.yaml (a project folder, a run made before runs were marked) is not.
                let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
                guard RunMarker.isMarked(dir) || entries.allSatisfy({ $0 == RunLock.fileName }) else {
                    let looksLikeRun = isRunDirectory(dir)
                    throw fail(
                        "\(dir) is not a run directory GradGuard made (it has no \(RunMarker.fileName) marker"
                            + (looksLikeRun ? ", though it holds a config.yaml" : "") + "): --overwrite replaces only runs made by gradguard train; "
                            + "remove it yourself or choose another --name",
                        code: Exit.usage)
                }
            }
            // The data are read before any directory is made: a missing file leaves nothing behind.
            w = try workload(c, runDirectory: nil)
            let l = try RunLock(directory: dir)
            lock = l
            do {
                if existed { try l.clear() }
                try AtomicFile.write(Data(c.yaml.utf8), to: dir + "/config.yaml")
                try RunReport.writeEnvironment(runDirectory: dir, communicator: world)
                try w!.saveArtifacts(runDirectory: dir)
                // The data files' sizes and checksums, for `resume` to tell when they change.
                try DataFingerprint.of(c)?.save(runDirectory: dir)
            } catch let e as FileError where !existed {
                try? FileManager.default.removeItem(atPath: dir)  // nothing was trained: leave no half-made run
                throw e
            }
        }
        let setup = try w ?? workload(c, runDirectory: nil)
        do {
            let trainer = try setup.makeTrainer(dir, lock, world)
            if let fault = try InjectedFault.fromEnvironment() { fault.install(trainer, rank: world.rank) }
            try runTraining(trainer, workload: setup, config: c, directory: dir, quiet: output.quiet, json: output.json)
        } catch let e as FileError where !existed && world.rank == 0 && !FileManager.default.fileExists(atPath: dir + "/metrics.jsonl") {
            try? FileManager.default.removeItem(atPath: dir)  // nothing was trained: leave no half-made run
            throw e
        }
    }
}

struct Resume: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Continue a run from its newest checkpoint that verifies.")
    @Argument(help: "Run name or directory.") var runName: String
    @Option(name: .customLong("set"), parsing: .singleValue, help: "Override a setting, e.g. training.epochs=10.") var set: [String] = []
    @Flag(name: .customLong("allow-data-change"), help: "Resume even when the data files changed since the run started.") var allowDataChange = false
    @OptionGroup var output: OutputFlags

    func run() throws {
        let dir = try runDirectory(runName)
        for note in RunRecords.tornRecords(in: dir) { FileHandle.standardError.write(Data("gradguard: \(note); resuming cuts it off\n".utf8)) }
        var c: RunConfig
        do {
            let saved = try RunConfig.load(path: dir + "/config.yaml")
            c = saved
            try c.apply(overrides: set)
            if let e = c.unresumableChange(from: saved) { throw e }
            try c.validate(source: set.isEmpty ? dir + "/config.yaml" : "--set")
        } catch let e as ConfigError { throw fail(e.description, code: e.unreadable ? Exit.missing : Exit.usage) }
        // Under mpirun every rank resumes from the checkpoint rank 0 picks (the run directory is
        // shared); rank 0 holds the lock.
        let world = try Launch.communicator(timeout: c.distributed.timeout)
        c.worldSize = world.size
        var lock: RunLock? = nil
        try Launch.onRankZero(world) {
            lock = try RunLock(directory: dir)
            // Data that changed since `train` make another experiment: said, and refused unless allowed.
            if let old = try DataFingerprint.saved(runDirectory: dir), let now = try DataFingerprint.of(c) {
                let changes = now.changes(since: old)
                if !changes.isEmpty {
                    let listed = changes.prefix(5).joined(separator: "; ") + (changes.count > 5 ? "; and \(changes.count - 5) more" : "")
                    guard allowDataChange else {
                        throw fail(
                            "\(dir): the data changed since the run started: \(listed); resume with --allow-data-change to train on them anyway",
                            code: Exit.usage)
                    }
                    FileHandle.standardError.write(Data("gradguard: the data changed since the run started (allowed): \(listed)\n".utf8))
                    try now.save(runDirectory: dir)
                }
            }
        }
        let w = try workload(c, runDirectory: dir)
        let trainer = try w.makeTrainer(dir, lock, world)
        if let fault = try InjectedFault.fromEnvironment() { fault.install(trainer, rank: world.rank) }
        // Everything is checked against the checkpoint before anything in the run changes.
        do { try trainer.resume() } catch let e as CheckpointError { throw fail(e.description, code: Exit.checkpoint) } catch let e as StateDictError {
            throw fail("\(dir): the checkpoint does not fit the run's model: \(e)", code: Exit.checkpoint)
        } catch let e as OptimizerStateError { throw fail("\(dir): the checkpoint does not fit the run's optimizer: \(e)", code: Exit.checkpoint) } catch let e
            as ClipperStateError
        {
            throw fail("\(dir): the checkpoint does not fit the run's clipper (was config.yaml edited?): \(e)", code: Exit.checkpoint)
        } catch let e as SchedulerStateError {
            throw fail("\(dir): the checkpoint does not fit the run's schedule (was config.yaml edited?): \(e)", code: Exit.checkpoint)
        }
        if !set.isEmpty && world.rank == 0 { try AtomicFile.write(Data(c.yaml.utf8), to: dir + "/config.yaml") }
        if world.rank == 0 {
            for e in trainer.skippedCheckpoints { FileHandle.standardError.write(Data("gradguard: skipped \(e); using an older checkpoint\n".utf8)) }
            if !output.quiet && !output.json {
                print("resumed \(dir) at step \(trainer.guardian.step)" + (world.isDistributed ? " on \(world.size) ranks" : ""))
            }
        }
        try runTraining(trainer, workload: w, config: c, directory: dir, quiet: output.quiet, json: output.json)
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate a run's newest checkpoint on its validation data.")
    @Argument(help: "Run name or directory.") var runName: String

    func run() throws {
        let (_, w, step) = try trainedRun(runName, command: "eval")
        let trainer = try w.makeTrainer(nil, nil, nil)
        guard let validation = w.validation else { throw fail("run \(runName) has no validation data (data.validation is 0)", code: Exit.usage) }
        let m = try trainer.runEvaluation(validation)
        print("checkpoint step \(step): " + m.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.4f", $0.value))" }.joined(separator: ", "))
    }
}

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write the run's report.html and print its path.")
    @Argument(help: "Run name or directory.") var runName: String

    func run() throws {
        let dir = try runDirectory(runName)
        // The model kind's parts, when its config.yaml says which it is.
        let parts = (try? RunConfig.load(path: dir + "/config.yaml"))?.model.kind.moduleParts
        print(try RunReport.write(runDirectory: dir, moduleParts: parts))
    }
}

struct Diagnose: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the run's incidents with causes and recommendations.")
    @Argument(help: "Run name or directory.") var runName: String

    func run() throws {
        let dir = try runDirectory(runName)
        let incidents = try RunRecords.incidents(in: dir)
        // A data-parallel run: the ranks' times and the batch size its gradients suggest.
        if let dp = DataParallelSummary(steps: try RunRecords.metrics(in: dir).steps) {
            let slowest = dp.ranks.max { $0.compute < $1.compute }!
            print(
                String(
                    format: "%d ranks, global batch %d; slowest rank %d computes %.1f ms/step, communication %.1f ms/step", dp.ranks.count,
                    dp.globalBatch, slowest.rank, 1000 * slowest.compute, 1000 * (dp.ranks.map(\.communication).max() ?? 0)))
            if let note = dp.batchNote { print("batch size: " + note) }
        }
        guard !incidents.isEmpty else {
            print("\(dir): no incidents — the guard saw nothing to act on")
            return
        }
        print("\(dir): \(incidents.count) incident\(incidents.count == 1 ? "" : "s")")
        for i in incidents.prefix(20) { print(i.summary) }
        if incidents.count > 20 { print("… \(incidents.count - 20) more in \(dir)/incidents.jsonl") }
        var causes: [String: (count: Int, evidence: String)] = [:]
        for i in incidents { for c in i.causes { causes[c.kind.rawValue, default: (0, c.evidence)].count += 1 } }
        if !causes.isEmpty {
            print("\nprobable causes over the run:")
            for (k, v) in causes.sorted(by: { $0.value.count > $1.value.count }) { print("  \(k): \(v.count) incident(s) — \(v.evidence)") }
        }
        let recs = Recommendations.folded(incidents.map(\.recommendations))
        if !recs.isEmpty {
            print("\nrecommendations:")
            for r in recs.prefix(8) { print("  - \(r.text)" + (r.count > 1 ? " (\(r.count) incidents)" : "")) }
        }
    }
}

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-run the step of an incident from its replay record: its gradient norms (compared bit for bit) and the examples behind them.")
    @Argument(help: "Run name or directory.") var runName: String
    @Option(name: .long, parsing: .unconditional, help: "The incident, counted from 1 in incidents.jsonl (gradguard diagnose lists them in order).")
    var incident: Int
    @Option(name: .long, parsing: .unconditional, help: "Examples to list, largest gradient first.") var top = 10

    func validate() throws {
        try Bounds.check(incident, 1...Int(Int32.max), "--incident")
        try Bounds.check(top, 0...100_000, "--top")
    }

    func run() throws {
        let (dir, c) = try runConfig(runName, kind: nil, command: "replay")
        let r: ReplayOutcome
        do { r = try ReplayOutcome.run(directory: dir, config: c, incident: incident) } catch let e as ReplayError {
            throw fail(e.description, code: Exit.missing)
        }
        func bits(_ a: Float, _ b: Float) -> String { a.bitPattern == b.bitPattern ? "identical" : "recorded \(b)" }
        print("\(dir), incident \(incident): step \(r.step) replayed")
        print("  loss \(r.loss.replayed) (\(bits(r.loss.replayed, r.loss.recorded)))")
        print("  global gradient norm \(r.globalNorm.replayed) (\(bits(r.globalNorm.replayed, r.globalNorm.recorded)))")
        for t in r.tensors { print("  \(t.name): \(t.replayed) (\(bits(t.replayed, t.recorded)))") }
        print(r.identical ? "every norm identical to the step's, bit for bit" : "the replay differs from the recorded step")
        print("\nexamples by gradient norm (each run alone):")
        for s in r.samples.prefix(top) {
            print(String(format: "  %5.1f %%  norm %-10.4g loss %-8.4g  ", s.share * 100, s.gradNorm, s.loss) + s.source)
        }
        if let note = DataBlame.note(r.samples) { print("\n" + note) }
        if !r.identical { throw ExitCode(Exit.diverged) }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Table of a checkpoint's parameters: shape, norm, std, init diagnostics.")
    @Argument(help: "A checkpoint directory, a run (its newest checkpoint) or a .safetensors file.") var checkpoint: String

    func run() throws {
        var tensors: [String: Tensor]
        if checkpoint.hasSuffix(".safetensors") {
            do { tensors = try Safetensors.read(checkpoint) } catch { throw fail("\(error)", code: Exit.missing) }
        } else {
            let path: String
            if FileManager.default.fileExists(atPath: checkpoint + "/manifest.json") {
                path = checkpoint
            } else {
                let dir = try runDirectory(checkpoint)
                guard let newest = CheckpointStore(directory: dir + "/checkpoints").list().first?.path else {
                    throw fail("run \(checkpoint) has no checkpoint", code: Exit.checkpoint)
                }
                path = newest
            }
            do { tensors = try CheckpointStore(directory: (path as NSString).deletingLastPathComponent).load(path).tensors["model"] ?? [:] } catch let e
                as CheckpointError
            {
                throw fail(e.description, code: Exit.checkpoint)
            }
        }
        print(InspectTable.render(tensors))
    }
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Compare runs side by side; writes compare.html with overlay charts.")
    @Argument(help: "Run names or directories.") var runs: [String]
    @Option(name: .long, help: "Where to write the overlay page (default: compare.html in the first run's runs directory).") var output: String?

    func run() throws {
        guard runs.count >= 1 else { throw fail("name at least one run", code: Exit.usage) }
        let dirs = try runs.map { try runDirectory($0) }
        let output = self.output ?? (dirs[0] as NSString).deletingLastPathComponent + "/compare.html"
        try refuseOutput(output, flag: "--output", over: dirs.map { ($0, "a file of the run") })
        let summaries = try dirs.map { try RunRecords.summary(of: $0) }
        print(RunRecords.table(summaries))
        try AtomicFile.write(Data(RunReport.comparison(dirs).utf8), to: output)
        print("overlay: \(output)")
    }
}

/// The run's workload, with a corpus problem reported as a missing-file error.
func workload(_ c: RunConfig, runDirectory: String?) throws -> RunSetup {
    do { return try RunSetup.seeded(c, runDirectory: runDirectory) } catch let e as CorpusError { throw fail(e.description, code: Exit.missing) } catch let e
        as TranslationDataError
    { throw fail(e.description, code: Exit.missing) } catch let e as DetectionDataError { throw fail(e.description, code: Exit.missing) } catch let e
        as ImageError
    { throw fail(e.description, code: Exit.missing) }
}

/// A run's directory and configuration, read from wherever the command runs: the built-in
/// data that a run generated under its runs directory are found beside the run.
func runConfig(_ runName: String, kind: ModelKind?, command: String) throws -> (directory: String, config: RunConfig) {
    let dir = try runDirectory(runName)
    var c: RunConfig
    do { c = try RunConfig.load(path: dir + "/config.yaml") } catch let e as ConfigError {
        throw fail(e.description, code: e.unreadable ? Exit.missing : Exit.usage)
    }
    if let kind, c.model.kind != kind {
        throw fail("run \(runName) is a '\(c.model.kind.rawValue)' run: \(command) needs model.kind \(kind.rawValue)", code: Exit.usage)
    }
    c.runsDirectory = (dir as NSString).deletingLastPathComponent
    return (dir, c)
}

/// Loads the newest checkpoint that verifies into `model`; returns its step.
func loadNewestWeights(_ model: Module, runDirectory dir: String) throws -> Int {
    let loaded: LoadedCheckpoint
    do { loaded = try CheckpointStore(directory: dir + "/checkpoints").loadLatest().checkpoint } catch let e as CheckpointError {
        throw fail(e.description, code: Exit.checkpoint)
    }
    // A run with a weight average delivers the average.
    _ = try model.load(stateDict: loaded.tensors["ema"] ?? loaded.tensors["model"] ?? [:])
    return loaded.step
}

/// A run's configuration and whole workload (with its data) with the newest checkpoint's
/// weights loaded, and that checkpoint's step.
func trainedRun(_ runName: String, command: String) throws -> (config: RunConfig, workload: RunSetup, step: Int) {
    let (dir, c) = try runConfig(runName, kind: nil, command: command)
    let w = try workload(c, runDirectory: dir)
    return (c, w, try loadNewestWeights(w.model, runDirectory: dir))
}

/// A run's configuration and model (no data read) with the newest checkpoint's weights.
func trainedModel(_ runName: String, kind: ModelKind, command: String) throws -> (config: RunConfig, trained: TrainedModel) {
    let (dir, c) = try runConfig(runName, kind: kind, command: command)
    let t = try TrainedModel(c, runDirectory: dir)
    _ = try loadNewestWeights(t.model, runDirectory: dir)
    return (c, t)
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text with a character-model run's newest checkpoint.")
    @Argument(help: "Run name or directory.") var runName: String
    @Option(name: .long, parsing: .unconditional, help: "Text to continue.") var prompt = ""
    @Option(name: .long, parsing: .unconditional, help: "Characters to generate.") var length = 200
    @Option(name: .long, parsing: .unconditional, help: "Sampling temperature (0: always the most likely character).") var temperature = 0.8
    @Option(name: .customLong("top-k"), parsing: .unconditional, help: "Sample among the k most likely characters only.") var topK: Int?
    @Option(name: .long, parsing: .unconditional, help: "Seed of the sampling.") var seed = 0

    func validate() throws {
        try Bounds.check(length, Bounds.generateLength, "--length")
        try Bounds.check(temperature, 0...100, "--temperature")
        if let topK { try Bounds.check(topK, 1...Int(UInt16.max), "--top-k") }
        try Bounds.check(seed, Bounds.seed, "--seed")
        guard prompt.count <= Bounds.promptCharacters else {
            throw ValidationError("--prompt must be at most \(Bounds.promptCharacters) characters, got \(prompt.count)")
        }
    }

    func run() throws {
        guard case let .charlm(model, corpus) = try trainedModel(runName, kind: .charlm, command: "generate").trained else {
            throw fail("run \(runName) holds no character model", code: Exit.usage)
        }
        let unknown = prompt.filter { !corpus.vocabulary.contains($0) }
        if !unknown.isEmpty {
            let shown = Array(Set(unknown.unicodeScalars)).sorted().map { "'\(printable(String($0)))'" }.joined(separator: ", ")
            FileHandle.standardError.write(Data("gradguard: the prompt's characters \(shown) are not in the vocabulary; left out\n".utf8))
        }
        // The prompt as the model reads it, then each character as it is drawn (a long text
        // appears as it is written, not at the end); control characters of the prompt are
        // shown as escapes, never sent raw to a terminal.
        let ids = corpus.encode(prompt)
        var out = Data(printable(corpus.decode(ids)).utf8)
        func flush() {
            FileHandle.standardOutput.write(out)
            out.removeAll(keepingCapacity: true)
        }
        _ = model.generate(prompt: ids, length: length, temperature: temperature, topK: topK, seed: UInt64(seed)) { id in
            out.append(contentsOf: corpus.decode([id]).utf8)
            if out.count >= 4096 || out.last == 0x0A { flush() }
        }
        out.append(0x0A)
        flush()
    }
}

struct Translate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Translate with a seq2seq run's newest checkpoint.",
        discussion: "Reads the sentences from the arguments, or one per line from standard input when none is given.")
    @Argument(help: "Run name or directory.") var runName: String
    @Argument(help: "Sentences to translate.") var sentences: [String] = []
    @Option(name: .long, parsing: .unconditional, help: "Beam width (1: greedy decoding).") var beam = 1

    func validate() throws {
        try Bounds.check(beam, 1...64, "--beam")
        for (i, t) in sentences.enumerated() where t.count > Bounds.sentenceCharacters {
            throw ValidationError("sentence \(i + 1) has \(t.count) characters, more than the limit of \(Bounds.sentenceCharacters)")
        }
    }

    func run() throws {
        guard case let .seq2seq(model, set) = try trainedModel(runName, kind: .seq2seq, command: "translate").trained else {
            throw fail("run \(runName) holds no translation model", code: Exit.usage)
        }
        func translate(_ texts: [String], from first: Int) {
            for (k, t) in texts.enumerated() {
                let i = first + k
                let unknown = Set(t.filter { set.source.encode(String($0)) == [TokenVocabulary.unknown] })
                if !unknown.isEmpty {
                    FileHandle.standardError.write(
                        Data(
                            "gradguard: sentence \(i + 1): the characters \(unknown.sorted().map { "'\(printable(String($0)))'" }.joined(separator: ", ")) never occurred in training; the translation is unreliable\n"
                                .utf8))
                }
                if t.count > set.sourceLength {
                    FileHandle.standardError.write(
                        Data(
                            "gradguard: sentence \(i + 1) has \(t.count) characters, more than the longest training sentence (\(set.sourceLength)); the translation is unreliable\n"
                                .utf8))
                }
            }
            let out = model.translate(texts, set: set, beamWidth: beam > 1 ? beam : nil)
            for (s, t) in zip(texts, out) { print("\(printable(s))\t\(printable(t))") }
        }
        guard sentences.isEmpty else { return translate(sentences, from: 0) }
        // Standard input is translated as it comes, a batch of lines at a time: memory stays
        // bounded whatever its length, and each batch is printed before the next is read.
        var batch: [String] = [], first = 0
        do {
            try FileContents.forEachLine(fd: 0, name: "standard input", maxLineBytes: 4 * Bounds.sentenceCharacters) { number, bytes in
                guard let line = String(validating: bytes, as: UTF8.self) else {
                    throw fail("standard input, line \(number): not valid UTF-8 text", code: Exit.usage)
                }
                guard line.count <= Bounds.sentenceCharacters else {
                    throw fail(
                        "standard input, line \(number): \(line.count) characters, more than the limit of \(Bounds.sentenceCharacters) for one sentence",
                        code: Exit.usage)
                }
                if line.isEmpty { return }
                batch.append(line)
                if batch.count == 64 {
                    translate(batch, from: first)
                    first += batch.count
                    batch.removeAll(keepingCapacity: true)
                }
            }
        } catch let e as FileReadFailure { throw fail(e.description, code: Exit.usage) }
        if !batch.isEmpty { translate(batch, from: first) }
    }
}

struct Env: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the machine as GradGuard sees it: cores, memory, CPU features, the BLAS kernels in use.")

    func run() throws {
        let p = ProcessInfo.processInfo
        print("cores: \(p.activeProcessorCount)")
        print("memory: \(p.physicalMemory / (1 << 20)) MiB")
        print("kernels: \(Kernels.summary)")
    }
}
