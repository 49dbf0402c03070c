import GradGuard
import XCTest
import _TestSupport

/// The guard's responses: skipping, rolling back, backing off the learning rate, halting.
final class GuardTests: XCTestCase {
    /// A small regression model and a fixed batch.
    func setup(seed: UInt64 = 11) -> (Sequential, Tensor, Tensor) {
        DefaultGenerator.seed(seed)
        let model = Sequential(Linear(inputSize: 4, outputSize: 8), Tanh(), Linear(inputSize: 8, outputSize: 1))
        return (model, Tensor.randn([16, 4]), Tensor.randn([16, 1]))
    }

    func lossAndBackward(_ model: Sequential, _ x: Tensor, _ y: Tensor, poison: Bool = false) -> Float {
        for p in model.parameters() { p.grad = nil }
        let loss = mseLoss(model(x), y)
        loss.backward()
        if poison { model.parameters()[0].grad!.withUnsafeMutableScalars { $0[0] = .nan } }
        return loss.item
    }

    func stateCopy(_ opt: any Optimizer) -> [String: [Float]] { opt.stateDict().mapValues(\.scalars) }

    /// A healthy run on fresh minibatches: noisy gradients, no incident.
    func testNoIncidentOnAHealthyNoisyRun() throws {
        let (model, _, _) = setup()
        let opt = SGD(model.parameters(), lr: 0.05, momentum: 0.9)
        let guardian = GradientGuard(model: model, optimizer: opt, policy: GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 5)))
        var g = RandomGenerator(seed: 3)
        let teacher = Tensor.randn([4, 1], generator: &g)
        for _ in 0..<400 {
            let x = Tensor.randn([8, 4], generator: &g)
            let y = withoutGrad { x.matmul(teacher).tanh() } + Tensor.randn([8, 1], std: 0.1, generator: &g)
            _ = try guardian.step(loss: lossAndBackward(model, x, y))
        }
        XCTAssertTrue(guardian.incidents.isEmpty, guardian.incidents.map(\.summary).joined(separator: "\n"))
        XCTAssertEqual(guardian.step, 400)
    }

    /// A threshold below the typical norm clips every step: reported once, with a threshold
    /// from the norms' 90th percentile; a threshold above them is never reported.
    func testChronicOverClippingIsReportedOnceWithAThreshold() throws {
        func run(maxNorm: Float, steps: Int = 300) throws -> GradientGuard {
            let (model, _, _) = setup()
            let opt = SGD(model.parameters(), lr: 0.05, momentum: 0.9)
            let guardian = GradientGuard(model: model, optimizer: opt, policy: GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: maxNorm)))
            var g = RandomGenerator(seed: 3)
            let teacher = Tensor.randn([4, 1], generator: &g)
            for _ in 0..<steps {
                let x = Tensor.randn([8, 4], generator: &g)
                let y = withoutGrad { x.matmul(teacher).tanh() } + Tensor.randn([8, 1], std: 0.1, generator: &g)
                _ = try guardian.step(loss: lossAndBackward(model, x, y))
            }
            return guardian
        }
        let tight = try run(maxNorm: 1e-3)
        XCTAssertEqual(tight.incidents.count, 1, tight.incidents.map(\.summary).joined(separator: "\n"))
        let inc = try XCTUnwrap(tight.incidents.first)
        XCTAssertEqual(inc.step, 99, "after a full window of 100 steps")
        XCTAssertEqual(inc.findings.map(\.kind), [.overClipping])
        XCTAssertEqual(inc.findings[0].evidence["clip_rate"], 1)
        XCTAssertEqual(inc.causes.first?.kind, .clippingThresholdTooLow)
        XCTAssertTrue(inc.recommendations.contains { $0.hasPrefix("raise the clipping threshold to ") }, "\(inc.recommendations)")
        XCTAssertEqual(inc.actions, ["reported"], "over-clipping changes nothing by itself")
        XCTAssertTrue(try run(maxNorm: 100).incidents.isEmpty)
        // The monitor's history is part of the guard's state: a resumed guard does not report again.
        let state = tight.stateDict()
        let (model, _, _) = setup()
        let other = GradientGuard(model: model, optimizer: SGD(model.parameters(), lr: 0.05))
        try other.load(state: state)
        XCTAssertEqual(other.judge.clipRate.rate, 1)
    }

    func testSkippedStepLeavesEverythingBitIdentical() throws {
        let (model, x, y) = setup()
        let opt = Adam(model.parameters(), lr: 0.01)
        let sched = LRScheduler(opt, ExponentialLR(gamma: 0.9))
        let guardian = GradientGuard(model: model, optimizer: opt, scheduler: sched)
        for _ in 0..<5 { _ = try guardian.step(loss: lossAndBackward(model, x, y)) }
        let (params, state, lr, step) = (model.parameters().map(\.scalars), stateCopy(opt), opt.paramGroups[0].lr, guardian.step)
        let outcome = try guardian.step(loss: lossAndBackward(model, x, y, poison: true))
        XCTAssertEqual(outcome.decision, .skipped)
        XCTAssertEqual(outcome.findings.first?.kind, .nonFiniteGradient)
        XCTAssertEqual(model.parameters().map(\.scalars), params)
        XCTAssertEqual(stateCopy(opt), state)
        XCTAssertEqual(opt.paramGroups[0].lr, lr, "the schedule did not move")
        XCTAssertEqual(guardian.step, step, "a skipped step is not a step")
        XCTAssertEqual(guardian.skippedSteps, 1)
        XCTAssertEqual(outcome.incident?.actions.first, "skipped the step")
    }

    func testRollbackRestoresTheSnapshotBitIdentically() throws {
        let (model, x, y) = setup()
        let opt = Adam(model.parameters(), lr: 0.01)
        let guardian = GradientGuard(model: model, optimizer: opt, policy: GuardPolicy(snapshotEvery: 4))
        for _ in 0..<4 { _ = try guardian.step(loss: lossAndBackward(model, x, y)) }
        let (params, state) = (model.parameters().map(\.scalars), stateCopy(opt))
        let random = DefaultGenerator.with { $0.state }
        for _ in 0..<2 { _ = try guardian.step(loss: lossAndBackward(model, x, y)) }
        _ = Tensor.randn([10])  // the random stream moves on
        XCTAssertNotEqual(model.parameters().map(\.scalars), params)
        // Weights turn NaN: roll back to the snapshot of step 4.
        _ = lossAndBackward(model, x, y)
        model.parameters()[2].withUnsafeMutableScalars { $0[0] = .nan }
        let outcome = try guardian.step(loss: 0.5)
        XCTAssertEqual(outcome.decision, .rolledBack(toStep: 4, undone: 4..<7))
        XCTAssertEqual(model.parameters().map(\.scalars), params)
        XCTAssertEqual(stateCopy(opt), state)
        XCTAssertEqual(DefaultGenerator.with { $0.state }, random)
        XCTAssertEqual(guardian.step, 4)
        XCTAssertEqual(guardian.rollbacks, 1)
    }

    func testLearningRateBacksOffAndGrowsBack() throws {
        let (model, x, y) = setup()
        let opt = SGD(model.parameters(), lr: 0.1)
        let policy = GuardPolicy(actions: [.nonFiniteGradient: [.skip, .backOff]], backOffFactor: 0.5, growAfter: 3, growFactor: 2)
        let guardian = GradientGuard(model: model, optimizer: opt, policy: policy)
        _ = try guardian.step(loss: lossAndBackward(model, x, y))
        XCTAssertEqual(try guardian.step(loss: lossAndBackward(model, x, y, poison: true)).lrScale, 0.5)
        XCTAssertEqual(try guardian.step(loss: lossAndBackward(model, x, y, poison: true)).lrScale, 0.25)
        // The update uses the backed-off rate; the scheduled rate is left as it was.
        let before = model.parameters()[2].scalars
        _ = lossAndBackward(model, x, y)
        let g = model.parameters()[2].grad!.scalars
        var scales: [Double] = [try guardian.step(loss: 1).lrScale]
        XCTAssertEqual(model.parameters()[2].scalars[0], before[0] - 0.1 * 0.25 * g[0], accuracy: 1e-6)
        XCTAssertEqual(opt.paramGroups[0].lr, 0.1)
        for _ in 0..<8 { scales.append(try guardian.step(loss: lossAndBackward(model, x, y)).lrScale) }
        // Healthy steps 1…9 after the last trouble: ×2 after every third, capped at 1.
        XCTAssertEqual(scales, [0.25, 0.25, 0.5, 0.5, 0.5, 1, 1, 1, 1])
    }

    /// A skip that does not hold (another recovery within the window) is escalated to a
    /// rollback to the last healthy snapshot and a back-off; with `escalateRepeats` off it
    /// stays a skip.
    func testRepeatedSkipsEscalateToRollbackAndBackOff() throws {
        // After 4 healthy steps the newest snapshot is of step 4, the step that goes wrong:
        // the rollback goes to the one before (step 2).
        for (escalate, healthy) in [(true, 3), (true, 4), (false, 3)] {
            let (model, x, y) = setup()
            var policy = GuardPolicy(actions: [.nonFiniteGradient: [.skip]], snapshotEvery: 2)
            policy.escalateRepeats = escalate
            let guardian = GradientGuard(model: model, optimizer: SGD(model.parameters(), lr: 0.1), policy: policy)
            for _ in 0..<healthy { _ = try guardian.step(loss: lossAndBackward(model, x, y)) }
            let first = try guardian.step(loss: lossAndBackward(model, x, y, poison: true))
            XCTAssertEqual(first.decision, .skipped, "a first skip is only a skip")
            XCTAssertEqual(first.lrScale, 1)
            let second = try guardian.step(loss: lossAndBackward(model, x, y, poison: true))
            if escalate {
                XCTAssertEqual(second.decision, .rolledBack(toStep: 2, undone: 2..<(healthy + 1)))
                XCTAssertEqual(second.lrScale, 0.5)
                XCTAssertEqual(second.incident?.actions.last, "escalated: the last recovery was within 10 steps")
            } else {
                XCTAssertEqual(second.decision, .skipped)
                XCTAssertEqual(second.lrScale, 1)
            }
        }
    }

    func testHaltsWithTheDiagnosisAfterRepeatedFailures() throws {
        let (model, x, y) = setup()
        let opt = SGD(model.parameters(), lr: 0.1)
        let guardian = GradientGuard(model: model, optimizer: opt, policy: GuardPolicy(maxFailedRecoveries: 3))
        var thrown: TrainingDiverged? = nil
        for _ in 0..<5 {
            do { _ = try guardian.step(loss: lossAndBackward(model, x, y, poison: true)) } catch let e as TrainingDiverged { thrown = e; break }
        }
        XCTAssertEqual(thrown?.failedRecoveries, 3)
        XCTAssertEqual(thrown?.incidents.count, 3)
        XCTAssertTrue(thrown?.description.contains("0.weight") ?? false, thrown?.description ?? "")
    }

    func testStatisticsUpdateRatiosAndProbe() throws {
        let (model, x, y) = setup()
        let probe = ActivationGradientProbe()
        let health = GradientHealth(model: model, normType: 1, histogramEvery: 1, probe: probe)
        for p in model.parameters() { p.grad = nil }
        let loss = mseLoss(probe.run(model, x.copy(requiresGrad: true)), y)
        loss.backward()
        var stats = health.observe(step: 0, loss: loss.item)
        let grads = model.parameters().map { $0.grad! }
        XCTAssertEqual(stats.globalNorm, gradNorm(model.parameters(), normType: 1), accuracy: 1e-5)
        XCTAssertEqual(stats.globalL2, gradNorm(model.parameters()), accuracy: 1e-5)
        XCTAssertEqual(stats.modules.map(\.name), ["0", "2"])
        XCTAssertEqual(stats.module("2")!.gradNorm, gradNorm(Array(model.parameters()[2...])), accuracy: 1e-6)
        XCTAssertEqual(stats.activations.map(\.name), ["2", "1", "0"], "backward reaches the last layer's input first")
        XCTAssertEqual(
            stats.histogram.map { $0.counts.reduce(0, +) + $0.zeros + $0.underflow + $0.overflow },
            grads.map(\.count).reduce(0, +))
        health.beforeUpdate()
        let w0 = model.parameters().map(\.scalars)
        SGD(model.parameters(), lr: 0.5).step()
        health.recordUpdate(into: &stats)
        let d = zip(model.parameters().prefix(2), w0.prefix(2)).map { p, w in zip(p.scalars, w).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +) }.reduce(
            0, +)
        let n = w0.prefix(2).map { $0.map { Double($0 * $0) }.reduce(0, +) }.reduce(0, +)
        XCTAssertEqual(Double(stats.module("0")!.updateRatio!), (d / n).squareRoot(), accuracy: 1e-5)
    }
}

