import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Why a file could not be read, in words a user can act on ("no such file", "is a
/// directory", "permission denied", "is 3.1 GB, more than the 2 GB limit").
public struct FileReadFailure: Error, CustomStringConvertible, Equatable, Sendable {
    /// Why: no such file, not a regular file, over the size limit, or unreadable.
    public enum Kind: Equatable, Sendable { case missing, notAFile, tooLarge, unreadable }
    /// The file.
    public let path: String
    /// The kind of failure.
    public let kind: Kind
    /// The failure in words.
    public let reason: String
    /// "PATH: reason".
    public var description: String { "\(path): \(reason)" }

    /// A failure to read `path`.
    public init(path: String, kind: Kind, reason: String) { (self.path, self.kind, self.reason) = (path, kind, reason) }
}

/// Where bytes stop being UTF-8: the byte offset and its line (from 1).
public struct InvalidUTF8: Error, Equatable, Sendable {
    /// The byte offset of the first invalid byte.
    public let offset: Int
    /// The line it is on, from 1.
    public let line: Int
}

/// Reading whole user files with a bounded allocation and a sentence for every failure,
/// instead of Foundation's error dumps ("NSCocoaErrorDomain error 256").
public enum FileContents {
    /// The default ceiling on a file read whole into memory (2 GiB).
    public static let defaultLimit = 2 << 30

    /// The bytes of the regular file at `path`; fails on a missing file, a directory or
    /// other non-regular file, a file larger than `limit` bytes, or a read error.
    public static func read(_ path: String, limit: Int = defaultLimit) throws -> Data {
        let (fd, size) = try openRegular(path, limit: limit)
        defer { close(fd) }
        var data = Data(count: size)
        var filled = 0
        try data.withUnsafeMutableBytes { raw in
            while filled < size {
                let n = Glibc.read(fd, raw.baseAddress! + filled, size - filled)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FileReadFailure(path: path, kind: .unreadable, reason: String(cString: strerror(errno)))
                }
                if n == 0 { break }  // the file shrank while being read
                filled += n
            }
        }
        if filled < size { data.removeSubrange(filled...) }
        return data
    }

    /// Opens the regular file at `path` for reading and returns it with its size, or fails
    /// as `read` does. A FIFO, a device or a directory is refused before anything waits on
    /// it: the file is opened without blocking (a FIFO's open would wait for a writer) and
    /// checked with `fstat` on the open descriptor (no race with a rename).
    public static func openRegular(_ path: String, limit: Int = defaultLimit) throws -> (fd: Int32, size: Int) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw failure(path, errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw FileReadFailure(path: path, kind: .unreadable, reason: reason)
        }
        do { try requireRegular(path, st) } catch {
            close(fd)
            throw error
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        let size = Int(st.st_size)
        guard size <= limit else {
            close(fd)
            throw FileReadFailure(path: path, kind: .tooLarge, reason: "is \(byteCount(size)), more than the \(byteCount(limit)) limit for this kind of file")
        }
        return (fd, size)
    }

    /// Calls `body` with each line of the regular file at `path` (without its line break, a
    /// trailing `\r` removed) and its number from 1, reading the file in 1 MiB pieces: an
    /// error on an early line is thrown before the rest is read, and no more than one line is
    /// held beyond the piece. A line longer than `maxLineBytes` fails with its number.
    public static func forEachLine(
        _ path: String, limit: Int = defaultLimit, maxLineBytes: Int = 1 << 20, _ body: (_ line: Int, _ bytes: ArraySlice<UInt8>) throws -> Void
    ) throws {
        let (fd, _) = try openRegular(path, limit: limit)
        defer { close(fd) }
        try forEachLine(fd: fd, name: path, limit: limit, maxLineBytes: maxLineBytes, body)
    }

    /// `forEachLine` over an open descriptor (standard input, say), named `name` in errors.
    public static func forEachLine(
        fd: Int32, name path: String, limit: Int = Int.max, maxLineBytes: Int = 1 << 20, _ body: (_ line: Int, _ bytes: ArraySlice<UInt8>) throws -> Void
    ) throws {
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var lineNumber = 0, total = 0
        func tooLong(_ line: Int) -> FileReadFailure {
            FileReadFailure(
                path: path, kind: .tooLarge, reason: "line \(line) is longer than \(byteCount(maxLineBytes)), the limit for one line of this kind of file")
        }
        func emit(_ bytes: ArraySlice<UInt8>) throws {
            lineNumber += 1
            guard bytes.count <= maxLineBytes else { throw tooLong(lineNumber) }
            try body(lineNumber, bytes.last == 0x0D ? bytes.dropLast() : bytes)
        }
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileReadFailure(path: path, kind: .unreadable, reason: String(cString: strerror(errno)))
            }
            if n == 0 { break }
            total += n
            guard total <= limit else {
                throw FileReadFailure(path: path, kind: .tooLarge, reason: "grew past the \(byteCount(limit)) limit for this kind of file while being read")
            }
            var start = 0
            for i in 0..<n where chunk[i] == 0x0A {
                if pending.isEmpty {
                    try emit(chunk[start..<i])
                } else {
                    pending += chunk[start..<i]
                    try emit(pending[...])
                    pending.removeAll(keepingCapacity: true)
                }
                start = i + 1
            }
            pending += chunk[start..<n]
            guard pending.count <= maxLineBytes else { throw tooLong(lineNumber + 1) }
        }
        if !pending.isEmpty { try emit(pending[...]) }
    }

    /// The size of the regular file at `path`, with the same failures as `read` but
    /// nothing read (for callers that map the file instead).
    public static func regularFileSize(_ path: String) throws -> Int {
        var st = stat()
        guard stat(path, &st) == 0 else { throw failure(path, errno: errno) }
        try requireRegular(path, st)
        return Int(st.st_size)
    }

    /// Why opening or stat'ing `path` failed with `errno`.
    static func failure(_ path: String, errno e: Int32) -> FileReadFailure {
        FileReadFailure(
            path: path, kind: e == ENOENT || e == ENOTDIR ? .missing : .unreadable,
            reason: e == ENOENT ? "no such file" : String(cString: strerror(e)))
    }

    /// Throws unless `st` describes a regular file.
    static func requireRegular(_ path: String, _ st: stat) throws {
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            let what = (st.st_mode & S_IFMT) == S_IFDIR ? "is a directory, expected a file" : "is not a regular file"
            throw FileReadFailure(path: path, kind: .notAFile, reason: what)
        }
    }

    /// The bytes as UTF-8 text, or the offset of the first byte that is not valid UTF-8.
    public static func utf8Text(_ data: Data) -> Result<String, InvalidUTF8> {
        if let text = String(data: data, encoding: .utf8) { return .success(text) }
        var offset = 0
        var it = data.makeIterator()
        var decoder = UTF8()
        loop: while true {
            switch decoder.decode(&it) {
            case .scalarValue(let s): offset += String(s).utf8.count
            case .emptyInput, .error: break loop
            }
        }
        return .failure(InvalidUTF8(offset: offset, line: data.prefix(offset).filter { $0 == 0x0A }.count + 1))
    }

    /// A byte count for messages: "512 bytes", "3.1 MB", "2.1 GB".
    public static func byteCount(_ n: Int) -> String {
        let d = Double(n)
        if d >= 1e9 { return String(format: "%.1f GB", d / 1e9) }
        if d >= 1e6 { return String(format: "%.1f MB", d / 1e6) }
        if d >= 1e3 { return String(format: "%.1f kB", d / 1e3) }
        return "\(n) bytes"
    }
}
