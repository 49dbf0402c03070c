import CGradGuardKernels

extension Tensor {
    /// The backward pass of `recurrentLayer`: one product per step for the hidden gradient,
    /// then the weight, bias and input (or embedding table) gradients over the whole sequence.
    static func recurrentBackward(
        _ kind: RecurrentKind, dOut: Tensor, x: Tensor, fold: RowSource?,
        weightIH: Tensor, weightHH: Tensor,
        hasBiasIH: Bool, hasBiasHH: Bool, hasC0: Bool,
        tape: RecurrentTape
    ) -> [Tensor?] {
        let (steps, batch, inSize) = (x.shape[0], x.shape[1], x.shape[2])
        let hidden = weightHH.shape[1], gw = kind.gateCount * hidden, bh = batch * hidden
        let isGRU = kind == .gru, isLSTM = kind == .lstm
        // Gradients of the gate pre-activations: for the input side and the hidden side
        // (they differ only for GRU's n gate).
        // Gradients of the gate pre-activations: for the input side and the hidden side
        // (they differ only for GRU's n gate).
        let dGi = FloatBuffer(count: steps * batch * gw)
        let dGh = FloatBuffer(count: isGRU ? steps * batch * gw : 0)
        let dhNextBuffer = FloatBuffer(count: bh), dcNextBuffer = FloatBuffer(count: isLSTM ? bh : 0), dhBuffer = FloatBuffer(count: bh)
        if isLSTM { dOut.withUnsafeScalars { dcNextBuffer.pointer.update(from: $0.baseAddress! + steps * bh, count: bh) } }
        // Raw pointers: the loops below run T·B·H times and must vectorise.
        let dgi = dGi.pointer, dgh = dGh.pointer, dhNext = dhNextBuffer.pointer, dcNext = dcNextBuffer.pointer, dh = dhBuffer.pointer
        let acts = tape.gates.pointer, hs = tape.hs.pointer, cs = tape.cs.pointer, tcs = tape.tcs.pointer, ghn = tape.ghn.pointer
        dOut.withUnsafeScalars { dOb in
            let dO = dOb.baseAddress!
            weightHH.withUnsafeScalars { whh in
                // dG_h · W_hh (W_hh is gw × hidden), packed once for all steps where the kernel runs.
                let recurrence = StepProduct(whh.baseAddress!, transB: false, k: gw, n: hidden, packable: hidden % 16 == 0)
                let blocks = UnitBlocks(hidden: hidden, aligned: recurrence.isPacked, work: batch * gw * hidden)
                // Phase p finishes dh_{T−p} = dG[T−p] · W_hh for its block of units (p > 0), then runs
                // the gate backward of step T−1−p for the same units (p < T). The last phase leaves
                // the gradient of h0 in dhNext.
                runPhases(steps + 1, chunks: blocks.count) { p, chunk in
                    let units = blocks[chunk], lo = units.lowerBound, len = units.count
                    if p > 0 {
                        // dh_{t-1} (+)= dG_h[t] · W_hh; GRU's direct path z ⊙ dh is already in dhNext.
                        let base = (steps - p) * batch * gw
                        blocks.product(
                            recurrence, isGRU ? dgh + base : dgi + base, m: batch, units: units, into: dhNext,
                            accumulate: isGRU)
                    }
                    guard p < steps else { return }
                    let t = steps - 1 - p
                    let dOt = dO + t * bh
                    let base = t * batch * gw
                    let level = Kernels.level
                    if isLSTM && level > .portable {
                        // dh = dO + dhNext is formed inside the fused kernel.
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
        withExtendedLifetime((dhBuffer, tape)) {}
        let rows = steps * batch
        let dHidden = isGRU ? dGh : dGi
        func columnSums(_ m: FloatBuffer) -> Tensor {
            Tensor(shape: [gw]) { dst in
                dst.initialize(repeating: 0)
                let d = dst.baseAddress!
                for r in 0..<(m.count / gw) {
                    let row = m.pointer + r * gw
                    for k in 0..<gw { d[k] += row[k] }
                }
            }
        }
        // With the fold: the gate gradients summed per table row, dP[v] = Σ_{r: index r = v} dG_i[r].
        let dProj = FloatBuffer(count: fold.map { $0.rows * gw } ?? 0)
        if let fold {
            let dp = dProj.pointer
            fold.indices.withUnsafeBufferPointer { idx in
                // Each worker owns a band of gate columns, so no two add into the same value.
                parallelFor(gw, grain: 128) { cols in
                    let lo = cols.lowerBound, n = cols.count
                    for r in 0..<rows {
                        let src = dgi + r * gw + lo, dst = dp + idx[r] * gw + lo
                        for k in 0..<n { dst[k] += src[k] }
                    }
                }
            }
        }
        /// `a · b` (`transA`: `aᵀ · b`) into a new tensor of `shape`; zeros when `k` is 0.
        func product(_ shape: [Int], transA: Bool, m: Int, n: Int, k: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) -> Tensor {
            Tensor(shape: shape) { dst in
                if k > 0 {
                    sgemm(transA: transA, transB: false, m: m, n: n, k: k, a: a, b: b, c: dst.baseAddress!)
                } else {
                    dst.initialize(repeating: 0)
                }
            }
        }
        var grads: [Tensor?] = []
        weightIH.withUnsafeScalars { w in
            if let fold {
                // The table: dP · W_ih.
                grads.append(
                    fold.table.requiresGrad ? product(fold.table.shape, transA: false, m: fold.rows, n: inSize, k: gw, dProj.pointer, w.baseAddress!) : nil)
            } else {
                // x: dG_i · W_ih.
                grads.append(x.requiresGrad ? product(x.shape, transA: false, m: rows, n: inSize, k: gw, dgi, w.baseAddress!) : nil)
            }
        }
        grads.append(Tensor(shape: [batch, hidden], scalars: dhNextBuffer.array))  // h0
        if hasC0 { grads.append(Tensor(shape: [batch, hidden], scalars: dcNextBuffer.array)) }  // c0
        // Weight and bias gradients. Except for GRU, whose hidden-side gradient differs, the
        // three come out of one product dG_iᵀ · [x | h_{t-1} | 1]: one pass over dG_i instead of
        // three (the bias gradient, a column sum, is the product with the column of ones).
        var fusedWeights: (ih: Tensor, hh: Tensor, bias: Tensor)? = nil
        if fold == nil && !isGRU && weightIH.requiresGrad && weightHH.requiresGrad && rows > 0 {
            let wide = inSize + hidden + 1
            let rhs = FloatBuffer(count: rows * wide, zeroed: false), whole = FloatBuffer(count: gw * wide, zeroed: false)
            let rp = rhs.pointer
            x.withUnsafeScalars { px in
                parallelFor(rows, grain: 256) { range in
                    for r in range {  // row r of hs is h_{t-1} of row r = t·B + b
                        let row = rp + r * wide
                        row.update(from: px.baseAddress! + r * inSize, count: inSize)
                        (row + inSize).update(from: hs + r * hidden, count: hidden)
                        row[inSize + hidden] = 1
                    }
                }
            }
            sgemm(transA: true, transB: false, m: gw, n: wide, k: rows, a: dgi, b: rp, c: whole.pointer)
            func columns(_ lo: Int, _ n: Int, shape: [Int]) -> Tensor {
                Tensor(shape: shape) { dst in
                    for g in 0..<gw { (dst.baseAddress! + g * n).update(from: whole.pointer + g * wide + lo, count: n) }
                }
            }
            fusedWeights = (columns(0, inSize, shape: weightIH.shape), columns(inSize, hidden, shape: weightHH.shape), columns(inSize + hidden, 1, shape: [gw]))
        }
        // dW_ih = dG_iᵀ · x, or with the fold dPᵀ · table: the same sum grouped by table row.
        if weightIH.requiresGrad {
            if let fused = fusedWeights?.ih {
                grads.append(fused)
            } else if let fold {
                grads.append(
                    fold.values.withUnsafeBufferPointer {
                        product(weightIH.shape, transA: true, m: gw, n: inSize, k: fold.rows, dProj.pointer, $0.baseAddress!)
                    })
            } else {
                grads.append(x.withUnsafeScalars { product(weightIH.shape, transA: true, m: gw, n: inSize, k: rows, dgi, $0.baseAddress!) })
            }
        } else {
            grads.append(nil)
        }
        // dW_hh = dG_hᵀ · h_{t-1} over every step (hs[0 ..< T]).
        grads.append(weightHH.requiresGrad ? fusedWeights?.hh ?? product(weightHH.shape, transA: true, m: gw, n: hidden, k: rows, dHidden.pointer, hs) : nil)
        // The two biases enter every gate alike except GRU's n gate: one sum serves both otherwise.
        let biasIHGrad = hasBiasIH || (hasBiasHH && !isGRU) ? fusedWeights?.bias ?? columnSums(fold == nil ? dGi : dProj) : nil
        if hasBiasIH { grads.append(biasIHGrad) }
        if hasBiasHH { grads.append(isGRU ? columnSums(dGh) : biasIHGrad!.copy()) }
        withExtendedLifetime((dGi, dGh, dhNextBuffer, dcNextBuffer, dProj, tape)) {}
        return grads
    }
}
