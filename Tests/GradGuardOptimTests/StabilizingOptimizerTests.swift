import GradGuard
import XCTest
import _TestSupport

/// StableAdamW's update clipping (the authors' StableAdamWUnfused) and SPAM (the authors' step), from
/// Scripts/make_stabilizer_fixtures.py.
final class StabilizingOptimizerTests: XCTestCase {
    func testStableAdamWUpdateClippingFollowsTheReference() throws {
        let f = try fixture("stabilizers.safetensors")
        let grads = try f.at("stable.grads"), expected = try f.at("stable.params")
        let p = try f.at("stable.p0").copy(requiresGrad: true)
        let opt = AdamW([p], lr: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, updateClip: 1)
        for s in 0..<grads.shape[0] {
            p.grad = grads.narrow(axis: 0, start: s, length: 1).reshaped([6])
            opt.step()
            assertClose(p, expected.narrow(axis: 0, start: s, length: 1).reshaped([6]), rtol: 1e-5, atol: 1e-6, "step \(s + 1)")
        }
        // The spikes were scaled down; without update clipping the same run moves further.
        let scales = try f.at("stable.scales").scalars
        XCTAssertLessThan(scales[17], 0.5)
        let q = try f.at("stable.p0").copy(requiresGrad: true)
        let plain = AdamW([q], lr: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1)
        for s in 0..<grads.shape[0] {
            q.grad = grads.narrow(axis: 0, start: s, length: 1).reshaped([6])
            plain.step()
        }
        XCTAssertGreaterThan(zip(q.scalars, p.scalars).map { abs($0 - $1) }.max()!, 1e-3)
        // The setting travels with the group's options (checkpoints keep it).
        XCTAssertEqual(opt.paramGroups[0].options["update_clip"], 1)
    }

    func testSPAMFollowsTheAuthorsStep() throws {
        let f = try fixture("stabilizers.safetensors")
        let grads = try f.at("spam.grads"), expected = try f.at("spam.params"), scales = try f.at("spam.scales").scalars
        var h = SPAM.Hyperparameters()
        (h.lr, h.weightDecay, h.threshold, h.resetEvery, h.warmupSteps, h.gradAccuSteps) = (0.01, 0.1, 50, 12, 5, 3)
        let p = try f.at("spam.p0").copy(requiresGrad: true)
        let opt = SPAM([ParamGroup(params: [p])], h)
        for s in 0..<grads.shape[0] {
            XCTAssertEqual(SPAM.warmupScale(s, h), Double(scales[s]), accuracy: 1e-7, "warm-up factor of step \(s)")
            p.grad = grads.narrow(axis: 0, start: s, length: 1).reshaped([2, 5])
            opt.step()
            assertClose(p, expected.narrow(axis: 0, start: s, length: 1).reshaped([2, 5]), rtol: 1e-4, atol: 1e-6, "step \(s + 1)")
        }
        XCTAssertEqual(opt.totalSteps, grads.shape[0])
        // Saved and restored mid-run (state and hyper-parameters, as checkpoints do): the same steps follow.
        let q = try f.at("spam.p0").copy(requiresGrad: true), r = try f.at("spam.p0").copy(requiresGrad: true)
        let a = SPAM([ParamGroup(params: [q])], h), b = SPAM([ParamGroup(params: [r])], h)
        for s in 0..<20 {
            q.grad = grads.narrow(axis: 0, start: s, length: 1).reshaped([2, 5])
            a.step()
        }
        r.assign(q)
        try b.load(stateDict: a.stateDict())
        try b.setHyperparameters(a.hyperparameters())
        for s in 20..<40 {
            q.grad = grads.narrow(axis: 0, start: s, length: 1).reshaped([2, 5])
            r.grad = q.grad!.copy()
            a.step()
            b.step()
        }
        XCTAssertEqual(q.scalars, r.scalars)
    }
}