/// The decide phase alone: a pure function of findings, policy and memory.
final class GuardDecisionTests: XCTestCase {
    func finding(_ kind: FindingKind, step: Int = 0) -> Finding { Finding(kind: kind, step: step, message: "\(kind)") }

    func testDecisionsFromFindingsPolicyAndMemory() {
        let policy = GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 1))
        var memory = GuardMemory()
        memory.step = 30
        memory.snapshotStep = 30
        memory.previousSnapshotStep = 20
        // Healthy: apply, nothing counted but the attempt.
        let healthy = GuardDecision.decide(findings: [], policy: policy, memory: memory)
        XCTAssertEqual(healthy.disposition, .apply)
        XCTAssertFalse(healthy.recovering || healthy.backOff || healthy.halt)
        XCTAssertEqual(healthy.memory.attempts, 1)
        // A NaN gradient: skip and back off (the standard actions); the first recovery.
        let nan = GuardDecision.decide(findings: [finding(.nonFiniteGradient)], policy: policy, memory: healthy.memory)
        XCTAssertEqual(nan.disposition, .skip(noSnapshot: false))
        XCTAssertTrue(nan.backOff && nan.recovering && !nan.escalated)
        XCTAssertEqual(nan.memory.failedRecoveries, 1)
        // Again within the window: escalated to a rollback; the newest snapshot was taken at
        // the failing step, so it goes to the one before.
        let again = GuardDecision.decide(findings: [finding(.nonFiniteGradient)], policy: policy, memory: nan.memory)
        XCTAssertEqual(again.disposition, .rollback(toStep: 20, previous: true))
        XCTAssertTrue(again.escalated)
        XCTAssertEqual(again.memory.lastRollbackTarget, 20)
        XCTAssertEqual(again.memory.failedRecoveries, 2)
        // The same memory gives the same decision: nothing else is read.
        XCTAssertEqual(GuardDecision.decide(findings: [finding(.nonFiniteGradient)], policy: policy, memory: nan.memory), again)
        // Without snapshots a wanted rollback is a skip, and the fifth failure in a row halts.
        var none = nan.memory
        none.snapshotStep = nil
        none.previousSnapshotStep = nil
        none.failedRecoveries = 4
        let last = GuardDecision.decide(findings: [finding(.lossDivergence)], policy: policy, memory: none)
        XCTAssertEqual(last.disposition, .skip(noSnapshot: true))
        XCTAssertTrue(last.halt)
        // A spike with a clipper is only reported: applied, no recovery.
        let spike = GuardDecision.decide(findings: [finding(.spike)], policy: policy, memory: memory)
        XCTAssertEqual(spike.disposition, .apply)
        XCTAssertFalse(spike.recovering)
    }

    /// Incidents keep the typed actions and render their text from them; records written
    /// before the typed actions existed still load.
    func testIncidentActionsAreTypedAndRendered() throws {
        let taken: [TakenAction] = [
            .rolledBack(toStep: 20, undone: 10), .backedOff(factor: 0.5, scale: 0.25),
            .escalated(window: 10), .clipped(clipper: "zclip", normBefore: 12.5, normAfter: 3)
        ]
        let inc = Incident(step: 30, findings: [finding(.spike, step: 30)], taken: taken, blame: [], causes: [], recommendations: [])
        XCTAssertEqual(
            inc.actions,
            [
                "rolled back to the snapshot of step 20 (10 steps undone)", "learning rate ×0.5 (scale now 0.25)",
                "escalated: the last recovery was within 10 steps", "clipped (zclip) 12.5 → 3"
            ])
        let data = try JSONEncoder().encode(inc)
        let back = try JSONDecoder().decode(Incident.self, from: data)
        XCTAssertEqual(back.taken, taken)
        XCTAssertEqual(back.actions, inc.actions)
        var old = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        old.removeValue(forKey: "taken")
        let legacy = try JSONDecoder().decode(Incident.self, from: JSONSerialization.data(withJSONObject: old))
        XCTAssertEqual(legacy.taken, [])
        XCTAssertEqual(legacy.actions, inc.actions)
    }
}

