import Foundation
import GradGuard
import XCTest
import _TestSupport

final class TrainerTests: TemporaryDirectoryTestCase {

    /// A small classification task: 4 Gaussian blobs in 6 dimensions.
    func data(_ n: Int, seed: UInt64) -> TensorDataset {
        var g = RandomGenerator(seed: seed)
        let labels = (0..<n).map { _ in Float(Int(g.next() % 4)) }
        var x = Tensor.randn([n, 6], generator: &g).scalars
        for i in 0..<n { x[i * 6 + Int(labels[i])] += 2 }
        return TensorDataset(inputs: Tensor(shape: [n, 6], scalars: x), targets: Tensor(shape: [n], scalars: labels))
    }

    func makeTrainer(_ config: TrainerConfig, run: String? = nil, seed: UInt64 = 1, ifExists: ExistingRun = .refuse) throws -> Trainer {
        DefaultGenerator.seed(seed)
        let model = Sequential(Linear(inputSize: 6, outputSize: 16), Tanh(), Dropout(p: 0.1), Linear(inputSize: 16, outputSize: 4))
        let opt = Adam(model.parameters(), lr: 0.01)
        let sched = LRScheduler(opt, CosineAnnealingLR(tMax: 40))
        return try Trainer(
            model: model, optimizer: opt, scheduler: sched, policy: GuardPolicy(clipper: ZClip()), config: config,
            runDirectory: run, ifExists: ifExists
        ) { model, batch in
            crossEntropy((model as! Sequential)(batch.inputs), batch.targets)
        }
    }

    func config(epochs: Int = 3, batch: Int = 16, accumulation: Int = 1) -> TrainerConfig {
        var c = TrainerConfig()
        c.epochs = epochs
        c.batchSize = batch
        c.accumulation = accumulation
        c.seed = 42
        c.moduleNormsEvery = 2
        return c
    }

    func params(_ t: Trainer) -> [[Float]] { t.model.parameters().map(\.scalars) }

    /// Weights that drift away from what generalises, with healthy gradients: the guard's
    /// statistics see nothing, the validation loss does. The best evaluation's weights come
    /// back, the rate is backed off, and the third divergence stops the run.
    func testValidationDivergenceRestoresTheBestWeights() throws {
        var c = config(epochs: 20)
        c.evalEvery = 3
        let t = try makeTrainer(c)
        t.guardian.policy.validationDivergence = 1.5
        let train = data(96, seed: 3), valid = data(64, seed: 4)
        var bestWeights: [[Float]]? = nil
        var lowest = Double.infinity
        t.callbacks.onEvaluation = { e in
            if let l = e.metrics["loss"], l < lowest { lowest = l; bestWeights = self.params(t) }
        }
        var restored: [[Float]]? = nil
        t.callbacks.onIncident = { inc in
            if inc.findings.first?.kind == .validationDivergence, restored == nil { restored = self.params(t) }
        }
        // From step 12 on, the first layer's weights are scrambled before every step.
        t.callbacks.beforeStep = { step, _ in
            guard step >= 12 else { return }
            withoutGrad { t.model.parameters()[0].withUnsafeMutableScalars { w in for i in w.indices { w[i] = w[i] * -3 + 0.5 } } }
        }
        let result = try t.fit(train: train, validation: valid)
        let divergences = t.guardian.incidents.filter { $0.findings.first?.kind == .validationDivergence }
        XCTAssertEqual(divergences.count, 3, t.guardian.incidents.map(\.summary).joined(separator: "\n"))
        XCTAssertTrue(divergences[0].actions[0].hasPrefix("restored the weights and optimizer state of step "), "\(divergences[0].actions)")
        XCTAssertTrue(divergences[2].actions.last?.hasPrefix("stopped") == true)
        XCTAssertEqual(restored, bestWeights, "the weights of the best evaluation came back")
        XCTAssertLessThan(result.epochs, 20, "stopped early")
        XCTAssertEqual(t.guardian.lrScale, 0.125, "backed off once per divergence")
    }

    func testDeterministicRunAfterRun() throws {
        var losses: [[Float]] = []
        for _ in 0..<2 {
            let t = try makeTrainer(config())
            var l: [Float] = []
            t.callbacks.afterStep = { r, _ in l.append(r.loss) }
            try t.fit(train: data(96, seed: 3))
            losses.append(l)
        }
        XCTAssertEqual(losses[0].count, 18)
        XCTAssertEqual(losses[0], losses[1])
    }

