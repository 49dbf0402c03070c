import Foundation
import GradGuardData
import GradGuardDistributed
import GradGuardHealth
import GradGuardNN
import GradGuardOptim
import GradGuardTensor

/// How a `Trainer` runs: every setting of a trainer, given at construction.
public struct TrainerConfig: Codable, Sendable {
    /// The old name of `ScheduleCadence`.
    public typealias ScheduleStep = ScheduleCadence
    /// Passes over the training set.
    public var epochs = 1
    /// Stop after this many applied optimizer steps (nil: run all epochs).
    public var maxSteps: Int? = nil
    /// Examples per micro-batch (per rank in data-parallel training).
    public var batchSize = 32
    /// Micro-batches per optimizer step; statistics and clipping see their summed gradient.
    public var accumulation = 1
    /// Whether each epoch is a seeded shuffle of the data.
    public var shuffle = true
    /// Whether a last, smaller batch is left out.
    public var dropLast = false
    /// The seed of the data order and of the default generator (dropout).
    public var seed: UInt64 = 0
    /// Evaluate every this many steps (0: at the end of each epoch only).
    public var evalEvery = 0
    /// Checkpoint every this many steps (0: at the end of each epoch only).
    public var checkpointEvery = 0
    /// Checkpoints kept (the best is kept besides).
    public var keepCheckpoints = 3
    /// Whether the schedule steps with every optimizer step or every epoch.
    public var scheduleStep = ScheduleStep.step
    /// Per-module norms and update ratios in `metrics.jsonl` every this many steps, and
    /// gradient histograms in the TensorBoard file.
    public var moduleNormsEvery = 10
    /// Replay records kept for incidents (`replay/` in the run directory), within this many
    /// bytes, oldest removed first (0: none).
    public var replayBudgetBytes = 256 << 20
    /// Rank the examples of an incident's batch by their gradient norm (the batch run one
    /// example at a time) when it has at most this many examples (0: never).
    public var dataBlameLimit = 256
    /// A run with incidents on step after step (a run the guard only watches) keeps a replay
    /// record at most every this many steps, and ranks examples for at most `dataBlameRuns`
    /// incidents: both cost time at every incident.
    public var replaySpacing = 10
    /// The most incidents whose examples are ranked.
    public var dataBlameRuns = 10
    /// Data-parallel training: check that every rank holds the same parameters every this
    /// many applied steps (0: never).
    public var parameterCheckEvery = 100
    /// A moving average of the weights (`WeightEMA`), updated after every applied step, used
    /// for every evaluation and saved in checkpoints (nil: none).
    public var weightAverage: WeightAverage? = nil
    /// What the workload knows of its own failure modes, for the diagnosis (`DetectorDiagnosis`:
    /// a detector's warm-up, box gain, rate for its batch, unassigned head scales).
    public var diagnosisRules: [any DiagnosisRules] = []
    /// The curvature probe (`GradientGuard.curvature`): every `every` applied steps (0: off),
    /// at most `iterations` Hessian-vector products on a fixed batch of the first `batch`
    /// training examples (each rank its own in data-parallel training, the products averaged).
    public var curvature = CurvatureProbeConfig()

    /// How often and how hard the trainer's curvature probe looks.
    public struct CurvatureProbeConfig: Codable, Sendable, Equatable {
        /// Applied steps between probes (0: off), Hessian-vector products per probe, examples in the probe's batch.
        public var every = 0, iterations = 20, batch = 128
        /// A probe every `every` steps.
        public init(every: Int = 0, iterations: Int = 20, batch: Int = 128) { (self.every, self.iterations, self.batch) = (every, iterations, batch) }
    }

    /// The decay and ramp of a moving average of the weights (Ultralytics' ModelEMA).
    public struct WeightAverage: Codable, Sendable, Equatable {
        /// The decay once ramped up, and the updates over which it ramps.
        public var decay: Double, tau: Double
        /// Ultralytics' defaults.
        public init(decay: Double = 0.9999, tau: Double = 2000) { (self.decay, self.tau) = (decay, tau) }
    }

    /// The defaults: one epoch of batches of 32.
    public init() {}

    /// What a checkpoint keeps: the settings that shape the data order and the step count (a
    /// resumed run takes the rest from its own configuration).
    enum CodingKeys: String, CodingKey {
        case epochs, maxSteps, batchSize, accumulation, shuffle, dropLast, seed, evalEvery, checkpointEvery, keepCheckpoints, scheduleStep
        case moduleNormsEvery
    }

