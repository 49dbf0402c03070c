import Foundation
import GradGuardDistributed
import GradGuardHealth
import GradGuardNN
import GradGuardOptim
import GradGuardTensor

/// A run's records in its directory: `metrics.jsonl`, `incidents.jsonl`, the TensorBoard
/// event file, `run.json`, `environment.txt` and, at the end, `report.html` — everything
/// `gradguard train` writes, so every `gradguard` command that reads records accepts the run.
/// `Trainer` keeps one; a hand-written loop around a `GradientGuard` keeps its own:
///
/// ```swift
/// let guardian = GradientGuard(model: model, optimizer: optimizer)
/// let log = try RunLog(directory: "runs/mine", model: model, guard: guardian)
/// for (step, batch) in batches.enumerated() {
///     optimizer.zeroGrad()
///     let loss = crossEntropy(model(batch.inputs), batch.targets)
///     loss.backward()
///     let outcome = try guardian.execute(loss: loss.item)
///     try log.record(step: step, loss: loss.item, outcome: outcome)
///     if let halt = outcome.diverged { try log.finish(); throw halt }
/// }
/// try log.finish()   // report.html
/// ```
public final class RunLog {
    /// The run directory.
    public let directory: String
    /// `metrics.jsonl` and `incidents.jsonl`.
    public let recorder: RunRecorder
    /// The TensorBoard event file.
    public let events: EventWriter
    /// The guard whose steps are recorded (its clipper, statistics and curvature probe).
    public let guardian: GradientGuard?
    /// Per-module norms and update ratios in `metrics.jsonl`, and gradient histograms in the
    /// event file, every this many steps (0: never).
    public var moduleNormsEvery = 10
    /// How the report groups the model's modules into parts (nil: as they are).
    public var moduleParts: (any ModuleParts)?
    /// When the log was opened, for the curvature probe's share of the time.
    let started = Date()
    private let lock: RunLock?

    /// Claims `directory` for a new run (or an existing one, as `ifExists` says), locks it
    /// against other processes, and writes `run.json` (describing `model`, the guard's
    /// optimizer and clipper) and `environment.txt`.
    public convenience init(
        directory: String, ifExists: ExistingRun = .refuse, model: Module, guard guardian: GradientGuard? = nil,
        moduleParts: (any ModuleParts)? = nil
    ) throws {
        let lock = try RunDirectoryError.claim(directory, ifExists: ifExists)
        let description = RunDescription(
            writer: "RunLog", model: model, optimizer: guardian?.optimizer, scheduler: guardian?.scheduler, clipper: guardian?.policy.clipper)
        try self.init(directory: directory, lock: lock, description: description, guard: guardian)
        self.moduleParts = moduleParts
    }

    /// Opens the records of a directory already claimed (the trainer holds its lock).
    init(directory: String, lock: RunLock?, description: RunDescription, guard guardian: GradientGuard?, communicator: (any Communicator)? = nil)
        throws
    {
        self.directory = directory
        self.lock = lock
        self.guardian = guardian
        recorder = try RunRecorder(directory: directory)
        events = try EventWriter(directory: directory)
        try description.write(in: directory)
        if !FileManager.default.fileExists(atPath: directory + "/environment.txt") {
            try RunReport.writeEnvironment(runDirectory: directory, communicator: communicator)
        }
    }

    /// Records a step the guard executed: its line in `metrics.jsonl`, its incident (if any)
    /// in `incidents.jsonl`, and its scalars in the event file. Returns the step's record.
    @discardableResult
    public func record(step: Int, epoch: Int = 0, loss: Float, outcome: StepOutcome, batch: Int? = nil) throws -> StepRecord {
        if let incident = outcome.incident { try recorder.record(incident) }
        var r = StepRecord(
            step: step, epoch: epoch, loss: loss, outcome: outcome, guard: guardian, moduleNormsEvery: moduleNormsEvery, started: started)
        r.batch = batch
        try record(r)
        return r
    }

    /// Writes a step record and its scalars (the incident, if any, is the caller's).
    func record(_ r: StepRecord) throws {
        try recorder.record(r)
        try writeEvents(r)
    }

    /// Records an evaluation's metrics (`kind: "eval"` in `metrics.jsonl`, `eval/*` scalars).
    public func record(evaluation metrics: [String: Double], step: Int, epoch: Int = 0) throws {
        try recorder.record(EvaluationRecord(step: step, epoch: epoch, metrics: metrics))
        for (k, v) in metrics.sorted(by: { $0.key < $1.key }) { try events.scalar("eval/\(k)", Float(v), step: step) }
        events.flush()
    }

