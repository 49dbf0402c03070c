import Foundation

// MARK: - Element-wise functions and activations, each with its backward rule

extension Tensor {
    /// eˣ element-wise.
    public func exp() -> Tensor {
        let out = mapSIMD(.exp)
        let y = out.detach()  // saved without its node: a rule must not retain its own output
        return Tensor.record("exp", out, [self]) { g in [g * y] }
    }

    /// The natural logarithm element-wise.
    public func log() -> Tensor {
        let x = self
        let out = map { Foundation.log($0) }
        return Tensor.record("log", out, [x]) { g in [g / x] }
    }

    /// The square root element-wise.
    public func sqrt() -> Tensor {
        let out = map { $0.squareRoot() }
        let y = out.detach()
        return Tensor.record("sqrt", out, [self]) { g in [Tensor.zipMap(g, y) { $0 / (2 * $1) }] }
    }

    /// |x| element-wise (gradient 0 at 0, as PyTorch's sign).
    public func abs() -> Tensor {
        let x = self
        let out = map { Swift.abs($0) }
        // d|x|/dx = sign(x), 0 at 0 (as PyTorch).
        return Tensor.record("abs", out, [x]) { g in
            [Tensor.zipMap(g, x) { g, x in x > 0 ? g : (x < 0 ? -g : 0) }]
        }
    }

    /// arctan x; d/dx = 1/(1 + x²).
    public func atan() -> Tensor {
        let x = self
        let out = map { Foundation.atan($0) }
        return Tensor.record("atan", out, [x]) { g in [Tensor.zipMap(g, x) { $0 / (1 + $1 * $1) }] }
    }

    /// tanh(x) element-wise.
    public func tanh() -> Tensor {
        let out = mapSIMD(.tanh)
        let y = out.detach()
        return Tensor.record("tanh", out, [self]) { g in [Tensor.zipMap(g, y) { $0 * (1 - $1 * $1) }] }
    }

    /// 1/(1 + e⁻ˣ) element-wise.
    public func sigmoid() -> Tensor {
        let out = mapSIMD(.sigmoid)
        let y = out.detach()
        return Tensor.record("sigmoid", out, [self]) { g in [Tensor.zipMap(g, y) { $0 * $1 * (1 - $1) }] }
    }

    /// max(0, x) element-wise.
    public func relu() -> Tensor {
        let x = self
        let out = map { $0 > 0 ? $0 : 0 }
        return Tensor.record("relu", out, [x]) { g in [Tensor.zipMap(g, x) { $1 > 0 ? $0 : 0 }] }
    }

    /// max(0, x) + slope · min(0, x).
    public func leakyRelu(negativeSlope: Float = 0.01) -> Tensor {
        let x = self
        let out = map { $0 > 0 ? $0 : negativeSlope * $0 }
        return Tensor.record("leakyRelu", out, [x]) { g in
            [Tensor.zipMap(g, x) { $1 > 0 ? $0 : negativeSlope * $0 }]
        }
    }

    /// x · σ(x) (also called swish).
    public func silu() -> Tensor {
        let x = self
        // σ(x) is kept for backward; x·σ(x) is formed chunk by chunk while σ(x) is in cache.
        var product = [Float](unsafeUninitializedCapacity: x.count) { _, c in c = x.count }  // written below
        let s = Tensor(
            shape: x.shape,
            uninitialized: { sig in
                x.withUnsafeScalars { px in
                    product.withUnsafeMutableBufferPointer { py in
                        let y = py.baseAddress!
                        parallelFor(px.count) { r in
                            VectorMath.apply(px, sig, r, .sigmoid)
                            for i in r { y[i] = px[i] * sig[i] }
                        }
                    }
                }
            })
        let out = Tensor(shape: x.shape, scalars: product)
        return Tensor.record("silu", out, [x]) { g in
            // d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x))), in one pass over g, x and σ(x)
            [
                Tensor(
                    shape: x.shape,
                    uninitialized: { d in
                        g.withUnsafeScalars { pg in
                            x.withUnsafeScalars { px in
                                s.withUnsafeScalars { ps in
                                    parallelFor(d.count) { r in
                                        for i in r { d[i] = pg[i] * ps[i] * (1 + px[i] * (1 - ps[i])) }
                                    }
                                }
                            }
                        }
                    })
            ]
        }
    }

    /// Gaussian error linear unit. `approximate: false` is x·Φ(x) with the exact erf;
    /// `true` is the tanh approximation (PyTorch's `approximate='tanh'`).
    public func gelu(approximate: Bool = false) -> Tensor {
        let x = self
        if approximate {
            let k: Float = 0.7978845608028654  // sqrt(2/pi)
            let inner = x.map { k * ($0 + 0.044715 * $0 * $0 * $0) }
            let t = inner.mapSIMD(.tanh)
            let out = Tensor.zipMap(x, t) { 0.5 * $0 * (1 + $1) }
            return Tensor.record("gelu", out, [x]) { g in
                let d = Tensor.zipMap(x, t) { x, t in
                    0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)
                }
                return [Tensor.zipMap(g, d, *)]
            }
        }
        let out = map { 0.5 * $0 * (1 + Foundation.erf($0 * 0.7071067811865476)) }
        return Tensor.record("gelu", out, [x]) { g in
            // Φ(x) + x·φ(x)
            let d = x.map { x in
                0.5 * (1 + Foundation.erf(x * 0.7071067811865476)) + x * 0.3989422804014327 * Foundation.exp(-0.5 * x * x)
            }
            return [Tensor.zipMap(g, d, *)]
        }
    }

    /// Limits values to `[min, max]`; the gradient passes where the value was inside
    /// (boundaries included, as PyTorch).
    public func clamp(min lo: Float? = nil, max hi: Float? = nil) -> Tensor {
        let x = self
        let l = lo ?? -.infinity, h = hi ?? .infinity
        let out = map { $0.isNaN ? $0 : Swift.min(Swift.max($0, l), h) }
        return Tensor.record("clamp", out, [x]) { g in [Tensor.zipMap(g, x) { ($1 >= l && $1 <= h) ? $0 : 0 }] }
    }

    /// Element-wise square.
    public func square() -> Tensor { pow(2) }
}
