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

    /// Fan-in of a weight of shape `[out, in, k…]`: `in` times the product of the kernel dims.
    public static func fanIn(_ shape: [Int]) -> Int {
        precondition(shape.count >= 2, "fan-in needs a weight of rank ≥ 2, got \(shape)")
        return shape.dropFirst().reduce(1, *)
    }

    /// He et al. (2015) normal initialisation for ReLU layers, fan-in mode:
    /// N(0, gain²/fanIn) with gain √2 (`torch.nn.init.kaiming_normal_(w, nonlinearity='relu')`).
    public static func kaimingNormal(_ shape: [Int], gain: Float = Float(2).squareRoot()) -> Tensor {
        normal(shape, std: gain / Float(fanIn(shape)).squareRoot())
    }

    /// Zeros.
    public static func zeros(_ shape: [Int]) -> Tensor { constant(shape, 0) }
}
