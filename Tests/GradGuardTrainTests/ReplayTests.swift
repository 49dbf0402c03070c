import Foundation
import GradGuard
import XCTest
import _TestSupport

/// Rows of a "rows.csv" (one header line): example i is line i + 2.
struct RowsDataset: Dataset, SampleDescribing {
    let tensors: TensorDataset
    var count: Int { tensors.count }
    func batch(_ indices: [Int]) throws -> Batch { try tensors.batch(indices) }
    func describe(_ index: Int) -> String { "rows.csv:\(index + 2)" }
}

final class ReplayTests: TemporaryDirectoryTestCase {
    /// 4 Gaussian blobs; example `planted` has its inputs scaled 10⁴ (a unit error in the file).
    func data(_ n: Int, planted: Int?) -> RowsDataset {
        var g = RandomGenerator(seed: 5)
        let labels = (0..<n).map { _ in Float(Int(g.next() % 4)) }
        var x = Tensor.randn([n, 6], generator: &g).scalars
        for i in 0..<n { x[i * 6 + Int(labels[i])] += 2 }
        if let planted { for k in 0..<6 { x[planted * 6 + k] *= 10_000 } }
        return RowsDataset(tensors: TensorDataset(inputs: Tensor(shape: [n, 6], scalars: x), targets: Tensor(shape: [n], scalars: labels)))
    }

    func trainer(run: String) throws -> Trainer {
        DefaultGenerator.seed(3)
        let model = Sequential(Linear(inputSize: 6, outputSize: 16), ReLU(), Dropout(p: 0.1), Linear(inputSize: 16, outputSize: 4))
        var c = TrainerConfig()
        (c.epochs, c.batchSize, c.shuffle, c.seed) = (1, 16, false, 1)
        return try Trainer(
            model: model, optimizer: SGD(model.parameters(), lr: 0.05), policy: GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 5)), config: c,
            runDirectory: run
        ) { m, b in crossEntropy((m as! Sequential)(b.inputs), b.targets) }
    }

    func testAnIncidentKeepsItsReplayAndNamesTheExampleBehindIt() throws {
        // Example 200 is in the 13th batch (step 12), after the spike detector's warm-up.
        let t = try trainer(run: tmp + "/run")
        var incidents: [Incident] = []
        t.callbacks.onIncident = { incidents.append($0) }
        try t.fit(train: data(256, planted: 200))
        let spike = try XCTUnwrap(incidents.first { $0.step == 12 }, "\(incidents.map(\.step))")
        XCTAssertEqual(spike.samples?.first?.index, 200)
        XCTAssertEqual(spike.samples?.first?.source, "rows.csv:202")
        XCTAssertGreaterThan(spike.samples?.first?.share ?? 0, 0.9)
        XCTAssertTrue(spike.recommendations.first?.hasPrefix("rows.csv:202 carries") == true, "\(spike.recommendations)")
        // The record holds the step's weights, examples and random state.
        let folder = try XCTUnwrap(spike.replay)
        let (record, weights) = try ReplayStore(runDirectory: tmp + "/run", budgetBytes: .max).load(folder)
        XCTAssertEqual(record.step, 12)
        XCTAssertEqual(record.microBatches, [Array(192..<208)])
        XCTAssertEqual(Set(weights.keys), Set(t.model.stateDict().keys))
        // Written to incidents.jsonl too.
        XCTAssertEqual(try RunRecords.incidents(in: tmp + "/run").first { $0.step == 12 }?.samples?.first?.index, 200)
        // The same run without the planted example has no incident there.
        let clean = try trainer(run: tmp + "/clean")
        var cleanSteps: [Int] = []
        clean.callbacks.onIncident = { cleanSteps.append($0.step) }
        try clean.fit(train: data(256, planted: nil))
        XCTAssertFalse(cleanSteps.contains(12))
    }

    func testTheBudgetKeepsTheNewestRecords() throws {
        let store = ReplayStore(runDirectory: tmp, budgetBytes: 3000)
        let w = ["w": Tensor.zeros([100])]
        var r = ReplayRecord(
            step: 1, epoch: 0, microBatches: [[1, 2]], accumulation: 1, random: RandomGenerator(seed: 1).state, threads: 2, loss: 1, globalNormBits: 0,
            tensorNormBits: [:])
        var kept: [String] = []
        for s in 1...6 {
            r.step = s
            if let f = try store.save(r, weights: w, attempt: s) { kept.append(f) }
        }
        let present = store.records().map(\.folder)
        XCTAssertEqual(present, Array(kept.suffix(present.count)))
        XCTAssertLessThan(present.count, 6)
        XCTAssertLessThanOrEqual(store.records().reduce(0) { $0 + $1.bytes }, 3000)
        // One record larger than the whole budget is not kept.
        XCTAssertNil(try ReplayStore(runDirectory: tmp, budgetBytes: 100).save(r, weights: w, attempt: 9))
        // The step of a NaN or infinite loss (the incidents most worth replaying) is kept and read back.
        let wide = ReplayStore(runDirectory: tmp + "/nan", budgetBytes: 1 << 20)
        for bad in [Float.nan, .infinity] {
            r.loss = bad
            let folder = try XCTUnwrap(try wide.save(r, weights: w, attempt: bad.isNaN ? 1 : 2))
            let back = try wide.load(folder).record
            XCTAssertEqual(back.loss.isNaN, bad.isNaN)
            XCTAssertEqual(back.loss.isInfinite, bad.isInfinite)
        }
    }

    /// A replay record carries a manifest: a flipped byte in either file, a record whose
    /// numbers no run writes, and a folder that leads out of the run are refused by name.
    func testDamagedReplayRecordsAreRefused() throws {
        let store = ReplayStore(runDirectory: tmp, budgetBytes: 1 << 20)
        var r = ReplayRecord(
            step: 4, epoch: 0, microBatches: [[0, 3]], accumulation: 1, random: RandomGenerator(seed: 2).state, threads: 1, loss: 1,
            globalNormBits: 0, tensorNormBits: [:])
        let folder = try XCTUnwrap(try store.save(r, weights: ["w": Tensor.ones([8])], attempt: 0))
        XCTAssertNoThrow(try store.load(folder))
        for file in ["replay.json", "weights.safetensors"] {
            let path = tmp + "/" + folder + "/" + file
            let original = try Data(contentsOf: URL(fileURLWithPath: path))
            var flipped = original
            flipped[flipped.count - 2] ^= 0x01
            try flipped.write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try store.load(folder)) { XCTAssertTrue("\($0)".contains("\(file): corrupt"), "\($0)") }
            try original.write(to: URL(fileURLWithPath: path))
        }
        XCTAssertNil(r.examplesProblem(count: 4))
        XCTAssertNotNil(r.examplesProblem(count: 3), "example 3 of 3")
        r.microBatches = [[-1]]
        XCTAssertNotNil(r.examplesProblem(count: 4))
        for bad in [{ (x: inout ReplayRecord) in x.threads = 0 }, { $0.accumulation = -2 }, { $0.random = [1, 2] }, { $0.step = -1 }, { $0.microBatches = [] }]
        {
            var x = r
            bad(&x)
            XCTAssertNotNil(x.problem)
        }
        for escape in ["../x", "replay/../../x", "/etc", "replay/step-1/../../.."] {
            XCTAssertThrowsError(try store.load(escape)) { XCTAssertTrue("\($0)".contains("not a replay record's folder"), "\($0)") }
        }
    }
}