    /// Reads a configuration saved in a checkpoint; a setting it lacks keeps its default.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func read<T: Decodable>(_ key: CodingKeys, _ value: inout T) throws {
            if let v = try c.decodeIfPresent(T.self, forKey: key) { value = v }
        }
        try read(.epochs, &epochs)
        maxSteps = try c.decodeIfPresent(Int.self, forKey: .maxSteps)
        try read(.batchSize, &batchSize)
        try read(.accumulation, &accumulation)
        try read(.shuffle, &shuffle)
        try read(.dropLast, &dropLast)
        try read(.seed, &seed)
        try read(.evalEvery, &evalEvery)
        try read(.checkpointEvery, &checkpointEvery)
        try read(.keepCheckpoints, &keepCheckpoints)
        try read(.scheduleStep, &scheduleStep)
        try read(.moduleNormsEvery, &moduleNormsEvery)
    }
}

/// User hooks, called on the training thread.
public struct TrainerCallbacks {
    /// Before each step, with its first micro-batch.
    public var beforeStep: ((_ step: Int, _ batch: Batch) -> Void)?
    /// After backward, before the guard sees the gradients (this rank's own, not yet averaged).
    public var afterBackward: ((_ step: Int) -> Void)?
    /// After each step, with its record and what the guard did.
    public var afterStep: ((_ record: StepRecord, _ outcome: StepOutcome) -> Void)?
    /// When the guard records an incident.
    public var onIncident: ((Incident) -> Void)?
    /// After each evaluation.
    public var onEvaluation: ((EvaluationRecord) -> Void)?
    /// No hooks.
    public init() {}
}

/// What a finished (or stopped) `fit` returns.
public struct TrainingResult: Sendable {
    /// Optimizer updates the model's weights now carry: applied steps, less those a rollback
    /// undid (`GradientGuard.step`; what `TrainerConfig.maxSteps` counts). A skipped step is
    /// not one; `attempts` counts every step the guard judged.
    public let steps: Int
    /// Every step the guard judged, applied or not (skipped, rolled back, undone), over the
    /// whole run including before a resume.
    public let attempts: Int
    /// Epochs completed.
    public let epochs: Int
    /// The mean loss of the last step's batch (over every rank), nil when no step ran.
    public let lastLoss: Float?
    /// The last evaluation's metrics, nil when none ran.
    public let lastEvaluation: [String: Double]?
    /// Incidents the guard recorded (every step with a finding it reported).
    public let incidents: Int
    /// Steps the guard withheld (their gradients were not applied).
    public let skippedSteps: Int
}

