import Foundation
import GradGuardTensor

/// What one pass over a buffer of floats finds: sums for the 1- and 2-norms, the largest
/// finite magnitude, and the NaN and ±Inf counts.
struct TensorScan: Sendable {
    var sumSquares = 0.0
    var sumAbs = 0.0
    var sumPow = 0.0  // Σ|x|^p for another norm order, when asked
    var maxAbs: Float = 0
    var nan = 0, posInf = 0, negInf = 0

    var nonFinite: Int { nan + posInf + negInf }

    init() {}

    /// The scan of two pieces of one buffer taken together.
    func merged(with o: TensorScan) -> TensorScan {
        var m = self
        m.sumSquares += o.sumSquares
        m.sumAbs += o.sumAbs
        m.sumPow += o.sumPow
        m.maxAbs = Swift.max(maxAbs, o.maxAbs)
        m.nan += o.nan
        m.posInf += o.posInf
        m.negInf += o.negInf
        return m
    }

    /// Scans `b`; `p` other than 1, 2 and ∞ also sums |x|^p.
    init(_ b: UnsafeBufferPointer<Float>, p: Float = 2) {
        let n = b.count
        guard n > 0 else { return }
        let base = b.baseAddress!
        // Eight-lane float partial sums, combined in Double.
        var sq = SIMD8<Float>(repeating: 0), ab = SIMD8<Float>(repeating: 0), mx = SIMD8<Float>(repeating: 0)
        var i = 0
        while i + 8 <= n {
            let v = UnsafeRawPointer(base + i).loadUnaligned(as: SIMD8<Float>.self)
            let a = v.replacing(with: -v, where: v .< 0)
            sq += v * v
            ab += a
            mx.replace(with: a, where: a .> mx)
            i += 8
        }
        sumSquares = Double(sq.sum())
        sumAbs = Double(ab.sum())
        maxAbs = mx.max()
        while i < n {
            let a = Swift.abs(base[i])
            sumSquares += Double(a * a)
            sumAbs += Double(a)
            maxAbs = Swift.max(maxAbs, a)
            i += 1
        }
        if p != 1 && p != 2 && p != .infinity {
            let pd = Double(p)
            for k in 0..<n { sumPow += Foundation.pow(Double(Swift.abs(base[k])), pd) }
        }
        // Any NaN or Inf makes the float sums non-finite: only then count them, take the
        // largest *finite* magnitude again and redo the sums in Double (finite values whose
        // squares overflow float32 — beyond ~1.8e19 — are summed exactly there).
        if !sumSquares.isFinite || !maxAbs.isFinite || !sumAbs.isFinite {
            maxAbs = 0
            sumSquares = 0
            sumAbs = 0
            for k in 0..<n {
                let v = base[k]
                if v.isNaN {
                    nan += 1
                } else if v == .infinity {
                    posInf += 1
                } else if v == -.infinity {
                    negInf += 1
                } else {
                    let a = Swift.abs(v)
                    maxAbs = Swift.max(maxAbs, a)
                    sumSquares += Double(a) * Double(a)
                    sumAbs += Double(a)
                }
            }
        }
    }

    /// The norm of order `p` of the scanned values (∞: the largest magnitude, NaN if any NaN,
    /// ∞ if any Inf).
    func norm(_ p: Float) -> Double {
        if nan > 0 { return .nan }
        if posInf + negInf > 0 { return .infinity }
        switch p {
        case 2: return sumSquares.squareRoot()
        case 1: return sumAbs
        case .infinity: return Double(maxAbs)
        default: return Foundation.pow(sumPow, 1 / Double(p))
        }
    }
}

/// Scans every tensor's gradient (`grads: true`) or values, over the workers: large
/// tensors in chunks, so that one big weight does not leave the other cores idle.
func scanAll(_ params: [NamedParameter], grads: Bool, p: Float = 2) -> [TensorScan?] {
    let chunk = 1 << 16
    let tensors = params.map { grads ? $0.tensor.grad : $0.tensor }
    var pieces: [(tensor: Int, range: Range<Int>)] = []
    for (i, t) in tensors.enumerated() {
        guard let t else { continue }
        var lo = 0
        repeat {
            pieces.append((i, lo..<Swift.min(lo + chunk, t.count)))
            lo += chunk
        } while lo < t.count
    }
    var partial = [TensorScan](repeating: TensorScan(), count: pieces.count)
    partial.withUnsafeMutableBufferPointer { out in
        parallelFor(pieces.count, grain: 1) { range in
            for k in range {
                let piece = pieces[k]
                out[k] = tensors[piece.tensor]!.withUnsafeScalars { TensorScan(UnsafeBufferPointer(rebasing: $0[piece.range]), p: p) }
            }
        }
    }
    var result = [TensorScan?](repeating: nil, count: params.count)
    for (k, piece) in pieces.enumerated() {
        result[piece.tensor] = result[piece.tensor].map { $0.merged(with: partial[k]) } ?? partial[k]
    }
    return result
}
