import Foundation
import GradGuardData
import GradGuardHealth
import GradGuardNN
import GradGuardOptim
import GradGuardTensor

/// What it takes to re-execute one step exactly: the weights its forward pass used, the
/// random state before it (dropout), the examples of each micro-batch and the epoch (a
/// dataset's augmentation draws from it), the worker count (sums split over the workers add up
/// in a fixed order for a given count) — and what the step measured, to compare against.
public struct ReplayRecord: Codable, Sendable, Equatable {
    /// The step.
    public var step: Int
    /// The epoch (a dataset's augmentation draws from it).
    public var epoch: Int
    /// The dataset indices of each micro-batch.
    public var microBatches: [[Int]]
    /// Each micro-batch's loss is divided by this before backward (the trainer's accumulation).
    public var accumulation: Int
    /// The default generator's state before the step (dropout masks).
    public var random: [UInt64]
    /// Worker threads (reductions split over them add up in a fixed order per count).
    public var threads: Int
    /// The loss of the step and its gradient norms, as float bits (exact comparison).
    public var loss: Float
    /// The global gradient norm's float bits.
    public var globalNormBits: UInt32
    /// Each tensor's gradient norm's float bits.
    public var tensorNormBits: [String: UInt32]

    /// A record of everything needed to run the step again.
    public init(
        step: Int, epoch: Int, microBatches: [[Int]], accumulation: Int, random: [UInt64], threads: Int, loss: Float, globalNormBits: UInt32,
        tensorNormBits: [String: UInt32]
    ) {
        (self.step, self.epoch, self.microBatches, self.accumulation, self.random, self.threads) = (step, epoch, microBatches, accumulation, random, threads)
        (self.loss, self.globalNormBits, self.tensorNormBits) = (loss, globalNormBits, tensorNormBits)
    }

    /// What is out of range, for a record no run writes (its example indices are checked
    /// against the data by `examplesProblem`).
    public var problem: String? {
        if step < 0 || epoch < 0 { return "step \(step) and epoch \(epoch) must not be negative" }
        if !(1...4096).contains(accumulation) { return "accumulation \(accumulation) is out of range (1 … 4096)" }
        if microBatches.isEmpty || microBatches.count > 4096 { return "expected 1 … 4096 micro-batches, got \(microBatches.count)" }
        if !(1...1024).contains(threads) { return "threads \(threads) is out of range (1 … 1024)" }
        if RandomGenerator(state: random) == nil { return "its random state is not one the generator writes" }
        return nil
    }

    /// The first example index that `count` examples do not have, in words, or nil.
    public func examplesProblem(count: Int) -> String? {
        for (b, batch) in microBatches.enumerated() {
            if batch.isEmpty || batch.count > 1 << 20 { return "micro-batch \(b + 1) has \(batch.count) examples" }
            if let bad = batch.first(where: { $0 < 0 || $0 >= count }) {
                return
                    "micro-batch \(b + 1) names example \(bad), but the data have \(count) examples (0 … \(count - 1)): the data changed since the run, or the record is damaged"
            }
        }
        return nil
    }

    /// The folder of a record in a run directory.
    public static func folder(step: Int, attempt: Int) -> String { String(format: "replay/step-%08d-%d", step, attempt) }
}

/// The replay records of a run (`replay/` in the run directory), the oldest removed to keep
/// them within `budgetBytes`.
public struct ReplayStore {
    /// The run directory (records go in its `replay/`).
    public let runDirectory: String
    /// The most bytes the records may take.
    public let budgetBytes: Int

    /// The store of the run in `runDirectory`.
    public init(runDirectory: String, budgetBytes: Int) {
        self.runDirectory = runDirectory
        self.budgetBytes = budgetBytes
    }

