import Foundation
import GradGuard
import Yams

/// A run's settings: what `gradguard train --config FILE.yaml` reads, `--set key=value`
/// and the flags override, and `runs/<name>/config.yaml` records (resolved).
public struct RunConfig: Equatable, Sendable {
    public var name = "run"
    public var runsDirectory = "runs"
    public var seed = 0

    // model
    public var model = ModelKind.mlp
    public var layers = 0
    public var width = 0
    public var activation = ActivationKind.relu
    public var initialisation = InitKind.kaiming
    public var batchNorm = false

    public var cell = SequenceModel.Cell.lstm
    public var embedding = 64
    public var attention = true

    // data
    public var data = DataKind.teacher
    public var dataPath = ""
    public var sequenceLength = 64
    public var trainSize = 4096
    public var validationSize = 512
    public var inputs = 32
    public var classes = 10
    public var labelNoise = 0.0
    public var successLoss = 0.0
    public var imageSize = 128
    public var boxLoss = BoxLoss.giou
    public var augment = true
    public var maxImagePixels = RGBImage.defaultMaxPixels
    public var onError = DataIssuePolicy.skip

    // training
    public var epochs = 3
    public var batchSize = 64
    public var accumulation = 1
    public var maxSteps = 0
    public var evalEvery = 0
    public var checkpointEvery = 0
    public var keepCheckpoints = 3
    public var moduleNormsEvery = 10

    // data-parallel training (under mpirun)
    /// Seconds a collective waits for the other ranks before the job is ended (the watchdog).
    public var distributedTimeout = 300.0
    /// Check that every rank holds the same parameters every this many steps (0: never).
    public var parameterCheckEvery = 100
    /// Largest gradient bucket averaged in one collective, in MiB.
    public var bucketMB = 25.0
    /// Batch normalisation over every rank's batch (PyTorch's SyncBatchNorm) instead of each
    /// rank's own.
    public var syncBatchNorm = false
    /// Processes training together (set from the launcher, not a setting: `training.batch_size`
    /// is per process, so a step takes `batchSize × worldSize` examples).
    public var worldSize = 1

    // optimizer and schedule
    public var optimizer = OptimizerKind.sgd
    public var lr = 0.05
    public var momentum = 0.9
    public var weightDecay = 0.0
    /// Adam and AdamW: StableAdamW's per-tensor update clipping at this RMS (0: off).
    public var updateClip = 0.0
    /// SPAM's spike threshold, momentum-reset interval and warm-up after each reset.
    public var spamThreshold = 5000.0
    public var spamResetEvery = 500
    public var spamWarmup = 150
    /// Skip a step whose loss or gradient norm is this many standard deviations above its
    /// rolling mean (0: off; OLMo-core uses 6), over `zScoreWindow` steps.
    public var zScoreSigma = 0.0
    public var zScoreWindow = 128
    /// The detector's box-loss gain.
    public var boxGain = YOLOLoss.defaultBoxGain
    /// The detector's size (`model.width` overrides its channels).
    public var size = DetectorSize.n
    /// The detector's head, output scales and blocks.
    public var head = DetectorHead.coupled
    public var scales = 2
    public var block = DetectorBlock.conv
    /// Detector training images as mosaics of four, but for the last `closeMosaic` epochs.
    public var mosaic = false
    public var closeMosaic = 10
    /// An exponential moving average of the weights for evaluation and checkpoints (Ultralytics'
    /// ModelEMA), its decay and ramp.
    public var ema = false
    public var emaDecay = 0.9999
    public var emaTau = 2000.0
    /// Replay records of incidents kept within this many MiB (0: none), and the batch's
    /// examples ranked for an incident when the batch has at most `dataBlame` of them (0: never).
    public var replayBudgetMB = 256.0
    public var dataBlame = 256
    /// The char LM and the translation model: weight of PaLM's z-loss, 1e-4·log²Z (0: off).
    public var zLoss = 0.0
    public var schedule = ScheduleKind.constant
    public var warmupSteps = 0

    // guard
    public var clipper = ClipperKind.globalNorm
    /// Every clipper's settings; `clipper` reads its own (`ClipperKind.settings`). The norm
    /// defaults to 5 (as char-rnn): above the typical norm of the built-in workloads, so
    /// clipping catches spikes and does not scale every step down.
    public var clipping = ClipperSettings()
    public var snapshotEvery = 50
    public var maxFailedRecoveries = 5
    public var validationDivergence = 1.5

    /// The keys set from a file, `--set` or a flag (the rest are defaults). Not part of the
    /// configuration's value: two configurations are equal when every setting is.
    public var given: Set<String> = []

