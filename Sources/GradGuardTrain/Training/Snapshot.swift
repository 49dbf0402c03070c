import GradGuardHealth
import GradGuardNN
import GradGuardOptim
import GradGuardTensor

/// Everything needed to put a run back exactly where it was: parameters and buffers,
/// optimizer state, schedule step, clipper state, the default random generator and the step.
public struct TrainingSnapshot {
    /// The step it was taken at.
    public let step: Int
    let tensors: [(Tensor, [Float])]
    let optimizer: [String: Tensor]
    /// The hyper-parameters at full precision (the state dict holds float32 copies).
    let hyperparameters: [[String: Double]]
    let scheduler: [String: Double]?
    let clipper: ClipperState?
    let random: [UInt64]
    /// The detectors' baselines when the snapshot was taken: after a rollback the weights are
    /// those of that step, and so must be what "normal" means (a median learned later, at
    /// other weights, would call the restored step's ordinary gradients a spike).
    let monitor: [String: [Double]]

    /// Copies the state of `tensors` (parameters and buffers) and of the rest.
    init(
        step: Int, tensors: [Tensor], optimizer: any Optimizer, scheduler: LRScheduler?, clipper: (any GradientClipper)?,
        monitor: [String: [Double]]
    ) {
        self.monitor = monitor
        self.step = step
        self.tensors = tensors.map { ($0, $0.scalars) }  // copy-on-write: copied as training writes
        self.optimizer = optimizer.stateDict()
        hyperparameters = optimizer.hyperparameters()
        self.scheduler = scheduler?.stateDict()
        self.clipper = clipper?.stateDict()
        random = DefaultGenerator.with { $0.state }
    }

    /// Writes the saved state back.
    func restore(optimizer: any Optimizer, scheduler: LRScheduler?, clipper: (any GradientClipper)?) throws {
        try optimizer.load(stateDict: self.optimizer)
        try optimizer.setHyperparameters(hyperparameters)
        if let s = self.scheduler { try scheduler?.load(stateDict: s) }
        if let c = self.clipper { try clipper?.load(stateDict: c) }
        for (t, values) in tensors {
            t.withUnsafeMutableScalars { dst in values.withUnsafeBufferPointer { dst.baseAddress!.update(from: $0.baseAddress!, count: values.count) } }
        }
        if let g = RandomGenerator(state: random) { DefaultGenerator.with { $0 = g } }
    }
}
