import Foundation
import GradGuard
import XCTest
import _TestSupport

/// The command line of issue 27: `gradguard lr-find`, `optimizer.lr: auto`, and a run with the
/// curvature probe whose records, report and diagnosis carry the stability margin.
final class ForesightCommandTests: CLITestCase {
    func testLRFindPrintsAPictureAndWritesAPage() throws {
        let settings = Array(tiny.dropLast())  // lr-find prints a picture: no --quiet
        let r = try run(["lr-find", "--steps", "30", "--curvature-iterations", "5", "--out", "page.html"] + settings)
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.contains("suggested rate"), r.out)
        XCTAssertTrue(r.out.contains("stability limit"), r.out)
        let page = try String(contentsOfFile: tmp + "/page.html", encoding: .utf8)
        XCTAssertTrue(page.contains("<svg") && page.contains("suggested rate"), page)
        let json = try run(["lr-find", "--steps", "20", "--json", "--curvature-iterations", "0"] + settings)
        XCTAssertEqual(json.code, 0, json.err)
        let object = try JSONSerialization.jsonObject(with: Data(json.out.utf8)) as? [String: Any]
        XCTAssertNotNil(object?["suggestion"] as? Double, json.out)
        // Bad options are sentences with the usage code.
        let bad = try run(["lr-find", "--rule", "nope"])
        XCTAssertEqual(bad.code, 2)
        XCTAssertTrue(bad.err.contains("--rule must be one of valley, steepest, minimum"), bad.err)
        let range = try run(["lr-find", "--start", "1", "--end", "0.1"])
        XCTAssertEqual(range.code, 2)
    }

    func testAutoRateIsFoundAndWrittenIntoTheConfig() throws {
        let r = try run(["train", "--name", "auto", "--set", "optimizer.lr=auto", "--set", "training.max_steps=3"] + tiny)
        XCTAssertEqual(r.code, 0, r.err)
        let yaml = try String(contentsOfFile: tmp + "/runs/auto/config.yaml", encoding: .utf8)
        let line = try XCTUnwrap(yaml.components(separatedBy: "\n").first { $0.trimmingCharacters(in: .whitespaces).hasPrefix("lr:") })
        let value = line.split(separator: ":")[1].split(separator: "#")[0].trimmingCharacters(in: .whitespaces)
        XCTAssertNotNil(Double(value), "config.yaml holds the rate found, not 'auto': \(line)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp + "/runs/auto/lr-find.html"))
    }

    func testProbeRecordsTheMarginAndDiagnoseReportsIt() throws {
        let r = try run(
            ["train", "--name", "probed"] + tiny
                + ["--set", "guard.curvature.every=2", "--set", "guard.curvature.iterations=5", "--set", "training.epochs=3", "--set", "training.max_steps=6"])
        XCTAssertEqual(r.code, 0, r.err)
        let steps = try RunRecords.metrics(in: tmp + "/runs/probed").steps
        XCTAssertEqual(steps.filter { $0.lambdaMax != nil }.map(\.step), [0, 2, 4])
        let probed = try XCTUnwrap(steps.first { $0.stabilityMargin != nil })
        XCTAssertEqual(probed.stabilityMargin!, probed.lr * probed.lambdaMax! / (2 + 2 * 0.9), accuracy: 1e-9)
        let d = try run(["diagnose", "probed"])
        XCTAssertTrue(d.out.contains("curvature: 3 probes"), d.out)
        let report = try run(["report", "probed"])
        XCTAssertEqual(report.code, 0, report.err)
        let html = try String(contentsOfFile: tmp + "/runs/probed/report.html", encoding: .utf8)
        XCTAssertTrue(html.contains("chart-curvature"))
    }
}
