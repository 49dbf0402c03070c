import Foundation
import GradGuard
import XCTest
import _TestSupport

/// Each schedule's learning rate (and momentum) over 120 steps against torch.optim.lr_scheduler,
/// with two parameter groups (lr 0.1 / momentum 0.9 and lr 0.05 / momentum 0.8).
final class ScheduleTests: XCTestCase {
    func optimizer(adam: Bool = false) -> any Optimizer {
        let groups = [
            ParamGroup(params: [Tensor.zeros([1], requiresGrad: true)], options: ["lr": 0.1, adam ? "beta1" : "momentum": 0.9]),
            ParamGroup(params: [Tensor.zeros([1], requiresGrad: true)], options: ["lr": 0.05, adam ? "beta1" : "momentum": 0.8])
        ]
        return adam ? Adam(groups, lr: 0.1) : SGD(groups, lr: 0.1)
    }

    func check(
        _ name: String, _ schedule: any LRSchedule, adam: Bool = false, momentum: Bool = false,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let f = try fixture("schedules.safetensors")
        let lrs = try f.at("sched.\(name).lr"), moms = try f.at("sched.\(name).momentum")
        let opt = optimizer(adam: adam)
        let scheduler = LRScheduler(opt, schedule)
        for step in 0..<120 {
            for g in 0..<2 {
                let expected = Double(lrs.scalars[step * 2 + g])
                XCTAssertEqual(
                    opt.paramGroups[g].lr, expected, accuracy: 1e-6 * Swift.max(expected, 1e-3),
                    "\(name) lr step \(step) group \(g)", file: file, line: line)
                if momentum {
                    let key = adam ? "beta1" : "momentum"
                    XCTAssertEqual(
                        opt.paramGroups[g][key]!, Double(moms.scalars[step * 2 + g]), accuracy: 1e-6,
                        "\(name) momentum step \(step) group \(g)", file: file, line: line)
                }
            }
            scheduler.step()
        }
    }

    func testClosedFormSchedulesMatchPyTorch() throws {
        try check("constant", ConstantLR(factor: 0.25, totalIters: 7))
        try check("step", StepLR(stepSize: 15, gamma: 0.5))
        try check("multistep", MultiStepLR(milestones: [10, 35, 80], gamma: 0.3))
        try check("exponential", ExponentialLR(gamma: 0.97))
        try check("cosine", CosineAnnealingLR(tMax: 50, etaMin: 0.001))
        try check("warm_restarts", CosineAnnealingWarmRestarts(t0: 10, tMult: 2, etaMin: 0.002))
        try check("linear", LinearLR(startFactor: 0.1, endFactor: 1, totalIters: 25))
        try check("polynomial", PolynomialLR(totalIters: 100, power: 2))
        try check(
            "warmup_cosine",
            SequentialSchedule(
                [LinearLR(startFactor: 0.1, totalIters: 10), CosineAnnealingLR(tMax: 110)],
                milestones: [10]))
    }

    func testOneCycleRateAndMomentumMatchPyTorch() throws {
        try check("onecycle", OneCycleLR(maxLR: [0.5, 0.2], totalSteps: 120, pctStart: 0.25), momentum: true)
        try check("onecycle_linear", OneCycleLR(maxLR: [0.3], totalSteps: 120, anneal: .linear), momentum: true)
        try check("onecycle_adam", OneCycleLR(maxLR: [0.4], totalSteps: 120), adam: true, momentum: true)
    }

