import GradGuard
import XCTest
import _TestSupport

@testable import GradGuardTensor

/// Finite-difference checks of the fused layers: every input and every parameter.
final class LayerGradientTests: XCTestCase {
    func testConv2dAllConfigurations() {
        let configs: [(cin: Int, cout: Int, k: Int, s: Int, p: Int, d: Int, g: Int, bias: Bool)] = [
            (2, 3, 3, 1, 1, 1, 1, true), (2, 4, 3, 2, 1, 1, 2, true), (3, 2, 3, 1, 2, 2, 1, false),
            (4, 2, 1, 1, 0, 1, 1, true), (2, 2, 2, 2, 0, 1, 2, true)
        ]
        for (i, c) in configs.enumerated() {
            let x = testTensor([2, c.cin, 5, 6], seed: UInt64(100 + i))
            let w = testTensor([c.cout, c.cin / c.g, c.k, c.k], seed: UInt64(200 + i))
            let b = testTensor([c.cout], seed: UInt64(300 + i))
            let inputs = c.bias ? [x, w, b] : [x, w]
            checkGradients(inputs) { t in
                t[0].conv2d(
                    weight: t[1], bias: c.bias ? t[2] : nil, stride: (c.s, c.s), padding: (c.p, c.p),
                    dilation: (c.d, c.d), groups: c.g)
            }
        }
    }

