import Foundation

/// The top eigenvalue of a symmetric operator known only through its products with vectors
/// (a Hessian), by the Lanczos iteration with full re-orthogonalisation (Golub & Van Loan,
/// "Matrix Computations", 4th ed., §10.1): k products give the top eigenvalue of the
/// k-dimensional Krylov space, which converges to λ_max far faster than power iteration
/// (whose error shrinks only as (λ₂/λ₁)ᵏ) and finds the largest *algebraic* eigenvalue — the
/// one that limits a stable step — even when a negative one is larger in magnitude.
public enum Lanczos {
    /// The top Ritz pair and how it was found.
    public struct Result: Sendable {
        /// The largest Ritz value: λ_max of the operator restricted to the Krylov space.
        public let value: Double
        /// Its Ritz vector (unit length), a warm start for the next call.
        public let vector: [Double]
        /// Products taken.
        public let iterations: Int
        /// ‖A·y − θ·y‖ of the Ritz pair: the eigenvalue is within this of a true one.
        public let residual: Double
    }

    /// Runs at most `iterations` products of `apply` from `start` (any non-zero vector),
    /// stopping early once the top Ritz pair's residual is below `tolerance` × |θ| or the
    /// Krylov space is exhausted.
    public static func top(
        start: [Double], iterations: Int, tolerance: Double = 1e-4, apply: ([Double]) throws -> [Double]
    ) rethrows -> Result {
        let n = start.count
        var q = normalised(start)
        var basis: [[Double]] = []
        var alpha: [Double] = [], beta: [Double] = []
        var best = (value: Double.nan, y: [Double](), residual: Double.infinity)
        let k = Swift.max(1, Swift.min(iterations, n))
        for j in 0..<k {
            basis.append(q)
            var w = try apply(q)
            let a = dot(w, q)
            alpha.append(a)
            // Full re-orthogonalisation, twice ("twice is enough": Parlett).
            for _ in 0..<2 {
                for b in basis {
                    let c = dot(w, b)
                    for i in 0..<n { w[i] -= c * b[i] }
                }
            }
            let bNext = norm(w)
            let (theta, y) = topEigenpair(alpha, beta)
            let residual = Swift.abs(bNext * (y.last ?? 0))
            best = (theta, y, residual)
            if bNext <= 1e-12 * Swift.max(Swift.abs(a), 1) || residual <= tolerance * Swift.abs(theta) || j == k - 1 { break }
            beta.append(bNext)
            q = w.map { $0 / bNext }
        }
        var vector = [Double](repeating: 0, count: n)
        for (c, b) in zip(best.y, basis) { for i in 0..<n { vector[i] += c * b[i] } }
        return Result(value: best.value, vector: normalised(vector), iterations: alpha.count, residual: best.residual)
    }

    /// The largest eigenvalue of the symmetric tridiagonal matrix with diagonal `a` and
    /// off-diagonal `b` (count(b) = count(a) − 1), by Sturm-sequence bisection, and its unit
    /// eigenvector by inverse iteration.
    public static func topEigenpair(_ a: [Double], _ b: [Double]) -> (Double, [Double]) {
        let m = a.count
        if m == 1 { return (a[0], [1]) }
        var lo = Double.infinity, hi = -Double.infinity
        for i in 0..<m {
            let r = (i > 0 ? Swift.abs(b[i - 1]) : 0) + (i < m - 1 ? Swift.abs(b[i]) : 0)
            lo = Swift.min(lo, a[i] - r)
            hi = Swift.max(hi, a[i] + r)
        }
        // The number of eigenvalues below x: the negative pivots of T − xI (Sylvester's law).
        func below(_ x: Double) -> Int {
            var count = 0, d = 1.0
            for i in 0..<m {
                d = a[i] - x - (i > 0 ? b[i - 1] * b[i - 1] / d : 0)
                if d == 0 { d = -1e-300 }
                if d < 0 { count += 1 }
            }
            return count
        }
        let scale = Swift.max(Swift.abs(lo), Swift.abs(hi), 1e-300)
        for _ in 0..<200 where hi - lo > 4 * Double.ulpOfOne * scale {
            let mid = (lo + hi) / 2
            if below(mid) == m { hi = mid } else { lo = mid }
        }
        let theta = (lo + hi) / 2
        // Inverse iteration on the tridiagonal system (T − σI)y = y, σ just above θ.
        let sigma = theta + 1e-10 * scale
        var y = [Double](repeating: 1 / Double(m).squareRoot(), count: m)
        for _ in 0..<3 {
            y = normalised(solveTridiagonal(a.map { $0 - sigma }, b, y))
        }
        return (theta, y)
    }

    /// Solves the symmetric tridiagonal system with diagonal `d` and off-diagonal `e` by
    /// Gaussian elimination with partial pivoting (the matrix is near-singular by design).
    static func solveTridiagonal(_ d: [Double], _ e: [Double], _ rhs: [Double]) -> [Double] {
        let m = d.count
        // Rows as (sub, diag, sup, sup2) after pivoting: store the band densely.
        var rows = [[Double]](repeating: [Double](repeating: 0, count: m), count: m)
        for i in 0..<m {
            rows[i][i] = d[i]
            if i > 0 { rows[i][i - 1] = e[i - 1] }
            if i < m - 1 { rows[i][i + 1] = e[i] }
        }
        var x = rhs
        for c in 0..<m {
            var p = c
            for r in (c + 1)..<Swift.min(c + 2, m) where Swift.abs(rows[r][c]) > Swift.abs(rows[p][c]) { p = r }
            if p != c {
                rows.swapAt(p, c)
                x.swapAt(p, c)
            }
            if rows[c][c] == 0 { rows[c][c] = 1e-300 }
            for r in (c + 1)..<Swift.min(c + 2, m) {
                let f = rows[r][c] / rows[c][c]
                if f == 0 { continue }
                for j in c..<Swift.min(c + 3, m) { rows[r][j] -= f * rows[c][j] }
                x[r] -= f * x[c]
            }
        }
        for c in stride(from: m - 1, through: 0, by: -1) {
            var s = x[c]
            for j in (c + 1)..<Swift.min(c + 3, m) { s -= rows[c][j] * x[j] }
            x[c] = s / rows[c][c]
        }
        return x
    }

    static func dot(_ a: [Double], _ b: [Double]) -> Double {
        var s = 0.0
        for i in a.indices { s += a[i] * b[i] }
        return s
    }

    static func norm(_ a: [Double]) -> Double { dot(a, a).squareRoot() }

    static func normalised(_ a: [Double]) -> [Double] {
        let n = norm(a)
        return n > 0 && n.isFinite ? a.map { $0 / n } : a
    }
}
