import Foundation
import GradGuardNN
import GradGuardTensor

/// A character model a run can train and sample from: the recurrent `CharLanguageModel` and
/// the decoder-only `CharTransformer`.
public protocol CharacterModel: Module {
    var vocabularySize: Int { get }
    /// Cross-entropy of the next characters of `inputs` `[B, T]` against `targets` `[B, T]`,
    /// plus `zLossWeight`·log²Z of the logits (PaLM's z-loss) when positive.
    func loss(_ inputs: Tensor, _ targets: Tensor, zLossWeight: Float) -> Tensor
    /// Continues `prompt` by `length` characters sampled at `temperature` (0: the most likely),
    /// from the `topK` most likely when given; `emit` receives each as it is drawn.
    func generate(prompt: [Int], length: Int, temperature: Double, topK: Int?, seed: UInt64, emit: ((Int) -> Void)?) -> [Int]
}

extension CharLanguageModel: CharacterModel {}

/// A decoder-only transformer over characters (GPT-2's shape at a small size): token and
/// learned position embeddings, `layers` pre-norm blocks of causal self-attention and a
/// feed-forward network of 4× the width, a final LayerNorm and a linear head over the
/// vocabulary. `qkNorm` RMS-normalises every head's queries and keys (OLMo 2, Qwen 3), which
/// keeps the attention logits bounded. Initialisation GPT-2's: N(0, 0.02²) for embeddings and
/// projections, the residual projections scaled by 1/√(2·layers).
public final class CharTransformer: Module, UnaryLayer, CharacterModel {
    /// The character embedding.
    public let token: Embedding
    /// The learned positions.
    public let position: PositionalEmbedding
    /// The pre-norm blocks, each with causal self-attention.
    public let blocks: [TransformerEncoderLayer]
    /// The final normalisation.
    public let norm: LayerNorm
    /// The projection onto the vocabulary.
    public let head: Linear
    /// The vocabulary's size.
    public let vocabularySize: Int
    /// The longest context the model reads (its position table's length).
    public let context: Int

    /// A transformer over `vocabularySize` characters reading at most `context` of them.
    public init(vocabularySize: Int, width: Int = 64, heads: Int = 4, layers: Int = 2, context: Int = 64, dropout: Float = 0, qkNorm: Bool = false) {
        (self.vocabularySize, self.context) = (vocabularySize, context)
        let projection = Initializer.normal(std: 0.02)
        let residual = Initializer.normal(std: 0.02 / Float(2 * layers).squareRoot())
        token = Embedding(numEmbeddings: vocabularySize, embeddingDim: width, weightInit: projection)
        position = PositionalEmbedding(maxLength: context, dim: width)
        blocks = (0..<layers).map { _ in
            let b = TransformerEncoderLayer(
                dModel: width, heads: heads, dimFeedforward: 4 * width, dropout: dropout, activation: .gelu, batchFirst: true, normFirst: true,
                qkNorm: qkNorm)
            b.selfAttention.inProjWeight.assign(projection.make(b.selfAttention.inProjWeight.shape))
            b.selfAttention.outProj.weight.assign(residual.make(b.selfAttention.outProj.weight.shape))
            b.linear1.weight.assign(projection.make(b.linear1.weight.shape))
            b.linear2.weight.assign(residual.make(b.linear2.weight.shape))
            for bias in [b.linear1.bias, b.linear2.bias] { bias?.assign(Tensor.zeros(bias!.shape)) }
            return b
        }
        norm = LayerNorm(width)
        head = Linear(inputSize: width, outputSize: vocabularySize, weightInit: projection, biasInit: .zeros)
        super.init()
    }

    /// `[B, T]` character ids (T ≤ `context`) → `[B, T, vocabulary]` logits, each position
    /// seeing only those before it.
    public func forward(_ x: Tensor) -> Tensor {
        var h = position(token(x))
        for b in blocks { h = b(h, isCausal: true) }
        return head(norm(h))
    }

    /// Cross-entropy of the next characters, plus `zLossWeight`·log²Z when positive.
    public func loss(_ inputs: Tensor, _ targets: Tensor, zLossWeight: Float = 0) -> Tensor {
        let logits = self(inputs).reshaped([-1, vocabularySize])
        let ce = crossEntropy(logits, targets.reshaped([-1]))
        return zLossWeight > 0 ? ce + zLoss(logits, weight: zLossWeight) : ce
    }

    /// Each new character from the last `context` characters, read again whole (no cache: the
    /// models are small and the texts short).
    public func generate(
        prompt: [Int], length: Int, temperature: Double = 1, topK: Int? = nil, seed: UInt64 = 0, emit: ((Int) -> Void)? = nil
    ) -> [Int] {
        var g = RandomGenerator(seed: seed)
        var ids = prompt.isEmpty ? [0] : prompt
        for _ in 0..<length {
            let window = Array(ids.suffix(context))
            let logits = inferring { self(Tensor(shape: [1, window.count], scalars: window.map(Float.init))) }
            let last = Array(logits.scalars.suffix(vocabularySize)).map(Double.init)
            let pick = CharSampling.draw(last, temperature: temperature, topK: topK, generator: &g)
            ids.append(pick)
            emit?(pick)
        }
        return Array(ids.suffix(length))
    }
}

/// Drawing the next character from logits (shared by the character models).
enum CharSampling {
    /// The most likely index at temperature 0; otherwise one drawn from the softmax of
    /// `logits / temperature` over the `topK` most likely (all when nil).
    static func draw(_ logits: [Double], temperature: Double, topK: Int?, generator g: inout RandomGenerator) -> Int {
        var order = Array(logits.indices).sorted { logits[$0] > logits[$1] }
        if temperature <= 0 { return order[0] }
        if let topK { order = Array(order.prefix(Swift.max(1, topK))) }
        let m = order.map { logits[$0] }.max()!
        let weights = order.map { Foundation.exp((logits[$0] - m) / temperature) }
        var r = g.nextUniform() * weights.reduce(0, +)
        for (i, w) in zip(order, weights) {
            r -= w
            if r <= 0 { return i }
        }
        return order.last!
    }
}