    func testPoolsAndUpsampling() {
        // Distinct values so that every max is unique and finite differences stay inside one branch.
        let x = Tensor(shape: [2, 2, 5, 6], scalars: (0..<120).map { Float(($0 * 37) % 120) / 20 - 3 })
        checkGradients([x]) { $0[0].maxPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1)) }
        checkGradients([x]) { $0[0].maxPool2d(kernel: (2, 2)) }
        checkGradients([x]) { $0[0].avgPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1)) }
        checkGradients([x]) { $0[0].avgPool2d(kernel: (3, 3), stride: (2, 2), padding: (1, 1), countIncludePad: false) }
        checkGradients([x]) { $0[0].adaptiveAvgPool2d(outputSize: (3, 4)) }
        checkGradients([x]) { $0[0].upsampleNearest(scale: (2, 3)) }
    }

    func testBatchNormTrainAndEval() {
        for shape in [[6, 3], [4, 3, 5], [3, 3, 4, 2]] {
            let bn = shape.count == 4 ? BatchNorm2d(numFeatures: 3) as BatchNorm : BatchNorm1d(numFeatures: 3)
            let x = testTensor(shape, seed: 400)
            let w = testTensor([3], seed: 401, low: 0.5, high: 1.5), b = testTensor([3], seed: 402)
            bn.weight = w
            bn.bias = b
            checkGradients([x, w, b]) { _ in bn(x) }
            bn.eval()
            checkGradients([x, w, b]) { _ in bn(x) }
        }
    }

    func testSynchronisedBatchNormOverOneRankIsBatchNorm() {
        // The synchronised path (statistics combined over the ranks, gradient terms summed over
        // them) over a world of one: the same values as the plain path, and gradients that pass
        // the finite-difference check.
        for shape in [[6, 3], [3, 3, 4, 2]] {
            let make = { shape.count == 4 ? BatchNorm2d(numFeatures: 3) as BatchNorm : BatchNorm1d(numFeatures: 3) }
            let plain = make(), synced = make()
            synced.statisticsSync = SingleProcessCommunicator()
            let x = testTensor(shape, seed: 420)
            let w = testTensor([3], seed: 421, low: 0.5, high: 1.5), b = testTensor([3], seed: 422)
            for bn in [plain, synced] {
                bn.weight = w
                bn.bias = b
            }
            let y0 = plain(x), y1 = synced(x)
            XCTAssertEqual(zip(y0.scalars, y1.scalars).map { abs($0 - $1) }.max() ?? 1, 0, accuracy: 1e-5)
            XCTAssertEqual(plain.runningVar.scalars, synced.runningVar.scalars)
            checkGradients([x, w, b]) { _ in synced(x) }
        }
    }

    func testZLossMatchesPyTorchAndItsGradientChecks() throws {
        let f = try fixture("stabilizers.safetensors")
        let logits = try f.at("zloss.logits"), targets = try f.at("zloss.targets")
        for masked in [false, true] {
            let x = logits.copy(requiresGrad: true)
            let z = masked ? zLoss(x, weight: 1e-4, targets: targets, ignoreIndex: 0) : zLoss(x, weight: 1e-4)
            z.backward()
            XCTAssertEqual(z.item, try f.at(masked ? "zloss.masked_value" : "zloss.value").item, accuracy: 1e-8)
            assertClose(x.grad!, try f.at(masked ? "zloss.masked_grad" : "zloss.grad"), rtol: 1e-4, atol: 1e-9)
        }
        checkGradients([testTensor([4, 5], seed: 430)]) { t in zLoss(t[0], weight: 0.5) }
    }

    func testFLOPsAreCountedFromTheMatrixProducts() {
        let linear = Linear(inputSize: 4, outputSize: 3)
        XCTAssertEqual(FLOPCounter.count { _ = withoutGrad { linear(Tensor.zeros([1, 4])) } }, 2 * 1 * 3 * 4)
        let conv = Conv2d(3, 8, kernelSize: 3, padding: 1)
        XCTAssertEqual(FLOPCounter.count { _ = withoutGrad { conv(Tensor.zeros([1, 3, 8, 8])) } }, 2 * 8 * 64 * 27)
        // Nothing is counted outside the call.
        _ = withoutGrad { linear(Tensor.zeros([5, 4])) }
        XCTAssertEqual(FLOPCounter.count {}, 0)
        // The detector's sizes: s has four times n's convolution work (twice the channels).
        let n = YOLODetector(classes: 3, width: DetectorSize.n.width), s = YOLODetector(classes: 3, width: DetectorSize.s.width)
        let x = Tensor.zeros([1, 3, 64, 64])
        let fn = FLOPCounter.count { _ = n.inferring { n(x) } }, fs = FLOPCounter.count { _ = s.inferring { s(x) } }
        XCTAssertEqual(Double(fs) / Double(fn), 4, accuracy: 0.2)
    }

    func testLayerAndGroupNorm() {
        let ln = LayerNorm([4, 5])
        ln.weight = testTensor([4, 5], seed: 410)
        ln.bias = testTensor([4, 5], seed: 411)
        let x = testTensor([3, 4, 5], seed: 412)
        checkGradients([x, ln.weight!, ln.bias!]) { _ in ln(x) }
        let gn = GroupNorm(numGroups: 2, numChannels: 6)
        gn.weight = testTensor([6], seed: 413)
        gn.bias = testTensor([6], seed: 414)
        let y = testTensor([2, 6, 3], seed: 415)
        checkGradients([y, gn.weight!, gn.bias!]) { _ in gn(y) }
    }

    func testRecurrentLayersEveryInputAndWeight() {
        // Hidden sizes below and above the eight-lane blocks of the kernels.
        for (kind, h) in [(RecurrentKind.rnnTanh, 5), (.rnnRelu, 5), (.lstm, 5), (.gru, 5), (.lstm, 11), (.gru, 11), (.rnnTanh, 11)] {
            let (t, b, i) = (4, 2, 3)
            let gw = kind.gateCount * h
            let x = testTensor([t, b, i], seed: 500)
            let h0 = testTensor([b, h], seed: 501, low: -0.5, high: 0.5)
            let c0 = testTensor([b, h], seed: 502, low: -0.5, high: 0.5)
            let wih = testTensor([gw, i], seed: 503, low: -0.6, high: 0.6)
            let whh = testTensor([gw, h], seed: 504, low: -0.6, high: 0.6)
            let bih = testTensor([gw], seed: 505, low: -0.3, high: 0.3)
            let bhh = testTensor([gw], seed: 506, low: -0.3, high: 0.3)
            var inputs = [x, h0, wih, whh, bih, bhh]
            if kind == .lstm { inputs.insert(c0, at: 2) }
            checkGradients(inputs) { v in
                let lstm = kind == .lstm
                return Tensor.recurrentLayer(
                    kind, x: v[0], h0: v[1], c0: lstm ? v[2] : nil,
                    weightIH: v[lstm ? 3 : 2], weightHH: v[lstm ? 4 : 3],
                    biasIH: v[lstm ? 5 : 4], biasHH: v[lstm ? 6 : 5])
            }
        }
    }

    func testStackedLSTMModuleWithBatchFirst() {
        DefaultGenerator.seed(3)
        let lstm = LSTM(inputSize: 3, hiddenSize: 4, numLayers: 2, batchFirst: true)
        let x = testTensor([2, 5, 3], seed: 510)
        let h0 = testTensor([2, 2, 4], seed: 511), c0 = testTensor([2, 2, 4], seed: 512)
        checkGradients([x, h0, c0] + lstm.parameters()) { v in
            let (out, state) = lstm(v[0], (v[1], v[2]))
            return Tensor.concatenate([out.reshaped([-1]), state.h.reshaped([-1]), state.c.reshaped([-1])])
        }
    }
}

