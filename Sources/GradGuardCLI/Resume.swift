import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

struct Resume: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Continue a run from its newest checkpoint that verifies.")
    @Argument(help: "Run name or directory.") var runName: String
    @Option(name: .customLong("set"), parsing: .singleValue, help: "Override a setting, e.g. training.epochs=10.") var set: [String] = []
    @Flag(name: .customLong("allow-data-change"), help: "Resume even when the data files changed since the run started.") var allowDataChange = false
    @OptionGroup var output: OutputFlags

    func run() throws {
        let dir = try runDirectory(runName)
        try requireCommandLineRun(dir, runName, command: "resume")
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
