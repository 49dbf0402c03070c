import Foundation
import GradGuardTensor

/// How the values of every rank are combined.
public enum ReduceOp: Sendable { case sum, max, min }

/// A collective that failed: a rank that died or stalled (the watchdog's time ran out), an
/// error from the transport, or ranks that should hold the same values and do not.
public enum CommunicatorError: Error, CustomStringConvertible, Equatable {
    case timeout(rank: Int, operation: String, seconds: Double, context: String)
    case failed(rank: Int, operation: String, reason: String)
    case mismatch(what: String, ranks: [Int])

    /// The rank, the collective and what went wrong, in one sentence.
    public var description: String {
        switch self {
        case let .timeout(rank, op, seconds, context):
            return "rank \(rank): \(op)\(context.isEmpty ? "" : " (\(context))") got no answer from every rank within \(formatSeconds(seconds)) s: "
                + "a rank died or stalled (the watchdog's limit is distributed.timeout)"
        case let .failed(rank, op, reason): return "rank \(rank): \(op) failed: \(reason)"
        case let .mismatch(what, ranks):
            return "ranks \(ranks.map(String.init).joined(separator: ", ")) hold a different \(what) than rank 0: the ranks no longer train one model"
        }
    }
}

private func formatSeconds(_ s: Double) -> String { s == s.rounded() ? String(Int(s)) : String(format: "%.1f", s) }

/// A collective that was started and is waited for later. Its buffers must stay in place
/// until `wait()` returns.
public protocol PendingCollective: AnyObject {
    /// Whether it has finished (and, for transports that progress only when called, moves it on).
    func test() throws -> Bool
    /// Waits until it has finished (at most the communicator's timeout).
    func wait() throws
}

/// A collective that finished when it was started (a world of one).
public final class FinishedCollective: PendingCollective {
    /// A collective that is already complete.
    public init() {}
    /// Always true: it is complete.
    public func test() throws -> Bool { true }
    /// Returns at once: it is complete.
    public func wait() throws {}
}

/// The processes that train one model together, and the collectives they need: all-reduce,
/// reduce-scatter, all-gather, broadcast, barrier, abort. Every collective must be called by
/// every rank, in the same order, with the same sizes. `SingleProcessCommunicator` is the
/// world of one; `MPICommunicator` (GradGuardMPI) runs over Open MPI.
///
/// Collectives are waited for at most `timeout` seconds: a rank that died or stalled ends the
/// wait with `CommunicatorError.timeout` rather than a hang.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Seconds a collective may wait for the other ranks (≤ 0: no limit).
    var timeout: Double { get set }
    /// What carries the messages, for `environment.txt` (`"single process"`, `"Open MPI 4.1, 2 ranks"`).
    var label: String { get }
    /// Seconds spent inside collectives since the last `takeSeconds()`.
    func takeSeconds() -> Double

    func allReduce(_ values: UnsafeMutableBufferPointer<Float>, _ op: ReduceOp) throws
    func allReduce(_ values: UnsafeMutableBufferPointer<Double>, _ op: ReduceOp) throws
    /// Sums `send` (size × `recv.count` floats) over the ranks and keeps block `rank` of the sum.
    func reduceScatterSum(_ send: UnsafeBufferPointer<Float>, into recv: UnsafeMutableBufferPointer<Float>) throws
    /// Every rank's `send` bytes, in rank order, into `recv` (size × send.count bytes).
    func allGather(_ send: UnsafeRawBufferPointer, into recv: UnsafeMutableRawBufferPointer) throws
    /// `reduceScatterSum` and `allGather`, started now and waited for later: every rank must
    /// start the same collectives in the same order.
    func startReduceScatterSum(_ send: UnsafeBufferPointer<Float>, into recv: UnsafeMutableBufferPointer<Float>) throws -> any PendingCollective
    func startAllGather(_ send: UnsafeRawBufferPointer, into recv: UnsafeMutableRawBufferPointer) throws -> any PendingCollective
    /// `root`'s bytes into every rank's `buffer`.
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    func barrier() throws
    /// Ends every process of the job with `code`, after printing `message` to standard error.
    func abort(code: Int32, message: String) -> Never
    /// Tells the other ranks that this one reached `step` (so that a watchdog that fires can
    /// name the rank that did not arrive). Never blocks.
    func heartbeat(step: Int)
}

extension Communicator {
    /// More than one process.
    public var isDistributed: Bool { size > 1 }

    /// Every rank's values (the same count on every rank), in rank order.
    public func allGather(_ values: [Double]) throws -> [[Double]] {
        var out = [Double](repeating: 0, count: values.count * size)
        try values.withUnsafeBytes { s in try out.withUnsafeMutableBytes { try allGather(s, into: $0) } }
        return (0..<size).map { Array(out[($0 * values.count)..<(($0 + 1) * values.count)]) }
    }

