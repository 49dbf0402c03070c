import CGradGuardKernels
import Foundation

// MARK: - Reductions along axes

extension Tensor {
    /// Splits the shape around `axis` into (outer, n, inner) sizes.
    func axisView(_ axis: Int) -> (outer: Int, n: Int, inner: Int) {
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *)
        return (outer, shape[axis], inner)
    }

    /// Reduces one axis with `combine`, keeping it as size 1.
    private func reduceAxis(_ axis: Int, initial: Float, _ combine: (Float, Float) -> Float) -> Tensor {
        let (outer, n, inner) = axisView(axis)
        var outShape = shape
        outShape[axis] = 1
        return Tensor(
            shape: outShape,
            uninitialized: { out in
                scalars.withUnsafeBufferPointer { x in
                    parallelFor(outer, grain: Swift.max(1, 32_768 / Swift.max(n * inner, 1))) { range in
                        for o in range {
                            let base = o * n * inner
                            for i in 0..<inner { out[o * inner + i] = initial }
                            for k in 0..<n {
                                let row = base + k * inner
                                for i in 0..<inner {
                                    out[o * inner + i] = combine(out[o * inner + i], x[row + i])
                                }
                            }
                        }
                    }
                }
            })
    }

    /// Sum over `axes` (negative axes count from the end); all axes when `axes` is nil.
    public func sum(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let ax = normalizedAxes(axes)
        var outShape = shape
        var result = self.detach()
        if ax.count == rank {
            // A full reduction: partial sums per worker, combined in Double.
            outShape = shape.map { _ in 1 }
            result = Tensor(shape: outShape, scalars: [Float(totalSum())])
        } else {
            for a in ax.sorted(by: >) {
                result = result.reduceAxis(a, initial: 0, +)
                outShape[a] = 1
            }
        }
        let kept = outShape
        let finalShape = keepDims ? kept : shape.enumerated().filter { !ax.contains($0.offset) }.map(\.element)
        let out = Tensor(shape: finalShape, scalars: result.scalars)
        let inShape = shape
        return Tensor.record("sum", out, [self]) { g in [g.reshaped(kept).expanded(to: inShape)] }
    }

    /// Σ of all values, eight-lane partial sums per worker, workers combined in Double.
    func totalSum() -> Double {
        let chunks = Swift.max(1, Swift.min(Kernels.threadCount, count / 65_536))
        var partial = [Double](repeating: 0, count: chunks)
        let level = Kernels.level
        scalars.withUnsafeBufferPointer { x in
            partial.withUnsafeMutableBufferPointer { out in
                parallelFor(chunks, grain: 1) { range in
                    for c in range {
                        let lo = count * c / chunks, hi = count * (c + 1) / chunks
                        if level > .portable {
                            out[c] = gg_sum(level.cValue, x.baseAddress! + lo, hi - lo, 0)
                            continue
                        }
                        var acc = SIMD8<Float>(repeating: 0)
                        var i = lo
                        while i + 8 <= hi {
                            acc += UnsafeRawPointer(x.baseAddress! + i).loadUnaligned(as: SIMD8<Float>.self)
                            i += 8
                        }
                        var s = Double(acc.sum())
                        while i < hi { s += Double(x[i]); i += 1 }
                        out[c] = s
                    }
                }
            }
        }
        return partial.reduce(0, +)
    }

    /// Sum over one axis.
    public func sum(axis: Int, keepDims: Bool = false) -> Tensor { sum(axes: [axis], keepDims: keepDims) }

    /// Mean over `axes`; all axes when nil.
    public func mean(axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
        let ax = normalizedAxes(axes)
        let n = ax.reduce(1) { $0 * shape[$1] }
        return sum(axes: ax, keepDims: keepDims) / Float(n)
    }

    /// The mean along one axis.
    public func mean(axis: Int, keepDims: Bool = false) -> Tensor { mean(axes: [axis], keepDims: keepDims) }

    /// Variance over `axes` with Bessel's correction by default (`correction: 1`, as
    /// `torch.var`); `correction: 0` gives the population variance.
    public func variance(axes: [Int]? = nil, correction: Int = 1, keepDims: Bool = false) -> Tensor {
        let ax = normalizedAxes(axes)
        let n = ax.reduce(1) { $0 * shape[$1] }
        let centered = self - mean(axes: ax, keepDims: true)
        return (centered * centered).sum(axes: ax, keepDims: keepDims) / Float(Swift.max(n - correction, 0))
    }

    /// Maximum along `axis` with the index of the first maximum. The gradient flows to that index.
    public func max(axis: Int, keepDims: Bool = false) -> (values: Tensor, indices: Tensor) {
        extremum(axis: axis, keepDims: keepDims, op: "max", better: >)
    }

    /// Minimum along `axis` with the index of the first minimum.
    public func min(axis: Int, keepDims: Bool = false) -> (values: Tensor, indices: Tensor) {
        extremum(axis: axis, keepDims: keepDims, op: "min", better: <)
    }

    /// Largest value of the whole tensor (gradient to its first occurrence).
    public func max() -> Tensor { reshaped([count]).max(axis: 0).values }
    /// Smallest value of the whole tensor.
    public func min() -> Tensor { reshaped([count]).min(axis: 0).values }

    /// Index of the maximum along `axis` (as Float values).
    public func argmax(axis: Int, keepDims: Bool = false) -> Tensor { max(axis: axis, keepDims: keepDims).indices }

    private func extremum(
        axis: Int, keepDims: Bool, op: String,
        better: (Float, Float) -> Bool
    ) -> (values: Tensor, indices: Tensor) {
        let a = Shape.normalize(axis, rank: rank)
        let (outer, n, inner) = axisView(a)
        require(n > 0, "\(op) over an empty axis")
        var kept = shape
        kept[a] = 1
        var idx = [Int](repeating: 0, count: outer * inner)
        let values = Tensor(
            shape: kept,
            uninitialized: { out in
                for o in 0..<outer {
                    for i in 0..<inner {
                        var best = scalars[o * n * inner + i], bi = 0
                        if !best.isNaN {
                            for k in 1..<Swift.max(n, 1) {
                                let v = scalars[(o * n + k) * inner + i]
                                if v.isNaN { best = v; bi = k; break }  // NaN propagates, as PyTorch
                                if better(v, best) { best = v; bi = k }
                            }
                        }
                        out[o * inner + i] = best
                        idx[o * inner + i] = bi
                    }
                }
            })
        let finalShape = keepDims ? kept : shape.enumerated().filter { $0.offset != a }.map(\.element)
        let indices = Tensor(shape: finalShape, scalars: idx.map { Float($0) })
        let out = Tensor(shape: finalShape, scalars: values.scalars)
        let inShape = shape
        let result = Tensor.record(op, out, [self]) { g in
            let grad = Tensor(
                shape: inShape,
                uninitialized: { dst in
                    dst.initialize(repeating: 0)
                    for o in 0..<outer {
                        for i in 0..<inner {
                            dst[(o * n + idx[o * inner + i]) * inner + i] = g.scalars[o * inner + i]
                        }
                    }
                })
            return [grad]
        }
        return (result, indices)
    }

    func normalizedAxes(_ axes: [Int]?) -> [Int] {
        guard let axes else { return Array(0..<rank) }
        let ax = axes.map { Shape.normalize($0, rank: rank) }
        require(Set(ax).count == ax.count, "repeated axis in \(axes)")
        return ax
    }
}

