import GradGuardTensor

/// A module that measures its largest attention logit on each forward pass: the quantity
/// QK-clip watches (Kimi K2's MuonClip caps it at τ = 100), and the one that grows without
/// bound before the attention-logit-growth instability of Dehghani et al. (2023) and
/// Wortsman et al. (2023). The gradient guard reads it after every step.
public protocol AttentionLogitReporting: Module {
    /// The largest scaled logit q·k/√d of the latest training forward pass (before masking,
    /// over every head and position), or nil before the first.
    var maxAttentionLogit: Float? { get }
}

/// Multi-head attention, as `torch.nn.MultiheadAttention` (with `kdim == vdim == embedDim`):
/// the packed projection `in_proj_weight` `[3E, E]` and `in_proj_bias` `[3E]` (rows of q, k,
/// v in that order), `out_proj` a `Linear(E, E)`; inputs `[T, B, E]`, or `[B, T, E]` with
/// `batchFirst`, or `[T, E]` unbatched. Initialisation as PyTorch's: `in_proj_weight`
/// Xavier-uniform, both biases zero, `out_proj.weight` Linear's default.
///
/// Masks follow PyTorch's meaning: `keyPaddingMask` `[B, S]` is nonzero at keys to ignore
/// (PyTorch's `True`); `attentionMask` `[T, S]` or `[B·heads, T, S]` is added to the logits
/// (a float mask: `-infinity` forbids); `isCausal` adds the causal mask
/// (`Tensor.causalMask`). With `qkNorm` the queries and keys of every head are RMS-normalised
/// before their product (QK-norm, as in OLMo 2 and Qwen 3; `q_norm.weight`, `k_norm.weight`
/// of size `embedDim / heads`), which bounds the logits.
///
/// ```swift
/// let attention = MultiheadAttention(embedDim: 64, heads: 4, batchFirst: true)
/// let (y, weights) = attention(x, x, x, isCausal: true)   // self-attention, [B, T, 64]
/// ```
public final class MultiheadAttention: Module, AttentionLogitReporting {
    /// The packed projection of queries, keys and values, `[3·embedDim, embedDim]` (PyTorch's `in_proj_weight`).
    public var inProjWeight: Tensor
    /// The packed projection's bias, `[3·embedDim]` (`in_proj_bias`); nil when built with `bias: false`.
    public var inProjBias: Tensor?
    /// The output projection (`out_proj`).
    public let outProj: Linear
    /// The RMS normalisation of each head's queries (`q_norm`), with `qkNorm`.
    public let qNorm: RMSNorm?
    /// The RMS normalisation of each head's keys (`k_norm`), with `qkNorm`.
    public let kNorm: RMSNorm?
    /// The model width E and the number of heads it divides into.
    public let embedDim: Int, heads: Int
    /// The probability of dropping an attention weight in training.
    public let dropout: Float
    /// Whether inputs and outputs are `[batch, time, features]` (otherwise `[time, batch, features]`).
    public let batchFirst: Bool
    /// The largest scaled logit of the latest training forward pass (`AttentionLogitReporting`).
    public private(set) var maxAttentionLogit: Float? = nil

    /// Attention over `heads` heads of width `embedDim / heads`; `qkNorm` normalises each head's queries and keys.
    public init(embedDim: Int, heads: Int, dropout: Float = 0, bias: Bool = true, batchFirst: Bool = false, qkNorm: Bool = false) {
        require(heads > 0 && embedDim % heads == 0, "MultiheadAttention: embedDim \(embedDim) does not divide into \(heads) heads")
        require(dropout >= 0 && dropout < 1, "MultiheadAttention: dropout \(dropout) is outside [0, 1)")
        (self.embedDim, self.heads, self.dropout, self.batchFirst) = (embedDim, heads, dropout, batchFirst)
        inProjWeight = Initializer.xavierUniform().make([3 * embedDim, embedDim])
        inProjBias = bias ? Init.zeros([3 * embedDim]) : nil
        outProj = Linear(inputSize: embedDim, outputSize: embedDim, bias: bias, biasInit: .zeros)
        qNorm = qkNorm ? RMSNorm(embedDim / heads) : nil
        kNorm = qkNorm ? RMSNorm(embedDim / heads) : nil
        super.init()
    }

