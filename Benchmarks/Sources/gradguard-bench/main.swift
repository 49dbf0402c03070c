// The reference workloads of DESIGN.md, timed the way pytorch_reference.py times them
// (3 warm-up steps, median of 20), printed as JSON with the same keys so the two can be
// compared side by side.
//
//     swift run -c release --package-path Benchmarks gradguard-bench [--only NAME]
import Foundation
import GradGuard

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

func bench(_ n: Int = 20, warm: Int = 3, _ step: () -> Void) -> Double {
    for _ in 0..<warm { step() }
    var ts: [Double] = []
    for _ in 0..<n {
        let t = DispatchTime.now().uptimeNanoseconds
        step()
        ts.append(Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9)
    }
    return median(ts)
}

let only = CommandLine.arguments.firstIndex(of: "--only").map { CommandLine.arguments[$0 + 1] }
func wanted(_ name: String) -> Bool { only == nil || only == name }
var results: [(String, Double)] = []
DefaultGenerator.seed(0)

// MARK: deep MLP: 20 × (Linear 256 + ReLU) + Linear(256, 10), batch 128, CE, clip 1.0, SGD
if wanted("mlp") {
    var layers: [any UnaryLayer] = []
    for _ in 0..<20 { layers += [Linear(inputSize: 256, outputSize: 256), ReLU()] }
    layers.append(Linear(inputSize: 256, outputSize: 10))
    let mlp = Sequential(layers)
    let opt = SGD(mlp.parameters(), lr: 0.01)
    let x = Tensor.randn([128, 256]), y = Tensor.randint([128], high: 10)
    let t = bench {
        opt.zeroGrad()
        let loss = crossEntropy(mlp(x), y)
        loss.backward()
        clipGradNorm(mlp.parameters(), maxNorm: 1.0)
        opt.step()
    }
    results.append(("mlp20_step_ms", t * 1e3))
}

// MARK: char-LSTM: Embedding(65,128) → LSTM(128,256) → Linear(256,65), batch 32 × 64, CE, clip 1.0, Adam
if wanted("lstm") {
    let emb = Embedding(numEmbeddings: 65, embeddingDim: 128)
    let lstm = LSTM(inputSize: 128, hiddenSize: 256, batchFirst: true)
    let head = Linear(inputSize: 256, outputSize: 65)
    let params = emb.parameters() + lstm.parameters() + head.parameters()
    let opt = Adam(params, lr: 1e-3)
    let x = Tensor.randint([32, 64], high: 65), y = Tensor.randint([32 * 64], high: 65)
    let t = bench {
        opt.zeroGrad()
        let logits = head(lstm(emb(x)).output).reshaped([-1, 65])
        let loss = crossEntropy(logits, y)
        loss.backward()
        clipGradNorm(params, maxNorm: 1.0)
        opt.step()
    }
    results.append(("char_lstm_step_ms", t * 1e3))
    results.append(("char_lstm_tokens_per_s", 32 * 64 / t))
}

// MARK: tiny detector: 6 × (Conv3×3-BN-SiLU) + 1×1 head, batch 16 × 3×128×128, mean(out²), clip 10, SGD momentum 0.9
if wanted("detector") {
    let det = benchTinyDetector()
    let opt = SGD(det.parameters(), lr: 0.01, momentum: 0.9)
    let x = Tensor.randn([16, 3, 128, 128])
    let t = bench {
        opt.zeroGrad()
        let out = det(x)
        let loss = (out * out).mean()
        loss.backward()
        clipGradNorm(det.parameters(), maxNorm: 10)
        opt.step()
    }
    results.append(("tiny_det_step_ms", t * 1e3))
    results.append(("tiny_det_images_per_s", 16 / t))
}

// MARK: the YOLO-style detector of GradGuardModels (classes 3, width 16), batch 16 × 3×128×128,
// loss = sum of the heads' mean squares, clip 10, SGD momentum 0.937 Nesterov
if wanted("yolo") {
    let model = YOLODetector(classes: 3, width: 16, imageSize: 128)
    let opt = SGD(model.parameters(), lr: 0.01, momentum: 0.937, nesterov: true)
    let x = Tensor.randn([16, 3, 128, 128])
    let t = bench {
        opt.zeroGrad()
        let outs = model(x)
        let loss = (outs[0] * outs[0]).mean() + (outs[1] * outs[1]).mean()
        loss.backward()
        clipGradNorm(model.parameters(), maxNorm: 10)
        opt.step()
    }
    results.append(("yolo_step_ms", t * 1e3))
}

