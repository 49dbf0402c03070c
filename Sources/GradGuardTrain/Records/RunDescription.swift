import Foundation
import GradGuardHealth
import GradGuardNN
import GradGuardOptim
import GradGuardTensor

/// What a run trained, as `run.json` in its run directory: the model's classes and sizes,
/// the optimizer and its hyper-parameters, the schedule, the guard's clipper and the
/// trainer's settings. Every run has one (a `gradguard train` run also has its
/// `config.yaml`), so `gradguard diagnose`, `report`, `compare` and `inspect` accept runs made
/// from Swift as they accept runs made on the command line.
public struct RunDescription: Codable, Sendable {
    /// One module of the model.
    public struct ModuleEntry: Codable, Sendable, Equatable {
        /// Its dotted name (`""` for the model itself).
        public var name: String
        /// Its Swift class (`"Linear"`, `"MyBlock"`).
        public var type: String
        /// Scalars in its own parameters (not its children's).
        public var parameters: Int
    }

    /// The file's name inside a run directory.
    public static let fileName = "run.json"
    /// The format version this build writes.
    public static let format = 1

    /// The format version of this description.
    public var format = RunDescription.format
    /// What wrote the run: `"Trainer"`, `"RunLog"` (a hand-written loop) or `"gradguard train"`.
    public var writer: String
    /// The model's class.
    public var model: String
    /// Scalars in all parameters, and in those that train (not frozen).
    public var parameters: Int, trainableParameters: Int
    /// Scalars in all buffers (running statistics).
    public var buffers: Int
    /// Every module of the model, the model itself first.
    public var modules: [ModuleEntry]
    /// The optimizer's class and each parameter group's hyper-parameters (PyTorch's names).
    public var optimizer: String?
    /// Each parameter group's hyper-parameters.
    public var parameterGroups: [[String: Double]]?
    /// The learning-rate schedule's type, when there is one.
    public var schedule: String?
    /// The guard's clipper (`"global-norm"`, `"zclip"`, …; nil: none).
    public var clipper: String?
    /// The trainer's settings that shape the run (epochs, steps, batch size, seed, …).
    public var trainer: TrainerConfig?

    /// The description of training `model` with `optimizer`, `scheduler`, `clipper` and `trainer`'s settings.
    public init(
        writer: String, model: Module, optimizer: (any Optimizer)? = nil, scheduler: LRScheduler? = nil, clipper: (any GradientClipper)? = nil,
        trainer: TrainerConfig? = nil
    ) {
        self.writer = writer
        self.model = String(describing: type(of: model))
        let params = model.parameters()
        parameters = params.reduce(0) { $0 + $1.count }
        trainableParameters = params.filter(\.requiresGrad).reduce(0) { $0 + $1.count }
        buffers = model.namedBuffers().reduce(0) { $0 + $1.tensor.count }
        modules = model.namedModules().map { name, m in
            ModuleEntry(name: name, type: String(describing: type(of: m)), parameters: m.localParameters().reduce(0) { $0 + $1.tensor.count })
        }
        self.optimizer = optimizer.map { String(describing: type(of: $0)) }
        parameterGroups = optimizer?.hyperparameters()
        schedule = scheduler.map { String(describing: type(of: $0.schedule)) }
        self.clipper = clipper?.name
        self.trainer = trainer
    }

    /// Writes `run.json` into `directory` (atomically).
    public func write(in directory: String) throws {
        let data = try RunRecords.encoder([.prettyPrinted, .sortedKeys]).encode(self)
        try AtomicFile.write(data + Data([0x0A]), to: directory + "/" + Self.fileName)
    }

    /// The description in `directory`, or nil when it has none; throws for one that does not parse.
    public static func read(in directory: String) throws -> RunDescription? {
        let path = directory + "/" + fileName
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let data = try FileContents.read(path, limit: 16 << 20)
        do { return try RunRecords.decoder().decode(RunDescription.self, from: data) } catch {
            throw FileError.cannotRead(path: path, reason: RecordProblem.describe(error))
        }
    }

    /// Lines for a terminal or the report: the model, its size, the optimizer.
    public var summary: String {
        var s = "\(model): \(formatCount(parameters)) parameters"
        if trainableParameters != parameters { s += " (\(formatCount(trainableParameters)) trained)" }
        if let optimizer {
            let lr = parameterGroups?.first?["lr"].map { ", lr \(formatNumber($0))" } ?? ""
            s += "; \(optimizer)\(lr)"
        }
        if let schedule { s += ", schedule \(schedule)" }
        if let clipper { s += "; clipper \(clipper)" }
        return s + "; written by \(writer)"
    }

    func formatCount(_ n: Int) -> String {
        n >= 1_000_000 ? String(format: "%.2f M", Double(n) / 1e6) : n >= 10_000 ? String(format: "%.1f k", Double(n) / 1e3) : "\(n)"
    }
}

/// What to do with a run directory that already holds a run.
public enum ExistingRun: Sendable, Equatable {
    /// Refuse it (`RunDirectoryError.exists`): nothing is written into another run.
    case refuse
    /// Remove what it holds and start again; only a directory GradGuard marked as a run.
    case overwrite
    /// Continue it (`Trainer.resume()`), appending to its records.
    case resume
}

/// A run directory that cannot be used as asked.
public enum RunDirectoryError: Error, CustomStringConvertible, Equatable {
    /// The directory holds a run and neither overwriting nor resuming was asked for.
    case exists(directory: String)
    /// The directory holds files but no run GradGuard made: never overwritten or resumed.
    case notARun(directory: String)

    /// The directory and why it cannot be used, with what to do.
    public var description: String {
        switch self {
        case .exists(let d):
            return "run directory \(d) already holds a run: pass ifExists: .overwrite to replace it, or .resume to continue it "
                + "(then call resume()); or choose another directory"
        case .notARun(let d):
            return "\(d) holds files but is not a run directory GradGuard made (it has no \(RunMarker.fileName) marker): "
                + "it is never overwritten or resumed; choose another directory"
        }
    }

    /// Checks `directory` against `ifExists` and locks it: a missing or empty directory is
    /// made and marked; a marked run is cleared (`overwrite`) or kept (`resume`); anything
    /// else is refused.
    public static func claim(_ directory: String, ifExists: ExistingRun) throws -> RunLock {
        if RunMarker.isFresh(directory) { return try RunLock(directory: directory) }
        guard RunMarker.isMarked(directory) else { throw RunDirectoryError.notARun(directory: directory) }
        switch ifExists {
        case .refuse: throw RunDirectoryError.exists(directory: directory)
        case .resume: return try RunLock(directory: directory)
        case .overwrite:
            let lock = try RunLock(directory: directory)
            try lock.clear()
            return lock
        }
    }
}
