// MARK: - Element-wise kernels and broadcasting binary ops

import Foundation

extension Tensor {
    /// Applies `f` to every value (parallel for large tensors).
    @inline(__always)
    func map(_ f: (Float) -> Float) -> Tensor {
        Tensor(
            shape: shape,
            uninitialized: { out in
                scalars.withUnsafeBufferPointer { src in
                    parallelFor(src.count) { r in
                        for i in r { out[i] = f(src[i]) }
                    }
                }
            })
    }

    /// Applies `f` to pairs of values of two tensors of the same shape.
    @inline(__always)
    static func zipMap(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
        require(a.shape == b.shape, "shapes \(a.shape) and \(b.shape) differ")
        return Tensor(
            shape: a.shape,
            uninitialized: { out in
                a.scalars.withUnsafeBufferPointer { pa in
                    b.scalars.withUnsafeBufferPointer { pb in
                        parallelFor(pa.count) { r in
                            for i in r { out[i] = f(pa[i], pb[i]) }
                        }
                    }
                }
            })
    }

    /// Applies `f` with NumPy broadcasting.
    @inline(__always)
    static func broadcastMap(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
        if a.shape == b.shape { return zipMap(a, b, f) }
        let outShape = Shape.broadcast(a.shape, b.shape)
        if b.count == 1 && outShape == a.shape {
            let s = b.scalars[0]
            return a.map { f($0, s) }
        }
        if a.count == 1 && outShape == b.shape {
            let s = a.scalars[0]
            return b.map { f(s, $0) }
        }
        let sa = Shape.broadcastStrides(a.shape, to: outShape)
        let sb = Shape.broadcastStrides(b.shape, to: outShape)
        let rank = outShape.count
        let inner = outShape[rank - 1]
        let ia = sa[rank - 1], ib = sb[rank - 1]
        let rows = outShape.reduce(1, *) / Swift.max(inner, 1)
        return Tensor(
            shape: outShape,
            uninitialized: { out in
                a.scalars.withUnsafeBufferPointer { pa in
                    b.scalars.withUnsafeBufferPointer { pb in
                        parallelFor(rows, grain: Swift.max(1, 32_768 / Swift.max(inner, 1))) { range in
                            for row in range {
                                // Offsets of this row in a and b from its multi-index.
                                var rem = row, oa = 0, ob = 0
                                for d in stride(from: rank - 2, through: 0, by: -1) {
                                    let idx = rem % outShape[d]
                                    rem /= outShape[d]
                                    oa += idx * sa[d]
                                    ob += idx * sb[d]
                                }
                                let o = row * inner
                                for j in 0..<inner { out[o + j] = f(pa[oa + j * ia], pb[ob + j * ib]) }
                            }
                        }
                    }
                }
            })
    }

    /// Sums a gradient over broadcast dimensions so that it has `target` shape. Every
    /// broadcasting op undoes its broadcasting through this one function.
    public func sumToShape(_ target: [Int]) -> Tensor {
        if shape == target { return self }
        let lead = rank - target.count
        require(lead >= 0, "cannot reduce shape \(shape) to \(target)")
        var axes = Array(0..<lead)
        for (i, d) in target.enumerated() where d == 1 && shape[lead + i] != 1 { axes.append(lead + i) }
        return sum(axes: axes, keepDims: true).reshaped(target)
    }
}

// MARK: - Arithmetic

extension Tensor {
    /// Element-wise sum with broadcasting.
    public static func + (a: Tensor, b: Tensor) -> Tensor {
        let out = broadcastMap(a, b, +)
        return record("add", out, [a, b]) { g in [g.sumToShape(a.shape), g.sumToShape(b.shape)] }
    }

    /// Element-wise difference with broadcasting.
    public static func - (a: Tensor, b: Tensor) -> Tensor {
        let out = broadcastMap(a, b, -)
        return record("sub", out, [a, b]) { g in [g.sumToShape(a.shape), (-g).sumToShape(b.shape)] }
    }

    /// Element-wise product with broadcasting.
    public static func * (a: Tensor, b: Tensor) -> Tensor {
        let out = broadcastMap(a, b, *)
        return record("mul", out, [a, b]) { g in
            [
                a.requiresGrad ? (g * b).sumToShape(a.shape) : nil,
                b.requiresGrad ? (g * a).sumToShape(b.shape) : nil
            ]
        }
    }

    /// Element-wise quotient with broadcasting.
    public static func / (a: Tensor, b: Tensor) -> Tensor {
        let out = broadcastMap(a, b, /)
        return record("div", out, [a, b]) { g in
            [
                a.requiresGrad ? (g / b).sumToShape(a.shape) : nil,
                b.requiresGrad ? (-(g * a) / (b * b)).sumToShape(b.shape) : nil
            ]
        }
    }

    public static prefix func - (a: Tensor) -> Tensor {
        let out = a.map { -$0 }
        return record("neg", out, [a]) { g in [-g] }
    }

