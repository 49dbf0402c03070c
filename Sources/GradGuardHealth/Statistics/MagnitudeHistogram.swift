import Foundation
import GradGuardTensor

/// Counts of |value| in log-spaced bins, with zeros, NaN and ±Inf counted apart.
///
/// Bin k holds 10^(lowestExponent + k/binsPerDecade) ≤ |v| < 10^(lowestExponent + (k+1)/binsPerDecade);
/// values below the first edge go to `underflow`, values at or above the last to `overflow`.
public struct MagnitudeHistogram: Sendable, Codable, Equatable {
    /// The exponent of the first bin's lower edge.
    public let lowestExponent: Int
    /// The exponent of the last bin's upper edge.
    public let highestExponent: Int
    /// Bins per factor of 10.
    public let binsPerDecade: Int
    /// Values per bin.
    public var counts: [Int]
    /// Exact zeros, values below the first edge, at or above the last, NaNs and infinities.
    public var zeros = 0, underflow = 0, overflow = 0, nan = 0, infinite = 0

    /// An empty histogram over 10^lowest … 10^highest.
    public init(lowestExponent: Int = -12, highestExponent: Int = 4, binsPerDecade: Int = 2) {
        require(highestExponent > lowestExponent && binsPerDecade > 0, "MagnitudeHistogram: empty range")
        self.lowestExponent = lowestExponent
        self.highestExponent = highestExponent
        self.binsPerDecade = binsPerDecade
        counts = [Int](repeating: 0, count: (highestExponent - lowestExponent) * binsPerDecade)
    }

    /// Lower edge of bin k.
    public func lowerEdge(_ k: Int) -> Double {
        Foundation.pow(10, Double(lowestExponent) + Double(k) / Double(binsPerDecade))
    }

    /// Adds every value of `values`.
    public mutating func add(_ values: UnsafeBufferPointer<Float>) {
        let lo = Double(lowestExponent), scale = Double(binsPerDecade), bins = counts.count
        for v in values {
            if v.isNaN { nan += 1; continue }
            if v.isInfinite { infinite += 1; continue }
            let a = Swift.abs(Double(v))
            if a == 0 { zeros += 1; continue }
            let k = Int(((Foundation.log10(a) - lo) * scale).rounded(.down))
            if k < 0 { underflow += 1 } else if k >= bins { overflow += 1 } else { counts[k] += 1 }
        }
    }

    /// The histogram of every gradient of `parameters`.
    public static func ofGradients(
        _ parameters: [NamedParameter], lowestExponent: Int = -12, highestExponent: Int = 4,
        binsPerDecade: Int = 2
    ) -> MagnitudeHistogram {
        var h = MagnitudeHistogram(lowestExponent: lowestExponent, highestExponent: highestExponent, binsPerDecade: binsPerDecade)
        for p in parameters { p.tensor.grad?.withUnsafeScalars { h.add($0) } }
        return h
    }
}
