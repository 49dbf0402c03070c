import GradGuardTensor

// MARK: - Linear

/// `y = x · Wᵀ + b` with `weight` of shape `[outputSize, inputSize]` and `bias` of shape
/// `[outputSize]`, as `torch.nn.Linear`.
///
/// Default initialisation (PyTorch's): weight from kaiming-uniform with a = √5, which is
/// U(−1/√in, 1/√in); bias from U(−1/√in, 1/√in). `weightInit`/`biasInit` override them.
public final class Linear: Module, UnaryLayer {
    /// The weights, `[outputSize, inputSize]`.
    public var weight: Tensor
    /// The bias, `[outputSize]`; nil when built with `bias: false`.
    public var bias: Tensor?

    /// A layer from `inputSize` to `outputSize` features with PyTorch's initialisation unless overridden.
    public init(
        inputSize: Int, outputSize: Int, bias: Bool = true,
        weightInit: Initializer? = nil, biasInit: Initializer? = nil
    ) {
        let bound = 1 / Float(inputSize).squareRoot()
        let fallback = Initializer.uniform(low: -bound, high: bound)
        weight = (weightInit ?? fallback).make([outputSize, inputSize])
        self.bias = bias ? (biasInit ?? fallback).make([outputSize]) : nil
        super.init()
    }

    /// `x · Wᵀ + b` over the last dimension of `x`.
    public func forward(_ x: Tensor) -> Tensor { Tensor.linear(x, weight: weight, bias: bias) }
}

// MARK: - Sequential

/// Runs its layers in order; their names are their positions (`0.weight`, `2.bias`).
public final class Sequential: Module, UnaryLayer {
    /// The layers, run in order.
    public let layers: [any UnaryLayer]

    /// Runs `layers` in order.
    public init(_ layers: [any UnaryLayer]) {
        self.layers = layers
        super.init()
    }

    /// Runs `layers` in order.
    public convenience init(_ layers: any UnaryLayer...) { self.init(layers) }

    public override func namedChildren() -> [(name: String, module: Module)] {
        layers.enumerated().map { ("\($0.offset)", $0.element as Module) }
    }

    /// Each layer's output fed to the next.
    public func forward(_ x: Tensor) -> Tensor {
        layers.reduce(x) { $1($0) }
    }
}

// MARK: - Embedding

/// A lookup table `[numEmbeddings, embeddingDim]` indexed by integer ids (stored as Float
/// values), as `torch.nn.Embedding`. Default initialisation N(0, 1); the row of
/// `paddingIndex`, if given, starts at zero and receives no gradient.
public final class Embedding: Module, UnaryLayer {
    /// The table, `[numEmbeddings, embeddingDim]`.
    public var weight: Tensor
    /// The id whose row stays zero and receives no gradient, if any.
    public let paddingIndex: Int?

    /// A table of `numEmbeddings` rows of `embeddingDim` values, N(0, 1) unless overridden.
    public init(numEmbeddings: Int, embeddingDim: Int, paddingIndex: Int? = nil, weightInit: Initializer? = nil) {
        weight = (weightInit ?? .normal()).make([numEmbeddings, embeddingDim])
        self.paddingIndex = paddingIndex
        super.init()
        if let p = paddingIndex {
            weight.withUnsafeMutableScalars { w in
                for j in 0..<embeddingDim { w[p * embeddingDim + j] = 0 }
            }
        }
    }

    /// The rows of `ids` (any shape of integer ids stored as floats), with a trailing `embeddingDim` dimension.
    public func forward(_ ids: Tensor) -> Tensor {
        let out = weight.indexSelect(axis: 0, indices: ids)
        guard let p = paddingIndex, ids.scalars.contains(Float(p)) else { return out }
        // Zero the padding positions' gradient by masking the output (their rows stay constant).
        let mask = ids.ne(Float(p)).unsqueezed(-1)
        return out * mask + out.detach() * (1 - mask)
    }
}

// MARK: - Activations

