import CGradGuardKernels
import Glibc
import Synchronization

// MARK: - Matrix products through OpenBLAS

/// Row-major C = alpha · op(A) · op(B) + beta · C, with op = transpose when `transA`/`transB`.
/// A is m×k after op, B is k×n after op, C is m×n.
///
/// OpenBLAS runs single-threaded (see `BLASThreads`); a large product is split here into
/// one block of rows or columns of C per worker and the blocks run at once. Keeping all
/// parallel work in one pool of threads matters on small machines: OpenBLAS's own pool
/// spins (`sched_yield`) between calls and competed with the element-wise kernels for the
/// same cores.
@inline(__always)
func sgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, b: UnsafePointer<Float>, beta: Float = 0, c: UnsafeMutablePointer<Float>,
    mayUseWorkers: Bool = true
) {
    if FLOPCounter.counting.load(ordering: .relaxed) { FLOPCounter.total.add(2 * m * n * k, ordering: .relaxed) }
    let level = Kernels.level
    // Aᵀ with a long K (weight gradients summed over many rows) reads one cache line per k and
    // block of rows; OpenBLAS packs A first and runs those 1.3–1.7× faster (BENCHMARKS.md).
    if level > .portable && Kernels.gemm == .own && alpha == 1 && (beta == 0 || beta == 1) && !(transA && k > 512) {
        ownGEMM(
            level, transA: transA, transB: transB, m: m, n: n, k: k, a: a, b: b, accumulate: beta == 1, c: c,
            mayUseWorkers: mayUseWorkers)
        return
    }
    let split = BLASThreads.splitHere && mayUseWorkers
    let lda = transA ? m : k, ldb = transB ? k : n, ldc = n
    func call(_ i0: Int, _ mi: Int, _ j0: Int, _ nj: Int) {
        // Row block i0..<i0+mi of C reads rows of op(A); column block j0..<j0+nj reads columns of op(B).
        let aBlock = transA ? a + i0 : a + i0 * lda
        let bBlock = transB ? b + j0 * ldb : b + j0
        gg_blas_sgemm(
            transA ? 1 : 0, transB ? 1 : 0,
            Int32(mi), Int32(nj), Int32(k), alpha, aBlock, Int32(lda), bBlock, Int32(ldb), beta,
            c + i0 * ldc + j0, Int32(ldc))
    }
    let workers = Kernels.threadCount
    guard split, workers > 1, m * n * k >= 1 << 18, Swift.max(m, n) >= 2 * workers else {
        call(0, m, 0, n)
        return
    }
    let alongRows = m >= n
    let extent = alongRows ? m : n
    // Blocks of whole multiples of 16 where possible, so each kernel sees aligned panels.
    parallelFor(workers, grain: 1) { range in
        for w in range {
            var lo = extent * w / workers, hi = extent * (w + 1) / workers
            if extent >= 16 * workers {
                lo = (lo / 16) * 16
                hi = w == workers - 1 ? extent : (hi / 16) * 16
            }
            guard hi > lo else { continue }
            if alongRows { call(lo, hi - lo, 0, n) } else { call(0, m, lo, hi - lo) }
        }
    }
}

/// Counts the floating-point operations of the matrix products a piece of code runs (2·m·n·k
/// each: every convolution and linear layer goes through `sgemm`) — the FLOPs of a model's
/// forward pass, as Ultralytics prints them.
public enum FLOPCounter {
    static let counting = Atomic<Bool>(false)
    static let total = Atomic<Int>(0)

    /// The operations of the products `body` runs (one counter for the process: not for use
    /// from two threads at once).
    public static func count(_ body: () throws -> Void) rethrows -> Int {
        total.store(0, ordering: .relaxed)
        counting.store(true, ordering: .relaxed)
        defer { counting.store(false, ordering: .relaxed) }
        try body()
        return total.load(ordering: .relaxed)
    }
}

