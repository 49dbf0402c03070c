import CGradGuardKernels

/// A right-hand GEMM operand packed once into 16-column panels, for products repeated with
/// the same matrix: the recurrent weight of an RNN is multiplied once per time step, and
/// OpenBLAS would re-pack it on every call. Used only where a vector kernel runs (AVX2 or AVX-512).
struct PackedOperand {
    let k: Int, n: Int
    private let data: [Float]
    private let level: KernelLevel

    /// Packs op(B), K × N: `b` is N × K (`transB`) or K × N, row-major with leading dimension `ldb`.
    init(_ b: UnsafePointer<Float>, ldb: Int, transB: Bool, k: Int, n: Int, level: KernelLevel) {
        self.k = k
        self.n = n
        self.level = level
        let size = gg_packed_size(k, n)
        let panels = (n + 15) / 16
        data = [Float](unsafeUninitializedCapacity: size) { buf, count in
            let packed = buf.baseAddress!
            parallelFor(panels, grain: Swift.max(1, (1 << 16) / Swift.max(16 * k, 1))) { range in
                gg_pack_b_panels(b, ldb, transB ? 1 : 0, k, n, range.lowerBound, range.upperBound, packed)
            }
            count = size
        }
    }

    /// The columns `panels.lowerBound·16 ..< min(panels.upperBound·16, n)` of the product, on
    /// the calling thread.
    func multiply(
        _ a: UnsafePointer<Float>, lda: Int, m: Int, panels: Range<Int>, into c: UnsafeMutablePointer<Float>,
        ldc: Int, accumulate: Bool
    ) {
        data.withUnsafeBufferPointer { p in
            gg_gemm_packed(level.cValue, m, k, a, lda, p.baseAddress!, panels.lowerBound, panels.upperBound, n, c, ldc, accumulate ? 1 : 0)
        }
    }
}

/// The per-step product of a recurrent layer, C (m × n) = or += A (m × k) · op(W): through
/// a packed copy of W and the vector kernel where one runs, else through OpenBLAS. A and C are
/// row-major with leading dimensions k and n.
struct StepProduct {
    private let packed: PackedOperand?
    private let w: UnsafePointer<Float>
    private let transB: Bool
    let k: Int, n: Int

    /// `w` is n × k (`transB`) or k × n, row-major, and must outlive this value. With
    /// `packable` false OpenBLAS runs even where the packed kernel could.
    init(_ w: UnsafePointer<Float>, transB: Bool, k: Int, n: Int, packable: Bool = true) {
        self.w = w
        self.transB = transB
        self.k = k
        self.n = n
        _ = BLASThreads.splitHere  // OpenBLAS single-threaded before any call from a worker
        let level = Kernels.level
        packed =
            level > .portable && packable
            ? PackedOperand(w, ldb: transB ? k : n, transB: transB, k: k, n: n, level: level) : nil
    }

    /// Whether the packed kernel runs: column blocks handed to `apply(_:m:columns:into:accumulate:)`
    /// must then start and end on multiples of 16 (or at n).
    var isPacked: Bool { packed != nil }

    /// The columns `columns` of C, on the calling thread (the whole product is `0..<n`).
    func apply(_ a: UnsafePointer<Float>, m: Int, columns: Range<Int>, into c: UnsafeMutablePointer<Float>, accumulate: Bool) {
        guard !columns.isEmpty, m > 0 else { return }
        if let packed {
            require(
                columns.lowerBound % 16 == 0 && (columns.upperBound % 16 == 0 || columns.upperBound == n),
                "StepProduct: column block \(columns) is not aligned to the packed panels")
            packed.multiply(
                a, lda: k, m: m, panels: (columns.lowerBound / 16)..<((columns.upperBound + 15) / 16),
                into: c, ldc: n, accumulate: accumulate)
        } else {
            // Columns j of op(W): rows j of W (n × k) when transposed, else columns j of W (k × n).
            let wBlock = transB ? w + columns.lowerBound * k : w + columns.lowerBound
            gg_blas_sgemm(
                0, transB ? 1 : 0, Int32(m), Int32(columns.count), Int32(k),
                1, a, Int32(k), wBlock, Int32(transB ? k : n), accumulate ? 1 : 0, c + columns.lowerBound, Int32(n))
        }
    }
}

/// The hidden units of a recurrent layer split into blocks, one per worker, for the steps of
/// `runPhases`: a block owns its units' columns in every gate, so it can run its share of
/// the per-step product and then its gate arithmetic without waiting for the other blocks.
struct UnitBlocks {
    private let bounds: [Int]
    let hidden: Int

    /// `aligned`: block edges on multiples of 16 (the packed kernel's panels). Small steps
    /// (`work` multiply-adds) stay in one block: threads would cost more than they save.
    init(hidden: Int, aligned: Bool, work: Int) {
        self.hidden = hidden
        let quantum = aligned ? 16 : 8
        let quanta = hidden / quantum
        var count = work >= 1 << 17 ? Swift.min(Kernels.threadCount, quanta) : 1
        if aligned && hidden % 16 != 0 { count = 1 }
        count = Swift.max(count, 1)
        bounds = (0...count).map { i in i == count ? hidden : (quanta * i / count) * quantum }
    }

    var count: Int { bounds.count - 1 }
    subscript(i: Int) -> Range<Int> { bounds[i]..<bounds[i + 1] }

    /// C += A · op(W) for the columns of `units` in every gate (all columns at once when the
    /// block is the whole layer).
    func product(
        _ op: StepProduct, _ a: UnsafePointer<Float>, m: Int, units: Range<Int>, into c: UnsafeMutablePointer<Float>,
        accumulate: Bool = true
    ) {
        if units.count == hidden {
            op.apply(a, m: m, columns: 0..<op.n, into: c, accumulate: accumulate)
            return
        }
        let perGate = op.n / hidden  // gate blocks along C's columns: one per gate forward, one backward
        for q in 0..<perGate {
            op.apply(
                a, m: m, columns: (q * hidden + units.lowerBound)..<(q * hidden + units.upperBound), into: c,
                accumulate: accumulate)
        }
    }
}
