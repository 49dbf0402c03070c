import Foundation
import GradGuardHealth
import GradGuardTensor

/// Reads a run directory's records back.
public enum RunRecords {
    /// The encoder of every record a run writes: NaN and ±∞ (a step's loss or norm may be
    /// either) as the text `decoder` reads back.
    static func encoder(_ formatting: JSONEncoder.OutputFormatting) -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = formatting
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return e
    }

    static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return d
    }

    /// The lines of a JSON Lines file (none when it is missing), and whether its last line is
    /// torn: cut short with no line break, as a crash in the middle of a write leaves it.
    static func lines(_ path: String) throws -> (lines: [Data], torn: Bool) {
        let data: Data
        do { data = try FileContents.read(path) } catch let e as FileReadFailure {
            if e.kind == .missing { return ([], false) }
            throw FileError.cannotRead(path: path, reason: e.reason)
        }
        return (data.split(separator: 0x0A).map { Data($0) }, !data.isEmpty && data.last != 0x0A)
    }

    /// Decodes each line of a JSON Lines file with `decode`; a line that does not decode is an
    /// error naming its number, except a torn last line, which is skipped (see `tornRecords`).
    static func decodeLines<T>(_ path: String, _ decode: (Data) throws -> T?) throws -> [T] {
        let (lines, torn) = try lines(path)
        var out: [T] = []
        for (i, line) in lines.enumerated() {
            do { if let v = try decode(line) { out.append(v) } } catch {
                if torn && i == lines.count - 1 { break }
                throw FileError.cannotRead(path: path, reason: "line \(i + 1): \(RecordProblem.describe(error))")
            }
        }
        return out
    }

    /// The record files of a run whose last line is torn (an interrupted write), each with a
    /// sentence saying so; readers skip that line, and a resumed run cuts it off.
    public static func tornRecords(in dir: String) -> [String] {
        ["metrics.jsonl", "incidents.jsonl"].compactMap { name in
            let path = dir + "/" + name
            guard let (fd, size) = try? FileContents.openRegular(path), size > 0 else { return nil }
            defer { close(fd) }
            var last: UInt8 = 0
            guard pread(fd, &last, 1, off_t(size - 1)) == 1, last != 0x0A else { return nil }
            return "\(path): its last line is cut short (an interrupted write); it is skipped"
        }
    }

    private struct Kind: Decodable { let kind: String }

    /// Steps and evaluations of `metrics.jsonl`, in file order (a resumed run appends).
    public static func metrics(in dir: String) throws -> (steps: [StepRecord], evaluations: [EvaluationRecord]) {
        let d = decoder()
        var steps: [StepRecord] = [], evals: [EvaluationRecord] = []
        _ = try decodeLines(dir + "/metrics.jsonl") { line -> Void? in
            switch try d.decode(Kind.self, from: line).kind {
            case "step": steps.append(try d.decode(StepRecord.self, from: line))
            case "eval": evals.append(try d.decode(EvaluationRecord.self, from: line))
            default: break
            }
            return nil
        }
        return (lastOfEachAttempt(steps), evals)
    }

    /// Where each record goes on a chart's step axis: its step, with repeated attempts at one
    /// step (skipped and tried again) spread evenly within it (5 attempts at step 0: 0, 0.2,
    /// 0.4, 0.6, 0.8), so that a run stuck at one step still draws a line.
    public static func chartPositions(_ steps: [Int]) -> [Double] {
        var out = [Double](repeating: 0, count: steps.count)
        var i = 0
        while i < steps.count {
            var j = i
            while j + 1 < steps.count && steps[j + 1] == steps[i] { j += 1 }
            let n = Double(j - i + 1)
            for k in i...j { out[k] = Double(steps[i]) + Double(k - i) / n }
            i = j + 1
        }
        return out
    }

    /// A resumed run repeats the steps after its checkpoint: the last record of each attempt
    /// is kept. Attempts at one step in a row (a skipped step tried again) are distinct —
    /// the k-th record of a run of equal steps is attempt k — so they all stay.
    static func lastOfEachAttempt(_ steps: [StepRecord]) -> [StepRecord] {
        struct Key: Hashable { let step: Int, attempt: Int }
        var keys: [Key] = []
        var previous: Int? = nil, attempt = 0
        for s in steps {
            attempt = s.step == previous ? attempt + 1 : 0
            previous = s.step
            keys.append(Key(step: s.step, attempt: attempt))
        }
        var seen = Set<Key>()
        return zip(steps, keys).reversed().filter { seen.insert($0.1).inserted }.map(\.0).reversed()
    }

    /// Every incident of the run in `dir`, in order (a torn last line skipped).
    public static func incidents(in dir: String) throws -> [Incident] {
        let d = decoder()
        return try decodeLines(dir + "/incidents.jsonl") { try d.decode(Incident.self, from: $0) }
    }

    /// One line of a comparison.
    public struct Summary: Sendable {
        /// The run's directory name.
        public let run: String
        /// Distinct steps recorded.
        public let steps: Int
        /// The last step's loss.
        public let finalLoss: Float?
        /// The best evaluation loss.
        public let bestEval: Double?
        /// The last evaluation's accuracy-like metric, when it has one.
        public let finalAccuracy: Double?
        /// Incidents recorded.
        public let incidents: Int
        /// Steps not applied.
        public let skipped: Int
        /// The share of steps the clipper changed.
        public let clipRate: Double
        /// The largest finite gradient norm.
        public let maxGradNorm: Float?
    }

    /// The summary of the run in `dir` (for `gradguard compare`).
    public static func summary(of dir: String) throws -> Summary {
        let (steps, evals) = try metrics(in: dir)
        let incidents = try incidents(in: dir)
        let tail = steps.suffix(Swift.max(1, steps.count / 10)).map(\.loss).filter(\.isFinite)
        return Summary(
            run: (dir as NSString).lastPathComponent, steps: Set(steps.map(\.step)).count,
            finalLoss: tail.isEmpty ? nil : tail.reduce(0, +) / Float(tail.count),
            bestEval: evals.compactMap { $0.metrics["loss"] }.min(), finalAccuracy: evals.last?.metrics["accuracy"],
            incidents: incidents.count, skipped: steps.filter(\.skipped).count,
            clipRate: steps.isEmpty ? 0 : Double(steps.filter(\.clipped).count) / Double(steps.count),
            maxGradNorm: steps.map(\.gradNorm).filter(\.isFinite).max())
    }

    /// A plain-text table of summaries.
    public static func table(_ rows: [Summary]) -> String {
        func f(_ x: Float?) -> String { x.map { String(format: "%.4f", $0) } ?? "—" }
        func d(_ x: Double?) -> String { x.map { String(format: "%.4f", $0) } ?? "—" }
        let header = ["run", "steps", "final loss", "best eval loss", "accuracy", "incidents", "skipped", "clip rate", "max |g|"]
        let body = rows.map { r in
            [
                r.run, "\(r.steps)", f(r.finalLoss), d(r.bestEval), d(r.finalAccuracy), "\(r.incidents)", "\(r.skipped)",
                String(format: "%.0f%%", r.clipRate * 100), r.maxGradNorm.map { String(format: "%.3g", $0) } ?? "—"
            ]
        }
        let widths = header.indices.map { c in ([header[c]] + body.map { $0[c] }).map(\.count).max()! }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { c, s in
                c == 0
                    ? s.padding(toLength: widths[c], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[c] - s.count) + s
            }.joined(separator: "  ")
        }
        return ([line(header), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")] + body.map(line)).joined(separator: "\n")
    }
}
