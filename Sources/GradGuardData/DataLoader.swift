import Dispatch
import GradGuardTensor

/// One batch: inputs, targets and the dataset indices they came from.
// @unchecked: a batch is made on the loader's prefetch thread and handed over once, whole, to
// the training thread (through `ResultBox` and a semaphore); its tensors are never touched by
// two threads at once.
/// A batch of examples: the model's inputs, the loss's targets, and which examples they are.
public struct Batch: @unchecked Sendable {
    /// The inputs, one example per row of the first dimension.
    public var inputs: Tensor
    /// The targets, one example per row of the first dimension.
    public var targets: Tensor
    /// The examples' indices in the dataset (for replay records and data blame).
    public let indices: [Int]

    /// A batch of `inputs` and `targets` for the examples `indices`.
    public init(inputs: Tensor, targets: Tensor, indices: [Int]) {
        self.inputs = inputs
        self.targets = targets
        self.indices = indices
    }
}

/// A source of examples that can assemble a batch from indices. Implementations must be
/// safe to call from a background thread (the loader prefetches the next batch).
public protocol Dataset: Sendable {
    var count: Int { get }
    func batch(_ indices: [Int]) throws -> Batch
    /// The batch as drawn in training epoch `epoch`: a dataset with random augmentation
    /// draws them from the epoch (and the example), so a resumed run sees the same images.
    /// By default the same as `batch(_:)`.
    func batch(_ indices: [Int], epoch: Int) throws -> Batch
}

extension Dataset {
    /// The batch without regard to the epoch (datasets with random augmentation override the two-argument form).
    public func batch(_ indices: [Int], epoch: Int) throws -> Batch { try batch(indices) }
}

/// A dataset that can say where an example comes from — an image and its label file, a line
/// of a file, a stretch of a text — for the data blame of an incident's replay.
public protocol SampleDescribing {
    /// Where example `index` comes from, in a few words.
    func describe(_ index: Int) -> String
}

/// Where example `index` of `dataset` comes from (the dataset's own words, or its position).
public func describeSample(_ dataset: any Dataset, _ index: Int) -> String {
    (dataset as? any SampleDescribing)?.describe(index) ?? "example \(index)"
}

/// Examples held as two tensors whose first axis indexes the examples.
// @unchecked: the two tensors are only read (a batch copies its rows out), so the prefetch
// thread and the training thread may share them.
/// A dataset held in two tensors whose first dimensions are the examples (PyTorch's `TensorDataset`).
public struct TensorDataset: Dataset, @unchecked Sendable {
    /// Every example's inputs.
    public let inputs: Tensor
    /// Every example's targets.
    public let targets: Tensor

    /// A dataset of the rows of `inputs` and `targets` (the same number of rows).
    public init(inputs: Tensor, targets: Tensor) {
        require(
            inputs.rank >= 1 && targets.rank >= 1 && inputs.shape[0] == targets.shape[0],
            "TensorDataset: inputs \(inputs.shape) and targets \(targets.shape) must have the same first axis")
        self.inputs = inputs
        self.targets = targets
    }

    /// The number of examples.
    public var count: Int { inputs.shape[0] }

    /// The rows `indices` of the inputs and targets.
    public func batch(_ indices: [Int]) throws -> Batch {
        let ids = Tensor(shape: [indices.count], scalars: indices.map(Float.init))
        return withoutGrad {
            Batch(inputs: inputs.indexSelect(axis: 0, indices: ids), targets: targets.indexSelect(axis: 0, indices: ids), indices: indices)
        }
    }
}

/// Batches of a dataset, epoch after epoch: a seeded shuffle per epoch (the order of epoch e
/// depends only on the seed and e, so a resumed run sees the same batches), optional
/// dropping of a last partial batch, and the next batch assembled on a background thread
/// while the current one trains.
public final class DataLoader {
    /// The examples.
    public let dataset: any Dataset
    /// Examples per batch (per rank in data-parallel training).
    public let batchSize: Int
    /// Whether each epoch's order is a seeded shuffle (otherwise the dataset's order).
    public let shuffle: Bool
    /// Whether a last, smaller batch is left out.
    public let dropLast: Bool
    /// The seed of every epoch's shuffle (the epoch is mixed in).
    public let seed: UInt64
    /// Whether the next batch is prepared on a background thread while the current one trains.
    public let prefetch: Bool
    /// This process's share of every epoch in data-parallel training: rank `rank` of
    /// `replicas` (0 of 1: the whole epoch).
    public let rank: Int
    /// The ranks the examples are shared among (`DistributedSampler`'s `num_replicas`).
    public let replicas: Int

    /// `rank`/`replicas`: the sampler semantics of PyTorch's `DistributedSampler` — each epoch's
    /// global order (the same on every rank) is padded by repeating its start to a multiple of
    /// `replicas`, and rank r takes every `replicas`-th example from position r. Batch b of
    /// every rank together is then batch b of one process with `replicas × batchSize`.
    public init(
        _ dataset: any Dataset, batchSize: Int, shuffle: Bool = true, dropLast: Bool = false, seed: UInt64 = 0,
        prefetch: Bool = true, rank: Int = 0, replicas: Int = 1
    ) {
        require(batchSize > 0, "DataLoader: batch size must be positive")
        require(replicas > 0 && rank >= 0 && rank < replicas, "DataLoader: rank \(rank) of \(replicas) replicas")
        self.dataset = dataset
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.seed = seed
        self.prefetch = prefetch
        self.rank = rank
        self.replicas = replicas
    }

