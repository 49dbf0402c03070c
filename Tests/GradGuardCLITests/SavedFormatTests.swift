import Foundation
import GradGuard
import GradGuardRuns
import XCTest
import _TestSupport

/// Run directories written before the settings became sections and the guard's step moved to
/// the trainer (Tests/Fixtures/runs-2026-12-07, written by the build of commit b9be3b8): each
/// saved format still loads — config.yaml in its old order, the checkpoint's state.json
/// (trainer, guard, ZClip and Adam state), the optimizer and model tensors, the records, a
/// replay record.
final class SavedFormatTests: CLITestCase {
    func copyRuns() throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: tmp + "/runs", withIntermediateDirectories: true)
        for name in ["adam-zclip", "sgd-spike"] {
            try fm.copyItem(atPath: fixturePath("runs-2026-12-07/" + name), toPath: tmp + "/runs/" + name)
        }
    }

    func testAnEarlierRunResumesWithItsOptimizerClipperAndGuardState() throws {
        try copyRuns()
        let saved = try RunConfig.load(path: tmp + "/runs/adam-zclip/config.yaml")
        XCTAssertEqual(saved.optimizer.kind, .adam)
        XCTAssertEqual(saved.guard.clipper, .zclip)
        XCTAssertEqual(saved.guard.clipping.zWarmupSteps, 2)
        let r = try run(["resume", "adam-zclip", "--quiet", "--set", "training.max_steps=9"])
        XCTAssertEqual(r.code, 0, r.err)
        let metrics = try String(contentsOfFile: tmp + "/runs/adam-zclip/metrics.jsonl", encoding: .utf8)
        XCTAssertTrue(metrics.contains("\"step\":8"), metrics)
        // The resumed steps read the saved Adam moments and ZClip statistics: a resume changing
        // the clipper is refused, as ever.
        let other = try run(["resume", "adam-zclip", "--quiet", "--set", "guard.clipper=value", "--set", "training.max_steps=10"])
        XCTAssertEqual(other.code, 2, other.err)
    }

    func testAnEarlierRunsReportReplayAndDiagnosisStillWork() throws {
        try copyRuns()
        XCTAssertEqual(try run(["report", "sgd-spike"]).code, 0)
        let replay = try run(["replay", "sgd-spike", "--incident", "1", "--top", "2"])
        XCTAssertEqual(replay.code, 0, replay.err)
        XCTAssertTrue(replay.out.contains("every norm identical to the step's, bit for bit"), replay.out)
        let diagnose = try run(["diagnose", "sgd-spike"])
        XCTAssertEqual(diagnose.code, 0, diagnose.err)
        let resumed = try run(["resume", "sgd-spike", "--quiet", "--set", "training.max_steps=14"])
        XCTAssertEqual(resumed.code, 0, resumed.err)
    }
}
