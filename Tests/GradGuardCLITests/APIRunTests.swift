import Foundation
import GradGuard
import XCTest
import _TestSupport

/// Runs made from Swift — through `Trainer` or a hand-written loop with `RunLog` — are runs:
/// the same files as `gradguard train` writes, every record-reading command accepts them,
/// and an existing run is never written into unless asked.
final class APIRunTests: CLITestCase {
    /// A small classifier with a gradient made NaN at step 4 (one incident).
    func makeTrainer(_ dir: String, ifExists: ExistingRun = .refuse, poisonAt: Int? = 4, poisonAlways: Bool = false) throws -> Trainer {
        DefaultGenerator.seed(3)
        let model = Sequential(Linear(inputSize: 4, outputSize: 8), ReLU(), Linear(inputSize: 8, outputSize: 3))
        var c = TrainerConfig()
        c.epochs = 2
        c.batchSize = 8
        let t = try Trainer(
            model: model, optimizer: SGD(model.parameters(), lr: 0.05), policy: GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 1)), config: c,
            runDirectory: dir, ifExists: ifExists
        ) { m, b in crossEntropy((m as! Sequential)(b.inputs), b.targets) }
        var poisoned = false
        t.callbacks.beforeStep = { step, _ in
            guard step == poisonAt && !poisoned || poisonAlways else { return }
            poisoned = true
            let p = model.parameters()[0]
            p.registerHook { g in
                p.removeHooks()
                return g * Tensor(Float.nan)
            }
        }
        return t
    }

    var data: TensorDataset {
        var g = RandomGenerator(seed: 1)
        return TensorDataset(inputs: Tensor.randn([64, 4], generator: &g), targets: Tensor(shape: [64], scalars: (0..<64).map { Float($0 % 3) }))
    }

    func lines(_ path: String) throws -> Int { try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").count }

    func testTrainerRunHasEveryFileAndEveryReadingCommandAcceptsIt() throws {
        let dir = tmp + "/api"
        let t = try makeTrainer(dir)
        let result = try t.fit(train: data, validation: data)
        XCTAssertEqual(result.steps, 15, "16 batches, one skipped")
        XCTAssertEqual(result.attempts, 16)
        for f in ["run.json", "environment.txt", "report.html", "metrics.jsonl", "incidents.jsonl", ".gradguard-run"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/" + f), f)
        }
        XCTAssertEqual(t.reportPath, dir + "/report.html")
        let described = try XCTUnwrap(try RunDescription.read(in: dir))
        XCTAssertEqual(described.model, "Sequential")
        XCTAssertEqual(described.parameters, 4 * 8 + 8 + 8 * 3 + 3)
        XCTAssertEqual(described.optimizer, "SGD")
        XCTAssertEqual(described.clipper, "global-norm")
        XCTAssertEqual(described.modules.map(\.name), ["", "0", "1", "2"])
        let html = try String(contentsOfFile: dir + "/report.html", encoding: .utf8)
        XCTAssertTrue(html.contains("Sequential: 67 parameters"), "the report names the model")
        for command in [["diagnose", dir], ["report", dir], ["compare", dir, dir], ["inspect", dir]] {
            let r = try run(command)
            XCTAssertEqual(r.code, 0, "\(command): \(r.err)")
        }
        XCTAssertTrue(try run(["diagnose", dir]).out.contains("1 incident"))
        // Commands that rebuild the model from config.yaml say why they cannot.
        for command in ["eval", "resume", "generate"] {
            let r = try run([command, dir])
            XCTAssertEqual(r.code, 2, "\(command): \(r.err)")
            XCTAssertTrue(r.err.contains("trained from Swift (model Sequential)"), r.err)
        }
    }

    func testAnExistingRunIsRefusedUnlessOverwrittenOrResumed() throws {
        let dir = tmp + "/again"
        try makeTrainer(dir).fit(train: data)
        let incidents = try lines(dir + "/incidents.jsonl"), steps = try lines(dir + "/metrics.jsonl")
        XCTAssertThrowsError(try makeTrainer(dir)) { XCTAssertEqual($0 as? RunDirectoryError, .exists(directory: dir)) }
        XCTAssertEqual(try lines(dir + "/incidents.jsonl"), incidents, "nothing written")
        // Overwritten: the same records again, not twice as many.
        try makeTrainer(dir, ifExists: .overwrite).fit(train: data)
        XCTAssertEqual(try lines(dir + "/incidents.jsonl"), incidents)
        XCTAssertEqual(try lines(dir + "/metrics.jsonl"), steps)
        // Resumed: continues from the last checkpoint, appending.
        let resumed = try makeTrainer(dir, ifExists: .resume, poisonAt: nil)
        try resumed.resume()
        XCTAssertEqual(resumed.guardian.step, 15)
        // A folder GradGuard did not make is never written into.
        let other = tmp + "/project"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: other + "/notes.txt"))
        for mode in [ExistingRun.refuse, .overwrite, .resume] {
            XCTAssertThrowsError(try makeTrainer(other, ifExists: mode)) { XCTAssertEqual($0 as? RunDirectoryError, .notARun(directory: other)) }
        }
        XCTAssertEqual(try String(contentsOfFile: other + "/notes.txt", encoding: .utf8), "keep")
    }

    func testAHaltedRunStillGetsItsReport() throws {
        let dir = tmp + "/halted"
        // Every gradient is NaN: the guard's recoveries fail until it halts the run.
        let t = try makeTrainer(dir, poisonAt: nil, poisonAlways: true)
        XCTAssertThrowsError(try t.fit(train: data)) { XCTAssertTrue($0 is TrainingDiverged, "\($0)") }
        XCTAssertEqual(t.reportPath, dir + "/report.html")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/report.html"))
    }

    /// A hand-written loop: the guard decides, the log records, the report is the same kind.
    func testHandWrittenLoopRecordsThroughRunLog() throws {
        let dir = tmp + "/loop"
        DefaultGenerator.seed(3)
        let model = Sequential(Linear(inputSize: 4, outputSize: 8), ReLU(), Linear(inputSize: 8, outputSize: 3))
        let optimizer = Adam(model.parameters(), lr: 0.01)
        let guardian = GradientGuard(model: model, optimizer: optimizer, policy: GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 1)))
        let log = try RunLog(directory: dir, model: model, guard: guardian)
        let loader = DataLoader(data, batchSize: 16, seed: 1)
        var step = 0
        for epoch in 0..<2 {
            let batches = loader.batches(epoch: epoch)
            while let (_, batch) = try batches.nextBatch() {
                optimizer.zeroGrad()
                let loss = crossEntropy(model(batch.inputs), batch.targets)
                loss.backward()
                if step == 3 { model.parameters()[0].grad = model.parameters()[0].grad! * Float.infinity }
                let outcome = try guardian.execute(loss: loss.item)
                try log.record(step: step, epoch: epoch, loss: loss.item, outcome: outcome, batch: batch.indices.count)
                step += 1
            }
            try log.record(evaluation: ["loss": 1.0 / Double(epoch + 1)], step: step, epoch: epoch)
        }
        XCTAssertEqual(try log.finish(), dir + "/report.html")
        let (steps, evals) = try RunRecords.metrics(in: dir)
        XCTAssertEqual(steps.count, 8)
        XCTAssertEqual(evals.count, 2)
        XCTAssertEqual(steps.filter(\.skipped).map(\.step), [3])
        XCTAssertEqual(try RunRecords.incidents(in: dir).count, 1)
        XCTAssertEqual(try RunDescription.read(in: dir)?.writer, "RunLog")
        let r = try run(["diagnose", dir])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.contains("1 incident"), r.out)
        XCTAssertThrowsError(try RunLog(directory: dir, model: model)) { XCTAssertEqual($0 as? RunDirectoryError, .exists(directory: dir)) }
    }
}