/// max(0, x), as `torch.nn.ReLU`.
public final class ReLU: Module, UnaryLayer {
    public override init() { super.init() }
    /// max(0, x) element-wise.
    public func forward(_ x: Tensor) -> Tensor { x.relu() }
}

/// x for x ≥ 0, `negativeSlope`·x otherwise, as `torch.nn.LeakyReLU`.
public final class LeakyReLU: Module, UnaryLayer {
    /// The slope for negative inputs.
    public let negativeSlope: Float
    /// A leaky ReLU with the given slope (PyTorch's default 0.01).
    public init(negativeSlope: Float = 0.01) { self.negativeSlope = negativeSlope; super.init() }
    /// The activation element-wise.
    public func forward(_ x: Tensor) -> Tensor { x.leakyRelu(negativeSlope: negativeSlope) }
}

/// The hyperbolic tangent, as `torch.nn.Tanh`.
public final class Tanh: Module, UnaryLayer {
    public override init() { super.init() }
    /// tanh(x) element-wise.
    public func forward(_ x: Tensor) -> Tensor { x.tanh() }
}

/// 1/(1 + e⁻ˣ), as `torch.nn.Sigmoid`.
public final class Sigmoid: Module, UnaryLayer {
    public override init() { super.init() }
    /// The sigmoid element-wise.
    public func forward(_ x: Tensor) -> Tensor { x.sigmoid() }
}

/// x·sigmoid(x) (swish), as `torch.nn.SiLU`.
public final class SiLU: Module, UnaryLayer {
    public override init() { super.init() }
    /// x·sigmoid(x) element-wise.
    public func forward(_ x: Tensor) -> Tensor { x.silu() }
}

/// x·Φ(x), exact or with the tanh approximation, as `torch.nn.GELU`.
public final class GELU: Module, UnaryLayer {
    /// Whether the tanh approximation is used (PyTorch's `approximate="tanh"`).
    public let approximate: Bool
    /// GELU, exact by default.
    public init(approximate: Bool = false) { self.approximate = approximate; super.init() }
    /// The activation element-wise.
    public func forward(_ x: Tensor) -> Tensor { x.gelu(approximate: approximate) }
}

// MARK: - Dropout

/// Zeroes each value with probability `p` in training and scales the rest by 1/(1−p);
/// the identity in evaluation mode. Masks come from the default generator
/// (`DefaultGenerator.seed`), or from the module's own when one is given.
public final class Dropout: Module, UnaryLayer {
    /// The probability of zeroing each value.
    public let p: Float
    /// The layer's own generator for its masks (nil: the default generator).
    public var generator: RandomGenerator?

    /// Dropout with probability `p` in [0, 1].
    public init(p: Float = 0.5, generator: RandomGenerator? = nil) {
        require(p >= 0 && p <= 1, "dropout probability \(p) is outside [0, 1]")
        self.p = p
        self.generator = generator
        super.init()
    }

    /// `x` with values zeroed and the rest scaled by 1/(1−p) in training; `x` itself in evaluation.
    public func forward(_ x: Tensor) -> Tensor {
        guard training, p > 0 else { return x }
        if generator != nil { return Self.apply(x, p: p, generator: &generator!) }
        return DefaultGenerator.with { Self.apply(x, p: p, generator: &$0) }
    }

    /// `x` with each value zeroed with probability `p` and the rest scaled by 1/(1−p), the
    /// mask drawn from the default generator (dropout inside a layer, as attention weights').
    public static func apply(_ x: Tensor, p: Float) -> Tensor {
        DefaultGenerator.with { apply(x, p: p, generator: &$0) }
    }

    static func apply(_ x: Tensor, p: Float, generator g: inout RandomGenerator) -> Tensor {
        if p == 1 { return x * 0 }
        let keep = 1 - p
        let scale = 1 / keep
        let values = (0..<x.count).map { _ in g.nextUniform() < Double(keep) ? scale : 0 }
        return x * Tensor(shape: x.shape, scalars: values)
    }
}
