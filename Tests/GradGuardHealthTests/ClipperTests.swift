import GradGuard
import XCTest
import _TestSupport

/// Clippers against `torch.nn.utils` and optax (Tests/Fixtures/health.safetensors from
/// Scripts/make_fixtures.py), and AutoClip/ZClip against their published algorithms run on
/// a recorded sequence of gradients with spikes.
final class ClipperTests: XCTestCase {
    /// Parameters with the given gradients (weights zero unless given).
    func params(_ grads: [(String, Tensor)], weights: [String: Tensor] = [:]) -> [NamedParameter] {
        grads.map { name, g in
            let p = (weights[name] ?? Tensor.zeros(g.shape)).copy(requiresGrad: true)
            p.grad = g.copy()
            return NamedParameter(name: name, tensor: p)
        }
    }

    func testGlobalNormAndValueWithInfiniteAndNaNGradients() throws {
        let f = try fixture("health.safetensors")
        for tag in ["inf", "nan"] {
            let grads = try (0..<2).map { ("p\($0)", try f.at("nonfinite.\(tag).grad.\($0)")) }
            let ps = params(grads)
            let report = try ClipByGlobalNorm(maxNorm: 1).clip(ps)
            let total = try f.at("nonfinite.\(tag).total").item
            XCTAssertTrue(report.normBefore.isNaN == total.isNaN && (total.isNaN || report.normBefore == total), "\(tag): \(report.normBefore) vs \(total)")
            for (i, p) in ps.enumerated() { assertClose(p.tensor.grad!, try f.at("nonfinite.\(tag).norm_clipped.\(i)"), "\(tag) norm \(i)") }
            let qs = params(grads)
            _ = try ClipByValue(0.5).clip(qs)
            for (i, q) in qs.enumerated() { assertClose(q.tensor.grad!, try f.at("nonfinite.\(tag).value_clipped.\(i)"), "\(tag) value \(i)") }
            // errorIfNonfinite: a typed error, gradients untouched.
            let rs = params(grads)
            XCTAssertThrowsError(try ClipByGlobalNorm(maxNorm: 1, errorIfNonfinite: true).clip(rs)) { XCTAssertTrue($0 is NonFiniteNormError) }
            for (r, g) in zip(rs, grads) { assertClose(r.tensor.grad!, g.1, rtol: 0, atol: 0, "untouched") }
        }
    }

    func testGlobalNormMatchesClipGradNormFixture() throws {
        let f = try fixture("clip.safetensors")
        let grads = try (0..<3).map { ("p\($0)", try f.at("clip.grad.\($0)")) }
        for (tag, p) in [("2", Float(2)), ("inf", .infinity), ("3", 3)] {
            let ps = params(grads)
            let clipper = ClipByGlobalNorm(maxNorm: 1, normType: p)
            let measured = clipper.measure(ps)
            let report = try clipper.clip(ps)
            XCTAssertEqual(report.normBefore, measured)
            XCTAssertEqual(report.normBefore, try f.at("clip.norm\(tag).total").item, accuracy: 1e-5 * measured)
            XCTAssertEqual(report.touched.count, 3)
            for (i, q) in ps.enumerated() { assertClose(q.tensor.grad!, try f.at("clip.norm\(tag).clipped.\(i)"), "norm \(tag)") }
        }
        let big = params(grads)
        XCTAssertFalse(try ClipByGlobalNorm(maxNorm: 1e4).clip(big).clipped)
    }

    func agcParams(_ f: [String: Tensor]) throws -> [NamedParameter] {
        let names = ["fc.weight", "fc.bias", "conv.weight", "emb.weight", "rnn.weight_hh_l0"]
        return params(
            try names.map { ($0, try f.at("agc.grad.\($0)")) },
            weights: Dictionary(uniqueKeysWithValues: try names.map { ($0, try f.at("agc.param.\($0)")) }))
    }

    func testAdaptiveGradientClippingMatchesOptax() throws {
        let f = try fixture("health.safetensors")
        for (tag, clip) in [("0.01", Float(0.01)), ("0.1", 0.1)] {
            let ps = try agcParams(f)
            let report = try AdaptiveGradientClipping(clipping: clip).clip(ps)
            XCTAssertTrue(report.clipped)
            XCTAssertTrue(report.touched.contains("emb.weight[2]"), "the loud embedding row is a unit of its own: \(report.touched)")
            for p in ps { assertClose(p.tensor.grad!, try f.at("agc.\(tag).clipped.\(p.name)"), rtol: 1e-5, atol: 1e-7, "agc \(tag) \(p.name)") }
            XCTAssertLessThan(report.normAfter, report.normBefore)
        }
        // Exclusions: the final layer's module and glob patterns stay untouched.
        let ps = try agcParams(f)
        _ = try AdaptiveGradientClipping(clipping: 0.01, exclude: ["fc.*"], excludeFinalLayer: true).clip(ps)
        for p in ps where p.name.hasPrefix("fc.") || p.name.hasPrefix("rnn.") {
            assertClose(p.tensor.grad!, try f.at("agc.grad.\(p.name)"), rtol: 0, atol: 0, "excluded \(p.name)")
        }
        XCTAssertEqual(AdaptiveGradientClipping.units(of: [8, 3, 3, 3]).count, 8)
        XCTAssertEqual(AdaptiveGradientClipping.units(of: [1, 5]).count, 1)
        XCTAssertEqual(AdaptiveGradientClipping.units(of: [6]).count, 1)
    }

