import Foundation
import GradGuard

/// What `gradguard replay` found wrong.
public enum ReplayError: Error, CustomStringConvertible, Equatable {
    case noIncident(run: String, incident: Int, count: Int)
    case noRecord(run: String, incident: Int, step: Int)

    /// What is missing, with the counts, in one sentence.
    public var description: String {
        switch self {
        case let .noIncident(run, k, count):
            return "\(run) has \(count) incident\(count == 1 ? "" : "s"); there is no incident \(k) (counted from 1, in incidents.jsonl order)"
        case let .noRecord(run, k, step):
            return
                "\(run): incident \(k) (step \(step)) kept no replay record (one is kept at most every 10 steps, within the replay budget; a data-parallel run keeps none)"
        }
    }
}

/// An incident's step run again from its replay record.
public struct ReplayOutcome {
    /// The step that was replayed.
    public let step: Int
    /// The loss of the replay and the one recorded.
    public let loss: (replayed: Float, recorded: Float)
    /// The global gradient norm of the replay and the one recorded.
    public let globalNorm: (replayed: Float, recorded: Float)
    /// Every tensor's gradient norm, replayed and recorded.
    public let tensors: [(name: String, replayed: Float, recorded: Float)]
    /// The batch's examples ranked by their gradient norm.
    public let samples: [SampleBlame]

    /// Every norm and the loss the same, bit for bit.
    public var identical: Bool {
        loss.replayed.bitPattern == loss.recorded.bitPattern && globalNorm.replayed.bitPattern == globalNorm.recorded.bitPattern
            && tensors.allSatisfy { $0.replayed.bitPattern == $0.recorded.bitPattern }
    }

    /// Re-executes the step of incident `k` (from 1) of the run in `directory`, whose settings
    /// are `config`: the weights and random state of its record, the same examples drawn as in
    /// the same epoch, on as many workers; then ranks its examples.
    public static func run(directory: String, config: RunConfig, incident k: Int) throws -> ReplayOutcome {
        let incidents = try RunRecords.incidents(in: directory)
        guard k >= 1 && k <= incidents.count else { throw ReplayError.noIncident(run: directory, incident: k, count: incidents.count) }
        let inc = incidents[k - 1]
        guard let folder = inc.replay else { throw ReplayError.noRecord(run: directory, incident: k, step: inc.step) }
        let (record, weights) = try ReplayStore(runDirectory: directory, budgetBytes: .max).load(folder)
        let setup = try RunSetup.seeded(config, runDirectory: directory)
        if let problem = record.examplesProblem(count: setup.train.count) {
            throw FileError.cannotRead(path: directory + "/" + folder + "/replay.json", reason: problem)
        }
        let trainer = try setup.makeTrainer(nil, nil, nil)
        let model = trainer.model
        _ = try model.load(stateDict: weights)
        let savedThreads = Kernels.threadCount
        Kernels.threadCount = record.threads
        defer { Kernels.threadCount = savedThreads }
        if let g = RandomGenerator(state: record.random) { DefaultGenerator.with { $0 = g } }
        model.train()
        trainer.optimizer.zeroGrad()
        var losses: [Float] = []
        for indices in record.microBatches {
            let batch = try setup.train.batch(indices, epoch: record.epoch)
            let l = trainer.loss(model, batch)
            (record.accumulation > 1 ? l / Float(record.accumulation) : l).backward()
            losses.append(l.item)
        }
        let loss = losses.reduce(0, +) / Float(Swift.max(losses.count, 1))
        let stats = trainer.guardian.health.observe(step: record.step, loss: loss)
        let tensors = stats.tensors.map { t in
            (name: t.name, replayed: t.gradNorm, recorded: record.tensorNormBits[t.name].map { Float(bitPattern: $0) } ?? .nan)
        }
        let samples = try DataBlame.rank(
            model: model, dataset: setup.train, indices: record.microBatches.flatMap { $0 }, epoch: record.epoch, loss: trainer.loss)
        return ReplayOutcome(
            step: record.step, loss: (loss, record.loss), globalNorm: (stats.globalL2, Float(bitPattern: record.globalNormBits)), tensors: tensors,
            samples: samples)
    }
}
