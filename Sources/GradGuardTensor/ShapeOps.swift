// MARK: - Shape operations

extension Tensor {
    /// Same values in a new shape; one dimension may be -1 (inferred). Shares storage.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.reduce(1) { $0 * $1.element }
            require(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            s[i] = count / known
        }
        require(s.reduce(1, *) == count, "cannot reshape \(shape) (\(count) values) to \(newShape)")
        if s == shape { return self }
        let out = Tensor(shape: s, scalars: scalars)
        let inShape = shape
        return Tensor.record("reshape", out, [self]) { g in [g.reshaped(inShape)] }
    }

    /// Collapses dimensions `start...end` into one.
    public func flattened(from start: Int = 0, to end: Int = -1) -> Tensor {
        let a = Shape.normalize(start, rank: rank), b = Shape.normalize(end, rank: rank)
        let merged = shape[a...b].reduce(1, *)
        return reshaped(Array(shape[..<a]) + [merged] + Array(shape[(b + 1)...]))
    }

    /// Inserts a dimension of size 1 at `axis`.
    public func unsqueezed(_ axis: Int) -> Tensor {
        let a = axis < 0 ? axis + rank + 1 : axis
        var s = shape
        s.insert(1, at: a)
        return reshaped(s)
    }

    /// Removes dimension `axis`, which must have size 1.
    public func squeezed(_ axis: Int) -> Tensor {
        let a = Shape.normalize(axis, rank: rank)
        require(shape[a] == 1, "squeeze: dimension \(axis) has size \(shape[a])")
        var s = shape
        s.remove(at: a)
        return reshaped(s)
    }

    /// Reorders dimensions: `out.shape[i] == shape[order[i]]`.
    public func permuted(_ order: [Int]) -> Tensor {
        let perm = order.map { Shape.normalize($0, rank: rank) }
        require(perm.sorted() == Array(0..<rank), "permutation \(order) is not valid for rank \(rank)")
        if perm == Array(0..<rank) { return self }
        let outShape = perm.map { shape[$0] }
        let inStrides = strides
        let srcStrides = perm.map { inStrides[$0] }  // stride in the input for each output dim
        let out = Tensor(
            shape: outShape,
            uninitialized: { dst in
                scalars.withUnsafeBufferPointer { src in
                    Tensor.stridedCopy(src, dst, shape: outShape, srcStrides: srcStrides, srcOffset: 0)
                }
            })
        var inverse = [Int](repeating: 0, count: rank)
        for (i, p) in perm.enumerated() { inverse[p] = i }
        if let source = rowSource, hooks.isEmpty, rank == 3, perm == [1, 0, 2] {
            out.rowSource = source.swappingLeadingAxes()
        }
        return Tensor.record("permute", out, [self]) { g in [g.permuted(inverse)] }
    }

    /// Swaps two dimensions (the last two by default).
    public func transposed(_ d0: Int = -2, _ d1: Int = -1) -> Tensor {
        var order = Array(0..<rank)
        order.swapAt(Shape.normalize(d0, rank: rank), Shape.normalize(d1, rank: rank))
        return permuted(order)
    }

    /// Copies a strided view of `src` into contiguous `dst`.
    static func stridedCopy(
        _ src: UnsafeBufferPointer<Float>, _ dst: UnsafeMutableBufferPointer<Float>,
        shape: [Int], srcStrides: [Int], srcOffset: Int
    ) {
        let rank = shape.count
        if rank == 0 { if dst.count > 0 { dst[0] = src[srcOffset] }; return }
        let inner = shape[rank - 1], innerStride = srcStrides[rank - 1]
        let rows = dst.count / Swift.max(inner, 1)
        parallelFor(rows, grain: Swift.max(1, 65_536 / Swift.max(inner, 1))) { range in
            for row in range {
                var rem = row, off = srcOffset
                for d in stride(from: rank - 2, through: 0, by: -1) {
                    off += (rem % shape[d]) * srcStrides[d]
                    rem /= shape[d]
                }
                let o = row * inner
                if innerStride == 1 {
                    for j in 0..<inner { dst[o + j] = src[off + j] }
                } else {
                    for j in 0..<inner { dst[o + j] = src[off + j * innerStride] }
                }
            }
        }
    }

    /// Broadcasts to `target` shape (copying). The gradient sums back.
    public func expanded(to target: [Int]) -> Tensor {
        if target == shape { return self }
        let s = Shape.broadcastStrides(shape, to: target)
        require(Shape.broadcast(shape, target) == target, "cannot expand \(shape) to \(target)")
        let out = Tensor(
            shape: target,
            uninitialized: { dst in
                scalars.withUnsafeBufferPointer { src in
                    Tensor.stridedCopy(src, dst, shape: target, srcStrides: s, srcOffset: 0)
                }
            })
        let inShape = shape
        return Tensor.record("expand", out, [self]) { g in [g.sumToShape(inShape)] }
    }

    /// Elements `start, start+step, …` below `end` along `axis` (PyTorch `x[..., start:end:step]`).
    public func slice(axis: Int, start: Int, end: Int? = nil, step: Int = 1) -> Tensor {
        let a = Shape.normalize(axis, rank: rank)
        let n = shape[a]
        func clampIndex(_ i: Int) -> Int { Swift.min(Swift.max(i < 0 ? i + n : i, 0), n) }
        let lo = clampIndex(start), hi = Swift.max(clampIndex(end ?? n), lo)
        require(step > 0, "slice step must be positive")
        let len = (hi - lo + step - 1) / step
        var outShape = shape
        outShape[a] = len
        var srcStrides = strides
        let offset = lo * srcStrides[a]
        srcStrides[a] *= step
        let out = Tensor(
            shape: outShape,
            uninitialized: { dst in
                scalars.withUnsafeBufferPointer { src in
                    Tensor.stridedCopy(src, dst, shape: outShape, srcStrides: srcStrides, srcOffset: offset)
                }
            })
        let inShape = shape
        return Tensor.record("slice", out, [self]) { g in
            let grad = Tensor(
                shape: inShape,
                uninitialized: { dst in
                    dst.initialize(repeating: 0)
                    let (outer, _, inner) = g.axisView(a)
                    for o in 0..<outer {
                        for k in 0..<len {
                            let srcRow = (o * len + k) * inner
                            let dstRow = (o * n + lo + k * step) * inner
                            for i in 0..<inner { dst[dstRow + i] = g.scalars[srcRow + i] }
                        }
                    }
                })
            return [grad]
        }
    }

    /// `length` elements from `start` along `axis`.
    public func narrow(axis: Int, start: Int, length: Int) -> Tensor {
        slice(axis: axis, start: start, end: start + length)
    }

    /// Joins tensors along `axis`; all other dimensions must match.
    public static func concatenate(_ tensors: [Tensor], axis: Int = 0) -> Tensor {
        require(!tensors.isEmpty, "concatenate needs at least one tensor")
        let first = tensors[0]
        let a = Shape.normalize(axis, rank: first.rank)
        for t in tensors {
            require(
                t.rank == first.rank && t.shape.enumerated().allSatisfy { $0.offset == a || $0.element == first.shape[$0.offset] },
                "concatenate: shape \(t.shape) does not match \(first.shape) outside axis \(a)")
        }
        let sizes = tensors.map { $0.shape[a] }
        var outShape = first.shape
        outShape[a] = sizes.reduce(0, +)
        let outer = first.shape[..<a].reduce(1, *)
        let inner = first.shape[(a + 1)...].reduce(1, *)
        let total = outShape[a]
        let out = Tensor(
            shape: outShape,
            uninitialized: { dst in
                var at = 0
                for t in tensors {
                    let n = t.shape[a]
                    t.scalars.withUnsafeBufferPointer { src in
                        for o in 0..<outer {
                            let s = o * n * inner, d = (o * total + at) * inner
                            for j in 0..<(n * inner) { dst[d + j] = src[s + j] }
                        }
                    }
                    at += n
                }
            })
        return record("concatenate", out, tensors) { g in g.split(sizes: sizes, axis: a).map { Optional($0) } }
    }

    /// Joins tensors of the same shape along a new axis.
    public static func stack(_ tensors: [Tensor], axis: Int = 0) -> Tensor {
        require(!tensors.isEmpty, "stack needs at least one tensor")
        let a = axis < 0 ? axis + tensors[0].rank + 1 : axis
        return concatenate(tensors.map { $0.unsqueezed(a) }, axis: a)
    }

    /// Splits along `axis` into pieces of the given sizes (which must add up to the dimension).
    public func split(sizes: [Int], axis: Int = 0) -> [Tensor] {
        let a = Shape.normalize(axis, rank: rank)
        require(sizes.reduce(0, +) == shape[a], "split sizes \(sizes) do not add up to \(shape[a])")
        var at = 0
        return sizes.map { n in
            defer { at += n }
            return narrow(axis: a, start: at, length: n)
        }
    }

    /// Splits along `axis` into `chunks` pieces of equal size (the last may be smaller).
    public func chunked(_ chunks: Int, axis: Int = 0) -> [Tensor] {
        let n = shape[Shape.normalize(axis, rank: rank)]
        let each = (n + chunks - 1) / chunks
        var sizes: [Int] = []
        var left = n
        while left > 0 { sizes.append(Swift.min(each, left)); left -= each }
        return split(sizes: sizes, axis: axis)
    }

    /// Rows of this tensor along `axis` picked by `indices` (any shape of integer values);
    /// the result has shape `shape[..<axis] + indices.shape + shape[(axis+1)...]`.
    /// This is the embedding lookup; repeated indices accumulate gradient.
    public func indexSelect(axis: Int = 0, indices: Tensor) -> Tensor {
        let a = Shape.normalize(axis, rank: rank)
        let (outer, n, inner) = axisView(a)
        let idx = indices.scalars.map { Int($0) }
        for (k, i) in idx.enumerated() {
            require(
                i >= 0 && i < n && Float(i) == indices.scalars[k],
                "indexSelect: index \(indices.scalars[k]) out of range 0..<\(n)")
        }
        let m = idx.count
        let outShape = Array(shape[..<a]) + indices.shape + Array(shape[(a + 1)...])
        let out = Tensor(
            shape: outShape,
            uninitialized: { dst in
                scalars.withUnsafeBufferPointer { src in
                    for o in 0..<outer {
                        for (k, i) in idx.enumerated() {
                            let s = (o * n + i) * inner, d = (o * m + k) * inner
                            for j in 0..<inner { dst[d + j] = src[s + j] }
                        }
                    }
                }
            })
        let inShape = shape
        if a == 0 && rank == 2 && m >= 2 * n { out.rowSource = RowSource(table: self, indexShape: indices.shape, indices: idx) }
        return Tensor.record("indexSelect", out, [self]) { g in
            let grad = Tensor(
                shape: inShape,
                uninitialized: { dst in
                    dst.initialize(repeating: 0)
                    g.scalars.withUnsafeBufferPointer { src in
                        for o in 0..<outer {
                            for (k, i) in idx.enumerated() {
                                let d = (o * n + i) * inner, s = (o * m + k) * inner
                                for j in 0..<inner { dst[d + j] += src[s + j] }
                            }
                        }
                    }
                })
            return [grad]
        }
    }

    /// PyTorch `gather`: `out[i][j] = self[index[i][j]][j]` for axis 0 and so on; `index`
    /// has this tensor's rank and no dimension larger than this tensor's, except along `axis`.
    public func gather(axis: Int, index: Tensor) -> Tensor {
        let a = Shape.normalize(axis, rank: rank)
        require(index.rank == rank, "gather: index rank \(index.rank) differs from \(rank)")
        let outShape = index.shape
        let inStrides = strides
        let idxStrides = index.strides
        var offsets = [Int](repeating: 0, count: index.count)
        for flat in 0..<index.count {
            var off = 0
            for d in 0..<rank {
                let c = (flat / idxStrides[d]) % outShape[d]
                let i = d == a ? Int(index.scalars[flat]) : c
                require(i >= 0 && i < shape[d], "gather: index \(i) out of range 0..<\(shape[d]) in dimension \(d)")
                off += i * inStrides[d]
            }
            offsets[flat] = off
        }
        let out = Tensor(
            shape: outShape,
            uninitialized: { dst in
                for (k, off) in offsets.enumerated() { dst[k] = scalars[off] }
            })
        let inShape = shape
        return Tensor.record("gather", out, [self]) { g in
            let grad = Tensor(
                shape: inShape,
                uninitialized: { dst in
                    dst.initialize(repeating: 0)
                    for (k, off) in offsets.enumerated() { dst[off] += g.scalars[k] }
                })
            return [grad]
        }
    }
}
