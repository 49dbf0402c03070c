import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

/// Settings that can be given as flags as well as in the YAML file.
struct SettingFlags: ParsableArguments {
    @Option(name: .long, help: "Run name (runs/<name>/).") var name: String?
    @Option(name: .long, parsing: .unconditional, help: "Seed.") var seed: Int?
    @Option(name: .long, parsing: .unconditional, help: "Epochs.") var epochs: Int?
    @Option(name: .customLong("max-steps"), parsing: .unconditional, help: "Stop after this many steps.") var maxSteps: Int?
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Examples per micro-batch.") var batchSize: Int?
    @Option(name: .long, parsing: .unconditional, help: "Learning rate.") var lr: Double?
    @Option(name: .long, help: ArgumentHelp("Optimizer.", discussion: OptimizerKind.helpLines)) var optimizer: OptimizerKind?
    @Option(name: .long, help: ArgumentHelp("Gradient clipper.", discussion: ClipperKind.helpLines)) var clipper: ClipperKind?
    @Option(name: .customLong("max-norm"), parsing: .unconditional, help: "The norm threshold of global-norm and per-module clipping (guard.max_norm).")
    var maxNorm: Double?
    @Option(name: .customLong("set"), parsing: .singleValue, help: "Any setting as key=value (repeatable).") var set: [String] = []

    /// Writes the flags' settings into `c`, each through its key path, checked as `--set`
    /// would check it.
    func apply(to c: inout RunConfig) throws {
        let source = "flags"
        if let name { try c.set(\.name, to: name, source: source) }
        if let seed { try c.set(\.seed, to: seed, source: source) }
        if let epochs { try c.set(\.training.epochs, to: epochs, source: source) }
        if let maxSteps { try c.set(\.training.maxSteps, to: maxSteps, source: source) }
        if let batchSize { try c.set(\.training.batchSize, to: batchSize, source: source) }
        if let lr { try c.set(\.optimizer.lr, to: lr, source: source) }
        if let optimizer { try c.set(\.optimizer.kind, to: optimizer, source: source) }
        if let clipper { try c.set(\.guard.clipper, to: clipper, source: source) }
        if let maxNorm { try c.set(\.guard.clipping.maxNorm, to: maxNorm, source: source) }
    }
}

struct OutputFlags: ParsableArguments {
    @Flag(name: .long, help: "Print nothing but errors.") var quiet = false
    @Flag(name: .long, help: "Print one JSON object per step.") var json = false
}

extension SettingFlags {
    /// The run's configuration: the YAML file (or the defaults), these flags and `--set`
    /// overrides, the model's defaults, checked; a bad setting exits with its sentence.
    func runConfig(file: String?) throws -> RunConfig {
        var c = RunConfig()
        do {
            if let file { c = try RunConfig.load(path: file) }
            try apply(to: &c)
            try c.apply(overrides: set)
            try c.resolveModelDefaults()
            try c.validate(source: file ?? "settings")
        } catch let e as ConfigError {
            throw fail(e.description, code: e.unreadable ? Exit.missing : Exit.usage)
        }
        return c
    }
}
