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
    public static func recurrentLayer(_ kind: RecurrentKind, x: Tensor, h0: Tensor, c0: Tensor?,
                                      weightIH: Tensor, weightHH: Tensor, biasIH: Tensor?, biasHH: Tensor?) -> Tensor {
        precondition(x.rank == 3, "recurrent layer: input must be [T, B, I], got \(x.shape)")
        let (steps, batch, inSize) = (x.shape[0], x.shape[1], x.shape[2])
        let hidden = weightHH.shape[1], gw = kind.gateCount * hidden
        precondition(weightIH.shape == [gw, inSize] && weightHH.shape == [gw, hidden],
                     "recurrent layer: weights \(weightIH.shape), \(weightHH.shape) do not fit input size \(inSize), hidden size \(hidden)")
        precondition(h0.shape == [batch, hidden], "recurrent layer: initial hidden state \(h0.shape) is not [\(batch), \(hidden)]")
        precondition(kind != .lstm || c0?.shape == [batch, hidden], "LSTM: initial cell state must be [\(batch), \(hidden)]")
        let isGRU = kind == .gru, isLSTM = kind == .lstm
        let bh = batch * hidden

        // Input projection of every step: gi = x · W_ihᵀ + b_ih (+ b_hh except for GRU).
        var rowBias = biasIH?.scalars ?? [Float](repeating: 0, count: gw)
        if !isGRU, let bhh = biasHH { for k in 0..<gw { rowBias[k] += bhh.scalars[k] } }
        var gi = [Float](unsafeUninitializedCapacity: steps * batch * gw) { g, count in
            let base = g.baseAddress!
            rowBias.withUnsafeBufferPointer { rb in
                for r in 0..<(steps * batch) { (base + r * gw).update(from: rb.baseAddress!, count: gw) }
            }
            x.scalars.withUnsafeBufferPointer { px in
                weightIH.scalars.withUnsafeBufferPointer { pw in
                    if steps * batch > 0 {
                        sgemm(transA: false, transB: true, m: steps * batch, n: gw, k: inSize,
                              a: px.baseAddress!, b: pw.baseAddress!, beta: 1, c: base)
                    }
                }
            }
            count = steps * batch * gw
        }
        var hs = [Float](repeating: 0, count: (steps + 1) * bh)       // hs[t+1] = h_t, hs[0] = h0
        var cs = [Float](repeating: 0, count: isLSTM ? (steps + 1) * bh : 0)
        var tcs = [Float](repeating: 0, count: isLSTM ? steps * bh : 0)   // tanh(c_t)
        var acts = [Float](repeating: 0, count: isGRU ? steps * batch * gw : 0)   // GRU r, z, n
        var ghn = [Float](repeating: 0, count: isGRU ? steps * bh : 0)            // GRU W_hn h + b_hn
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
            let recurrence = StepProduct(whh.baseAddress!, transB: true, k: hidden, n: gw)
            var gh = [Float](repeating: 0, count: batch * gw)
            gh.withUnsafeMutableBufferPointer { ghp in
                for t in 0..<steps {
                    let pre = g.baseAddress! + t * batch * gw
                    let hPrev = h.baseAddress! + t * bh, hNext = h.baseAddress! + (t + 1) * bh
                    if isGRU {
                        bhhValues.withUnsafeBufferPointer { bb in
                            for b in 0..<batch { (ghp.baseAddress! + b * gw).update(from: bb.baseAddress!, count: gw) }
                        }
                        recurrence.apply(hPrev, m: batch, into: ghp.baseAddress!, accumulate: true)
                        for b in 0..<batch {
                            // Per-gate pointers: loops without index arithmetic, which vectorise.
                            let gi = pre + b * gw, gh = ghp.baseAddress! + b * gw
                            let r = a.baseAddress! + t * batch * gw + b * gw, z = r + hidden, n = z + hidden
                            let hnRow = hn.baseAddress! + t * bh + b * hidden
                            let hp = hPrev + b * hidden, ho = hNext + b * hidden
                            for k in 0..<(2 * hidden) { r[k] = gi[k] + gh[k] }
                            VectorMath.apply(UnsafeBufferPointer(start: r, count: 2 * hidden),
                                             UnsafeMutableBufferPointer(start: r, count: 2 * hidden), 0..<(2 * hidden), .sigmoid)
                            let giN = gi + 2 * hidden, ghN = gh + 2 * hidden
                            for k in 0..<hidden {
                                hnRow[k] = ghN[k]
                                n[k] = giN[k] + r[k] * ghN[k]
                            }
                            VectorMath.apply(UnsafeBufferPointer(start: n, count: hidden),
                                             UnsafeMutableBufferPointer(start: n, count: hidden), 0..<hidden, .tanh)
                            for k in 0..<hidden { ho[k] = (1 - z[k]) * n[k] + z[k] * hp[k] }
                        }
                        continue
                    }
                    // pre += h_{t-1} · W_hhᵀ
                    recurrence.apply(hPrev, m: batch, into: pre, accumulate: true)
                    let step = UnsafeMutableBufferPointer(start: pre, count: batch * gw)
                    switch kind {
                    case .rnnTanh:
                        VectorMath.apply(UnsafeBufferPointer(step), step, 0..<(batch * gw), .tanh)
                        for k in 0..<bh { hNext[k] = pre[k] }
                    case .rnnRelu:
                        for k in 0..<bh { pre[k] = Swift.max(pre[k], 0); hNext[k] = pre[k] }
                    case .lstm:
                        for b in 0..<batch {
                            let row = b * gw
                            let ifg = UnsafeMutableBufferPointer(start: pre + row, count: 2 * hidden)
                            VectorMath.apply(UnsafeBufferPointer(ifg), ifg, 0..<(2 * hidden), .sigmoid)
                            let gg = UnsafeMutableBufferPointer(start: pre + row + 2 * hidden, count: hidden)
                            VectorMath.apply(UnsafeBufferPointer(gg), gg, 0..<hidden, .tanh)
                            let oo = UnsafeMutableBufferPointer(start: pre + row + 3 * hidden, count: hidden)
                            VectorMath.apply(UnsafeBufferPointer(oo), oo, 0..<hidden, .sigmoid)
                            let cPrev = c.baseAddress! + t * bh + b * hidden, cNext = c.baseAddress! + (t + 1) * bh + b * hidden
                            // One pointer per gate, so the loops carry no index arithmetic and vectorise.
                            let ig = pre + row, fg = ig + hidden, gg2 = fg + hidden, og = gg2 + hidden
                            var k = 0
                            while k + 8 <= hidden {
                                let v = VectorMath.load(fg, k) * VectorMath.load(cPrev, k) + VectorMath.load(ig, k) * VectorMath.load(gg2, k)
                                VectorMath.store(cNext, k, v)
                                k += 8
                            }
                            while k < hidden { cNext[k] = fg[k] * cPrev[k] + ig[k] * gg2[k]; k += 1 }
                            let tcRow = UnsafeMutableBufferPointer(start: tc.baseAddress! + t * bh + b * hidden, count: hidden)
                            VectorMath.apply(UnsafeBufferPointer(start: cNext, count: hidden), tcRow, 0..<hidden, .tanh)
                            let hRow = hNext + b * hidden, tcp = tcRow.baseAddress!
                            k = 0
                            while k + 8 <= hidden { VectorMath.store(hRow, k, VectorMath.load(og, k) * VectorMath.load(tcp, k)); k += 8 }
                            while k < hidden { hRow[k] = og[k] * tcp[k]; k += 1 }
                        }
                    case .gru: break
                    }
                }
            }
        }}}}}}}

        let outRows = isLSTM ? steps + 1 : steps
        let out = Tensor(shape: [outRows, batch, hidden], uninitialized: { dst in
            hs.withUnsafeBufferPointer { dst.baseAddress!.update(from: $0.baseAddress! + bh, count: steps * bh) }
            if isLSTM { cs.withUnsafeBufferPointer { (dst.baseAddress! + steps * bh).update(from: $0.baseAddress! + steps * bh, count: bh) } }
        })
        var inputs = [x, h0]
        if isLSTM, let c0 { inputs.append(c0) }
        inputs += [weightIH, weightHH]
        if let biasIH { inputs.append(biasIH) }
        if let biasHH { inputs.append(biasHH) }
        let savedActs = isGRU ? acts : gi   // post-activation gates
        return record(kindLabel(kind), out, inputs) { dOut in
            recurrentBackward(kind, dOut: dOut, x: x, weightIH: weightIH, weightHH: weightHH,
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

    private static func recurrentBackward(_ kind: RecurrentKind, dOut: Tensor, x: Tensor, weightIH: Tensor, weightHH: Tensor,
                                          hasBiasIH: Bool, hasBiasHH: Bool, hasC0: Bool,
                                          acts: [Float], hs: [Float], cs: [Float], tcs: [Float], ghn: [Float]) -> [Tensor?] {
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
            let recurrence = StepProduct(whh.baseAddress!, transB: false, k: gw, n: hidden)
            // Raw pointers: the loops below run T·B·H times and must vectorise.
            let dO = dOb.baseAddress!, dgi = dgib.baseAddress!, dhNext = dnb.baseAddress!, dh = dhb.baseAddress!
            let dgh = dghb.baseAddress, dcNext = dcb.baseAddress
            let acts = ab.baseAddress!, hs = hsb.baseAddress!, cs = csb.baseAddress, tcs = tcb.baseAddress, ghn = gnb.baseAddress
            for t in stride(from: steps - 1, through: 0, by: -1) {
                let dOt = dO + t * bh
                for k in 0..<bh { dh[k] = dOt[k] + dhNext[k] }
                let base = t * batch * gw
                switch kind {
                case .rnnTanh:
                    let y = hs + (t + 1) * bh, d = dgi + base
                    for k in 0..<bh { d[k] = dh[k] * (1 - y[k] * y[k]) }
                case .rnnRelu:
                    let y = hs + (t + 1) * bh, d = dgi + base
                    for k in 0..<bh { d[k] = y[k] > 0 ? dh[k] : 0 }
                case .lstm:
                    let cs = cs!, tcs = tcs!, dcNext = dcNext!
                    for b in 0..<batch {
                        let ai = acts + base + b * gw, af = ai + hidden, ag = af + hidden, ao = ag + hidden
                        let di = dgi + base + b * gw, df = di + hidden, dg = df + hidden, dO = dg + hidden
                        let tc = tcs + t * bh + b * hidden, cPrev = cs + t * bh + b * hidden
                        let dhv = dh + b * hidden, dcv = dcNext + b * hidden
                        // Eight hidden units at a time (the pointers may alias as far as the
                        // compiler knows, so it would not vectorise this loop itself).
                        @inline(__always) func ld(_ p: UnsafePointer<Float>, _ k: Int) -> F8 { VectorMath.load(p, k) }
                        @inline(__always) func ld(_ p: UnsafeMutablePointer<Float>, _ k: Int) -> F8 { VectorMath.load(p, k) }
                        @inline(__always) func st(_ p: UnsafeMutablePointer<Float>, _ k: Int, _ v: F8) { VectorMath.store(p, k, v) }
                        var k = 0
                        while k + 8 <= hidden {
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
                        while k < hidden {
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
                        // Per-gate pointers: loops without index arithmetic.
                        let r = acts + base + b * gw, z = r + hidden, n = z + hidden
                        let dr = dgi + base + b * gw, dz = dr + hidden, dn = dz + hidden
                        let hr = dgh + base + b * gw, hz = hr + hidden, hnn = hz + hidden
                        let hPrev = hs + t * bh + b * hidden, hn = ghn + t * bh + b * hidden
                        let dhv = dh + b * hidden, dNext = dhNext + b * hidden
                        for k in 0..<hidden {
                            let rk = r[k], zk = z[k], nk = n[k], dhk = dhv[k]
                            let dnp = dhk * (1 - zk) * (1 - nk * nk)
                            let drp = dnp * hn[k] * rk * (1 - rk)
                            let dzp = dhk * (hPrev[k] - nk) * zk * (1 - zk)
                            dr[k] = drp; dz[k] = dzp; dn[k] = dnp
                            hr[k] = drp; hz[k] = dzp; hnn[k] = dnp * rk
                            dNext[k] = dhk * zk   // the direct path; the product below adds the rest
                        }
                    }
                }
                // dh_{t-1} (+)= dG_h[t] · W_hh
                let src = isGRU ? dgh! + base : dgi + base
                recurrence.apply(src, m: batch, into: dhNext, accumulate: isGRU)
            }
        }}}}}}}}}}}}
        let rows = steps * batch
        let dHidden = isGRU ? dGh : dGi
        func columnSums(_ m: [Float]) -> Tensor {
            Tensor(shape: [gw], uninitialized: { dst in
                dst.initialize(repeating: 0)
                let d = dst.baseAddress!
                m.withUnsafeBufferPointer { mb in
                    for r in 0..<rows {
                        let row = mb.baseAddress! + r * gw
                        for k in 0..<gw { d[k] += row[k] }
                    }
                }
            })
        }
        var grads: [Tensor?] = []
        // x
        grads.append(x.requiresGrad ? Tensor(shape: x.shape, uninitialized: { dst in
            dGi.withUnsafeBufferPointer { d in
                weightIH.scalars.withUnsafeBufferPointer { w in
                    if rows > 0 { sgemm(transA: false, transB: false, m: rows, n: inSize, k: gw, a: d.baseAddress!, b: w.baseAddress!, c: dst.baseAddress!) }
                }
            }
        }) : nil)
        grads.append(Tensor(shape: [batch, hidden], scalars: dhNext))           // h0
        if hasC0 { grads.append(Tensor(shape: [batch, hidden], scalars: dcNext)) }  // c0
        grads.append(weightIH.requiresGrad ? Tensor(shape: weightIH.shape, uninitialized: { dst in
            dGi.withUnsafeBufferPointer { d in
                x.scalars.withUnsafeBufferPointer { px in
                    if rows > 0 { sgemm(transA: true, transB: false, m: gw, n: inSize, k: rows, a: d.baseAddress!, b: px.baseAddress!, c: dst.baseAddress!) }
                    else { dst.initialize(repeating: 0) }
                }
            }
        }) : nil)
        grads.append(weightHH.requiresGrad ? Tensor(shape: weightHH.shape, uninitialized: { dst in
            dHidden.withUnsafeBufferPointer { d in
                hs.withUnsafeBufferPointer { h in   // h_{t-1} for every step: hs[0 ..< T]
                    if rows > 0 { sgemm(transA: true, transB: false, m: gw, n: hidden, k: rows, a: d.baseAddress!, b: h.baseAddress!, c: dst.baseAddress!) }
                    else { dst.initialize(repeating: 0) }
                }
            }
        }) : nil)
        // The two biases enter every gate alike except GRU's n gate: one sum serves both otherwise.
        let biasIHGrad = hasBiasIH || (hasBiasHH && !isGRU) ? columnSums(dGi) : nil
        if hasBiasIH { grads.append(biasIHGrad) }
        if hasBiasHH { grads.append(isGRU ? columnSums(dGh) : biasIHGrad!.copy()) }
        return grads
    }
}
