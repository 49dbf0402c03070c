import GradGuard
import XCTest
import _TestSupport

@testable import GradGuardHealth
@testable import GradGuardTrain

/// The parts of data-parallel training that need no second process: the sampler, the world
/// of one, the bucketing, and how findings name ranks.
final class DataParallelUnitTests: XCTestCase {
    func data(_ n: Int) -> TensorDataset {
        TensorDataset(inputs: Tensor(shape: [n, 1], scalars: (0..<n).map(Float.init)), targets: Tensor(shape: [n], scalars: [Float](repeating: 0, count: n)))
    }

    func testShardsTogetherAreTheGlobalBatchesOfOneProcess() {
        // 4 ranks × batch 3 see, batch by batch, what one process sees with batch 12 (same seed).
        let n = 48
        let one = DataLoader(data(n), batchSize: 12, seed: 7)
        let ranks = (0..<4).map { DataLoader(data(n), batchSize: 3, seed: 7, rank: $0, replicas: 4) }
        for epoch in 0..<3 {
            XCTAssertEqual(ranks[0].batchesPerEpoch, one.batchesPerEpoch)
            for b in 0..<one.batchesPerEpoch {
                let together = ranks.flatMap { $0.indices(epoch: epoch, batch: b) }
                XCTAssertEqual(Set(together), Set(one.indices(epoch: epoch, batch: b)), "epoch \(epoch) batch \(b)")
                XCTAssertEqual(together.count, 12)
            }
        }
    }

    func testShardsArePaddedToEqualCountsAndDisjointOtherwise() {
        // 10 examples over 4 ranks: 3 each, the first two examples of the order seen twice (as
        // DistributedSampler pads).
        let loaders = (0..<4).map { DataLoader(data(10), batchSize: 2, seed: 1, rank: $0, replicas: 4) }
        let shards = loaders.map { $0.shard(epoch: 0) }
        XCTAssertEqual(shards.map(\.count), [3, 3, 3, 3])
        XCTAssertEqual(Set(shards.flatMap { $0 }), Set(0..<10))
        let order = loaders[0].order(epoch: 0)
        XCTAssertEqual(shards.flatMap { $0 }.sorted(), (order + order.prefix(2)).sorted())
        XCTAssertEqual(loaders.map(\.batchesPerEpoch), [2, 2, 2, 2])
        // Every epoch reshuffles the global order, the same on every rank.
        XCTAssertNotEqual(loaders[0].shard(epoch: 0), loaders[0].shard(epoch: 1))
    }

    func testTheWorldOfOneGivesBackWhatItWasGiven() throws {
        let world = SingleProcessCommunicator()
        XCTAssertFalse(world.isDistributed)
        XCTAssertEqual(try world.allGather([1, 2, 3]), [[1, 2, 3]])
        XCTAssertEqual(try world.allGatherVariable([4, 5]), [[4, 5]])
        XCTAssertEqual(try world.broadcast(bytes: [9, 8]), [9, 8])
        var v: [Float] = [2, 4]
        try v.withUnsafeMutableBufferPointer { try world.sumIdentically($0, scale: 0.5) }
        XCTAssertEqual(v, [1, 2])
        try world.checkSame(42, what: "anything")
    }

    func testBucketsHoldAtMostTheirBytesLastParametersFirst() {
        let params = (0..<5).map { i in NamedParameter(name: "m\(i).p", tensor: Tensor.zeros([100], requiresGrad: true)) }
        let sync = GradientSync(parameters: params, communicator: SingleProcessCommunicator(), bucketBytes: 800)
        XCTAssertEqual(sync.buckets, [[4, 3], [2, 1], [0]])
    }

    func rank(_ r: Int, norm: Float, nonFinite: [String: Int] = [:], loss: Float = 1) -> RankStatistics {
        RankStatistics(rank: r, loss: loss, gradNorm: norm, nonFinite: nonFinite, computeSeconds: 0, waitSeconds: 0, communicationSeconds: 0)
    }