    /// The guard steps the schedule, once a step or once an epoch.
    func testScheduleCadence() throws {
        for cadence in [ScheduleCadence.step, .epoch] {
            DefaultGenerator.seed(9)
            let model = Sequential(Linear(inputSize: 6, outputSize: 4))
            let opt = SGD(model.parameters(), lr: 0.1)
            var c = config(epochs: 3, batch: 16)
            c.scheduleStep = cadence
            let t = try Trainer(
                model: model, optimizer: opt, scheduler: LRScheduler(opt, StepLR(stepSize: 1, gamma: 0.5)),
                config: c
            ) { m, b in crossEntropy((m as! Sequential)(b.inputs), b.targets) }
            var rates: [Double] = []
            t.callbacks.beforeStep = { _, _ in rates.append(opt.paramGroups[0].lr) }
            try t.fit(train: data(32, seed: 4))
            XCTAssertEqual(t.guardian.step, 6)
            let expected: [Double] = cadence == .step ? (0..<6).map { 0.1 * pow(0.5, Double($0)) } : [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
            for (r, e) in zip(rates, expected) { XCTAssertEqual(r, e, accuracy: 1e-12, "\(cadence)") }
            XCTAssertEqual(rates.count, 6)
        }
    }

    func testAccumulationEqualsOneBigBatch() throws {
        // No dropout, no shuffle: micro-batches of 8 × 4 against batches of 32.
        func run(batch: Int, accumulation: Int) throws -> [[Float]] {
            DefaultGenerator.seed(9)
            let model = Sequential(Linear(inputSize: 6, outputSize: 8), Tanh(), Linear(inputSize: 8, outputSize: 4))
            var c = config(epochs: 2, batch: batch, accumulation: accumulation)
            c.shuffle = false
            let t = try Trainer(model: model, optimizer: SGD(model.parameters(), lr: 0.1), config: c) { m, b in
                crossEntropy((m as! Sequential)(b.inputs), b.targets)
            }
            try t.fit(train: data(64, seed: 4))
            XCTAssertEqual(t.guardian.step, 4)
            return model.parameters().map(\.scalars)
        }
        let big = try run(batch: 32, accumulation: 1), small = try run(batch: 8, accumulation: 4)
        for (a, b) in zip(big, small) {
            assertClose(Tensor(shape: [a.count], scalars: a), Tensor(shape: [b.count], scalars: b), rtol: 1e-5, atol: 1e-6, "accumulated")
        }
    }

    func testResumeIsBitIdentical() throws {
        let straight = try makeTrainer(config(), run: tmp + "/a")
        try straight.fit(train: data(96, seed: 3), validation: data(32, seed: 5))
        // Stopped after 7 steps (mid-epoch), then resumed by a fresh trainer with other weights.
        var stopped = config()
        stopped.maxSteps = 7
        try makeTrainer(stopped, run: tmp + "/b").fit(train: data(96, seed: 3), validation: data(32, seed: 5))
        let resumed = try makeTrainer(config(), run: tmp + "/b", seed: 99, ifExists: .resume)
        try resumed.resume()
        XCTAssertEqual(resumed.guardian.step, 7)
        try resumed.fit(train: data(96, seed: 3), validation: data(32, seed: 5))
        XCTAssertEqual(params(resumed), params(straight))
        XCTAssertEqual(resumed.optimizer.stateDict().mapValues(\.scalars), straight.optimizer.stateDict().mapValues(\.scalars))
    }

    /// With the curvature probe (and its cap) on, a resumed run probes, warns and caps exactly
    /// as the uninterrupted one: the warm start, the warning's memory and the cap are saved.
    func testResumeWithTheCurvatureProbeIsBitIdentical() throws {
        var c = config()
        c.curvature = TrainerConfig.CurvatureProbeConfig(every: 2, iterations: 4, batch: 16)
        func trainer(_ c: TrainerConfig, _ run: String, seed: UInt64 = 1) throws -> Trainer {
            let t = try makeTrainer(c, run: run, seed: seed, ifExists: .resume)
            t.guardian.policy.actions[.edgeOfStability] = [.cap]
            t.guardian.policy.curvatureWarning = 0.01  // warn and cap often
            t.guardian.policy.curvatureRise = 1
            t.guardian.judge.curvatureSettleSteps = 0
            return t
        }
        let straight = try trainer(c, tmp + "/p")
        try straight.fit(train: data(96, seed: 3), validation: data(32, seed: 5))
        var stopped = c
        stopped.maxSteps = 7
        try trainer(stopped, tmp + "/q").fit(train: data(96, seed: 3), validation: data(32, seed: 5))
        let resumed = try trainer(c, tmp + "/q", seed: 99)
        try resumed.resume()
        try resumed.fit(train: data(96, seed: 3), validation: data(32, seed: 5))
        XCTAssertEqual(params(resumed), params(straight))
        XCTAssertGreaterThan(straight.guardian.incidents.flatMap(\.taken).filter { if case .capped = $0 { true } else { false } }.count, 0)
        let margins = { (dir: String) in try RunRecords.metrics(in: dir).steps.compactMap { r in r.stabilityMargin.map { [Double(r.step), $0, r.lrScale] } } }
        XCTAssertEqual(try margins(tmp + "/q"), try margins(tmp + "/p"))
    }

    func testCorruptCheckpointFallsBackToThePreviousOne() throws {
        var c = config()
        c.checkpointEvery = 4
        do {
            let t = try makeTrainer(c, run: tmp + "/c")
            try t.fit(train: data(96, seed: 3))
            // While it lives, the run is locked: a second trainer on it is refused.
            XCTAssertThrowsError(try makeTrainer(c, run: tmp + "/c", ifExists: .resume)) { XCTAssertTrue($0 is RunInUse, "\($0)") }
        }
        let store = CheckpointStore(directory: tmp + "/c/checkpoints")
        let list = store.list()
        XCTAssertEqual(list.map(\.step), [18, 16, 12], "keeps the last three")
        // Flip one byte in the newest checkpoint's weights.
        let file = list[0].path + "/model.safetensors"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        bytes[bytes.count - 3] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: file))
        let resumed = try makeTrainer(c, run: tmp + "/c", seed: 5, ifExists: .resume)
        try resumed.resume()
        XCTAssertEqual(resumed.guardian.step, 16)
        XCTAssertEqual(resumed.skippedCheckpoints.count, 1)
        let message = resumed.skippedCheckpoints[0].description
        XCTAssertTrue(message.contains("step-00000018") && message.contains("model.safetensors") && message.contains("corrupt"), message)
        // A truncated state file and a missing manifest are named too.
        let state = list[1].path + "/state.json"
        let s = try Data(contentsOf: URL(fileURLWithPath: state))
        try s.prefix(10).write(to: URL(fileURLWithPath: state))
        try FileManager.default.removeItem(atPath: list[2].path + "/manifest.json")
        XCTAssertThrowsError(try store.loadLatest()) { e in
            XCTAssertTrue("\(e)".contains("step-00000018"), "\(e)")
        }
        XCTAssertThrowsError(try store.load(list[1].path)) { XCTAssertTrue("\($0)".contains("truncated"), "\($0)") }
        XCTAssertThrowsError(try store.load(list[2].path)) { XCTAssertTrue("\($0)".contains("manifest.json is missing"), "\($0)") }
    }

    func testInterruptedSaveLeavesTheRunLoadable() throws {
        var c = config(epochs: 1)
        c.checkpointEvery = 3
        let t = try makeTrainer(c, run: tmp + "/d")
        try t.fit(train: data(96, seed: 3))
        // What a save killed before its rename leaves: a partial directory without a manifest.
        let dir = tmp + "/d/checkpoints"
        try FileManager.default.createDirectory(atPath: dir + "/.partial-step-00000009-12345", withIntermediateDirectories: true)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/.partial-step-00000009-12345/model.safetensors"))
        let store = CheckpointStore(directory: dir)
        XCTAssertEqual(try store.loadLatest().checkpoint.step, 6)
        try store.save(step: 7, tensors: ["model": t.model.stateDict()], state: Data("{}".utf8))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/.partial-step-00000009-12345"), "leftovers are cleaned up")
    }

    func testRunRecordsAndEvaluation() throws {
        let t = try makeTrainer(config(epochs: 2), run: tmp + "/e")
        var evals: [EvaluationRecord] = []
        t.callbacks.onEvaluation = { evals.append($0) }
        let result = try t.fit(train: data(96, seed: 3), validation: data(32, seed: 5))
        XCTAssertEqual(evals.count, 2)
        XCTAssertEqual(result.lastEvaluation?["loss"], evals.last?.metrics["loss"])
        let lines = try String(contentsOfFile: tmp + "/e/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 12 + 2)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        XCTAssertEqual(first["kind"] as? String, "step")
        for key in ["loss", "lr", "gradNorm", "clipped", "skipped", "moduleNorms"] { XCTAssertNotNil(first[key], key) }
        XCTAssertTrue(lines.contains { $0.contains("\"kind\":\"eval\"") })
        let events = try FileManager.default.contentsOfDirectory(atPath: tmp + "/e").filter { $0.hasPrefix("events.out.tfevents.") }
        XCTAssertEqual(events.count, 1)
        let size = try FileManager.default.attributesOfItem(atPath: tmp + "/e/" + events[0])[.size] as? Int ?? 0
        XCTAssertGreaterThan(size, 1000)
    }

    /// A run stopped by its step limit, or whose last step is not a multiple of the
    /// evaluation cadence, ends with a validation pass at its last step (once).
    func testARunEndsWithAValidationPassAtItsLastStep() throws {
        for (maxSteps, evalEvery, expected) in [(7, 5, [5, 7]), (10, 5, [5, 10]), (7, 0, [6, 7]), (nil, 5, [5, 10, 12]) as (Int?, Int, [Int])] {
            var c = config(epochs: 2)
            c.maxSteps = maxSteps
            c.evalEvery = evalEvery
            let t = try makeTrainer(c)
            var steps: [Int] = []
            t.callbacks.onEvaluation = { steps.append($0.step) }
            _ = try t.fit(train: data(96, seed: 3), validation: data(32, seed: 5))
            XCTAssertEqual(steps, expected, "max_steps \(String(describing: maxSteps)) eval_every \(evalEvery)")
        }
    }

    /// The loader hands each batch its epoch (datasets with random augmentation draw from it),
    /// prefetched or not; `batch(_:)` alone serves a dataset that ignores it.
    func testLoaderPassesTheEpochToTheDataset() throws {
        final class Recorder: Dataset, @unchecked Sendable {
            let lock = NSLock()
            var epochs: [Int] = []
            var count: Int { 6 }
            func batch(_ indices: [Int]) throws -> Batch { try batch(indices, epoch: -1) }
            func batch(_ indices: [Int], epoch: Int) throws -> Batch {
                lock.withLock { epochs.append(epoch) }
                return Batch(inputs: Tensor(shape: [indices.count], scalars: indices.map(Float.init)), targets: Tensor.zeros([indices.count]), indices: indices)
            }
        }
        for prefetch in [false, true] {
            let r = Recorder()
            let loader = DataLoader(r, batchSize: 2, prefetch: prefetch)
            try loader.batches(epoch: 3).forEachBatch { _ in }
            XCTAssertEqual(r.epochs, [3, 3, 3])
        }
        XCTAssertEqual(try TensorDataset(inputs: Tensor.ones([2, 1]), targets: Tensor.ones([2])).batch([1], epoch: 5).indices, [1])
    }
}