// MARK: - Softmax

extension Tensor {
    /// Numerically stable softmax along `axis`.
    public func softmax(axis: Int = -1) -> Tensor {
        let a = Shape.normalize(axis, rank: rank)
        let out = softmaxKernel(axis: a, log: false)
        let y = out.detach()
        return Tensor.record("softmax", out, [self]) { g in
            // dx = y ⊙ (g − Σ g⊙y)
            let gy = g * y
            return [gy - y * gy.sum(axis: a, keepDims: true)]
        }
    }

    /// Numerically stable log-softmax along `axis`.
    public func logSoftmax(axis: Int = -1) -> Tensor {
        let a = Shape.normalize(axis, rank: rank)
        let out = softmaxKernel(axis: a, log: true)
        let y = out.detach()
        return Tensor.record("logSoftmax", out, [self]) { g in
            // dx = g − softmax(x) ⊙ Σ g
            [g - y.mapSIMD(.exp) * g.sum(axis: a, keepDims: true)]
        }
    }

    /// Shared kernel: for each slice along the axis, subtract its max, exponentiate, and
    /// either normalise (softmax) or subtract the log of the sum (log-softmax).
    private func softmaxKernel(axis a: Int, log: Bool) -> Tensor {
        let (outer, n, inner) = axisView(a)
        return Tensor(
            shape: shape,
            uninitialized: { out in
                scalars.withUnsafeBufferPointer { x in
                    parallelFor(outer * inner, grain: Swift.max(1, 16_384 / Swift.max(n, 1))) { range in
                        var e = [Float](repeating: 0, count: n)
                        var col = [Float](repeating: 0, count: n)
                        for s in range {
                            let o = s / inner, i = s % inner
                            let base = o * n * inner + i
                            var m = -Float.infinity
                            for k in 0..<n {
                                col[k] = x[base + k * inner]
                                m = Swift.max(m, col[k])
                            }
                            if m == -.infinity { m = 0 }
                            for k in 0..<n { col[k] -= m }
                            e.withUnsafeMutableBufferPointer { eb in
                                col.withUnsafeBufferPointer { cb in VectorMath.apply(cb, eb, 0..<n, .exp) }
                            }
                            var total: Float = 0
                            for k in 0..<n { total += e[k] }
                            if log {
                                let lt = Foundation.log(total)
                                for k in 0..<n { out[base + k * inner] = col[k] - lt }
                            } else {
                                let inv = 1 / total
                                for k in 0..<n { out[base + k * inner] = e[k] * inv }
                            }
                        }
                    }
                }
            })
    }
}
