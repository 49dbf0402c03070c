import Foundation
import GradGuard
import XCTest
import _TestSupport

/// Data-parallel training under `mpirun -np 2 --oversubscribe` (as root, with Open MPI's
/// allow-root settings), run as a user would: the built `gradguard` under Open MPI's launcher.
///
/// Tolerance of "the same as one process with twice the batch": losses and gradient norms
/// within 1e-5 relative, parameters within 1e-5 absolute after 20 steps. (The two differ only
/// in the order of float additions: a sum over 2B examples against the mean of two sums over B.)
final class DistributedTests: CLITestCase {
    let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Runs `gradguard args` on `ranks` processes; `fault`: GRADGUARD_FAULT for every rank.
    @discardableResult
    func runRanks(_ ranks: Int, _ args: [String], fault: String? = nil) throws -> (code: Int32, out: String, err: String) {
        guard let mpirun else {
            XCTFail("mpirun is missing: Scripts/setup.sh installs openmpi-bin")
            return (-1, "", "")
        }
        var env = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1"]
        var launch = ["-np", "\(ranks)", "--oversubscribe"]
        if let fault {
            env["GRADGUARD_FAULT"] = fault
            launch += ["-x", "GRADGUARD_FAULT"]
        }
        return try runProcess(mpirun, launch + [binary] + args, in: tmp, environment: env)
    }

    /// `gradguard train --name NAME --set S…` on two ranks with `fault`, and how long it took.
    func trainTwo(_ name: String, _ settings: [String], fault: String) throws -> (result: (code: Int32, out: String, err: String), seconds: Double) {
        let start = Date()
        let r = try runRanks(2, ["train", "--name", name, "--quiet"] + settings.flatMap { ["--set", $0] }, fault: fault)
        return (r, Date().timeIntervalSince(start))
    }

