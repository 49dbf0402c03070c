import GradGuardData
import GradGuardNN
import GradGuardOptim
import GradGuardTensor

/// A model, its data and how to score it: everything a trainer needs besides the optimizer
/// and the guard. The model is typed, so losses and metrics call it without casts.
///
/// ```swift
/// let lm = try CharLanguageModelling(text: try CharCorpus.readText(path: "book.txt"))
/// let trainer = try Trainer(lm, optimizer: Adam(lm.model.parameters(), lr: 0.002))
/// try trainer.fit(lm)
/// ```
public protocol Workload {
    associatedtype Model: Module
    var model: Model { get }
    var train: any Dataset { get }
    var validation: (any Dataset)? { get }
    /// The training loss of one batch.
    func loss(_ model: Model, _ batch: Batch) -> Tensor
    /// Metrics of one validation batch; the trainer averages them over the batches.
    func metrics(_ model: Model, _ batch: Batch) -> [String: Double]
    /// Whether `datasetMetrics` replaces the per-batch average (mAP needs every prediction).
    var evaluatesWholeDataset: Bool { get }
    /// Metrics over a whole dataset at once, when `evaluatesWholeDataset`.
    func datasetMetrics(_ model: Model, _ data: any Dataset) throws -> [String: Double]
    /// The optimizer's parameter groups (one group of every parameter unless the workload
    /// treats some differently), and for a warm-up the starting rate of some groups.
    func parameterGroups(weightDecay: Double) -> [ParamGroup]
    var warmupStartLR: [Int: Double] { get }
    /// How the report groups the model's modules into parts (nil: shown as they are).
    var moduleParts: (any ModuleParts)? { get }
}

extension Workload {
    /// The batch's loss, as the only metric.
    public func metrics(_ model: Model, _ batch: Batch) -> [String: Double] { ["loss": Double(loss(model, batch).item)] }
    /// False: metrics average over batches.
    public var evaluatesWholeDataset: Bool { false }
    /// None.
    public func datasetMetrics(_ model: Model, _ data: any Dataset) throws -> [String: Double] { [:] }
    /// One group of every parameter.
    public func parameterGroups(weightDecay: Double) -> [ParamGroup] { [ParamGroup(params: model.parameters())] }
    /// None: every group starts its warm-up at 0.
    public var warmupStartLR: [Int: Double] { [:] }
    /// None: modules shown as they are.
    public var moduleParts: (any ModuleParts)? { nil }
}
