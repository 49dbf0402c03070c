import CGradGuardKernels
import Foundation
import GradGuardTensor

/// Raised by `clipGradNorm(_:maxNorm:normType:errorIfNonfinite:)` when the total norm is
/// NaN or infinite.
public struct NonFiniteNormError: Error, CustomStringConvertible, Sendable {
    /// The total norm found.
    public let norm: Float
    /// Its order (2, 1, ∞ or p).
    public let normType: Float
    /// The error for a total `norm` of order `normType`.
    public init(norm: Float, normType: Float) {
        self.norm = norm
        self.normType = normType
    }
    /// The norm, and why clipping it would corrupt the parameters.
    public var description: String {
        "the total norm of order \(normType) of the gradients is \(norm); clipping a non-finite gradient would corrupt the parameters"
    }
}

// MARK: - The clipping primitive

/// The three operations every way of clipping is made of: the norm of a set of tensors (of
/// any order), scaling them by a coefficient, and clamping their values. `clipGradNorm`,
/// `clipGradValue` and every `GradientClipper` are written with these and nothing else.
public enum GradientClipping {
    /// Values per piece when tensors are shared out over the workers: one large weight is
    /// split so that it does not leave the other cores idle.
    static let chunk = 1 << 16

    /// The p-norm of one buffer; p = ∞ is the largest magnitude (NaN if any value is NaN).
    public static func norm(_ b: UnsafeBufferPointer<Float>, order p: Float = 2) -> Double {
        let s = powerSum(b, p)
        if p == .infinity || p == 1 { return s }
        return p == 2 ? s.squareRoot() : Foundation.pow(s, 1 / Double(p))
    }

    /// Σ|x|^p of one buffer (the largest |x| for p = ∞), in Double.
    static func powerSum(_ b: UnsafeBufferPointer<Float>, _ p: Float) -> Double {
        guard let base = b.baseAddress, b.count > 0 else { return 0 }
        if p == .infinity {
            var m: Float = 0
            for v in b { let a = Swift.abs(v); if a > m || a.isNaN { m = a } }
            return Double(m)
        }
        let level = Kernels.level
        if p == 2 && level > .portable { return gg_sum(level.cValue, base, b.count, 1) }
        if p == 2 {
            // Eight-lane partial sums keep float32 rounding error small and vectorise.
            var acc = SIMD8<Float>(repeating: 0)
            var i = 0
            let n = b.count
            while i + 8 <= n {
                let v = UnsafeRawPointer(base + i).loadUnaligned(as: SIMD8<Float>.self)
                acc += v * v
                i += 8
            }
            var s = Double(acc.sum())
            while i < n { s += Double(base[i] * base[i]); i += 1 }
            return s
        }
        var s = 0.0
        if p == 1 { for v in b { s += Double(Swift.abs(v)) }; return s }
        let pd = Double(p)
        for v in b { s += Foundation.pow(Double(Swift.abs(v)), pd) }
        return s
    }

    /// The p-norm of each tensor (0 for nil), over the workers.
    public static func norms(_ tensors: [Tensor?], order p: Float = 2) -> [Double] {
        let pieces = pieces(of: tensors.map { $0?.count })
        var partial = [Double](repeating: 0, count: pieces.count)
        partial.withUnsafeMutableBufferPointer { out in
            parallelFor(pieces.count, grain: 1) { range in
                for k in range {
                    let (i, r) = pieces[k]
                    out[k] = tensors[i]!.withUnsafeScalars { powerSum(UnsafeBufferPointer(rebasing: $0[r]), p) }
                }
            }
        }
        var sums = [Double](repeating: 0, count: tensors.count)
        for (k, piece) in pieces.enumerated() {
            let v = partial[k]
            if p == .infinity {
                if v > sums[piece.tensor] || v.isNaN { sums[piece.tensor] = v }
            } else {
                sums[piece.tensor] += v
            }
        }
        if p == .infinity || p == 1 { return sums }
        return sums.map { p == 2 ? $0.squareRoot() : Foundation.pow($0, 1 / Double(p)) }
    }

    /// The p-norm of a set of tensors from their own p-norms: the norm of the norms (as
    /// `torch.nn.utils.get_total_norm`). NaN if any is NaN.
    public static func combine(_ norms: [Double], order p: Float = 2) -> Double {
        if norms.contains(where: \.isNaN) { return .nan }
        if p == .infinity { return norms.max() ?? 0 }
        if p == 2 { return norms.reduce(0) { $0 + $1 * $1 }.squareRoot() }
        if p == 1 { return norms.reduce(0, +) }
        let pd = Double(p)
        return Foundation.pow(norms.reduce(0) { $0 + Foundation.pow($1, pd) }, 1 / pd)
    }

    /// `clip_grad_norm_`'s coefficient for a set whose norm is `norm`: maxNorm / (norm + 1e-6),
    /// at most 1 (0 for an infinite norm, NaN for a NaN one).
    public static func coefficient(norm: Double, maxNorm: Float) -> Float {
        Swift.min(maxNorm / (Float(norm) + 1e-6), 1)
    }

