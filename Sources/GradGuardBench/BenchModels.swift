import GradGuard

/// The models of GuardBench: architectures the project's own workloads do not use.
package enum BenchModels {
    /// `depth` hidden layers of `width` (Linear → [LayerNorm] → ReLU or tanh) and a Linear head;
    /// the hidden layers initialised for their non-linearity (Kaiming for ReLU, Xavier for
    /// tanh) or, with `pytorchDefault`, as `nn.Linear` does.
    package static func mlp(
        inputs: Int, width: Int, depth: Int, outputs: Int, layerNorm: Bool, activation: Nonlinearity = .relu, pytorchDefault: Bool = false
    ) -> Sequential {
        var layers: [any UnaryLayer] = []
        var fan = inputs
        let initializer: Initializer? =
            pytorchDefault ? nil : activation == .tanh ? .xavierUniform(gain: Nonlinearity.tanh.gain) : .kaimingNormal(nonlinearity: .relu)
        for _ in 0..<depth {
            layers.append(Linear(inputSize: fan, outputSize: width, weightInit: initializer))
            if layerNorm { layers.append(LayerNorm([width])) }
            layers.append(activation == .tanh ? Tanh() as any UnaryLayer : ReLU())
            fan = width
        }
        layers.append(Linear(inputSize: fan, outputSize: outputs))
        return Sequential(layers)
    }

    /// x + f(x), f = [LayerNorm →] Linear → GELU → Linear (pre-norm when `layerNorm`).
    package final class ResidualBlock: Module, UnaryLayer {
        package var norm: LayerNorm?
        package var fc1: Linear
        package var fc2: Linear
        package init(width: Int, layerNorm: Bool) {
            norm = layerNorm ? LayerNorm([width]) : nil
            fc1 = Linear(inputSize: width, outputSize: width)
            fc2 = Linear(inputSize: width, outputSize: width)
            super.init()
        }
        package func forward(_ x: Tensor) -> Tensor { x + fc2(fc1(norm.map { $0(x) } ?? x).gelu()) }
    }

    /// Linear in → `blocks` residual blocks → [LayerNorm →] Linear out.
    package static func residualMLP(inputs: Int, width: Int, blocks: Int, outputs: Int, layerNorm: Bool) -> Sequential {
        var layers: [any UnaryLayer] = [Linear(inputSize: inputs, outputSize: width)]
        for _ in 0..<blocks { layers.append(ResidualBlock(width: width, layerNorm: layerNorm)) }
        if layerNorm { layers.append(LayerNorm([width])) }
        layers.append(Linear(inputSize: width, outputSize: outputs))
        return Sequential(layers)
    }

    /// Two (Conv 3×3 → [BatchNorm] → ReLU → MaxPool 2) stages on `[N, 1, side, side]`, then a
    /// Linear head.
    package static func cnn(side: Int, channels: Int, outputs: Int, batchNorm: Bool) -> Sequential {
        var layers: [any UnaryLayer] = []
        var c = 1
        for k in [channels, 2 * channels] {
            layers.append(Conv2d(c, k, kernelSize: 3, padding: 1, bias: !batchNorm))
            if batchNorm { layers.append(BatchNorm2d(numFeatures: k)) }
            layers.append(ReLU())
            layers.append(MaxPool2d(kernelSize: 2))
            c = k
        }
        layers.append(Flatten())
        layers.append(Linear(inputSize: c * (side / 4) * (side / 4), outputSize: outputs))
        return Sequential(layers)
    }

    /// A hybrid on sequences `[N, T, 1]`: a 1×5 convolution front end over time (8 channels,
    /// ReLU), a GRU or LSTM, `blocks` pre-norm residual blocks on its last state, a Linear head.
    package final class Hybrid: Module, UnaryLayer {
        package var front: Conv2d
        package var core: SequenceModel
        package var blocks: [ResidualBlock]
        package var head: Linear
        package init(hidden: Int, outputs: Int, cell: SequenceModel.Cell, blocks: Int) {
            front = Conv2d(inChannels: 1, outChannels: 8, kernelSize: (1, 5), padding: (0, 2))
            // The recurrent core's own head maps its last state to the blocks' width.
            core = SequenceModel(cell: cell, inputSize: 8, hiddenSize: hidden, outputSize: hidden, forgetGateBias: cell == .lstm ? 1 : nil)
            self.blocks = (0..<blocks).map { _ in ResidualBlock(width: hidden, layerNorm: true) }
            head = Linear(inputSize: hidden, outputSize: outputs)
            super.init()
        }
        package func forward(_ x: Tensor) -> Tensor {
            // [N, T, 1] → [N, 1, 1, T] → conv → [N, 8, 1, T] → [N, T, 8].
            let n = x.shape[0], t = x.shape[1]
            let features = front(x.reshaped([n, 1, 1, t])).relu().reshaped([n, 8, t]).transposed(1, 2)
            var h = core(features)
            for b in blocks { h = b(h) }
            return head(h)
        }
    }
}
