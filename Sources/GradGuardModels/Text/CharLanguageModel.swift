import Foundation
import GradGuardNN
import GradGuardTensor

/// Embedding → LSTM (or GRU/RNN) stack → Linear over the vocabulary: the char-LSTM of the
/// reference workloads.
public final class CharLanguageModel: Module, UnaryLayer {
    /// The character embedding.
    public var embedding: Embedding
    /// The recurrent stack and its read-out over the vocabulary.
    public var core: SequenceModel
    /// The vocabulary's size.
    public let vocabularySize: Int

    /// A model over `vocabularySize` characters.
    public init(
        vocabularySize: Int, embeddingSize: Int = 64, hiddenSize: Int = 128, layers: Int = 1,
        cell: SequenceModel.Cell = .lstm
    ) {
        self.vocabularySize = vocabularySize
        embedding = Embedding(numEmbeddings: vocabularySize, embeddingDim: embeddingSize)
        core = SequenceModel(
            cell: cell, inputSize: embeddingSize, hiddenSize: hiddenSize, outputSize: vocabularySize,
            layers: layers, perStep: true, forgetGateBias: cell == .lstm ? 1 : nil)
        super.init()
    }

    /// `[B, T]` character ids → `[B, T, vocabulary]` logits.
    public func forward(_ x: Tensor) -> Tensor { core(embedding(x)) }

    /// Mean cross-entropy of the next-character predictions, in nats.
    /// Cross-entropy of the next characters, plus `zLossWeight`·log²Z of the logits (PaLM's
    /// z-loss, `zLoss`) when it is positive.
    public func loss(_ inputs: Tensor, _ targets: Tensor, zLossWeight: Float = 0) -> Tensor {
        let logits = self(inputs).reshaped([-1, vocabularySize])
        let ce = crossEntropy(logits, targets.reshaped([-1]))
        return zLossWeight > 0 ? ce + zLoss(logits, weight: zLossWeight) : ce
    }

    /// `[B, T]` character ids from `state` (zeros when nil) → `[B, T, vocabulary]` logits and
    /// the recurrent state after the last character.
    public func forward(_ x: Tensor, state: SequenceModel.State?) -> (logits: Tensor, state: SequenceModel.State) {
        let r = core.forward(embedding(x), state: state)
        return (r.output, r.state)
    }

    /// Continues `prompt` by `length` characters, sampling each from the softmax of the
    /// logits divided by `temperature` (0: the most likely character), restricted to the
    /// `topK` most likely when given. The prompt is read once; each new character is then one
    /// recurrent step from the state the previous one left (as char-rnn samples). `emit`
    /// receives each new character as it is drawn (to print a long text as it comes).
    public func generate(
        prompt: [Int], length: Int, temperature: Double = 1, topK: Int? = nil, seed: UInt64 = 0, emit: ((Int) -> Void)? = nil
    ) -> [Int] {
        var g = RandomGenerator(seed: seed)
        var ids = prompt.isEmpty ? [0] : prompt
        var state: SequenceModel.State? = nil
        var pending = ids
        for _ in 0..<length {
            let step = inferring { forward(Tensor(shape: [1, pending.count], scalars: pending.map(Float.init)), state: state) }
            state = step.state
            let last = Array(step.logits.scalars.suffix(vocabularySize)).map(Double.init)
            let pick = CharSampling.draw(last, temperature: temperature, topK: topK, generator: &g)
            ids.append(pick)
            pending = [pick]
            emit?(pick)
        }
        return Array(ids.suffix(length))
    }
}