/// The judge alone: a hand-written loop measures, decides and acts itself.
final class StepJudgeTests: XCTestCase {
    func testAHandWrittenLoopMeasuresDecidesAndActs() {
        DefaultGenerator.seed(3)
        let model = Sequential(Linear(inputSize: 4, outputSize: 4), ReLU(), Linear(inputSize: 4, outputSize: 2))
        let opt = SGD(model.parameters(), lr: 0.1)
        let judge = StepJudge(parameters: NamedParameter.of(model), layerTypes: StepJudge.layerTypes(of: model))
        let x = Tensor.randn([8, 4]), y = Tensor([0, 1, 0, 1, 0, 1, 0, 1] as [Float])
        var applied = 0
        for step in 0..<6 {
            opt.zeroGrad()
            let loss = crossEntropy(model(x), y)
            loss.backward()
            // Step 4's gradient is poisoned: the judge must not let it through.
            if step == 4 { model.parameters()[0].grad!.withUnsafeMutableScalars { $0[0] = .nan } }
            let m = judge.measure(loss: loss.item)
            let decision = judge.decide(m, snapshotStep: nil, previousSnapshotStep: nil)
            if step == 4 {
                XCTAssertTrue(m.findings.contains { $0.kind == .nonFiniteGradient })
                XCTAssertEqual(decision.disposition, .skip(noSnapshot: false))
                let inc = judge.incident(stats: m.stats, findings: m.reported, taken: [.skipped(noSnapshot: false)], learningRate: 0.1)
                XCTAssertEqual(inc.step, 4)
                XCTAssertEqual(inc.findings.first?.kind, .nonFiniteGradient)
                XCTAssertEqual(inc.taken, [.skipped(noSnapshot: false)])
            } else {
                XCTAssertEqual(decision.disposition, .apply, "step \(step): \(m.findings.map(\.message))")
                opt.step()
                judge.applied(m.stats, healthy: !m.exploding)
                applied += 1
            }
            judge.stepEnded(m.stats, healthy: decision.disposition == .apply, learningRate: 0.1)
        }
        XCTAssertEqual(judge.step, applied)
        XCTAssertEqual(judge.memory.attempts, 6)
        XCTAssertTrue(model.parameters().allSatisfy { $0.scalars.allSatisfy(\.isFinite) })
    }
}
