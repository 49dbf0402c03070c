import GradGuardSettings

/// How long a run trains and how often it evaluates, checkpoints and records (`training.*`).
public struct TrainingSettings: SettingSection {
    /// Passes over the training set.
    public var epochs = 3
    /// Examples per micro-batch (per rank).
    public var batchSize = 64
    /// Micro-batches per optimizer step.
    public var accumulation = 1
    /// Stop after this many applied steps (0: run every epoch).
    public var maxSteps = 0
    /// Evaluate every this many steps (0: at the end of each epoch).
    public var evalEvery = 0
    /// Checkpoint every this many steps (0: at the end of each epoch).
    public var checkpointEvery = 0
    /// Checkpoints kept.
    public var keepCheckpoints = 3
    /// Per-module norms in the records every this many steps.
    public var moduleNormsEvery = 10

    /// The defaults.
    public init() {}

    /// The `training.*` settings.
    public static let settings: [Setting<TrainingSettings>] = [
        .int("training.epochs", \.epochs, in: 1...1_000_000, "epochs", resumable: true),
        .int("training.batch_size", \.batchSize, in: 1...1_000_000, "examples per micro-batch"),
        .int("training.accumulation", \.accumulation, in: 1...10_000, "micro-batches per optimizer step"),
        .int("training.max_steps", \.maxSteps, in: 0...Int(Int32.max), "stop after this many steps (0: no limit)", resumable: true),
        .int("training.eval_every", \.evalEvery, in: 0...Int(Int32.max), "evaluate every N steps (0: each epoch)", resumable: true),
        .int("training.checkpoint_every", \.checkpointEvery, in: 0...Int(Int32.max), "checkpoint every N steps (0: each epoch)", resumable: true),
        .int("training.keep_checkpoints", \.keepCheckpoints, in: 1...1000, "checkpoints kept besides the best", resumable: true),
        .int(
            "training.module_norms_every", \.moduleNormsEvery, in: 0...Int(Int32.max), "per-module norms in the records every N steps",
            resumable: true)
    ]
}