    func testFindingsNameTheRanksBehindThem() {
        let nan = Finding(kind: .nonFiniteGradient, step: 3, message: "gradients hold 1 NaN", tensors: ["lstm.weight_hh_l0"])
            .namingRanks([rank(0, norm: 1), rank(1, norm: .nan, nonFinite: ["lstm.weight_hh_l0": 1]), rank(2, norm: 1)])
        XCTAssertEqual(nan.ranks, [1])
        XCTAssertTrue(nan.message.contains("rank 1, lstm.weight_hh_l0: NaN"), nan.message)
        let loss = Finding(kind: .nonFiniteLoss, step: 3, message: "the loss is nan").namingRanks([rank(0, norm: 1), rank(1, norm: 1, loss: .infinity)])
        XCTAssertEqual(loss.ranks, [1])
        let spike = Finding(kind: .spike, step: 3, message: "spike").namingRanks([rank(0, norm: 1), rank(1, norm: 1.2), rank(2, norm: 40)])
        XCTAssertEqual(spike.ranks, [2])
        XCTAssertTrue(spike.message.contains("rank 2's local gradient norm is 36.4× the median of the ranks (1.1)"), spike.message)
        // No rank stands out: the finding is left as it was.
        let even = Finding(kind: .spike, step: 3, message: "spike").namingRanks([rank(0, norm: 1), rank(1, norm: 1.1)])
        XCTAssertNil(even.ranks)
    }

    func testARankThatKeepsStandingOutIsReportedOnce() {
        let monitor = RankOutlierMonitor()
        var findings: [Finding] = []
        for step in 0..<60 {
            // Rank 2 carries 5× the others' norm on every other step.
            let ranks = [rank(0, norm: 1), rank(1, norm: 1.1), rank(2, norm: step % 2 == 0 ? 5 : 1)]
            if let f = monitor.observe(step: step, ranks: ranks) { findings.append(f) }
        }
        XCTAssertEqual(findings.count, 1)
        XCTAssertEqual(findings.first?.kind, .rankOutlier)
        XCTAssertEqual(findings.first?.ranks, [2])
        XCTAssertEqual(findings.first?.step, 38)  // the 20th outlier step
        XCTAssertFalse(FindingKind.rankOutlier.isExploding)
    }
}

/// The records' summary of a data-parallel run: times per rank and the gradient noise scale.
final class DataParallelSummaryTests: XCTestCase {
    func record(_ step: Int, global: Float, local: [Float], compute: [Double]) -> StepRecord {
        var r = StepRecord(
            step: step, epoch: 0, loss: 1, lr: 0.1, gradNorm: global, gradNormAfterClip: nil, clipped: false, skipped: false, lrScale: 1,
            moduleNorms: nil, updateRatios: nil)
        r.batch = 8 * local.count
        r.ranks = local.enumerated().map { i, n in
            RankStatistics(rank: i, loss: 1, gradNorm: n, nonFinite: [:], computeSeconds: compute[i], waitSeconds: 0.001, communicationSeconds: 0.002)
        }
        return r
    }

    func testNoiseScaleFollowsMcCandlishEtAl() {
        // |G|² = 1 and tr(Σ) = 64: a batch of B has E|g_B|² = 1 + 64/B, so 9 at B = 8 (each
        // rank) and 5 at B = 16 (their average): B_simple = 64.
        let steps = (0..<20).map { record($0, global: Float(5).squareRoot(), local: [3, 3], compute: [0.010, 0.030]) }
        let s = DataParallelSummary(steps: steps)!
        XCTAssertEqual(s.noiseScale!, 64, accuracy: 1e-3)
        XCTAssertEqual(s.noiseSteps, 10)
        XCTAssertEqual(s.globalBatch, 16)
        XCTAssertTrue(s.batchNote!.contains("above the global batch of 16"), s.batchNote!)
        XCTAssertEqual(s.ranks.map { $0.rank }, [0, 1])
        XCTAssertEqual(s.ranks[1].compute, 0.030, accuracy: 1e-12)
        // Noise that hides the gradient (the average's norm as large as each rank's): no estimate.
        XCTAssertNil(DataParallelSummary(steps: (0..<20).map { record($0, global: 3, local: [3, 3], compute: [0, 0]) })!.noiseScale)
        // One process: no summary.
        XCTAssertNil(DataParallelSummary(steps: [record(0, global: 1, local: [1], compute: [0])]))
    }
}