/// The epoch/step loop with the gradient guard between backward and the optimizer step.
///
/// ```swift
/// let trainer = Trainer(model: model, optimizer: AdamW(model.parameters()), config: config,
///                       runDirectory: "runs/demo") { model, batch in crossEntropy(model(batch.inputs), batch.targets) }
/// let result = try trainer.fit(train: trainSet, validation: validSet)
/// ```
///
/// Deterministic: the same seed and config give the same losses bit for bit (seeded data
/// order per epoch, the default generator seeded from `config.seed`). Checkpoints hold the
/// weights and buffers, the optimizer, schedule, clipper and guard state, the random state
/// and the position in the data; `resume` continues exactly where the run stopped.
public final class Trainer {
    /// The model trained.
    public let model: Module
    /// Its optimizer.
    public let optimizer: any Optimizer
    /// The learning-rate schedule, if any.
    public let scheduler: LRScheduler?
    /// The gradient guard between backward and the optimizer step.
    public let guardian: GradientGuard
    /// How the trainer runs.
    public let config: TrainerConfig
    /// Hooks (the one thing set after construction: they observe the run, they do not configure it).
    public var callbacks = TrainerCallbacks()
    /// The loss of one batch.
    public let loss: (Module, Batch) -> Tensor
    /// Metrics of one validation batch (default: the loss); averaged over batches, weighted by size.
    public let evaluate: ((Module, Batch) -> [String: Double])?
    /// Metrics of the whole validation set at once, for those that do not average over
    /// batches (mean average precision); used instead of `evaluate` when set. Runs in
    /// evaluation mode.
    public let evaluateDataset: ((Module, any Dataset) throws -> [String: Double])?
    /// The run's checkpoints (nil without a run directory).
    public let store: CheckpointStore?
    /// The run directory, when records and checkpoints are written.
    public let runDirectory: String?
    /// The run's records (`metrics.jsonl`, `incidents.jsonl`, the TensorBoard event file,
    /// `run.json`, `environment.txt`, `report.html`), opened when training or evaluation first
    /// records something (so a `resume` that fails its checks leaves the run untouched).
    public private(set) var log: RunLog?
    /// `metrics.jsonl` and `incidents.jsonl` (the log's).
    public var recorder: RunRecorder? { log?.recorder }
    /// TensorBoard scalars (loss, learning rate, gradient norms, evaluation metrics) and
    /// gradient histograms, in the run directory (the log's).
    public var events: EventWriter? { log?.events }
    /// `report.html`, written when `fit` ends or halts (nil before, and without a run directory).
    public private(set) var reportPath: String?
    /// How the report groups the model's modules into parts (a detector's backbone, neck, head).
    public let moduleParts: (any ModuleParts)?
    /// The lock that keeps other processes out of the run directory while this trainer lives.
    public let runLock: RunLock?
    /// Checkpoints passed over because they did not verify, from the last `resume`.
    public private(set) var skippedCheckpoints: [CheckpointError] = []
    /// The ranks of a data-parallel job (a world of one by default). Rank 0 writes the records
    /// and checkpoints; `config.batchSize` is per rank, as in PyTorch's DDP.
    public let communicator: any Communicator
    /// Whether this process writes records and checkpoints (rank 0).
    public var isRecording: Bool { communicator.rank == 0 }
    /// Whether the ranks were made to start from rank 0's parameters.
    private var ranksAligned = false
    /// The step of the newest checkpoint written or loaded.
    private var lastCheckpointStep: Int? = nil
    /// The moving average of the weights (`config.weightAverage`): updated after every applied
    /// step, used for every evaluation, saved in checkpoints. Nil: none.
    public let ema: WeightEMA?
    /// Keeps the replay record and ranks the examples of an incident's step.
    private let replay: ReplayKeeper
    /// The step being executed, for its replay record.
    private var origin: StepOrigin? = nil

    /// Epochs completed.
    public private(set) var epoch = 0
    /// The next batch of the current epoch (in micro-batches).
    public private(set) var batchInEpoch = 0
    private var lastEvaluation: [String: Double]? = nil
    /// Whether the default generator has been seeded (first fit) or restored (resume).
    private var generatorStarted = false
    /// The step of the newest evaluation (a run ends with one at its last step).
    private var lastEvaluatedStep: Int? = nil
    /// The weights, buffers and optimizer state of the best validation loss so far, when the
    /// policy watches validation divergence.
    private var best: (loss: Double, step: Int, model: [String: Tensor], optimizer: [String: Tensor], hyperparameters: [[String: Double]])? = nil
    private var validationRestores = 0
    private var stopRequested = false
    /// When the current `fit` began (the curvature probe's share of the time).
    private var fitStarted = Date()
    /// The curvature probe's warm start from a checkpoint, for the probe `fit` builds.
    private var resumedCurvatureStart: [Float]? = nil

    /// Ends `fit` after the current step (from a callback, for early stopping); the run is
    /// checkpointed and can be resumed.
    public func requestStop() { stopRequested = true }

