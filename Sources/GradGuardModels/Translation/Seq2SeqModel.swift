import Foundation
import GradGuardNN
import GradGuardTensor

/// An LSTM encoder–decoder (Sutskever et al. 2014) with optional dot-product attention
/// (Luong et al. 2015, "global attention, dot score": h̃ = tanh(W_c [context; h])).
///
/// Trained with teacher forcing: the decoder reads `begin, y₁ … yₙ₋₁` and predicts
/// `y₁ … yₙ, end`; decoded greedily or with a beam.
public final class Seq2SeqModel: Module {
    /// The source characters' embedding.
    public var sourceEmbedding: Embedding
    /// The target characters' embedding.
    public var targetEmbedding: Embedding
    /// The encoder.
    public var encoder: LSTM
    /// The decoder, started from the encoder's final state.
    public var decoder: LSTM
    /// W_c of the attention; nil without attention.
    public var combine: Linear?
    /// The projection onto the target vocabulary.
    public var output: Linear
    /// The target vocabulary's size, special tokens included.
    public let targetVocabularySize: Int

    /// A model between the two vocabularies, with attention unless `attention` is false.
    public init(
        sourceVocabularySize: Int, targetVocabularySize: Int, embeddingSize: Int = 32, hiddenSize: Int = 128,
        layers: Int = 1, attention: Bool = true
    ) {
        self.targetVocabularySize = targetVocabularySize
        sourceEmbedding = Embedding(numEmbeddings: sourceVocabularySize, embeddingDim: embeddingSize)
        targetEmbedding = Embedding(numEmbeddings: targetVocabularySize, embeddingDim: embeddingSize)
        encoder = LSTM(inputSize: embeddingSize, hiddenSize: hiddenSize, numLayers: layers, batchFirst: true)
        decoder = LSTM(inputSize: embeddingSize, hiddenSize: hiddenSize, numLayers: layers, batchFirst: true)
        combine = attention ? Linear(inputSize: 2 * hiddenSize, outputSize: hiddenSize) : nil
        output = Linear(inputSize: hiddenSize, outputSize: targetVocabularySize)
        super.init()
        encoder.setForgetGateBias(1)
        decoder.setForgetGateBias(1)
    }

    /// The encoded source: every step's output `[B, S, H]`, the final state, and the
    /// attention mask `[B, 1, S]` (−10⁹ at padding).
    public struct Encoded {
        /// Every encoder step's output.
        public var outputs: Tensor
        /// The encoder's final state.
        public var state: (h: Tensor, c: Tensor)
        /// The additive mask of padded source positions.
        public var mask: Tensor
    }

    /// Encodes `[B, S]` left-padded source ids.
    public func encode(_ source: Tensor) -> Encoded {
        let (outputs, state) = encoder(sourceEmbedding(source))
        let mask = withoutGrad { source.eq(Float(TokenVocabulary.pad)).unsqueezed(1) * -1e9 }
        return Encoded(outputs: outputs, state: state, mask: mask)
    }

    /// Runs the decoder over `[B, T]` target ids from `state`: logits `[B, T, V]` and the
    /// state after the last step.
    public func decode(_ inputs: Tensor, state: (h: Tensor, c: Tensor), encoded: Encoded) -> (logits: Tensor, state: (h: Tensor, c: Tensor)) {
        let (hidden, next) = decoder(targetEmbedding(inputs), state)
        guard let combine else { return (output(hidden), next) }
        let scores = hidden.matmul(encoded.outputs.transposed(1, 2)) + encoded.mask  // [B, T, S]
        let context = scores.softmax(axis: -1).matmul(encoded.outputs)  // [B, T, H]
        return (output(combine(Tensor.concatenate([context, hidden], axis: 2)).tanh()), next)
    }

    /// Mean cross-entropy (nats) of the next target character under teacher forcing;
    /// `target` rows are `begin, characters, end, padding` and padding is ignored.
    /// Teacher-forced cross-entropy, padding ignored, plus `zLossWeight`·log²Z of the logits at
    /// the positions that count (PaLM's z-loss, `zLoss`) when it is positive.
    public func loss(source: Tensor, target: Tensor, zLossWeight: Float = 0) -> Tensor {
        let steps = target.shape[1] - 1
        let encoded = encode(source)
        let logits = decode(target.narrow(axis: 1, start: 0, length: steps), state: encoded.state, encoded: encoded).logits
            .reshaped([-1, targetVocabularySize])
        let next = target.narrow(axis: 1, start: 1, length: steps).reshaped([-1])
        let ce = crossEntropy(logits, next, ignoreIndex: TokenVocabulary.pad)
        guard zLossWeight > 0 else { return ce }
        return ce + zLoss(logits, weight: zLossWeight, targets: next, ignoreIndex: TokenVocabulary.pad)
    }

