// The reference models of DESIGN.md that more than one benchmark times.
import GradGuard

/// Embedding(65, 128) → LSTM(128, 256) → Linear(256, 65).
final class BenchCharLSTM: Module {
    let emb = Embedding(numEmbeddings: 65, embeddingDim: 128)
    let lstm = LSTM(inputSize: 128, hiddenSize: 256, batchFirst: true)
    let head = Linear(inputSize: 256, outputSize: 65)

    /// Cross-entropy of next-character logits for `x` [B, T] against `y` [B·T].
    func loss(_ x: Tensor, _ y: Tensor) -> Tensor {
        crossEntropy(head(lstm(emb(x)).output).reshaped([-1, 65]), y)
    }
}

/// 6 × (Conv3×3 - BatchNorm - SiLU) + a 1×1 head of 3 × (5 + 3) channels.
func benchTinyDetector() -> Sequential {
    var layers: [any UnaryLayer] = []
    for (i, o, s) in [(3, 16, 2), (16, 32, 2), (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1)] {
        layers += [Conv2d(i, o, kernelSize: 3, stride: s, padding: 1, bias: false), BatchNorm2d(numFeatures: o), SiLU()]
    }
    layers.append(Conv2d(128, 3 * (5 + 3), kernelSize: 1))
    return Sequential(layers)
}
