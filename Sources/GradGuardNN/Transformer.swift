import Foundation
import GradGuardTensor

/// One encoder block of a transformer, as `torch.nn.TransformerEncoderLayer`: self-attention
/// (`self_attn`) and a feed-forward network (`linear1` → activation → `linear2`), each with
/// dropout, a residual connection and a LayerNorm (`norm1`, `norm2`). Post-norm by default
/// (`x = norm1(x + attention(x))`, Vaswani et al. 2017); `normFirst` gives the pre-norm block
/// of GPT-2 and most models since (`x = x + attention(norm1(x))`), which trains without
/// warm-up far more often (Xiong et al. 2020). A causal mask makes it a decoder-only block.
///
/// ```swift
/// let block = TransformerEncoderLayer(dModel: 128, heads: 4, dimFeedforward: 512, dropout: 0.1,
///                                     batchFirst: true, normFirst: true)
/// let y = block(x, isCausal: true)   // [B, T, 128]
/// ```
public final class TransformerEncoderLayer: Module, UnaryLayer {
    /// The feed-forward activation (PyTorch's `"relu"` or `"gelu"`).
    public enum Activation: String, Sendable { case relu, gelu }

    /// The self-attention (`self_attn`).
    public let selfAttention: MultiheadAttention
    /// The feed-forward network's two projections (`linear1`: width → dimFeedforward, `linear2`: back).
    public let linear1: Linear, linear2: Linear
    /// The normalisations of the attention and feed-forward branches (`norm1`, `norm2`).
    public let norm1: LayerNorm, norm2: LayerNorm
    /// The dropout probability on the attention weights, the branches and the feed-forward hidden layer.
    public let dropout: Float
    /// The feed-forward activation.
    public let activation: Activation
    /// Whether each branch normalises its input (pre-norm) rather than the residual sum (post-norm).
    public let normFirst: Bool

    /// A block of width `dModel` with `heads` heads and a feed-forward network of `dimFeedforward`, PyTorch's defaults.
    public init(
        dModel: Int, heads: Int, dimFeedforward: Int = 2048, dropout: Float = 0.1, activation: Activation = .relu, layerNormEps: Float = 1e-5,
        batchFirst: Bool = false, normFirst: Bool = false, bias: Bool = true, qkNorm: Bool = false
    ) {
        selfAttention = MultiheadAttention(embedDim: dModel, heads: heads, dropout: dropout, bias: bias, batchFirst: batchFirst, qkNorm: qkNorm)
        linear1 = Linear(inputSize: dModel, outputSize: dimFeedforward, bias: bias)
        linear2 = Linear(inputSize: dimFeedforward, outputSize: dModel, bias: bias)
        norm1 = LayerNorm([dModel], eps: layerNormEps)
        norm2 = LayerNorm([dModel], eps: layerNormEps)
        (self.dropout, self.activation, self.normFirst) = (dropout, activation, normFirst)
        super.init()
    }

    public override func namedChildren() -> [(name: String, module: Module)] {
        [("self_attn", selfAttention), ("linear1", linear1), ("linear2", linear2), ("norm1", norm1), ("norm2", norm2)]
    }

    /// The block without masks.
    public func forward(_ x: Tensor) -> Tensor { forward(x, mask: nil, keyPaddingMask: nil, isCausal: false) }

    /// The block on `x` (`[T, B, E]`, or `[B, T, E]` with `batchFirst`) with the masks of
    /// `MultiheadAttention`.
    public func callAsFunction(_ x: Tensor, mask: Tensor? = nil, keyPaddingMask: Tensor? = nil, isCausal: Bool = false) -> Tensor {
        scoped { forward(x, mask: mask, keyPaddingMask: keyPaddingMask, isCausal: isCausal) }
    }

    func forward(_ x: Tensor, mask: Tensor?, keyPaddingMask: Tensor?, isCausal: Bool) -> Tensor {
        func attention(_ h: Tensor) -> Tensor {
            drop(selfAttention(h, h, h, keyPaddingMask: keyPaddingMask, attentionMask: mask, isCausal: isCausal, needWeights: false).output)
        }
        func feedForward(_ h: Tensor) -> Tensor {
            let a = linear1(h)
            return drop(linear2(drop(activation == .relu ? a.relu() : a.gelu())))
        }
        if normFirst {
            let h = x + attention(norm1(x))
            return h + feedForward(norm2(h))
        }
        let h = norm1(x + attention(x))
        return norm2(h + feedForward(h))
    }

    func drop(_ x: Tensor) -> Tensor { training && dropout > 0 ? Dropout.apply(x, p: dropout) : x }
}

/// Learned absolute positions (GPT-2's `wpe`): `weight` `[maxLength, dim]`, N(0, 0.02²) at
/// the start; adds the first T rows to `[B, T, dim]` input.
public final class PositionalEmbedding: Module, UnaryLayer {
    /// The positions' vectors, `[maxLength, dim]`.
    public var weight: Tensor
    /// The longest sequence it covers.
    public let maxLength: Int

    /// A table of `maxLength` learned positions of `dim` values, N(0, 0.02²) unless overridden.
    public init(maxLength: Int, dim: Int, weightInit: Initializer? = nil) {
        self.maxLength = maxLength
        weight = (weightInit ?? .normal(std: 0.02)).make([maxLength, dim])
        super.init()
    }

    /// `x` `[…, T, dim]` plus the first T positions.
    public func forward(_ x: Tensor) -> Tensor {
        let t = x.shape[x.rank - 2]
        require(t <= maxLength, "PositionalEmbedding: \(t) positions, at most \(maxLength)")
        return x + weight.narrow(axis: 0, start: 0, length: t)
    }
}

/// The fixed sinusoidal positions of Vaswani et al. (2017): PE(p, 2i) = sin(p / 10000^(2i/d)),
/// PE(p, 2i+1) = cos(…); adds the first T rows to `[B, T, dim]` input. Nothing to train or save.
public final class SinusoidalPositionalEncoding: Module, UnaryLayer {
    /// The fixed table, `[maxLength, dim]`.
    @Constant public var table: Tensor
    /// The longest sequence it covers.
    public let maxLength: Int

    /// The sinusoids of `maxLength` positions in `dim` values.
    public init(maxLength: Int, dim: Int) {
        self.maxLength = maxLength
        var values = [Float](repeating: 0, count: maxLength * dim)
        for p in 0..<maxLength {
            for i in stride(from: 0, to: dim, by: 2) {
                let angle = Double(p) / pow(10000.0, Double(i) / Double(dim))
                values[p * dim + i] = Float(sin(angle))
                if i + 1 < dim { values[p * dim + i + 1] = Float(cos(angle)) }
            }
        }
        table = Tensor(shape: [maxLength, dim], scalars: values)
        super.init()
    }

    /// `x` `[…, T, dim]` plus the first T positions' sinusoids.
    public func forward(_ x: Tensor) -> Tensor {
        let t = x.shape[x.rank - 2]
        require(t <= maxLength, "SinusoidalPositionalEncoding: \(t) positions, at most \(maxLength)")
        return x + table.narrow(axis: 0, start: 0, length: t)
    }
}
