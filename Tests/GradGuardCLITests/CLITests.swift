import Foundation
import GradGuard
import XCTest
import _TestSupport

@testable import GradGuardCLI
@testable import GradGuardDemos
@testable import GradGuardRuns

/// Configuration parsing, and the built `gradguard` binary run as a user would.
final class CLITests: CLITestCase {

    func configError(_ yaml: String) -> String {
        var c = RunConfig()
        do { try c.apply(yaml: yaml, source: "f.yaml") } catch { return "\(error)" }
        return "no error"
    }

    /// `model.kind detector` alone gives the recommended detector (YOLOv8n's architecture and
    /// Ultralytics' training defaults); what the run gives wins; other models and resolved
    /// config.yaml files of older detector runs keep what they had.
    func testDetectorDefaultsAreTheRecommendedSettings() throws {
        var c = RunConfig()
        try c.apply(overrides: ["model.kind=detector", "data.path=d.yaml"])
        try c.resolveModelDefaults()
        try c.validate(source: "--set")
        XCTAssertEqual(c.data.kind, .yolo)
        XCTAssertEqual(
            [c.detector.head.rawValue, c.detector.block.rawValue, c.detector.boxLoss.rawValue, c.schedule.kind.rawValue],
            ["decoupled", "c2f", "ciou", "warmup-linear"])
        XCTAssertEqual(c.detector.scales, 2, "two scales at 128 pixels")
        XCTAssertEqual(
            [c.optimizer.lr, c.optimizer.momentum, c.optimizer.weightDecay, c.guard.clipping.maxNorm, c.detector.boxGain], [0.01, 0.937, 0.0005, 100, 7.5])
        XCTAssertEqual([c.model.ema, c.detector.mosaic, c.detector.augment], [true, true, true])
        XCTAssertEqual(c.training.batchSize, 16)
        XCTAssertEqual(c.guard.validationDivergence, 0)
        XCTAssertFalse(c.given.contains("model.head"), "defaults are not settings the run gave")
        // Given settings win; the box gain follows the head.
        var v5 = RunConfig()
        try v5.apply(overrides: ["model.kind=detector", "model.head=coupled", "optimizer.lr=0.02", "guard.clipper=zclip"])
        try v5.resolveModelDefaults()
        XCTAssertEqual([v5.optimizer.lr, v5.detector.boxGain], [0.02, YOLOLoss.defaultBoxGain])
        XCTAssertEqual(v5.guard.clipper, .zclip)
        XCTAssertEqual(v5.guard.clipping.maxNorm, ClipperSettings().maxNorm, "no max_norm for a clipper without one")
        // Another model: untouched.
        var mlp = RunConfig()
        try mlp.resolveModelDefaults()
        XCTAssertEqual(mlp, RunConfig())
        // A resolved config.yaml written before model.head existed loads as the detector it trained.
        var old = RunConfig()
        try old.apply(overrides: ["model.kind=detector", "data.kind=yolo"])
        let yaml = old.yaml.split(separator: "\n").filter { !$0.contains("head:") && !$0.contains("scales:") && !$0.contains("block:") }.joined(separator: "\n")
        var back = RunConfig()
        try back.apply(yaml: yaml, source: "config.yaml")
        XCTAssertEqual([back.detector.head.rawValue, back.detector.block.rawValue], ["coupled", "conv"])
        XCTAssertEqual(back.detector.scales, 2)
        XCTAssertThrowsError(
            try {
                var c = RunConfig(); try c.apply(overrides: ["model.kind=detector", "data.image_size=48", "model.scales=3"]); try c.resolveModelDefaults();
                try c.validate(source: "--set")
            }()
        ) {
            XCTAssertTrue("\($0)".contains("expected a multiple of 32"), "\($0)")
        }
    }

    func testStabilizerSettingsApplyOnlyWhereTheyMeanSomething() throws {
        func error(_ overrides: [String]) -> String? {
            var c = RunConfig()
            do {
                try c.apply(overrides: overrides)
                try c.validate(source: "--set")
                return nil
            } catch { return "\(error)" }
        }
        XCTAssertEqual(
            error(["optimizer.update_clip=1"]), "--set: optimizer.update_clip: StableAdamW's update clipping is for optimizer.kind adam or adamw, got 'sgd'")
        XCTAssertNil(error(["optimizer.kind=adamw", "optimizer.update_clip=1"]))
        XCTAssertEqual(error(["optimizer.spam_reset_every=100"]), "--set: optimizer.spam_reset_every: is for optimizer.kind spam, got 'sgd'")
        XCTAssertNil(error(["optimizer.kind=spam", "optimizer.spam_reset_every=100"]))
        XCTAssertEqual(error(["model.z_loss=1e-4"]), "--set: model.z_loss: the z-loss is for model.kind charlm, transformer or seq2seq, got 'mlp'")
        XCTAssertNil(error(["model.kind=charlm", "data.kind=text", "model.z_loss=1e-4", "guard.clipper=adagc", "guard.adagc.warmup_steps=10"]))
        XCTAssertNil(error(["model.kind=transformer", "data.kind=text", "model.z_loss=1e-4", "model.qk_norm=true", "model.heads=8"]))
        XCTAssertEqual(
            error(["model.kind=transformer", "data.kind=text", "model.width=30"]),
            "--set: model.width: a transformer's width must divide into model.heads 4 heads, got 30")
        XCTAssertNotNil(error(["guard.adagc.beta=0.9"]), "an AdaGC setting with another clipper")
        // Each builds what it names.
        var c = RunConfig()
        try c.apply(overrides: ["optimizer.kind=spam", "optimizer.spam_threshold=100"])
        let spam = c.optimizer.make([ParamGroup(params: [Tensor.zeros([2], requiresGrad: true)])])
        XCTAssertEqual(spam.paramGroups[0].options["threshold"], 100)
    }

