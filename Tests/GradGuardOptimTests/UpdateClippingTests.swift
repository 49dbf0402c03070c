import GradGuard
import XCTest
import _TestSupport

/// StableAdamW's update clipping against the authors' reference (StableAdamWUnfused), from
/// Scripts/make_stabilizer_fixtures.py.
final class UpdateClippingTests: XCTestCase {
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
}
