import GradGuard
import XCTest
import _TestSupport

/// RNN, LSTM, GRU and the cells against PyTorch: weights loaded from PyTorch's state dict,
/// outputs, final states and the gradients of inputs, initial states and every weight.
final class RecurrentFixtureTests: XCTestCase {
    func params(_ f: [String: Tensor], _ name: String) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (k, v) in f where k.hasPrefix("\(name).param.") { out[String(k.dropFirst(name.count + 7))] = v }
        return out
    }

    func testNetworksMatchPyTorch() throws {
        let f = try fixture("recurrent.safetensors")
        let nets: [(String, RecurrentNetwork)] = [
            ("rnn_tanh", RNN(inputSize: 3, hiddenSize: 5, numLayers: 2, batchFirst: true)),
            ("rnn_relu", RNN(inputSize: 3, hiddenSize: 5, nonlinearity: .relu)),
            ("lstm", LSTM(inputSize: 3, hiddenSize: 5, numLayers: 2, batchFirst: true)),
            ("gru", GRU(inputSize: 3, hiddenSize: 5, numLayers: 2))
        ]
        for (name, net) in nets {
            try net.load(stateDict: params(f, name))  // strict: names and shapes as PyTorch's
            let x = try f.at("\(name).x").copy(requiresGrad: true)
            let h0 = try f.at("\(name).h0").copy(requiresGrad: true)
            var outs: [Tensor], leaves = [x, h0]
            switch net {
            case let lstm as LSTM:
                let c0 = try f.at("\(name).c0").copy(requiresGrad: true)
                leaves.append(c0)
                let (out, state) = lstm(x, (h0, c0))
                outs = [out, state.h, state.c]
                assertClose(state.c, try f.at("\(name).cn"), "\(name) c_n")
            case let rnn as RNN:
                let (out, h) = rnn(x, h0)
                outs = [out, h]
            case let gru as GRU:
                let (out, h) = gru(x, h0)
                outs = [out, h]
            default: fatalError()
            }
            assertClose(outs[0], try f.at("\(name).out"), "\(name) output")
            assertClose(outs[1], try f.at("\(name).hn"), "\(name) h_n")
            // One backward through all outputs: Σ ⟨out_i, up_i⟩.
            let total = try outs.enumerated().map { i, o in (o * (try f.at("\(name).up\(i)"))).sum() }.reduce(Tensor(0), +)
            total.backward()
            for (leaf, label) in zip(leaves, ["x", "h0", "c0"]) {
                assertClose(leaf.grad!, try f.at("\(name).grad.\(label)"), rtol: 1e-4, atol: 2e-5, "\(name) grad \(label)")
            }
            for (k, p) in net.namedParameters() {
                assertClose(p.grad!, try f.at("\(name).grad.\(k)"), rtol: 1e-4, atol: 2e-5, "\(name) grad \(k)")
            }
        }
    }

    func testCellsMatchPyTorch() throws {
        let f = try fixture("recurrent.safetensors")
        let cells: [(String, RecurrentCell)] = [
            ("rnn_cell", RNNCell(inputSize: 3, hiddenSize: 4)), ("lstm_cell", LSTMCell(inputSize: 3, hiddenSize: 4)),
            ("gru_cell", GRUCell(inputSize: 3, hiddenSize: 4))
        ]
        for (name, cell) in cells {
            try cell.load(stateDict: params(f, name))
            let x = try f.at("\(name).x").copy(requiresGrad: true)
            let h = try f.at("\(name).h").copy(requiresGrad: true)
            var leaves = [x, h], outs: [Tensor]
            switch cell {
            case let lstm as LSTMCell:
                let c = try f.at("\(name).c").copy(requiresGrad: true)
                leaves.append(c)
                let (h1, c1) = lstm(x, (h, c))
                outs = [h1, c1]
                assertClose(c1, try f.at("\(name).c1"), "\(name) c'")
            case let rnn as RNNCell: outs = [rnn(x, h)]
            case let gru as GRUCell: outs = [gru(x, h)]
            default: fatalError()
            }
            assertClose(outs[0], try f.at("\(name).h1"), "\(name) h'")
            try outs.enumerated().map { i, o in (o * (try f.at("\(name).up\(i)"))).sum() }.reduce(Tensor(0), +).backward()
            for (leaf, label) in zip(leaves, ["x", "h", "c"]) {
                assertClose(leaf.grad!, try f.at("\(name).grad.\(label)"), "\(name) grad \(label)")
            }
            for (k, p) in cell.namedParameters() { assertClose(p.grad!, try f.at("\(name).grad.\(k)"), "\(name) grad \(k)") }
        }
    }
}

/// Conv2d, pools, upsampling and normalisation layers against PyTorch.
final class ConvNormFixtureTests: XCTestCase {
    func testConvolutionsMatchPyTorch() throws {
        let f = try fixture("conv.safetensors")
        let cases: [(String, Conv2d)] = [
            ("basic", Conv2d(2, 3, kernelSize: 3, padding: 1)),
            ("strided", Conv2d(2, 4, kernelSize: 3, stride: 2, padding: 1, groups: 2)),
            ("dilated", Conv2d(3, 2, kernelSize: 3, padding: 2, dilation: 2, bias: false)),
            ("pointwise", Conv2d(4, 3, kernelSize: 1)),
            ("depthwise", Conv2d(4, 4, kernelSize: 3, stride: 2, padding: 1, groups: 4))
        ]
        for (name, conv) in cases {
            var sd: [String: Tensor] = [:]
            for (k, v) in f where k.hasPrefix("conv.\(name).param.") { sd[String(k.dropFirst("conv.\(name).param.".count))] = v }
            try conv.load(stateDict: sd)
            checkForwardBackward(
                input: try f.at("conv.\(name).x"), output: try f.at("conv.\(name).out"),
                upstream: try f.at("conv.\(name).up"), inputGrad: try f.at("conv.\(name).grad.x"), "conv \(name)"
            ) { conv($0) }
            for (k, p) in conv.namedParameters() { assertClose(p.grad!, try f.at("conv.\(name).grad.\(k)"), "conv \(name) grad \(k)") }
        }
    }