/// Iterating a loader never swallows a dataset's error.
final class LoaderIterationTests: XCTestCase {
    struct Broken: Error, Equatable {}

    /// Fails on the batch holding example 5.
    struct Flaky: Dataset {
        var count: Int { 8 }
        func batch(_ indices: [Int]) throws -> Batch {
            if indices.contains(5) { throw Broken() }
            return Batch(inputs: Tensor(shape: [indices.count], scalars: indices.map(Float.init)), targets: Tensor.zeros([indices.count]), indices: indices)
        }
    }

    func testEveryWayOfIteratingThrowsTheDatasetsError() async throws {
        for prefetch in [false, true] {
            let loader = DataLoader(Flaky(), batchSize: 2, shuffle: false, prefetch: prefetch)
            var seen = 0
            XCTAssertThrowsError(try loader.batches(epoch: 0).forEachBatch { _ in seen += 1 }) { XCTAssertEqual($0 as? Broken, Broken()) }
            XCTAssertEqual(seen, 2, "the batches before the broken one")
            seen = 0
            do {
                for try await _ in loader.batches(epoch: 0) { seen += 1 }
                XCTFail("the broken batch was passed over")
            } catch { XCTAssertEqual(error as? Broken, Broken()) }
            XCTAssertEqual(seen, 2)
            let batches = loader.batches(epoch: 0)
            _ = try batches.nextBatch()
            _ = try batches.nextBatch()
            XCTAssertThrowsError(try batches.nextBatch())
        }
    }
}