    func testConfigErrorsNameTheKeyAndLine() {
        XCTAssertEqual(configError("name: a\ntraining:\n  epochs: three\n"), "f.yaml:3: training.epochs: expected an integer, got 'three'")
        XCTAssertEqual(configError("optimizer:\n  lrr: 0.1\n"), "f.yaml:2: optimizer.lrr: unknown key (did you mean 'optimizer.lr'?)")
        XCTAssertEqual(configError("trainig:\n  epochs: 2\n"), "f.yaml:1: trainig: unknown section (did you mean 'training'?)")
        XCTAssertEqual(configError("optimizer:\n  lr: -1\n"), "f.yaml:2: optimizer.lr: expected a number in 1e-12...100.0 or 'auto', got '-1'")
        XCTAssertEqual(
            configError("guard:\n  clipper: zlcip\n"),
            "f.yaml:2: guard.clipper: expected one of none, global-norm, value, zclip, autoclip, agc, adagc, per-module, got 'zlcip'")
        XCTAssertEqual(configError("training: 3\n"), "f.yaml:1: training: expected a section of settings, got '3'")
        XCTAssertEqual(configError("model:\n  layers: [1, 2]\n"), "f.yaml:2: model.layers: expected a single value, got a list")
        XCTAssertTrue(configError("name: [x\n").hasPrefix("f.yaml:"), configError("name: [x\n"))
        XCTAssertEqual(configError(""), "no error")
        var c = RunConfig()
        XCTAssertThrowsError(try c.apply(overrides: ["training.epochs"])) { XCTAssertEqual("\($0)", "--set: expected key=value, got 'training.epochs'") }
    }

    func testResolvedYAMLReadsBackTheSame() throws {
        var c = RunConfig()
        try c.apply(overrides: ["name=x y", "optimizer.lr=0.003", "model.batch_norm=true", "guard.clipper=zclip", "guard.zclip.z_threshold=3"])
        var back = RunConfig()
        try back.apply(yaml: c.yaml, source: "config.yaml")
        XCTAssertEqual(back, c)
        XCTAssertEqual(back.guard.clipping.zThreshold, 3)
        try back.validate(source: "config.yaml")
        // Of the clipper settings, the resolved file holds the chosen clipper's, nested.
        XCTAssertTrue(c.yaml.contains("guard:\n  clipper: zclip"), c.yaml)
        XCTAssertTrue(c.yaml.contains("  zclip:\n    z_threshold: 3.0"), c.yaml)
        XCTAssertFalse(c.yaml.contains("max_norm") || c.yaml.contains("autoclip:"), c.yaml)
    }

    /// Each clipper reads its own keys; a key for another clipper is an error naming both,
    /// and a config.yaml resolved before the keys were split still loads as it was meant.
    func testClipperKeys() throws {
        func validated(_ overrides: [String]) -> String {
            var c = RunConfig()
            do {
                try c.apply(overrides: overrides)
                try c.validate(source: "f.yaml")
            } catch { return "\(error)" }
            return "ok"
        }
        XCTAssertEqual(validated(["guard.clipper=value", "guard.clip_value=0.5"]), "ok")
        XCTAssertEqual(
            validated(["guard.clipper=zclip", "guard.max_norm=1"]),
            "f.yaml: guard.max_norm: does not apply to guard.clipper zclip (it is for global-norm, per-module); zclip reads guard.zclip.z_threshold, guard.zclip.alpha, guard.zclip.warmup_steps"
        )
        XCTAssertEqual(
            validated(["guard.clipper=value", "guard.max_norm=0.5"]),
            "f.yaml: guard.max_norm: does not apply to guard.clipper value (it is for global-norm, per-module); value reads guard.clip_value")
        XCTAssertEqual(
            validated(["guard.clipper=none", "guard.autoclip.percentile=5"]),
            "f.yaml: guard.autoclip.percentile: does not apply to guard.clipper none (it is for autoclip); none takes no threshold")
        XCTAssertEqual(validated(["guard.clipper=agc", "guard.agc_ratio=200"]), "ok")
        XCTAssertTrue(validated(["guard.autoclip.percentile=101"]).contains("expected a number in 0.0...100.0"))
        // An older resolved file: every key written, max_norm the value clipper's value.
        var old = RunConfig()
        try old.apply(yaml: RunConfig.resolvedHeader + "\nguard:\n  clipper: value\n  max_norm: 0.25\n", source: "config.yaml")
        try old.validate(source: "config.yaml")
        XCTAssertEqual(old.guard.clipping.clipValue, 0.25)
        let clipper = try XCTUnwrap(old.guard.clipper.make(old.guard.clipping) as? ClipByValue)
        XCTAssertEqual(clipper.clipValue, 0.25)
        var oldZ = RunConfig()
        try oldZ.apply(yaml: RunConfig.resolvedHeader + "\nguard:\n  clipper: zclip\n  max_norm: 5.0\n", source: "config.yaml")
        try oldZ.validate(source: "config.yaml")
        // The same lines written by hand are a mistake, and said so.
        var hand = RunConfig()
        try hand.apply(yaml: "guard:\n  clipper: value\n  max_norm: 0.25\n", source: "mine.yaml")
        XCTAssertThrowsError(try hand.validate(source: "mine.yaml")) { XCTAssertTrue("\($0)".contains("value reads guard.clip_value"), "\($0)") }
        // Every enumerated setting names its values, and every value has its own help.
        for s in RunConfig.settings {
            if case let .choice(names, _, _) = s.kind { XCTAssertTrue(s.help.hasSuffix(names.joined(separator: ", ")), s.key) }
        }
        XCTAssertTrue(ClipperKind.allCases.allSatisfy { !$0.help.isEmpty && ($0 == .none || !$0.settings.isEmpty) })
    }

