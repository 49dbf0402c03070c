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
    public var step: Int
    public var epoch: Int
    public var microBatches: [[Int]]
    /// Each micro-batch's loss is divided by this before backward (the trainer's accumulation).
    public var accumulation: Int
    public var random: [UInt64]
    public var threads: Int
    /// The loss of the step and its gradient norms, as float bits (exact comparison).
    public var loss: Float
    public var globalNormBits: UInt32
    public var tensorNormBits: [String: UInt32]

    public init(
        step: Int, epoch: Int, microBatches: [[Int]], accumulation: Int, random: [UInt64], threads: Int, loss: Float, globalNormBits: UInt32,
        tensorNormBits: [String: UInt32]
    ) {
        (self.step, self.epoch, self.microBatches, self.accumulation, self.random, self.threads) = (step, epoch, microBatches, accumulation, random, threads)
        (self.loss, self.globalNormBits, self.tensorNormBits) = (loss, globalNormBits, tensorNormBits)
    }

    /// The folder of a record in a run directory.
    public static func folder(step: Int, attempt: Int) -> String { String(format: "replay/step-%08d-%d", step, attempt) }
}

/// The replay records of a run (`replay/` in the run directory), the oldest removed to keep
/// them within `budgetBytes`.
public struct ReplayStore {
    public let runDirectory: String
    public let budgetBytes: Int

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
        let tensors = try Safetensors.encode(weights)
        // A step's loss may be NaN or infinite (the incidents worth replaying).
        let json = try RunRecords.encoder([.prettyPrinted, .sortedKeys]).encode(record)
        let size = tensors.count + json.count
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
        return folder
    }

    /// Reads the record in `folder` (relative to the run directory).
    public func load(_ folder: String) throws -> (record: ReplayRecord, weights: [String: Tensor]) {
        let dir = runDirectory + "/" + folder
        let json = try FileContents.read(dir + "/replay.json", limit: 64 << 20)
        let record: ReplayRecord
        do { record = try RunRecords.decoder().decode(ReplayRecord.self, from: json) } catch {
            throw FileError.cannotRead(path: dir + "/replay.json", reason: "not a replay record: \(error)")
        }
        return (record, try Safetensors.read(dir + "/weights.safetensors"))
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
