import Foundation
import GradGuardTensor

/// Checks on weights that explain gradient trouble.
public enum WeightChecks {
    /// The largest singular value of a `rows × cols` matrix, by power iteration on WᵀW
    /// (`iterations` rounds from a fixed start, so the result is reproducible).
    public static func spectralNorm(_ w: UnsafeBufferPointer<Float>, rows: Int, cols: Int, iterations: Int = 30) -> Double {
        guard rows > 0, cols > 0 else { return 0 }
        var v = [Double](repeating: 1 / Double(cols).squareRoot(), count: cols)
        var u = [Double](repeating: 0, count: rows)
        var sigma = 0.0
        for _ in 0..<iterations {
            for r in 0..<rows {
                var s = 0.0
                for c in 0..<cols { s += Double(w[r * cols + c]) * v[c] }
                u[r] = s
            }
            let un = u.reduce(0) { $0 + $1 * $1 }.squareRoot()
            guard un > 0, un.isFinite else { return un.isFinite ? 0 : .infinity }
            for r in 0..<rows { u[r] /= un }
            for c in 0..<cols {
                var s = 0.0
                for r in 0..<rows { s += Double(w[r * cols + c]) * u[r] }
                v[c] = s
            }
            sigma = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            guard sigma > 0 else { return 0 }
            for c in 0..<cols { v[c] /= sigma }
        }
        return sigma
    }

    /// Spectral norm of each gate block `[hidden, hidden]` of a recurrent weight
    /// `weight_hh` `[gates·hidden, hidden]`; the largest of them.
    public static func recurrentSpectralNorm(_ weightHH: Tensor) -> Double {
        guard weightHH.rank == 2, weightHH.shape[1] > 0, weightHH.shape[0] % weightHH.shape[1] == 0 else { return 0 }
        let h = weightHH.shape[1], gates = weightHH.shape[0] / h
        return weightHH.withUnsafeScalars { w in
            (0..<gates).map { g in
                spectralNorm(UnsafeBufferPointer(rebasing: w[(g * h * h)..<((g + 1) * h * h)]), rows: h, cols: h)
            }.max() ?? 0
        }
    }

    /// Standard deviation of a weight over its fan-in scale: std · √fan_in / gain. Kaiming
    /// initialisation for ReLU gives 1 with gain √2; values far from 1 compound with depth.
    public static func initialisationRatio(_ w: Tensor, gain: Double = 2.0.squareRoot()) -> (std: Double, expected: Double, fanIn: Int)? {
        guard w.rank >= 2, w.count > 1 else { return nil }
        let fanIn = w.count / w.shape[0]
        let (mean, sq) = w.withUnsafeScalars { b -> (Double, Double) in
            var s = 0.0, s2 = 0.0
            for v in b { s += Double(v); s2 += Double(v) * Double(v) }
            return (s / Double(b.count), s2 / Double(b.count))
        }
        let std = Swift.max(sq - mean * mean, 0).squareRoot()
        return (std, gain / Double(fanIn).squareRoot(), fanIn)
    }
}
