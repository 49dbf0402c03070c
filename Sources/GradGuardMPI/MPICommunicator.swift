import CGradGuardMPI
import Foundation
import GradGuardDistributed
import GradGuardTensor

/// The ranks of an Open MPI job (`mpirun -np N …`), over MPI_COMM_WORLD.
///
/// ```swift
/// let world = try MPICommunicator.launchedOrSingle()   // one process without mpirun
/// let trainer = try Trainer(workload, …, communicator: world)
/// ```
///
/// Every collective is started non-blocking and waited for at most `timeout` seconds, so a
/// rank that died or stalls ends the job with `CommunicatorError.timeout` naming this rank
/// and the collective, instead of a hang.
public final class MPICommunicator: Communicator {
    /// This process's rank.
    public let rank: Int
    /// The number of ranks.
    public let size: Int
    /// Seconds a collective may wait for every rank before it fails with `CommunicatorError.timeout`.
    public var timeout: Double
    /// The host this rank runs on.
    public let host: String
    private var seconds = 0.0
    /// The step of the last heartbeat.
    private var step: Int? = nil

    /// Whether an MPI launcher started this process.
    public static var launched: Bool { gg_mpi_launched() != 0 }

    /// Joins the job (MPI_Init on first use). `timeout`: the watchdog's limit in seconds.
    public init(timeout: Double = 300) throws {
        var r: Int32 = 0, s: Int32 = 0
        var error = [CChar](repeating: 0, count: 512)
        guard gg_mpi_init(&r, &s, &error, error.count) == GG_MPI_OK else {
            throw CommunicatorError.failed(rank: 0, operation: "joining the MPI job", reason: Self.text(error))
        }
        rank = Int(r)
        size = Int(s)
        self.timeout = timeout
        var name = [CChar](repeating: 0, count: 256)
        gg_mpi_processor_name(&name, name.count)
        host = Self.text(name)
    }

    /// A C string from a buffer that the shim filled.
    static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// An `MPICommunicator` when started by `mpirun`, else a `SingleProcessCommunicator`.
    public static func launchedOrSingle(timeout: Double = 300) throws -> any Communicator {
        launched ? try MPICommunicator(timeout: timeout) : SingleProcessCommunicator()
    }

    /// "Open MPI, N ranks (this one: r on host)", for `environment.txt`.
    public var label: String { "Open MPI, \(size) rank\(size == 1 ? "" : "s") (this one: \(rank) on \(host))" }

    /// The seconds spent in collectives since the last call.
    public func takeSeconds() -> Double {
        defer { seconds = 0 }
        return seconds
    }

    /// Runs one collective, timing it and turning its status into an error.
    fileprivate func call(_ operation: String, _ body: (UnsafeMutablePointer<CChar>, Int) -> Int32) throws {
        var error = [CChar](repeating: 0, count: 512)
        let start = gg_mpi_wtime()
        let rc = error.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
        seconds += gg_mpi_wtime() - start
        switch rc {
        case GG_MPI_OK: return
        case GG_MPI_TIMEOUT: throw CommunicatorError.timeout(rank: rank, operation: operation, seconds: timeout, context: lagging())
        default: throw CommunicatorError.failed(rank: rank, operation: operation, reason: Self.text(error))
        }
    }

    private static func code(_ op: ReduceOp) -> Int32 {
        switch op {
        case .sum: return Int32(GG_MPI_SUM)
        case .max: return Int32(GG_MPI_MAX)
        case .min: return Int32(GG_MPI_MIN)
        }
    }

    /// Reduces `values` element-wise over the ranks with `op`, in place, on every rank.
    public func allReduce(_ values: UnsafeMutableBufferPointer<Float>, _ op: ReduceOp) throws {
        guard let base = values.baseAddress else { return }
        try call("all-reduce") { gg_mpi_allreduce(base, Int64(values.count), Int32(GG_MPI_FLOAT), Self.code(op), timeout, $0, $1) }
    }

    /// Reduces `values` element-wise over the ranks with `op`, in place, on every rank.
    public func allReduce(_ values: UnsafeMutableBufferPointer<Double>, _ op: ReduceOp) throws {
        guard let base = values.baseAddress else { return }
        try call("all-reduce") { gg_mpi_allreduce(base, Int64(values.count), Int32(GG_MPI_DOUBLE), Self.code(op), timeout, $0, $1) }
    }

    /// Sums `send` over the ranks; each rank receives its own contiguous part of the sum in `recv`.
    public func reduceScatterSum(_ send: UnsafeBufferPointer<Float>, into recv: UnsafeMutableBufferPointer<Float>) throws {
        require(send.count == recv.count * size, "reduceScatterSum: \(send.count) values do not split into \(size) blocks of \(recv.count)")
        guard let s = send.baseAddress, let r = recv.baseAddress else { return }
        try call("reduce-scatter") { gg_mpi_reduce_scatter_float(s, r, Int64(recv.count), timeout, $0, $1) }
    }

