import CGradGuardKernels

/// A right-hand GEMM operand packed once into 16-column panels, for products repeated with
/// the same matrix: the recurrent weight of an RNN is multiplied once per time step, and
/// OpenBLAS would re-pack it on every call. Used only where the AVX2/FMA kernel runs.
struct PackedOperand {
    let k: Int, n: Int
    private let data: [Float]

    /// Packs op(B), K × N: `b` is N × K (`transB`) or K × N, row-major with leading dimension `ldb`.
    init(_ b: UnsafePointer<Float>, ldb: Int, transB: Bool, k: Int, n: Int) {
        self.k = k
        self.n = n
        let size = gg_packed_size(k, n)
        data = [Float](unsafeUninitializedCapacity: size) { buf, count in
            gg_pack_b(b, ldb, transB ? 1 : 0, k, n, buf.baseAddress!)
            count = size
        }
    }

    /// C (m × n, leading dimension ldc) = or += A (m × k, leading dimension lda) · op(B),
    /// its panels split over the worker threads when the product is large enough.
    func multiply(_ a: UnsafePointer<Float>, lda: Int, m: Int, into c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        let panels = (n + 15) / 16
        data.withUnsafeBufferPointer { p in
            let packed = p.baseAddress!
            let workers = m * n * k >= 1 << 17 ? Swift.min(Kernels.threadCount, panels) : 1
            if workers <= 1 {
                gg_gemm_packed_avx2(m, k, a, lda, packed, 0, panels, n, c, ldc, accumulate ? 1 : 0)
                return
            }
            parallelFor(workers, grain: 1) { range in
                for w in range {
                    gg_gemm_packed_avx2(m, k, a, lda, packed, panels * w / workers, panels * (w + 1) / workers, n, c, ldc,
                                        accumulate ? 1 : 0)
                }
            }
        }
    }
}

/// The per-step product of a recurrent layer, C (m × n) = or += A (m × k) · op(W): through
/// a packed copy of W and the AVX2 kernel where it runs, else through OpenBLAS. A and C are
/// row-major with leading dimensions k and n.
struct StepProduct {
    private let packed: PackedOperand?
    private let w: UnsafePointer<Float>
    private let transB: Bool
    let k: Int, n: Int

    /// `w` is n × k (`transB`) or k × n, row-major, and must outlive this value.
    init(_ w: UnsafePointer<Float>, transB: Bool, k: Int, n: Int) {
        self.w = w
        self.transB = transB
        self.k = k
        self.n = n
        packed = VectorMath.hasAVX2 ? PackedOperand(w, ldb: transB ? k : n, transB: transB, k: k, n: n) : nil
    }

    func apply(_ a: UnsafePointer<Float>, m: Int, into c: UnsafeMutablePointer<Float>, accumulate: Bool) {
        if let packed {
            packed.multiply(a, lda: k, m: m, into: c, ldc: n, accumulate: accumulate)
        } else {
            sgemm(transA: false, transB: transB, m: m, n: n, k: k, a: a, b: w, beta: accumulate ? 1 : 0, c: c)
        }
    }
}