/// Wide inputs take the vectorised paths of im2col (stride 1 block copies, stride 2
/// even-lane gathers); compare them with a direct convolution written out in loops.
final class WideConvolutionTests: XCTestCase {
    func naiveConv(_ x: Tensor, _ w: Tensor, stride: Int, pad: Int) -> [Float] {
        let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (co, k) = (w.shape[0], w.shape[2])
        let oh = (h + 2 * pad - k) / stride + 1, ow = (wd + 2 * pad - k) / stride + 1
        var out = [Float](repeating: 0, count: n * co * oh * ow)
        for i in 0..<n {
            for o in 0..<co {
                for y in 0..<oh {
                    for xo in 0..<ow {
                        var s: Float = 0
                        for ci in 0..<c {
                            for ky in 0..<k {
                                for kx in 0..<k {
                                    let iy = y * stride - pad + ky, ix = xo * stride - pad + kx
                                    if iy >= 0 && iy < h && ix >= 0 && ix < wd {
                                        s += x.scalars[((i * c + ci) * h + iy) * wd + ix] * w.scalars[((o * c + ci) * k + ky) * k + kx]
                                    }
                                }
                            }
                        }
                        out[((i * co + o) * oh + y) * ow + xo] = s
                    }
                }
            }
        }
        return out
    }

    /// Rows wide enough for the eight-lane paths of im2col and col2im, at every kernel level
    /// the processor runs.
    func testWideInputsMatchDirectConvolution() {
        for level in Kernels.supportedLevels {
            Kernels.withMaxLevel(level) {
                let x = testTensor([3, 3, 5, 41], seed: 600)  // three images: uneven shares over two workers
                let w = testTensor([4, 3, 3, 3], seed: 601)
                for (stride, pad) in [(1, 1), (2, 1), (2, 0), (3, 1)] {
                    let y = x.conv2d(weight: w, stride: (stride, stride), padding: (pad, pad))
                    assertClose(
                        y, Tensor(shape: y.shape, scalars: naiveConv(x, w, stride: stride, pad: pad)), rtol: 1e-5, atol: 1e-5,
                        "stride \(stride) padding \(pad) \(level)")
                }
                checkGradients([testTensor([1, 2, 3, 37], seed: 602), testTensor([2, 2, 3, 3], seed: 603)]) {
                    $0[0].conv2d(weight: $0[1], stride: (2, 2), padding: (1, 1))
                }
                checkGradients([testTensor([2, 2, 3, 36], seed: 604), testTensor([2, 2, 3, 3], seed: 605)]) {
                    $0[0].conv2d(weight: $0[1], stride: (2, 2), padding: (0, 0))
                }
            }
        }
    }
}