    /// Every rank's `send` bytes, concatenated in rank order, into `recv` on every rank.
    public func allGather(_ send: UnsafeRawBufferPointer, into recv: UnsafeMutableRawBufferPointer) throws {
        require(recv.count == send.count * size, "allGather: \(recv.count) bytes do not hold \(size) × \(send.count)")
        guard let s = send.baseAddress, let r = recv.baseAddress else { return }
        try call("all-gather") { gg_mpi_allgather(s, r, Int64(send.count), timeout, $0, $1) }
    }

    /// A started collective over MPI.
    final class Pending: PendingCollective {
        let owner: MPICommunicator
        var handle: UnsafeMutableRawPointer?
        let operation: String
        init(_ owner: MPICommunicator, _ handle: UnsafeMutableRawPointer, _ operation: String) {
            (self.owner, self.handle, self.operation) = (owner, handle, operation)
        }
        func test() throws -> Bool {
            guard let handle else { return true }
            var done: Int32 = 0
            try owner.call(operation) { gg_mpi_test_request(handle, &done, $0, $1) }
            return done != 0
        }
        func wait() throws {
            guard let h = handle else { return }
            handle = nil
            try owner.call(operation) { gg_mpi_wait_request(h, owner.timeout, $0, $1) }
        }
        deinit {
            // Never waited for: wait now, so the buffers outlive the transfer.
            if let h = handle { _ = gg_mpi_wait_request(h, owner.timeout, nil, 0) }
        }
    }

    private func start(_ operation: String, _ body: (UnsafeMutablePointer<CChar>, Int) -> UnsafeMutableRawPointer?) throws -> any PendingCollective {
        var error = [CChar](repeating: 0, count: 512)
        let start = gg_mpi_wtime()
        let handle = error.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
        seconds += gg_mpi_wtime() - start
        guard let handle else { throw CommunicatorError.failed(rank: rank, operation: operation, reason: Self.text(error)) }
        return Pending(self, handle, operation)
    }

    /// Starts `reduceScatterSum` without waiting; the result is in `recv` once the collective is done.
    public func startReduceScatterSum(_ send: UnsafeBufferPointer<Float>, into recv: UnsafeMutableBufferPointer<Float>) throws -> any PendingCollective {
        require(send.count == recv.count * size, "startReduceScatterSum: \(send.count) values do not split into \(size) blocks of \(recv.count)")
        guard let s = send.baseAddress, let r = recv.baseAddress else { return FinishedCollective() }
        return try start("reduce-scatter") { gg_mpi_start_reduce_scatter_float(s, r, Int64(recv.count), $0, $1) }
    }

    /// Starts `allGather` without waiting; the result is in `recv` once the collective is done.
    public func startAllGather(_ send: UnsafeRawBufferPointer, into recv: UnsafeMutableRawBufferPointer) throws -> any PendingCollective {
        require(recv.count == send.count * size, "startAllGather: \(recv.count) bytes do not hold \(size) × \(send.count)")
        guard let s = send.baseAddress, let r = recv.baseAddress else { return FinishedCollective() }
        return try start("all-gather") { gg_mpi_start_allgather(s, r, Int64(send.count), $0, $1) }
    }

    /// Rank `root`'s bytes into `buffer` on every rank.
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard let base = buffer.baseAddress else { return }
        try call("broadcast") { gg_mpi_broadcast(base, Int64(buffer.count), Int32(root), timeout, $0, $1) }
    }

    /// Waits until every rank has reached it.
    public func barrier() throws {
        try call("barrier") { gg_mpi_barrier(timeout, $0, $1) }
    }

    /// Records that this rank reached `step` (a stalled rank's last step is named in a timeout).
    public func heartbeat(step: Int) {
        self.step = step
        gg_mpi_heartbeat(Int64(step))
    }

    /// Which ranks have not reached this rank's step, as far as it has heard.
    private func lagging() -> String {
        guard let step else { return "" }
        var ranks = [Int32](repeating: 0, count: 16), last = [Int64](repeating: 0, count: 16)
        let n = Int(gg_mpi_lagging(Int64(step), &ranks, &last, 16))
        guard n > 0 else { return "at step \(step)" }
        let named = (0..<n).map { "rank \(ranks[$0]) " + (last[$0] < 0 ? "never reported a step" : "last reported step \(last[$0])") }
        return "at step \(step); " + named.joined(separator: ", ")
    }

    /// Ends every rank of the job with `code`, after printing `message`.
    public func abort(code: Int32, message: String) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        gg_mpi_abort(code)
        exit(code)
    }

    /// Leaves the job cleanly (MPI_Finalize); call once, at the end of the program.
    public static func finish() { _ = gg_mpi_finalize() }
}
