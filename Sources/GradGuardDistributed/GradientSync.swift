import Foundation
import GradGuardTensor

/// Averages the parameters' gradients over the ranks of a data-parallel job, in fused
/// buckets (one collective per bucket, not per tensor), last parameters first — the order
/// backward finishes them, as PyTorch's DistributedDataParallel buckets them.
///
/// Each bucket is summed once, block by block, on one rank (reduce-scatter) and the blocks are
/// copied to every rank (all-gather), so the average has the same bits everywhere and the
/// ranks' parameters never drift apart.
///
/// With `overlap` (the default), `arm()` before the last backward of a step makes every
/// parameter report when its gradient is final (a post-accumulate hook); a bucket whose
/// gradients are all final starts its reduce-scatter while backward goes on, as DDP does.
/// Buckets start in bucket order on every rank — collectives must be issued in the same order
/// everywhere — and the all-gathers start in `finish`, after the statistics exchange, in
/// the same order.
public final class GradientSync {
    /// The ranks that average the gradients.
    public let communicator: any Communicator
    /// The parameters' names (for messages) and tensors, in the model's order.
    public let names: [String]
    /// The parameters' tensors, in the same order as `names`.
    public let tensors: [Tensor]
    /// The largest bucket, in bytes (DDP's default `bucket_cap_mb` is 25).
    public let bucketBytes: Int
    /// Parameter indices of each bucket.
    public let buckets: [[Int]]
    /// Start reduce-scatters during backward (after `arm()`).
    public let overlap: Bool
    /// Buckets whose reduce-scatter started before `launchRemaining()` in the last step.
    public private(set) var startedDuringBackward = 0

    /// Per bucket: its values (padded to a multiple of the world size) and this rank's block.
    private let flat: [UnsafeMutableBufferPointer<Float>]
    private let block: [UnsafeMutableBufferPointer<Float>]
    private var ready: [Bool]
    private var armed = false
    /// Buckets whose reduce-scatter has started, in order.
    private var launched = 0
    private var pending: [(any PendingCollective)?]
    /// The first error of a collective started from a hook (reported by `finish`).
    private var hookError: Error? = nil

    /// Averages the gradients of `tensors` over `communicator`'s ranks in buckets of at most `bucketBytes`, overlapping backward when `overlap`.
    public init(names: [String], tensors: [Tensor], communicator: any Communicator, bucketBytes: Int = 25 << 20, overlap: Bool = true) {
        precondition(names.count == tensors.count, "GradientSync: a name per tensor")
        (self.names, self.tensors) = (names, tensors)
        self.communicator = communicator
        self.bucketBytes = bucketBytes
        self.overlap = overlap
        var buckets: [[Int]] = []
        var current: [Int] = [], bytes = 0
        for i in tensors.indices.reversed() {
            let b = tensors[i].count * 4
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
        let n = communicator.size
        var flat: [UnsafeMutableBufferPointer<Float>] = [], block: [UnsafeMutableBufferPointer<Float>] = []
        for b in buckets {
            let total = b.reduce(0) { $0 + tensors[$1].count }
            let per = (total + n - 1) / n
            let f = UnsafeMutableBufferPointer<Float>.allocate(capacity: per * n)
            f.initialize(repeating: 0)
            let m = UnsafeMutableBufferPointer<Float>.allocate(capacity: per)
            m.initialize(repeating: 0)
            flat.append(f)
            block.append(m)
        }
        self.flat = flat
        self.block = block
        ready = [Bool](repeating: false, count: tensors.count)
        pending = [(any PendingCollective)?](repeating: nil, count: buckets.count)
        if overlap && communicator.isDistributed {
            for (i, t) in tensors.enumerated() {
                t.registerPostAccumulateGradHook { [weak self] _ in self?.gradientReady(i) }
            }
        }
    }

    deinit {
        for p in pending { try? p?.wait() }
        for f in flat { f.deallocate() }
        for b in block { b.deallocate() }
    }

    /// The next backward is the last of the step: its final gradients may start buckets.
    public func arm() {
        guard overlap else { return }
        reset()
        armed = true
    }

    private func reset() {
        for i in ready.indices { ready[i] = false }
        launched = 0
        startedDuringBackward = 0
        hookError = nil
    }

    private func gradientReady(_ index: Int) {
        guard armed, hookError == nil else { return }
        ready[index] = true
        do {
            while launched < buckets.count, buckets[launched].allSatisfy({ ready[$0] }) {
                try start(launched)
                launched += 1
                startedDuringBackward += 1
            }
            // Transports that progress only when called move the started buckets on here.
            for p in pending.prefix(launched) { _ = try p?.test() }
        } catch { hookError = error }
    }

    /// Copies bucket `k`'s gradients (zeros for a parameter without one) and starts its reduce-scatter.
    private func start(_ k: Int) throws {
        let f = flat[k]
        var offset = 0
        for i in buckets[k] {
            let t = tensors[i]
            if let g = t.grad {
                g.withUnsafeScalars { s in _ = UnsafeMutableBufferPointer(rebasing: f[offset..<(offset + s.count)]).initialize(from: s) }
            } else {
                f[offset..<(offset + t.count)].update(repeating: 0)
            }
            offset += t.count
        }
        f[offset...].update(repeating: 0)
        pending[k] = try communicator.startReduceScatterSum(UnsafeBufferPointer(f), into: block[k])
    }

    /// Starts the reduce-scatter of every bucket not started yet, in bucket order. Call before
    /// any other collective of the step (the guard does, before exchanging statistics).
    public func launchRemaining() throws {
        if !armed && launched == 0 { startedDuringBackward = 0 }
        armed = false
        if let e = hookError {
            hookError = nil
            throw e
        }
        while launched < buckets.count {
            try start(launched)
            launched += 1
        }
    }

    /// Finishes the average: waits for the reduce-scatters, scales this rank's blocks by
    /// 1/size, gathers them and writes the mean into every gradient present on some rank
    /// (`present[i]`; a rank without one receives the mean).
    public func finish(present: [Bool]) throws {
        if launched < buckets.count { try launchRemaining() }
        let scale = 1 / Float(communicator.size)
        var gathers: [any PendingCollective] = []
        for k in buckets.indices {
            try pending[k]?.wait()
            pending[k] = nil
            let b = block[k]
            for j in b.indices { b[j] *= scale }
            gathers.append(try communicator.startAllGather(UnsafeRawBufferPointer(b), into: UnsafeMutableRawBufferPointer(flat[k])))
        }
        for (k, g) in gathers.enumerated() {
            try g.wait()
            let f = flat[k]
            var offset = 0
            for i in buckets[k] {
                let t = tensors[i]
                defer { offset += t.count }
                guard present[i] else { continue }
                if t.grad == nil { t.grad = Tensor.zeros(t.shape) }
                t.grad!.withUnsafeMutableScalars { d in _ = d.initialize(from: UnsafeMutableBufferPointer(rebasing: f[offset..<(offset + d.count)])) }
            }
        }
        // The step is over: later backwards (the next step's first micro-batches) start nothing
        // until `arm()`.
        launched = 0
        armed = false
    }

    /// Replaces every gradient by its mean over the ranks (`finish`, which starts what has not started).
    public func average(present: [Bool]) throws { try finish(present: present) }
}