    func testReduceLROnPlateauMatchesPyTorch() throws {
        let f = try fixture("schedules.safetensors")
        let metrics = try f.at("plateau.metrics").scalars.map(Double.init)
        for name in ["plateau", "plateau_abs_max"] {
            let opt = optimizer()
            let sched =
                name == "plateau"
                ? ReduceLROnPlateau(opt, mode: .min, factor: 0.5, patience: 5, threshold: 1e-3, cooldown: 3, minLR: [0.002, 0.001])
                : ReduceLROnPlateau(opt, mode: .max, factor: 0.7, patience: 2, threshold: 0.01, thresholdMode: .abs)
            let lrs = try f.at("\(name).lr")
            var reductions = 0
            for step in 0..<120 {
                for g in 0..<2 {
                    let expected = Double(lrs.scalars[step * 2 + g])
                    XCTAssertEqual(opt.paramGroups[g].lr, expected, accuracy: 1e-6 * expected, "\(name) step \(step) group \(g)")
                }
                let before = opt.paramGroups[0].lr
                sched.step(metric: name == "plateau" ? metrics[step] : -metrics[step])
                if opt.paramGroups[0].lr < before { reductions += 1 }
            }
            XCTAssertGreaterThan(reductions, 1, "the fixture exercises several reductions")
        }
    }

    func testSchedulerStateRestores() throws {
        let schedule = CosineAnnealingLR(tMax: 50)
        let a = optimizer(), b = optimizer()
        let sa = LRScheduler(a, schedule)
        for _ in 0..<17 { sa.step() }
        let sb = LRScheduler(b, schedule)
        try sb.load(stateDict: sa.stateDict())
        XCTAssertEqual(b.paramGroups.map(\.lr), a.paramGroups.map(\.lr))
        sa.step(); sb.step()
        XCTAssertEqual(b.paramGroups.map(\.lr), a.paramGroups.map(\.lr))
        XCTAssertThrowsError(try sb.load(stateDict: [:]))

        let p1 = optimizer(), p2 = optimizer()
        let r1 = ReduceLROnPlateau(p1, patience: 1)
        for m in [1.0, 0.9, 0.95, 0.97] { r1.step(metric: m) }
        let r2 = ReduceLROnPlateau(p2, patience: 1)
        try r2.load(stateDict: r1.stateDict())
        for m in [0.99, 0.98] { r1.step(metric: m); r2.step(metric: m) }
        XCTAssertEqual(r1.numBadEpochs, r2.numBadEpochs)
        XCTAssertEqual(r1.best, r2.best)
    }

    func testYOLOStyleWarmupPerGroupRateAndMomentum() {
        // Group 0 (biases) warms down from 0.1, group 1 up from 0; momentum from 0.8 to the group's own.
        let opt = optimizer()
        let sched = LRScheduler(opt, Warmup(steps: 10, startLR: [0: 0.1], startMomentum: 0.8, then: CosineAnnealingLR(tMax: 100)))
        XCTAssertEqual(opt.paramGroups[0].lr, 0.1, accuracy: 1e-12)
        XCTAssertEqual(opt.paramGroups[1].lr, 0, accuracy: 1e-12)
        XCTAssertEqual(opt.paramGroups[0]["momentum"]!, 0.8, accuracy: 1e-12)
        for _ in 0..<5 { sched.step() }
        // Halfway: midpoint of the start value and the cosine target at step 5.
        let target0 = 0.1 * (1 + cos(Double.pi * 5 / 100)) / 2, target1 = 0.05 * (1 + cos(Double.pi * 5 / 100)) / 2
        XCTAssertEqual(opt.paramGroups[0].lr, (0.1 + target0) / 2, accuracy: 1e-12)
        XCTAssertEqual(opt.paramGroups[1].lr, target1 / 2, accuracy: 1e-12)
        XCTAssertEqual(opt.paramGroups[0]["momentum"]!, 0.85, accuracy: 1e-12)
        XCTAssertEqual(opt.paramGroups[1]["momentum"]!, 0.8, accuracy: 1e-12)
        for _ in 0..<10 { sched.step() }
        XCTAssertEqual(opt.paramGroups[1].lr, 0.05 * (1 + cos(Double.pi * 15 / 100)) / 2, accuracy: 1e-12)
        XCTAssertEqual(opt.paramGroups[0]["momentum"]!, 0.9, accuracy: 1e-12)
    }

