import GradGuardData
import GradGuardHealth
import GradGuardModels
import GradGuardOptim
import GradGuardTrain

extension Trainer {
    /// A trainer of `workload`'s model with its loss and metrics (mAP over the whole
    /// validation set for the detector).
    public convenience init<W: Workload>(
        _ workload: W, optimizer: any Optimizer, scheduler: LRScheduler? = nil,
        policy: GuardPolicy = GuardPolicy(), monitor: HealthMonitor = HealthMonitor(),
        config: TrainerConfig = TrainerConfig(), runDirectory: String? = nil, ifExists: ExistingRun = .refuse, runLock: RunLock? = nil,
        communicator: (any Communicator)? = nil, bucketBytes: Int = 25 << 20
    ) throws {
        let model = workload.model
        try self.init(
            model: model, optimizer: optimizer, scheduler: scheduler, policy: policy, monitor: monitor, config: config,
            runDirectory: runDirectory, ifExists: ifExists, runLock: runLock, communicator: communicator, bucketBytes: bucketBytes,
            moduleParts: workload.moduleParts, evaluate: { _, batch in workload.metrics(model, batch) },
            evaluateDataset: workload.evaluatesWholeDataset ? { _, data in try workload.datasetMetrics(model, data) } : nil,
            loss: { _, batch in workload.loss(model, batch) })
    }

    /// Trains on the workload's training set, evaluating on its validation set.
    @discardableResult
    public func fit<W: Workload>(_ workload: W) throws -> TrainingResult {
        try fit(train: workload.train, validation: workload.validation)
    }
}
