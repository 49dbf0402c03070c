import Foundation
import Glibc
import GradGuardTensor

/// A file written by appending whole records, each with one `write` call loop; a failure
/// (disk full, file system gone read-only) is thrown as `FileError.cannotWrite` naming the
/// file, never a trap. A record that did not fit is cut back off, so the file keeps only
/// whole records.
public final class AppendFile {
    /// The file.
    public let path: String
    private let fd: Int32

    /// Bytes of a torn last line (a record cut short by a crash, with no line break) that
    /// opening with `wholeLines` removed; 0 when the file ended with a whole line.
    public private(set) var tornBytes = 0

    /// Opens `path` for appending, creating it when missing; with `exclusive` the file
    /// must not exist yet. A symbolic link or any other non-regular file at `path` is refused
    /// (records are never written outside the run through a link). With `wholeLines`, a torn
    /// last line is cut off, so the next record starts on a line of its own.
    public init(path: String, exclusive: Bool = false, wholeLines: Bool = false) throws {
        let (fd, size) = try AtomicFile.openRegularForWriting(path, flags: O_RDWR | O_APPEND | O_CREAT | (exclusive ? O_EXCL : 0))
        self.fd = fd
        self.path = path
        if wholeLines { tornBytes = try Self.cutTornLine(fd, size: size, path: path) }
    }

    /// Truncates the file after its last line break; returns the bytes removed.
    static func cutTornLine(_ fd: Int32, size: Int, path: String) throws -> Int {
        guard size > 0 else { return 0 }
        var end = size
        var buffer = [UInt8](repeating: 0, count: 4096)
        while end > 0 {
            let start = Swift.max(0, end - buffer.count)
            let n = pread(fd, &buffer, end - start, off_t(start))
            guard n == end - start else { throw FileError.cannotRead(path: path, reason: AtomicFile.errnoText()) }
            if let i = buffer[0..<n].lastIndex(of: 0x0A) {
                let keep = start + i + 1
                if keep < size { guard ftruncate(fd, off_t(keep)) == 0 else { throw FileError.cannotWrite(path: path, reason: AtomicFile.errnoText()) } }
                return size - keep
            }
            end = start
        }
        guard ftruncate(fd, 0) == 0 else { throw FileError.cannotWrite(path: path, reason: AtomicFile.errnoText()) }
        return size
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

    /// Appends `data` whole (or not at all).
    public func append(_ data: Data) throws { try data.withUnsafeBytes { try append($0) } }
    /// Appends `bytes` whole (or not at all).
    public func append(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try append($0) } }

    /// Flushes what was written to the disk.
    public func sync() { _ = fsync(fd) }
}