    // MARK: The binary

    func testTrainReportDiagnoseInspectCompareResume() throws {
        let small = ["--set", "data.train=512", "--set", "data.validation=128", "--set", "model.layers=3", "--set", "training.epochs=2"]
        var r = try run(["train", "--name", "a"] + small)
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.contains("report: runs/a/report.html"), r.out)
        for f in ["config.yaml", "metrics.jsonl", "incidents.jsonl", "report.html", "environment.txt"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: tmp + "/runs/a/" + f), f)
        }
        // The same name again: refused, exit code 2.
        r = try run(["train", "--name", "a"] + small)
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.err.contains("gradguard resume a"), r.err)
        // More epochs by resuming.
        r = try run(["resume", "a", "--set", "training.epochs=3"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.contains("resumed runs/a at step 16"), r.out)
        r = try run(["eval", "a"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.hasPrefix("checkpoint step 24: accuracy"), r.out)
        r = try run(["report", "a"])
        XCTAssertEqual(r.out.trimmingCharacters(in: .whitespacesAndNewlines), "runs/a/report.html")
        r = try run(["inspect", "a"])
        XCTAssertTrue(r.out.contains("0.weight") && r.out.contains("[64, 32]"), r.out)
        r = try run(["diagnose", "a"])
        XCTAssertTrue(r.out.contains("no incidents"), r.out)
        // A run that diverges: exit code 1, with the diagnosis, and diagnose afterwards.
        r = try run(["train", "--name", "b", "--set", "model.init=normal", "--set", "model.layers=20", "--set", "data.train=256", "--quiet"])
        XCTAssertEqual(r.code, 1, r.out + r.err)
        XCTAssertTrue(r.err.contains("training diverged") && r.err.contains("initialisation"), r.err)
        r = try run(["diagnose", "b"])
        XCTAssertTrue(r.out.contains("initialisation") && r.out.contains("kaimingNormal"), r.out)
        r = try run(["compare", "a", "b"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.contains("run") && r.out.contains("final loss") && r.out.contains("\na "), r.out)
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp + "/runs/compare.html"), "written beside the runs, not in the current folder")
        // Usage errors and missing things.
        XCTAssertEqual(try run(["train", "--config", "missing.yaml"]).code, 3)
        XCTAssertEqual(try run(["train", "--set", "optimizer.lr=fast"]).code, 2)
        XCTAssertEqual(try run(["diagnose", "nothere"]).code, 3)
        XCTAssertEqual(try run(["frobnicate"]).code, 2)  // a usage error, as documented
    }

    /// Kills `gradguard train` (SIGKILL) while it checkpoints every step: the run must always
    /// resume from a checkpoint that verifies. The first kill is deterministic (the process
    /// kills itself after the backward pass of step 3, GRADGUARD_FAULT); two more strike at
    /// moments after the first checkpoint appears, mid-save or not, and are checked when they
    /// left a checkpoint (a kill before the first one has nothing to check).
    func testKilledDuringCheckpointingTheRunStillLoads() throws {
        guard FileManager.default.isExecutableFile(atPath: binary) else { return XCTFail("missing \(binary)") }
        let settings = [
            "--quiet", "--set", "training.checkpoint_every=1", "--set", "training.epochs=50", "--set", "model.width=256", "--set", "data.train=2048"
        ]
        let killed = try runProcess(binary, ["train", "--name", "k0"] + settings, in: tmp, environment: ["GRADGUARD_FAULT": "kill@rank=0,step=3"])
        XCTAssertTrue([SIGKILL, 128 + SIGKILL].contains(killed.code), "the fault did not kill the run (exit \(killed.code)): \(killed.err)")
        let step = try XCTUnwrap(try? CheckpointStore(directory: tmp + "/runs/k0/checkpoints").loadLatest().checkpoint.step)
        XCTAssertGreaterThanOrEqual(step, 1, "checkpoints were complete before the kill")
        XCTAssertEqual(try run(["resume", "k0", "--quiet", "--set", "training.max_steps=\(step + 2)"]).code, 0)
        for (i, delay) in [0.0, 0.05].enumerated() {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: binary)
            p.arguments = ["train", "--name", "k\(i + 1)"] + settings
            p.currentDirectoryURL = URL(fileURLWithPath: tmp)
            try p.run()
            let store0 = CheckpointStore(directory: tmp + "/runs/k\(i + 1)/checkpoints")
            while store0.list().isEmpty && p.isRunning { Thread.sleep(forTimeInterval: 0.01) }
            Thread.sleep(forTimeInterval: delay)
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            let store = CheckpointStore(directory: tmp + "/runs/k\(i + 1)/checkpoints")
            guard !store.list().isEmpty else { continue }
            let step = try XCTUnwrap(try? store.loadLatest().checkpoint.step, "run k\(i + 1) killed after \(delay) s has no loadable checkpoint")
            let r = try run(["resume", "k\(i + 1)", "--quiet", "--set", "training.max_steps=\(step + 2)"])
            XCTAssertEqual(r.code, 0, r.err)
        }
    }

    func testDemoRNNPrintsItsTable() throws {
        let r = try run(["demo", "rnn", "--steps", "12", "--length", "12", "--runs-directory", "demo"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.contains("baseline (always predict 1): MSE 0.167"), r.out)
        let rows = r.out.split(separator: "\n").filter { $0.hasPrefix("| rnn |") || $0.hasPrefix("| lstm |") }
        XCTAssertEqual(rows.count, 8, r.out)
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp + "/demo/compare.html"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp + "/demo/lstm-zclip/report.html"))
        XCTAssertEqual(try run(["demo", "nosuch"]).code, 2)
        let lm = try run(["demo", "charlm", "--steps", "6", "--runs-directory", "demo"])
        XCTAssertEqual(lm.code, 0, lm.err)
        XCTAssertEqual(lm.out.split(separator: "\n").filter { $0.hasPrefix("| unguarded |") || $0.hasPrefix("| guarded") }.count, 2, lm.out)
        // Several seeds: one table of medians with their range, each seed's runs kept apart.
        let many = try run(["demo", "rnn", "--steps", "12", "--length", "12", "--cells", "lstm", "--seeds", "3", "--runs-directory", "demo3"])
        XCTAssertEqual(many.code, 0, many.err)
        XCTAssertTrue(many.out.contains("3 seeds: median [min – max]"), many.out)
        let folded = many.out.split(separator: "\n").filter { $0.hasPrefix("| lstm |") }
        XCTAssertEqual(folded.count, 4, many.out)
        XCTAssertTrue(folded.contains { $0.contains(" [") && $0.contains(" – ") }, many.out)
        for s in 0..<3 { XCTAssertTrue(FileManager.default.fileExists(atPath: tmp + "/demo3/seed-\(s)/lstm-zclip/report.html")) }
    }

    func testDemoTablesFoldOverSeeds() {
        let t = { (mse: String, beats: String, incidents: String) in
            DemoTable(caption: "c", header: "guard | mse | beats | incidents | sample", rows: [["zclip", mse, beats, incidents, "the cat"]])
        }
        let f = DemoTable.folded([t("0.0046", "yes", "11"), t("NaN (diverged)", "no", "3"), t("0.0120", "yes", "7")])
        XCTAssertEqual(f.rows[0], ["zclip", "0.0120 [0.0046 – NaN] (1/3 diverged)", "2/3 yes", "7 [3 – 11]", "the cat"])
        XCTAssertEqual(
            DemoTable.folded([t("1.0e-3 / 2e-4", "no", "1"), t("3.0e-3 / 2e-4", "no", "1")]).rows[0][1], "1.0e-3 / 2e-4",
            "a cell of several numbers is not folded")
        XCTAssertEqual(f.caption, "c; 3 seeds: median [min – max]")
    }

    /// The other demos run end to end at a few steps and print a row per run.
    func testInitLRRegularizationAndDetectorDemosPrintTheirTables() throws {
        let cases: [(String, [String], Int)] = [
            ("lr", ["--steps", "4"], 6), ("regularization", ["--steps", "3"], 4),
            ("init", ["--steps", "1", "--examples", "64"], 12),
            ("detector", ["--steps", "1", "--examples", "8"], 4),
            ("stabilizers", ["--steps", "3"], 9)
        ]
        for (name, args, rows) in cases {
            let r = try run(["demo", name] + args)
            XCTAssertEqual(r.code, 0, name + ": " + r.err)
            let table = r.out.split(separator: "\n").filter {
                $0.hasPrefix("| ") && !$0.hasPrefix("| lr |") && !$0.hasPrefix("| model |")
                    && !$0.hasPrefix("| regularisation |") && !$0.hasPrefix("| run |") && !$0.hasPrefix("| stabilizer |")
            }
            XCTAssertEqual(table.count, rows, name + ":\n" + r.out)
            XCTAssertTrue(FileManager.default.fileExists(atPath: tmp + "/runs/demo-\(name)"), name)
        }
    }

    func testCharacterModelTrainsAndGenerates() throws {
        try String(repeating: "the gradient grows and the guard clips it.\n", count: 40).write(toFile: tmp + "/corpus.txt", atomically: true, encoding: .utf8)
        var r = try run([
            "train", "--name", "lm", "--quiet", "--set", "model.kind=charlm", "--set", "data.kind=text", "--set", "data.path=corpus.txt",
            "--set", "model.width=32", "--set", "model.embedding=16", "--set", "data.sequence_length=16", "--set", "training.epochs=1",
            "--set", "optimizer.kind=adam", "--set", "optimizer.lr=0.01", "--set", "training.batch_size=16"
        ])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp + "/runs/lm/vocabulary.json"))
        let metrics = try String(contentsOfFile: tmp + "/runs/lm/metrics.jsonl", encoding: .utf8)
        XCTAssertTrue(metrics.contains("bits_per_char"))
        r = try run(["generate", "lm", "--prompt", "the ", "--length", "30", "--temperature", "0.5", "--seed", "3"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertEqual(r.out.trimmingCharacters(in: .newlines).count, 34, r.out)
        XCTAssertEqual(try run(["generate", "lm", "--prompt", "the ", "--length", "30", "--temperature", "0.5", "--seed", "3"]).out, r.out)
        // Bad text, a missing file, an MLP run.
        try Data([0x61, 0xFF]).write(to: URL(fileURLWithPath: tmp + "/bad.txt"))
        r = try run(["train", "--name", "b", "--set", "model.kind=charlm", "--set", "data.kind=text", "--set", "data.path=bad.txt"])
        XCTAssertEqual(r.code, 3)
        XCTAssertTrue(r.err.contains("bad.txt: not UTF-8 text"), r.err)
        XCTAssertEqual(try run(["train", "--name", "c", "--set", "model.kind=charlm"]).code, 2)
    }

    func testTranslationModelTrainsOnAPairsFileAndTranslates() throws {
        let words = ["one", "two", "three", "four", "five", "six"]
        let pairs = (0..<6).flatMap { i in (0..<6).map { j in "\(words[i]) \(words[j])\t\(i + 1)\(j + 1)" } }
        try ("# word pairs\n" + pairs.joined(separator: "\n")).write(toFile: tmp + "/pairs.tsv", atomically: true, encoding: .utf8)
        let settings = [
            "--set", "model.kind=seq2seq", "--set", "data.kind=pairs", "--set", "data.path=pairs.tsv", "--set", "model.width=32",
            "--set", "model.embedding=8", "--set", "training.epochs=2", "--set", "training.batch_size=8", "--set", "optimizer.kind=adam",
            "--set", "optimizer.lr=0.01"
        ]
        var r = try run(["train", "--name", "t", "--quiet"] + settings)
        XCTAssertEqual(r.code, 0, r.err)
        let saved = try String(contentsOfFile: tmp + "/runs/t/translation.json", encoding: .utf8)
        XCTAssertTrue(saved.contains("\"sourceLength\" : 11"), saved)
        XCTAssertTrue(try String(contentsOfFile: tmp + "/runs/t/metrics.jsonl", encoding: .utf8).contains("exact_match"))
        r = try run(["translate", "t", "one two", "six five", "--beam", "2"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertEqual(r.out.split(separator: "\n").map { String($0.split(separator: "\t")[0]) }, ["one two", "six five"])
        XCTAssertEqual(r.err, "", "known words: no warning")
        // Characters never seen in training: translated, with a warning naming them.
        r = try run(["translate", "t", "zwölf"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.err.contains("sentence 1: the characters 'l', 'z', 'ö' never occurred in training"), r.err)
        // A malformed line is named; a wrong kind of run is refused.
        try "one\t1\ntwo 2\n".write(toFile: tmp + "/bad.tsv", atomically: true, encoding: .utf8)
        r = try run(["train", "--name", "b", "--quiet"] + settings + ["--set", "data.path=bad.tsv"])
        XCTAssertEqual(r.code, 3)
        XCTAssertTrue(r.err.contains("bad.tsv:2: expected 'source<TAB>target', found 0 tabs"), r.err)
        XCTAssertEqual(try run(["generate", "t"]).code, 2)
    }

    func testLongDependencyTaskRunReportsItsBaseline() throws {
        let r = try run([
            "train", "--name", "add", "--quiet", "--set", "model.kind=sequence", "--set", "data.kind=adding", "--set", "data.sequence_length=10",
            "--set", "data.train=128", "--set", "data.validation=64", "--set", "model.width=8", "--set", "training.epochs=1"
        ])
        XCTAssertEqual(r.code, 0, r.err)
        let metrics = try String(contentsOfFile: tmp + "/runs/add/metrics.jsonl", encoding: .utf8)
        XCTAssertTrue(metrics.contains("\"baseline\":0.16666666666666666"), metrics)
        XCTAssertTrue(metrics.contains("\"solved\""))
        var c = RunConfig()
        try c.apply(overrides: ["model.kind=sequence", "data.kind=copy-memory", "data.sequence_length=5"])
        XCTAssertThrowsError(try c.validate(source: "f.yaml")) {
            XCTAssertEqual("\($0)", "f.yaml: data.sequence_length: copy-memory needs a sequence length of at least 11, got 5")
        }
        c.data.kind = .text
        XCTAssertThrowsError(try c.validate(source: "f.yaml")) {
            XCTAssertEqual("\($0)", "f.yaml: model.kind: 'sequence' needs data.kind adding, temporal-order, copy-memory, got 'text'")
        }
    }

    func testDetectionDataTrainAndDetect() throws {
        var r = try run(["data", "shapes", "--out", "shapes", "--train", "16", "--val", "4", "--size", "64", "--seed", "2"])
        XCTAssertEqual(r.code, 0, r.err)
        r = try run(["data", "check", "shapes/data.yaml"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.hasPrefix("train: 16 images, "), r.out)
        // A malformed label line: skipped and listed with on_error skip, fatal with fail.
        try "0 0.5 0.5 0.2\n".write(toFile: tmp + "/shapes/labels/train/train_00001.txt", atomically: true, encoding: .utf8)
        r = try run(["data", "check", "shapes/data.yaml"])
        XCTAssertEqual(r.code, 3)
        XCTAssertTrue(r.out.contains("shapes/labels/train/train_00001.txt:1: expected 5 values 'class cx cy w h', found 4"), r.out)
        let settings = [
            "--set", "model.kind=detector", "--set", "data.kind=yolo", "--set", "data.path=shapes/data.yaml", "--set", "data.image_size=64",
            "--set", "model.width=4", "--set", "training.epochs=1", "--set", "training.batch_size=8", "--set", "schedule.kind=warmup",
            "--set", "schedule.warmup_steps=1", "--set", "guard.max_norm=10", "--set", "model.box_loss=ciou"
        ]
        r = try run(["train", "--name", "det", "--quiet"] + settings)
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.err.contains("1 data problem skipped"), r.err)
        XCTAssertTrue(try String(contentsOfFile: tmp + "/runs/det/data_issues.txt", encoding: .utf8).contains("train_00001.txt:1:"))
        let metrics = try String(contentsOfFile: tmp + "/runs/det/metrics.jsonl", encoding: .utf8)
        XCTAssertTrue(metrics.contains("\"map50\"") && metrics.contains("\"map50_95\""), metrics)
        r = try run(["train", "--name", "det2", "--quiet"] + settings + ["--set", "data.on_error=fail"])
        XCTAssertEqual(r.code, 3)
        XCTAssertTrue(r.err.contains("1 problem in the dataset:"), r.err)
        r = try run(["eval", "det"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.contains("map50 ") && r.out.contains("map50_95 "), r.out)
        r = try run(["detect", "det", "--images", "shapes/images/val", "--conf", "0.001"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp + "/runs/det/detect/val_00003.png"))
        let labels = try String(contentsOfFile: tmp + "/runs/det/detect/labels/val_00003.txt", encoding: .utf8)
        for line in labels.split(separator: "\n") {
            let v = line.split(separator: " ").compactMap { Double($0) }
            XCTAssertEqual(v.count, 6, String(line))
            XCTAssertTrue(v[1...4].allSatisfy { (0...1).contains($0) }, String(line))
        }
        XCTAssertEqual(try run(["data", "shapes", "--out", "x", "--size", "4"]).code, 2)
        try checkDetectAndEvalNeedOnlyTheRun()
    }

    /// Regressions: detect needs the run directory only (not the training data), keeps
    /// same-named images apart, checks its thresholds and fails when nothing was readable;
    /// eval finds relative data paths from another folder.
    func checkDetectAndEvalNeedOnlyTheRun() throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: tmp + "/imgs", withIntermediateDirectories: true)
        try fm.copyItem(atPath: tmp + "/shapes/images/val/val_00003.png", toPath: tmp + "/imgs/a.png")
        try fm.copyItem(atPath: tmp + "/shapes/images/val/val_00003.png", toPath: tmp + "/imgs/a.jpg")  // decoded by its bytes
        try fm.moveItem(atPath: tmp + "/shapes/labels", toPath: tmp + "/labels-away")
        var r = try run(["detect", "det", "--images", "imgs", "--out", "out"])
        XCTAssertEqual(r.code, 0, r.err)
        for f in ["out/a_png.png", "out/a_jpg.png", "out/labels/a_png.txt", "out/labels/a_jpg.txt"] {
            XCTAssertTrue(fm.fileExists(atPath: tmp + "/" + f), f)
        }
        try fm.moveItem(atPath: tmp + "/labels-away", toPath: tmp + "/shapes/labels")
        for bad in [["--conf", "nan"], ["--conf", "2"], ["--iou", "5"]] {
            r = try run(["detect", "det", "--images", "imgs"] + bad)
            XCTAssertEqual(r.code, 2, "\(bad): \(r.err)")
        }
        try fm.createDirectory(atPath: tmp + "/broken", withIntermediateDirectories: true)
        _ = fm.createFile(atPath: tmp + "/broken/x.png", contents: Data("not an image".utf8))
        r = try run(["detect", "det", "--images", "broken"])
        XCTAssertEqual(r.code, 3, r.err)
        XCTAssertTrue(r.err.contains("none of the 1 images in broken could be read"), r.err)
        // From another folder, by the run's path.
        try fm.createDirectory(atPath: tmp + "/elsewhere", withIntermediateDirectories: true)
        r = try runProcess(binary, ["eval", tmp + "/runs/det"], in: tmp + "/elsewhere")
        XCTAssertEqual(r.code, 0, r.err)
    }

    /// `model.kind transformer` from the command line: trains on the built-in text, records its
    /// attention logits, samples from `generate`.
    func testTransformerTrainsRecordsAttentionLogitsAndGenerates() throws {
        let t = try run([
            "train", "--name", "tf", "--quiet", "--set", "model.kind=transformer", "--set", "data.kind=text", "--set", "model.width=16",
            "--set", "model.heads=2", "--set", "model.layers=1", "--set", "data.sequence_length=16", "--set", "training.max_steps=3",
            "--set", "optimizer.kind=adamw", "--set", "optimizer.lr=0.003", "--set", "model.qk_norm=true", "--set", "model.z_loss=1e-4"
        ])
        XCTAssertEqual(t.code, 0, t.err)
        let steps = try RunRecords.metrics(in: tmp + "/runs/tf").steps
        XCTAssertEqual(steps.count, 3)
        XCTAssertTrue(steps.allSatisfy { $0.maxAttentionLogit != nil }, "every step records the largest attention logit")
        XCTAssertEqual(try RunDescription.read(in: tmp + "/runs/tf")?.model, "CharTransformer")
        let g = try run(["generate", "tf", "--prompt", "the ", "--length", "20", "--seed", "1"])
        XCTAssertEqual(g.code, 0, g.err)
        XCTAssertEqual(g.out.count, "the ".count + 20 + 1, g.out)
    }

    func testJSONOutputIsOneObjectPerStep() throws {
        let r = try run(["train", "--name", "j", "--json", "--set", "data.train=256", "--set", "training.epochs=1", "--set", "model.layers=2"])
        XCTAssertEqual(r.code, 0, r.err)
        let lines = r.out.split(separator: "\n")
        XCTAssertEqual(lines.count, 4)
        for l in lines { XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any]) }
    }
}