    func steps(_ run: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: tmp + "/runs/\(run)/metrics.jsonl", encoding: .utf8)
        return text.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }.filter { $0["kind"] as? String == "step" }
    }

    func incidents(_ run: String) throws -> [[String: Any]] {
        let path = tmp + "/runs/\(run)/incidents.jsonl"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
    }

    func finalModel(_ run: String) throws -> [String: Tensor] {
        let store = CheckpointStore(directory: tmp + "/runs/\(run)/checkpoints")
        return try store.loadLatest().checkpoint.tensors["model"] ?? [:]
    }

    func assertSameTraining(_ a: String, _ b: String, steps n: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let sa = try steps(a), sb = try steps(b)
        XCTAssertEqual(sa.count, n, file: file, line: line)
        XCTAssertEqual(sb.count, n, file: file, line: line)
        for (x, y) in zip(sa, sb) {
            for key in ["loss", "gradNorm"] {
                let u = x[key] as! Double, v = y[key] as! Double
                XCTAssertEqual(u, v, accuracy: 1e-5 * max(1, abs(u)), "\(key) at step \(x["step"]!)", file: file, line: line)
            }
        }
        let ma = try finalModel(a), mb = try finalModel(b)
        XCTAssertEqual(Set(ma.keys), Set(mb.keys), file: file, line: line)
        XCTAssertFalse(ma.isEmpty, file: file, line: line)
        for (name, t) in ma {
            let diff = zip(t.scalars, mb[name]!.scalars).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(diff, 1e-5, "parameter \(name)", file: file, line: line)
        }
    }

    func testTwoRanksWithBatchBEqualOneProcessWithBatch2B() throws {
        // The char LM with small buckets (many, started while backward runs), the MLP with one,
        // and the MLP over two micro-batches a step (only the last one's backward starts buckets).
        let cases: [(name: String, settings: [String], twoRanks: [String])] = [
            ("mlp", ["model.kind=mlp"], []),
            ("charlm", ["model.kind=charlm", "data.kind=text", "model.width=32", "data.sequence_length=32"], ["distributed.bucket_mb=0.05"]),
            ("accumulated", ["model.kind=mlp", "training.accumulation=2"], ["distributed.bucket_mb=0.01"])
        ]
        for (model, settings, twoRanks) in cases {
            let common = ["train", "--set", "training.max_steps=20", "--quiet"] + settings.flatMap { ["--set", $0] }
            let one = try run(common + ["--name", "\(model)-one", "--batch-size", "16"])
            XCTAssertEqual(one.code, 0, one.err)
            let two = try runRanks(2, common + ["--name", "\(model)-two", "--batch-size", "8"] + twoRanks.flatMap { ["--set", $0] })
            XCTAssertEqual(two.code, 0, two.err)
            try assertSameTraining("\(model)-one", "\(model)-two", steps: 20)
            // The records show the global batch and every rank.
            let last = try steps("\(model)-two").last!
            XCTAssertEqual(last["batch"] as? Int, model == "accumulated" ? 32 : 16)
            XCTAssertEqual((last["ranks"] as? [Any])?.count, 2)
            let env = try String(contentsOfFile: tmp + "/runs/\(model)-two/environment.txt", encoding: .utf8)
            XCTAssertTrue(env.contains("Open MPI, 2 ranks"), env)
        }
    }

    /// The curvature probe on two ranks: the Hessian-vector products are averaged, so both
    /// ranks read the same λ, warn and cap alike, and hold the same parameters at every step.
    func testCurvatureProbeAndCapAgreeOnEveryRank() throws {
        let r = try runRanks(
            2,
            ["train", "--name", "probe-two", "--quiet", "--batch-size", "8"]
                + [
                    "training.max_steps=12", "guard.curvature.every=2", "guard.curvature.iterations=5", "guard.curvature.batch=16",
                    "guard.curvature.warning=0.001", "guard.curvature.rise=1", "guard.curvature.cap=0.1", "distributed.check_every=1"
                ].flatMap { ["--set", $0] })
        XCTAssertEqual(r.code, 0, r.err)
        let probed = try steps("probe-two").filter { $0["lambdaMax"] != nil }
        XCTAssertEqual(probed.count, 6)
        XCTAssertTrue(try incidents("probe-two").contains { ($0["actions"] as? [String])?.contains { $0.hasPrefix("learning rate capped") } ?? false })
    }

    func testSyncBatchNormEqualsOneProcessAndPerRankStatisticsDoNot() throws {
        let common = ["train", "--set", "model.batch_norm=true", "--set", "training.max_steps=20", "--quiet"]
        XCTAssertEqual(try run(common + ["--name", "bn-one", "--batch-size", "16"]).code, 0)
        let synced = try runRanks(2, common + ["--name", "bn-sync", "--batch-size", "8", "--set", "model.sync_batch_norm=true"])
        XCTAssertEqual(synced.code, 0, synced.err)
        try assertSameTraining("bn-one", "bn-sync", steps: 20)
        // Per-rank statistics (DDP's default) normalise each half-batch alone: another run.
        let own = try runRanks(2, common + ["--name", "bn-own", "--batch-size", "8"])
        XCTAssertEqual(own.code, 0, own.err)
        let a = try steps("bn-one").last!["loss"] as! Double, b = try steps("bn-own").last!["loss"] as! Double
        XCTAssertGreaterThan(abs(a - b), 1e-3)
    }

    func testNaNOnOneRankIsSkippedByBothAndNamed() throws {
        let r = try runRanks(
            2, ["train", "--name", "nan", "--set", "training.max_steps=10", "--set", "distributed.check_every=1", "--quiet"],
            fault: "nan@rank=1,step=5,tensor=2.weight")
        XCTAssertEqual(r.code, 0, r.err)
        let skipped = try steps("nan").filter { $0["skipped"] as? Bool == true }
        XCTAssertEqual(skipped.count, 1)
        let inc = try incidents("nan")
        XCTAssertEqual(inc.count, 1)
        let finding = (inc.first?["findings"] as? [[String: Any]])?.first
        XCTAssertEqual(finding?["kind"] as? String, "nonFiniteGradient")
        XCTAssertEqual(finding?["ranks"] as? [Int], [1])
        XCTAssertTrue((finding?["message"] as? String ?? "").contains("rank 1, 2.weight: NaN"), "\(finding ?? [:])")
    }

    func testSpikeOnOneRankIsClippedAlikeAndNamed() throws {
        // check_every=1: the ranks' parameters are compared after every step.
        let r = try runRanks(
            2, ["train", "--name", "spike", "--set", "training.max_steps=14", "--set", "distributed.check_every=1", "--quiet"],
            fault: "spike@rank=1,step=10,factor=1000")
        XCTAssertEqual(r.code, 0, r.err)
        let s = try steps("spike").first { $0["step"] as? Int == 10 }!
        XCTAssertEqual(s["clipped"] as? Bool, true)
        let ranks = s["ranks"] as! [[String: Any]]
        XCTAssertGreaterThan((ranks[1]["gradNorm"] as! Double) / (ranks[0]["gradNorm"] as! Double), 100)
        let message = ((try incidents("spike").first?["findings"] as? [[String: Any]])?.first?["message"] as? String) ?? ""
        XCTAssertTrue(message.contains("rank 1's local gradient norm"), message)
    }

    func testRollbackRestoresTheSameSnapshotOnEveryRank() throws {
        // Repeated NaN escalates to rollbacks; every rollback is followed by a parameter check.
        let r = try runRanks(
            2,
            [
                "train", "--name", "rollback", "--set", "training.max_steps=14", "--set", "guard.snapshot_every=2",
                "--set", "distributed.check_every=1", "--quiet"
            ], fault: "nan@rank=1,step=6,count=3")
        XCTAssertEqual(r.code, 0, r.err)
        let actions = try incidents("rollback").flatMap { $0["actions"] as? [String] ?? [] }
        XCTAssertTrue(actions.contains { $0.hasPrefix("rolled back") }, "\(actions)")
    }

    func testHaltEndsEveryRankWithExitOne() throws {
        let (r, _) = try trainTwo("halt", ["training.max_steps=40", "guard.max_failed_recoveries=2"], fault: "nan@rank=1,step=3,count=100")
        XCTAssertEqual(r.code, 1, r.err)
        XCTAssertTrue(r.err.contains("diverged") || r.err.contains("halt"), r.err)
    }

    func testKilledRankEndsTheJobAndTheCheckpointResumesOnOneOrTwo() throws {
        let (r, _) = try trainTwo("kill", ["training.max_steps=20", "training.checkpoint_every=5"], fault: "kill@rank=1,step=8")
        XCTAssertNotEqual(r.code, 0)
        XCTAssertTrue((r.out + r.err).contains("rank 1"), r.out + r.err)
        // 2 → 1: the checkpoint of step 5 continues in one process…
        let one = try run(["resume", "kill", "--set", "training.max_steps=12", "--quiet"])
        XCTAssertEqual(one.code, 0, one.err)
        XCTAssertEqual(try finalModel("kill").isEmpty, false)
        // …and 1 → 2: on two ranks again.
        let two = try runRanks(2, ["resume", "kill", "--set", "training.max_steps=16", "--quiet"])
        XCTAssertEqual(two.code, 0, two.err)
        let last = try steps("kill").last!
        XCTAssertEqual(last["step"] as? Int, 15)
        XCTAssertEqual((last["ranks"] as? [Any])?.count, 2)
    }

    func testStalledRankEndsTheJobWithinTheWatchdogTimeAndIsNamed() throws {
        let (r, _) = try trainTwo("stall", ["training.max_steps=20", "distributed.timeout=3"], fault: "stall@rank=1,step=6")
        XCTAssertEqual(r.code, 7, r.err)
        XCTAssertTrue(r.err.contains("rank 1 last reported step 5"), r.err)
    }

    func testASwiftProgramRunsUnderMPIRunThroughTheLibrary() throws {
        let text = String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 200)
        try Data(text.utf8).write(to: URL(fileURLWithPath: tmp + "/book.txt"))
        let program = URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent("train-charlm").path
        guard let mpirun else { return XCTFail("mpirun is missing: Scripts/setup.sh installs openmpi-bin") }
        let env = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"]
        let r = try runProcess(mpirun, ["-np", "2", "--oversubscribe", program, "book.txt", "5"], in: tmp, environment: env)
        XCTAssertEqual(r.code, 0, r.err)
        // Rank 0 alone prints the result and the sample.
        XCTAssertEqual(r.out.components(separatedBy: "validation bits/char ").count - 1, 1, r.out)
    }
}
