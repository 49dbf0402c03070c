import GradGuardSettings

/// The guard a run asks for (`guard.*`): the clipper and its thresholds, the snapshots and
/// recoveries of the policy, the optional z-score detector, the replay records and data blame
/// of incidents, the validation watch.
public struct GuardSettings: SettingSection {
    /// The clipper.
    public var clipper = ClipperKind.globalNorm
    /// Every clipper's settings; `clipper` reads its own (`ClipperKind.settings`). The norm
    /// defaults to 5 (as char-rnn): above the typical norm of the built-in workloads, so
    /// clipping catches spikes and does not scale every step down.
    public var clipping = ClipperSettings()
    /// Applied steps between rollback snapshots (0: none).
    public var snapshotEvery = 50
    /// Recoveries in a row that fail before the run halts.
    public var maxFailedRecoveries = 5
    /// Skip a step whose loss or gradient norm is this many standard deviations above its
    /// rolling mean (0: off; OLMo-core uses 6), over `zScoreWindow` steps.
    public var zScoreSigma = 0.0
    /// The window of the z-score's rolling mean and σ.
    public var zScoreWindow = 128
    /// Replay records of incidents kept within this many MiB (0: none), and the batch's
    /// examples ranked for an incident when the batch has at most `dataBlame` of them (0: never).
    public var replayBudgetMB = 256.0
    /// The largest batch whose examples an incident ranks.
    public var dataBlame = 256
    /// The validation loss over its best that restores the best weights (0: off).
    public var validationDivergence = 1.5
    /// The curvature probe: steps between probes (0: off), Hessian-vector products per probe,
    /// examples in its fixed batch; the margin that raises `edgeOfStability`, and the margin a
    /// cap brings the rate to (0: report only, no cap).
    public var curvatureEvery = 0
    /// Hessian-vector products per probe.
    public var curvatureIterations = 20
    /// Examples in the probe's batch.
    public var curvatureBatch = 128
    /// The margin that raises `edgeOfStability`.
    public var curvatureWarning = 1.0
    /// How many times the run's median margin a reading must also be.
    public var curvatureRise = 2.0
    /// The margin a cap brings the rate to (0: report only).
    public var curvatureCap = 0.0

    /// The defaults.
    public init() {}

    /// The `guard.*` settings, every clipper's included.
    public static let settings: [Setting<GuardSettings>] =
        [.choice("guard.clipper", \.clipper, "gradient clipper")]
        + ClipperSetting.allCases.map(clipperSetting)
        + [
            .int("guard.snapshot_every", \.snapshotEvery, in: 0...Int(Int32.max), "in-memory rollback snapshot every N steps", resumable: true),
            .int("guard.max_failed_recoveries", \.maxFailedRecoveries, in: 1...1000, "halt after this many failed recoveries", resumable: true),
            .double(
                "guard.zscore_sigma", \.zScoreSigma, in: 0...1e6,
                "skip a step whose loss or gradient norm is this many σ above its rolling mean (0: off; 6 in OLMo-core)", resumable: true),
            .double(
                "guard.replay_budget_mb", \.replayBudgetMB, in: 0...1e6,
                "replay records of incidents (gradguard replay) kept within this many MiB, oldest removed (0: none)", resumable: true),
            .int(
                "guard.data_blame", \.dataBlame, in: 0...1_000_000,
                "rank an incident's examples by their gradient when its batch has at most this many (0: never)", resumable: true),
            .int("guard.zscore_window", \.zScoreWindow, in: 2...1_000_000, "steps of the rolling mean and σ of guard.zscore_sigma", resumable: true),
            .double(
                "guard.validation_divergence", \.validationDivergence, in: 0...1e6,
                "a validation loss above this multiple of the best puts back the best weights and lowers the rate; the third time stops the run (0: off)",
                resumable: true),
            .int(
                "guard.curvature.every", \.curvatureEvery, in: 0...Int(Int32.max),
                "probe λ_max of the loss Hessian against the optimizer's stability limit every N steps (0: off)", resumable: true),
            .int(
                "guard.curvature.iterations", \.curvatureIterations, in: 1...1000,
                "Hessian-vector products per curvature probe at most (each two forward and backward passes of its batch)", resumable: true),
            .int("guard.curvature.batch", \.curvatureBatch, in: 1...1_000_000, "examples in the curvature probe's fixed batch", resumable: true),
            .double(
                "guard.curvature.warning", \.curvatureWarning, in: 0...1e6,
                "report edgeOfStability when the margin η·λ_max/c is at this (1: the optimizer's stability limit) on two probes in a row, or twice this on one…",
                resumable: true),
            .double(
                "guard.curvature.rise", \.curvatureRise, in: 1...1e6,
                "…and this multiple of the run's median margin so far (healthy runs hover at the limit)", resumable: true),
            .double(
                "guard.curvature.cap", \.curvatureCap, in: 0...1e6,
                "on edgeOfStability, cap the learning rate so that η·λ_max is this fraction of the threshold (0: report only; 0.5 rescued most rate failures on GuardBench)",
                resumable: true)
        ]

    /// One clipper's threshold under `guard.`: it applies when the chosen clipper reads it.
    private static func clipperSetting(_ s: ClipperSetting) -> Setting<GuardSettings> {
        let inapplicable = { (g: GuardSettings) -> String? in
            guard !g.clipper.settings.contains(s) else { return nil }
            let takes = g.clipper.settings.map { "guard." + $0.rawValue }
            let users = ClipperKind.allCases.filter { $0.settings.contains(s) }.map(\.rawValue).joined(separator: ", ")
            return "does not apply to guard.clipper \(g.clipper.rawValue) (it is for \(users)); "
                + (takes.isEmpty ? "\(g.clipper.rawValue) takes no threshold" : "\(g.clipper.rawValue) reads \(takes.joined(separator: ", "))")
        }
        let root: WritableKeyPath<GuardSettings, ClipperSettings> = \.clipping
        switch s.value {
        case let .double(range, path):
            return .double("guard." + s.rawValue, root.appending(path: path), in: range, s.help, resumable: true, inapplicable: inapplicable)
        case let .int(range, path):
            return .int("guard." + s.rawValue, root.appending(path: path), in: range, s.help, resumable: true, inapplicable: inapplicable)
        }
    }

    /// The keys of the clipper settings (`guard.…`) that the chosen clipper reads.
    public var clipperKeys: Set<String> { Set(clipper.settings.map { "guard." + $0.rawValue }) }

    /// The policy these settings ask for (with a new clipper).
    public func makePolicy() -> GuardPolicy {
        var p = GuardPolicy(clipper: clipper.make(clipping), snapshotEvery: snapshotEvery, maxFailedRecoveries: maxFailedRecoveries)
        p.validationDivergence = validationDivergence > 0 ? validationDivergence : nil
        p.curvatureWarning = curvatureWarning
        p.curvatureRise = curvatureRise
        if curvatureCap > 0 {
            p.capMargin = curvatureCap
            p.actions[.edgeOfStability] = [.cap]
        }
        return p
    }

    /// A fresh set of detectors, with the rolling z-score when asked for.
    public func monitor() -> HealthMonitor {
        let monitor = HealthMonitor()
        if zScoreSigma > 0 { monitor.detectors.append(RollingZScoreDetector(sigma: zScoreSigma, window: zScoreWindow)) }
        return monitor
    }
}