    /// A trainer of `model` with `optimizer` under `policy`; `loss` gives a batch's loss. With a `runDirectory` it writes records, checkpoints and the report there (an existing run only as `ifExists` says).
    public init(
        model: Module, optimizer: any Optimizer, scheduler: LRScheduler? = nil, policy: GuardPolicy = GuardPolicy(),
        monitor: HealthMonitor = HealthMonitor(), config: TrainerConfig = TrainerConfig(), runDirectory: String? = nil,
        ifExists: ExistingRun = .refuse, runLock: RunLock? = nil, communicator: (any Communicator)? = nil, bucketBytes: Int = 25 << 20,
        moduleParts: (any ModuleParts)? = nil, evaluate: ((Module, Batch) -> [String: Double])? = nil,
        evaluateDataset: ((Module, any Dataset) throws -> [String: Double])? = nil, loss: @escaping (Module, Batch) -> Tensor
    ) throws {
        require(config.batchSize > 0 && config.accumulation > 0 && config.epochs > 0, "Trainer: sizes must be positive")
        (self.evaluate, self.evaluateDataset) = (evaluate, evaluateDataset)
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.config = config
        self.loss = loss
        self.moduleParts = moduleParts
        let world = communicator ?? SingleProcessCommunicator()
        self.communicator = world
        guardian = GradientGuard(
            model: model, optimizer: optimizer, scheduler: scheduler, scheduleCadence: config.scheduleStep,
            policy: policy, monitor: monitor, communicator: world, bucketBytes: bucketBytes)
        guardian.judge.updateRatioEvery = config.moduleNormsEvery
        guardian.parameterCheckEvery = config.parameterCheckEvery
        guardian.diagnostician.rules = config.diagnosisRules
        ema = config.weightAverage.map { WeightEMA(model: model, decay: $0.decay, tau: $0.tau) }
        if let runDirectory {
            // One process per run: a second trainer on the same directory is refused (RunInUse).
            // In a data-parallel job rank 0 holds the lock for all. A lock given by the caller
            // means the caller has checked the directory (`gradguard train`); otherwise an
            // existing run is refused unless `ifExists` says to overwrite or resume it.
            self.runLock = world.rank == 0 ? try runLock ?? RunDirectoryError.claim(runDirectory, ifExists: ifExists) : runLock
            store = CheckpointStore(directory: runDirectory + "/checkpoints", keepLast: config.keepCheckpoints)
        } else {
            self.runLock = runLock
            store = nil
        }
        self.runDirectory = runDirectory
        // Replay records only in the run directory of the process that writes records.
        replay = ReplayKeeper(
            runDirectory: world.rank == 0 ? runDirectory : nil, budgetBytes: config.replayBudgetBytes, dataBlameLimit: config.dataBlameLimit,
            accumulation: config.accumulation, spacing: config.replaySpacing, dataBlameRuns: config.dataBlameRuns, model: model, loss: loss)
        guardian.replay = replay
    }

    /// Opens the run's record files (once), writing `run.json` and `environment.txt`.
    func openRecords() throws {
        guard let runDirectory, log == nil, isRecording else { return }
        let description = RunDescription(
            writer: "Trainer", model: model, optimizer: optimizer, scheduler: scheduler, clipper: guardian.policy.clipper, trainer: config)
        log = try RunLog(directory: runDirectory, lock: nil, description: description, guard: guardian, communicator: communicator)
        log?.moduleNormsEvery = config.moduleNormsEvery
        log?.moduleParts = moduleParts
    }

    /// Trains until `config.epochs` epochs or `config.maxSteps` steps are done, then writes
    /// `report.html` into the run directory; a run the guard halts (`TrainingDiverged`) gets
    /// its report before the error is thrown.
    @discardableResult
    public func fit(train: any Dataset, validation: (any Dataset)? = nil) throws -> TrainingResult {
        do {
            let result = try fitLoop(train: train, validation: validation)
            reportPath = try log?.finish()
            return result
        } catch let halt as TrainingDiverged {
            reportPath = try? log?.finish()
            throw halt
        }
    }