/// The same product through GradGuard's own kernels (`gg_sgemm_panels`: 12 × 32 AVX-512 or
/// 6 × 16 AVX2 register blocks, each pair of B panels packed just before use). Large products
/// are split over the workers by panels of 16 columns, or by rows when C has few columns.
/// On the shapes of the reference workloads it matches or beats OpenBLAS's single-thread rate
/// (BENCHMARKS.md), and it needs no CPU model table: AVX-512 runs wherever the CPU has it.
func ownGEMM(
    _ level: KernelLevel, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>,
    b: UnsafePointer<Float>, accumulate: Bool, c: UnsafeMutablePointer<Float>, mayUseWorkers: Bool
) {
    guard m > 0, n > 0 else { return }
    let lda = transA ? m : k, ldb = transB ? k : n
    let panels = (n + 15) / 16
    func run(rows: Range<Int>, panels range: Range<Int>) {
        guard !rows.isEmpty, !range.isEmpty else { return }
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: gg_sgemm_scratch_size(k))
        defer { scratch.deallocate() }
        let aBlock = transA ? a + rows.lowerBound : a + rows.lowerBound * lda
        gg_sgemm_panels(
            level.cValue, rows.count, n, k, aBlock, lda, transA ? 1 : 0, b, ldb, transB ? 1 : 0,
            c + rows.lowerBound * n, n, accumulate ? 1 : 0, range.lowerBound, range.upperBound, scratch)
    }
    let workers = mayUseWorkers && m * n * k >= 1 << 18 ? Kernels.threadCount : 1
    if workers > 1 && panels >= 2 * workers {
        // Whole pairs of panels per worker where possible (the AVX-512 kernel takes two at a time).
        let unit = panels >= 4 * workers ? 2 : 1, units = (panels + unit - 1) / unit
        parallelFor(workers, grain: 1) { range in
            for w in range {
                run(rows: 0..<m, panels: Swift.min(panels, units * w / workers * unit)..<Swift.min(panels, units * (w + 1) / workers * unit))
            }
        }
    } else if workers > 1 && m >= 12 * workers {
        parallelFor(workers, grain: 1) { range in
            for w in range { run(rows: (m * w / workers)..<(m * (w + 1) / workers), panels: 0..<panels) }
        }
    } else {
        run(rows: 0..<m, panels: 0..<panels)
    }
}

/// OpenBLAS is switched to one thread on first use: GradGuard splits products itself.
/// `OPENBLAS_NUM_THREADS` is thereby overridden; `GRADGUARD_NUM_THREADS` sets the split.
/// With `GRADGUARD_GEMM_SPLIT=0` OpenBLAS keeps its own threads and nothing is split here.
enum BLASThreads {
    private static let state = Atomic<Int>(0)  // 0 unknown, 1 split here, 2 OpenBLAS threads

    static var splitHere: Bool {
        let s = state.load(ordering: .relaxed)
        if s != 0 { return s == 1 }
        let split = getenv("GRADGUARD_GEMM_SPLIT").map { String(cString: $0) != "0" } ?? true
        if split { gg_blas_set_num_threads(1) }
        state.store(split ? 1 : 2, ordering: .relaxed)
        return split
    }
}

/// The BLAS behind the matrix products: OpenBLAS, opened at first use after its core type
/// was chosen from the CPU's features (Intel: AVX-512 → SkylakeX, AVX2 + FMA → Haswell; AMD's
/// parts are left to OpenBLAS, which detects them), unless `OPENBLAS_CORETYPE` was set.
public enum BLAS {
    /// The kernel family in use ("Haswell", "SkylakeX", "Zen", … ; "Prescott" is generic SSE3).
    public static var core: String { String(cString: gg_blas_core()) }
    /// Why that family: the environment, the CPU's features, or OpenBLAS's own detection.
    public static var coreSource: String { String(cString: gg_blas_core_source()) }
    /// The CPU's vector features as GradGuard sees them.
    public static var cpuFeatures: [String] {
        let f = gg_cpu_features()
        return [(GG_CPU_AVX, "AVX"), (GG_CPU_AVX2_FMA, "AVX2+FMA"), (GG_CPU_AVX512, "AVX-512")].filter { f & $0.0 != 0 }.map(\.1)
    }
    /// One line for logs: "OpenBLAS core Haswell (chosen from the CPU's features; CPU: AVX, AVX2+FMA)".
    public static var summary: String {
        "OpenBLAS core \(core) (\(coreSource); CPU: \(cpuFeatures.isEmpty ? "no AVX" : cpuFeatures.joined(separator: ", ")))"
    }
}