    /// Greedy decoding of `[B, S]` sources: the most likely character each step, up to
    /// `maxLength` characters or the end token. Returns ids without begin and end.
    public func greedyDecode(_ source: Tensor, maxLength: Int) -> [[Int]] {
        inferring {
            let batch = source.shape[0]
            let encoded = encode(source)
            var state = encoded.state
            var last = [Int](repeating: TokenVocabulary.begin, count: batch)
            var out = [[Int]](repeating: [], count: batch)
            var done = [Bool](repeating: false, count: batch)
            for _ in 0..<maxLength where done.contains(false) {
                let step = decode(Tensor(shape: [batch, 1], scalars: last.map(Float.init)), state: state, encoded: encoded)
                state = step.state
                let logits = step.logits.scalars
                let best = (0..<batch).map { b in
                    Self.outputTokens(targetVocabularySize).max { logits[b * targetVocabularySize + $0] < logits[b * targetVocabularySize + $1] }!
                }
                for b in 0..<batch where !done[b] {
                    if best[b] == TokenVocabulary.end { done[b] = true } else { out[b].append(best[b]) }
                }
                last = best
            }
            return out
        }
    }

    /// Beam-search decoding of one source `[1, S]` (or `[S]`) with `width` hypotheses; a
    /// finished hypothesis scores its log-probability divided by length^`lengthPenalty`
    /// (1: the per-character average, as fairseq's default; 0: the plain sum). Returns the
    /// best hypothesis's ids without begin and end.
    public func beamDecode(_ source: Tensor, width: Int, maxLength: Int, lengthPenalty: Double = 1) -> [Int] {
        require(width >= 1, "beamDecode: width must be at least 1")
        return inferring {
            let src = source.rank == 1 ? source.unsqueezed(0) : source
            let one = encode(src)
            struct Hypothesis { var ids: [Int]; var logp: Double }
            var live = [Hypothesis(ids: [], logp: 0)]
            var state = one.state
            var finished: [(ids: [Int], score: Double)] = []
            func normalised(_ logp: Double, _ length: Int) -> Double { logp / Foundation.pow(Double(Swift.max(1, length)), lengthPenalty) }
            for _ in 0..<maxLength {
                let k = live.count
                let encoded = Encoded(
                    outputs: one.outputs.expanded(to: [k] + Array(one.outputs.shape.dropFirst())),
                    state: state, mask: one.mask.expanded(to: [k, 1, one.mask.shape[2]]))
                let inputs = live.map { Float($0.ids.last ?? TokenVocabulary.begin) }
                let step = decode(Tensor(shape: [k, 1], scalars: inputs), state: state, encoded: encoded)
                let logp = step.logits.reshaped([k, targetVocabularySize]).logSoftmax(axis: 1).scalars
                var candidates: [(beam: Int, token: Int, logp: Double)] = []
                for b in 0..<k {
                    for t in Self.outputTokens(targetVocabularySize) {
                        candidates.append((b, t, live[b].logp + Double(logp[b * targetVocabularySize + t])))
                    }
                }
                candidates.sort { $0.logp > $1.logp }
                var next: [Hypothesis] = [], parents: [Int] = []
                for c in candidates {
                    if c.token == TokenVocabulary.end {
                        finished.append((live[c.beam].ids, normalised(c.logp, live[c.beam].ids.count + 1)))
                    } else {
                        next.append(Hypothesis(ids: live[c.beam].ids + [c.token], logp: c.logp))
                        parents.append(c.beam)
                    }
                    if next.count == width || finished.count >= width { break }
                }
                if finished.count >= width || next.isEmpty { break }
                // Without length normalisation scores only fall: stop once no live hypothesis can win.
                if lengthPenalty == 0, let best = finished.map(\.score).max(), next[0].logp < best { break }
                let rows = Tensor(shape: [parents.count], scalars: parents.map(Float.init))
                state = (step.state.h.indexSelect(axis: 1, indices: rows), step.state.c.indexSelect(axis: 1, indices: rows))
                live = next
            }
            if finished.isEmpty { return live.max { $0.logp < $1.logp }?.ids ?? [] }
            return finished.max { $0.score < $1.score }!.ids
        }
    }

    /// The fraction of `pairs` translated exactly, greedily (`beamWidth` nil) or with a beam.
    public func exactMatch(_ pairs: [TranslationPair], set: TranslationSet, beamWidth: Int? = nil, batchSize: Int = 256) -> Double {
        guard !pairs.isEmpty else { return 0 }
        var correct = 0
        for start in stride(from: 0, to: pairs.count, by: batchSize) {
            let chunk = pairs[start..<Swift.min(start + batchSize, pairs.count)]
            correct += zip(chunk, translate(chunk.map(\.source), set: set, beamWidth: beamWidth)).filter { $0.target == $1 }.count
        }
        return Double(correct) / Double(pairs.count)
    }

    /// Translates `texts` (greedy, or beam search with `beamWidth`).
    public func translate(_ texts: [String], set: TranslationSet, beamWidth: Int? = nil) -> [String] {
        let sources = set.encodeSources(texts)
        if let beamWidth {
            return (0..<texts.count).map {
                set.target.decode(beamDecode(sources.narrow(axis: 0, start: $0, length: 1), width: beamWidth, maxLength: set.targetLength - 1))
            }
        }
        return greedyDecode(sources, maxLength: set.targetLength - 1).map { set.target.decode($0) }
    }

    /// The tokens a decoder may emit: end and the characters (never padding, begin or unknown).
    static func outputTokens(_ vocabularySize: Int) -> [Int] {
        [TokenVocabulary.end] + Array(TokenVocabulary.specials..<vocabularySize)
    }
}