// MARK: gradient-health overhead on the char-LSTM and tiny-detector steps
// Three variants of each step, interleaved step by step so that the machine's drift hits
// them alike: plain (clipGradNorm + optimizer), + per-module statistics every step
// (GradientHealth.observe), and the full guard (statistics, the five detectors, global-norm
// clipping through the guard, update-to-weight ratios, optimizer step).
if only == "health" {
    func measure(_ label: String, model: Module, opt: any Optimizer, maxNorm: Float, forward: () -> Tensor) {
        let params = model.parameters()
        let health = GradientHealth(model: model)
        let guardian = GradientGuard(model: model, optimizer: opt, policy: GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: maxNorm)))
        var plain: [Double] = [], stats: [Double] = [], guarded: [Double] = []
        for i in 0..<(3 * 25) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            opt.zeroGrad()
            let loss = forward()
            loss.backward()
            switch i % 3 {
            case 0:
                clipGradNorm(params, maxNorm: maxNorm)
                opt.step()
            case 1:
                _ = health.observe(step: i, loss: loss.item)
                clipGradNorm(params, maxNorm: maxNorm)
                opt.step()
            default:
                _ = try! guardian.step(loss: loss.item)
            }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            if i >= 9 { [0: { plain.append(dt) }, 1: { stats.append(dt) }, 2: { guarded.append(dt) }][i % 3]!() }
        }
        let (p, s, g) = (median(plain), median(stats), median(guarded))
        results.append(("\(label)_plain_ms", p))
        results.append(("\(label)_statistics_ms", s))
        results.append(("\(label)_guard_ms", g))
        results.append(("\(label)_statistics_overhead_pct", (s / p - 1) * 100))
        results.append(("\(label)_guard_overhead_pct", (g / p - 1) * 100))
        // The statistics pass alone, for a figure that the step's noise does not swamp.
        let alone = bench(20) { _ = health.observe(step: 0) }
        results.append(("\(label)_observe_alone_ms", alone * 1e3))
    }
    do {
        let m = BenchCharLSTM()
        let x = Tensor.randint([32, 64], high: 65), y = Tensor.randint([32 * 64], high: 65)
        measure("char_lstm", model: m, opt: Adam(m.parameters(), lr: 1e-3), maxNorm: 1) {
            m.loss(x, y)
        }
    }
    do {
        let det = benchTinyDetector()
        let x = Tensor.randn([16, 3, 128, 128])
        measure("tiny_det", model: det, opt: SGD(det.parameters(), lr: 0.01, momentum: 0.9), maxNorm: 10) {
            let out = det(x)
            return (out * out).mean()
        }
    }
}

if only == "observe" {
    let lstm = LSTM(inputSize: 128, hiddenSize: 256)
    for p in lstm.parameters() { p.grad = Tensor.randn(p.shape) }
    let health = GradientHealth(model: lstm)
    let t = bench(500) { _ = health.observe(step: 0) }
    print(String(format: "observe over %d floats: %.3f ms", lstm.parameters().map(\.count).reduce(0, +), t * 1e3))
}

// MARK: clip_grad_norm_ alone over 100 tensors × 50 000 floats
if wanted("clip") {
    let ps = (0..<100).map { _ -> Tensor in
        let p = Tensor.randn([50_000], requiresGrad: true)
        p.grad = Tensor.randn([50_000])
        return p
    }
    let t = bench(50) { clipGradNorm(ps, maxNorm: 1.0) }
    results.append(("clip100x50k_ms", t * 1e3))
}

// MARK: sgemm 1024³: OpenBLAS (split over GradGuard's workers) and Tensor.matmul (the kernels in use)
if wanted("sgemm") {
    let n = 1024
    let a = Tensor.randn([n, n]), b = Tensor.randn([n, n])
    var c = [Float](repeating: 0, count: n * n)
    let flop = 2.0 * Double(n * n * n)
    func rawCall() {
        let saved = Kernels.gemm
        Kernels.gemm = .openBLAS
        defer { Kernels.gemm = saved }
        a.withUnsafeScalars { pa in
            b.withUnsafeScalars { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    gemm(m: n, n: n, k: n, a: pa.baseAddress!, b: pb.baseAddress!, c: pc.baseAddress!)
                }
            }
        }
    }
    // Interleaved, so that both see the same machine load.
    var rawTimes: [Double] = [], tensorTimes: [Double] = []
    for i in 0..<24 {
        rawTimes.append(bench(1, warm: 0, rawCall))
        tensorTimes.append(bench(1, warm: 0) { _ = a.matmul(b) })
        if i < 4 { rawTimes.removeAll(); tensorTimes.removeAll() }  // warm-up
    }
    let raw = median(rawTimes), viaTensor = median(tensorTimes)
    results.append(("sgemm1024_openblas_gflops", flop / raw / 1e9))
    results.append(("sgemm1024_tensor_gflops", flop / viaTensor / 1e9))
}