    /// Adds `s` to every value.
    public static func + (a: Tensor, s: Float) -> Tensor { a + Tensor(s) }
    /// Adds `s` to every value.
    public static func + (s: Float, a: Tensor) -> Tensor { Tensor(s) + a }
    /// Subtracts `s` from every value.
    public static func - (a: Tensor, s: Float) -> Tensor { a - Tensor(s) }
    /// `s` minus every value.
    public static func - (s: Float, a: Tensor) -> Tensor { Tensor(s) - a }
    /// Multiplies every value by `s`.
    public static func * (a: Tensor, s: Float) -> Tensor { a * Tensor(s) }
    /// Multiplies every value by `s`.
    public static func * (s: Float, a: Tensor) -> Tensor { Tensor(s) * a }
    /// Divides every value by `s`.
    public static func / (a: Tensor, s: Float) -> Tensor { a / Tensor(s) }
    /// `s` divided by every value.
    public static func / (s: Float, a: Tensor) -> Tensor { Tensor(s) / a }

    /// `self` raised to a constant power.
    public func pow(_ p: Float) -> Tensor {
        let x = self
        let out: Tensor
        if p == 2 { out = map { $0 * $0 } } else { out = map { Foundation.pow($0, p) } }
        return Tensor.record("pow", out, [x]) { g in
            let d: Tensor = p == 2 ? x.map { 2 * $0 } : x.map { p * Foundation.pow($0, p - 1) }
            return [g * d]
        }
    }

    /// Element-wise power with a tensor exponent (broadcasting).
    public func pow(_ e: Tensor) -> Tensor {
        let x = self
        let out = Tensor.broadcastMap(x, e) { Foundation.pow($0, $1) }
        let y = out.detach()
        return Tensor.record("pow", out, [x, e]) { g in
            [
                x.requiresGrad ? (g * e * Tensor.broadcastMap(x, e) { Foundation.pow($0, $1 - 1) }).sumToShape(x.shape) : nil,
                e.requiresGrad ? (g * y * x.map { Foundation.log($0) }).sumToShape(e.shape) : nil
            ]
        }
    }
}

// MARK: - Comparisons and selection (not differentiable in the mask)

extension Tensor {
    /// 1 where `self > other`, else 0 (broadcasting).
    public func gt(_ o: Tensor) -> Tensor { Tensor.broadcastMap(self, o) { $0 > $1 ? 1 : 0 } }
    /// 1 where `self ≥ o` (broadcast), 0 elsewhere; no gradient.
    public func ge(_ o: Tensor) -> Tensor { Tensor.broadcastMap(self, o) { $0 >= $1 ? 1 : 0 } }
    /// 1 where `self < o` (broadcast), 0 elsewhere; no gradient.
    public func lt(_ o: Tensor) -> Tensor { Tensor.broadcastMap(self, o) { $0 < $1 ? 1 : 0 } }
    /// 1 where `self ≤ o` (broadcast), 0 elsewhere; no gradient.
    public func le(_ o: Tensor) -> Tensor { Tensor.broadcastMap(self, o) { $0 <= $1 ? 1 : 0 } }
    /// 1 where `self == o` (broadcast), 0 elsewhere; no gradient.
    public func eq(_ o: Tensor) -> Tensor { Tensor.broadcastMap(self, o) { $0 == $1 ? 1 : 0 } }
    /// 1 where `self != o` (broadcast), 0 elsewhere; no gradient.
    public func ne(_ o: Tensor) -> Tensor { Tensor.broadcastMap(self, o) { $0 != $1 ? 1 : 0 } }
    /// 1 where a value is above `s`, 0 elsewhere.
    public func gt(_ s: Float) -> Tensor { gt(Tensor(s)) }
    /// 1 where a value is at least `s`, 0 elsewhere.
    public func ge(_ s: Float) -> Tensor { ge(Tensor(s)) }
    /// 1 where a value is below `s`, 0 elsewhere.
    public func lt(_ s: Float) -> Tensor { lt(Tensor(s)) }
    /// 1 where a value is at most `s`, 0 elsewhere.
    public func le(_ s: Float) -> Tensor { le(Tensor(s)) }
    /// 1 where a value equals `s`, 0 elsewhere.
    public func eq(_ s: Float) -> Tensor { eq(Tensor(s)) }
    /// 1 where a value differs from `s`, 0 elsewhere.
    public func ne(_ s: Float) -> Tensor { ne(Tensor(s)) }

    /// Picks from `a` where `condition` is non-zero, else from `b` (all three broadcast).
    /// Gradients flow to `a` and `b` through the selected positions only.
    public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor {
        let shape = Shape.broadcast(condition.shape, Shape.broadcast(a.shape, b.shape))
        let c = condition.expanded(to: shape).detach()
        let ea = a.shape == shape ? a.detach() : a.detach().expanded(to: shape)
        let eb = b.shape == shape ? b.detach() : b.detach().expanded(to: shape)
        let out = Tensor(
            shape: shape,
            uninitialized: { o in
                for i in 0..<o.count { o[i] = c.scalars[i] != 0 ? ea.scalars[i] : eb.scalars[i] }
            })
        return record("where", out, [a, b]) { g in
            [
                zipMap(g, c) { $1 != 0 ? $0 : 0 }.sumToShape(a.shape),
                zipMap(g, c) { $1 != 0 ? 0 : $0 }.sumToShape(b.shape)
            ]
        }
    }
}