    func fitLoop(train: any Dataset, validation: (any Dataset)?) throws -> TrainingResult {
        // A fresh run starts the default generator (dropout) from the run's seed; a resumed
        // one has the checkpoint's state, and a second fit goes on from where the first ended.
        fitStarted = Date()
        if !generatorStarted { DefaultGenerator.seed(config.seed) }
        generatorStarted = true
        try openRecords()
        // Every rank starts from rank 0's weights (a resumed run loaded the same checkpoint:
        // checked).
        if communicator.isDistributed && !ranksAligned {
            try guardian.broadcastParameters()
            try guardian.checkParameters()
            ranksAligned = true
        }
        if config.curvature.every > 0, guardian.curvature == nil, train.count > 0 {
            // A fixed batch: this rank's first examples (every rank probes its own; the products are averaged).
            let n = Swift.min(config.curvature.batch, Swift.max(1, train.count / communicator.size))
            let start = Swift.min(communicator.rank * n, train.count - n)
            let probeBatch = try train.batch(Array(start..<(start + n)))
            let model = self.model, loss = self.loss
            guardian.curvature = CurvatureProbe(
                parameters: model.parameters(), buffers: model.namedBuffers().map(\.tensor), every: config.curvature.every,
                iterations: config.curvature.iterations, communicator: communicator
            ) { loss(model, probeBatch) }
            guardian.curvature?.warmStart = resumedCurvatureStart
        }
        let loader = DataLoader(
            train, batchSize: config.batchSize, shuffle: config.shuffle, dropLast: config.dropLast,
            seed: config.seed, rank: communicator.rank, replicas: communicator.size)
        var lastLoss: Float? = nil
        replay.dataset = train
        model.train()
        stopRequested = false
        outer: while epoch < config.epochs {
            let batches = loader.batches(epoch: epoch, from: batchInEpoch)
            while true {
                if stopRequested || config.maxSteps.map({ guardian.step >= $0 }) == true {
                    // A run that reached its step limit ends with a validation pass at that step.
                    if !stopRequested, let validation, lastEvaluatedStep != guardian.step { try runEvaluation(validation) }
                    try checkpoint()  // a stopped run can be resumed exactly
                    break outer
                }
                // One optimizer step: `accumulation` micro-batches, their gradients summed.
                optimizer.zeroGrad()
                var micro: [Float] = []
                var first: Batch? = nil
                origin = StepOrigin(step: guardian.step, epoch: epoch, microBatches: [], random: DefaultGenerator.with { $0.state })
                for k in 0..<config.accumulation {
                    guard let (index, batch) = try batches.nextBatch() else { break }
                    if first == nil { first = batch; callbacks.beforeStep?(guardian.step, batch) }
                    // The last micro-batch's backward starts averaging the gradients (data-parallel).
                    if k == config.accumulation - 1 { guardian.prepareGradientSync() }
                    let l = loss(model, batch)
                    (config.accumulation > 1 ? l / Float(config.accumulation) : l).backward()
                    micro.append(l.item)
                    origin?.microBatches.append(batch.indices)
                    batchInEpoch = index + 1
                }
                guard !micro.isEmpty else { break }
                callbacks.afterBackward?(guardian.step)
                let localLoss = micro.reduce(0, +) / Float(micro.count)
                let stepBefore = guardian.step
                let outcome = try guardian.execute(loss: localLoss, origin: origin)
                origin = nil
                // An incident that cannot be written (disk full) fails the step that raised it.
                var incidentWriteError = outcome.replayError
                if let inc = outcome.incident {
                    do { try log?.record(inc) } catch { incidentWriteError = error }
                    callbacks.onIncident?(inc)
                }
                if let d = outcome.diverged { throw d }
                if let e = incidentWriteError { throw e }
                // The loss over every rank's samples (this rank's in a single process).
                let meanLoss = outcome.stats.loss ?? localLoss
                lastLoss = meanLoss
                var record = StepRecord(
                    step: stepBefore, epoch: epoch, loss: meanLoss, outcome: outcome, guard: guardian, moduleNormsEvery: config.moduleNormsEvery,
                    started: fitStarted)
                record.batch = (first?.indices.count ?? 0) * micro.count * communicator.size
                try log?.record(record)
                callbacks.afterStep?(record, outcome)
                if case .rolledBack = outcome.decision { continue }
                let applied = outcome.decision == .applied
                if applied { ema?.update(model) }
                if applied, config.evalEvery > 0, guardian.step % config.evalEvery == 0, let validation {
                    try runEvaluation(validation)
                }
                if applied, config.checkpointEvery > 0, guardian.step % config.checkpointEvery == 0 { try checkpoint() }
            }
            epoch += 1
            batchInEpoch = 0
            guardian.epochEnded()
            if let validation, config.evalEvery == 0 { try runEvaluation(validation) }
            if config.checkpointEvery == 0 { try checkpoint() }
        }
        if !stopRequested, let validation, lastEvaluatedStep != guardian.step { try runEvaluation(validation) }
        if config.checkpointEvery > 0, store != nil, lastCheckpointStep != guardian.step { try checkpoint() }
        return TrainingResult(
            steps: guardian.step, attempts: guardian.memory.attempts, epochs: epoch, lastLoss: lastLoss, lastEvaluation: lastEvaluation,
            incidents: guardian.incidents.count, skippedSteps: guardian.skippedSteps)
    }