// MARK: the three GEMMs of a 128 × 256 → 256 linear layer (forward, dX, dW)
if wanted("gemm-shapes") {
    let x = Tensor.randn([128, 256]), w = Tensor.randn([256, 256])
    var c = [Float](repeating: 0, count: 256 * 256)
    let flop = 2.0 * 128 * 256 * 256
    for (label, ta, tb, m, n, k) in [
        ("linear256_fwd", false, true, 128, 256, 256), ("linear256_dx", false, false, 128, 256, 256),
        ("linear256_dw", true, false, 256, 256, 128)
    ] {
        let t = bench(200) {
            x.withUnsafeScalars { px in
                w.withUnsafeScalars { pw in
                    c.withUnsafeMutableBufferPointer { pc in
                        gemm(transA: ta, transB: tb, m: m, n: n, k: k, a: px.baseAddress!, b: pw.baseAddress!, c: pc.baseAddress!)
                    }
                }
            }
        }
        results.append(("\(label)_gflops", flop / t / 1e9))
    }
}

if only == "distributed" {
    let (rank, figures) = distributedBenchmark()
    MPICommunicator.finish()
    if rank != 0 { exit(0) }
    results += figures
}

print("{")
// The BLAS kernels behind the figures (a string; compare.py prints it beside the table).
print("  \"kernels\": \"\(Kernels.summary)\",")
for (i, (k, v)) in results.enumerated() {
    print("  \"\(k)\": \(String(format: "%.3f", v))\(i + 1 < results.count ? "," : "")")
}
print("}")

// The whole-sequence products of the char-LSTM layer: input projection, input gradient,
// and the fused weight-and-bias gradient dG_iᵀ·[x | h | 1].
if only == "lstm-gemms" {
    let rows = 64 * 32, gw = 1024
    let big = Tensor.randn([rows, gw]), x = Tensor.randn([rows, 385]), w = Tensor.randn([gw, 385])
    var c = [Float](repeating: 0, count: rows * gw)
    for (label, ta, tb, m, n, k) in [
        ("proj x·W_ihᵀ", false, true, rows, gw, 128), ("dX dG·W_ih", false, false, rows, 128, gw),
        ("dW dGᵀ·[x|h|1]", true, false, gw, 385, rows)
    ] {
        let t = bench(30) {
            big.withUnsafeScalars { pb in
                x.withUnsafeScalars { px in
                    w.withUnsafeScalars { pw in
                        c.withUnsafeMutableBufferPointer { pc in
                            switch label.first! {
                            case "p": gemm(transA: ta, transB: tb, m: m, n: n, k: k, a: px.baseAddress!, b: pw.baseAddress!, c: pc.baseAddress!)
                            case "d" where label.hasPrefix("dX"):
                                gemm(transA: ta, transB: tb, m: m, n: n, k: k, a: pb.baseAddress!, b: pw.baseAddress!, c: pc.baseAddress!)
                            default: gemm(transA: ta, transB: tb, m: m, n: n, k: k, a: pb.baseAddress!, b: px.baseAddress!, c: pc.baseAddress!)
                            }
                        }
                    }
                }
            }
        }
        print(String(format: "%@: %.2f ms, %.1f GFLOP/s", label, t * 1e3, 2.0 * Double(m * n * k) / t / 1e9))
    }
}

if only == "lstm-parts" {
    let lstm = LSTM(inputSize: 128, hiddenSize: 256)
    let x = Tensor.randn([64, 32, 128])
    let fwd = bench { _ = withoutGrad { lstm(x) } }
    let xg = x.copy(requiresGrad: true)
    let both = bench {
        let (out, _) = lstm(xg)
        out.sum().backward()
    }
    let xs = Tensor.randn([32, 256]), w = Tensor.randn([1024, 256])
    var c = [Float](repeating: 0, count: 32 * 1024)
    let step = bench(200) {
        xs.withUnsafeScalars { a in
            w.withUnsafeScalars { b in
                c.withUnsafeMutableBufferPointer { cc in
                    gemm(transA: false, transB: true, m: 32, n: 1024, k: 256, a: a.baseAddress!, b: b.baseAddress!, c: cc.baseAddress!)
                }
            }
        }
    }
    let g = Tensor.randn([32, 1024])
    var d = [Float](repeating: 0, count: 32 * 256)
    let stepBack = bench(200) {
        g.withUnsafeScalars { a in
            w.withUnsafeScalars { b in
                d.withUnsafeMutableBufferPointer { cc in
                    gemm(m: 32, n: 256, k: 1024, a: a.baseAddress!, b: b.baseAddress!, c: cc.baseAddress!)
                }
            }
        }
    }
    print(
        String(
            format: "lstm forward %.1f ms, forward+backward %.1f ms, step gemm fwd %.1f µs, bwd %.1f µs",
            fwd * 1e3, both * 1e3, step * 1e6, stepBack * 1e6))
}

if only == "lstm-fwd" {
    let lstm = LSTM(inputSize: 128, hiddenSize: 256)
    let x = Tensor.randn([64, 32, 128])
    let fwd = bench(50) { _ = withoutGrad { lstm(x) } }
    print(String(format: "lstm forward %.1f ms", fwd * 1e3))
}