    /// Multiplies every tensor's values by `factor`, in place, over the workers: tensors of up
    /// to `chunk` values shared out whole (many small gradients keep every core busy), larger
    /// ones split. Each tensor is opened by one thread only.
    public static func scale(_ tensors: [Tensor], by factor: Float) {
        let small = tensors.filter { $0.count <= chunk }
        // A tensor listed twice (one gradient shared by two parameters) is scaled twice, as
        // before; its two turns then stay on one thread.
        let distinct = Set(small.map(ObjectIdentifier.init)).count == small.count
        parallelFor(distinct ? small.count : 0, grain: 1) { range in
            for k in range { small[k].withUnsafeMutableScalars { b in for j in 0..<b.count { b[j] *= factor } } }
        }
        if !distinct { for t in small { t.withUnsafeMutableScalars { b in for j in 0..<b.count { b[j] *= factor } } } }
        for t in tensors where t.count > chunk { t.withUnsafeMutableScalars { scale($0, by: factor) } }
    }

    /// Pieces of at most `chunk` values of buffers of `counts` values: (buffer, range).
    static func pieces(of counts: [Int?]) -> [(tensor: Int, range: Range<Int>)] {
        var pieces: [(tensor: Int, range: Range<Int>)] = []
        for (i, n) in counts.enumerated() {
            guard let n, n > 0 else { continue }
            var lo = 0
            repeat {
                pieces.append((i, lo..<Swift.min(lo + chunk, n)))
                lo += chunk
            } while lo < n
        }
        return pieces
    }

    /// Multiplies a buffer's values by `factor`, in place, over the workers.
    public static func scale(_ b: UnsafeMutableBufferPointer<Float>, by factor: Float) {
        parallelFor(b.count, grain: chunk) { range in for i in range { b[i] *= factor } }
    }

    /// What clamping one tensor did: its L2 norm before and after, and whether any value changed.
    public struct Clamped: Sendable, Equatable {
        /// The tensor's L2 norm before clamping.
        public var normBefore: Double
        /// Its L2 norm after.
        public var normAfter: Double
        /// Whether any value was changed.
        public var changed: Bool
    }

    /// Clamps every value to `[-limit, limit]` in place (NaN stays NaN).
    public static func clamp(_ tensors: [Tensor], to limit: Float) -> [Clamped] {
        tensors.map { t in
            var before = 0.0, after = 0.0, changed = false
            t.withUnsafeMutableScalars { b in
                for i in 0..<b.count {
                    let v = b[i]
                    before += Double(v * v)
                    if !v.isNaN && Swift.abs(v) > limit {
                        b[i] = v > 0 ? limit : -limit
                        changed = true
                    }
                    after += Double(b[i] * b[i])
                }
            }
            return Clamped(normBefore: before.squareRoot(), normAfter: after.squareRoot(), changed: changed)
        }
    }
}

// MARK: - PyTorch's functions

/// The p-norm of the gradients of `parameters` taken together (the norm of the
/// per-tensor norms, as `torch.nn.utils.get_total_norm`). Parameters without a gradient
/// are skipped.
public func gradNorm(_ parameters: [Tensor], normType: Float = 2) -> Float {
    Float(GradientClipping.combine(GradientClipping.norms(parameters.map(\.grad), order: normType), order: normType))
}

/// Multiplies every gradient by `scale`, in place.
public func scaleGradients(_ parameters: [Tensor], by scale: Float) {
    GradientClipping.scale(parameters.compactMap(\.grad), by: scale)
}

/// Rescales the gradients so that their total `normType`-norm is at most `maxNorm`, with the
/// semantics of `torch.nn.utils.clip_grad_norm_`: the coefficient is
/// `maxNorm / (norm + 1e-6)` clamped to 1, and the returned value is the norm *before*
/// clipping. A non-finite norm is returned as is and scales the gradients like PyTorch does.
@discardableResult
public func clipGradNorm(_ parameters: [Tensor], maxNorm: Float, normType: Float = 2) -> Float {
    let total = gradNorm(parameters, normType: normType)
    scaleGradients(parameters, by: GradientClipping.coefficient(norm: Double(total), maxNorm: maxNorm))
    return total
}

/// As `clipGradNorm(_:maxNorm:normType:)`, and with `errorIfNonfinite` throws
/// `NonFiniteNormError` (leaving the gradients untouched) when the norm is NaN or infinite.
@discardableResult
public func clipGradNorm(
    _ parameters: [Tensor], maxNorm: Float, normType: Float = 2,
    errorIfNonfinite: Bool
) throws -> Float {
    let total = gradNorm(parameters, normType: normType)
    if errorIfNonfinite && !total.isFinite { throw NonFiniteNormError(norm: total, normType: normType) }
    scaleGradients(parameters, by: GradientClipping.coefficient(norm: Double(total), maxNorm: maxNorm))
    return total
}

/// Clamps every gradient value to `[-clipValue, clipValue]` in place
/// (`torch.nn.utils.clip_grad_value_`).
public func clipGradValue(_ parameters: [Tensor], clipValue: Float) {
    require(clipValue >= 0, "clipValue must be non-negative")
    _ = GradientClipping.clamp(parameters.compactMap(\.grad), to: clipValue)
}
