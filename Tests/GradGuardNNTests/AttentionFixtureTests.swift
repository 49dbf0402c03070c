import GradGuard
import XCTest
import _TestSupport

/// Conv1d, RMSNorm, MultiheadAttention, TransformerEncoderLayer and the positional encodings
/// against PyTorch (`Scripts/make_attention_fixtures.py`): outputs, and the gradients of the
/// inputs and of every parameter for the same upstream gradient.
final class AttentionFixtureTests: XCTestCase {
    var f: [String: Tensor] = [:]

    override func setUpWithError() throws { f = try fixture("attention.safetensors") }

    /// Loads the case's parameters into `module` (every one of them: strict).
    func load(_ module: Module, _ prefix: String) throws {
        var sd: [String: Tensor] = [:]
        for (k, v) in f where k.hasPrefix("\(prefix).param.") { sd[String(k.dropFirst("\(prefix).param.".count))] = v }
        XCTAssertEqual(Set(sd.keys), Set(module.stateDict().keys), prefix)
        try module.load(stateDict: sd)
    }

    /// Runs `forward` on the case's inputs, back-propagates its upstream gradient and compares
    /// the output and every gradient. Attention's products and softmax accumulate in float32
    /// in a different order than PyTorch's: 2e-4 relative.
    func check(_ module: Module, _ prefix: String, inputs names: [String], _ forward: ([Tensor]) -> Tensor) throws {
        try load(module, prefix)
        let inputs = try names.map { try f.at("\(prefix).\($0)").copy(requiresGrad: true) }
        let y = forward(inputs)
        assertClose(y, try f.at("\(prefix).out"), rtol: 2e-4, atol: 2e-5, "\(prefix) output")
        y.backward(gradient: try f.at("\(prefix).up"))
        for (name, x) in zip(names, inputs) {
            guard let g = x.grad else { return XCTFail("\(prefix): \(name) received no gradient") }
            assertClose(g, try f.at("\(prefix).grad.\(name)"), rtol: 2e-4, atol: 2e-5, "\(prefix) grad \(name)")
        }
        for (name, p) in module.namedParameters() {
            guard let g = p.grad else { return XCTFail("\(prefix): \(name) received no gradient") }
            assertClose(g, try f.at("\(prefix).grad.param.\(name)"), rtol: 2e-4, atol: 2e-5, "\(prefix) grad \(name)")
        }
    }

    func testConv1dMatchesPyTorch() throws {
        let cases: [(String, Conv1d)] = [
            ("basic", Conv1d(inChannels: 2, outChannels: 3, kernelSize: 3, padding: 1)),
            ("strided", Conv1d(inChannels: 4, outChannels: 4, kernelSize: 3, stride: 2, padding: 1, groups: 2)),
            ("dilated", Conv1d(inChannels: 3, outChannels: 2, kernelSize: 3, dilation: 2, bias: false))
        ]
        for (name, conv) in cases { try check(conv, "conv1d.\(name)", inputs: ["x"]) { conv($0[0]) } }
    }

    func testRMSNormMatchesPyTorch() throws {
        let norm = RMSNorm(6)
        try check(norm, "rmsnorm", inputs: ["x"]) { norm($0[0]) }
    }

    func testSelfAttentionSequenceFirstMatchesPyTorch() throws {
        let mha = MultiheadAttention(embedDim: 8, heads: 2)
        XCTAssertEqual(mha.namedParameters().map(\.name), ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"])
        var weights: Tensor? = nil
        try check(mha, "mha.self", inputs: ["x"]) { x in
            let (y, w) = mha(x[0], x[0], x[0])
            weights = w
            return y
        }
        assertClose(weights!, try f.at("mha.self.weights"), rtol: 2e-4, atol: 2e-5, "averaged weights")
    }

    func testCrossAttentionWithKeyPaddingMatchesPyTorch() throws {
        let mha = MultiheadAttention(embedDim: 8, heads: 4, batchFirst: true)
        let pad = try f.at("mha.cross.pad")
        var weights: Tensor? = nil
        try check(mha, "mha.cross", inputs: ["q", "k", "v"]) { x in
            let (y, w) = mha(x[0], x[1], x[2], keyPaddingMask: pad, averageWeights: false)
            weights = w
            return y
        }
        assertClose(weights!, try f.at("mha.cross.weights"), rtol: 2e-4, atol: 2e-5, "per-head weights")
        // Padded keys get no weight.
        XCTAssertEqual(weights!.narrow(axis: 0, start: 1, length: 1).narrow(axis: 3, start: 4, length: 2).scalars.max(), 0)
    }

    func testCausalAttentionMatchesPyTorchByMaskAndByFlag() throws {
        let mask = try f.at("mha.causal.mask")
        XCTAssertEqual(Tensor.causalMask(5).scalars, mask.scalars)
        let mha = MultiheadAttention(embedDim: 8, heads: 2, batchFirst: true)
        try check(mha, "mha.causal", inputs: ["x"]) { x in mha(x[0], x[0], x[0], attentionMask: mask).output }
        let flagged = MultiheadAttention(embedDim: 8, heads: 2, batchFirst: true)
        try check(flagged, "mha.causal", inputs: ["x"]) { x in flagged(x[0], x[0], x[0], isCausal: true).output }
    }

    func testQKNormMatchesPyTorchAndReportsTheLargestLogit() throws {
        let mha = MultiheadAttention(embedDim: 8, heads: 2, batchFirst: true, qkNorm: true)
        XCTAssertEqual(
            mha.namedParameters().map(\.name), ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias", "q_norm.weight", "k_norm.weight"])
        try check(mha, "mha.qknorm", inputs: ["x"]) { x in mha(x[0], x[0], x[0], isCausal: true).output }
        XCTAssertEqual(mha.maxAttentionLogit!, try f.at("mha.qknorm.max_logit").scalars[0], accuracy: 1e-4)
    }

    func testEncoderLayerPostNormMatchesPyTorch() throws {
        let layer = TransformerEncoderLayer(dModel: 8, heads: 2, dimFeedforward: 16, dropout: 0)
        try check(layer, "encoder.post", inputs: ["x"]) { layer($0[0]) }
    }

    func testEncoderLayerPreNormCausalWithPaddingMatchesPyTorch() throws {
        let layer = TransformerEncoderLayer(dModel: 8, heads: 2, dimFeedforward: 16, dropout: 0, activation: .gelu, batchFirst: true, normFirst: true)
        let pad = try f.at("encoder.pre.pad")
        try check(layer, "encoder.pre", inputs: ["x"]) { layer($0[0], keyPaddingMask: pad, isCausal: true) }
    }

    func testSinusoidalTableMatchesPyTorchAndIsNeitherTrainedNorSaved() throws {
        let pe = SinusoidalPositionalEncoding(maxLength: 10, dim: 6)
        assertClose(pe.table, try f.at("sinusoidal.table"), rtol: 1e-5, atol: 2e-6, "table")
        XCTAssertTrue(pe.parameters().isEmpty)
        XCTAssertTrue(pe.stateDict().isEmpty)
        let x = Tensor.zeros([2, 3, 6])
        assertClose(pe(x).narrow(axis: 0, start: 1, length: 1).reshaped([3, 6]), pe.table.narrow(axis: 0, start: 0, length: 3), "added")
    }
}
