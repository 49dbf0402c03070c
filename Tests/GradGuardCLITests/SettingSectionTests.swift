import GradGuard
import GradGuardRuns
import XCTest

/// Settings declared in sections beside their code, composed into a run's configuration, and
/// read, written and checked by one table.
final class SettingSectionTests: XCTestCase {
    /// Every key is declared once, every setting is found again by the key path it is stored
    /// at (what the flags write through), and every section's keys sit under its own name.
    func testTheTableIsTheSectionsComposed() {
        let settings = RunConfig.table.settings
        XCTAssertEqual(Set(settings.map(\.key)).count, settings.count, "a key declared twice")
        for s in settings { XCTAssertEqual(RunConfig.table.setting(at: s.path)?.key, s.key, s.key) }
        XCTAssertTrue(OptimizerSettings.settings.allSatisfy { $0.key.hasPrefix("optimizer.") })
        XCTAssertTrue(ScheduleSettings.settings.allSatisfy { $0.key.hasPrefix("schedule.") })
        XCTAssertTrue(GuardSettings.settings.allSatisfy { $0.key.hasPrefix("guard.") })
        XCTAssertTrue(TrainingSettings.settings.allSatisfy { $0.key.hasPrefix("training.") })
        XCTAssertTrue(DistributedSettings.settings.allSatisfy { $0.key.hasPrefix("distributed.") })
        XCTAssertTrue(ModelSettings.settings.allSatisfy { $0.key.hasPrefix("model.") })
        XCTAssertTrue(DataSettings.settings.allSatisfy { $0.key.hasPrefix("data.") })
        XCTAssertTrue(DetectorSettings.settings.allSatisfy { $0.key.hasPrefix("model.") || $0.key.hasPrefix("data.") })
        // A section's defaults are the configuration's.
        XCTAssertEqual(RunConfig().optimizer, OptimizerSettings())
        XCTAssertEqual(RunConfig().guard.clipping.maxNorm, 5)
        // What resume may change: the length of the run, its records and checkpoints, the
        // guard's thresholds, the data-parallel watchdog — declared on each setting.
        XCTAssertEqual(
            Set(settings.filter(\.resumable).map(\.key)),
            Set(
                [
                    "training.epochs", "training.max_steps", "training.eval_every", "training.checkpoint_every",
                    "training.keep_checkpoints", "training.module_norms_every",
                    "guard.snapshot_every", "guard.max_failed_recoveries", "guard.validation_divergence", "data.on_error",
                    "guard.zscore_sigma", "guard.zscore_window", "guard.replay_budget_mb", "guard.data_blame",
                    "distributed.timeout", "distributed.check_every", "distributed.bucket_mb", "model.sync_batch_norm",
                    "guard.curvature.every", "guard.curvature.iterations", "guard.curvature.batch", "guard.curvature.warning",
                    "guard.curvature.rise", "guard.curvature.cap"
                ] + ClipperSetting.allCases.map { "guard." + $0.rawValue }))
    }

    /// A flag writes its typed value through the key path, checked as its text would be, and
    /// counts as given.
    func testTypedWritesAreCheckedLikeText() throws {
        var c = RunConfig()
        try c.set(\.optimizer.lr, to: 0.003, source: "flags")
        try c.set(\.guard.clipping.maxNorm, to: 2, source: "flags")
        try c.set(\.optimizer.kind, to: .adamw, source: "flags")
        XCTAssertEqual([c.optimizer.lr, c.guard.clipping.maxNorm], [0.003, 2])
        XCTAssertEqual(c.optimizer.kind, .adamw)
        XCTAssertEqual(c.given, ["optimizer.lr", "guard.max_norm", "optimizer.kind"])
        XCTAssertThrowsError(try c.set(\.optimizer.lr, to: -1, source: "flags")) {
            XCTAssertEqual("\($0)", "flags: optimizer.lr: expected a number in 1e-12...100.0, got '-1.0'")
        }
        XCTAssertThrowsError(try c.set(\.training.batchSize, to: 0, source: "flags")) {
            XCTAssertEqual("\($0)", "flags: training.batch_size: expected an integer in 1...1000000, got '0'")
        }
        XCTAssertThrowsError(try c.set(\.name, to: "a/b", source: "flags")) {
            XCTAssertEqual("\($0)", "flags: name: a run name is one folder name without '/', got 'a/b'")
        }
        // The same through text.
        var t = RunConfig()
        XCTAssertThrowsError(try t.apply(overrides: ["optimizer.lr=-1"])) {
            XCTAssertEqual("\($0)", "--set: optimizer.lr: expected a number in 1e-12...100.0 or 'auto', got '-1'")
        }
        // optimizer.lr also takes 'auto' (the range test's rate), written back as 'auto'.
        try t.apply(overrides: ["optimizer.lr=auto"])
        XCTAssertTrue(t.optimizer.lrIsAuto)
        XCTAssertTrue(t.yaml.contains("lr: auto"))
    }

    /// A setting that does not apply is left out of config.yaml and refused when given, with
    /// the section's reason; each section's own checks run in `validate`.
    func testInapplicableSettingsAndSectionChecks() throws {
        var adam = RunConfig()
        try adam.apply(overrides: ["optimizer.kind=adam", "optimizer.spam_warmup=10"])
        XCTAssertThrowsError(try adam.validate(source: "f.yaml")) {
            XCTAssertEqual("\($0)", "f.yaml: optimizer.spam_warmup: is for optimizer.kind spam, got 'adam'")
        }
        XCTAssertFalse(RunConfig().yaml.contains("spam_"))
        var spam = RunConfig()
        try spam.apply(overrides: ["optimizer.kind=spam"])
        XCTAssertTrue(spam.yaml.contains("  spam_warmup: 150"), spam.yaml)
        var clip = RunConfig()
        try clip.apply(overrides: ["optimizer.kind=sgd", "optimizer.update_clip=1"])
        XCTAssertThrowsError(try clip.validate(source: "f.yaml")) {
            XCTAssertEqual("\($0)", "f.yaml: optimizer.update_clip: StableAdamW's update clipping is for optimizer.kind adam or adamw, got 'sgd'")
        }
        // Each top-level section is written once, the detector's keys within model and data.
        let yaml = RunConfig().yaml
        for section in ["model:", "data:", "training:", "distributed:", "optimizer:", "schedule:", "guard:"] {
            XCTAssertEqual(yaml.components(separatedBy: "\n" + section + "\n").count, 2, section)
        }
        XCTAssertTrue(yaml.contains("  image_size: 128"), yaml)
    }
}

/// `gradguard settings`: the declarations, listed.
final class SettingsCommandTests: CLITestCase {
    func testListsTheDeclaredSettings() throws {
        let r = try run(["settings", "guard.zclip"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertEqual(r.out.components(separatedBy: "\n").filter { $0.hasPrefix("guard.zclip.") }.count, 3, r.out)
        XCTAssertTrue(r.out.contains("guard.zclip.z_threshold = 2.5   (number 1e-06...1000000.0; resume may change it)"), r.out)
        let all = try run(["settings"])
        XCTAssertEqual(all.out.components(separatedBy: "\n").filter { !$0.hasPrefix(" ") && !$0.isEmpty }.count, RunConfig.table.settings.count)
        XCTAssertTrue(all.out.contains("optimizer.kind = sgd   (a choice)\n    optimizer: sgd, adam, adamw, rmsprop, spam"), all.out)
        let typo = try run(["settings", "gaurd"])
        XCTAssertEqual(typo.code, 2)
        XCTAssertTrue(typo.err.contains("did you mean 'guard'?"), typo.err)
    }
}