    /// Records an incident raised outside a step (a validation divergence).
    public func record(_ incident: Incident) throws { try recorder.record(incident) }

    /// Writes `report.html` from the records so far and returns its path (at the end of a run,
    /// and when it halts).
    @discardableResult
    public func finish() throws -> String {
        events.flush()
        return try RunReport.write(runDirectory: directory, moduleParts: moduleParts)
    }

    func writeEvents(_ r: StepRecord) throws {
        try events.scalar("train/loss", r.loss, step: r.step)
        try events.scalar("train/lr", Float(r.lr * r.lrScale), step: r.step)
        try events.scalar("health/grad_norm", r.gradNorm, step: r.step)
        if let after = r.gradNormAfterClip { try events.scalar("health/grad_norm_clipped", after, step: r.step) }
        if let lambda = r.lambdaMax, let limit = r.stabilityLimit, let m = r.stabilityMargin {
            try events.scalar("curvature/lambda_max", Float(lambda), step: r.step)
            try events.scalar("curvature/stability_limit", Float(limit), step: r.step)
            try events.scalar("curvature/stability_margin", Float(m), step: r.step)
        }
        try events.scalar("health/skipped", r.skipped ? 1 : 0, step: r.step)
        if let m = r.maxAttentionLogit { try events.scalar("attention/max_logit", m, step: r.step) }
        for (layer, v) in (r.attentionLogits ?? [:]).sorted(by: { $0.key < $1.key }) { try events.scalar("attention_logit/\(layer)", v, step: r.step) }
        for (m, n) in (r.moduleNorms ?? [:]).sorted(by: { $0.key < $1.key }) { try events.scalar("module_grad_norm/\(m)", n, step: r.step) }
        for (m, u) in (r.updateRatios ?? [:]).sorted(by: { $0.key < $1.key }) { try events.scalar("update_ratio/\(m)", u, step: r.step) }
        if r.moduleNorms != nil, let guardian {
            for p in guardian.health.parameters {
                if let g = p.tensor.grad { try events.histogram("grad/\(p.name)", values: g.scalars, step: r.step) }
            }
        }
    }
}

extension StepRecord {
    /// The record of a step from what `guardian` measured and did (`outcome`): per-module
    /// norms and update ratios when `step` is a multiple of `moduleNormsEvery`, the curvature
    /// reading at probe steps (its share of the time since `started`).
    public init(
        step: Int, epoch: Int, loss: Float, outcome o: StepOutcome, guard guardian: GradientGuard?, moduleNormsEvery: Int = 10,
        started: Date? = nil
    ) {
        let detailed = moduleNormsEvery > 0 && step % moduleNormsEvery == 0
        var norms: [String: Float]? = nil, ratios: [String: Float]? = nil
        if detailed {
            norms = Dictionary(o.stats.modules.map { ($0.name.isEmpty ? "(root)" : $0.name, $0.gradNorm) }, uniquingKeysWith: { a, _ in a })
            let r = o.stats.modules.compactMap { m in m.updateRatio.map { (m.name.isEmpty ? "(root)" : m.name, $0) } }
            ratios = r.isEmpty ? nil : Dictionary(r, uniquingKeysWith: { a, _ in a })
        }
        self.init(
            step: step, epoch: epoch, loss: loss, lr: guardian?.optimizer.paramGroups.first?.lr ?? 0,
            gradNorm: o.stats.globalNorm, gradNormAfterClip: o.clip?.normAfter, clipped: o.clip?.clipped ?? false,
            skipped: o.decision != .applied, lrScale: o.lrScale * o.lrCap,
            clipper: guardian?.policy.clipper?.name, clipThreshold: o.clip?.threshold,
            moduleNorms: norms, updateRatios: ratios, ranks: o.stats.ranks)
        if o.lrCap < 1 { lrCap = o.lrCap }
        if let logits = o.stats.attentionLogits, !logits.isEmpty {
            maxAttentionLogit = logits.map(\.maxLogit).max()
            if detailed { attentionLogits = Dictionary(logits.map { ($0.module.isEmpty ? "(root)" : $0.module, $0.maxLogit) }, uniquingKeysWith: max) }
        }
        if let c = o.stats.curvature {
            (lambdaMax, stabilityLimit, stabilityMargin, curvatureSeconds) = (c.lambdaMax, c.limit, c.margin, c.seconds)
            let elapsed = started.map { Date().timeIntervalSince($0) } ?? 0
            if let probe = guardian?.curvature, elapsed > 0 { curvatureShare = Swift.min(1, probe.seconds / elapsed) }
        }
    }
}