    public static func == (a: RunConfig, b: RunConfig) -> Bool { a.values == b.values }

    /// The optimizer's hyper-parameters.
    public var optimizerSettings: OptimizerSettings {
        var s = OptimizerSettings(lr: lr, momentum: momentum, weightDecay: weightDecay, updateClip: updateClip)
        (s.spamThreshold, s.spamResetEvery, s.spamWarmup) = (spamThreshold, spamResetEvery, spamWarmup)
        return s
    }

    public init() {}
}

/// A setting's place in the YAML file, its type and its allowed values.
struct Setting: @unchecked Sendable {  // key paths into a value type and pure closures over them: immutable
    enum Kind {
        case int(ClosedRange<Int>, WritableKeyPath<RunConfig, Int>)
        case double(ClosedRange<Double>, WritableKeyPath<RunConfig, Double>)
        case string(WritableKeyPath<RunConfig, String>)
        case bool(WritableKeyPath<RunConfig, Bool>)
        /// One of a `SettingChoice`'s values, read and written by name.
        case choice(names: [String], get: (RunConfig) -> String, set: (inout RunConfig, String) -> Bool)
    }
    let key: String
    let kind: Kind
    let help: String

    init(key: String, kind: Kind, help: String) {
        (self.key, self.kind, self.help) = (key, kind, help)
    }

    /// A setting whose values are `E`'s; the help lists them.
    init<E: SettingChoice>(key: String, choice path: WritableKeyPath<RunConfig, E>, help: String) {
        self.key = key
        self.help = "\(help): \(E.names)"
        kind = .choice(
            names: E.allCases.map(\.rawValue), get: { $0[keyPath: path].rawValue },
            set: { c, text in
                guard let v = E(rawValue: text) else { return false }
                c[keyPath: path] = v
                return true
            })
    }

    /// One of the clipper settings, under `guard.`.
    init(clipper s: ClipperSetting) {
        key = "guard." + s.rawValue
        help = s.help
        let root: WritableKeyPath<RunConfig, ClipperSettings> = \.clipping
        switch s.value {
        case let .double(range, path): kind = .double(range, root.appending(path: path))
        case let .int(range, path): kind = .int(range, root.appending(path: path))
        }
    }
}

/// A configuration error, naming the file, the line and the key.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let source: String
    public let line: Int?
    public let key: String?
    public let message: String
    /// The file itself could not be read (missing, a directory, unreadable): exit code 3,
    /// where a file that reads but says something wrong is a usage error (2).
    public var unreadable = false

    public init(source: String, line: Int?, key: String?, message: String, unreadable: Bool = false) {
        (self.source, self.line, self.key, self.message, self.unreadable) = (source, line, key, message, unreadable)
    }

    public var description: String {
        var place = source
        if let line { place += ":\(line)" }
        return key.map { "\(place): \($0): \(message)" } ?? "\(place): \(message)"
    }
}

