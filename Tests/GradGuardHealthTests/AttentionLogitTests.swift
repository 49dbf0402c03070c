import GradGuard
import GradGuardBench
import XCTest
import _TestSupport

final class AttentionLogitTests: XCTestCase {
    func stats(_ step: Int, _ logits: [Float]) -> StepStatistics {
        var s = StepStatistics(step: step, loss: 1, globalNorm: 1, tensors: [], modules: [])
        s.attentionLogits = logits.enumerated().map { AttentionLogit(module: "blocks.\($0.offset).self_attn", maxLogit: $0.element) }
        return s
    }

    /// Logits that settle are left alone; logits past the floor and doubling in the window are
    /// reported once, naming the layer, and again only after doubling again.
    func testGrowthPastTheFloorIsReportedOncePerDoubling() {
        let d = AttentionLogitDetector(floor: 30, growth: 2, window: 10)
        let baselines = ModuleBaselines()
        for i in 0..<200 {
            let s = stats(i, [12 + Float(i % 3), 15])
            XCTAssertNil(d.inspect(s, baselines: baselines), "a settled logit at step \(i)")
            d.record(s, healthy: true)
        }
        var found: [Finding] = []
        for i in 200..<260 {
            let s = stats(i, [15, 15 * Float(pow(1.08, Double(i - 200)))])
            if let f = d.inspect(s, baselines: baselines) { found.append(f) }
            d.record(s, healthy: true)
        }
        XCTAssertEqual(found.first?.kind, .attentionLogitGrowth)
        XCTAssertEqual(found.first?.blame.first?.module, "blocks.1.self_attn")
        XCTAssertGreaterThanOrEqual(found.first?.evidence["max_logit"] ?? 0, 30)
        for (a, b) in zip(found, found.dropFirst()) { XCTAssertGreaterThanOrEqual(b.evidence["max_logit"]!, 2 * a.evidence["max_logit"]!) }
        // A model without attention: nothing to say, and nothing saved.
        let none = AttentionLogitDetector()
        XCTAssertNil(none.inspect(StepStatistics(step: 0, loss: 1, globalNorm: 1, tensors: [], modules: []), baselines: baselines))
        XCTAssertEqual(none.stateDict(), [:])
        // Its history survives a checkpoint.
        let copy = AttentionLogitDetector(floor: 30, growth: 2, window: 10)
        copy.load(stateDict: d.stateDict())
        XCTAssertEqual(copy.stateDict(), d.stateDict())
    }

    /// GuardBench's transformer: healthy, no finding; with its rate ramped ×30, the attention
    /// logits are reported growing before the run falls behind, the rate is named the cause,
    /// and the default policy's back-off rescues it.
    func testTransformerRateRampIsSeenInTheAttentionLogits() throws {
        let c = try XCTUnwrap(BenchCatalog.all.first { $0.name == "transformer-adamw" })
        let healthy = try BenchRunner.run(c, fault: .none, seed: 1, setting: .monitorOnly)
        XCTAssertTrue(healthy.findings.isEmpty, healthy.findings.map(\.message).joined(separator: "; "))
        let ramp = try BenchRunner.run(c, fault: .rateRamp(30), seed: 1, setting: .monitorOnly)
        let first = try XCTUnwrap(ramp.findings.first)
        XCTAssertEqual(first.kind, .attentionLogitGrowth, ramp.findings.map(\.message).joined(separator: "; "))
        XCTAssertEqual(ramp.firstCause, .learningRateTooHigh)
        XCTAssertLessThan(ramp.score, 0.95 * healthy.score)
        // The default policy backs off the rate at each report, which brings the run back to
        // within 5 % of its healthy twin.
        let guarded = try BenchRunner.run(c, fault: .rateRamp(30), seed: 1, setting: .standard)
        XCTAssertGreaterThan(guarded.backOffs, 0)
        XCTAssertGreaterThanOrEqual(guarded.score, 0.95 * healthy.score)
    }
}