/// The README's Swift programs are `Examples/`: the README shows them as they are, and they
/// build and train.
final class ExampleProgramTests: CLITestCase {
    func example(_ name: String) -> (path: String, source: String) {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let source = (try? String(contentsOf: root.appendingPathComponent("Examples/\(name)/main.swift"), encoding: .utf8)) ?? ""
        return ((URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent(name)).path, source)
    }

    func testREADMEShowsTheExamplesAsTheyAre() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        for name in ["train-detector", "train-charlm"] {
            let source = example(name).source
            XCTAssertFalse(source.isEmpty, name)
            XCTAssertTrue(readme.contains("```swift\n" + source + "```"), "README shows \(name) as it is")
            XCTAssertLessThanOrEqual(source.split(separator: "\n", omittingEmptySubsequences: false).count - 1, 25, name)
        }
    }

    /// Every Swift block of the DocC articles is in `Examples/doc-examples` (so the build
    /// compiles it), and that program runs to the end.
    func testEveryArticlesCodeCompilesAndRuns() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let check = try runProcess("/usr/bin/env", ["python3", root.appendingPathComponent("Scripts/sync_doc_examples.py").path, "--check"], in: tmp)
        XCTAssertEqual(check.code, 0, check.err)
        let r = try runProcess(example("doc-examples").path, [], in: tmp)
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.contains("report.html"), r.out)
    }

    func testDetectorExampleTrainsAndPrintsMAP() throws {
        XCTAssertEqual(try run(["data", "shapes", "--out", "shapes", "--train", "32", "--val", "8", "--size", "64"]).code, 0)
        let r = try runProcess(example("train-detector").path, ["shapes/data.yaml", "1"], in: tmp)
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.hasPrefix("mAP@0.5 ") && r.out.contains("after 2 steps"), r.out)
        // Bad input: one sentence, exit 1.
        let bad = try runProcess(example("train-detector").path, ["missing.yaml"], in: tmp)
        XCTAssertEqual(bad.code, 1)
        XCTAssertTrue(bad.err.hasPrefix("train-detector: ") && bad.err.contains("missing.yaml"), bad.err)
    }

    func testReplayReRunsAnIncidentsStepBitForBit() throws {
        // An MLP at a learning rate that spikes: its first incident keeps a replay record.
        let t = try run(["train", "--name", "rp", "--lr", "3", "--set", "training.max_steps=30", "--quiet"])
        XCTAssertEqual(t.code, 0, t.err)
        let r = try run(["replay", "rp", "--incident", "1", "--top", "3"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.contains("every norm identical to the step's, bit for bit"), r.out)
        XCTAssertFalse(r.out.contains("recorded "), r.out)
        XCTAssertEqual(r.out.components(separatedBy: "%  norm").count - 1, 3, r.out)
        let missing = try run(["replay", "rp", "--incident", "99"])
        XCTAssertEqual(missing.code, 3)
        XCTAssertTrue(missing.err.contains("there is no incident 99"), missing.err)
    }

    func testReplayNamesAPlantedCorruptLabelFirst() throws {
        // 200 pairs "a b → reversed", line 58 with a garbled target. Once the model has
        // converged, the batches that hold it lift the gradient norm about 13× — a converged
        // model's rare mistake, which the default guard clips without an incident; the z-score
        // rule at 4σ asks for every such batch to be reported (and skipped), and the replay
        // ranks the garbled line first.
        let words = [
            "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "house",
            "car"
        ]
        var lines = (0..<200).map { i -> String in
            let a = words[(i * 7) % 20], b = words[(i * 13 + 3) % 20]
            return "\(a) \(b)\t\(String(b.reversed())) \(String(a.reversed()))"
        }
        lines[57] = "two cat\t" + String(repeating: "qzxjwv", count: 5)
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: tmp + "/pairs.tsv"))
        let t = try run([
            "train", "--name", "tr", "--quiet", "--set", "model.kind=seq2seq", "--set", "data.kind=pairs", "--set", "data.path=pairs.tsv",
            "--batch-size", "8", "--set", "training.epochs=20", "--set", "optimizer.kind=adam", "--set", "optimizer.lr=0.01",
            "--set", "model.width=32", "--set", "guard.zscore_sigma=4"
        ])
        XCTAssertEqual(t.code, 0, t.err)
        let incidents = try RunRecords.incidents(in: tmp + "/runs/tr")
        let k = try XCTUnwrap(incidents.firstIndex { $0.replay != nil && $0.samples != nil }, "no incident with a replay record") + 1
        let r = try run(["replay", "tr", "--incident", "\(k)", "--top", "3"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.contains("bit for bit"), r.out)
        let first = r.out.split(separator: "\n").first { $0.contains("%  norm") } ?? ""
        XCTAssertTrue(first.contains("pairs.tsv:58: \"two cat\" → \"qzxjwv"), r.out)
    }

    func testDetectorFailureModesAreDiagnosed() throws {
        let base = [
            "train", "--quiet", "--set", "model.kind=detector", "--set", "data.kind=yolo", "--set", "data.validation=8", "--set", "data.image_size=64"
        ]
        // No warm-up, no clipping and a rate 400× the linear-scaling rate for a batch of 8 (0.01 at 16).
        XCTAssertEqual(
            try run(
                base + [
                    "--name", "hot", "--set", "data.train=32", "--batch-size", "8", "--set", "training.epochs=6", "--lr", "2", "--set",
                    "schedule.kind=constant", "--clipper", "none"
                ]
            ).code, 0)
        let hot = try run(["diagnose", "hot"]).out
        XCTAssertTrue(hot.contains("warmupTooShort") && hot.contains("lengthen the warm-up"), hot)
        XCTAssertTrue(hot.contains("learningRateTooHighForBatch") && hot.contains("for a batch of 8"), hot)
        // A box-loss gain 670× the decoupled head's default, with a warm-up and a rate that suit the batch.
        let gain = try run(
            base + [
                "--name", "gain", "--set", "data.train=64", "--batch-size", "32", "--set", "training.epochs=6", "--lr", "0.01", "--clipper", "none",
                "--set", "model.box_gain=5000", "--set", "schedule.kind=warmup", "--set", "schedule.warmup_steps=12"
            ])
        XCTAssertEqual(gain.code, 0, gain.err)
        let g = try run(["diagnose", "gain"]).out
        XCTAssertTrue(g.contains("boxLossGainTooHigh") && g.contains("lower the box-loss gain to 7.5"), g)
        XCTAssertFalse(g.contains("warmupTooShort") || g.contains("learningRateTooHighForBatch"), g)
    }

    func testCharLMExampleTrainsAndSamples() throws {
        let text = String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 200)
        try Data(text.utf8).write(to: URL(fileURLWithPath: tmp + "/book.txt"))
        let r = try runProcess(example("train-charlm").path, ["book.txt", "5"], in: tmp)
        XCTAssertEqual(r.code, 0, r.err)
        let lines = r.out.split(separator: "\n")
        XCTAssertTrue(lines.first?.hasPrefix("validation bits/char ") == true, r.out)
        XCTAssertTrue(lines.count >= 2 && lines[1].hasPrefix("The "), r.out)
    }
}