    /// The size of one head.
    public var headDim: Int { embedDim / heads }

    // PyTorch's names: in_proj_weight, in_proj_bias, out_proj.*, and q_norm/k_norm.
    public override func localParameters() -> [(name: String, tensor: Tensor)] {
        [("in_proj_weight", inProjWeight)] + (inProjBias.map { [("in_proj_bias", $0)] } ?? [])
    }

    public override func namedChildren() -> [(name: String, module: Module)] {
        [("out_proj", outProj as Module)] + (qNorm.map { [("q_norm", $0 as Module)] } ?? []) + (kNorm.map { [("k_norm", $0 as Module)] } ?? [])
    }

    /// Attends from `query` `[T, B, E]` to `key` and `value` `[S, B, E]` (batch first with
    /// `batchFirst`); returns the output shaped as the query and, with `needWeights`, the
    /// attention weights `[B, T, S]` averaged over heads (or `[B, heads, T, S]` without
    /// `averageWeights`), as PyTorch returns them.
    public func callAsFunction(
        _ query: Tensor, _ key: Tensor, _ value: Tensor, keyPaddingMask: Tensor? = nil, attentionMask: Tensor? = nil,
        isCausal: Bool = false, needWeights: Bool = true, averageWeights: Bool = true
    ) -> (output: Tensor, weights: Tensor?) {
        scoped {
            attend(
                query, key, value, keyPaddingMask: keyPaddingMask, attentionMask: attentionMask, isCausal: isCausal, needWeights: needWeights,
                averageWeights: averageWeights)
        }
    }

    func attend(
        _ query: Tensor, _ key: Tensor, _ value: Tensor, keyPaddingMask: Tensor?, attentionMask: Tensor?, isCausal: Bool, needWeights: Bool,
        averageWeights: Bool
    ) -> (output: Tensor, weights: Tensor?) {
        let unbatched = query.rank == 2
        require(query.rank == 3 || unbatched, "MultiheadAttention: query \(query.shape) must be [T, B, E], [B, T, E] or [T, E]")
        require(query.shape.last == embedDim, "MultiheadAttention: query \(query.shape) does not end in embedDim \(embedDim)")
        // Batch first inside: [B, T, E].
        func batchMajor(_ t: Tensor) -> Tensor { unbatched ? t.unsqueezed(0) : batchFirst ? t : t.transposed(0, 1) }
        let q0 = batchMajor(query), k0 = batchMajor(key), v0 = batchMajor(value)
        let (b, t, s) = (q0.shape[0], q0.shape[1], k0.shape[1])
        require(
            k0.shape == v0.shape && k0.shape[0] == b && k0.shape.last == embedDim,
            "MultiheadAttention: key \(key.shape) and value \(value.shape) do not fit query \(query.shape)")
        let e = embedDim
        var q: Tensor, k: Tensor, v: Tensor
        if query === key && key === value {
            // Self-attention: one product for q, k and v.
            let qkv = Tensor.linear(q0, weight: inProjWeight, bias: inProjBias).split(sizes: [e, e, e], axis: -1)
            (q, k, v) = (qkv[0], qkv[1], qkv[2])
        } else {
            func project(_ x: Tensor, _ i: Int) -> Tensor {
                Tensor.linear(x, weight: inProjWeight.narrow(axis: 0, start: i * e, length: e), bias: inProjBias?.narrow(axis: 0, start: i * e, length: e))
            }
            (q, k, v) = (project(q0, 0), project(k0, 1), project(v0, 2))
        }
        // [B, L, E] → [B, heads, L, headDim]
        func split(_ x: Tensor, _ l: Int) -> Tensor { x.reshaped([b, l, heads, headDim]).permuted([0, 2, 1, 3]) }
        q = split(q, t)
        k = split(k, s)
        v = split(v, s)
        if let qNorm, let kNorm { (q, k) = (qNorm(q), kNorm(k)) }
        var logits = (q * (1 / Float(headDim).squareRoot())).matmul(k.transposed(-2, -1))  // [B, heads, T, S]
        if training && Autograd.isGradEnabled { maxAttentionLogit = logits.scalars.max() }
        if let attentionMask {
            require(
                attentionMask.shape == [t, s] || attentionMask.shape == [b * heads, t, s],
                "MultiheadAttention: attentionMask \(attentionMask.shape) must be [\(t), \(s)] or [\(b * heads), \(t), \(s)]")
            logits = logits + (attentionMask.rank == 2 ? attentionMask : attentionMask.reshaped([b, heads, t, s]))
        }
        if isCausal { logits = logits + Tensor.causalMask(t, s) }
        if let keyPaddingMask {
            require(keyPaddingMask.shape == [b, s], "MultiheadAttention: keyPaddingMask \(keyPaddingMask.shape) must be [\(b), \(s)]")
            let additive = Tensor(shape: [b, 1, 1, s], scalars: keyPaddingMask.scalars.map { $0 != 0 ? -Float.infinity : 0 })
            logits = logits + additive
        }
        var weights = logits.softmax(axis: -1)
        if training && dropout > 0 { weights = Dropout.apply(weights, p: dropout) }
        var out = weights.matmul(v).permuted([0, 2, 1, 3]).reshaped([b, t, e])
        out = outProj(out)
        out = unbatched ? out.squeezed(0) : batchFirst ? out : out.transposed(0, 1)
        guard needWeights else { return (out, nil) }
        var w = averageWeights ? weights.mean(axis: 1) : weights
        if unbatched { w = w.squeezed(0) }
        return (out, w)
    }
}

