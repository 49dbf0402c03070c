import CGradGuardKernels
import Foundation
import GradGuardTensor

/// Raised by `clipGradNorm(_:maxNorm:normType:errorIfNonfinite:)` when the total norm is
/// NaN or infinite.
public struct NonFiniteNormError: Error, CustomStringConvertible, Sendable {
    public let norm: Float
    public let normType: Float
    public init(norm: Float, normType: Float) {
        self.norm = norm
        self.normType = normType
    }
    public var description: String {
        "the total norm of order \(normType) of the gradients is \(norm); clipping a non-finite gradient would corrupt the parameters"
    }
}

/// The p-norm of one buffer. p = ∞ is the largest magnitude.
@inline(__always)
func bufferNorm(_ b: UnsafeBufferPointer<Float>, _ p: Float) -> Double {
    if p == .infinity {
        var m: Float = 0
        for v in b { let a = Swift.abs(v); if a > m || a.isNaN { m = a } }
        return Double(m)
    }
    let level = Kernels.level
    if p == 2 && level > .portable { return gg_sum(level.cValue, b.baseAddress!, b.count, 1).squareRoot() }
    if p == 2 {
        // Eight-lane partial sums keep float32 rounding error small and vectorise.
        var acc = SIMD8<Float>(repeating: 0)
        var i = 0
        let n = b.count
        while i + 8 <= n {
            let v = SIMD8<Float>(b[i], b[i+1], b[i+2], b[i+3], b[i+4], b[i+5], b[i+6], b[i+7])
            acc += v * v
            i += 8
        }
        var s = Double(acc.sum())
        while i < n { s += Double(b[i] * b[i]); i += 1 }
        return s.squareRoot()
    }
    var s = 0.0
    if p == 1 { for v in b { s += Double(Swift.abs(v)) }; return s }
    let pd = Double(p)
    for v in b { s += pow(Double(Swift.abs(v)), pd) }
    return pow(s, 1 / pd)
}

/// The p-norm of the gradients of `parameters` taken together (the norm of the
/// per-tensor norms, as `torch.nn.utils.get_total_norm`). Parameters without a gradient
/// are skipped.
public func gradNorm(_ parameters: [Tensor], normType: Float = 2) -> Float {
    let grads = parameters.compactMap(\.grad)
    var norms = [Double](repeating: 0, count: grads.count)
    norms.withUnsafeMutableBufferPointer { out in
        parallelFor(grads.count, grain: 1) { range in
            for i in range { out[i] = grads[i].withUnsafeScalars { bufferNorm($0, normType) } }
        }
    }
    if normType == .infinity { return Float(norms.max() ?? 0) }
    let pd = Double(normType)
    if normType == 2 { return Float(norms.reduce(0) { $0 + $1 * $1 }.squareRoot()) }
    return Float(pow(norms.reduce(0) { $0 + pow($1, pd) }, 1 / pd))
}

/// Multiplies every gradient by `scale`, in place.
public func scaleGradients(_ parameters: [Tensor], by scale: Float) {
    for p in parameters {
        p.grad?.withUnsafeMutableScalars { g in for i in 0..<g.count { g[i] *= scale } }
    }
}

/// Rescales the gradients so that their total `normType`-norm is at most `maxNorm`, with the
/// semantics of `torch.nn.utils.clip_grad_norm_`: the coefficient is
/// `maxNorm / (norm + 1e-6)` clamped to 1, and the returned value is the norm *before*
/// clipping. A non-finite norm is returned as is and scales the gradients like PyTorch does.
@discardableResult
public func clipGradNorm(_ parameters: [Tensor], maxNorm: Float, normType: Float = 2) -> Float {
    let total = gradNorm(parameters, normType: normType)
    let coef = Swift.min(maxNorm / (total + 1e-6), 1)
    scaleGradients(parameters, by: coef)
    return total
}

/// As `clipGradNorm(_:maxNorm:normType:)`, and with `errorIfNonfinite` throws
/// `NonFiniteNormError` (leaving the gradients untouched) when the norm is NaN or infinite.
@discardableResult
public func clipGradNorm(_ parameters: [Tensor], maxNorm: Float, normType: Float = 2,
                         errorIfNonfinite: Bool) throws -> Float {
    let total = gradNorm(parameters, normType: normType)
    if errorIfNonfinite && !total.isFinite { throw NonFiniteNormError(norm: total, normType: normType) }
    scaleGradients(parameters, by: Swift.min(maxNorm / (total + 1e-6), 1))
    return total
}

/// Clamps every gradient value to `[-clipValue, clipValue]` in place
/// (`torch.nn.utils.clip_grad_value_`).
public func clipGradValue(_ parameters: [Tensor], clipValue: Float) {
    require(clipValue >= 0, "clipValue must be non-negative")
    for p in parameters {
        p.grad?.withUnsafeMutableScalars { g in
            for i in 0..<g.count where !g[i].isNaN { g[i] = Swift.min(Swift.max(g[i], -clipValue), clipValue) }
        }
    }
}