    /// Evaluates on `dataset` in evaluation mode, without gradients; records and returns the metrics.
    @discardableResult
    public func runEvaluation(_ dataset: any Dataset) throws -> [String: Double] {
        model.eval()
        defer { model.train() }
        if let ema {
            // The averaged weights are what the run evaluates (and delivers).
            let metrics = try ema.withAveragedWeights(in: model) { try evaluationMetrics(dataset) }
            return try recordEvaluation(metrics)
        }
        return try recordEvaluation(try evaluationMetrics(dataset))
    }

    /// The metrics of `dataset` with the model's current weights.
    func evaluationMetrics(_ dataset: any Dataset) throws -> [String: Double] {
        let metrics: [String: Double]
        if let evaluateDataset {
            metrics = try withoutGrad { try evaluateDataset(model, dataset) }
        } else {
            // Each rank evaluates every size-th example (none twice), and the sums are combined.
            let mine = stride(from: communicator.rank, to: dataset.count, by: communicator.size).map { $0 }
            var sums: [String: Double] = [:]
            var seen = 0
            for start in stride(from: 0, to: mine.count, by: config.batchSize) {
                let batch = try dataset.batch(Array(mine[start..<Swift.min(start + config.batchSize, mine.count)]))
                let m = withoutGrad { evaluate?(model, batch) ?? ["loss": Double(loss(model, batch).item)] }
                for (k, v) in m { sums[k, default: 0] += v * Double(batch.indices.count) }
                seen += batch.indices.count
            }
            if communicator.isDistributed { (sums, seen) = try combineEvaluation(sums, seen) }
            metrics = sums.mapValues { $0 / Double(Swift.max(seen, 1)) }
        }
        return metrics
    }

    /// Records an evaluation's metrics and watches the validation loss.
    func recordEvaluation(_ metrics: [String: Double]) throws -> [String: Double] {
        lastEvaluation = metrics
        lastEvaluatedStep = guardian.step
        try watchValidation(metrics["loss"])
        try openRecords()
        let record = EvaluationRecord(step: guardian.step, epoch: epoch, metrics: metrics)
        guard isRecording else { return metrics }
        try log?.record(evaluation: metrics, step: guardian.step, epoch: epoch)
        callbacks.onEvaluation?(record)
        return metrics
    }

    /// Every rank's evaluation sums, added in rank order (the same bits on every rank).
    func combineEvaluation(_ sums: [String: Double], _ seen: Int) throws -> ([String: Double], Int) {
        let keys = sums.keys.sorted()
        let all = try communicator.allGatherVariable([Double(seen)] + keys.map { sums[$0]! })
        guard all.allSatisfy({ $0.count == keys.count + 1 }) else {
            throw CommunicatorError.mismatch(what: "set of evaluation metrics", ranks: all.indices.filter { all[$0].count != keys.count + 1 })
        }
        var total = [Double](repeating: 0, count: keys.count + 1)
        for v in all { for i in v.indices { total[i] += v[i] } }
        return (Dictionary(uniqueKeysWithValues: zip(keys, total.dropFirst())), Int(total[0]))
    }

    /// Keeps the best evaluation's state; on a divergence (policy.validationDivergence),
    /// puts it back and backs off the learning rate, and stops after repeated returns.
    func watchValidation(_ loss: Double?) throws {
        guard let factor = guardian.policy.validationDivergence, let loss else { return }
        if loss.isFinite, best.map({ loss < $0.loss }) ?? true {
            best = (loss, guardian.step, model.stateDict().mapValues { $0.copy() }, optimizer.stateDict(), optimizer.hyperparameters())
            return
        }
        guard let b = best, !loss.isFinite || loss > factor * b.loss else { return }
        _ = try model.load(stateDict: b.model)
        try optimizer.load(stateDict: b.optimizer)
        try optimizer.setHyperparameters(b.hyperparameters)
        guardian.forgetSnapshots()
        validationRestores += 1
        let stopping = validationRestores >= guardian.policy.maxValidationRestores
        let inc = guardian.validationDiverged(loss: loss, best: b.loss, bestStep: b.step, stopping: stopping)
        try log?.record(inc)
        callbacks.onIncident?(inc)
        if stopping { requestStop() }
    }

    // MARK: Checkpoints

