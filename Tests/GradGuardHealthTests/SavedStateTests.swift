import GradGuard
import XCTest
import _TestSupport

/// Clippers and detectors keep typed states (`SavedState`) and save them as the named lists of
/// numbers checkpoints have always held: the same keys, a missing key its default.
final class SavedStateTests: XCTestCase {
    func testClipperStatesAreTypedAndSavedAsBefore() throws {
        let z = ZClip(alpha: 0.9, zThreshold: 2.5, warmupSteps: 2)
        XCTAssertEqual(z.stateDict(), ["warmup": []], "no mean or variance before the warm-up ends")
        let w = Tensor([3, 4] as [Float], requiresGrad: true)
        for g in [[3, 4], [6, 8], [0.3, 0.4]] as [[Float]] {
            w.grad = Tensor(g)
            _ = try z.clip([NamedParameter(name: "w", tensor: w)])
        }
        XCTAssertEqual(Set(z.stateDict().keys), ["warmup", "mean", "variance"])
        let back = ZClip(alpha: 0.9, zThreshold: 2.5, warmupSteps: 2)
        try back.load(stateDict: z.stateDict())
        XCTAssertEqual(back.state, z.state)
        XCTAssertThrowsError(try back.load(stateDict: ["mean": [1]])) {
            XCTAssertEqual($0 as? ClipperStateError, .missingKey(clipper: "zclip", key: "warmup"))
        }
        let a = AdaGC(warmupSteps: 0)
        w.grad = Tensor([1, 1] as [Float])
        _ = try a.clip([NamedParameter(name: "w", tensor: w)])
        XCTAssertEqual(Set(a.stateDict().keys), ["step", "gamma.w"])
        let b = AdaGC(warmupSteps: 0)
        try b.load(stateDict: a.stateDict())
        XCTAssertEqual(b.state, a.state)
    }

    func testDetectorStatesKeepTheirKeysAndDefaults() {
        let spike = SpikeDetector()
        XCTAssertEqual(spike.stateDict(), ["norms": [], "early": [], "early_loss": [], "first_losses": []])
        let baselines = ModuleBaselines()
        baselines.load(stateDict: ["history.fc": [1, 2, 3], "departed.fc": [7, 4.5], "departed.bad": [1]])
        XCTAssertEqual(baselines.stateDict(), ["history.fc": [1, 2, 3], "departed.fc": [7, 4.5]], "a record that does not read is left out")
        XCTAssertEqual(baselines.baseline("fc"), 2)
        var clipRate = ClipRateMonitor()
        clipRate.load(stateDict: [:])
        XCTAssertEqual(clipRate.stateDict(), ["clipped": [], "armed": [1]], "armed by default")
        let divergence = LossDivergenceDetector()
        divergence.load(stateDict: ["seen": [12]])
        XCTAssertEqual(divergence.stateDict()["best"], [.infinity], "a missing key takes its default")
        XCTAssertEqual(divergence.stateDict()["seen"], [12])
    }
}
