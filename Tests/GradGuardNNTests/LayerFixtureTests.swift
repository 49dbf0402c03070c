import GradGuard
import XCTest
import _TestSupport

/// Layers, activations and losses against values PyTorch computed (Scripts/make_fixtures.py).
final class LayerFixtureTests: XCTestCase {
    func testLinearMatchesPyTorch() throws {
        let f = try fixture("layers.safetensors")
        let lin = Linear(inputSize: 5, outputSize: 3)
        try lin.load(stateDict: ["weight": f.at("linear.weight"), "bias": f.at("linear.bias")])
        checkForwardBackward(
            input: try f.at("linear.x"), output: try f.at("linear.out"), upstream: try f.at("linear.up"),
            inputGrad: try f.at("linear.grad_x"), "linear"
        ) { lin($0) }
        assertClose(lin.weight.grad!, try f.at("linear.grad_weight"))
        assertClose(lin.bias!.grad!, try f.at("linear.grad_bias"))
    }

    func testEmbeddingWithPaddingMatchesPyTorch() throws {
        let f = try fixture("layers.safetensors")
        let emb = Embedding(numEmbeddings: 10, embeddingDim: 4, paddingIndex: 2)
        try emb.load(stateDict: ["weight": f.at("embedding.weight")])
        let y = emb(try f.at("embedding.ids"))
        assertClose(y, try f.at("embedding.out"))
        y.backward(gradient: try f.at("embedding.up"))
        assertClose(emb.weight.grad!, try f.at("embedding.grad_weight"))
    }

    func testActivationsMatchPyTorch() throws {
        let f = try fixture("layers.safetensors")
        let cases: [(String, (Tensor) -> Tensor)] = [
            ("relu", { ReLU()($0) }), ("leaky_relu", { LeakyReLU(negativeSlope: 0.1)($0) }),
            ("tanh", { Tanh()($0) }), ("sigmoid", { Sigmoid()($0) }), ("silu", { SiLU()($0) }),
            ("gelu", { GELU()($0) }), ("gelu_tanh", { GELU(approximate: true)($0) }),
            ("exp", { ($0 / 4).exp() }),
            ("softmax1", { $0.softmax(axis: 1) }), ("softmax0", { $0.softmax(axis: 0) }),
            ("log_softmax1", { $0.logSoftmax(axis: 1) }), ("log_softmax0", { $0.logSoftmax(axis: 0) })
        ]
        for (name, fn) in cases {
            checkForwardBackward(
                input: try f.at("act.x"), output: try f.at("act.\(name).out"), upstream: try f.at("act.up"),
                inputGrad: try f.at("act.\(name).grad"), name, fn)
        }
    }

    func testLossesMatchPyTorch() throws {
        let f = try fixture("losses.safetensors")
        for (name, red) in [("mean", Reduction.mean), ("sum", .sum)] {
            let p = try f.at("mse.pred").copy(requiresGrad: true)
            let l = mseLoss(p, try f.at("mse.target"), reduction: red)
            assertClose(l, try f.at("mse.\(name).out"), "mse \(name)")
            l.backward()
            assertClose(p.grad!, try f.at("mse.\(name).grad"), "mse \(name) gradient")
        }
        for (name, red) in [("mean", Reduction.mean), ("sum", .sum), ("none", .none)] {
            let x = try f.at("ce.logits").copy(requiresGrad: true)
            let l = crossEntropy(x, try f.at("ce.targets"), ignoreIndex: -100, reduction: red)
            assertClose(l, try f.at("ce.\(name).out"), "cross-entropy \(name)")
            l.backward(gradient: try f.at("ce.\(name).up"))
            assertClose(x.grad!, try f.at("ce.\(name).grad"), "cross-entropy \(name) gradient")
        }
        for tag in ["plain", "pw"] {
            for (name, red) in [("mean", Reduction.mean), ("sum", .sum)] {
                let x = try f.at("bce.logits").copy(requiresGrad: true)
                let w = tag == "pw" ? try f.at("bce.pos_weight") : nil
                let l = binaryCrossEntropyWithLogits(x, try f.at("bce.targets"), posWeight: w, reduction: red)
                assertClose(l, try f.at("bce.\(tag).\(name).out"), "bce \(tag) \(name)")
                l.backward()
                assertClose(x.grad!, try f.at("bce.\(tag).\(name).grad"), "bce \(tag) \(name) gradient")
            }
        }
    }
}