extension Kernels {
    /// Which code runs: the vector-kernel level and who computes the matrix products, in one
    /// line (run environments, `gradguard env`, benchmark output).
    public static var summary: String {
        let products =
            level > .portable && gemm == .own
            ? "GradGuard's \(level) GEMM (OpenBLAS for Aᵀ·B with K > 512)" : "OpenBLAS"
        return "\(level) vector kernels (the CPU supports up to \(supportedLevel)); matrix products: \(products); \(BLAS.summary)"
    }
}

/// Public entry to the raw GEMM, for benchmarks and kernels outside this module.
public func gemm(
    transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>
) {
    sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, b: b, c: c)
}

extension Tensor {
    /// Matrix product. 2-D × 2-D, or batched: `[..., m, k] × [..., k, n]` where the batch
    /// dimensions are equal, or one side is 2-D and is shared across the batch.
    public func matmul(_ other: Tensor) -> Tensor {
        let a = self, b = other
        require(a.rank >= 2 && b.rank >= 2, "matmul needs rank ≥ 2, got \(a.shape) and \(b.shape)")
        let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1]
        let k2 = b.shape[b.rank - 2], n = b.shape[b.rank - 1]
        require(k == k2, "matmul: inner dimensions differ, \(a.shape) × \(b.shape)")
        let batchA = Array(a.shape.dropLast(2)), batchB = Array(b.shape.dropLast(2))
        require(
            batchA == batchB || batchA.isEmpty || batchB.isEmpty,
            "matmul: batch dimensions \(batchA) and \(batchB) differ")
        let batchShape = batchA.isEmpty ? batchB : batchA
        let batch = batchShape.reduce(1, *)
        let strideA = batchA.isEmpty ? 0 : m * k, strideB = batchB.isEmpty ? 0 : k * n
        // A 2-D right operand under a batched left one is one tall GEMM.
        if batchB.isEmpty && !batchA.isEmpty {
            let flat = a.reshaped([batch * m, k]).matmul(b)
            return flat.reshaped(batchShape + [m, n])
        }
        let out = Tensor(
            shape: batchShape + [m, n],
            uninitialized: { c in
                a.scalars.withUnsafeBufferPointer { pa in
                    b.scalars.withUnsafeBufferPointer { pb in
                        for i in 0..<batch {
                            sgemm(
                                transA: false, transB: false, m: m, n: n, k: k,
                                a: pa.baseAddress! + i * strideA, b: pb.baseAddress! + i * strideB,
                                c: c.baseAddress! + i * m * n)
                        }
                    }
                }
            })
        return Tensor.record("matmul", out, [a, b]) { g in
            var ga: Tensor? = nil, gb: Tensor? = nil
            if a.requiresGrad {
                // dA = dC · Bᵀ
                ga = Tensor(
                    shape: batchShape + [m, k],
                    uninitialized: { dst in
                        g.scalars.withUnsafeBufferPointer { pg in
                            b.scalars.withUnsafeBufferPointer { pb in
                                for i in 0..<batch {
                                    sgemm(
                                        transA: false, transB: true, m: m, n: k, k: n,
                                        a: pg.baseAddress! + i * m * n, b: pb.baseAddress! + i * strideB,
                                        c: dst.baseAddress! + i * m * k)
                                }
                            }
                        }
                    }
                ).sumToShape(a.shape)
            }
            if b.requiresGrad {
                // dB = Aᵀ · dC, summed over the batch when B is shared
                gb = Tensor(
                    shape: b.shape,
                    uninitialized: { dst in
                        a.scalars.withUnsafeBufferPointer { pa in
                            g.scalars.withUnsafeBufferPointer { pg in
                                for i in 0..<batch {
                                    sgemm(
                                        transA: true, transB: false, m: k, n: n, k: m,
                                        a: pa.baseAddress! + i * strideA, b: pg.baseAddress! + i * m * n,
                                        beta: (strideB == 0 && i > 0) ? 1 : 0,
                                        c: dst.baseAddress! + i * strideB)
                                }
                            }
                        }
                    })
            }
            return [ga, gb]
        }
    }

    /// The affine map `x · Wᵀ + b` of a linear layer, with `weight` of shape
    /// `[out, in]` (PyTorch's layout) and `x` of shape `[..., in]`. One GEMM forward,
    /// two GEMMs and a column sum backward.
    public static func linear(_ x: Tensor, weight w: Tensor, bias: Tensor?) -> Tensor {
        let inF = w.shape[1], outF = w.shape[0]
        require(x.shape.last == inF, "linear: input \(x.shape) does not end in \(inF)")
        let rows = x.count / inF
        let outShape = Array(x.shape.dropLast()) + [outF]
        let out = Tensor(
            shape: outShape,
            uninitialized: { y in
                if let bias {
                    require(bias.shape == [outF], "linear: bias \(bias.shape) is not [\(outF)]")
                    bias.withUnsafeScalars { pb in
                        for r in 0..<rows { (y.baseAddress! + r * outF).update(from: pb.baseAddress!, count: outF) }
                    }
                }
                x.scalars.withUnsafeBufferPointer { px in
                    w.scalars.withUnsafeBufferPointer { pw in
                        sgemm(
                            transA: false, transB: true, m: rows, n: outF, k: inF,
                            a: px.baseAddress!, b: pw.baseAddress!, beta: bias == nil ? 0 : 1, c: y.baseAddress!)
                    }
                }
            })
        let inputs = bias.map { [x, w, $0] } ?? [x, w]
        return record("linear", out, inputs) { g in
            var gx: Tensor? = nil, gw: Tensor? = nil, gb: Tensor? = nil
            g.scalars.withUnsafeBufferPointer { pg in
                // dX = dY · W
                func inputGrad() {
                    gx = Tensor(
                        shape: x.shape,
                        uninitialized: { dst in
                            w.scalars.withUnsafeBufferPointer { pw in
                                sgemm(
                                    transA: false, transB: false, m: rows, n: inF, k: outF,
                                    a: pg.baseAddress!, b: pw.baseAddress!, c: dst.baseAddress!)
                            }
                        })
                }
                // dW = dYᵀ · X
                func weightGrad() {
                    gw = Tensor(
                        shape: w.shape,
                        uninitialized: { dst in
                            x.scalars.withUnsafeBufferPointer { px in
                                sgemm(
                                    transA: true, transB: false, m: outF, n: inF, k: rows,
                                    a: pg.baseAddress!, b: px.baseAddress!, c: dst.baseAddress!)
                            }
                        })
                }
                if x.requiresGrad { inputGrad() }
                if w.requiresGrad { weightGrad() }
                if let bias, bias.requiresGrad {
                    gb = Tensor(
                        shape: [outF],
                        uninitialized: { dst in
                            dst.initialize(repeating: 0)
                            let d = dst.baseAddress!
                            for r in 0..<rows {
                                let row = pg.baseAddress! + r * outF
                                for j in 0..<outF { d[j] += row[j] }
                            }
                        })
                }
            }
            return [gx, gw, gb]
        }
    }
}