    func testBlockRMSMatchesOptax() throws {
        let f = try fixture("health.safetensors")
        for (tag, thr) in [("0.05", Float(0.05)), ("0.3", 0.3)] {
            let ps = try agcParams(f)
            _ = try ClipByBlockRMS(threshold: thr).clip(ps)
            for p in ps { assertClose(p.tensor.grad!, try f.at("blockrms.\(tag).clipped.\(p.name)"), rtol: 1e-5, atol: 1e-7, "rms \(tag) \(p.name)") }
        }
    }

    func testPerModuleAndPerParameter() throws {
        let ps = params([
            ("a.weight", Tensor(shape: [2], scalars: [3, 4])), ("a.bias", Tensor(shape: [1], scalars: [12])),
            ("b.weight", Tensor(shape: [2], scalars: [0.3, 0.4]))
        ])
        let r = try ClipPerGroup(maxNorm: 1, per: .module).clip(ps)
        XCTAssertEqual(r.touched, ["a"])
        XCTAssertEqual(r.normBefore, Float((9 + 16 + 144 + 0.25).squareRoot()), accuracy: 1e-4)
        // Module a had norm 13: both its tensors scaled by 1/(13 + 1e-6).
        XCTAssertEqual(ps[1].tensor.grad!.scalars[0], 12 / (13 + 1e-6), accuracy: 1e-5)
        XCTAssertEqual(ps[2].tensor.grad!.scalars, [0.3, 0.4])
        let qs = params([("a.weight", Tensor(shape: [2], scalars: [3, 4])), ("a.bias", Tensor(shape: [1], scalars: [0.5]))])
        let r2 = try ClipPerGroup(maxNorm: 1, per: .parameter).clip(qs)
        XCTAssertEqual(r2.touched, ["a.weight"])
        XCTAssertEqual(qs[0].tensor.grad!.scalars[1], 4 / (5 + 1e-6), accuracy: 1e-6)
        XCTAssertEqual(qs[1].tensor.grad!.scalars, [0.5])
    }

    /// Runs a clipper over the recorded sequence, one step per row.
    func runSequence(_ clipper: any GradientClipper, _ seq: Tensor, from: Int = 0, to: Int? = nil) throws -> [Tensor] {
        try (from..<(to ?? seq.shape[0])).map { s in
            let ps = params([("w", seq.narrow(axis: 0, start: s, length: 1).reshaped([10]))])
            _ = try clipper.clip(ps)
            return ps[0].tensor.grad!
        }
    }

    func testAutoClipFollowsThePublishedAlgorithm() throws {
        let f = try fixture("health.safetensors")
        let seq = try f.at("seq.grads")
        let out = try runSequence(AutoClip(percentile: 10), seq)
        assertClose(Tensor.stack(out), try f.at("autoclip.clipped"), rtol: 1e-5, atol: 1e-6, "autoclip")
        // State round trip: a restored clipper continues identically.
        let a = AutoClip(percentile: 10), b = AutoClip(percentile: 10)
        _ = try runSequence(a, seq, to: 30)
        try b.load(stateDict: a.stateDict())
        assertClose(Tensor.stack(try runSequence(b, seq, from: 30)), Tensor.stack(try runSequence(a, seq, from: 30)), rtol: 0, atol: 0, "resumed")
        // A bounded history; a NaN norm is neither recorded nor spread.
        let small = AutoClip(percentile: 50, historySize: 4)
        _ = try runSequence(small, seq, to: 10)
        XCTAssertEqual(small.history.count, 4)
        let nan = params([("w", Tensor(shape: [2], scalars: [.nan, 1]))])
        XCTAssertFalse(try small.clip(nan).clipped)
        XCTAssertEqual(small.history.count, 4)
        XCTAssertThrowsError(try small.load(stateDict: ["history": [1, .nan]]))
    }

    func testZClipFollowsTheReferenceAlgorithm() throws {
        let f = try fixture("health.safetensors")
        let seq = try f.at("seq.grads")
        let z = ZClip()
        let out = try runSequence(z, seq)
        assertClose(Tensor.stack(out), try f.at("zclip.clipped"), rtol: 1e-5, atol: 1e-6, "zclip")
        XCTAssertEqual(z.mean!, Double(try f.at("zclip.final_mean").item), accuracy: 1e-4)
        XCTAssertEqual(z.variance!, Double(try f.at("zclip.final_var").item), accuracy: 1e-3)
        // The spikes at steps 35 and 50 were clipped to μ + z²σ/z, far below their norms.
        XCTAssertLessThan(
            out[35].scalars.map { $0 * $0 }.reduce(0, +).squareRoot(),
            seq.narrow(axis: 0, start: 35, length: 1).scalars.map { $0 * $0 }.reduce(0, +).squareRoot() / 3)
        // A NaN or Inf norm leaves the statistics as they were.
        let (m, v) = (z.mean, z.variance)
        _ = try z.clip(params([("w", Tensor(shape: [2], scalars: [.infinity, 1]))]))
        XCTAssertEqual(z.mean, m)
        XCTAssertEqual(z.variance, v)
        // State round trip mid-warm-up and after it.
        for cut in [10, 40] {
            let a = ZClip(), b = ZClip()
            _ = try runSequence(a, seq, to: cut)
            try b.load(stateDict: a.stateDict())
            assertClose(
                Tensor.stack(try runSequence(b, seq, from: cut)), Tensor.stack(try runSequence(a, seq, from: cut)), rtol: 0, atol: 0, "resumed at \(cut)")
        }
        XCTAssertThrowsError(try ZClip().load(stateDict: ["warmup": [], "mean": [1]]))
    }
}
