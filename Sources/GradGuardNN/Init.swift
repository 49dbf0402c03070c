import Foundation
import GradGuardTensor

/// The non-linearity a weight feeds, for the recommended gain of `torch.nn.init.calculate_gain`.
public enum Nonlinearity: Sendable, Equatable {
    case linear, sigmoid, tanh, relu, selu
    case leakyRelu(negativeSlope: Float)

    /// linear/sigmoid 1, tanh 5/3, relu √2, leaky ReLU √(2/(1+a²)), SELU 3/4.
    public var gain: Float {
        switch self {
        case .linear, .sigmoid: return 1
        case .tanh: return 5.0 / 3
        case .relu: return Float(2).squareRoot()
        case .selu: return 0.75
        case .leakyRelu(let a): return (2 / (1 + a * a)).squareRoot()
        }
    }
}

/// Whether a Kaiming initialiser preserves the variance of activations (fan-in) or of
/// gradients (fan-out).
public enum FanMode: Sendable { case fanIn, fanOut }

/// A recipe that makes a parameter of a given shape. Every layer takes one as an override
/// of its default; each draws from the default generator (`DefaultGenerator.seed`).
///
/// ```swift
/// let fc = Linear(inputSize: 256, outputSize: 256, weightInit: .kaimingNormal(nonlinearity: .relu))
/// let rnn = LSTM(inputSize: 64, hiddenSize: 128, recurrentInit: .orthogonal())
/// ```
public struct Initializer: Sendable {
    /// Makes a tensor of the given shape that requires gradients.
    public let make: @Sendable ([Int]) -> Tensor

    /// An initialiser from a function of the shape.
    public init(_ make: @escaping @Sendable ([Int]) -> Tensor) { self.make = make }

    /// U(low, high).
    public static func uniform(low: Float = 0, high: Float = 1) -> Initializer {
        Initializer { Init.uniform($0, low: low, high: high) }
    }
    /// N(mean, std²).
    public static func normal(mean: Float = 0, std: Float = 1) -> Initializer {
        Initializer { Init.normal($0, mean: mean, std: std) }
    }
    /// Every value `value`.
    public static func constant(_ value: Float) -> Initializer { Initializer { Init.constant($0, value) } }
    /// Every value zero.
    public static var zeros: Initializer { Initializer { Init.zeros($0) } }
    /// Glorot & Bengio (2010): U(−a, a), a = gain·√(6/(fan-in + fan-out)).
    public static func xavierUniform(gain: Float = 1) -> Initializer { Initializer { Init.xavierUniform($0, gain: gain) } }
    /// Glorot & Bengio (2010): N(0, gain²·2/(fan-in + fan-out)).
    public static func xavierNormal(gain: Float = 1) -> Initializer { Initializer { Init.xavierNormal($0, gain: gain) } }
    /// He et al. (2015): U(−b, b), b = gain·√(3/fan), fan-in or fan-out by `mode`.
    public static func kaimingUniform(mode: FanMode = .fanIn, nonlinearity: Nonlinearity = .leakyRelu(negativeSlope: 0)) -> Initializer {
        Initializer { Init.kaimingUniform($0, mode: mode, nonlinearity: nonlinearity) }
    }
    /// He et al. (2015): N(0, gain²/fan), fan-in or fan-out by `mode`.
    public static func kaimingNormal(mode: FanMode = .fanIn, nonlinearity: Nonlinearity = .leakyRelu(negativeSlope: 0)) -> Initializer {
        Initializer { Init.kaimingNormal($0, mode: mode, nonlinearity: nonlinearity) }
    }
    /// Saxe et al. (2014): a (semi-)orthogonal matrix times `gain`, from the QR decomposition of a Gaussian one.
    public static func orthogonal(gain: Float = 1) -> Initializer { Initializer { Init.orthogonal($0, gain: gain) } }
    /// LeCun: N(0, 1/fan-in).
    public static var lecunNormal: Initializer { Initializer { Init.lecunNormal($0) } }
}

/// Parameter initialisers with the formulas of `torch.nn.init`. Each returns a new tensor
/// that requires gradients.
public enum Init {
    /// U(low, high).
    public static func uniform(_ shape: [Int], low: Float, high: Float) -> Tensor {
        Tensor.rand(shape, low: low, high: high, requiresGrad: true)
    }

    /// N(mean, std²).
    public static func normal(_ shape: [Int], mean: Float = 0, std: Float = 1) -> Tensor {
        Tensor.randn(shape, mean: mean, std: std, requiresGrad: true)
    }

    /// A constant.
    public static func constant(_ shape: [Int], _ value: Float) -> Tensor {
        Tensor.full(shape, value, requiresGrad: true)
    }

