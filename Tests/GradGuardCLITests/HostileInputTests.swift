import Foundation
import GradGuard
import XCTest
import _TestSupport

@testable import GradGuardCLI
@testable import GradGuardRuns

/// The second round of hostile input, each a class of defect with a case of its own and a
/// variant: nothing a user owns is deleted or written through, nothing traps, nothing waits
/// on a FIFO or expands without bound, and every failure is a sentence with its exit code.
final class HostileInputTests: CLITestCase {
    func write(_ text: String, _ name: String) {
        let path = tmp + "/" + name
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
    }

    func contents(_ name: String) -> String? { FileManager.default.contents(atPath: tmp + "/" + name).map { String(decoding: $0, as: UTF8.self) } }

    // MARK: Data lost

    /// `--overwrite` replaces only a directory GradGuard marked as a run: a project folder
    /// with a config.yaml, or a run whose marker is gone, is left whole.
    func testOverwriteReplacesOnlyMarkedRuns() throws {
        write("lr: 1\n", "runs/project/config.yaml")
        write("print(1)\n", "runs/project/src/main.py")
        write("notes\n", "runs/project/notes.txt")
        var r = try run(["train", "--name", "project", "--overwrite"] + tiny)
        XCTAssertEqual(r.code, 2, r.err)
        XCTAssertTrue(r.err.contains("not a run directory GradGuard made"), r.err)
        XCTAssertEqual(contents("runs/project/src/main.py"), "print(1)\n")
        XCTAssertEqual(contents("runs/project/notes.txt"), "notes\n")
        // A real run is marked and replaced; without its marker it is not.
        XCTAssertEqual(try run(["train", "--name", "a"] + tiny).code, 0)
        XCTAssertTrue(RunMarker.isMarked(tmp + "/runs/a"))
        XCTAssertEqual(try run(["train", "--name", "a", "--overwrite"] + tiny).code, 0)
        try FileManager.default.removeItem(atPath: tmp + "/runs/a/" + RunMarker.fileName)
        r = try run(["train", "--name", "a", "--overwrite"] + tiny)
        XCTAssertEqual(r.code, 2, r.err)
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp + "/runs/a/metrics.jsonl"))
        // A marker that is not GradGuard's (another format) is no marker.
        write("{\"kind\": \"gradguard-run\", \"format\": 99}", "runs/a/" + RunMarker.fileName)
        XCTAssertEqual(try run(["train", "--name", "a", "--overwrite"] + tiny).code, 2)
    }

    /// An output never replaces an input of the same command.
    func testOutputsNeverReplaceInputs() throws {
        write("seed: 0\n", "runs/d/config.yaml")
        write("not really an image", "photos/a.png")
        var r = try run(["detect", "d", "--images", "photos", "--out", "photos"])
        XCTAssertEqual(r.code, 2, r.err)
        XCTAssertTrue(r.err.contains("would write over the images"), r.err)
        // The same folder by another spelling, and a labels folder that is the images folder.
        r = try run(["detect", "d", "--images", "photos", "--out", "./photos/../photos/"])
        XCTAssertEqual(r.code, 2, r.err)
        r = try run(["detect", "d", "--images", "out/labels", "--out", "out"])
        XCTAssertEqual(r.code, 2, r.err)
        XCTAssertEqual(contents("photos/a.png"), "not really an image")
        // compare's page never replaces a run's file; train --overwrite never deletes its own data.
        XCTAssertEqual(try run(["train", "--name", "a"] + tiny).code, 0)
        let config = contents("runs/a/config.yaml")
        r = try run(["compare", "a", "--output", "runs/a/config.yaml"])
        XCTAssertEqual(r.code, 2, r.err)
        XCTAssertEqual(contents("runs/a/config.yaml"), config)
        write("hello world, a text to learn from. ", "runs/lm/text.txt")
        write("", "runs/lm/" + RunMarker.fileName)
        r = try run(["train", "--name", "lm", "--overwrite", "--set", "model.kind=charlm", "--set", "data.kind=text", "--set", "data.path=runs/lm/text.txt"])
        XCTAssertEqual(r.code, 2, r.err)
        XCTAssertNotNil(contents("runs/lm/text.txt"))
    }

    /// Nothing is written through a symbolic link planted in a run: not the lock, not the
    /// records. The link's target stays as it was.
    func testLinksInARunAreNeverWrittenThrough() throws {
        XCTAssertEqual(try run(["train", "--name", "a"] + tiny).code, 0)
        write("precious", "victim.txt")
        try FileManager.default.removeItem(atPath: tmp + "/runs/a/.lock")
        try FileManager.default.createSymbolicLink(atPath: tmp + "/runs/a/.lock", withDestinationPath: tmp + "/victim.txt")
        var r = try run(["resume", "a", "--set", "training.epochs=2", "--quiet"])
        XCTAssertEqual(r.code, 5, r.err)
        XCTAssertTrue(r.err.contains("symbolic link"), r.err)
        XCTAssertEqual(contents("victim.txt"), "precious")
        try FileManager.default.removeItem(atPath: tmp + "/runs/a/.lock")
        try FileManager.default.removeItem(atPath: tmp + "/runs/a/metrics.jsonl")
        try FileManager.default.createSymbolicLink(atPath: tmp + "/runs/a/metrics.jsonl", withDestinationPath: tmp + "/victim.txt")
        r = try run(["resume", "a", "--set", "training.epochs=2", "--quiet"])
        XCTAssertEqual(r.code, 5, r.err)
        XCTAssertTrue(r.err.contains("runs/a/metrics.jsonl: is a symbolic link"), r.err)
        XCTAssertEqual(contents("victim.txt"), "precious")
    }

    /// A write that fails for want of room ends in a sentence naming the file, exit 5.
    func testAFailedWriteNamesTheFile() throws {
        XCTAssertEqual(try run(["train", "--name", "a"] + tiny).code, 0)
        let r = try run(["resume", "a", "--set", "training.epochs=2", "--quiet"], seconds: 300, fileSizeKiB: 4)
        XCTAssertEqual(r.code, 5, r.err)
        XCTAssertTrue(r.err.contains("cannot write runs/a/") && r.err.contains("File too large"), r.err)
    }

    /// A demo replaces only its own earlier runs, never a folder of the same name that
    /// GradGuard did not make.
    func testDemosReplaceOnlyTheirOwnRuns() throws {
        let demo = ["demo", "rnn", "--steps", "4", "--length", "6", "--cells", "lstm", "--runs-directory", "mine"]
        write("keep", "mine/lstm-unguarded/notes.txt")
        var r = try run(demo)
        XCTAssertEqual(r.code, 2, r.err)
        XCTAssertTrue(r.err.contains("is not a run GradGuard made"), r.err)
        XCTAssertEqual(contents("mine/lstm-unguarded/notes.txt"), "keep")
        try FileManager.default.removeItem(atPath: tmp + "/mine")
        XCTAssertEqual(try run(demo).code, 0)
        r = try run(demo)
        XCTAssertEqual(r.code, 0, "a demo's own runs are replaced: \(r.err)")
    }

    /// `data shapes` writes only into a new or empty folder, or over a dataset it made.
    func testShapesNeverMixesIntoAnotherFolder() throws {
        write("path: .\ntrain: images/train\nval: images/val\nnames: [cat]\n", "mine/data.yaml")
        write("x", "mine/images/train/cat.png")
        var r = try run(["data", "shapes", "--out", "mine", "--train", "2", "--val", "1"])
        XCTAssertEqual(r.code, 2, r.err)
        r = try run(["data", "shapes", "--out", "mine", "--train", "2", "--val", "1", "--overwrite"])
        XCTAssertEqual(r.code, 2, r.err)
        XCTAssertEqual(contents("mine/data.yaml"), "path: .\ntrain: images/train\nval: images/val\nnames: [cat]\n")
        XCTAssertEqual(contents("mine/images/train/cat.png"), "x")
        XCTAssertEqual(try run(["data", "shapes", "--out", "s", "--train", "2", "--val", "1"]).code, 0)
        XCTAssertEqual(try run(["data", "shapes", "--out", "s", "--train", "2", "--val", "1"]).code, 2)
        XCTAssertEqual(try run(["data", "shapes", "--out", "s", "--train", "3", "--val", "1", "--overwrite"]).code, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp + "/s/images/train").count, 3)
    }

    // MARK: Numbers out of range

    /// Negative or oversized numbers are usage errors before any work, never a trap.
    func testNumbersOutOfRangeAreUsageErrors() throws {
        for (args, says) in [
            (["generate", "nope", "--seed=-1"], "--seed"), (["generate", "nope", "--length", "1000000000000"], "--length"),
            (["generate", "nope", "--top-k", "0"], "--top-k"), (["generate", "nope", "--temperature", "nan"], "--temperature"),
            (["data", "shapes", "--out", "x", "--seed=-1"], "--seed"), (["data", "shapes", "--out", "x", "--train", "1000000000"], "--train"),
            (["demo", "rnn", "--seed=-1"], "--seed"), (["demo", "rnn", "--length", "0"], "--length"), (["demo", "rnn", "--lr", "nan"], "--lr"),
            (["demo", "rnn", "--steps", "-3"], "--steps"), (["replay", "nope", "--incident", "1", "--top=-5"], "--top"),
            (["replay", "nope", "--incident", "0"], "--incident"), (["translate", "nope", "--beam", "-2"], "--beam"),
            (["train", "--lr", "-1"], "optimizer.lr"), (["train", "--epochs", "-1"], "training.epochs")
        ] {
            let r = try run(args)
            XCTAssertEqual(r.code, 2, "\(args): \(r.err)")
            XCTAssertTrue(r.err.contains(says), "\(args): \(r.err)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/x"))
    }

    /// A checkpoint's state.json and a replay record that verify but hold positions no run
    /// writes are refused with a sentence (exit 4), not a trap.
    func testDamagedStateIsATypedError() throws {
        XCTAssertEqual(try run(["train", "--name", "a"] + tiny).code, 0)
        let checkpoint = try XCTUnwrap(CheckpointStore(directory: tmp + "/runs/a/checkpoints").list().first?.path)
        // Rewrite state.json with a negative position and a manifest that agrees with it.
        var state = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: checkpoint + "/state.json"))) as? [String: Any])
        state["batchInEpoch"] = -5
        let data = try JSONSerialization.data(withJSONObject: state)
        try data.write(to: URL(fileURLWithPath: checkpoint + "/state.json"))
        var manifest = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: checkpoint + "/manifest.json"))) as? [String: Any])
        var files = try XCTUnwrap(manifest["files"] as? [String: Any])
        files["state.json"] = ["bytes": data.count, "crc32c": CRC32C.checksum(data)]
        manifest["files"] = files
        try JSONSerialization.data(withJSONObject: manifest).write(to: URL(fileURLWithPath: checkpoint + "/manifest.json"))
        var r = try run(["resume", "a", "--set", "training.epochs=2", "--quiet"])
        XCTAssertEqual(r.code, 4, r.err)
        XCTAssertTrue(r.err.contains("state.json is invalid: batchInEpoch -5 is negative"), r.err)
        // A key missing from the state is named as a key, not as Codable's dump.
        state.removeValue(forKey: "epoch")
        let missing = try JSONSerialization.data(withJSONObject: state)
        try missing.write(to: URL(fileURLWithPath: checkpoint + "/state.json"))
        files["state.json"] = ["bytes": missing.count, "crc32c": CRC32C.checksum(missing)]
        manifest["files"] = files
        try JSONSerialization.data(withJSONObject: manifest).write(to: URL(fileURLWithPath: checkpoint + "/manifest.json"))
        r = try run(["resume", "a", "--set", "training.epochs=2", "--quiet"])
        XCTAssertEqual(r.code, 4, r.err)
        XCTAssertTrue(r.err.contains("missing key 'epoch'"), r.err)
    }

    /// A config.yaml edited to another clipper: the checkpoint's clipper state does not fit
    /// (exit 4 with a sentence, not an internal error).
    func testAnEditedClipperIsACheckpointError() throws {
        XCTAssertEqual(try run(["train", "--name", "a"] + tiny).code, 0)
        let path = tmp + "/runs/a/config.yaml"
        let edited = try String(contentsOfFile: path, encoding: .utf8).replacingOccurrences(of: "clipper: global-norm", with: "clipper: zclip")
            .split(separator: "\n").filter { !$0.contains("max_norm") }.joined(separator: "\n")
        try edited.write(toFile: path, atomically: true, encoding: .utf8)
        let r = try run(["resume", "a", "--set", "training.epochs=2", "--quiet"])
        XCTAssertEqual(r.code, 4, r.err)
        XCTAssertTrue(r.err.contains("was config.yaml edited?"), r.err)
    }

    // MARK: Bounded memory and time; no hangs

    /// FIFOs and directories are refused before they are opened for reading: as a config,
    /// a corpus, a pairs file and a dataset's image.
    func testNonRegularFilesAreRefusedWithoutWaiting() throws {
        XCTAssertEqual(mkfifo(tmp + "/fifo", 0o644), 0)
        for args in [
            ["train", "--config", "fifo"], ["train", "--name", "t", "--set", "model.kind=charlm", "--set", "data.kind=text", "--set", "data.path=fifo"],
            ["train", "--name", "p", "--set", "model.kind=seq2seq", "--set", "data.kind=pairs", "--set", "data.path=fifo"], ["inspect", "fifo.safetensors"]
        ] {
            if args.last == "fifo.safetensors" { XCTAssertEqual(mkfifo(tmp + "/fifo.safetensors", 0o644), 0) }
            let r = try run(args, seconds: 60)
            XCTAssertEqual(r.code, 3, "\(args): \(r.err)")
            XCTAssertTrue(r.err.contains("not a regular file"), "\(args): \(r.err)")
        }
        var r = try run(["train", "--config", "."], seconds: 60)
        XCTAssertEqual(r.code, 3, r.err)
        XCTAssertTrue(r.err.contains("is a directory"), r.err)
        XCTAssertEqual(try run(["data", "shapes", "--out", "ds", "--train", "2", "--val", "2"]).code, 0)
        try FileManager.default.removeItem(atPath: tmp + "/ds/images/val/val_00000.png")
        XCTAssertEqual(mkfifo(tmp + "/ds/images/val/val_00000.png", 0o644), 0)
        r = try run(["data", "check", "ds/data.yaml"], seconds: 60)
        XCTAssertEqual(r.code, 3, r.err)
        XCTAssertTrue(r.out.contains("val_00000.png") && r.out.contains("not a regular file"), r.out)
    }

    /// Aliases nested on aliases used as mapping keys are refused at once, in a config and
    /// in a data.yaml; a plain alias as a value still works.
    func testYAMLAliasExpansionIsBounded() throws {
        // Each level a mapping whose keys are the level below and a list of it twice: composing
        // it hashes keys that double in size at every level (past 20 s before the fix).
        var bomb = "a0: &a0 {x: 1}\n"
        for i in 1...21 { bomb += "a\(i): &a\(i) {*a\(i - 1) : 1, [*a\(i - 1), *a\(i - 1)]: 2}\n" }
        write(bomb, "bomb.yaml")
        var r = try run(["train", "--config", "bomb.yaml", "--name", "z"], seconds: 20)
        XCTAssertEqual(r.code, 2, r.err)
        XCTAssertTrue(r.err.contains("bomb.yaml:2") && r.err.contains("used as a key"), r.err)
        // The values' variant: a list doubled ten times over is refused by its expanded size.
        var values = "a0: &a0 [x, x]\n"
        for i in 1...20 { values += "a\(i): &a\(i) [*a\(i - 1), *a\(i - 1)]\n" }
        write("path: .\ntrain: t\nval: v\n" + values.replacingOccurrences(of: "a20: &a20", with: "names: &a20"), "data.yaml")
        r = try run(["data", "check", "data.yaml"], seconds: 20)
        XCTAssertEqual(r.code, 3, r.err)
        XCTAssertTrue(r.err.contains("expand to more than"), r.err)
        write("seed: &s 3\ntraining:\n  epochs: *s\n  max_steps: 1\n", "ok.yaml")
        XCTAssertEqual(try run(["train", "--config", "ok.yaml", "--name", "ok", "--quiet"] + tiny.prefix(6)).code, 0)
        XCTAssertTrue(contents("runs/ok/config.yaml")?.contains("epochs: 3") ?? false)
    }

    /// Sizes are checked before anything is read whole or allocated: a corpus past its limit
    /// (a sparse file: no disk is used), a data.yaml with too many classes, a padded PNG, a
    /// sentence longer than the limit.
    func testSizesAreCheckedBeforeReading() throws {
        let big = tmp + "/big.txt"
        XCTAssertTrue(FileManager.default.createFile(atPath: big, contents: nil))
        XCTAssertEqual(truncate(big, off_t(CharCorpus.maxFileBytes + 1)), 0)
        var r = try run(["train", "--name", "t", "--set", "model.kind=charlm", "--set", "data.kind=text", "--set", "data.path=big.txt"], seconds: 60)
        XCTAssertEqual(r.code, 3, r.err)
        XCTAssertTrue(r.err.contains("more than the 268.4 MB limit"), r.err)
        XCTAssertEqual(rename(big, tmp + "/big.tsv"), 0)
        r = try run(["train", "--name", "p", "--set", "model.kind=seq2seq", "--set", "data.kind=pairs", "--set", "data.path=big.tsv"], seconds: 60)
        XCTAssertEqual(r.code, 3, r.err)
        write("path: .\ntrain: t\nval: v\nnames: [" + (0...DetectionDataConfig.maxClasses).map { "c\($0)" }.joined(separator: ", ") + "]\n", "many.yaml")
        r = try run(["data", "check", "many.yaml"], seconds: 60)
        XCTAssertEqual(r.code, 3, r.err)
        XCTAssertTrue(r.err.contains("more than the \(DetectionDataConfig.maxClasses)"), r.err)
        // A 16×16 PNG padded far past what 256 pixels can take.
        var png = try RGBImage(width: 16, height: 16).pngData()
        png.append(Data(count: 4 << 20))
        try png.write(to: URL(fileURLWithPath: tmp + "/padded.png"))
        XCTAssertThrowsError(try RGBImage.read(path: tmp + "/padded.png")) { XCTAssertTrue("\($0)".contains("limit"), "\($0)") }
        r = try run(["translate", "nope", String(repeating: "x", count: 10_001)])
        XCTAssertEqual(r.code, 2, r.err)
    }

    /// Every pairs line is checked as it is read: the first bad line is the error, with
    /// its number, whatever follows it.
    func testPairsAreReadLineByLine() throws {
        var lines = ["one\t1", "a side longer than allowed \(String(repeating: "y", count: TranslationPair.maxLength))\t2"]
        lines += Array(repeating: "no tab here", count: 10)
        write(lines.joined(separator: "\n"), "pairs.tsv")
        XCTAssertThrowsError(try TranslationPair.load(path: tmp + "/pairs.tsv")) {
            XCTAssertTrue("\($0)".contains("pairs.tsv:2") && "\($0)".contains("more than the \(TranslationPair.maxLength)"), "\($0)")
        }
        var seen: [Int] = []
        write("a\nb\r\nc", "lines.txt")
        XCTAssertThrowsError(
            try FileContents.forEachLine(tmp + "/lines.txt") { n, bytes in
                seen.append(n)
                if bytes.elementsEqual("b".utf8) { throw CocoaError(.userCancelled) }
            })
        XCTAssertEqual(seen, [1, 2], "the line after the error is never read")
    }

    // MARK: Codes and sentences

    func testFileProblemsHaveTheirDocumentedCodes() throws {
        _ = FileManager.default.createFile(atPath: tmp + "/afile", contents: Data())
        var r = try run(["train", "--name", "x", "--set", "runs_directory=afile"] + tiny)
        XCTAssertEqual(r.code, 5, r.err)
        XCTAssertTrue(r.err.contains("cannot write afile/x: Not a directory"), r.err)
        r = try run(["data", "shapes", "--out", "/proc/gradguard-shapes", "--train", "2", "--val", "1"])
        XCTAssertEqual(r.code, 5, r.err)
        r = try run(["compare", "nope"])
        XCTAssertEqual(r.code, 3, r.err)
        // A config that is not UTF-8 makes no folder with replacement characters.
        _ = FileManager.default.createFile(atPath: tmp + "/latin1.yaml", contents: Data("name: caf\u{E9}\n".utf8.map { $0 }.dropLast(3) + [0xE9, 0x0A]))
        r = try run(["train", "--config", "latin1.yaml"] + tiny)
        XCTAssertEqual(r.code, 2, r.err)
        XCTAssertTrue(r.err.contains("latin1.yaml:1: not UTF-8"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/runs"))
        // No checkpoint: exit 4.
        XCTAssertEqual(try run(["train", "--name", "a"] + tiny).code, 0)
        try FileManager.default.removeItem(atPath: tmp + "/runs/a/checkpoints")
        r = try run(["eval", "a"])
        XCTAssertEqual(r.code, 4, r.err)
        XCTAssertTrue(r.err.contains("no loadable checkpoint"), r.err)
        r = try run(["env"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.contains("cores: ") && r.out.contains("kernels: "), r.out)
    }

    /// A torn last line of the records (a crash mid-write) is skipped by every reader and
    /// cut off by resume, which then appends whole lines.
    func testATornRecordLineIsTolerated() throws {
        XCTAssertEqual(try run(["train", "--name", "a"] + tiny).code, 0)
        let metrics = tmp + "/runs/a/metrics.jsonl"
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: metrics))
        handle.seekToEndOfFile()
        handle.write(Data("{\"kind\":\"step\",\"step\":9".utf8))
        handle.closeFile()
        for command in [["report", "a"], ["diagnose", "a"], ["compare", "a"]] {
            let r = try run(command)
            XCTAssertEqual(r.code, 0, "\(command): \(r.err)")
        }
        let r = try run(["resume", "a", "--set", "training.epochs=2", "--quiet"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.err.contains("its last line is cut short"), r.err)
        let lines = try XCTUnwrap(contents("runs/a/metrics.jsonl")).split(separator: "\n")
        for line in lines { XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(line.utf8)), String(line)) }
    }

    /// Data changed between train and resume are named and refused unless allowed.
    func testChangedDataAreDetectedOnResume() throws {
        write((0..<300).map { "\($0)\t\($0 * 2)" }.joined(separator: "\n") + "\n", "pairs.tsv")
        let settings = ["--set", "model.kind=seq2seq", "--set", "data.kind=pairs", "--set", "data.path=pairs.tsv", "--set", "training.max_steps=2", "--quiet"]
        XCTAssertEqual(try run(["train", "--name", "p"] + settings).code, 0)
        XCTAssertEqual(try run(["resume", "p", "--set", "training.max_steps=3", "--quiet"]).code, 0)
        // Same size, other contents: the checksum sees it.
        write(
            (0..<300).map { "\($0)\t\($0 * 3 % 10 == 0 ? $0 * 2 : $0 * 2)" }.joined(separator: "\n").replacingOccurrences(of: "7\t14", with: "7\t41") + "\n",
            "pairs.tsv")
        var r = try run(["resume", "p", "--set", "training.max_steps=4", "--quiet"])
        XCTAssertEqual(r.code, 2, r.err)
        XCTAssertTrue(r.err.contains("the data changed since the run started") && r.err.contains("same size but other contents"), r.err)
        r = try run(["resume", "p", "--set", "training.max_steps=4", "--quiet", "--allow-data-change"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertEqual(try run(["resume", "p", "--set", "training.max_steps=5", "--quiet"]).code, 0, "the new data are the run's from then on")
    }

    /// Control characters a user typed are echoed as escapes, never raw.
    func testControlCharactersAreEscaped() {
        XCTAssertEqual(printable("a\u{1B}[31mb\n"), "a\\u{1B}[31mb\\n")
        XCTAssertEqual(printable("café ✓"), "café ✓")
    }
}
