import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

/// Exit codes of `gradguard`.
enum Exit {
    static let ok: Int32 = 0, diverged: Int32 = 1, usage: Int32 = 2, missing: Int32 = 3, checkpoint: Int32 = 4
    static let cannotWrite: Int32 = 5, inUse: Int32 = 6
    /// Data-parallel training failed: a rank died or stalled (the watchdog), or the ranks disagreed.
    static let distributed: Int32 = 7
    /// A defect of gradguard itself (EX_SOFTWARE).
    static let internalError: Int32 = 70
}

/// The sentence and exit code of an error a user can cause, or nil for an unexpected one.
func userError(_ error: Error) -> (String, Int32)? {
    switch error {
    case let e as ConfigError: return (e.description, e.unreadable ? Exit.missing : Exit.usage)
    case let e as RunInUse: return (e.description, Exit.inUse)
    case let e as CommunicatorError: return (e.description, Exit.distributed)
    case let e as FileError:
        if case .cannotWrite = e { return (e.description, Exit.cannotWrite) }
        return (e.description, Exit.missing)
    case let e as FileReadFailure: return (e.description, Exit.missing)
    case let e as CheckpointError: return (e.description, Exit.checkpoint)
    case let e as SafetensorsError:
        if case .cannotWrite = e.fault { return (e.description, Exit.cannotWrite) }
        return (e.description, Exit.missing)
    case let e as StateDictError: return ("the weights do not fit the model: \(e)", Exit.checkpoint)
    case let e as OptimizerStateError: return ("the optimizer state does not fit: \(e)", Exit.checkpoint)
    // A checkpoint written under other settings (config.yaml edited by hand since).
    case let e as ClipperStateError: return ("the checkpoint's clipper state does not fit the run's clipper (was config.yaml edited?): \(e)", Exit.checkpoint)
    case let e as SchedulerStateError:
        return ("the checkpoint's schedule state does not fit the run's schedule (was config.yaml edited?): \(e)", Exit.checkpoint)
    case let e as CorpusError: return (e.description, Exit.missing)
    case let e as TranslationDataError: return (e.description, Exit.missing)
    case let e as DetectionDataError: return (e.description, Exit.missing)
    case let e as ImageError:
        if case .cannotWrite = e { return (e.description, Exit.cannotWrite) }
        return (e.description, Exit.missing)
    case let e as DataIssue: return (e.description, Exit.missing)
    case let e as RateFindingError: return (e.description, Exit.usage)
    case let e as LRFindError: return (e.description, Exit.missing)
    case let e as CocoaError:
        let path = (e.userInfo[NSFilePathErrorKey] as? String) ?? e.userInfo[NSURLErrorKey].map { "\($0)" } ?? "a file"
        let writing = e.code.rawValue >= 512 && e.code.rawValue < 1024
        return ("cannot \(writing ? "write" : "read") \(path): \(AtomicFile.reason(e))", writing ? Exit.cannotWrite : Exit.missing)
    default:
        let ns = error as NSError
        if ns.domain == NSPOSIXErrorDomain { return ("system error: \(AtomicFile.reason(error))", Exit.cannotWrite) }
        return nil
    }
}

/// Prints to standard error and exits with `code`.
func fail(_ message: String, code: Int32) -> ExitCode {
    FileHandle.standardError.write(Data("gradguard: \(message)\n".utf8))
    return ExitCode(code)
}

/// Whether `path` is a run directory: one with the config.yaml of `gradguard train`, or the
/// run.json every run has (a run trained from Swift has only that).
func isRunDirectory(_ path: String) -> Bool {
    var isDir: ObjCBool = false
    let fm = FileManager.default
    return fm.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
        && (fm.fileExists(atPath: path + "/config.yaml") || fm.fileExists(atPath: path + "/" + RunDescription.fileName))
}

/// The directory of a run given by name or path.
func runDirectory(_ run: String, runsDirectory: String = "runs") throws -> String {
    for candidate in [run, runsDirectory + "/" + run] where isRunDirectory(candidate) { return candidate }
    throw fail(
        "no run '\(run)': expected a directory with config.yaml or \(RunDescription.fileName) (looked in ./\(run) and \(runsDirectory)/\(run))",
        code: Exit.missing)
}

/// Live progress: one rewritten line on a terminal, plain periodic lines otherwise,
/// JSON Lines with `--json`, nothing with `--quiet`.
final class Progress {
    enum Mode { case terminal, lines, json, quiet }
    let mode: Mode
    let total: Int
    let every: Int
    let start = Date()
    private var clipped = 0, seen = 0
    private var lastLength = 0

