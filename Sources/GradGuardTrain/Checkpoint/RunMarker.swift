import Foundation
import GradGuardTensor

/// The mark GradGuard leaves in every run directory it creates (`.gradguard-run`, a JSON
/// object with a format version). `train --overwrite` replaces only a marked directory: a
/// folder that merely looks like a run (it holds a `config.yaml`) is never deleted.
public enum RunMarker {
    /// The marker's file name inside a run directory.
    public static let fileName = ".gradguard-run"
    /// The marker's format version.
    public static let format = 1

    struct Contents: Codable {
        let kind: String
        let format: Int
    }

    /// Marks `directory` as a run (durably).
    public static func write(in directory: String) throws {
        let data = try JSONEncoder().encode(Contents(kind: "gradguard-run", format: format))
        try AtomicFile.write(data + Data([0x0A]), to: directory + "/" + fileName)
    }

    /// Whether `directory` carries a marker GradGuard wrote (any format up to this one).
    public static func isMarked(_ directory: String) -> Bool {
        guard let data = try? FileContents.read(directory + "/" + fileName, limit: 4096),
            let c = try? JSONDecoder().decode(Contents.self, from: data)
        else { return false }
        return c.kind == "gradguard-run" && (1...format).contains(c.format)
    }

    /// Whether `directory` is missing, or holds nothing but a lock or a marker: a place a new
    /// run may be made.
    static func isFresh(_ directory: String) -> Bool {
        guard FileManager.default.fileExists(atPath: directory) else { return true }
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return false }
        return entries.allSatisfy { $0 == RunLock.fileName || $0 == fileName }
    }
}