    struct State: Codable {
        var step: Int
        var epoch: Int
        var batchInEpoch: Int
        var random: [UInt64]
        var scheduler: [String: Double]?
        /// The optimizer's hyper-parameters at full precision (its tensor file holds float32 copies).
        var hyperparameters: [[String: Double]]
        var guardState: GradientGuard.State
        var config: TrainerConfig
        /// Ranks of the job that wrote it (absent: one process). `batchInEpoch` counts batches
        /// of `config.batchSize` per rank, so a run resumed with another number of ranks
        /// starts at the same example of the epoch's global order.
        var worldSize: Int?
        /// Updates of the weight average (absent: no average, or written before it existed).
        var emaUpdates: Int?

        /// What is out of range, for a state no run writes (edited, or from another program).
        var problem: String? {
            if step < 0 { return "step \(step) is negative" }
            if epoch < 0 { return "epoch \(epoch) is negative" }
            if batchInEpoch < 0 { return "batchInEpoch \(batchInEpoch) is negative" }
            if config.batchSize < 1 { return "config.batchSize \(config.batchSize) is not positive" }
            if let w = worldSize, w < 1 { return "worldSize \(w) is not positive" }
            if let u = emaUpdates, u < 0 { return "emaUpdates \(u) is negative" }
            if batchInEpoch > Int(Int32.max) / Swift.max(1, config.batchSize * (worldSize ?? 1)) { return "batchInEpoch \(batchInEpoch) is out of range" }
            return nil
        }
    }

    /// Writes a checkpoint of everything needed to continue (into the run directory).
    @discardableResult
    public func checkpoint() throws -> String? {
        guard let store else { return nil }
        // Rank 0 writes; the others wait until the checkpoint is complete.
        defer { if communicator.isDistributed { try? communicator.barrier() } }
        guard isRecording else {
            lastCheckpointStep = guardian.step
            return nil
        }
        let state = State(
            step: guardian.step, epoch: epoch, batchInEpoch: batchInEpoch, random: DefaultGenerator.with { $0.state },
            scheduler: scheduler?.stateDict(), hyperparameters: optimizer.hyperparameters(),
            guardState: guardian.stateDict(), config: config, worldSize: communicator.size, emaUpdates: ema?.updates)
        let encoder = RunRecords.encoder([.prettyPrinted, .sortedKeys])
        let metric = lastEvaluation?["loss"]
        lastCheckpointStep = guardian.step
        return try store.save(
            step: guardian.step,
            tensors: ["model": model.stateDict(), "optimizer": optimizer.stateDict()].merging(ema.map { ["ema": $0.shadow] } ?? [:]) { a, _ in a }
                .merging(guardian.curvature?.warmStart.map { ["curvature": ["start": Tensor(shape: [$0.count], scalars: $0)]] } ?? [:]) { a, _ in a },
            state: try encoder.encode(state), metric: metric)
    }