extension RunConfig {
    static let settings: [Setting] =
        [
            Setting(key: "name", kind: .string(\.name), help: "run name: runs/<name>/"),
            Setting(key: "runs_directory", kind: .string(\.runsDirectory), help: "where run directories go"),
            Setting(key: "seed", kind: .int(0...Int(Int32.max), \.seed), help: "seed of data, initialisation and dropout"),
            Setting(key: "model.kind", choice: \.model, help: "the model (and the data it takes)"),
            Setting(
                key: "model.layers", kind: .int(0...1000, \.layers),
                help: "hidden layers (mlp) or stacked recurrent layers, at most 4 (0: 8 for mlp, 1 otherwise)"),
            Setting(
                key: "model.width", kind: .int(0...100_000, \.width),
                help: "hidden width, recurrent hidden size, or a detector's first-layer channels (0: the detector's model.size, 64 otherwise)"),
            Setting(key: "model.size", choice: \.size, help: "detector size (its first-layer channels, unless model.width is set)"),
            Setting(key: "model.ema", kind: .bool(\.ema), help: "evaluate and deliver a moving average of the weights (Ultralytics' ModelEMA)"),
            Setting(key: "model.ema_decay", kind: .double(0.5...0.999999999, \.emaDecay), help: "model.ema: the average's decay once ramped up"),
            Setting(
                key: "model.ema_tau", kind: .double(1...1e9, \.emaTau),
                help: "model.ema: updates over which the decay ramps up, d = decay·(1 − e^(−updates/tau))"),
            Setting(
                key: "model.z_loss", kind: .double(0...1, \.zLoss),
                help: "charlm, seq2seq: weight of the z-loss on the output logits, weight·log²Z (PaLM: 1e-4; 0: off)"),
            Setting(key: "model.cell", choice: \.cell, help: "recurrent cell (charlm, sequence)"),
            Setting(key: "model.embedding", kind: .int(1...100_000, \.embedding), help: "embedding size (charlm, seq2seq)"),
            Setting(key: "model.attention", kind: .bool(\.attention), help: "dot-product attention over the source (seq2seq)"),
            Setting(key: "model.box_loss", choice: \.boxLoss, help: "detector box loss, 1 − GIoU or 1 − CIoU"),
            Setting(
                key: "model.box_gain", kind: .double(0...1e6, \.boxGain),
                help: "detector: weight of the box loss (YOLOv5's 0.05 with the coupled head, YOLOv8's 7.5 with the decoupled one)"),
            Setting(key: "model.head", choice: \.head, help: "detector head and its loss"),
            Setting(key: "model.scales", kind: .int(2...3, \.scales), help: "detector output scales: 2 (strides 8, 16) or 3 (8, 16, 32)"),
            Setting(key: "model.block", choice: \.block, help: "detector blocks after each downsampling and in the neck"),
            Setting(key: "model.activation", choice: \.activation, help: "hidden activation"),
            Setting(key: "model.init", choice: \.initialisation, help: "weight initialisation (default: PyTorch's)"),
            Setting(
                key: "model.sync_batch_norm", kind: .bool(\.syncBatchNorm),
                help: "under mpirun: batch statistics over every rank's batch (SyncBatchNorm), not each rank's own"),
            Setting(key: "model.batch_norm", kind: .bool(\.batchNorm), help: "BatchNorm1d after every hidden layer"),
            Setting(key: "data.kind", choice: \.data, help: "the data"),
            Setting(
                key: "data.path", kind: .string(\.dataPath),
                help:
                    "UTF-8 text (text), tab-separated pairs (pairs) or data.yaml (yolo); empty: the built-in corpus, number words → digits, or generated shapes"
            ),
            Setting(
                key: "data.sequence_length", kind: .int(2...100_000, \.sequenceLength),
                help: "characters per training window (text); T of a long-dependency task"),
            Setting(key: "data.train", kind: .int(1...10_000_000, \.trainSize), help: "training examples"),
            Setting(key: "data.validation", kind: .int(0...10_000_000, \.validationSize), help: "validation examples"),
            Setting(key: "data.inputs", kind: .int(1...100_000, \.inputs), help: "input dimensions"),
            Setting(key: "data.classes", kind: .int(2...100_000, \.classes), help: "classes"),
            Setting(key: "data.label_noise", kind: .double(0...1, \.labelNoise), help: "fraction of training labels replaced at random"),
            Setting(key: "data.image_size", kind: .int(32...4096, \.imageSize), help: "detector input side in pixels (a multiple of 16)"),
            Setting(key: "data.augment", kind: .bool(\.augment), help: "detector training augmentations (scale/translate, flip, HSV)"),
            Setting(
                key: "data.max_image_pixels", kind: .int(1...Int(Int32.max), \.maxImagePixels),
                help: "images declaring more pixels (width × height) are refused before decoding, as a decompression bomb"),
            Setting(key: "data.mosaic", kind: .bool(\.mosaic), help: "detector: train on mosaics of four images (Ultralytics' mosaic), with data.augment"),
            Setting(
                key: "data.close_mosaic", kind: .int(0...1_000_000, \.closeMosaic),
                help: "detector: the last epochs train on single images again (Ultralytics' close_mosaic)"),
            Setting(key: "data.on_error", choice: \.onError, help: "bad label lines, orphan labels, unreadable images"),
            Setting(
                key: "data.success_loss", kind: .double(0...1e6, \.successLoss),
                help: "long-dependency task solved below this validation loss (0: a tenth of the memoryless baseline)"),
            Setting(key: "training.epochs", kind: .int(1...1_000_000, \.epochs), help: "epochs"),
            Setting(key: "training.batch_size", kind: .int(1...1_000_000, \.batchSize), help: "examples per micro-batch"),
            Setting(key: "training.accumulation", kind: .int(1...10_000, \.accumulation), help: "micro-batches per optimizer step"),
            Setting(key: "training.max_steps", kind: .int(0...Int(Int32.max), \.maxSteps), help: "stop after this many steps (0: no limit)"),
            Setting(key: "training.eval_every", kind: .int(0...Int(Int32.max), \.evalEvery), help: "evaluate every N steps (0: each epoch)"),
            Setting(key: "training.checkpoint_every", kind: .int(0...Int(Int32.max), \.checkpointEvery), help: "checkpoint every N steps (0: each epoch)"),
            Setting(key: "training.keep_checkpoints", kind: .int(1...1000, \.keepCheckpoints), help: "checkpoints kept besides the best"),
            Setting(
                key: "training.module_norms_every", kind: .int(0...Int(Int32.max), \.moduleNormsEvery), help: "per-module norms in the records every N steps"),
            Setting(
                key: "distributed.timeout", kind: .double(1...86_400, \.distributedTimeout),
                help: "under mpirun: seconds a collective waits for every rank before the job ends (a rank died or stalled)"),
            Setting(
                key: "distributed.check_every", kind: .int(0...Int(Int32.max), \.parameterCheckEvery),
                help: "under mpirun: check that every rank holds the same parameters every N steps (0: never)"),
            Setting(
                key: "distributed.bucket_mb", kind: .double(0.001...4096, \.bucketMB),
                help: "under mpirun: largest gradient bucket averaged in one collective (MiB)"),
            Setting(key: "optimizer.kind", choice: \.optimizer, help: "optimizer"),
            Setting(key: "optimizer.lr", kind: .double(1e-12...100, \.lr), help: "learning rate"),
            Setting(key: "optimizer.momentum", kind: .double(0...0.9999, \.momentum), help: "momentum (SGD, RMSprop)"),
            Setting(key: "optimizer.weight_decay", kind: .double(0...1, \.weightDecay), help: "weight decay"),
            Setting(
                key: "optimizer.update_clip", kind: .double(0...1e6, \.updateClip),
                help: "adam, adamw: StableAdamW's update clipping, each tensor's step scaled down when the RMS of g²/v exceeds this (0: off; 1 in the paper)"),
            Setting(
                key: "optimizer.spam_threshold", kind: .double(0...1e12, \.spamThreshold),
                help: "spam: clip entries with g² above this multiple of v (0: no spike clipping)"),
            Setting(key: "optimizer.spam_reset_every", kind: .int(1...Int(Int32.max), \.spamResetEvery), help: "spam: steps between momentum resets"),
            Setting(key: "optimizer.spam_warmup", kind: .int(0...Int(Int32.max), \.spamWarmup), help: "spam: cosine warm-up steps after each momentum reset"),
            Setting(key: "schedule.kind", choice: \.schedule, help: "learning-rate schedule"),
            Setting(
                key: "schedule.warmup_steps", kind: .int(0...Int(Int32.max), \.warmupSteps),
                help: "linear warm-up steps (warmup: 0 means YOLOv5's max(3 epochs, 100 steps), at most half the run; warmup-cosine)"),
            Setting(key: "guard.clipper", choice: \.clipper, help: "gradient clipper")
        ] + ClipperSetting.allCases.map(Setting.init(clipper:)) + [
            Setting(key: "guard.snapshot_every", kind: .int(0...Int(Int32.max), \.snapshotEvery), help: "in-memory rollback snapshot every N steps"),
            Setting(key: "guard.max_failed_recoveries", kind: .int(1...1000, \.maxFailedRecoveries), help: "halt after this many failed recoveries"),
            Setting(
                key: "guard.zscore_sigma", kind: .double(0...1e6, \.zScoreSigma),
                help: "skip a step whose loss or gradient norm is this many σ above its rolling mean (0: off; 6 in OLMo-core)"),
            Setting(
                key: "guard.replay_budget_mb", kind: .double(0...1e6, \.replayBudgetMB),
                help: "replay records of incidents (gradguard replay) kept within this many MiB, oldest removed (0: none)"),
            Setting(
                key: "guard.data_blame", kind: .int(0...1_000_000, \.dataBlame),
                help: "rank an incident's examples by their gradient when its batch has at most this many (0: never)"),
            Setting(
                key: "guard.zscore_window", kind: .int(2...1_000_000, \.zScoreWindow),
                help: "steps of the rolling mean and σ of guard.zscore_sigma"),
            Setting(
                key: "guard.validation_divergence", kind: .double(0...1e6, \.validationDivergence),
                help: "a validation loss above this multiple of the best puts back the best weights and lowers the rate; the third time stops the run (0: off)")
        ]

