import Foundation
import Glibc

/// What went wrong writing or reading a file, naming the path.
public enum FileError: Error, CustomStringConvertible, Equatable {
    case cannotWrite(path: String, reason: String)
    case cannotRead(path: String, reason: String)

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
    public static func errnoText() -> String { String(cString: strerror(errno)) }

    /// A sentence for a Foundation file error ("no space left on device", "permission
    /// denied"), from its POSIX cause where it has one, instead of its domain and code.
    public static func reason(_ error: Error) -> String {
        if let e = error as? FileError { return e.description }
        if let e = error as? FileReadFailure { return e.reason }
        let ns = error as NSError
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError { return reason(underlying) }
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
        return ns.localizedFailureReason ?? "\(error)"
    }

    /// Writes `data` to `path` (which must not be a directory), durably.
    public static func write(_ data: Data, to path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let tmp = (dir.isEmpty ? "." : dir) + "/.\((path as NSString).lastPathComponent).tmp-\(getpid())"
        try writeAndSync(data, to: tmp)
        guard rename(tmp, path) == 0 else {
            let reason = errnoText()
            unlink(tmp)
            throw FileError.cannotWrite(path: path, reason: reason)
        }
        try syncDirectory(dir.isEmpty ? "." : dir)
    }

    /// Writes `data` to a new file and flushes it to disk (no rename).
    public static func writeAndSync(_ data: Data, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileError.cannotWrite(path: path, reason: errnoText()) }
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