/// The recurrent kernels have a code path per kernel level for the per-step products and
/// the LSTM cell: packed AVX2 (blocks of six rows and sixteen columns) and AVX-512 (twelve
/// rows and thirty-two columns) kernels with their tails, and OpenBLAS with the portable
/// cell. All must give the same outputs and gradients, on shapes that exercise the blocks
/// and the tails.
final class RecurrentKernelPathTests: XCTestCase {
    func run(_ kind: RecurrentKind, level: KernelLevel, batch: Int, hidden: Int, threads: Int? = nil) -> [Tensor] {
        let saved = (Kernels.maxLevel, Kernels.threadCount)
        Kernels.maxLevel = level
        if let threads { Kernels.threadCount = threads }
        defer { (Kernels.maxLevel, Kernels.threadCount) = saved }
        let gw = kind.gateCount * hidden
        let x = testTensor([5, batch, 7], seed: 700, low: -1, high: 1)
        let h0 = testTensor([batch, hidden], seed: 701, low: -0.5, high: 0.5)
        let c0 = testTensor([batch, hidden], seed: 702, low: -0.5, high: 0.5)
        let wih = testTensor([gw, 7], seed: 703, low: -0.3, high: 0.3)
        // Recurrent weights scaled with 1/√hidden, so the tanh RNN stays contractive and does
        // not amplify rounding differences between the code paths.
        let scale = Float(1.2 / Double(hidden).squareRoot())
        let whh = testTensor([gw, hidden], seed: 704, low: -scale, high: scale)
        let bih = testTensor([gw], seed: 705, low: -0.1, high: 0.1), bhh = testTensor([gw], seed: 706, low: -0.1, high: 0.1)
        let leaves = [x, h0, c0, wih, whh, bih, bhh]
        for t in leaves { t.requiresGrad = true }
        let out = Tensor.recurrentLayer(
            kind, x: x, h0: h0, c0: kind == .lstm ? c0 : nil, weightIH: wih, weightHH: whh,
            biasIH: bih, biasHH: bhh)
        out.backward(gradient: testTensor(out.shape, seed: 707))
        return [out] + leaves.compactMap { $0.grad }
    }

    func testPackedKernelMatchesOpenBLAS() {
        for kind in [RecurrentKind.lstm, .gru, .rnnTanh] {
            // The packed kernels run for hidden sizes that are multiples of 16: AVX2 blocks of 6 rows
            // and of 5, 4, 3, 2 and 1 at the end (13 = 6 + 4 + 3, 32 = 4·6 + 4 + 4); AVX-512 blocks
            // of 12 rows (26 = 12 + 7 + 7, 37 = 2·12 + 7 + 6) over pairs of panels and a single last
            // one (48 columns = 2 + 1 panels); the others run through OpenBLAS either way, with the
            // vector LSTM cell's tails (37, 9 units).
            let shapes = [
                (13, 48), (6, 16), (32, 32), (11, 64), (5, 16), (8, 16), (2, 16), (1, 32), (26, 48), (37, 16),
                (12, 80), (13, 37), (5, 9)
            ]
            for (batch, hidden) in shapes {
                let reference = run(kind, level: .portable, batch: batch, hidden: hidden)
                forEachVectorLevel("\(kind) cell") { level in
                    let a = run(kind, level: level, batch: batch, hidden: hidden)
                    XCTAssertEqual(a.count, reference.count)
                    for (i, (u, v)) in zip(a, reference).enumerated() {
                        assertClose(u, v, rtol: 1e-5, atol: 1e-6, "\(kind) \(level) batch \(batch) hidden \(hidden) tensor \(i)")
                    }
                }
            }
        }
    }

    /// Large enough steps are split over the workers by blocks of hidden units (16-aligned for
    /// the packed kernel, any multiple of 8 for OpenBLAS); the result must not depend on it.
    func testStepsSplitOverWorkersMatchOneThread() {
        for kind in [RecurrentKind.lstm, .gru, .rnnTanh] {
            for level in Kernels.supportedLevels {
                // OpenBLAS's kernels round differently for other column blocks: only 40 units there.
                for hidden in level == .portable ? [40] : [64, 40] {
                    let one = run(kind, level: level, batch: 32, hidden: hidden, threads: 1)
                    let many = run(kind, level: level, batch: 32, hidden: hidden, threads: 3)
                    for (i, (u, v)) in zip(one, many).enumerated() {
                        assertClose(u, v, rtol: 1e-5, atol: 1e-6, "\(kind) hidden \(hidden) \(level) tensor \(i)")
                    }
                }
            }
        }
    }
}