    /// Values of any length from every rank, in rank order (two collectives: the lengths, then the values).
    public func allGatherVariable(_ values: [Double]) throws -> [[Double]] {
        let counts = try allGather([Double(values.count)]).map { Int($0[0]) }
        let longest = counts.max() ?? 0
        let padded = values + [Double](repeating: 0, count: longest - values.count)
        return try zip(allGather(padded), counts).map { Array($0.prefix($1)) }
    }

    /// `root`'s bytes, on every rank (the length travels first).
    public func broadcast(bytes: [UInt8], root: Int = 0) throws -> [UInt8] {
        var count = [Double(bytes.count)]
        try count.withUnsafeMutableBytes { try broadcast($0, root: root) }
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count[0]))
        try out.withUnsafeMutableBytes { try broadcast($0, root: root) }
        return out
    }

    /// The sum over ranks of `values`, the same bits on every rank: each block is summed on
    /// one rank (reduce-scatter) and copied to the others (all-gather), as a ring all-reduce
    /// does. (A plain all-reduce may add in a different order on different ranks.)
    public func sumIdentically(_ values: UnsafeMutableBufferPointer<Float>, scale: Float = 1) throws {
        guard isDistributed else {
            if scale != 1 { for i in values.indices { values[i] *= scale } }
            return
        }
        let block = (values.count + size - 1) / size
        var send = [Float](repeating: 0, count: block * size)
        send.withUnsafeMutableBufferPointer { s in
            for i in values.indices { s[i] = values[i] }
        }
        var mine = [Float](repeating: 0, count: block)
        try send.withUnsafeBufferPointer { s in try mine.withUnsafeMutableBufferPointer { try reduceScatterSum(s, into: $0) } }
        if scale != 1 { for i in mine.indices { mine[i] *= scale } }
        try mine.withUnsafeBytes { m in try send.withUnsafeMutableBytes { try allGather(m, into: $0) } }
        send.withUnsafeBufferPointer { s in
            for i in values.indices { values[i] = s[i] }
        }
    }

    /// Checks that every rank holds the same `digest` of `what`; throws `mismatch` naming the
    /// ranks that differ from rank 0.
    public func checkSame(_ digest: UInt64, what: String) throws {
        guard isDistributed else { return }
        let all = try allGather([Double(bitPattern: digest)]).map { $0[0].bitPattern }
        let differing = all.indices.filter { all[$0] != all[0] }
        if !differing.isEmpty { throw CommunicatorError.mismatch(what: what, ranks: differing) }
    }
}

/// The world of one process: every collective returns what it was given.
public final class SingleProcessCommunicator: Communicator {
    /// The only rank, 0.
    public let rank = 0
    /// One rank.
    public let size = 1
    /// Unused: nothing waits.
    public var timeout = 0.0
    /// "single process".
    public var label: String { "single process" }
    /// The world of this process alone.
    public init() {}
    /// Always 0: no communication.
    public func takeSeconds() -> Double { 0 }
    /// Leaves `values` as they are (the reduction over one rank).
    public func allReduce(_ values: UnsafeMutableBufferPointer<Float>, _ op: ReduceOp) throws {}
    /// Leaves `values` as they are (the reduction over one rank).
    public func allReduce(_ values: UnsafeMutableBufferPointer<Double>, _ op: ReduceOp) throws {}
    /// Copies `send` into `recv` (the sum over one rank).
    public func reduceScatterSum(_ send: UnsafeBufferPointer<Float>, into recv: UnsafeMutableBufferPointer<Float>) throws {
        for i in recv.indices { recv[i] = send[i] }
    }
    /// Copies `send` into `recv` (the gather of one rank).
    public func allGather(_ send: UnsafeRawBufferPointer, into recv: UnsafeMutableRawBufferPointer) throws {
        recv.copyMemory(from: send)
    }
    /// Copies `send` into `recv` and returns a finished collective.
    public func startReduceScatterSum(_ send: UnsafeBufferPointer<Float>, into recv: UnsafeMutableBufferPointer<Float>) throws -> any PendingCollective {
        try reduceScatterSum(send, into: recv)
        return FinishedCollective()
    }
    /// Copies `send` into `recv` and returns a finished collective.
    public func startAllGather(_ send: UnsafeRawBufferPointer, into recv: UnsafeMutableRawBufferPointer) throws -> any PendingCollective {
        try allGather(send, into: recv)
        return FinishedCollective()
    }
    /// Leaves `buffer` as it is (rank 0 is the root).
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {}
    /// Returns at once.
    public func barrier() throws {}
    /// Nothing to record.
    public func heartbeat(step: Int) {}
    /// Prints `message` and exits with `code`.
    public func abort(code: Int32, message: String) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(code)
    }
}

/// FNV-1a over the bits of tensors' values: a cheap digest to check that ranks hold the
/// same parameters.
public func parameterDigest(_ tensors: [Tensor]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for t in tensors {
        t.withUnsafeScalars { s in
            s.withMemoryRebound(to: UInt32.self) { bits in
                for b in bits {
                    h ^= UInt64(b)
                    h = h &* 0x0000_0100_0000_01b3
                }
            }
        }
    }
    return h
}
