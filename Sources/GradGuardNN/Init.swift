import GradGuardTensor

/// Parameter initialisers. Each returns a new tensor that requires gradients, drawn from
/// the default generator (`DefaultGenerator.seed`) unless one is given.
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
}