/// A recurrent layer fed by a lookup in a small table projects the table's rows once and
/// sends the table its gradient directly (`RowSource`). Outputs and every gradient must be
/// those of the plain path, which a no-op hook on the lookup result forces.
final class EmbeddingFoldTests: XCTestCase {
    func run(_ kind: RecurrentKind, batchFirst: Bool, fold: Bool, alsoSummed: Bool = false) -> [Tensor] {
        let (vocab, dim, hidden, batch, steps) = (7, 5, 16, 3, 9)
        DefaultGenerator.seed(41)
        let emb = Embedding(numEmbeddings: vocab, embeddingDim: dim)
        let net: RecurrentNetwork
        switch kind {
        case .lstm: net = LSTM(inputSize: dim, hiddenSize: hidden, batchFirst: batchFirst)
        case .gru: net = GRU(inputSize: dim, hiddenSize: hidden, batchFirst: batchFirst)
        default: net = RNN(inputSize: dim, hiddenSize: hidden, batchFirst: batchFirst)
        }
        var g = RandomGenerator(seed: 42)
        let shape = batchFirst ? [batch, steps] : [steps, batch]
        let ids = Tensor(shape: shape, scalars: (0..<(batch * steps)).map { _ in Float(g.next() % UInt64(vocab)) })
        let e = emb(ids)
        XCTAssertNotNil(e.rowSource, "27 lookups in a 7-row table are recorded for the fold")
        if !fold { e.registerHook { _ in nil } }
        let out: Tensor
        switch kind {
        case .lstm: out = (net as! LSTM)(e).output
        case .gru: out = (net as! GRU)(e).output
        default: out = (net as! RNN)(e).output
        }
        var loss = (out * testTensor(out.shape, seed: 43)).sum()
        if alsoSummed { loss = loss + (e * e).sum() }  // a second consumer of the lookup
        loss.backward()
        return [out] + ([emb.weight] + net.parameters()).map { $0.grad ?? Tensor.zeros($0.shape) }
    }

    func testFoldedLookupMatchesThePlainPath() {
        for kind in [RecurrentKind.lstm, .gru, .rnnTanh] {
            for batchFirst in [true, false] {
                for alsoSummed in [false, true] {
                    let plain = run(kind, batchFirst: batchFirst, fold: false, alsoSummed: alsoSummed)
                    let folded = run(kind, batchFirst: batchFirst, fold: true, alsoSummed: alsoSummed)
                    XCTAssertEqual(plain.count, folded.count)
                    for (i, (u, v)) in zip(folded, plain).enumerated() {
                        assertClose(u, v, rtol: 1e-5, atol: 1e-6, "\(kind) batchFirst \(batchFirst) summed \(alsoSummed) tensor \(i)")
                    }
                }
            }
        }
    }

    /// The fold is taken: the recurrent node's first input is the table, not the lookup.
    func testFoldRoutesTheGradientToTheTable() {
        let table = testTensor([4, 3], seed: 44)
        table.requiresGrad = true
        let ids = Tensor(shape: [5, 2], scalars: [0, 1, 2, 3, 3, 2, 1, 0, 0, 0])
        let wih = testTensor([8, 3], seed: 45), whh = testTensor([8, 2], seed: 46)
        let out = Tensor.recurrentLayer(
            .lstm, x: table.indexSelect(indices: ids), h0: Tensor.zeros([2, 2]), c0: Tensor.zeros([2, 2]),
            weightIH: wih, weightHH: whh, biasIH: nil, biasHH: nil)
        XCTAssertTrue(out.gradFn?.inputs.first === table)
        // Fewer lookups than twice the table's rows: no fold.
        let few = table.indexSelect(indices: Tensor(shape: [2, 1], scalars: [0, 1]))
        XCTAssertNil(few.rowSource)
    }

    /// Finite differences through the folded path: the table, both weights and both biases.
    func testFoldedLookupGradients() {
        for kind in [RecurrentKind.lstm, .gru, .rnnTanh] {
            let (vocab, dim, hidden, batch, steps) = (3, 2, 5, 2, 4)
            let gw = kind.gateCount * hidden
            let ids = Tensor(shape: [steps, batch], scalars: [0, 1, 2, 2, 1, 0, 0, 2])
            let table = testTensor([vocab, dim], seed: 520)
            let wih = testTensor([gw, dim], seed: 521, low: -0.6, high: 0.6)
            let whh = testTensor([gw, hidden], seed: 522, low: -0.6, high: 0.6)
            let bih = testTensor([gw], seed: 523, low: -0.3, high: 0.3), bhh = testTensor([gw], seed: 524, low: -0.3, high: 0.3)
            checkGradients([table, wih, whh, bih, bhh]) { v in
                Tensor.recurrentLayer(
                    kind, x: v[0].indexSelect(indices: ids), h0: Tensor.zeros([batch, hidden]),
                    c0: kind == .lstm ? Tensor.zeros([batch, hidden]) : nil,
                    weightIH: v[1], weightHH: v[2], biasIH: v[3], biasHH: v[4])
            }
        }
    }
}
