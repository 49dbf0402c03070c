import Foundation
import Glibc
import GradGuardTensor

/// A run directory held by another process.
public struct RunInUse: Error, CustomStringConvertible, Equatable {
    /// The run directory.
    public let directory: String
    /// The holder's process id, when it could be read.
    public let pid: Int32?
    /// Who holds the run, and what to do.
    public var description: String {
        "run \(directory) is in use by " + (pid == getpid() ? "another trainer in this process" : pid.map { "process \($0)" } ?? "another process")
            + "; wait for it to finish or stop it, then try again"
    }
}

/// An exclusive lock on a run directory (`flock` on `<run>/.lock`, holding the owner's
/// process id), so that two processes never write one run: a second `train --overwrite`
/// or `resume` is refused instead of deleting or interleaving the first one's records. The
/// kernel releases the lock when the process ends, however it ends, so a crash never
/// leaves a run locked.
public final class RunLock {
    /// The locked directory.
    public let directory: String
    private let fd: Int32

    /// Locks `directory`, creating it (and its parents) when missing; a directory made here
    /// (or found empty) is marked as a run (`RunMarker`).
    public init(directory: String) throws {
        let fresh = RunMarker.isFresh(directory)
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw FileError.cannotWrite(path: directory, reason: AtomicFile.reason(error))
        }
        let path = directory + "/" + RunLock.fileName
        // Never through a symbolic link: the process id would be written into its target.
        let (fd, _) = try AtomicFile.openRegularForWriting(path, flags: O_RDWR | O_CREAT)
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let busy = errno == EWOULDBLOCK
            let reason = AtomicFile.errnoText()
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buffer, buffer.count, 0)
            close(fd)
            guard busy else { throw FileError.cannotWrite(path: path, reason: "cannot lock: \(reason)") }
            let text = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : ""
            throw RunInUse(directory: directory, pid: Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        self.fd = fd
        self.directory = directory
        if fresh { try RunMarker.write(in: directory) }
    }

    deinit {
        flock(fd, LOCK_UN)
        close(fd)
    }

    /// The lock file's name inside a run directory.
    public static let fileName = ".lock"

    /// Removes everything in the locked directory but the lock and the run marker (a run
    /// replaced by `train --overwrite`).
    public func clear() throws {
        let fm = FileManager.default
        let entries: [String]
        do { entries = try fm.contentsOfDirectory(atPath: directory) } catch {
            throw FileError.cannotRead(path: directory, reason: AtomicFile.reason(error))
        }
        for e in entries where e != RunLock.fileName && e != RunMarker.fileName {
            do { try fm.removeItem(atPath: directory + "/" + e) } catch {
                throw FileError.cannotWrite(path: directory + "/" + e, reason: "cannot remove: " + AtomicFile.reason(error))
            }
        }
    }
}
