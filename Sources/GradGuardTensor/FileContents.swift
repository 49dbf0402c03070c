import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Why a file could not be read, in words a user can act on ("no such file", "is a
/// directory", "permission denied", "is 3.1 GB, more than the 2 GB limit").
public struct FileReadFailure: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: Equatable, Sendable { case missing, notAFile, tooLarge, unreadable }
    public let path: String
    public let kind: Kind
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// Where bytes stop being UTF-8: the byte offset and its line (from 1).
public struct InvalidUTF8: Error, Equatable, Sendable {
    public let offset: Int
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
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure(path, errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileReadFailure(path: path, kind: .unreadable, reason: String(cString: strerror(errno))) }
        try requireRegular(path, st)
        let size = Int(st.st_size)
        guard size <= limit else {
            throw FileReadFailure(path: path, kind: .tooLarge, reason: "is \(byteCount(size)), more than the \(byteCount(limit)) limit for this kind of file")
        }
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
