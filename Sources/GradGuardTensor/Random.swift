import Foundation
import Synchronization

/// A seedable pseudo-random generator: xoshiro256** (Blackman & Vigna, 2018), seeded
/// through SplitMix64. Integer arithmetic only, so the same seed gives the same bits on
/// every machine; normal variates use Box–Muller in Double.
public struct RandomGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)
    private var spareNormal: Double?

    /// A generator whose state is expanded from `seed` by SplitMix64 (the same numbers on every machine).
    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    /// The next 64 random bits (xoshiro256**).
    public mutating func next() -> UInt64 {
        let result = rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = rotl(s.3, 45)
        return result
    }

    private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextUniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Standard normal (Box–Muller; the second variate of each pair is kept for the next call).
    public mutating func nextNormal() -> Double {
        if let z = spareNormal { spareNormal = nil; return z }
        var u1 = nextUniform()
        while u1 <= 0 { u1 = nextUniform() }
        let u2 = nextUniform()
        let r = (-2 * Foundation.log(u1)).squareRoot()
        spareNormal = r * Foundation.sin(2 * .pi * u2)
        return r * Foundation.cos(2 * .pi * u2)
    }

    /// The complete state, for checkpoints.
    public var state: [UInt64] { [s.0, s.1, s.2, s.3, spareNormal.map { $0.bitPattern } ?? 0, spareNormal == nil ? 0 : 1] }

    /// Restores a state returned by `state`.
    public init?(state: [UInt64]) {
        guard state.count == 6 else { return nil }
        s = (state[0], state[1], state[2], state[3])
        spareNormal = state[5] == 1 ? Double(bitPattern: state[4]) : nil
    }
}

/// The process-wide default generator used when no generator is passed.
public enum DefaultGenerator {
    static let shared = Mutex(RandomGenerator(seed: 0))

    /// Re-seeds the default generator (PyTorch's `torch.manual_seed`).
    public static func seed(_ seed: UInt64) { shared.withLock { $0 = RandomGenerator(seed: seed) } }

    /// Runs `body` with exclusive access to the default generator.
    public static func with<R>(_ body: (inout RandomGenerator) -> R) -> R {
        shared.withLock { body(&$0) }
    }
}

// MARK: - Random tensors

extension Tensor {
    /// Values from N(mean, std²).
    public static func randn(
        _ shape: [Int], mean: Float = 0, std: Float = 1, requiresGrad: Bool = false,
        generator: inout RandomGenerator
    ) -> Tensor {
        let n = shape.reduce(1, *)
        let v = (0..<n).map { _ in Float(Double(mean) + Double(std) * generator.nextNormal()) }
        return Tensor(shape: shape, scalars: v, requiresGrad: requiresGrad)
    }

    /// Values from U[low, high).
    public static func rand(
        _ shape: [Int], low: Float = 0, high: Float = 1, requiresGrad: Bool = false,
        generator: inout RandomGenerator
    ) -> Tensor {
        let n = shape.reduce(1, *)
        let v = (0..<n).map { _ in Float(Double(low) + Double(high - low) * generator.nextUniform()) }
        return Tensor(shape: shape, scalars: v, requiresGrad: requiresGrad)
    }

    /// Integers uniform in [low, high), stored as Float values.
    public static func randint(_ shape: [Int], low: Int = 0, high: Int, generator: inout RandomGenerator) -> Tensor {
        require(high > low, "randint needs high > low")
        let span = UInt64(high - low)
        let n = shape.reduce(1, *)
        let v = (0..<n).map { _ in Float(low + Int(generator.next(upperBound: span))) }
        return Tensor(shape: shape, scalars: v)
    }

    /// `randn` from the default generator.
    public static func randn(_ shape: [Int], mean: Float = 0, std: Float = 1, requiresGrad: Bool = false) -> Tensor {
        DefaultGenerator.with { randn(shape, mean: mean, std: std, requiresGrad: requiresGrad, generator: &$0) }
    }

    /// `rand` from the default generator.
    public static func rand(_ shape: [Int], low: Float = 0, high: Float = 1, requiresGrad: Bool = false) -> Tensor {
        DefaultGenerator.with { rand(shape, low: low, high: high, requiresGrad: requiresGrad, generator: &$0) }
    }

    /// `randint` from the default generator.
    public static func randint(_ shape: [Int], low: Int = 0, high: Int) -> Tensor {
        DefaultGenerator.with { randint(shape, low: low, high: high, generator: &$0) }
    }
}
