import Foundation
import XCTest
import _TestSupport

/// A test case with a temporary working directory that runs the built `gradguard` binary in it.
class CLITestCase: TemporaryDirectoryTestCase {
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
        return try runProcess(binary, args, in: tmp)
    }
}
