import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a run from a YAML config (defaults when omitted).")
    @Option(name: .long, help: "YAML configuration file.") var config: String?
    @OptionGroup var settings: SettingFlags
    @OptionGroup var output: OutputFlags
    @Flag(name: .long, help: "Replace an existing run of the same name.") var overwrite = false

    func run() throws {
        var c = try settings.runConfig(file: config)
        // optimizer.lr: auto — the range test picks the rate, and config.yaml records it.
        var rateFound: LRFindResult? = nil
        if c.optimizer.lrIsAuto {
            (c, rateFound) = try RunSetup.resolvingAutoRate(c)
            if let r = rateFound, !output.quiet { print("optimizer.lr auto: \(r.explanation)") }
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
                if let r = rateFound { try AtomicFile.write(Data(r.html(title: c.name).utf8), to: dir + "/lr-find.html") }
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
