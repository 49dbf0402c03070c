import Foundation
import Glibc
import GradGuardTensor

/// A file written by appending whole records, each with one `write` call loop; a failure
/// (disk full, file system gone read-only) is thrown as `FileError.cannotWrite` naming the
/// file, never a trap. A record that did not fit is cut back off, so the file keeps only
/// whole records.
public final class AppendFile {
    public let path: String
    private let fd: Int32

    /// Opens `path` for appending, creating it when missing; with `exclusive` the file
    /// must not exist yet.
    public init(path: String, exclusive: Bool = false) throws {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : 0), 0o644)
        guard fd >= 0 else { throw FileError.cannotWrite(path: path, reason: AtomicFile.errnoText()) }
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// Appends `bytes` whole, or throws and leaves the file as it was.
    public func append(_ bytes: UnsafeRawBufferPointer) throws {
        let start = lseek(fd, 0, SEEK_END)
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                let reason = AtomicFile.errnoText()
                if start >= 0 { _ = ftruncate(fd, start) }
                throw FileError.cannotWrite(path: path, reason: reason)
            }
            done += n
        }
    }

    public func append(_ data: Data) throws { try data.withUnsafeBytes { try append($0) } }
    public func append(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try append($0) } }

    /// Flushes what was written to the disk.
    public func sync() { _ = fsync(fd) }
}
