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
        // The bias added to every step's input projection: b_ih (+ b_hh except for GRU, whose
        // n gate takes b_hn inside r ⊙ (W_hn h + b_hn)).
        let rowBias = FloatBuffer(copying: biasIH?.scalars, count: gw)
        let bhh = FloatBuffer(copying: biasHH?.scalars, count: gw)
        if !isGRU { for k in 0..<gw { rowBias.pointer[k] += bhh.pointer[k] } }
        /// `rows` rows of `a` (`rows × inSize`) times W_ihᵀ plus the bias rows, into `out`.
        func project(_ a: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>) {
            for r in 0..<rows { (out + r * gw).update(from: rowBias.pointer, count: gw) }
            guard rows > 0 else { return }
            weightIH.withUnsafeScalars { pw in
                sgemm(transA: false, transB: true, m: rows, n: gw, k: inSize, a: a, b: pw.baseAddress!, beta: 1, c: out)
            }
        }
        let tape = RecurrentTape(kind, steps: steps, batch: batch, hidden: hidden)
        // The input projection: LSTM and RNN turn it into their gates in place (the tape's
        // gates); GRU keeps it apart and saves r, z, n.
        let projection = isGRU ? FloatBuffer(count: steps * batch * gw, zeroed: false) : tape.gates
        let gi = projection.pointer
        if let fold {
            let table = FloatBuffer(count: fold.rows * gw, zeroed: false)
            fold.values.withUnsafeBufferPointer { project($0.baseAddress!, rows: fold.rows, into: table.pointer) }
            fold.indices.withUnsafeBufferPointer { idx in
                parallelFor(steps * batch, grain: 64) { range in
                    for r in range { (gi + r * gw).update(from: table.pointer + idx[r] * gw, count: gw) }
                }
            }
        } else {
            x.withUnsafeScalars { project($0.baseAddress!, rows: steps * batch, into: gi) }
        }
        h0.withUnsafeScalars { tape.hs.pointer.update(from: $0.baseAddress!, count: bh) }
        if isLSTM, let c0 { c0.withUnsafeScalars { tape.cs.pointer.update(from: $0.baseAddress!, count: bh) } }
        let gh = FloatBuffer(count: isGRU ? batch * gw : 0)  // GRU: W_h h + b_h of one step
        let h = tape.hs.pointer, c = tape.cs.pointer, tc = tape.tcs.pointer, a = tape.gates.pointer, hn = tape.ghn.pointer
        let ghp = gh.pointer, bhhp = bhh.pointer
        weightHH.withUnsafeScalars { whh in
            // h · W_hhᵀ, with the recurrent weight packed once for all steps where the kernel runs.
            let recurrence = StepProduct(whh.baseAddress!, transB: true, k: hidden, n: gw, packable: hidden % 16 == 0)
            let blocks = UnitBlocks(hidden: hidden, aligned: recurrence.isPacked, work: batch * gw * hidden)
            // Each step is one phase; each block of hidden units one chunk of it: that block's
            // columns of every gate in the product, then its gate arithmetic.
            runPhases(steps, chunks: blocks.count) { t, chunk in
                let units = blocks[chunk], lo = units.lowerBound, len = units.count
                let pre = gi + t * batch * gw
                let hPrev = h + t * bh, hNext = h + (t + 1) * bh
                if isGRU {
                    for b in 0..<batch {
                        for q in 0..<3 { (ghp + b * gw + q * hidden + lo).update(from: bhhp + q * hidden + lo, count: len) }
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
        withExtendedLifetime((projection, gh, bhh, rowBias)) {}

        let outRows = isLSTM ? steps + 1 : steps
        let out = Tensor(
            shape: [outRows, batch, hidden],
            uninitialized: { dst in
                dst.baseAddress!.update(from: h + bh, count: steps * bh)
                if isLSTM { (dst.baseAddress! + steps * bh).update(from: c + steps * bh, count: bh) }
            })
        // With the fold, the gradient goes to the table itself rather than through the lookup.
        var inputs = [fold?.table ?? x, h0]
        if isLSTM, let c0 { inputs.append(c0) }
        inputs += [weightIH, weightHH]
        if let biasIH { inputs.append(biasIH) }
        if let biasHH { inputs.append(biasHH) }
        return record(kindLabel(kind), out, inputs) { dOut in
            recurrentBackward(
                kind, dOut: dOut, x: x, fold: fold, weightIH: weightIH, weightHH: weightHH,
                hasBiasIH: biasIH != nil, hasBiasHH: biasHH != nil, hasC0: isLSTM && c0 != nil, tape: tape)
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
}