    /// Zeros.
    public static func zeros(_ shape: [Int]) -> Tensor { constant(shape, 0) }

    /// (fan-in, fan-out) of a weight `[out, in, k…]`: in·receptive field, out·receptive field.
    public static func fans(_ shape: [Int]) -> (fanIn: Int, fanOut: Int) {
        require(shape.count >= 2, "fan-in and fan-out need a weight of rank ≥ 2, got \(shape)")
        let receptive = shape.dropFirst(2).reduce(1, *)
        return (shape[1] * receptive, shape[0] * receptive)
    }

    /// Fan-in of a weight of shape `[out, in, k…]`.
    public static func fanIn(_ shape: [Int]) -> Int { fans(shape).fanIn }

    /// Glorot & Bengio (2010): U(−a, a), a = gain·√(6/(fan-in + fan-out)).
    public static func xavierUniform(_ shape: [Int], gain: Float = 1) -> Tensor {
        let (i, o) = fans(shape)
        let a = gain * (6 / Float(i + o)).squareRoot()
        return uniform(shape, low: -a, high: a)
    }

    /// Glorot & Bengio (2010): N(0, σ²), σ = gain·√(2/(fan-in + fan-out)).
    public static func xavierNormal(_ shape: [Int], gain: Float = 1) -> Tensor {
        let (i, o) = fans(shape)
        return normal(shape, std: gain * (2 / Float(i + o)).squareRoot())
    }

    private static func kaimingStd(_ shape: [Int], mode: FanMode, nonlinearity: Nonlinearity) -> Float {
        let (i, o) = fans(shape)
        return nonlinearity.gain / Float(mode == .fanIn ? i : o).squareRoot()
    }

    /// He et al. (2015): U(−b, b), b = gain·√(3/fan). PyTorch's default for Linear and
    /// Conv weights is this with `.leakyRelu(negativeSlope: √5)`, which gives b = 1/√fan-in.
    public static func kaimingUniform(
        _ shape: [Int], mode: FanMode = .fanIn,
        nonlinearity: Nonlinearity = .leakyRelu(negativeSlope: 0)
    ) -> Tensor {
        let b = Float(3).squareRoot() * kaimingStd(shape, mode: mode, nonlinearity: nonlinearity)
        return uniform(shape, low: -b, high: b)
    }

    /// He et al. (2015): N(0, σ²), σ = gain/√fan (ReLU gain √2 by default).
    public static func kaimingNormal(
        _ shape: [Int], mode: FanMode = .fanIn,
        nonlinearity: Nonlinearity = .leakyRelu(negativeSlope: 0)
    ) -> Tensor {
        normal(shape, std: kaimingStd(shape, mode: mode, nonlinearity: nonlinearity))
    }

    /// LeCun normal: N(0, 1/fan-in).
    public static func lecunNormal(_ shape: [Int]) -> Tensor {
        normal(shape, std: 1 / Float(fanIn(shape)).squareRoot())
    }

    /// Saxe et al. (2014): a (semi-)orthogonal matrix times `gain`, from the QR decomposition
    /// of a Gaussian matrix with the signs of R's diagonal folded into Q, so that the result
    /// is uniformly distributed (as `torch.nn.init.orthogonal_`). Dimensions past the first
    /// are flattened; with more rows than columns the columns are orthonormal, otherwise the rows.
    public static func orthogonal(_ shape: [Int], gain: Float = 1) -> Tensor {
        require(shape.count >= 2, "orthogonal needs a weight of rank ≥ 2, got \(shape)")
        let rows = shape[0], cols = shape.dropFirst().reduce(1, *)
        let tall = rows >= cols
        let (m, n) = tall ? (rows, cols) : (cols, rows)  // factor an m × n matrix, m ≥ n
        var a = DefaultGenerator.with { g in (0..<(m * n)).map { _ in g.nextNormal() } }
        // Modified Gram–Schmidt on the columns of a (row-major m × n), in Double.
        for j in 0..<n {
            for k in 0..<j {
                var dot = 0.0
                for i in 0..<m { dot += a[i * n + k] * a[i * n + j] }
                for i in 0..<m { a[i * n + j] -= dot * a[i * n + k] }
            }
            var norm = 0.0
            for i in 0..<m { norm += a[i * n + j] * a[i * n + j] }
            norm = norm.squareRoot()
            // R's diagonal is the positive norm here, so Q is already sign-normalised.
            for i in 0..<m { a[i * n + j] /= norm }
        }
        var values = [Float](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            for c in 0..<cols {
                values[r * cols + c] = gain * Float(tall ? a[r * n + c] : a[c * n + r])
            }
        }
        return Tensor(shape: shape, scalars: values, requiresGrad: true)
    }
}