    static func setting(_ key: String) -> Setting? { settings.first { $0.key == key } }

    /// The known key (or, with `sections`, section) closest to `key` by edit distance, if
    /// it is close enough to be a typo.
    static func suggestion(for key: String, sections: Bool = false) -> String? {
        func distance(_ a: String, _ b: String) -> Int {
            let a = Array(a), b = Array(b)
            var row = Array(0...b.count)
            for i in 1...Swift.max(a.count, 1) where !a.isEmpty {
                var prev = row[0]
                row[0] = i
                for j in stride(from: 1, through: b.count, by: 1) {
                    let cur = row[j]
                    row[j] = Swift.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1))
                    prev = cur
                }
            }
            return row[b.count]
        }
        let candidates =
            sections
            ? Array(Set(settings.compactMap { $0.key.contains(".") ? String($0.key.split(separator: ".")[0]) : nil })).sorted()
            : settings.map(\.key)
        let best = candidates.map { ($0, distance(key, $0)) }.min { $0.1 < $1.1 }
        guard let (k, d) = best, d <= Swift.max(2, key.count / 3) else { return nil }
        return k
    }

    /// Sets `key` from its text, checking type and range.
    mutating func set(_ key: String, text: String, source: String, line: Int?) throws {
        guard let s = Self.setting(key) else {
            let hint = Self.suggestion(for: key).map { " (did you mean '\($0)'?)" } ?? ""
            throw ConfigError(source: source, line: line, key: key, message: "unknown key\(hint)")
        }
        func fail(_ expected: String) -> ConfigError {
            ConfigError(source: source, line: line, key: key, message: "expected \(expected), got '\(text)'")
        }
        switch s.kind {
        case let .int(range, path):
            guard let v = Int(text) else { throw fail("an integer") }
            guard range.contains(v) else { throw fail("an integer in \(range.lowerBound)...\(range.upperBound)") }
            self[keyPath: path] = v
        case let .double(range, path):
            guard let v = Double(text), v.isFinite else { throw fail("a number") }
            guard range.contains(v) else { throw fail("a number in \(range.lowerBound)...\(range.upperBound)") }
            self[keyPath: path] = v
        case let .string(path):
            guard !text.isEmpty || key == "data.path" else { throw fail("a non-empty text") }
            if key == "name", let why = Self.runNameProblem(text) {
                throw ConfigError(source: source, line: line, key: key, message: why)
            }
            if text.unicodeScalars.contains(where: { $0.value == 0 }) { throw fail("a text without NUL characters") }
            if text.unicodeScalars.first == "\u{FEFF}" { throw fail("a text that does not start with a byte-order mark (U+FEFF)") }
            self[keyPath: path] = text
        case let .choice(names, _, set):
            guard set(&self, text) else { throw fail("one of \(names.joined(separator: ", "))") }
        case let .bool(path):
            switch text.lowercased() {
            case "true", "yes", "on": self[keyPath: path] = true
            case "false", "no", "off": self[keyPath: path] = false
            default: throw fail("true or false")
            }
        }
        given.insert(key)
    }

    /// Why `name` cannot name a run directory inside the runs directory, or nil when it can:
    /// one path component, not `.` or `..`, no control characters, at most 200 bytes.
    static func runNameProblem(_ name: String) -> String? {
        if name == "." || name == ".." { return "'\(name)' is not a run name: a run lives inside the runs directory" }
        if name.contains("/") { return "a run name is one folder name without '/', got '\(name)'" }
        if name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            return "a run name has no control characters, got \(name.debugDescription)"
        }
        if name.utf8.count > 200 { return "a run name has at most 200 bytes, got \(name.utf8.count)" }
        if name.hasPrefix(".") { return "a run name does not start with '.', got '\(name)' (hidden folders hold the runs directory's own data)" }
        return nil
    }

    /// Settings that `resume --set` may change: the length of the run, how often it
    /// evaluates and checkpoints, and the guard's thresholds. Everything else shapes the
    /// model, the data or the optimizer state the checkpoint holds.
    static let resumable = Set(
        [
            "training.epochs", "training.max_steps", "training.eval_every", "training.checkpoint_every",
            "training.keep_checkpoints", "training.module_norms_every",
            "guard.snapshot_every", "guard.max_failed_recoveries", "guard.validation_divergence", "data.on_error",
            "guard.zscore_sigma", "guard.zscore_window", "guard.replay_budget_mb", "guard.data_blame",
            "distributed.timeout", "distributed.check_every", "distributed.bucket_mb", "model.sync_batch_norm"
        ]
            + ClipperSetting.allCases.map { "guard." + $0.rawValue })

    /// The first setting that differs from `saved` and may not change on resume.
    public func unresumableChange(from saved: RunConfig) -> ConfigError? {
        let old = saved.values, new = values
        for s in Self.settings where !Self.resumable.contains(s.key) && old[s.key] != new[s.key] {
            return ConfigError(
                source: "--set", line: nil, key: s.key,
                message: "cannot change when resuming (the run was trained with \(old[s.key] ?? "?"), the checkpoint holds its state); "
                    + "resume can change \(Self.resumable.sorted().joined(separator: ", ")) — start a new run for anything else")
        }
        return nil
    }

    /// Every setting's value as written in config.yaml.
    var values: [String: String] {
        var out: [String: String] = [:]
        for s in Self.settings {
            switch s.kind {
            case let .int(_, p): out[s.key] = String(self[keyPath: p])
            case let .double(_, p): out[s.key] = "\(self[keyPath: p])"
            case let .string(p): out[s.key] = Self.quoted(self[keyPath: p])
            case let .bool(p): out[s.key] = self[keyPath: p] ? "true" : "false"
            case let .choice(_, get, _): out[s.key] = get(self)
            }
        }
        return out
    }

    /// Reads a YAML file over the defaults.
    public static func load(path: String) throws -> RunConfig {
        let data: Data
        do { data = try FileContents.read(path, limit: 1 << 20) } catch let e as FileReadFailure {
            throw ConfigError(source: path, line: nil, key: nil, message: e.kind == .missing ? "no such file" : e.reason, unreadable: e.kind != .tooLarge)
        }
        // Never decoded lossily: a stray byte would become a replacement character in a name.
        let text: String
        switch FileContents.utf8Text(data) {
        case .success(let t): text = t
        case .failure(let bad):
            throw ConfigError(source: path, line: bad.line, key: nil, message: "not UTF-8 text (byte \(bad.offset) is not valid UTF-8)")
        }
        var c = RunConfig()
        try c.apply(yaml: text, source: path)
        return c
    }

    /// The detector's recommended settings, each where the run did not give one: YOLOv8's
    /// decoupled head and C2f blocks, with three scales from 256-pixel inputs (two below: at
    /// 128 pixels a stride-32 grid is 4×4 and, on the shapes data, its box branch never gets
    /// an object — BENCHMARKS.md), and Ultralytics' training defaults — SGD lr 0.01, momentum
    /// 0.937 (warmed up from 0.8), weight decay 5e-4, warm-up over max(3 epochs, 100 steps)
    /// towards a rate falling linearly to 1 %, batch 16, weight EMA, mosaics but for the last
    /// 10 epochs, CIoU box loss with the head's gains, data in a `data.yaml`. Two measured
    /// departures: the gradient norm is clipped at 100, not Ultralytics' 10 (with the loss
    /// summed × batch, 10 clips every step; 100 clips the first steps' norms of thousands and
    /// later spikes); and no validation-divergence watch (under mosaics and a ramping weight
    /// average a detector's validation loss swings threefold in the first epochs while its
    /// mAP rises; the watch halved the rate twice on the shapes data and cost 0.044
    /// mAP@0.5:0.95). Other models keep the global defaults.
    public static let detectorDefaults: [(key: String, value: String)] = [
        ("data.kind", "yolo"), ("model.head", "decoupled"), ("model.block", "c2f"),
        ("model.box_loss", "ciou"), ("model.ema", "true"), ("data.mosaic", "true"), ("optimizer.kind", "sgd"),
        ("optimizer.lr", "0.01"), ("optimizer.momentum", "0.937"), ("optimizer.weight_decay", "0.0005"),
        ("schedule.kind", "warmup-linear"), ("guard.clipper", "global-norm"), ("guard.max_norm", "100"), ("training.batch_size", "16"),
        ("guard.validation_divergence", "0")
    ]

    /// Fills in the model's own defaults (so far the detector's, `detectorDefaults`) for the
    /// settings not given, the detector's scales for its input size, and the box gain of the
    /// chosen head. Call after every file, flag and `--set` is applied, before `validate`.
    public mutating func resolveModelDefaults() throws {
        guard model == .detector else { return }
        for (key, value) in Self.detectorDefaults where !given.contains(key) {
            if key == "guard.max_norm" && !clipperKeys.contains(key) { continue }
            try set(key, text: value, source: "detector defaults", line: nil)
            given.remove(key)
        }
        if !given.contains("model.scales") { scales = imageSize >= 256 ? 3 : 2 }
        if !given.contains("model.box_gain") { boxGain = YOLOLoss.defaultBoxGain(for: head) }
    }

    /// The width with 0 resolved to the model's default.
    public var widthValue: Int { width > 0 ? width : model == .detector ? size.width : model.defaultWidth }

    /// Hidden layers of the MLP, or stacked recurrent layers, with 0 resolved to the model's default.
    public var layerCount: Int { layers > 0 ? layers : model.defaultLayers }

    /// The keys of clipper settings (`guard.…`) that the chosen clipper reads.
    var clipperKeys: Set<String> { Set(clipper.settings.map { "guard." + $0.rawValue }) }

    /// Checks settings that depend on each other.
    public func validate(source: String) throws {
        if !model.dataKinds.contains(data) {
            throw ConfigError(
                source: source, line: nil, key: "model.kind",
                message: "'\(model.rawValue)' needs data.kind \(model.dataKinds.map(\.rawValue).joined(separator: ", ")), got '\(data.rawValue)'")
        }
        // A clipper setting given for another clipper is a mistake (it would be ignored).
        for s in ClipperSetting.allCases where given.contains("guard." + s.rawValue) && !clipper.settings.contains(s) {
            let takes = clipper.settings.map { "guard." + $0.rawValue }
            let users = ClipperKind.allCases.filter { $0.settings.contains(s) }.map(\.rawValue).joined(separator: ", ")
            throw ConfigError(
                source: source, line: nil, key: "guard." + s.rawValue,
                message: "does not apply to guard.clipper \(clipper.rawValue) (it is for \(users)); "
                    + (takes.isEmpty ? "\(clipper.rawValue) takes no threshold" : "\(clipper.rawValue) reads \(takes.joined(separator: ", "))"))
        }
        if updateClip > 0 && optimizer != .adam && optimizer != .adamw {
            throw ConfigError(
                source: source, line: nil, key: "optimizer.update_clip",
                message: "StableAdamW's update clipping is for optimizer.kind adam or adamw, got '\(optimizer.rawValue)'")
        }
        for key in ["optimizer.spam_threshold", "optimizer.spam_reset_every", "optimizer.spam_warmup"] where given.contains(key) && optimizer != .spam {
            throw ConfigError(source: source, line: nil, key: key, message: "is for optimizer.kind spam, got '\(optimizer.rawValue)'")
        }
        if zLoss > 0 && model != .charlm && model != .seq2seq {
            throw ConfigError(
                source: source, line: nil, key: "model.z_loss", message: "the z-loss is for model.kind charlm or seq2seq, got '\(model.rawValue)'")
        }
        if model != .mlp && layers > 4 {
            throw ConfigError(source: source, line: nil, key: "model.layers", message: "at most 4 recurrent layers, got \(layers)")
        }
        let coarsest = scales == 3 ? 32 : 16
        if model == .detector && imageSize % coarsest != 0 {
            throw ConfigError(
                source: source, line: nil, key: "data.image_size",
                message: "expected a multiple of \(coarsest) (the detector's coarsest stride with model.scales \(scales)), got \(imageSize)")
        }
        if let task = data.task, sequenceLength < (task == .copyMemory ? 11 : 4) {
            throw ConfigError(
                source: source, line: nil, key: "data.sequence_length",
                message: "\(data.rawValue) needs a sequence length of at least \(task == .copyMemory ? 11 : 4), got \(sequenceLength)")
        }
    }

    /// The first line of every config.yaml gradguard writes.
    static let resolvedHeader = "# resolved by gradguard; every setting, defaults included"

    /// Applies the settings of a YAML document.
    public mutating func apply(yaml: String, source: String) throws {
        let root: Node?
        do { root = try SafeYAML.compose(yaml) } catch let e as YamlError {
            throw ConfigError(source: source, line: Self.line(of: e), key: nil, message: "not valid YAML: \(e)")
        } catch let r as SafeYAML.Refusal { throw ConfigError(source: source, line: r.line, key: nil, message: r.message) }
        guard let root else { return }  // an empty file: all defaults
        guard case .mapping(let top) = root else {
            throw ConfigError(source: source, line: root.mark.map { $0.line }, key: nil, message: "expected a mapping of settings at the top")
        }
        try walk(top, prefix: "", source: source)
        // A config.yaml resolved before each clipper had its own keys holds guard.max_norm
        // whatever the clipper: it was the value clipper's value and AGC's ratio, and the
        // others ignored it. Read it as it was meant.
        if yaml.hasPrefix(Self.resolvedHeader), given.contains("guard.max_norm"), !clipperKeys.contains("guard.max_norm") {
            if clipper == .value && !given.contains("guard.clip_value") { clipping.clipValue = clipping.maxNorm }
            if clipper == .agc && !given.contains("guard.agc_ratio") { clipping.agcRatio = clipping.maxNorm }
            clipping.maxNorm = ClipperSettings().maxNorm
            given.remove("guard.max_norm")
        }
    }

    static func line(of e: YamlError) -> Int? {
        switch e {
        case let .scanner(_, _, mark, _), let .parser(_, _, mark, _), let .composer(_, _, mark, _): return mark.line
        default: return nil
        }
    }

    private mutating func walk(_ mapping: Node.Mapping, prefix: String, source: String) throws {
        for (k, v) in mapping {
            guard let name = k.string else {
                throw ConfigError(source: source, line: k.mark?.line, key: prefix.isEmpty ? nil : prefix, message: "keys must be text")
            }
            let key = prefix.isEmpty ? name : "\(prefix).\(name)"
            switch v {
            case .mapping(let inner):
                guard Self.settings.contains(where: { $0.key.hasPrefix(key + ".") }) else {
                    let hint = Self.suggestion(for: key, sections: true).map { " (did you mean '\($0)'?)" } ?? ""
                    throw ConfigError(source: source, line: k.mark?.line, key: key, message: "unknown section\(hint)")
                }
                try walk(inner, prefix: key, source: source)
            case .scalar(let s):
                if Self.settings.contains(where: { $0.key.hasPrefix(key + ".") }) {
                    throw ConfigError(source: source, line: k.mark?.line, key: key, message: "expected a section of settings, got '\(s.string)'")
                }
                try set(key, text: s.string, source: source, line: v.mark?.line ?? k.mark?.line)
            default:
                throw ConfigError(source: source, line: k.mark?.line, key: key, message: "expected a single value, got a list")
            }
        }
    }

    /// Applies `key=value` overrides (from `--set`, or from the flags with `source` naming them).
    public mutating func apply(overrides: [String], source: String = "--set") throws {
        for o in overrides {
            guard let eq = o.firstIndex(of: "=") else {
                throw ConfigError(source: source, line: nil, key: nil, message: "expected key=value, got '\(o)'")
            }
            try set(
                String(o[..<eq]).trimmingCharacters(in: .whitespaces), text: String(o[o.index(after: eq)...]).trimmingCharacters(in: .whitespaces),
                source: source, line: nil)
        }
    }

    /// The resolved settings as YAML, grouped by section, each with its help as a comment;
    /// of the clipper settings, those of the chosen clipper (and any given).
    public var yaml: String {
        var out = Self.resolvedHeader + "\n"
        var open: [String] = []
        let values = self.values, clipperKeys = self.clipperKeys
        for s in Self.settings {
            // Another clipper's setting only when given (which `validate` refuses).
            if s.key.hasPrefix("guard."), ClipperSetting(rawValue: String(s.key.dropFirst(6))) != nil, !clipperKeys.contains(s.key),
                !given.contains(s.key)
            {
                continue
            }
            // SPAM's settings only with SPAM (or when given, which `validate` refuses).
            if s.key.hasPrefix("optimizer.spam_"), optimizer != .spam, !given.contains(s.key) { continue }
            let parts = s.key.split(separator: ".").map(String.init)
            let sections = Array(parts.dropLast())
            var depth = 0
            while depth < open.count && depth < sections.count && open[depth] == sections[depth] { depth += 1 }
            open = Array(open.prefix(depth))
            for d in depth..<sections.count {
                out += String(repeating: "  ", count: d) + sections[d] + ":\n"
                open.append(sections[d])
            }
            out += String(repeating: "  ", count: sections.count) + "\(parts.last!): \(values[s.key] ?? "")   # \(s.help)\n"
        }
        return out
    }

    /// `s` as a YAML scalar that reads back as exactly `s`: plain when it is made of ASCII
    /// letters, digits and `_./-` (not starting with `-`), otherwise double-quoted with
    /// `\\`, `\"` and every character YAML does not allow raw (controls, line and paragraph
    /// separators, non-characters) escaped.
    static func quoted(_ s: String) -> String {
        let plain = s.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_./-".unicodeScalars.contains($0)) }
        if plain && !s.isEmpty && !s.hasPrefix("-") { return s }
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\t": out += "\\t"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            default:
                let v = u.value
                let printable =
                    (v >= 0x20 && v < 0x7F) || v == 0x85 || (v >= 0xA0 && v <= 0xD7FF && v != 0x2028 && v != 0x2029)
                    || (v >= 0xE000 && v <= 0xFFFD && v != 0xFEFF) || v >= 0x10000
                out += printable && v != 0x85 ? String(u) : (v <= 0xFF ? String(format: "\\x%02X", v) : String(format: "\\u%04X", v))
            }
        }
        return out + "\""
    }
}