    /// The checkpoint rank 0 loads, on every rank: rank 0 sends the files (the manifest first,
    /// then each file it lists, as length-prefixed records), the others write them to a
    /// temporary directory and load that. A rank 0 that finds no loadable checkpoint sends an
    /// empty message, and every rank throws.
    func receiveCheckpoint(from store: CheckpointStore, path: String?) throws -> LoadedCheckpoint {
        var mine: LoadedCheckpoint? = nil
        var failure: Error? = nil
        var message: [UInt8] = []
        if communicator.rank == 0 {
            do {
                if let path {
                    mine = try store.load(path)
                    skippedCheckpoints = []
                } else {
                    (mine, skippedCheckpoints) = try store.loadLatest()
                }
                let manifest = try FileContents.read(mine!.path + "/manifest.json")
                let files = try JSONDecoder().decode(CheckpointManifest.self, from: manifest).files.keys.sorted()
                var records: [(String, Data)] = [("manifest.json", manifest)]
                for f in files { records.append((f, try FileContents.read(mine!.path + "/" + f))) }
                message = Self.pack([("path", Data(mine!.path.utf8))] + records)
            } catch { failure = error }
        }
        let received = try communicator.broadcast(bytes: message)
        if let failure { throw failure }
        if let mine { return mine }
        guard let records = Self.unpack(received), let origin = records.first, origin.0 == "path" else {
            throw CheckpointError.noCheckpoint(directory: store.directory + " (rank 0 found no checkpoint that loads)")
        }
        let tmp = NSTemporaryDirectory() + "gradguard-rank\(communicator.rank)-\(getpid())-" + "checkpoint"
        try? FileManager.default.removeItem(atPath: tmp)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        do { try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true) } catch {
            throw FileError.cannotWrite(path: tmp, reason: AtomicFile.reason(error))
        }
        for (name, data) in records.dropFirst() {
            // The names come from rank 0's manifest: plain file names, nothing that leaves the folder.
            guard !name.contains("/"), !name.hasPrefix(".") else {
                throw CheckpointError.badManifest(checkpoint: String(decoding: origin.1, as: UTF8.self), reason: "file name '\(name)'")
            }
            try AtomicFile.write(data, to: tmp + "/" + name)
        }
        let copy = try store.load(tmp)
        return LoadedCheckpoint(path: String(decoding: origin.1, as: UTF8.self), step: copy.step, metric: copy.metric, tensors: copy.tensors, state: copy.state)
    }

    /// Named byte strings as one message: per record, the name's and the data's lengths (8
    /// bytes each, little-endian) and their bytes.
    static func pack(_ records: [(String, Data)]) -> [UInt8] {
        var out: [UInt8] = []
        func length(_ n: Int) { withUnsafeBytes(of: UInt64(n).littleEndian) { out += $0 } }
        for (name, data) in records {
            let n = Array(name.utf8)
            length(n.count)
            out += n
            length(data.count)
            out += data
        }
        return out
    }

    /// The records of `pack`, or nil for a message that is empty or does not parse.
    static func unpack(_ bytes: [UInt8]) -> [(String, Data)]? {
        var records: [(String, Data)] = []
        var i = 0
        func length() -> Int? {
            guard i + 8 <= bytes.count else { return nil }
            let v = bytes[i..<(i + 8)].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            i += 8
            return v <= UInt64(bytes.count - i) ? Int(v) : nil
        }
        while i < bytes.count {
            guard let n = length() else { return nil }
            let name = String(decoding: bytes[i..<(i + n)], as: UTF8.self)
            i += n
            guard let d = length() else { return nil }
            records.append((name, Data(bytes[i..<(i + d)])))
            i += d
        }
        return records.isEmpty ? nil : records
    }

    /// Restores the newest checkpoint that verifies (or the one at `path`); corrupt newer
    /// ones are passed over and listed in `skippedCheckpoints`.
    public func resume(from path: String? = nil) throws {
        guard let store else { throw CheckpointError.noCheckpoint(directory: "(no run directory)") }
        let loaded: LoadedCheckpoint
        if communicator.isDistributed {
            // Rank 0 picks and verifies the checkpoint and sends its files to every rank (the
            // ranks need not share a file system); each rank verifies its copy again.
            loaded = try receiveCheckpoint(from: store, path: path)
            ranksAligned = false
        } else if let path {
            loaded = try store.load(path)
            skippedCheckpoints = []
        } else {
            (loaded, skippedCheckpoints) = try store.loadLatest()
        }
        let state: State
        do { state = try RunRecords.decoder().decode(State.self, from: loaded.state) } catch {
            throw CheckpointError.badState(checkpoint: loaded.path, reason: RecordProblem.describe(error))
        }
        if let problem = state.problem { throw CheckpointError.badState(checkpoint: loaded.path, reason: problem) }
        _ = try model.load(stateDict: loaded.tensors["model"] ?? [:])
        try optimizer.load(stateDict: loaded.tensors["optimizer"] ?? [:])
        try optimizer.setHyperparameters(state.hyperparameters)
        if let s = state.scheduler { try scheduler?.load(stateDict: s) }
        try guardian.load(state: state.guardState)
        if let ema, let saved = loaded.tensors["ema"], let u = state.emaUpdates { try ema.load(shadow: saved, updates: u) }
        resumedCurvatureStart = loaded.tensors["curvature"]?["start"]?.scalars
        guardian.curvature?.warmStart = resumedCurvatureStart
        if let g = RandomGenerator(state: state.random) { DefaultGenerator.with { $0 = g } }
        generatorStarted = true
        epoch = state.epoch
        // Where the epoch's global order was: examples seen over all ranks, in batches of this
        // run's (when they do not divide, the examples of a partial batch are seen again).
        let seen = state.batchInEpoch * state.config.batchSize * (state.worldSize ?? 1)
        batchInEpoch = seen / (config.batchSize * communicator.size)
        lastCheckpointStep = state.step
    }
}
