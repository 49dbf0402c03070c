import Foundation
import XCTest
import _TestSupport

/// A test case with a temporary working directory that runs the built `gradguard` binary in it.
class CLITestCase: TemporaryDirectoryTestCase {
    /// A run small enough for a debug build: the built-in MLP, 2 layers, 128 examples, 1 epoch.
    let tiny = [
        "--set", "data.train=128", "--set", "data.validation=32", "--set", "model.layers=2", "--set", "training.epochs=1",
        "--quiet"
    ]

    var binary: String {
        // The executables are built beside the test bundle (.build/<triple>/debug/).
        let here = Bundle(for: CLITestCase.self).bundleURL
        let candidates = [here.appendingPathComponent("gradguard"), here.deletingLastPathComponent().appendingPathComponent("gradguard")]
        return (candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]).path
    }

    /// Runs `gradguard` with `args` in the temporary directory.
    @discardableResult
    func run(_ args: [String]) throws -> (code: Int32, out: String, err: String) {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            XCTFail("the gradguard executable is missing at \(binary): `swift test` builds it with the tests")
            return (-1, "", "")
        }
        let r = try runProcess(binary, args, in: tmp)
        // Every error a user can cause is a sentence: never Foundation's or Codable's dump.
        for dump in ["Domain=", "CodingKeys", "UserInfo", "DecodingError", "Fatal error"] {
            XCTAssertFalse(r.err.contains(dump), "\(args): the error output shows '\(dump)': \(r.err)")
        }
        return r
    }

    /// Runs `gradguard` with a time limit (a hang is a failure, not a stuck test) and, when
    /// given, a file-size limit in KiB (`ulimit -f`: writes past it fail as on a full disk).
    @discardableResult
    func run(_ args: [String], seconds: Int, fileSizeKiB: Int? = nil) throws -> (code: Int32, out: String, err: String) {
        let limit = fileSizeKiB.map { "ulimit -f \($0 * 2) 2>/dev/null || exit 99; " } ?? ""
        let r = try runProcess("/bin/sh", ["-c", limit + "exec timeout \(seconds) \"$0\" \"$@\"", binary] + args, in: tmp)
        XCTAssertNotEqual(r.code, 124, "\(args): still running after \(seconds) s")
        XCTAssertNotEqual(r.code, 99, "ulimit -f is not available")
        return r
    }
}