    init(quiet: Bool, json: Bool, total: Int) {
        mode = quiet ? .quiet : json ? .json : isatty(1) != 0 ? .terminal : .lines
        self.total = total
        every = Swift.max(1, total / 20)
    }

    func step(_ r: StepRecord) {
        seen += 1
        if r.clipped { clipped += 1 }
        let done = r.step + 1
        let elapsed = Date().timeIntervalSince(start)
        let rate = Double(seen) / Swift.max(elapsed, 1e-9)
        let eta = rate > 0 ? Double(Swift.max(total - done, 0)) / rate : 0
        let line = String(
            format: "step %d/%d  loss %.4f  |g| %.3g  clip %d%%  %.1f steps/s  ETA %d:%02d", done, total, r.loss,
            r.gradNorm, seen > 0 ? 100 * clipped / seen : 0, rate, Int(eta) / 60, Int(eta) % 60)
        switch mode {
        case .quiet: break
        case .json:
            if let d = try? JSONEncoder().encode(r) { print(String(decoding: d, as: UTF8.self)) }
        case .terminal:
            let pad = String(repeating: " ", count: Swift.max(0, lastLength - line.count))
            FileHandle.standardOutput.write(Data(("\r" + line + pad).utf8))
            lastLength = line.count
        case .lines:
            if done == 1 || done % every == 0 || done == total { print(line) }
        }
    }

    func message(_ text: String) {
        switch mode {
        case .quiet, .json: break
        case .terminal:
            FileHandle.standardOutput.write(Data(("\r" + String(repeating: " ", count: lastLength) + "\r").utf8))
            print(text)
        case .lines: print(text)
        }
    }

    func finish() { if mode == .terminal { print("") } }
}

/// The model's size: parameters, and for feed-forward models the FLOPs of one example's
/// forward pass (its matrix products; evaluation mode, so no random draw and no statistics
/// change).
func modelSummary(_ trainer: Trainer, workload: RunSetup, config: RunConfig) throws -> String {
    let params = trainer.model.parameters().reduce(0) { $0 + $1.count }
    var line = "model: \(config.model.kind.rawValue)"
    if config.model.kind == .detector {
        line +=
            " size \(config.model.width > 0 ? "width \(config.model.width)" : config.detector.size.rawValue) (\(config.detector.head.rawValue) head, \(config.detector.scales) scales, \(config.detector.block.rawValue) blocks)"
    }
    line += ", \(params.formatted()) parameters"
    guard config.model.kind == .detector || config.model.kind == .mlp, workload.train.count > 0 else { return line }
    let example = try workload.train.batch([0])
    trainer.model.eval()
    defer { trainer.model.train() }
    let flops = FLOPCounter.count { _ = withoutGrad { trainer.loss(trainer.model, example) } }
    let at = config.model.kind == .detector ? " at \(config.detector.imageSize)×\(config.detector.imageSize)" : ""
    return line + String(format: ", %.3g GFLOPs per example%@", Double(flops) / 1e9, at)
}

/// Runs a trainer with progress, writes the report, and maps the outcome to an exit code.
func runTraining(_ trainer: Trainer, workload: RunSetup, config: RunConfig, directory: String, quiet: Bool, json: Bool) throws {
    // In a data-parallel job rank 0 prints and writes; the others train silently.
    let recording = trainer.isRecording
    let quiet = quiet || !recording
    let perStep = config.training.batchSize * config.training.accumulation, perRank = (workload.train.count + config.worldSize - 1) / config.worldSize
    let stepsPerEpoch = Swift.max(1, (perRank + perStep - 1) / perStep)
    let total = config.training.maxSteps > 0 ? config.training.maxSteps : stepsPerEpoch * config.training.epochs
    let progress = Progress(quiet: quiet, json: json, total: total)
    if !quiet && !json { progress.message(try modelSummary(trainer, workload: workload, config: config)) }  // its forward pass only when shown
    trainer.callbacks.afterStep = { r, _ in progress.step(r) }
    trainer.callbacks.onIncident = { progress.message($0.summary) }
    trainer.callbacks.onEvaluation = { e in
        progress.message(
            "eval at step \(e.step): " + e.metrics.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.4f", $0.value))" }.joined(separator: ", "))
    }
    if !workload.dataIssues.isEmpty && recording {
        // Problems passed over (data.on_error skip) are listed in full in the run directory.
        let lines = workload.dataIssues.map(\.description)
        try AtomicFile.write(Data((lines.joined(separator: "\n") + "\n").utf8), to: directory + "/data_issues.txt")
        let shown = lines.prefix(10).map { "  \($0)\n" }.joined()
        FileHandle.standardError.write(
            Data(
                ("gradguard: \(lines.count) data problem\(lines.count == 1 ? "" : "s") skipped (all in \(directory)/data_issues.txt):\n"
                    + shown + (lines.count > 10 ? "  …\n" : "")).utf8))
    }
    do {
        // The trainer writes report.html when the run ends, and when it halts.
        let result = try trainer.fit(train: workload.train, validation: workload.validation)
        progress.finish()
        guard recording else { return }
        if !quiet && !json {
            print("\(result.steps) steps, \(result.incidents) incidents, \(result.skippedSteps) skipped; report: \(trainer.reportPath ?? "(none)")")
        }
    } catch let d as TrainingDiverged {
        progress.finish()
        // Every rank took the same decisions: each halts here, rank 0 says why.
        guard recording else { throw ExitCode(Exit.diverged) }
        FileHandle.standardError.write(Data("\(d.description)\nreport: \(trainer.reportPath ?? "(not written)")\n".utf8))
        throw ExitCode(Exit.diverged)
    }
}

