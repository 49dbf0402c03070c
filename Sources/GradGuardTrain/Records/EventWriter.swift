import Foundation
import GradGuardTensor

/// Writes TensorBoard event files: TFRecord framing (length, masked CRC-32C of the length,
/// payload, masked CRC-32C of the payload) around `Event` protocol buffers, encoded here by
/// hand — the few fields used are:
///
///     Event          { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
///     Summary        { repeated Value value = 1; }
///     Summary.Value  { string tag = 1; float simple_value = 2; HistogramProto histo = 5; }
///     HistogramProto { double min = 1; double max = 2; double num = 3; double sum = 4;
///                      double sum_squares = 5; repeated double bucket_limit = 6 [packed];
///                      repeated double bucket = 7 [packed]; }
///
/// The file is `events.out.tfevents.<seconds>.<host>.<pid>.<n>` in `directory` (`n` counts
/// up past a file of that name, so a second writer in the same second never truncates the
/// first one's events); TensorBoard's own reader loads it (checked by a test). A failed
/// write (disk full) is thrown, naming the file.
public final class EventWriter {
    /// The event file.
    public let path: String
    private let file: AppendFile

    /// Creates a new event file in `directory` named as TensorBoard expects (`events.out.tfevents.<time>.<host>`).
    public init(directory: String, wallTime: Double = Date().timeIntervalSince1970) throws {
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw FileError.cannotWrite(path: directory, reason: AtomicFile.reason(error))
        }
        let host = ProcessInfo.processInfo.hostName.isEmpty ? "localhost" : ProcessInfo.processInfo.hostName
        let stem = directory + "/events.out.tfevents.\(Int(wallTime)).\(host).\(getpid())"
        var n = 0
        while FileManager.default.fileExists(atPath: "\(stem).\(n)") { n += 1 }
        file = try AppendFile(path: "\(stem).\(n)", exclusive: true)
        path = file.path
        var event = Proto()
        event.double(1, wallTime)
        event.string(3, "brain.Event:2")
        try write(event.bytes)
    }

    /// A scalar under `tag` at `step`.
    public func scalar(_ tag: String, _ value: Float, step: Int, wallTime: Double = Date().timeIntervalSince1970) throws {
        var v = Proto()
        v.string(1, tag)
        v.float(2, value)
        try emit(v, step: step, wallTime: wallTime)
    }

    /// A histogram under `tag`: `counts[i]` values fell in (limits[i−1], limits[i]].
    public func histogram(
        _ tag: String, limits: [Double], counts: [Double], min: Double, max: Double, sum: Double,
        sumSquares: Double, step: Int, wallTime: Double = Date().timeIntervalSince1970
    ) throws {
        require(limits.count == counts.count, "EventWriter: one count per bucket limit")
        var h = Proto()
        h.double(1, min)
        h.double(2, max)
        h.double(3, counts.reduce(0, +))
        h.double(4, sum)
        h.double(5, sumSquares)
        h.packedDoubles(6, limits)
        h.packedDoubles(7, counts)
        var v = Proto()
        v.string(1, tag)
        v.message(5, h)
        try emit(v, step: step, wallTime: wallTime)
    }

    /// A histogram of `values` in `bins` equal-width buckets between their min and max
    /// (non-finite values left out).
    public func histogram(_ tag: String, values: [Float], bins: Int = 30, step: Int, wallTime: Double = Date().timeIntervalSince1970) throws {
        let xs = values.filter(\.isFinite).map(Double.init)
        guard let lo = xs.min(), let hi = xs.max() else { return }
        let width = hi > lo ? (hi - lo) / Double(bins) : 1
        var counts = [Double](repeating: 0, count: bins)
        for x in xs { counts[Swift.min(bins - 1, Int((x - lo) / width))] += 1 }
        let limits = (1...bins).map { lo + Double($0) * width }
        try histogram(
            tag, limits: limits, counts: counts, min: lo, max: hi, sum: xs.reduce(0, +),
            sumSquares: xs.reduce(0) { $0 + $1 * $1 }, step: step, wallTime: wallTime)
    }

    /// Pushes what was written to the file.
    public func flush() { file.sync() }

    private func emit(_ value: Proto, step: Int, wallTime: Double) throws {
        var summary = Proto()
        summary.message(1, value)
        var event = Proto()
        event.double(1, wallTime)
        event.int64(2, Int64(step))
        event.message(5, summary)
        try write(event.bytes)
    }

    private func write(_ payload: [UInt8]) throws {
        var record: [UInt8] = []
        var length = UInt64(payload.count).littleEndian
        let lengthBytes = withUnsafeBytes(of: &length) { Array($0) }
        record += lengthBytes
        var lengthCRC = CRC32C.masked(lengthBytes).littleEndian
        record += withUnsafeBytes(of: &lengthCRC) { Array($0) }
        record += payload
        var dataCRC = CRC32C.masked(payload).littleEndian
        record += withUnsafeBytes(of: &dataCRC) { Array($0) }
        try file.append(record)
    }
}

/// A minimal protocol-buffer encoder: varints, fixed 32/64-bit fields, length-delimited fields.
struct Proto {
    var bytes: [UInt8] = []

    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func key(_ field: Int, _ wire: UInt64) { varint(UInt64(field) << 3 | wire) }

    mutating func double(_ field: Int, _ v: Double) {
        key(field, 1)
        var bits = v.bitPattern.littleEndian
        bytes += withUnsafeBytes(of: &bits) { Array($0) }
    }

    mutating func float(_ field: Int, _ v: Float) {
        key(field, 5)
        var bits = v.bitPattern.littleEndian
        bytes += withUnsafeBytes(of: &bits) { Array($0) }
    }

    mutating func int64(_ field: Int, _ v: Int64) {
        key(field, 0)
        varint(UInt64(bitPattern: v))
    }

    mutating func lengthDelimited(_ field: Int, _ payload: [UInt8]) {
        key(field, 2)
        varint(UInt64(payload.count))
        bytes += payload
    }

    mutating func string(_ field: Int, _ s: String) { lengthDelimited(field, Array(s.utf8)) }
    mutating func message(_ field: Int, _ m: Proto) { lengthDelimited(field, m.bytes) }

    mutating func packedDoubles(_ field: Int, _ vs: [Double]) {
        var inner: [UInt8] = []
        inner.reserveCapacity(vs.count * 8)
        for v in vs {
            var bits = v.bitPattern.littleEndian
            inner += withUnsafeBytes(of: &bits) { Array($0) }
        }
        lengthDelimited(field, inner)
    }
}