    func testPoolsMatchPyTorch() throws {
        let f = try fixture("conv.safetensors")
        let layers: [(String, any UnaryLayer)] = [
            ("max", MaxPool2d(kernelSize: 3, stride: 2, padding: 1)), ("max2", MaxPool2d(kernelSize: 2)),
            ("avg", AvgPool2d(kernelSize: 3, stride: 2, padding: 1)),
            ("avg_exclude_pad", AvgPool2d(kernelSize: 3, stride: 2, padding: 1, countIncludePad: false)),
            ("adaptive", AdaptiveAvgPool2d(outputSize: (3, 5))), ("upsample", Upsample(scaleFactor: 2))
        ]
        for (name, layer) in layers {
            checkForwardBackward(
                input: try f.at("pool.x"), output: try f.at("pool.\(name).out"), upstream: try f.at("pool.\(name).up"),
                inputGrad: try f.at("pool.\(name).grad"), name
            ) { layer($0) }
        }
    }

    func testBatchNormTrainEvalAndRunningStatisticsMatchPyTorch() throws {
        let f = try fixture("norm.safetensors")
        for (name, bn) in [
            ("bn2d", BatchNorm2d(numFeatures: 3) as BatchNorm), ("bn1d", BatchNorm1d(numFeatures: 3)),
            ("bn1d_seq", BatchNorm1d(numFeatures: 3, momentum: 0.3))
        ] {
            bn.weight!.assign(try f.at("\(name).weight"))
            bn.bias!.assign(try f.at("\(name).bias"))
            bn.train()
            assertClose(bn(try f.at("\(name).x1")), try f.at("\(name).y1"), "\(name) first batch")
            let x2 = try f.at("\(name).x2").copy(requiresGrad: true)
            let y2 = bn(x2)
            assertClose(y2, try f.at("\(name).y2"), "\(name) second batch")
            y2.backward(gradient: try f.at("\(name).up"))
            assertClose(x2.grad!, try f.at("\(name).grad.x"), "\(name) grad x")
            assertClose(bn.weight!.grad!, try f.at("\(name).grad.weight"), "\(name) grad weight")
            assertClose(bn.bias!.grad!, try f.at("\(name).grad.bias"), "\(name) grad bias")
            assertClose(bn.runningMean, try f.at("\(name).running_mean"), "\(name) running mean")
            assertClose(bn.runningVar, try f.at("\(name).running_var"), "\(name) running var")
            XCTAssertEqual(bn.numBatchesTracked.item, try f.at("\(name).num_batches_tracked").item)
            bn.eval()
            let x3 = try f.at("\(name).x3").copy(requiresGrad: true)
            let y3 = bn(x3)
            assertClose(y3, try f.at("\(name).eval_out"), "\(name) eval")
            y3.backward(gradient: try f.at("\(name).up"))
            assertClose(x3.grad!, try f.at("\(name).eval_grad.x"), "\(name) eval grad x")
        }
    }

    func testLayerAndGroupNormMatchPyTorch() throws {
        let f = try fixture("norm.safetensors")
        for (name, m) in [("layernorm", LayerNorm([4, 5]) as Module & UnaryLayer), ("groupnorm", GroupNorm(numGroups: 2, numChannels: 6))] {
            try m.load(stateDict: ["weight": f.at("\(name).weight"), "bias": f.at("\(name).bias")])
            checkForwardBackward(
                input: try f.at("\(name).x"), output: try f.at("\(name).out"), upstream: try f.at("\(name).up"),
                inputGrad: try f.at("\(name).grad.x"), name
            ) { m($0) }
            for (k, p) in m.namedParameters() { assertClose(p.grad!, try f.at("\(name).grad.\(k)"), "\(name) grad \(k)") }
        }
    }

    func testPyTorchCNNStateDictLoadsAndGivesPyTorchOutputs() throws {
        let cnn = Sequential(
            Conv2d(3, 4, kernelSize: 3, padding: 1, bias: false), BatchNorm2d(numFeatures: 4), SiLU(), MaxPool2d(kernelSize: 2),
            Conv2d(4, 6, kernelSize: 3, stride: 2, padding: 1), BatchNorm2d(numFeatures: 6), SiLU(), Upsample(scaleFactor: 2),
            Conv2d(6, 2, kernelSize: 1), Flatten(), Linear(inputSize: 32, outputSize: 3))
        let state = try Safetensors.read(fixturePath("cnn_state.safetensors"))
        XCTAssertEqual(Set(state.keys), Set(cnn.stateDictKeys()), "PyTorch's names, buffers included")
        try cnn.load(stateDict: state)
        cnn.eval()
        let f = try fixture("cnn_eval.safetensors")
        assertClose(cnn(try f.at("x")), try f.at("out"), rtol: 1e-4, atol: 1e-5)
    }
}