/// Where `path` really is: symbolic links and `..` resolved for the part that exists.
func canonicalPath(_ path: String) -> String {
    let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    var existing = (absolute as NSString).standardizingPath
    var rest: [String] = []
    while !existing.isEmpty && existing != "/" {
        if let r = realpath(existing, nil) {
            defer { free(r) }
            return ([String(cString: r)] + rest.reversed()).joined(separator: "/").replacingOccurrences(of: "//", with: "/")
        }
        rest.append((existing as NSString).lastPathComponent)
        existing = (existing as NSString).deletingLastPathComponent
    }
    return "/" + rest.reversed().joined(separator: "/")
}

/// Whether `path` is `folder` or lies inside it, once both are resolved.
func isInside(_ path: String, _ folder: String) -> Bool {
    let p = canonicalPath(path), f = canonicalPath(folder)
    return p == f || p.hasPrefix(f.hasSuffix("/") ? f : f + "/")
}

/// Refuses an output that would replace an input of the same command: an output folder that
/// is an input folder, an output file that is an input file or an existing file inside an
/// input folder (a run's records).
func refuseOutput(_ output: String, flag: String, over inputs: [(path: String, what: String)]) throws {
    let out = canonicalPath(output)
    for (input, what) in inputs {
        let same = out == canonicalPath(input)
        let replacesFileInside = isDirectory(input) && isInside(output, input) && FileManager.default.fileExists(atPath: output) && !isDirectory(output)
        if same || replacesFileInside {
            throw fail("\(flag) \(output) would write over \(what) \(input): choose an output outside it", code: Exit.usage)
        }
    }
}

/// Whether `path` is a directory (after links).
func isDirectory(_ path: String) -> Bool {
    var isDir: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
}

/// The documented bounds of the numbers a user gives on the command line, checked before any
/// allocation or work (a usage error, exit 2).
enum Bounds {
    /// Seeds, as `seed` in a config: 0 … 2³¹ − 1.
    static let seed = 0...Int(Int32.max)
    /// Characters `generate` writes in one call.
    static let generateLength = 1...1_000_000
    /// Characters of a prompt, and of one sentence to translate.
    static let promptCharacters = 100_000
    static let sentenceCharacters = 10_000
    /// Images of one split of `data shapes`.
    static let shapesImages = 0...ShapesDataset.maxImages

    static func check<T: Comparable>(_ value: T, _ range: ClosedRange<T>, _ flag: String) throws {
        guard range.contains(value) else { throw ValidationError("\(flag) must be in \(range.lowerBound) … \(range.upperBound), got \(value)") }
    }

    static func check(_ value: Double, _ range: ClosedRange<Double>, _ flag: String) throws {
        guard value.isFinite, range.contains(value) else {
            throw ValidationError("\(flag) must be a number in \(range.lowerBound) … \(range.upperBound), got \(value)")
        }
    }
}

/// `text` with control characters shown as escapes (`\u{1B}`), for messages and echoes of
/// what a user typed: a terminal never receives raw escape sequences from gradguard.
func printable(_ text: String) -> String {
    var out = ""
    for u in text.unicodeScalars {
        if u.properties.generalCategory == .control || u.properties.generalCategory == .format && u.value != 0x200D {
            out += u == "\n" ? "\\n" : u == "\t" ? "\\t" : "\\u{\(String(u.value, radix: 16, uppercase: true))}"
        } else {
            out.unicodeScalars.append(u)
        }
    }
    return out
}
