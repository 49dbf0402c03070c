import CGradGuardKernels

// MARK: - Fused recurrent layers (RNN, LSTM, GRU)
//
// One layer over a whole time-major sequence is one op on the tape: a single GEMM for the
// input projection of every step, one GEMM per step for the recurrence, the gate
// non-linearities applied in place with the vectorised kernels, and in backward one GEMM
// per step for the hidden gradient plus three GEMMs over the whole sequence for the
// weight and input gradients. Gate orders and equations are PyTorch's:
//
//   RNN   h' = act(W_ih x + b_ih + W_hh h + b_hh)
//   LSTM  i, f, g, o = σ, σ, tanh, σ of (W_ih x + b_ih + W_hh h + b_hh);  c' = f c + i g;  h' = o tanh(c')
//   GRU   r, z = σ(W_i{r,z} x + b_i{r,z} + W_h{r,z} h + b_h{r,z})
//         n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn));  h' = (1 − z) n + z h

/// The cell of a recurrent layer.
public enum RecurrentKind: Sendable, Equatable {
    case rnnTanh, rnnRelu, lstm, gru

    /// Rows of `weight_ih` per hidden unit (gates).
    public var gateCount: Int {
        switch self {
        case .rnnTanh, .rnnRelu: return 1
        case .lstm: return 4
        case .gru: return 3
        }
    }
}