    /// Examples of one epoch that this rank sees (all of them in a single process).
    public var examplesPerRank: Int { dataset.count == 0 ? 0 : (dataset.count + replicas - 1) / replicas }

    /// Batches per epoch (the same on every rank).
    public var batchesPerEpoch: Int {
        dropLast ? examplesPerRank / batchSize : (examplesPerRank + batchSize - 1) / batchSize
    }

    /// This rank's examples of epoch `epoch`, in order: positions rank, rank + replicas, … of
    /// the global order padded to a multiple of `replicas`.
    public func shard(epoch: Int) -> [Int] {
        let o = order(epoch: epoch)
        guard replicas > 1, !o.isEmpty else { return o }
        let total = examplesPerRank * replicas
        return stride(from: rank, to: total, by: replicas).map { o[$0 % o.count] }
    }

    /// The example order of epoch `epoch` (Fisher–Yates with a generator seeded from the
    /// loader's seed and the epoch).
    public func order(epoch: Int) -> [Int] {
        var ids = Array(0..<dataset.count)
        guard shuffle else { return ids }
        var g = RandomGenerator(seed: seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(epoch + 1))
        if ids.count > 1 {
            for i in stride(from: ids.count - 1, to: 0, by: -1) {
                let j = Int(g.next() % UInt64(i + 1))
                ids.swapAt(i, j)
            }
        }
        return ids
    }

    /// The indices of batch `b` of epoch `epoch` (this rank's).
    public func indices(epoch: Int, batch b: Int) -> [Int] {
        let o = shard(epoch: epoch)
        return Array(o[(b * batchSize)..<Swift.min((b + 1) * batchSize, o.count)])
    }

    /// Iterates the batches of `epoch` from batch `start`, prefetching the next one.
    public func batches(epoch: Int, from start: Int = 0) -> BatchIterator {
        BatchIterator(loader: self, epoch: epoch, order: shard(epoch: epoch), next: start)
    }

    /// A pass over one epoch's batches. A dataset's error is never swallowed: read it with
    /// `nextBatch()` (which throws), `forEachBatch` (which throws), or `for try await` (an
    /// `AsyncSequence`, whose iteration throws):
    ///
    /// ```swift
    /// let batches = loader.batches(epoch: 0)
    /// while let (_, batch) = try batches.nextBatch() { … }
    /// try loader.batches(epoch: 1).forEachBatch { batch in … }
    /// for try await batch in loader.batches(epoch: 2) { … }
    /// ```
    public final class BatchIterator: AsyncSequence, AsyncIteratorProtocol {
        /// A batch of the epoch.
        public typealias Element = Batch
        let loader: DataLoader
        let epoch: Int
        let order: [Int]
        /// The index of the batch `nextBatch()` returns next.
        public private(set) var position: Int
        private var pending: (index: Int, group: DispatchGroup, box: ResultBox)? = nil

        init(loader: DataLoader, epoch: Int, order: [Int], next: Int) {
            self.loader = loader
            self.epoch = epoch
            self.order = order
            position = next
        }

        // @unchecked: written by the prefetch thread before it signals the semaphore, read by the
        // training thread after it waits on it; the semaphore orders the two.
        final class ResultBox: @unchecked Sendable { var result: Result<Batch, Error>? }

        func indices(_ b: Int) -> [Int]? {
            guard b < loader.batchesPerEpoch else { return nil }
            return Array(order[(b * loader.batchSize)..<Swift.min((b + 1) * loader.batchSize, order.count)])
        }

        func start(_ b: Int) {
            guard loader.prefetch, let ids = indices(b) else { return }
            let group = DispatchGroup(), box = ResultBox(), dataset = loader.dataset, epoch = epoch
            DispatchQueue.global().async(group: group) { box.result = Result { try dataset.batch(ids, epoch: epoch) } }
            pending = (b, group, box)
        }

        /// The next batch with its position in the epoch; throws what the dataset threw.
        public func nextBatch() throws -> (index: Int, batch: Batch)? {
            guard let ids = indices(position) else { return nil }
            let b = position
            position += 1
            let batch: Batch
            if let p = pending, p.index == b {
                p.group.wait()
                pending = nil
                batch = try p.box.result!.get()
            } else {
                batch = try loader.dataset.batch(ids, epoch: epoch)
            }
            start(position)
            return (b, batch)
        }

        /// Calls `body` with every remaining batch of the epoch; throws the first error of the
        /// dataset or of `body`.
        public func forEachBatch(_ body: (Batch) throws -> Void) throws {
            while let (_, batch) = try nextBatch() { try body(batch) }
        }

        /// The next batch, for `for try await batch in loader.batches(epoch:)`; throws what the
        /// dataset threw.
        public func next() async throws -> Batch? { try nextBatch()?.batch }

        /// The iterator itself (a pass is used once).
        public func makeAsyncIterator() -> BatchIterator { self }
    }
}