    /// Ultralytics' default schedule: warm-up over max(3 epochs, 100 steps) towards
    /// lr·lf(e), lf(e) = (1 − e/E)·(1 − 0.01) + 0.01, the epoch e counted in whole epochs.
    func testWarmupLinearIsUltralyticsDefault() {
        let opt = optimizer()
        let sched = ScheduleKind.warmupLinear.make(opt, totalSteps: 300, stepsPerEpoch: 10, warmupSteps: 0, startLR: [0: 0.1])!
        let lf = { (e: Double) in (1 - e / 30) * 0.99 + 0.01 }
        for _ in 0..<50 { sched.step() }
        XCTAssertEqual(opt.paramGroups[1].lr, 0.05 * lf(5) * 0.5, accuracy: 1e-12)  // halfway through the 100-step warm-up
        for _ in 0..<100 { sched.step() }
        XCTAssertEqual(opt.paramGroups[1].lr, 0.05 * lf(15), accuracy: 1e-12)
        for _ in 0..<149 { sched.step() }
        XCTAssertEqual(opt.paramGroups[1].lr, 0.05 * lf(29), accuracy: 1e-12)
        XCTAssertEqual(opt.paramGroups[0].lr, 0.1 * lf(29), accuracy: 1e-12)
    }
}

final class RegularizationTests: XCTestCase {
    func testPenaltiesAndTheirGradients() {
        let a = Tensor([1, -2, 3], requiresGrad: true), b = Tensor([[0.5, -0.5]], requiresGrad: true)
        let l1 = l1Penalty([a, b]), l2 = l2Penalty([a, b])
        XCTAssertEqual(l1.item, 7)
        XCTAssertEqual(l2.item, 14.5)
        (l1 + 0.5 * l2).backward()
        XCTAssertEqual(a.grad!.scalars, [2, -3, 4])  // sign(θ) + θ
        XCTAssertEqual(b.grad!.scalars, [1.5, -1.5])
    }

    func testHalfL2PenaltyEqualsCoupledWeightDecay() {
        let p = Tensor([1, -2], requiresGrad: true), q = Tensor([1, -2], requiresGrad: true)
        let withPenalty = SGD([p], lr: 0.1), withDecay = SGD([q], lr: 0.1, weightDecay: 0.2)
        ((p * 3).sum() + 0.1 * l2Penalty([p])).backward()
        (q * 3).sum().backward()
        withPenalty.step(); withDecay.step()
        assertClose(p, q, rtol: 1e-6, atol: 1e-7)
    }

    func testDecayGroupsExcludeBiasesNormsAndPatterns() {
        let model = Sequential(
            Conv2d(3, 4, kernelSize: 3), BatchNorm2d(numFeatures: 4), Flatten(),
            Linear(inputSize: 4, outputSize: 2), Embedding(numEmbeddings: 5, embeddingDim: 2))
        let groups = ParamGroup.decayGroups(model, weightDecay: 5e-4, excluding: ["4.*"])
        let names = Dictionary(uniqueKeysWithValues: model.namedParameters().map { (ObjectIdentifier($0.tensor), $0.name) })
        XCTAssertEqual(groups[0].params.map { names[ObjectIdentifier($0)]! }, ["0.weight", "3.weight"])
        XCTAssertEqual(
            Set(groups[1].params.map { names[ObjectIdentifier($0)]! }),
            ["0.bias", "1.weight", "1.bias", "3.bias", "4.weight"])
        XCTAssertEqual(groups[0]["weight_decay"], 5e-4)
        XCTAssertEqual(groups[1]["weight_decay"], 0)
        XCTAssertTrue(globMatch("*.bias", "encoder.fc.bias"))
        XCTAssertFalse(globMatch("*.bias", "encoder.fc.weight"))
        XCTAssertTrue(globMatch("layer?.w*", "layer3.weight"))
    }
}