    /// The records present, oldest first, with their sizes.
    public func records() -> [(folder: String, bytes: Int)] {
        let fm = FileManager.default
        let base = runDirectory + "/replay"
        let names = ((try? fm.contentsOfDirectory(atPath: base)) ?? []).filter { $0.hasPrefix("step-") }.sorted()
        return names.map { n in
            let files = (try? fm.contentsOfDirectory(atPath: base + "/" + n)) ?? []
            let bytes = files.reduce(0) { $0 + (((try? fm.attributesOfItem(atPath: base + "/" + n + "/" + $1))?[.size] as? Int) ?? 0) }
            return ("replay/" + n, bytes)
        }
    }

    /// Writes a record (its weights and its JSON), removing the oldest records to stay within
    /// the budget. Returns the record's folder, relative to the run directory, or nil when one
    /// record alone is larger than the budget.
    public func save(_ record: ReplayRecord, weights: [String: Tensor], attempt: Int) throws -> String? {
        let tensors = Safetensors.encode(weights)
        // A step's loss may be NaN or infinite (the incidents worth replaying).
        let json = try RunRecords.encoder([.prettyPrinted, .sortedKeys]).encode(record)
        // Sizes and CRC-32C of both files, as a checkpoint's manifest: a damaged record is
        // refused before anything is read from it.
        let manifest = try RunRecords.encoder([.prettyPrinted, .sortedKeys]).encode(
            CheckpointManifest(
                step: record.step, metric: nil,
                files: [
                    "weights.safetensors": .init(bytes: tensors.count, crc32c: CRC32C.checksum(tensors)),
                    "replay.json": .init(bytes: json.count, crc32c: CRC32C.checksum(json))
                ]))
        let size = tensors.count + json.count + manifest.count
        guard size <= budgetBytes else { return nil }
        var present = records()
        var used = present.reduce(0) { $0 + $1.bytes }
        while used + size > budgetBytes, let oldest = present.first {
            try? FileManager.default.removeItem(atPath: runDirectory + "/" + oldest.folder)
            used -= oldest.bytes
            present.removeFirst()
        }
        let folder = ReplayRecord.folder(step: record.step, attempt: attempt)
        let dir = runDirectory + "/" + folder
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            throw FileError.cannotWrite(path: dir, reason: AtomicFile.reason(error))
        }
        try AtomicFile.write(tensors, to: dir + "/weights.safetensors")
        try AtomicFile.write(json, to: dir + "/replay.json")
        try AtomicFile.write(manifest, to: dir + "/manifest.json")
        return folder
    }

    /// Whether `folder` is a record's folder as `save` names it (`replay/step-NNNNNNNN-K`):
    /// an incident's `replay` field never leads outside the run.
    public static func isRecordFolder(_ folder: String) -> Bool {
        let parts = folder.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0] == "replay", parts[1].hasPrefix("step-") else { return false }
        return parts[1].dropFirst(5).allSatisfy { $0.isASCII && ($0.isNumber || $0 == "-") }
    }

    /// Reads the record in `folder` (relative to the run directory).
    public func load(_ folder: String) throws -> (record: ReplayRecord, weights: [String: Tensor]) {
        let dir = runDirectory + "/" + folder
        guard Self.isRecordFolder(folder) else { throw FileError.cannotRead(path: dir, reason: "not a replay record's folder (replay/step-…)") }
        func read(_ name: String) throws -> Data {
            do { return try FileContents.read(dir + "/" + name, limit: 1 << 31) } catch let e as FileReadFailure {
                throw FileError.cannotRead(path: dir + "/" + name, reason: e.reason)
            }
        }
        let json = try read("replay.json"), weights = try read("weights.safetensors")
        // Records written before they carried a manifest are read unverified.
        if FileManager.default.fileExists(atPath: dir + "/manifest.json") {
            let bytes = try read("manifest.json")
            let manifest: CheckpointManifest
            do { manifest = try JSONDecoder().decode(CheckpointManifest.self, from: bytes) } catch {
                throw FileError.cannotRead(path: dir + "/manifest.json", reason: "not a replay manifest: \(RecordProblem.describe(error))")
            }
            for (name, data) in [("replay.json", json), ("weights.safetensors", weights)] {
                guard let entry = manifest.files[name] else { throw FileError.cannotRead(path: dir + "/manifest.json", reason: "\(name) is not listed") }
                let crc = CRC32C.checksum(data)
                guard data.count == entry.bytes, crc == entry.crc32c else {
                    throw FileError.cannotRead(
                        path: dir + "/" + name,
                        reason:
                            "corrupt (\(data.count) bytes, CRC-32C \(String(format: "%08x", crc)); the manifest says \(entry.bytes) bytes, \(String(format: "%08x", entry.crc32c)))"
                    )
                }
            }
        }
        let record: ReplayRecord
        do { record = try RunRecords.decoder().decode(ReplayRecord.self, from: json) } catch {
            throw FileError.cannotRead(path: dir + "/replay.json", reason: "not a replay record: \(RecordProblem.describe(error))")
        }
        if let problem = record.problem { throw FileError.cannotRead(path: dir + "/replay.json", reason: problem) }
        return (record, try Safetensors.decode(weights, file: dir + "/weights.safetensors").tensors)
    }
}

