/// A heap buffer of floats, freed with its owner: the recurrent passes keep raw pointers
/// into these instead of nesting one `withUnsafe…` scope per array.
final class FloatBuffer {
    let count: Int
    let pointer: UnsafeMutablePointer<Float>

    /// Zeroed, unless `zeroed` is false for a buffer that is written in full before it is read
    /// (a product's result), which then skips a pass over its memory.
    init(count: Int, zeroed: Bool = true) {
        self.count = count
        pointer = .allocate(capacity: Swift.max(count, 1))
        if zeroed { pointer.initialize(repeating: 0, count: Swift.max(count, 1)) }
    }

    /// A copy of `values` (`count` of them), or zeros when nil.
    convenience init(copying values: [Float]?, count: Int) {
        self.init(count: count)
        if let values { values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: count) } }
    }

    deinit { pointer.deallocate() }

    var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}

/// What a recurrent layer's forward pass keeps for its backward pass.
final class RecurrentTape {
    /// `[T, B, gates·H]`: LSTM and RNN gates after their activations (the input projection,
    /// overwritten step by step); GRU's r, z, n.
    let gates: FloatBuffer
    /// `[T + 1, B, H]`: h0, then h_t of every step.
    let hs: FloatBuffer
    /// LSTM: `[T + 1, B, H]` cell states from c0, and `[T, B, H]` tanh(c_t).
    let cs: FloatBuffer
    let tcs: FloatBuffer
    /// GRU: `[T, B, H]` W_hn h + b_hn of every step.
    let ghn: FloatBuffer

    init(_ kind: RecurrentKind, steps: Int, batch: Int, hidden: Int) {
        let bh = batch * hidden, isLSTM = kind == .lstm, isGRU = kind == .gru
        // LSTM and RNN gates start as the input projection, written in full; GRU's are zeroed.
        gates = FloatBuffer(count: steps * batch * kind.gateCount * hidden, zeroed: isGRU)
        hs = FloatBuffer(count: (steps + 1) * bh)
        cs = FloatBuffer(count: isLSTM ? (steps + 1) * bh : 0)
        tcs = FloatBuffer(count: isLSTM ? steps * bh : 0)
        ghn = FloatBuffer(count: isGRU ? steps * bh : 0)
    }
}
