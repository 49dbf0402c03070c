import Foundation
import GradGuardTensor

/// What is wrong with a checkpoint, naming it.
public enum CheckpointError: Error, CustomStringConvertible, Equatable {
    case missingManifest(checkpoint: String)
    case badManifest(checkpoint: String, reason: String)
    case missingFile(checkpoint: String, file: String)
    case checksumMismatch(checkpoint: String, file: String, expected: UInt32, found: UInt32)
    case sizeMismatch(checkpoint: String, file: String, expected: Int, found: Int)
    case noCheckpoint(directory: String)
    case unreadable(checkpoint: String, file: String, reason: String)
    /// `state.json` verified against the manifest but holds something no run writes.
    case badState(checkpoint: String, reason: String)

    /// The checkpoint and what is wrong with it, in one sentence.
    public var description: String {
        switch self {
        case let .missingManifest(c): return "checkpoint \(c): manifest.json is missing (an interrupted save?)"
        case let .badManifest(c, r): return "checkpoint \(c): manifest.json is invalid: \(r)"
        case let .missingFile(c, f): return "checkpoint \(c): \(f) is missing"
        case let .checksumMismatch(c, f, e, x):
            return "checkpoint \(c): \(f) is corrupt (CRC-32C \(String(format: "%08x", x)), manifest says \(String(format: "%08x", e)))"
        case let .sizeMismatch(c, f, e, x): return "checkpoint \(c): \(f) is truncated or padded (\(x) bytes, manifest says \(e))"
        case let .noCheckpoint(d): return "no loadable checkpoint in \(d)"
        case let .unreadable(c, f, r): return "checkpoint \(c): cannot read \(f): \(r)"
        case let .badState(c, r): return "checkpoint \(c): state.json is invalid: \(r)"
        }
    }
}

/// One checkpoint's manifest: the files with their sizes and CRC-32C checksums.
struct CheckpointManifest: Codable {
    struct Entry: Codable { let bytes: Int; let crc32c: UInt32 }
    var format = 1
    let step: Int
    let metric: Double?
    let files: [String: Entry]
}

/// A checkpoint read back and verified.
public struct LoadedCheckpoint {
    /// The checkpoint's folder.
    public let path: String
    /// The step it was taken at.
    public let step: Int
    /// The validation loss it was taken with, when there was one.
    public let metric: Double?
    /// Tensor files by name (`"model"`, `"optimizer"`).
    public let tensors: [String: [String: Tensor]]
    /// The JSON state saved beside them.
    public let state: Data
}

/// A directory of checkpoints `step-00000123/`, each written atomically: files go to a
/// hidden temporary directory and are flushed, the manifest with every file's size and
/// CRC-32C comes last, then the directory is renamed into place and the parent flushed.
/// A process killed during a save leaves at most a temporary directory, which is ignored
/// and cleaned up. Keeps the last `keepLast` checkpoints and the best one by its metric.
public final class CheckpointStore {
    /// The folder of checkpoints.
    public let directory: String
    /// How many of the newest are kept (the best is kept besides).
    public let keepLast: Int
    /// Whether a lower metric is better (loss) or a higher one (accuracy).
    public let lowerIsBetter: Bool

    /// A store in `directory`, keeping `keepLast` checkpoints and the best by the metric.
    public init(directory: String, keepLast: Int = 3, lowerIsBetter: Bool = true) {
        require(keepLast >= 1, "CheckpointStore: keep at least one checkpoint")
        self.directory = directory
        self.keepLast = keepLast
        self.lowerIsBetter = lowerIsBetter
    }

    static func name(_ step: Int) -> String { String(format: "step-%08d", step) }