extension Tensor {
    /// Runs one recurrent layer over `x` `[T, B, I]` from `h0` `[B, H]` (and `c0` for LSTM).
    /// Returns `[T, B, H]` outputs, with for LSTM one more row `[T]` holding the final cell
    /// state; the final hidden state is row `T − 1`.
    public static func recurrentLayer(
        _ kind: RecurrentKind, x: Tensor, h0: Tensor, c0: Tensor?,
        weightIH: Tensor, weightHH: Tensor, biasIH: Tensor?, biasHH: Tensor?
    ) -> Tensor {
        require(x.rank == 3, "recurrent layer: input must be [T, B, I], got \(x.shape)")
        let (steps, batch, inSize) = (x.shape[0], x.shape[1], x.shape[2])
        let hidden = weightHH.shape[1], gw = kind.gateCount * hidden
        require(
            weightIH.shape == [gw, inSize] && weightHH.shape == [gw, hidden],
            "recurrent layer: weights \(weightIH.shape), \(weightHH.shape) do not fit input size \(inSize), hidden size \(hidden)")
        require(h0.shape == [batch, hidden], "recurrent layer: initial hidden state \(h0.shape) is not [\(batch), \(hidden)]")
        require(kind != .lstm || c0?.shape == [batch, hidden], "LSTM: initial cell state must be [\(batch), \(hidden)]")
        let isGRU = kind == .gru, isLSTM = kind == .lstm
        let bh = batch * hidden

        // Input projection of every step: gi = x · W_ihᵀ + b_ih (+ b_hh except for GRU). When x
        // is a lookup in a small table, the table's rows are projected once and gathered.
        let fold =
            x.hooks.isEmpty && Autograd.context.anomaly == nil
            ? x.rowSource.flatMap { $0.indices.count == steps * batch && $0.values.count == $0.rows * inSize ? $0 : nil } : nil
        var rowBias = biasIH?.scalars ?? [Float](repeating: 0, count: gw)
        if !isGRU, let bhh = biasHH { for k in 0..<gw { rowBias[k] += bhh.scalars[k] } }
        /// `rows` rows of `a` (`rows × inSize`) times W_ihᵀ plus the bias rows.
        func project(_ a: [Float], rows: Int) -> [Float] {
            [Float](unsafeUninitializedCapacity: rows * gw) { g, count in
                let base = g.baseAddress!
                rowBias.withUnsafeBufferPointer { rb in
                    for r in 0..<rows { (base + r * gw).update(from: rb.baseAddress!, count: gw) }
                }
                a.withUnsafeBufferPointer { px in
                    weightIH.scalars.withUnsafeBufferPointer { pw in
                        if rows > 0 {
                            sgemm(
                                transA: false, transB: true, m: rows, n: gw, k: inSize,
                                a: px.baseAddress!, b: pw.baseAddress!, beta: 1, c: base)
                        }
                    }
                }
                count = rows * gw
            }
        }
        var gi: [Float]
        if let fold {
            let table = project(fold.values, rows: fold.rows)
            gi = [Float](unsafeUninitializedCapacity: steps * batch * gw) { g, count in
                let base = g.baseAddress!
                table.withUnsafeBufferPointer { tb in
                    fold.indices.withUnsafeBufferPointer { idx in
                        parallelFor(steps * batch, grain: 64) { range in
                            for r in range { (base + r * gw).update(from: tb.baseAddress! + idx[r] * gw, count: gw) }
                        }
                    }
                }
                count = steps * batch * gw
            }
        } else {
            gi = project(x.scalars, rows: steps * batch)
        }
        var hs = [Float](repeating: 0, count: (steps + 1) * bh)  // hs[t+1] = h_t, hs[0] = h0
        var cs = [Float](repeating: 0, count: isLSTM ? (steps + 1) * bh : 0)
        var tcs = [Float](repeating: 0, count: isLSTM ? steps * bh : 0)  // tanh(c_t)
        var acts = [Float](repeating: 0, count: isGRU ? steps * batch * gw : 0)  // GRU r, z, n
        var ghn = [Float](repeating: 0, count: isGRU ? steps * bh : 0)  // GRU W_hn h + b_hn
        for k in 0..<bh { hs[k] = h0.scalars[k] }
        if isLSTM, let c0 { for k in 0..<bh { cs[k] = c0.scalars[k] } }
        let bhhValues = biasHH?.scalars ?? [Float](repeating: 0, count: gw)

        gi.withUnsafeMutableBufferPointer { g in
            hs.withUnsafeMutableBufferPointer { h in
                cs.withUnsafeMutableBufferPointer { c in
                    tcs.withUnsafeMutableBufferPointer { tc in
                        acts.withUnsafeMutableBufferPointer { a in
                            ghn.withUnsafeMutableBufferPointer { hn in
                                weightHH.scalars.withUnsafeBufferPointer { whh in
                                    // h · W_hhᵀ, with the recurrent weight packed once for all steps where the kernel runs.
                                    let recurrence = StepProduct(whh.baseAddress!, transB: true, k: hidden, n: gw, packable: hidden % 16 == 0)
                                    let blocks = UnitBlocks(hidden: hidden, aligned: recurrence.isPacked, work: batch * gw * hidden)
                                    var gh = [Float](repeating: 0, count: batch * gw)
                                    gh.withUnsafeMutableBufferPointer { ghb in
                                        let ghp = ghb.baseAddress!, g = g.baseAddress!, h = h.baseAddress!, c = c.baseAddress, tc = tc.baseAddress
                                        let a = a.baseAddress, hn = hn.baseAddress
                                        // Each step is one phase; each block of hidden units one chunk of it: that block's
                                        // columns of every gate in the product, then its gate arithmetic.
                                        runPhases(steps, chunks: blocks.count) { t, chunk in
                                            let units = blocks[chunk], lo = units.lowerBound, len = units.count
                                            let pre = g + t * batch * gw
                                            let hPrev = h + t * bh, hNext = h + (t + 1) * bh
                                            if isGRU {
                                                let a = a!, hn = hn!
                                                bhhValues.withUnsafeBufferPointer { bb in
                                                    for b in 0..<batch {
                                                        for q in 0..<3 {
                                                            (ghp + b * gw + q * hidden + lo).update(from: bb.baseAddress! + q * hidden + lo, count: len)
                                                        }
                                                    }
                                                }
                                                blocks.product(recurrence, hPrev, m: batch, units: units, into: ghp)
                                                for b in 0..<batch {
                                                    // Per-gate pointers at this block's first unit: loops without index arithmetic, which vectorise.
                                                    let giR = pre + b * gw + lo, giZ = giR + hidden, giN = giZ + hidden
                                                    let ghR = ghp + b * gw + lo, ghZ = ghR + hidden, ghN = ghZ + hidden
                                                    let r = a + t * batch * gw + b * gw + lo, z = r + hidden, n = z + hidden
                                                    let hnRow = hn + t * bh + b * hidden + lo
                                                    let hp = hPrev + b * hidden + lo, ho = hNext + b * hidden + lo
                                                    for k in 0..<len { r[k] = giR[k] + ghR[k]; z[k] = giZ[k] + ghZ[k] }
                                                    VectorMath.apply(r, len, .sigmoid)
                                                    VectorMath.apply(z, len, .sigmoid)
                                                    for k in 0..<len {
                                                        hnRow[k] = ghN[k]
                                                        n[k] = giN[k] + r[k] * ghN[k]
                                                    }
                                                    VectorMath.apply(n, len, .tanh)
                                                    for k in 0..<len { ho[k] = (1 - z[k]) * n[k] + z[k] * hp[k] }
                                                }
                                                return
                                            }
                                            // pre += h_{t-1} · W_hhᵀ
                                            blocks.product(recurrence, hPrev, m: batch, units: units, into: pre)
                                            switch kind {
                                            case .rnnTanh, .rnnRelu:
                                                for b in 0..<batch {
                                                    let row = pre + b * hidden + lo, ho = hNext + b * hidden + lo
                                                    if kind == .rnnTanh {
                                                        VectorMath.apply(row, len, .tanh)
                                                    } else {
                                                        for k in 0..<len { row[k] = Swift.max(row[k], 0) }
                                                    }
                                                    ho.update(from: row, count: len)
                                                }
                                            case .lstm:
                                                let c = c!, tc = tc!
                                                let level = Kernels.level
                                                for b in 0..<batch {
                                                    // One pointer per gate at this block's first unit, so the loops carry no
                                                    // index arithmetic and vectorise.
                                                    let ig = pre + b * gw + lo, fg = ig + hidden, gg = fg + hidden, og = gg + hidden
                                                    let cPrev = c + t * bh + b * hidden + lo, cNext = c + (t + 1) * bh + b * hidden + lo
                                                    let tcp = tc + t * bh + b * hidden + lo, hRow = hNext + b * hidden + lo
                                                    if level > .portable {
                                                        gg_lstm_forward(level.cValue, ig, fg, gg, og, cPrev, cNext, tcp, hRow, len)
                                                        continue
                                                    }
                                                    VectorMath.apply(ig, len, .sigmoid)
                                                    VectorMath.apply(fg, len, .sigmoid)
                                                    VectorMath.apply(gg, len, .tanh)
                                                    VectorMath.apply(og, len, .sigmoid)
                                                    var k = 0
                                                    while k + 8 <= len {
                                                        let v =
                                                            VectorMath.load(fg, k) * VectorMath.load(cPrev, k) + VectorMath.load(ig, k) * VectorMath.load(gg, k)
                                                        VectorMath.store(cNext, k, v)
                                                        k += 8
                                                    }
                                                    while k < len { cNext[k] = fg[k] * cPrev[k] + ig[k] * gg[k]; k += 1 }
                                                    VectorMath.apply(
                                                        UnsafeBufferPointer(start: cNext, count: len),
                                                        UnsafeMutableBufferPointer(start: tcp, count: len), 0..<len, .tanh)
                                                    k = 0
                                                    while k + 8 <= len { VectorMath.store(hRow, k, VectorMath.load(og, k) * VectorMath.load(tcp, k)); k += 8 }
                                                    while k < len { hRow[k] = og[k] * tcp[k]; k += 1 }
                                                }
                                            case .gru: break
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }

        let outRows = isLSTM ? steps + 1 : steps
        let out = Tensor(
            shape: [outRows, batch, hidden],
            uninitialized: { dst in
                hs.withUnsafeBufferPointer { dst.baseAddress!.update(from: $0.baseAddress! + bh, count: steps * bh) }
                if isLSTM { cs.withUnsafeBufferPointer { (dst.baseAddress! + steps * bh).update(from: $0.baseAddress! + steps * bh, count: bh) } }
            })
        // With the fold, the gradient goes to the table itself rather than through the lookup.
        var inputs = [fold?.table ?? x, h0]
        if isLSTM, let c0 { inputs.append(c0) }
        inputs += [weightIH, weightHH]
        if let biasIH { inputs.append(biasIH) }
        if let biasHH { inputs.append(biasHH) }
        let savedActs = isGRU ? acts : gi  // post-activation gates
        return record(kindLabel(kind), out, inputs) { dOut in
            recurrentBackward(
                kind, dOut: dOut, x: x, fold: fold, weightIH: weightIH, weightHH: weightHH,
                hasBiasIH: biasIH != nil, hasBiasHH: biasHH != nil, hasC0: isLSTM && c0 != nil,
                acts: savedActs, hs: hs, cs: cs, tcs: tcs, ghn: ghn)
        }
    }

    static func kindLabel(_ kind: RecurrentKind) -> String {
        switch kind {
        case .rnnTanh: return "rnnTanh"
        case .rnnRelu: return "rnnRelu"
        case .lstm: return "lstm"
        case .gru: return "gru"
        }
    }

    private static func recurrentBackward(
        _ kind: RecurrentKind, dOut: Tensor, x: Tensor, fold: RowSource?,
        weightIH: Tensor, weightHH: Tensor,
        hasBiasIH: Bool, hasBiasHH: Bool, hasC0: Bool,
        acts: [Float], hs: [Float], cs: [Float], tcs: [Float], ghn: [Float]
    ) -> [Tensor?] {
        let (steps, batch, inSize) = (x.shape[0], x.shape[1], x.shape[2])
        let hidden = weightHH.shape[1], gw = kind.gateCount * hidden, bh = batch * hidden
        let isGRU = kind == .gru, isLSTM = kind == .lstm
        // Gradients of the gate pre-activations: for the input side and the hidden side
        // (they differ only for GRU's n gate).
        var dGi = [Float](repeating: 0, count: steps * batch * gw)
        var dGh = [Float](repeating: 0, count: isGRU ? steps * batch * gw : 0)
        var dhNext = [Float](repeating: 0, count: bh)
        var dcNext = [Float](repeating: 0, count: isLSTM ? bh : 0)
        if isLSTM { for k in 0..<bh { dcNext[k] = dOut.scalars[steps * bh + k] } }
        var dh = [Float](repeating: 0, count: bh)
        dOut.scalars.withUnsafeBufferPointer { dOb in
            dGi.withUnsafeMutableBufferPointer { dgib in
                dGh.withUnsafeMutableBufferPointer { dghb in
                    dhNext.withUnsafeMutableBufferPointer { dnb in
                        dcNext.withUnsafeMutableBufferPointer { dcb in
                            dh.withUnsafeMutableBufferPointer { dhb in
                                acts.withUnsafeBufferPointer { ab in
                                    hs.withUnsafeBufferPointer { hsb in
                                        cs.withUnsafeBufferPointer { csb in
                                            tcs.withUnsafeBufferPointer { tcb in
                                                ghn.withUnsafeBufferPointer { gnb in
                                                    weightHH.scalars.withUnsafeBufferPointer { whh in
                                                        // dG_h · W_hh (W_hh is gw × hidden), packed once for all steps where the kernel runs.
                                                        let recurrence = StepProduct(
                                                            whh.baseAddress!, transB: false, k: gw, n: hidden, packable: hidden % 16 == 0)
                                                        let blocks = UnitBlocks(hidden: hidden, aligned: recurrence.isPacked, work: batch * gw * hidden)
                                                        // Raw pointers: the loops below run T·B·H times and must vectorise.
                                                        let dO = dOb.baseAddress!, dgi = dgib.baseAddress!, dhNext = dnb.baseAddress!, dh = dhb.baseAddress!
                                                        let dgh = dghb.baseAddress, dcNext = dcb.baseAddress
                                                        let acts = ab.baseAddress!, hs = hsb.baseAddress!, cs = csb.baseAddress, tcs = tcb.baseAddress,
                                                            ghn = gnb.baseAddress
                                                        // Phase p finishes dh_{T−p} = dG[T−p] · W_hh for its block of units (p > 0), then runs
                                                        // the gate backward of step T−1−p for the same units (p < T). The last phase leaves
                                                        // the gradient of h0 in dhNext.
                                                        runPhases(steps + 1, chunks: blocks.count) { p, chunk in
                                                            let units = blocks[chunk], lo = units.lowerBound, len = units.count
                                                            if p > 0 {
                                                                // dh_{t-1} (+)= dG_h[t] · W_hh; GRU's direct path z ⊙ dh is already in dhNext.
                                                                let base = (steps - p) * batch * gw
                                                                blocks.product(
                                                                    recurrence, isGRU ? dgh! + base : dgi + base, m: batch, units: units, into: dhNext,
                                                                    accumulate: isGRU)
                                                            }
                                                            guard p < steps else { return }
                                                            let t = steps - 1 - p
                                                            let dOt = dO + t * bh
                                                            let base = t * batch * gw
                                                            let level = Kernels.level
                                                            if isLSTM && level > .portable {
                                                                // dh = dO + dhNext is formed inside the fused kernel.
                                                                let cs = cs!, tcs = tcs!, dcNext = dcNext!
                                                                for b in 0..<batch {
                                                                    let ai = acts + base + b * gw + lo, di = dgi + base + b * gw + lo
                                                                    let o = b * hidden + lo
                                                                    gg_lstm_backward(
                                                                        level.cValue, ai, ai + hidden, ai + 2 * hidden, ai + 3 * hidden, tcs + t * bh + o,
                                                                        cs + t * bh + o,
                                                                        dOt + o, dhNext + o, dcNext + o, di, di + hidden, di + 2 * hidden, di + 3 * hidden, len)
                                                                }
                                                                return
                                                            }
                                                            for b in 0..<batch {
                                                                let o = b * hidden + lo
                                                                for k in 0..<len { dh[o + k] = dOt[o + k] + dhNext[o + k] }
                                                            }
                                                            switch kind {
                                                            case .rnnTanh, .rnnRelu:
                                                                for b in 0..<batch {
                                                                    let o = b * hidden + lo
                                                                    let y = hs + (t + 1) * bh + o, d = dgi + base + o, dhv = dh + o
                                                                    if kind == .rnnTanh {
                                                                        for k in 0..<len { d[k] = dhv[k] * (1 - y[k] * y[k]) }
                                                                    } else {
                                                                        for k in 0..<len { d[k] = y[k] > 0 ? dhv[k] : 0 }
                                                                    }
                                                                }
                                                            case .lstm:
                                                                let cs = cs!, tcs = tcs!, dcNext = dcNext!
                                                                for b in 0..<batch {
                                                                    let ai = acts + base + b * gw + lo, af = ai + hidden, ag = af + hidden, ao = ag + hidden
                                                                    let di = dgi + base + b * gw + lo, df = di + hidden, dg = df + hidden, dO = dg + hidden
                                                                    let tc = tcs + t * bh + b * hidden + lo, cPrev = cs + t * bh + b * hidden + lo
                                                                    let dhv = dh + b * hidden + lo, dcv = dcNext + b * hidden + lo
                                                                    // Eight hidden units at a time (the pointers may alias as far as the
                                                                    // compiler knows, so it would not vectorise this loop itself).
                                                                    @inline(__always) func ld(_ p: UnsafePointer<Float>, _ k: Int) -> F8 {
                                                                        VectorMath.load(p, k)
                                                                    }
                                                                    @inline(__always) func ld(_ p: UnsafeMutablePointer<Float>, _ k: Int) -> F8 {
                                                                        VectorMath.load(p, k)
                                                                    }
                                                                    @inline(__always) func st(_ p: UnsafeMutablePointer<Float>, _ k: Int, _ v: F8) {
                                                                        VectorMath.store(p, k, v)
                                                                    }
                                                                    var k = 0
                                                                    while k + 8 <= len {
                                                                        let i = ld(ai, k), f = ld(af, k), g = ld(ag, k), o = ld(ao, k)
                                                                        let tck = ld(tc, k), dhk = ld(dhv, k)
                                                                        let dc = ld(dcv, k) + dhk * o * (1 - tck * tck)
                                                                        st(di, k, dc * g * i * (1 - i))
                                                                        st(df, k, dc * ld(cPrev, k) * f * (1 - f))
                                                                        st(dg, k, dc * i * (1 - g * g))
                                                                        st(dO, k, dhk * tck * o * (1 - o))
                                                                        st(dcv, k, dc * f)
                                                                        k += 8
                                                                    }
                                                                    while k < len {
                                                                        let i = ai[k], f = af[k], g = ag[k], o = ao[k]
                                                                        let dc = dcv[k] + dhv[k] * o * (1 - tc[k] * tc[k])
                                                                        di[k] = dc * g * i * (1 - i)
                                                                        df[k] = dc * cPrev[k] * f * (1 - f)
                                                                        dg[k] = dc * i * (1 - g * g)
                                                                        dO[k] = dhv[k] * tc[k] * o * (1 - o)
                                                                        dcv[k] = dc * f
                                                                        k += 1
                                                                    }
                                                                }
                                                            case .gru:
                                                                let dgh = dgh!, ghn = ghn!
                                                                for b in 0..<batch {
                                                                    // Per-gate pointers at this block's first unit: loops without index arithmetic.
                                                                    let r = acts + base + b * gw + lo, z = r + hidden, n = z + hidden
                                                                    let dr = dgi + base + b * gw + lo, dz = dr + hidden, dn = dz + hidden
                                                                    let hr = dgh + base + b * gw + lo, hz = hr + hidden, hnn = hz + hidden
                                                                    let hPrev = hs + t * bh + b * hidden + lo, hn = ghn + t * bh + b * hidden + lo
                                                                    let dhv = dh + b * hidden + lo, dNext = dhNext + b * hidden + lo
                                                                    for k in 0..<len {
                                                                        let rk = r[k], zk = z[k], nk = n[k], dhk = dhv[k]
                                                                        let dnp = dhk * (1 - zk) * (1 - nk * nk)
                                                                        let drp = dnp * hn[k] * rk * (1 - rk)
                                                                        let dzp = dhk * (hPrev[k] - nk) * zk * (1 - zk)
                                                                        dr[k] = drp; dz[k] = dzp; dn[k] = dnp
                                                                        hr[k] = drp; hz[k] = dzp; hnn[k] = dnp * rk
                                                                        dNext[k] = dhk * zk  // the direct path; the next phase's product adds the rest
                                                                    }
                                                                }
                                                            }
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let rows = steps * batch
        let dHidden = isGRU ? dGh : dGi
        func columnSums(_ m: [Float]) -> Tensor {
            Tensor(
                shape: [gw],
                uninitialized: { dst in
                    dst.initialize(repeating: 0)
                    let d = dst.baseAddress!
                    m.withUnsafeBufferPointer { mb in
                        for r in 0..<(m.count / gw) {
                            let row = mb.baseAddress! + r * gw
                            for k in 0..<gw { d[k] += row[k] }
                        }
                    }
                })
        }
        // With the fold: the gate gradients summed per table row, dP[v] = Σ_{r: index r = v} dG_i[r].
        var dProj: [Float] = []
        if let fold {
            dProj = [Float](repeating: 0, count: fold.rows * gw)
            dProj.withUnsafeMutableBufferPointer { dp in
                dGi.withUnsafeBufferPointer { d in
                    fold.indices.withUnsafeBufferPointer { idx in
                        // Each worker owns a band of gate columns, so no two add into the same value.
                        parallelFor(gw, grain: 128) { cols in
                            let lo = cols.lowerBound, n = cols.count
                            for r in 0..<rows {
                                let src = d.baseAddress! + r * gw + lo, dst = dp.baseAddress! + idx[r] * gw + lo
                                for k in 0..<n { dst[k] += src[k] }
                            }
                        }
                    }
                }
            }
        }
        var grads: [Tensor?] = []
        if let fold {
            // The table: dP · W_ih.
            grads.append(
                fold.table.requiresGrad
                    ? Tensor(
                        shape: fold.table.shape,
                        uninitialized: { dst in
                            dProj.withUnsafeBufferPointer { d in
                                weightIH.scalars.withUnsafeBufferPointer { w in
                                    sgemm(
                                        transA: false, transB: false, m: fold.rows, n: inSize, k: gw, a: d.baseAddress!, b: w.baseAddress!, c: dst.baseAddress!)
                                }
                            }
                        }) : nil)
        } else {
            // x
            grads.append(
                x.requiresGrad
                    ? Tensor(
                        shape: x.shape,
                        uninitialized: { dst in
                            dGi.withUnsafeBufferPointer { d in
                                weightIH.scalars.withUnsafeBufferPointer { w in
                                    if rows > 0 {
                                        sgemm(
                                            transA: false, transB: false, m: rows, n: inSize, k: gw, a: d.baseAddress!, b: w.baseAddress!, c: dst.baseAddress!)
                                    }
                                }
                            }
                        }) : nil)
        }
        grads.append(Tensor(shape: [batch, hidden], scalars: dhNext))  // h0
        if hasC0 { grads.append(Tensor(shape: [batch, hidden], scalars: dcNext)) }  // c0
        // Weight and bias gradients. Except for GRU, whose hidden-side gradient differs, the
        // three come out of one product dG_iᵀ · [x | h_{t-1} | 1]: one pass over dG_i instead of
        // three (the bias gradient, a column sum, is the product with the column of ones).
        var fusedWeights: (ih: Tensor, hh: Tensor, bias: Tensor)? = nil
        if fold == nil && !isGRU && weightIH.requiresGrad && weightHH.requiresGrad && rows > 0 {
            let wide = inSize + hidden + 1
            var rhs = [Float](unsafeUninitializedCapacity: rows * wide) { buf, count in
                let b = buf.baseAddress!
                x.scalars.withUnsafeBufferPointer { px in
                    hs.withUnsafeBufferPointer { h in  // row r of hs is h_{t-1} of row r = t·B + b
                        parallelFor(rows, grain: 256) { range in
                            for r in range {
                                let row = b + r * wide
                                row.update(from: px.baseAddress! + r * inSize, count: inSize)
                                (row + inSize).update(from: h.baseAddress! + r * hidden, count: hidden)
                                row[inSize + hidden] = 1
                            }
                        }
                    }
                }
                count = rows * wide
            }
            var product = [Float](unsafeUninitializedCapacity: gw * wide) { buf, count in
                dGi.withUnsafeBufferPointer { d in
                    rhs.withUnsafeBufferPointer { r in
                        sgemm(transA: true, transB: false, m: gw, n: wide, k: rows, a: d.baseAddress!, b: r.baseAddress!, c: buf.baseAddress!)
                    }
                }
                count = gw * wide
            }
            rhs = []
            fusedWeights = product.withUnsafeBufferPointer { pr in
                func columns(_ lo: Int, _ n: Int, shape: [Int]) -> Tensor {
                    Tensor(
                        shape: shape,
                        uninitialized: { dst in
                            for g in 0..<gw { (dst.baseAddress! + g * n).update(from: pr.baseAddress! + g * wide + lo, count: n) }
                        })
                }
                return (
                    columns(0, inSize, shape: weightIH.shape), columns(inSize, hidden, shape: weightHH.shape),
                    columns(inSize + hidden, 1, shape: [gw])
                )
            }
            product = []
        }
        // dW_ih = dG_iᵀ · x, or with the fold dPᵀ · table: the same sum grouped by table row.
        let (ihLeft, ihRight, ihRows) = fold.map { (dProj, $0.values, $0.rows) } ?? (dGi, x.scalars, rows)
        grads.append(
            weightIH.requiresGrad
                ? fusedWeights?.ih
                    ?? Tensor(
                        shape: weightIH.shape,
                        uninitialized: { dst in
                            ihLeft.withUnsafeBufferPointer { d in
                                ihRight.withUnsafeBufferPointer { px in
                                    if ihRows > 0 {
                                        sgemm(
                                            transA: true, transB: false, m: gw, n: inSize, k: ihRows, a: d.baseAddress!, b: px.baseAddress!, c: dst.baseAddress!
                                        )
                                    } else {
                                        dst.initialize(repeating: 0)
                                    }
                                }
                            }
                        }) : nil)
        grads.append(
            weightHH.requiresGrad
                ? fusedWeights?.hh
                    ?? Tensor(
                        shape: weightHH.shape,
                        uninitialized: { dst in
                            dHidden.withUnsafeBufferPointer { d in
                                hs.withUnsafeBufferPointer { h in  // h_{t-1} for every step: hs[0 ..< T]
                                    if rows > 0 {
                                        sgemm(transA: true, transB: false, m: gw, n: hidden, k: rows, a: d.baseAddress!, b: h.baseAddress!, c: dst.baseAddress!)
                                    } else {
                                        dst.initialize(repeating: 0)
                                    }
                                }
                            }
                        }) : nil)
        // The two biases enter every gate alike except GRU's n gate: one sum serves both otherwise.
        let biasIHGrad = hasBiasIH || (hasBiasHH && !isGRU) ? fusedWeights?.bias ?? columnSums(fold == nil ? dGi : dProj) : nil
        if hasBiasIH { grads.append(biasIHGrad) }
        if hasBiasHH { grads.append(isGRU ? columnSums(dGh) : biasIHGrad!.copy()) }
        return grads
    }
}
