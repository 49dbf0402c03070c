import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

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
func runConfig(_ runName: String, kind: ModelKind?, command: String, alsoKind: ModelKind? = nil) throws -> (directory: String, config: RunConfig) {
    let dir = try runDirectory(runName)
    var c: RunConfig
    try requireCommandLineRun(dir, runName, command: command)
    do { c = try RunConfig.load(path: dir + "/config.yaml") } catch let e as ConfigError {
        throw fail(e.description, code: e.unreadable ? Exit.missing : Exit.usage)
    }
    if let kind, c.model.kind != kind && c.model.kind != alsoKind {
        throw fail(
            "run \(runName) is a '\(c.model.kind.rawValue)' run: \(command) needs model.kind \(kind.rawValue)\(alsoKind.map { " or \($0.rawValue)" } ?? "")",
            code: Exit.usage)
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
func trainedModel(_ runName: String, kind: ModelKind, command: String, alsoKind: ModelKind? = nil) throws -> (config: RunConfig, trained: TrainedModel) {
    let (dir, c) = try runConfig(runName, kind: kind, command: command, alsoKind: alsoKind)
    let t = try TrainedModel(c, runDirectory: dir)
    _ = try loadNewestWeights(t.model, runDirectory: dir)
    return (c, t)
}

/// Refuses, with a sentence, a run trained from Swift (no config.yaml) for a command that
/// rebuilds the run's model from its config.yaml.
func requireCommandLineRun(_ dir: String, _ runName: String, command: String) throws {
    if !FileManager.default.fileExists(atPath: dir + "/config.yaml") {
        // A run trained from Swift: its model is the user's code, which the command line cannot rebuild.
        let model = (try? RunDescription.read(in: dir))?.map { " (model \($0.model))" } ?? ""
        throw fail(
            "run \(runName) was trained from Swift\(model): `gradguard \(command)` rebuilds a run's model from the config.yaml that "
                + "`gradguard train` writes, and this run has none. Use the API instead (Trainer.resume(), Trainer.runEvaluation, "
                + "CheckpointStore(directory:).loadLatest()); diagnose, report, compare and inspect read any run",
            code: Exit.usage)
    }
}
