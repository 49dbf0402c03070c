import Synchronization

/// A non-finite value found by anomaly mode.
public struct AnomalyError: Error, CustomStringConvertible, Sendable {
    /// The pass in which the value appeared.
    public enum Phase: String, Sendable { case forward, backward }
    /// Whether the value was produced by an op's forward output or by its backward rule.
    public let phase: Phase
    /// Label of the op (`"matmul"`, `"log"`, …).
    public let op: String
    /// Creation index of the node (its position in the graph; smaller is earlier).
    public let nodeIndex: Int?
    /// In backward, how many nodes had been processed before this one (0 = the output).
    public let backwardStep: Int?
    /// Dotted name of the module that created the op, if it ran inside one.
    public let module: String?
    /// NaN values in the tensor.
    public let nanCount: Int
    /// Infinite values in the tensor.
    public let infCount: Int

    /// The op, its node and module, and what was non-finite, in one sentence.
    public var description: String {
        let place = module.map { " in module '\($0)'" } ?? ""
        let pos = nodeIndex.map { " (node #\($0)" + (backwardStep.map { ", backward step \($0))" } ?? ")") } ?? ""
        let what = phase == .forward ? "output" : "gradient of its input"
        return "anomaly: op '\(op)'\(place)\(pos) produced a non-finite \(what): \(nanCount) NaN, \(infCount) ±Inf"
    }
}

/// Collects the first anomaly seen while anomaly mode is on.
final class AnomalyRecorder: Sendable {
    let first = Mutex<AnomalyError?>(nil)

    func checkForward(_ t: Tensor, op: String, module: String?, index: Int) {
        guard first.withLock({ $0 == nil }) else { return }
        let (nan, inf) = t.nonFiniteCounts()
        guard nan + inf > 0 else { return }
        record(
            AnomalyError(
                phase: .forward, op: op, nodeIndex: index, backwardStep: nil,
                module: module, nanCount: nan, infCount: inf))
    }

    func checkBackward(_ g: Tensor, node: TapeNode, step: Int) {
        guard first.withLock({ $0 == nil }) else { return }
        let (nan, inf) = g.nonFiniteCounts()
        guard nan + inf > 0 else { return }
        record(
            AnomalyError(
                phase: .backward, op: node.op, nodeIndex: node.index, backwardStep: step,
                module: node.module, nanCount: nan, infCount: inf))
    }

    private func record(_ e: AnomalyError) {
        first.withLock { if $0 == nil { $0 = e } }
    }
}

/// Runs `body` with anomaly detection on: every op's forward output and every gradient
/// computed in backward is checked for NaN and ±Inf. If any is found, the first one is
/// thrown as an `AnomalyError` when `body` returns (naming the op, its node index and its
/// module). Errors thrown by `body` itself pass through unchanged.
public func withAnomalyDetection<R>(_ body: () throws -> R) throws -> R {
    let recorder = AnomalyRecorder()
    var ctx = Autograd.context
    ctx.anomaly = recorder
    let result = try Autograd.$context.withValue(ctx, operation: body)
    if let e = recorder.first.withLock({ $0 }) { throw e }
    return result
}

extension Tensor {
    /// Number of NaN and of ±Inf values.
    public func nonFiniteCounts() -> (nan: Int, inf: Int) {
        var nan = 0, inf = 0
        for v in scalars where !v.isFinite {
            if v.isNaN { nan += 1 } else { inf += 1 }
        }
        return (nan, inf)
    }
}
