import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

/// The job this process belongs to: the ranks of `mpirun -np N gradguard …`, or a world of one.
enum Launch {
    /// The communicator this process joined (MPI is initialised once per process), behind a lock.
    private final class Joined: @unchecked Sendable {  // `world` is read and written under `lock` only
        let lock = NSLock()
        var world: (any Communicator)? = nil
    }
    private static let joined = Joined()

    /// Whether an MPI launcher started this process.
    static var underMPI: Bool { MPICommunicator.launched }

    /// The job's communicator (joined once; `timeout` is the watchdog's limit in seconds).
    static func communicator(timeout: Double) throws -> any Communicator {
        joined.lock.lock()
        defer { joined.lock.unlock() }
        if let w = joined.world {
            w.timeout = timeout
            return w
        }
        let w: any Communicator
        do { w = try MPICommunicator.launchedOrSingle(timeout: timeout) } catch let e as CommunicatorError {
            throw fail(e.description, code: Exit.distributed)
        }
        joined.world = w
        return w
    }

    /// An exit code every rank of the job reached together (they end with MPI_Finalize, not
    /// MPI_Abort); the message, if any, was printed by rank 0.
    struct AgreedExit: Error { let code: Int32 }

    /// Runs `body` on rank 0 only and tells every rank how it went: on failure rank 0 prints
    /// the sentence and every rank ends with its exit code, instead of the others waiting for
    /// rank 0 forever.
    static func onRankZero(_ world: any Communicator, _ body: () throws -> Void) throws {
        guard world.isDistributed else { return try body() }
        var code: Int32 = 0
        if world.rank == 0 {
            do { try body() } catch let e as ExitCode { code = e.rawValue } catch {
                let (message, c) = userError(error) ?? ("internal error: \(error) — please report it with the command that caused it", Exit.internalError)
                _ = fail(message, code: c)
                code = c
            }
        }
        let status = try world.broadcast(bytes: withUnsafeBytes(of: code.littleEndian) { Array($0) })
        let shared = status.withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(as: Int32.self)) }
        if shared != 0 { throw AgreedExit(code: shared) }
    }

    /// Ends the job: MPI_Finalize when every rank reaches the end together (success, or an
    /// outcome the ranks agreed on), MPI_Abort of every rank otherwise.
    static func end(code: Int32, agreed: Bool) -> Never {
        joined.lock.lock()
        let world = joined.world
        joined.lock.unlock()
        if let w = world, w.isDistributed {
            if !agreed { w.abort(code: code, message: "gradguard: rank \(w.rank) ends the job (exit \(code))") }
            MPICommunicator.finish()
        } else if world != nil {
            MPICommunicator.finish()
        }
        Foundation.exit(code)
    }
}

/// A fault injected for the data-parallel tests, from the GRADGUARD_FAULT environment variable:
/// `KIND@rank=R,step=S[,count=C][,tensor=NAME][,factor=F]` with KIND one of nan (a NaN in one
/// gradient), spike (a gradient multiplied by F, default 1000), kill (SIGKILL at the step),
/// stall (sleep); nan and spike strike the C attempts from the step (default 1).
struct InjectedFault {
    enum Kind: String { case nan, spike, kill, stall }
    let kind: Kind
    let rank: Int
    let step: Int
    let count: Int
    let tensor: String?
    let factor: Float

    static func fromEnvironment() throws -> InjectedFault? {
        guard let spec = ProcessInfo.processInfo.environment["GRADGUARD_FAULT"], !spec.isEmpty else { return nil }
        func bad() -> ExitCode {
            fail(
                "GRADGUARD_FAULT '\(spec)': expected KIND@rank=R,step=S[,count=C][,tensor=NAME][,factor=F] with KIND nan, spike, kill or stall",
                code: Exit.usage)
        }
        let parts = spec.split(separator: "@", maxSplits: 1).map(String.init)
        guard parts.count == 2, let kind = Kind(rawValue: parts[0]) else { throw bad() }
        var fields: [String: String] = [:]
        for f in parts[1].split(separator: ",") {
            let kv = f.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2, ["rank", "step", "count", "tensor", "factor"].contains(kv[0]) else { throw bad() }
            fields[kv[0]] = kv[1]
        }
        guard let rank = fields["rank"].flatMap({ Int($0) }), let step = fields["step"].flatMap({ Int($0) }) else { throw bad() }
        let factor = fields["factor"].map { Float($0) } ?? 1000
        let count = fields["count"].map { Int($0) } ?? 1
        guard let factor, factor.isFinite, let count, count > 0 else { throw bad() }
        return InjectedFault(kind: kind, rank: rank, step: step, count: count, tensor: fields["tensor"], factor: factor)
    }

    /// Installs the fault into `trainer` (on the rank it names). A NaN or a spike goes into
    /// the gradient as backward computes it (a hook on the parameter), as a real one would,
    /// before any bucket of the average can start.
    func install(_ trainer: Trainer, rank here: Int) {
        guard here == rank else { return }
        let guardian = trainer.guardian
        let params = guardian.health.parameters
        // The guard's attempts (applied or not) count the strikes, so a skipped step is struck again.
        var struck = 0, lastAttempt = -1
        func strikes() -> Bool {
            let attempt = guardian.memory.attempts
            guard attempt >= step, struck < count, attempt != lastAttempt else { return false }
            lastAttempt = attempt
            struck += 1
            return true
        }
        switch kind {
        case .nan, .spike:
            let target = params.first { $0.name == tensor } ?? params.first
            target?.tensor.registerHook { g in
                guard strikes() else { return nil }
                var v = g.scalars
                if kind == .nan { v[0] = .nan } else { for i in v.indices { v[i] *= factor } }
                return Tensor(shape: g.shape, scalars: v)
            }
        case .kill, .stall:
            trainer.callbacks.afterBackward = { _ in
                guard strikes() else { return }
                if kind == .kill { kill(getpid(), SIGKILL) }
                while true { sleep(3600) }
            }
        }
    }
}