extension Tensor {
    /// The additive causal mask `[t, s]`: 0 where key j ≤ query i + (s − t), −∞ after
    /// (`nn.Transformer.generate_square_subsequent_mask` for t = s).
    public static func causalMask(_ t: Int, _ s: Int? = nil) -> Tensor {
        let s = s ?? t
        var values = [Float](repeating: 0, count: t * s)
        for i in 0..<t { for j in 0..<s where j > i + (s - t) { values[i * s + j] = -.infinity } }
        return Tensor(shape: [t, s], scalars: values)
    }
}

/// Root-mean-square normalisation over the trailing `normalizedShape` (Zhang & Sennrich,
/// 2019), `y = x / √(mean(x²) + eps) · weight`, as `torch.nn.RMSNorm` (eps defaults to
/// float32's machine epsilon, as PyTorch's `None`).
public final class RMSNorm: Module, UnaryLayer {
    /// The per-element scale (ones at the start); nil without `elementwiseAffine`.
    public var weight: Tensor?
    /// The trailing dimensions normalised over.
    public let normalizedShape: [Int]
    /// Added to the mean square before the square root.
    public let eps: Float

    /// Normalises over the trailing `normalizedShape`; `eps` nil is float32's machine epsilon.
    public init(_ normalizedShape: [Int], eps: Float? = nil, elementwiseAffine: Bool = true) {
        self.normalizedShape = normalizedShape
        self.eps = eps ?? Float.ulpOfOne
        weight = elementwiseAffine ? Init.constant(normalizedShape, 1) : nil
        super.init()
    }

    /// Normalises over the last dimension, of size `size`.
    public convenience init(_ size: Int, eps: Float? = nil, elementwiseAffine: Bool = true) {
        self.init([size], eps: eps, elementwiseAffine: elementwiseAffine)
    }

    /// `x / √(mean(x²) + eps) · weight` over the trailing dimensions.
    public func forward(_ x: Tensor) -> Tensor {
        require(
            Array(x.shape.suffix(normalizedShape.count)) == normalizedShape, "RMSNorm: input \(x.shape) does not end in \(normalizedShape)")
        let axes = Array((x.rank - normalizedShape.count)..<x.rank)
        let y = x / ((x * x).mean(axes: axes, keepDims: true) + eps).sqrt()
        return weight.map { y * $0 } ?? y
    }
}