/// Which examples of a batch carry its gradient: each example run alone (forward, backward)
/// from the same weights, its loss and the L2 norm of its gradient, ranked by that norm.
public enum DataBlame {
    /// Ranks the examples `indices` of `dataset` (drawn as in `epoch`), from `weights` (a
    /// state dict; the model's own when nil). The model's weights, buffers and gradients and
    /// the default generator are put back afterwards. A model with `BatchNorm1d` runs them in
    /// evaluation mode (one example has no batch statistics).
    public static func rank(
        model: Module, weights: [String: Tensor]? = nil, dataset: any Dataset, indices: [Int], epoch: Int, loss: (Module, Batch) -> Tensor
    ) throws -> [SampleBlame] {
        let params = model.parameters()
        let saved = model.stateDict().mapValues { $0.copy() }
        if let weights { _ = try model.load(stateDict: weights) }  // load copies the values in
        let savedGrads = params.map { $0.grad?.copy() }
        let random = DefaultGenerator.with { $0.state }
        let wasTraining = model.training
        let singleBatchUnsafe = model.namedModules().contains { $0.module is BatchNorm1d }
        if singleBatchUnsafe { model.eval() }
        defer {
            _ = try? model.load(stateDict: saved)
            for (p, g) in zip(params, savedGrads) { p.grad = g }
            if let g = RandomGenerator(state: random) { DefaultGenerator.with { $0 = g } }
            if wasTraining { model.train() } else { model.eval() }
        }
        var rows: [(index: Int, loss: Float, norm: Float)] = []
        for i in indices {
            for p in params { p.grad = nil }
            let batch = try dataset.batch([i], epoch: epoch)
            let l = loss(model, batch)
            l.backward()
            let norm = Float(GradientClipping.combine(GradientClipping.norms(params.map(\.grad))))
            rows.append((i, l.item, norm))
        }
        let total = rows.reduce(Float(0)) { $0 + ($1.norm.isFinite ? $1.norm : 0) }
        return rows.sorted { a, b in
            (a.norm.isFinite ? a.norm : .infinity) > (b.norm.isFinite ? b.norm : .infinity)
        }.map { r in
            SampleBlame(
                index: r.index, source: describeSample(dataset, r.index), loss: r.loss, gradNorm: r.norm,
                share: r.norm.isFinite ? (total > 0 ? r.norm / total : 0) : 1)
        }
    }