/// Rank 0 of a pretend world of two whose other rank holds the same gradients: counts the
/// collectives started (the values of the other rank's blocks are not modelled).
final class CountingCommunicator: Communicator {
    let rank = 0, size = 2
    var timeout = 0.0
    var label: String { "counting" }
    var reduceScatters = 0, allGathers = 0
    func takeSeconds() -> Double { 0 }
    func allReduce(_ values: UnsafeMutableBufferPointer<Float>, _ op: ReduceOp) throws {}
    func allReduce(_ values: UnsafeMutableBufferPointer<Double>, _ op: ReduceOp) throws {}
    func reduceScatterSum(_ send: UnsafeBufferPointer<Float>, into recv: UnsafeMutableBufferPointer<Float>) throws {
        reduceScatters += 1
        for i in recv.indices { recv[i] = 2 * send[i] }
    }
    func allGather(_ send: UnsafeRawBufferPointer, into recv: UnsafeMutableRawBufferPointer) throws {
        allGathers += 1
        for r in 0..<size { UnsafeMutableRawBufferPointer(rebasing: recv[(r * send.count)..<((r + 1) * send.count)]).copyMemory(from: send) }
    }
    func startReduceScatterSum(_ send: UnsafeBufferPointer<Float>, into recv: UnsafeMutableBufferPointer<Float>) throws -> any PendingCollective {
        try reduceScatterSum(send, into: recv)
        return FinishedCollective()
    }
    func startAllGather(_ send: UnsafeRawBufferPointer, into recv: UnsafeMutableRawBufferPointer) throws -> any PendingCollective {
        try allGather(send, into: recv)
        return FinishedCollective()
    }
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {}
    func barrier() throws {}
    func heartbeat(step: Int) {}
    func abort(code: Int32, message: String) -> Never { fatalError(message) }
}

final class GradientSyncOverlapTests: XCTestCase {
    func testArmedBackwardStartsEveryBucketOnceAndInOrder() throws {
        DefaultGenerator.seed(3)
        let model = Sequential([
            Linear(inputSize: 8, outputSize: 64), ReLU(), Linear(inputSize: 64, outputSize: 64), ReLU(), Linear(inputSize: 64, outputSize: 4)
        ])
        let world = CountingCommunicator()
        // Buckets of at most 1 KiB: the last layer's and the middle layer's weights fill their own.
        let sync = GradientSync(parameters: NamedParameter.of(model), communicator: world, bucketBytes: 1024)
        XCTAssertGreaterThan(sync.buckets.count, 2)
        let x = Tensor.randn([5, 8])
        for step in 0..<3 {
            for p in model.parameters() { p.grad = nil }
            sync.arm()
            model(x).sum().backward()
            // Every bucket's gradients were final before backward ended: all started from the hooks.
            XCTAssertEqual(sync.startedDuringBackward, sync.buckets.count)
            XCTAssertEqual(world.reduceScatters, (step + 1) * sync.buckets.count)
            let local = model.parameters().map { $0.grad!.scalars }
            try sync.finish(present: [Bool](repeating: true, count: local.count))
            XCTAssertEqual(world.reduceScatters, (step + 1) * sync.buckets.count, "no bucket started twice")
            XCTAssertEqual(world.allGathers, (step + 1) * sync.buckets.count)
            // Rank 0's block of the mean of two equal gradients is the gradient itself.
            XCTAssertEqual(model.parameters().last!.grad!.scalars, local.last!)
        }
        // Not armed: every bucket starts in launchRemaining, none from backward.
        model(x).sum().backward()
        try sync.average(present: [Bool](repeating: true, count: model.parameters().count))
        XCTAssertEqual(sync.startedDuringBackward, 0)
        XCTAssertEqual(world.reduceScatters, 4 * sync.buckets.count)
    }
}

final class CheckpointMessageTests: XCTestCase {
    func testFilesTravelAsRecordsAndBadMessagesAreRefused() {
        let records: [(String, Data)] = [("path", Data("runs/a/checkpoints/step-00000005".utf8)), ("manifest.json", Data("{}".utf8)), ("empty", Data())]
        let back = Trainer.unpack(Trainer.pack(records))!
        XCTAssertEqual(back.map(\.0), records.map(\.0))
        XCTAssertEqual(back.map(\.1), records.map(\.1))
        XCTAssertNil(Trainer.unpack([]))
        // Truncated anywhere, or a length past the end: refused, never read out of bounds.
        let whole = Trainer.pack(records)
        for cut in [1, 7, 9, 20, whole.count - 1] { XCTAssertNil(Trainer.unpack(Array(whole.prefix(cut))), "cut at \(cut)") }
        XCTAssertNil(Trainer.unpack([255, 255, 255, 255, 255, 255, 255, 255, 1]))
    }
}
