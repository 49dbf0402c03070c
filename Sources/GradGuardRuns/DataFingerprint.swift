import Foundation
import GradGuard

/// The data files a run trained on, with their sizes and CRC-32C, recorded at `train` in
/// `data_files.json` so that `resume` can tell when they changed: a resumed run on other data
/// is another experiment, and its records would mix the two without a word. Built-in data
/// (generated from the seed) have no files to record.
public struct DataFingerprint: Codable, Equatable, Sendable {
    /// One data file: its path, size and checksum.
    public struct File: Codable, Equatable, Sendable {
        /// The file's absolute path.
        public let path: String
        /// Its size in bytes.
        public let bytes: Int
        /// Its CRC-32C.
        public let crc32c: UInt32
    }

    /// The run's data files.
    public var files: [File]

    /// The record's file name in a run directory.
    public static let fileName = "data_files.json"

    /// The data files of run `c`: the text or pairs file; for a detection dataset its
    /// data.yaml and every file of its image and label folders (or its image lists). Nil for
    /// built-in data.
    public static func of(_ c: RunConfig) throws -> DataFingerprint? {
        guard !c.data.path.isEmpty else { return nil }
        var paths = [c.data.path]
        if c.data.kind == .yolo {
            let config = try DetectionDataConfig.load(path: c.data.path)
            let fm = FileManager.default
            for entry in [config.train, config.val] {
                let location = entry.hasPrefix("/") ? entry : config.root + "/" + entry
                guard FileManager.default.fileExists(atPath: location) else { continue }
                let labels = String(DetectionSplit.labelPath(forImage: location + "/x.png").dropLast("/x.txt".count))
                for folder in [location, labels] {
                    var isDir: ObjCBool = false
                    guard fm.fileExists(atPath: folder, isDirectory: &isDir) else { continue }
                    if !isDir.boolValue {
                        paths.append(folder)
                        continue
                    }
                    for f in ((try? fm.contentsOfDirectory(atPath: folder)) ?? []).sorted() where !f.hasPrefix(".") {
                        if (try? FileContents.regularFileSize(folder + "/" + f)) != nil { paths.append(folder + "/" + f) }
                    }
                }
            }
        }
        return DataFingerprint(files: try Array(Set(paths)).sorted().map(file))
    }

    /// One file's size and checksum, read in 1 MiB pieces.
    static func file(_ path: String) throws -> File {
        let (fd, _) = try FileContents.openRegular(path)
        defer { close(fd) }
        var crc: UInt32 = 0, bytes = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw FileReadFailure(path: path, kind: .unreadable, reason: String(cString: strerror(errno)))
            }
            if n == 0 { break }
            crc = CRC32C.checksum(buffer[0..<n], continuing: crc)
            bytes += n
        }
        return File(path: path, bytes: bytes, crc32c: crc)
    }

    /// What differs from `old`, one sentence a file (empty when nothing changed).
    public func changes(since old: DataFingerprint) -> [String] {
        let now = Dictionary(files.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        let before = Dictionary(old.files.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        var out: [String] = []
        for f in old.files {
            guard let n = now[f.path] else {
                out.append("\(f.path) is gone")
                continue
            }
            if n.bytes != f.bytes {
                out.append("\(f.path) was \(f.bytes) bytes and is \(n.bytes)")
            } else if n.crc32c != f.crc32c {
                out.append("\(f.path) has the same size but other contents")
            }
        }
        for f in files where before[f.path] == nil { out.append("\(f.path) is new") }
        return out
    }

    /// Writes the record into `runDirectory`.
    public func save(runDirectory: String) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try e.encode(self), to: runDirectory + "/" + Self.fileName)
    }

    /// The record of `runDirectory`, or nil when the run has none (built-in data, or a run
    /// made before data were recorded).
    public static func saved(runDirectory: String) throws -> DataFingerprint? {
        let path = runDirectory + "/" + fileName
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let data: Data
        do { data = try FileContents.read(path, limit: 64 << 20) } catch let e as FileReadFailure {
            throw FileError.cannotRead(path: path, reason: e.reason)
        }
        do { return try JSONDecoder().decode(DataFingerprint.self, from: data) } catch {
            throw FileError.cannotRead(path: path, reason: "not a data record: \(RecordProblem.describe(error))")
        }
    }
}
