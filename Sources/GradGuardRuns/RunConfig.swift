import Foundation
import GradGuard
import Yams

/// A run's settings: what `gradguard train --config FILE.yaml` reads, `--set key=value`
/// and the flags override, and `runs/<name>/config.yaml` records (resolved). A composition of
/// sections, each declared beside the code it configures: `ModelSettings` and `DataSettings`
/// (here, beside `RunSetup`), `DetectorSettings` (GradGuardModels), `TrainingSettings` and
/// `DistributedSettings` (GradGuardTrain), `OptimizerSettings` and `ScheduleSettings`
/// (GradGuardOptim), `GuardSettings` (GradGuardHealth). Adding a setting is one declaration in
/// its section's `settings` plus its use.
public struct RunConfig: Equatable, Sendable {
    /// The run's name: its folder inside `runsDirectory`.
    public var name = "run"
    /// The folder of runs (and of generated data).
    public var runsDirectory = "runs"
    /// The seed of the weights, the data order and dropout.
    public var seed = 0
    /// `model.*`.
    public var model = ModelSettings()
    /// `data.*`.
    public var data = DataSettings()
    /// The detector's own settings (`data.image_size`, `model.size`, …).
    public var detector = DetectorSettings()
    /// `training.*`.
    public var training = TrainingSettings()
    /// `distributed.*`.
    public var distributed = DistributedSettings()
    /// `optimizer.*`.
    public var optimizer = OptimizerSettings()
    /// `schedule.*`.
    public var schedule = ScheduleSettings()
    /// `guard.*`.
    public var `guard` = GuardSettings()
    /// Processes training together (set from the launcher, not a setting: `training.batch_size`
    /// is per process, so a step takes `batchSize × worldSize` examples).
    public var worldSize = 1

    /// The keys set from a file, `--set` or a flag (the rest are defaults). Not part of the
    /// configuration's value: two configurations are equal when every setting is.
    public var given: Set<String> = []

    /// Whether every setting has the same value.
    public static func == (a: RunConfig, b: RunConfig) -> Bool { a.values == b.values }

    /// The defaults.
    public init() {}

    /// Every setting, in config.yaml's order.
    public static let table = SettingTable<RunConfig>(
        [
            .string("name", \.name, "run name: runs/<name>/", problem: runNameProblem),
            .string("runs_directory", \.runsDirectory, "where run directories go"),
            .int("seed", \.seed, in: 0...Int(Int32.max), "seed of data, initialisation and dropout")
        ]
            + ModelSettings.settings.map { $0.within(\.model) } + DataSettings.settings.map { $0.within(\.data) }
            + DetectorSettings.settings.map { $0.within(\.detector) } + TrainingSettings.settings.map { $0.within(\.training) }
            + DistributedSettings.settings.map { $0.within(\.distributed) } + OptimizerSettings.settings.map { $0.within(\.optimizer) }
            + ScheduleSettings.settings.map { $0.within(\.schedule) } + GuardSettings.settings.map { $0.within(\.guard) })

    static var settings: [Setting<RunConfig>] { table.settings }

    /// Sets `key` from its text, checking type and range.
    mutating func set(_ key: String, text: String, source: String, line: Int?) throws {
        try Self.table.set(key, text: text, in: &self, source: source, line: line)
        given.insert(key)
    }

    /// Sets the setting at `path` to a typed value (a command-line flag), checked as its text
    /// would be.
    public mutating func set<V>(_ path: WritableKeyPath<RunConfig, V>, to value: V, source: String) throws {
        given.insert(try Self.table.set(path, to: value, in: &self, source: source))
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

    /// The first setting that differs from `saved` and may not change on resume.
    public func unresumableChange(from saved: RunConfig) -> ConfigError? { Self.table.unresumableChange(from: saved, to: self) }

    /// Every setting's value as written in config.yaml.
    var values: [String: String] { Self.table.values(of: self) }

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

    /// Fills in the model's own defaults (so far the detector's, `DetectorSettings.runDefaults`)
    /// for the settings not given, the detector's scales for its input size, and the box gain
    /// of the chosen head. Call after every file, flag and `--set` is applied, before `validate`.
    public mutating func resolveModelDefaults() throws {
        guard model.kind == .detector else { return }
        for (key, value) in DetectorSettings.runDefaults where !given.contains(key) {
            if key == "guard.max_norm" && !self.guard.clipperKeys.contains(key) { continue }
            try set(key, text: value, source: "detector defaults", line: nil)
            given.remove(key)
        }
        if !given.contains("model.scales") { detector.scales = detector.imageSize >= 256 ? 3 : 2 }
        if !given.contains("model.box_gain") { detector.boxGain = YOLOLoss.defaultBoxGain(for: detector.head) }
    }

    /// The width with 0 resolved to the model's default.
    public var widthValue: Int { model.width > 0 ? model.width : model.kind == .detector ? detector.size.width : model.kind.defaultWidth }

    /// Hidden layers of the MLP, or stacked recurrent layers, with 0 resolved to the model's default.
    public var layerCount: Int { model.layerCount }

    /// Checks settings that depend on each other: a setting given that does not apply (another
    /// clipper's threshold), each section's own checks, then those across sections.
    public func validate(source: String) throws {
        if !model.kind.dataKinds.contains(data.kind) {
            throw ConfigError(
                source: source, line: nil, key: "model.kind",
                message: "'\(model.kind.rawValue)' needs data.kind \(model.kind.dataKinds.map(\.rawValue).joined(separator: ", ")), got '\(data.kind.rawValue)'"
            )
        }
        if let e = Self.table.inapplicable(in: self, given: given, source: source) { throw e }
        let problems =
            [model.problem(), data.problem(), detector.problem(), training.problem(), distributed.problem(), optimizer.problem()]
            + [schedule.problem(), self.guard.problem()]
        if let (key, message) = problems.compactMap({ $0 }).first { throw ConfigError(source: source, line: nil, key: key, message: message) }
        if model.kind == .detector && detector.imageSize % detector.coarsestStride != 0 {
            throw ConfigError(
                source: source, line: nil, key: "data.image_size",
                message:
                    "expected a multiple of \(detector.coarsestStride) (the detector's coarsest stride with model.scales \(detector.scales)), got \(detector.imageSize)"
            )
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
        if yaml.hasPrefix(Self.resolvedHeader), given.contains("guard.max_norm"), !self.guard.clipperKeys.contains("guard.max_norm") {
            let c = self.guard.clipper
            if c == .value && !given.contains("guard.clip_value") { self.guard.clipping.clipValue = self.guard.clipping.maxNorm }
            if c == .agc && !given.contains("guard.agc_ratio") { self.guard.clipping.agcRatio = self.guard.clipping.maxNorm }
            self.guard.clipping.maxNorm = ClipperSettings().maxNorm
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
                guard Self.table.isSection(key) else {
                    let hint = Self.table.suggestion(for: key, sections: true).map { " (did you mean '\($0)'?)" } ?? ""
                    throw ConfigError(source: source, line: k.mark?.line, key: key, message: "unknown section\(hint)")
                }
                try walk(inner, prefix: key, source: source)
            case .scalar(let s):
                if Self.table.isSection(key) {
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
    /// a setting that does not apply (another clipper's threshold, SPAM's settings for another
    /// optimizer) only when given.
    public var yaml: String { Self.table.yaml(of: self, header: Self.resolvedHeader, given: given) }
}