    /// The diagnosis's sentence when one example, or a few, carry most of the gradient.
    public static func note(_ ranked: [SampleBlame]) -> String? {
        guard let top = ranked.first, ranked.count >= 4 else { return nil }
        let check = top.source.contains("labels") || top.source.contains("→") ? "check its labels" : "check it"
        if top.share >= 0.5 || !top.gradNorm.isFinite {
            return "\(top.source) carries \(Int((top.share * 100).rounded())) % of the gradient norm of the batch: \(check)"
        }
        let three = ranked.prefix(3).reduce(Float(0)) { $0 + $1.share }
        if three >= 0.75 {
            return "three examples carry \(Int((three * 100).rounded())) % of the gradient norm of the batch, first \(top.source): check them"
        }
        return nil
    }
}

/// Keeps the replay record of an incident's step (within a budget, at most one in `spacing`
/// steps) and ranks its batch's examples (for batches of at most `dataBlameLimit` examples, at
/// most `dataBlameRuns` times): what the step executor does with an incident of a run that
/// has a directory.
public final class ReplayKeeper {
    /// The run directory (nil: no replay records, only the data blame).
    public let runDirectory: String?
    /// The most bytes the replay records may take.
    public let budgetBytes: Int
    /// The largest batch whose examples are ranked one by one (0: never).
    public let dataBlameLimit: Int
    /// Micro-batches per step.
    public let accumulation: Int
    /// A run with incidents on step after step (a run the guard only watches) keeps a replay
    /// record at most every this many steps, and ranks examples for at most `dataBlameRuns`
    /// incidents: both cost time at every incident.
    public let spacing: Int
    /// The most incidents whose examples are ranked.
    public let dataBlameRuns: Int
    let model: Module
    /// The training set the examples of a batch come from (nil: no data blame).
    public var dataset: (any Dataset)?
    let loss: (Module, Batch) -> Tensor
    private var lastReplayStep: Int? = nil
    private var blameRuns = 0

    /// A keeper for the run in `runDirectory` (nil: data blame only).
    public init(
        runDirectory: String?, budgetBytes: Int, dataBlameLimit: Int, accumulation: Int, spacing: Int = 10, dataBlameRuns: Int = 10,
        model: Module, dataset: (any Dataset)? = nil, loss: @escaping (Module, Batch) -> Tensor
    ) {
        (self.spacing, self.dataBlameRuns) = (spacing, dataBlameRuns)
        (self.runDirectory, self.budgetBytes, self.dataBlameLimit, self.accumulation) = (runDirectory, budgetBytes, dataBlameLimit, accumulation)
        (self.model, self.dataset, self.loss) = (model, dataset, loss)
    }

    /// The incident with its replay record and ranked examples noted; `weights` are those the
    /// step's forward pass used.
    func keep(_ inc: Incident, origin c: StepOrigin, stats: StepStatistics, weights: [String: Tensor], attempt: Int) throws -> Incident {
        var inc = inc
        if let runDirectory, budgetBytes > 0, lastReplayStep.map({ c.step - $0 >= spacing || c.step < $0 }) ?? true {
            lastReplayStep = c.step
            let record = ReplayRecord(
                step: c.step, epoch: c.epoch, microBatches: c.microBatches, accumulation: accumulation, random: c.random,
                threads: Kernels.threadCount,
                loss: stats.loss ?? .nan, globalNormBits: stats.globalL2.bitPattern,
                tensorNormBits: Dictionary(stats.tensors.map { ($0.name, $0.gradNorm.bitPattern) }, uniquingKeysWith: { a, _ in a }))
            inc.replay = try ReplayStore(runDirectory: runDirectory, budgetBytes: budgetBytes).save(record, weights: weights, attempt: attempt)
        }
        let indices = c.microBatches.flatMap { $0 }
        if let dataset, dataBlameLimit > 0, indices.count <= dataBlameLimit, indices.count >= 2, blameRuns < dataBlameRuns {
            blameRuns += 1
            let ranked = try DataBlame.rank(model: model, weights: weights, dataset: dataset, indices: indices, epoch: c.epoch, loss: loss)
            inc.samples = Array(ranked.prefix(10))
            if let note = DataBlame.note(ranked) { inc.recommendations.insert(note, at: 0) }
        }
        return inc
    }
}