    /// Checkpoints present, newest first (by step).
    public func list() -> [(step: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { n -> (Int, String)? in
            guard n.hasPrefix("step-"), let s = Int(n.dropFirst(5)) else { return nil }
            return (s, directory + "/" + n)
        }.sorted { $0.0 > $1.0 }
    }

    /// Saves a checkpoint and prunes old ones; returns its path.
    @discardableResult
    public func save(step: Int, tensors: [String: [String: Tensor]], state: Data, metric: Double? = nil) throws -> String {
        let fm = FileManager.default
        do { try fm.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw FileError.cannotWrite(path: directory, reason: AtomicFile.reason(error))
        }
        let final = directory + "/" + Self.name(step)
        let tmp = directory + "/.partial-\(Self.name(step))-\(getpid())"
        try? fm.removeItem(atPath: tmp)
        do { try fm.createDirectory(atPath: tmp, withIntermediateDirectories: false) } catch {
            throw FileError.cannotWrite(path: tmp, reason: AtomicFile.reason(error))
        }
        var entries: [String: CheckpointManifest.Entry] = [:]
        func put(_ data: Data, _ file: String) throws {
            try AtomicFile.writeAndSync(data, to: tmp + "/" + file)
            entries[file] = .init(bytes: data.count, crc32c: CRC32C.checksum(data))
        }
        for (name, ts) in tensors.sorted(by: { $0.key < $1.key }) { try put(Safetensors.encode(ts), "\(name).safetensors") }
        try put(state, "state.json")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let manifest = try encoder.encode(CheckpointManifest(step: step, metric: metric.flatMap { $0.isFinite ? $0 : nil }, files: entries))
        try AtomicFile.writeAndSync(manifest, to: tmp + "/manifest.json")
        try AtomicFile.syncDirectory(tmp)
        if fm.fileExists(atPath: final) {
            let old = directory + "/.replaced-\(Self.name(step))-\(getpid())"
            guard Glibc.rename(final, old) == 0 else { throw FileError.cannotWrite(path: final, reason: AtomicFile.errnoText()) }
            try? fm.removeItem(atPath: old)
        }
        guard Glibc.rename(tmp, final) == 0 else { throw FileError.cannotWrite(path: final, reason: AtomicFile.errnoText()) }
        try AtomicFile.syncDirectory(directory)
        prune()
        return final
    }

    /// Removes checkpoints beyond the last `keepLast` (keeping the best) and leftovers of
    /// interrupted saves.
    func prune() {
        let fm = FileManager.default
        for n in (try? fm.contentsOfDirectory(atPath: directory)) ?? [] where n.hasPrefix(".partial-") || n.hasPrefix(".replaced-") {
            if !n.hasSuffix("-\(getpid())") { try? fm.removeItem(atPath: directory + "/" + n) }
        }
        let all = list()
        guard all.count > keepLast else { return }
        var keep = Set(all.prefix(keepLast).map(\.path))
        if let best = bestCheckpoint(among: all) { keep.insert(best) }
        for c in all where !keep.contains(c.path) { try? fm.removeItem(atPath: c.path) }
    }

    private func bestCheckpoint(among all: [(step: Int, path: String)]) -> String? {
        var best: (String, Double)? = nil
        for c in all {
            guard let m = try? manifest(at: c.path), let v = m.metric, v.isFinite else { continue }
            if best == nil || (lowerIsBetter ? v < best!.1 : v > best!.1) { best = (c.path, v) }
        }
        return best?.0
    }

    /// The checkpoint with the best metric, if any recorded one.
    public var best: String? { bestCheckpoint(among: list()) }

    func manifest(at path: String) throws -> CheckpointManifest {
        let file = path + "/manifest.json"
        guard let data = try? FileContents.read(file) else { throw CheckpointError.missingManifest(checkpoint: path) }
        let m: CheckpointManifest
        do { m = try JSONDecoder().decode(CheckpointManifest.self, from: data) } catch {
            throw CheckpointError.badManifest(checkpoint: path, reason: RecordProblem.describe(error))
        }
        // Plain file names only: nothing the manifest lists is read from outside the checkpoint.
        for (file, entry) in m.files {
            guard !file.isEmpty, !file.contains("/"), !file.hasPrefix("."), entry.bytes >= 0 else {
                throw CheckpointError.badManifest(checkpoint: path, reason: "file entry '\(file)' is not a plain file name with a size")
            }
        }
        guard m.step >= 0 else { throw CheckpointError.badManifest(checkpoint: path, reason: "step \(m.step) is negative") }
        return m
    }

    /// Reads one checkpoint, verifying every file against the manifest.
    public func load(_ path: String) throws -> LoadedCheckpoint {
        let m = try manifest(at: path)
        var tensors: [String: [String: Tensor]] = [:]
        var state = Data()
        for (file, entry) in m.files.sorted(by: { $0.key < $1.key }) {
            guard let data = try? FileContents.read(path + "/" + file) else {
                throw CheckpointError.missingFile(checkpoint: path, file: file)
            }
            guard data.count == entry.bytes else {
                throw CheckpointError.sizeMismatch(checkpoint: path, file: file, expected: entry.bytes, found: data.count)
            }
            let crc = CRC32C.checksum(data)
            guard crc == entry.crc32c else {
                throw CheckpointError.checksumMismatch(checkpoint: path, file: file, expected: entry.crc32c, found: crc)
            }
            if file == "state.json" { state = data; continue }
            guard file.hasSuffix(".safetensors") else { continue }
            do { tensors[String(file.dropLast(".safetensors".count))] = try Safetensors.decode(data, file: path + "/" + file).tensors } catch {
                throw CheckpointError.unreadable(checkpoint: path, file: file, reason: "\(error)")
            }
        }
        return LoadedCheckpoint(path: path, step: m.step, metric: m.metric, tensors: tensors, state: state)
    }

    /// The newest checkpoint that verifies, and the errors of newer ones passed over.
    public func loadLatest() throws -> (checkpoint: LoadedCheckpoint, skipped: [CheckpointError]) {
        var skipped: [CheckpointError] = []
        for c in list() {
            do { return (try load(c.path), skipped) } catch let e as CheckpointError { skipped.append(e) }
        }
        throw skipped.first ?? CheckpointError.noCheckpoint(directory: directory)
    }
}
