import Foundation
import GradGuard
import GradGuardBench
import XCTest
import _TestSupport

@testable import GradGuardCLI
@testable import GradGuardRuns

/// What a user can get wrong, run through the binary: every case ends in a sentence and its
/// documented exit code, and nothing already saved is lost or corrupted.
final class BadInputTests: CLITestCase {
    func testRunNamesNeverLeaveTheRunsDirectory() throws {
        let keep = tmp + "/keep.txt"
        _ = FileManager.default.createFile(atPath: keep, contents: Data("precious".utf8))
        try FileManager.default.createDirectory(atPath: tmp + "/runs", withIntermediateDirectories: true)
        for name in ["..", ".", "a/b", "/tmp/x", "../x", "x\ny", "x\ty", ".hidden", String(repeating: "n", count: 201)] {
            let r = try run(["train", "--name", name, "--overwrite"] + tiny)
            XCTAssertEqual(r.code, 2, "\(name.debugDescription): \(r.err)")
            XCTAssertTrue(r.err.contains("name"), r.err)
        }
        XCTAssertEqual(FileManager.default.contents(atPath: keep), Data("precious".utf8))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp + "/runs"), [])
        var c = RunConfig()
        XCTAssertThrowsError(try c.set("name", text: "x\u{0}y", source: "--set", line: nil))
        // --overwrite replaces runs only, not another folder that happens to be in the way.
        try FileManager.default.createDirectory(atPath: tmp + "/runs/photos", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: tmp + "/runs/photos/a.jpg", contents: Data([1, 2, 3]))
        let r = try run(["train", "--name", "photos", "--overwrite"] + tiny)
        XCTAssertEqual(r.code, 2, r.err)
        XCTAssertTrue(r.err.contains("not a run directory"), r.err)
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp + "/runs/photos/a.jpg"))
    }

    func testResumeRefusesChangesTheCheckpointCannotTakeAndLeavesTheRunIntact() throws {
        XCTAssertEqual(try run(["train", "--name", "a"] + tiny).code, 0)
        let config = FileManager.default.contents(atPath: tmp + "/runs/a/config.yaml")
        for change in [
            "optimizer.kind=adam", "model.width=128", "model.layers=3", "model.batch_norm=true", "data.inputs=16",
            "data.classes=5", "guard.clipper=zclip"
        ] {
            let r = try run(["resume", "a", "--set", change])
            XCTAssertEqual(r.code, 2, "\(change): \(r.err)")
            XCTAssertTrue(r.err.contains("cannot change when resuming"), r.err)
            XCTAssertEqual(FileManager.default.contents(atPath: tmp + "/runs/a/config.yaml"), config, change)
        }
        // The run still resumes and evaluates.
        let r = try run(["resume", "a", "--set", "training.epochs=2", "--quiet"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertEqual(try run(["eval", "a"]).code, 0)
    }

    func testOptimizerStateOfAnotherKindIsATypedError() throws {
        let w = Tensor.randn([3, 2], requiresGrad: true)
        let sgd = SGD([w], lr: 0.1, momentum: 0.9)
        w.grad = Tensor.ones([3, 2])
        sgd.step()
        let adam = Adam([w])
        XCTAssertThrowsError(try adam.setHyperparameters(sgd.hyperparameters())) {
            XCTAssertTrue("\($0)".contains("another kind of optimizer"), "\($0)")
        }
        XCTAssertThrowsError(try adam.load(stateDict: sgd.stateDict())) {
            XCTAssertTrue("\($0)".contains("another kind of optimizer"), "\($0)")
        }
        adam.step()  // still usable: nothing was changed
    }

    func testAFullDiskIsAnErrorNamingTheFile() throws {
        // (A write that fails for want of room: HostileInputTests.testAFailedWriteNamesTheFile.)
        // A runs directory that cannot be made.
        let ro = try run(["train", "--name", "b", "--set", "runs_directory=/proc/gradguard-runs"] + tiny)
        XCTAssertEqual(ro.code, 5, ro.err)
        XCTAssertTrue(ro.err.hasPrefix("gradguard: cannot write /proc/gradguard-runs"), ro.err)
    }

    func testUsageErrorsExitTwoAndFileErrorsAreSentences() throws {
        var r = try run(["train", "--bogus"])
        XCTAssertEqual(r.code, 2, r.err)
        r = try run(["inspect", "."])
        XCTAssertEqual(r.code, 3, r.err)
        try FileManager.default.createDirectory(atPath: tmp + "/d.safetensors", withIntermediateDirectories: true)
        r = try run(["inspect", "d.safetensors"])
        XCTAssertEqual(r.code, 3, r.err)
        XCTAssertEqual(r.err, "gradguard: d.safetensors: cannot read: is a directory, expected a file\n")
        XCTAssertFalse(r.err.contains("NSCocoaErrorDomain"))
    }

    func testARunIsLockedWhileInUse() throws {
        XCTAssertEqual(try run(["train", "--name", "a"] + tiny).code, 0)
        let lock = try RunLock(directory: tmp + "/runs/a")
        var r = try run(["train", "--name", "a", "--overwrite"] + tiny)
        XCTAssertEqual(r.code, 6, r.err)
        XCTAssertTrue(r.err.contains("in use by process \(getpid())"), r.err)
        r = try run(["resume", "a", "--set", "training.epochs=2"])
        XCTAssertEqual(r.code, 6, r.err)
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp + "/runs/a/metrics.jsonl"))
        withExtendedLifetime(lock) {}
    }

    func testAFailedTrainLeavesNoRunBehind() throws {
        let r = try run(["train", "--name", "lm", "--set", "model.kind=charlm", "--set", "data.kind=text", "--set", "data.path=missing.txt"])
        XCTAssertEqual(r.code, 3, r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/runs/lm"))
    }

    func testSettingsTheMachineCannotHoldAreRefusedUpFront() throws {
        for (settings, says) in [
            (["model.width=100000"], "of parameters and optimizer state"),
            (["model.kind=charlm", "data.kind=text", "data.sequence_length=100000"], "of activations for one batch"),
            (["model.kind=detector", "data.kind=yolo", "data.image_size=4096"], "data.image_size 4096"),
            (["model.kind=sequence", "data.kind=adding", "data.sequence_length=100000"], "data.sequence_length 100000"),
            (["model.width=4000", "guard.curvature.every=10", "guard.curvature.iterations=1000"], "for the curvature probe")
        ] {
            let r = try run(["train", "--name", "big"] + settings.flatMap { ["--set", $0] })
            XCTAssertEqual(r.code, 2, "\(settings): \(r.err)")
            XCTAssertTrue(r.err.contains(says) && r.err.contains("more than this machine's"), r.err)
            XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/runs/big"))
        }
        XCTAssertEqual(try run(["data", "shapes", "--out", "x", "--size", "100000"]).code, 2)
    }

    /// A corpus costs two bytes a character beyond its text: windows are cut batch by batch.
    func testCorpusHoldsTwoBytesPerCharacter() throws {
        let text = String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 20_000)
        let corpus = CharCorpus(text: text)
        XCTAssertEqual(MemoryLayout<UInt16>.stride * corpus.ids.count, 2 * text.count)
        let (train, _) = try corpus.datasets(length: 64)
        XCTAssertEqual(
            train.ids.withUnsafeBufferPointer { $0.baseAddress }, corpus.ids.withUnsafeBufferPointer { $0.baseAddress },
            "the windows share the corpus's ids")
    }

    /// A run that diverges at step 0: diagnose gives each recommendation once, and the
    /// comparison counts every skipped attempt, not the one step they were at.
    func testDivergedRunIsSummarisedOnce() throws {
        var r = try run(["train", "--name", "broken", "--quiet", "--set", "model.init=normal", "--set", "model.layers=20", "--set", "data.train=128"])
        XCTAssertEqual(r.code, 1, r.err)
        r = try run(["diagnose", "broken"])
        let recs = r.out.components(separatedBy: "recommendations:\n").last ?? ""
        XCTAssertEqual(recs.components(separatedBy: "kaimingNormal").count, 2, r.out)
        XCTAssertTrue(recs.contains("(5 incidents)"), r.out)
        r = try run(["compare", "broken"])
        let row = try XCTUnwrap(r.out.split(separator: "\n").first { $0.hasPrefix("broken") }).split(separator: " ")
        XCTAssertEqual(row[1], "1", "one step reached")
        XCTAssertEqual(row[row.count - 3], "4", "four skipped attempts recorded before the halt: \(row)")
    }

    func testEveryStringRoundTripsThroughConfigYAML() throws {
        var g = RandomGenerator(seed: 11)
        let pool: [Unicode.Scalar] = [
            "\\", "\"", "'", "\t", "\n", "\r", " ", "#", ":", "-", "{", "[", "&", "*", "!", "|", ">", "%", "@", "`",
            "\u{1}", "\u{7F}", "\u{85}", "\u{A0}", "\u{2028}", "\u{2029}", "\u{FEFF}", "\u{FFFE}", "é", "日", "🙂", "a", "Z", "0", "."
        ]
        for _ in 0..<500 {
            let n = Int(g.next() % 12) + 1
            var s = String.UnicodeScalarView()
            for _ in 0..<n { s.append(pool[Int(g.next() % UInt64(pool.count))]) }
            var c = RunConfig()
            do { try c.set("data.path", text: String(s), source: "test", line: nil) } catch {
                // Refused up front, never written: only a leading byte-order mark (YAML readers drop it).
                XCTAssertEqual(s.first, "\u{FEFF}", "\(error)")
                continue
            }
            var back = RunConfig()
            XCTAssertNoThrow(try back.apply(yaml: c.yaml, source: "config.yaml"), String(s).debugDescription)
            XCTAssertEqual(back.data.path, c.data.path, String(s).debugDescription)
        }
        for name in ["bs\\", "a\\tb", "x y", "\"q\"", "-dash", "true", "null", "1e5"] {
            var c = RunConfig()
            c.name = name
            var back = RunConfig()
            try back.apply(yaml: c.yaml, source: "config.yaml")
            XCTAssertEqual(back.name, name)
        }
    }
}

/// `gradguard guard-bench` from the command line: the list, a small run written to a folder,
/// and its usage errors.
final class GuardBenchCommandTests: CLITestCase {
    func testListRunAndUsageErrors() throws {
        let list = try run(["guard-bench", "--list"])
        XCTAssertEqual(list.code, 0, list.err)
        XCTAssertTrue(list.out.contains("\(BenchCatalog.all.count) configurations"), list.out)
        let out = tmp + "/bench"
        let r = try run(["guard-bench", "--only", "mlp3-adam-bce", "--out", out])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.contains("| default | tuning |") || r.out.contains("| default | checking |"), r.out)
        let summary = try String(contentsOfFile: out + "/summary.md", encoding: .utf8)
        XCTAssertTrue(summary.contains("mlp3-adam-bce"), summary)
        XCTAssertNotNil(FileManager.default.contents(atPath: out + "/results.json"))
        for bad in [["--half", "both"], ["--settings", "sometimes"], ["--seeds", "0"], ["--only", "no-such-model"]] {
            let e = try run(["guard-bench"] + bad)
            XCTAssertEqual(e.code, 2, "\(bad): \(e.err)")
            XCTAssertFalse(e.err.isEmpty)
        }
    }
}
