import Foundation
import GradGuard
import XCTest
import _TestSupport

final class EventWriterTests: XCTestCase {
    func testCRC32CKnownValues() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)  // the standard check value
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)  // RFC 3720 B.4
    }

    /// Where Python with TensorBoard can be found (CI installs it: `pip install tensorboard`).
    func python() -> String? {
        // The first python3 on PATH (the one `pip install` served), then the system's.
        for p in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map({ "\($0)/python3" })
            + ["/usr/local/bin/python3", "/usr/bin/python3"] where FileManager.default.isExecutableFile(atPath: p)
        {
            return p
        }
        return nil
    }

    func testTensorBoardReadsTheEventFile() throws {
        guard let py = python() else { return XCTFail("python3 is not installed: Scripts/setup.sh installs it with the tensorboard package") }
        let dir = NSTemporaryDirectory() + "gradguard-tb-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let w = try EventWriter(directory: dir, wallTime: 1_700_000_000)
            for s in 0..<10 {
                try w.scalar("train/loss", 2 / Float(s + 1), step: s, wallTime: 1_700_000_000 + Double(s))
                try w.scalar("health/grad_norm", Float(s) * 0.5, step: s)
            }
            try w.histogram("grads/fc.weight", values: (0..<1000).map { Float($0 % 100) / 10 - 5 }, bins: 20, step: 3)
            w.flush()
        }
        let script = """
            import json, sys
            try:
                from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
            except ImportError:
                print("NO_TENSORBOARD"); sys.exit(0)
            acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "histograms": 0})
            acc.Reload()
            out = {"tags": acc.Tags()["scalars"], "hist": acc.Tags()["histograms"]}
            out["loss"] = [[e.step, e.value] for e in acc.Scalars("train/loss")]
            out["wall"] = acc.Scalars("train/loss")[0].wall_time
            h = acc.Histograms("grads/fc.weight")[0]
            out["h"] = {"step": h.step, "num": h.histogram_value.num, "min": h.histogram_value.min, "max": h.histogram_value.max,
                        "buckets": len(h.histogram_value.bucket), "sum": h.histogram_value.sum}
            print(json.dumps(out))
            """
        let (code, text, _) = try runProcess(py, ["-c", script, dir])
        // Python is here, so the reader must be too (Scripts/setup.sh installs it).
        XCTAssertFalse(text.contains("NO_TENSORBOARD"), "\(py) cannot import tensorboard: run python3 -m pip install tensorboard")
        if text.contains("NO_TENSORBOARD") { return }
        XCTAssertEqual(code, 0, text)
        let out = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text)
        XCTAssertEqual(Set(out["tags"] as! [String]), ["train/loss", "health/grad_norm"])
        XCTAssertEqual(out["hist"] as? [String], ["grads/fc.weight"])
        let loss = out["loss"] as! [[Double]]
        XCTAssertEqual(loss.count, 10)
        for (s, pair) in loss.enumerated() {
            XCTAssertEqual(pair[0], Double(s))
            XCTAssertEqual(pair[1], Double(2 / Float(s + 1)), accuracy: 1e-6)
        }
        XCTAssertEqual(out["wall"] as? Double, 1_700_000_000)
        let h = out["h"] as! [String: Double]
        XCTAssertEqual(h["step"], 3)
        XCTAssertEqual(h["num"], 1000)
        XCTAssertEqual(h["min"], -5)
        XCTAssertEqual(h["max"] ?? 0, 4.9, accuracy: 1e-6)
        XCTAssertEqual(h["buckets"], 20)
        XCTAssertEqual(h["sum"] ?? 0, -50, accuracy: 1e-3)
    }
}

final class EventWriterFileTests: TemporaryDirectoryTestCase {
    func testTwoWritersInOneSecondKeepBothFiles() throws {
        let a = try EventWriter(directory: tmp, wallTime: 1_700_000_000)
        try a.scalar("x", 1, step: 0)
        let b = try EventWriter(directory: tmp, wallTime: 1_700_000_000)
        try b.scalar("x", 2, step: 1)
        XCTAssertNotEqual(a.path, b.path)
        let sizes = try [a.path, b.path].map { try FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int ?? 0 }
        XCTAssertTrue(sizes.allSatisfy { $0 > 40 }, "\(sizes)")  // the header record and one scalar each
    }

    /// A write refused for want of room (a file-size limit here: the process ignores SIGXFSZ,
    /// as `gradguard` does, so the write fails with EFBIG as on a full disk) names the file,
    /// leaves the record file with whole records only, and leaves no temporary file behind.
    func testAFailedWriteIsThrownNamingTheFileAndLeavesNothingHalfWritten() throws {
        try withFileSizeLimit(4096) {
            let records = try AppendFile(path: tmp + "/records")
            try records.append([UInt8](repeating: 1, count: 3000))
            XCTAssertThrowsError(try records.append([UInt8](repeating: 2, count: 3000))) {
                XCTAssertEqual("\($0)", "cannot write \(self.tmp)/records: File too large")
            }
            XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: tmp + "/records")[.size] as? Int, 3000, "the record that did not fit is cut off")
            XCTAssertThrowsError(try AtomicFile.write(Data(count: 8000), to: tmp + "/report.html"))
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp).sorted(), ["records"], "no temporary file is left")
        }
        // Records are never written through a link, nor into a device or a FIFO.
        try FileManager.default.createSymbolicLink(atPath: tmp + "/link", withDestinationPath: tmp + "/records")
        XCTAssertThrowsError(try AppendFile(path: tmp + "/link")) { XCTAssertTrue("\($0)".contains("symbolic link"), "\($0)") }
        XCTAssertThrowsError(try AppendFile(path: "/dev/null")) { XCTAssertTrue("\($0)".contains("not a regular file"), "\($0)") }
    }
}
