import Foundation
import GradGuardTensor

/// Averages the parameters' gradients over the ranks of a data-parallel job, in fused
/// buckets (one collective per bucket, not per tensor), last parameters first — the order
/// backward finishes them, as PyTorch's DistributedDataParallel buckets them.
///
/// The average has the same bits on every rank (`Communicator.sumIdentically`: each block is
/// summed once and copied), so the ranks' parameters stay identical after every step.
public final class GradientSync {
    public let communicator: any Communicator
    public let parameters: [NamedParameter]
    /// The largest bucket, in bytes (DDP's default `bucket_cap_mb` is 25).
    public let bucketBytes: Int
    /// Parameter indices of each bucket.
    public let buckets: [[Int]]
    private var buffer: [Float] = []

    public init(parameters: [NamedParameter], communicator: any Communicator, bucketBytes: Int = 25 << 20) {
        self.parameters = parameters
        self.communicator = communicator
        self.bucketBytes = bucketBytes
        var buckets: [[Int]] = []
        var current: [Int] = [], bytes = 0
        for i in parameters.indices.reversed() {
            let b = parameters[i].tensor.count * 4
            if !current.isEmpty && bytes + b > bucketBytes {
                buckets.append(current)
                current = []
                bytes = 0
            }
            current.append(i)
            bytes += b
        }
        if !current.isEmpty { buckets.append(current) }
        self.buckets = buckets
    }

    /// Replaces every gradient by its mean over the ranks. `present[i]`: whether any rank has
    /// a gradient for parameter i (a rank without one contributes zeros and receives the mean).
    public func average(present: [Bool]) throws {
        let scale = 1 / Float(communicator.size)
        for bucket in buckets {
            let members = bucket.filter { present[$0] }
            guard !members.isEmpty else { continue }
            let total = members.reduce(0) { $0 + parameters[$1].tensor.count }
            if buffer.count < total { buffer = [Float](repeating: 0, count: total) }
            try buffer.withUnsafeMutableBufferPointer { flat in
                var offset = 0
                for i in members {
                    let t = parameters[i].tensor
                    if let g = t.grad {
                        g.withUnsafeScalars { s in
                            _ = UnsafeMutableBufferPointer(rebasing: flat[offset..<(offset + s.count)]).initialize(from: s)
                        }
                    } else {
                        flat[offset..<(offset + t.count)].update(repeating: 0)
                    }
                    offset += t.count
                }
                try communicator.sumIdentically(UnsafeMutableBufferPointer(rebasing: flat[0..<total]), scale: scale)
                offset = 0
                for i in members {
                    let t = parameters[i].tensor
                    if t.grad == nil { t.grad = Tensor.zeros(t.shape) }
                    t.grad!.withUnsafeMutableScalars { d in
                        _ = d.initialize(from: UnsafeMutableBufferPointer(rebasing: flat[offset..<(offset + d.count)]))
                    }
                    offset += t.count
                }
            }
        }
    }
}
