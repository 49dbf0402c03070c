import Foundation
import Glibc

/// What went wrong writing or reading a file, naming the path.
public enum FileError: Error, CustomStringConvertible, Equatable {
    case cannotWrite(path: String, reason: String)
    case cannotRead(path: String, reason: String)

    /// "cannot write PATH: reason" or "cannot read PATH: reason".
    public var description: String {
        switch self {
        case let .cannotWrite(p, r): return "cannot write \(p): \(r)"
        case let .cannotRead(p, r): return "cannot read \(p): \(r)"
        }
    }
}

/// Durable file writes: data goes to a temporary file in the same directory, is flushed
/// to disk (fsync), renamed over the destination, and the directory entry is flushed too.
/// A process killed at any point leaves either the old file or the new one, never a mix.
public enum AtomicFile {
    /// The C library's sentence for the current `errno`.
    public static func errnoText() -> String { String(cString: strerror(errno)) }

    /// A sentence for a Foundation file error ("no space left on device", "permission
    /// denied"), from its POSIX cause where it has one, instead of its domain and code.
    public static func reason(_ error: Error) -> String {
        if let e = error as? FileError {
            switch e {
            case let .cannotWrite(_, r), let .cannotRead(_, r): return r
            }
        }
        if let e = error as? FileReadFailure { return e.reason }
        let ns = error as NSError
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? Error { return reason(underlying) }
        if let e = error as? CocoaError {
            switch e.code {
            case .fileNoSuchFile, .fileReadNoSuchFile: return "no such file or directory"
            case .fileWriteOutOfSpace: return "no space left on device"
            case .fileReadNoPermission, .fileWriteNoPermission: return "permission denied"
            case .fileWriteVolumeReadOnly: return "read-only file system"
            case .fileWriteFileExists: return "a file of that name exists"
            default: break
            }
        }
        // Never Foundation's dump of the error's domain and user info.
        return ns.localizedFailureReason ?? "error \(ns.code)"
    }

    /// Writes `data` to `path` (which must not be a directory), durably. A symbolic link at
    /// `path` is replaced, never written through; the temporary file is created afresh (never
    /// through a link planted at its name) and removed when anything fails.
    public static func write(_ data: Data, to path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let tmp = (dir.isEmpty ? "." : dir) + "/.\((path as NSString).lastPathComponent).tmp-\(getpid())"
        unlink(tmp)  // a leftover of this process id, or anything planted there
        do { try writeAndSync(data, to: tmp, exclusive: true) } catch {
            unlink(tmp)
            throw error
        }
        guard rename(tmp, path) == 0 else {
            let reason = errnoText()
            unlink(tmp)
            throw FileError.cannotWrite(path: path, reason: reason)
        }
        try syncDirectory(dir.isEmpty ? "." : dir)
    }

    /// Opens the regular file at `path` for writing with `flags` (O_CREAT, O_APPEND, …) and
    /// returns it with its size. Never through a symbolic link (`O_NOFOLLOW`), and never a
    /// FIFO, a device or a directory (refused before anything waits on it).
    public static func openRegularForWriting(_ path: String, flags: Int32) throws -> (fd: Int32, size: Int) {
        let fd = open(path, flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o644)
        guard fd >= 0 else { throw FileError.cannotWrite(path: path, reason: errno == ELOOP ? "is a symbolic link" : errnoText()) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw FileError.cannotWrite(path: path, reason: "is not a regular file")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return (fd, Int(st.st_size))
    }

    /// Writes `data` to a new file and flushes it to disk (no rename). A symbolic link at
    /// `path` is refused (`O_NOFOLLOW`); with `exclusive` the file must not exist.
    public static func writeAndSync(_ data: Data, to path: String, exclusive: Bool = false) throws {
        let (fd, _) = try openRegularForWriting(path, flags: O_WRONLY | O_CREAT | (exclusive ? O_EXCL : O_TRUNC))
        defer { close(fd) }
        try data.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FileError.cannotWrite(path: path, reason: errnoText())
                }
                off += n
            }
        }
        guard fsync(fd) == 0 else { throw FileError.cannotWrite(path: path, reason: "fsync: \(errnoText())") }
    }

    /// Flushes a directory's entries (after a rename or a new file in it).
    public static func syncDirectory(_ dir: String) throws {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError.cannotWrite(path: dir, reason: errnoText()) }
        defer { close(fd) }
        _ = fsync(fd)
    }

    /// Reads a whole file.
    public static func read(_ path: String) throws -> Data {
        do { return try FileContents.read(path) } catch let e as FileReadFailure { throw FileError.cannotRead(path: path, reason: e.reason) }
    }
}

/// A record file (JSON) that does not decode, in a sentence: the key that is missing or of
/// the wrong type, with its path in the record, never Swift's `DecodingError` dump.
public enum RecordProblem {
    /// A decoding error as a sentence naming the key path and what was expected.
    public static func describe(_ error: Error) -> String {
        func path(_ codingPath: [CodingKey], _ last: CodingKey? = nil) -> String {
            let keys = (codingPath + (last.map { [$0] } ?? [])).map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return keys.reduce("") { $0.isEmpty || $1.hasPrefix("[") ? $0 + $1 : $0 + "." + $1 }
        }
        guard let e = error as? DecodingError else {
            return "not valid JSON"
        }
        switch e {
        case let .keyNotFound(key, c): return "missing key '\(path(c.codingPath, key))'"
        case let .typeMismatch(type, c): return "'\(path(c.codingPath))': expected \(describe(type))"
        case let .valueNotFound(type, c): return "'\(path(c.codingPath))': expected \(describe(type)), got null"
        case let .dataCorrupted(c):
            if c.codingPath.isEmpty { return "not valid JSON" }
            return "'\(path(c.codingPath))': \(c.debugDescription.prefix(120))"
        @unknown default: return "not a valid record"
        }
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type, is Int32.Type, is Int64.Type, is UInt32.Type, is UInt64.Type, is UInt8.Type: return "an integer"
        case is Double.Type, is Float.Type: return "a number"
        case is String.Type: return "text"
        case is Bool.Type: return "true or false"
        default: return "\(type)".hasPrefix("Array") ? "a list" : "an object"
        }
    }
}
