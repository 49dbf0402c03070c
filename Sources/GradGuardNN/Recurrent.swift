import GradGuardTensor

/// The shared machinery of `RNN`, `LSTM` and `GRU`: a stack of fused recurrent layers with
/// PyTorch's parameter names (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, …),
/// shapes, gate order and default initialisation U(−1/√hidden, 1/√hidden).
public class RecurrentNetwork: Module {
    /// The cell: tanh or ReLU RNN, LSTM or GRU.
    public let kind: RecurrentKind
    /// Features of each input step.
    public let inputSize: Int
    /// Features of the hidden state.
    public let hiddenSize: Int
    /// Stacked layers.
    public let numLayers: Int
    /// Inputs and outputs are `[batch, time, features]` rather than `[time, batch, features]`.
    public let batchFirst: Bool
    /// Dropout probability on the outputs of every layer but the last, in training.
    public let dropout: Float
    /// Each layer's input weights, `[gates·hidden, input]` (`weight_ih_l<k>`).
    public var weightsIH: [Tensor]
    /// Each layer's recurrent weights, `[gates·hidden, hidden]` (`weight_hh_l<k>`).
    public var weightsHH: [Tensor]
    /// Each layer's input biases (`bias_ih_l<k>`; empty without biases).
    public var biasesIH: [Tensor]
    /// Each layer's recurrent biases (`bias_hh_l<k>`; empty without biases).
    public var biasesHH: [Tensor]

    init(
        kind: RecurrentKind, inputSize: Int, hiddenSize: Int, numLayers: Int, bias: Bool, batchFirst: Bool,
        dropout: Float, weightInit: Initializer?, recurrentInit: Initializer?, biasInit: Initializer?
    ) {
        require(numLayers >= 1, "a recurrent network needs at least one layer")
        require(dropout >= 0 && dropout < 1, "dropout \(dropout) is outside [0, 1)")
        self.kind = kind
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.numLayers = numLayers
        self.batchFirst = batchFirst
        self.dropout = dropout
        let k = 1 / Float(hiddenSize).squareRoot()
        let fallback = Initializer.uniform(low: -k, high: k)
        let gw = kind.gateCount * hiddenSize
        // Drawn in PyTorch's registration order: per layer w_ih, w_hh, b_ih, b_hh.
        var wih: [Tensor] = [], whh: [Tensor] = [], bih: [Tensor] = [], bhh: [Tensor] = []
        for l in 0..<numLayers {
            wih.append((weightInit ?? fallback).make([gw, l == 0 ? inputSize : hiddenSize]))
            whh.append((recurrentInit ?? weightInit ?? fallback).make([gw, hiddenSize]))
            if bias {
                bih.append((biasInit ?? fallback).make([gw]))
                bhh.append((biasInit ?? fallback).make([gw]))
            }
        }
        (weightsIH, weightsHH, biasesIH, biasesHH) = (wih, whh, bih, bhh)
        super.init()
    }

    public override func namedChildren() -> [(name: String, module: Module)] { [] }

    public override func localParameters() -> [(name: String, tensor: Tensor)] {
        var out: [(String, Tensor)] = []
        for l in 0..<numLayers {
            out.append(("weight_ih_l\(l)", weightsIH[l]))
            out.append(("weight_hh_l\(l)", weightsHH[l]))
            if !biasesIH.isEmpty {
                out.append(("bias_ih_l\(l)", biasesIH[l]))
                out.append(("bias_hh_l\(l)", biasesHH[l]))
            }
        }
        return out
    }

    /// Runs the stack. `h0`/`c0` are `[numLayers, batch, hidden]` (zeros when nil). Returns the
    /// last layer's outputs and the final `h` (and `c`) of every layer.
    func run(_ input: Tensor, h0: Tensor?, c0: Tensor?) -> (output: Tensor, h: Tensor, c: Tensor?) {
        scoped {
            require(
                input.rank == 3 && input.shape[2] == inputSize,
                "\(type(of: self)): expected input [\(batchFirst ? "batch, time" : "time, batch"), \(inputSize)], got \(input.shape)")
            var x = batchFirst ? input.transposed(0, 1) : input
            let batch = x.shape[1]
            let stateShape = [numLayers, batch, hiddenSize]
            if let h0 { require(h0.shape == stateShape, "\(type(of: self)): h0 must be \(stateShape), got \(h0.shape)") }
            if let c0 { require(c0.shape == stateShape, "LSTM: c0 must be \(stateShape), got \(c0.shape)") }
            let isLSTM = kind == .lstm
            var hs: [Tensor] = [], cs: [Tensor] = []
            let steps = x.shape[0]
            for l in 0..<numLayers {
                let hl = h0.map { $0.narrow(axis: 0, start: l, length: 1).squeezed(0) } ?? Tensor.zeros([batch, hiddenSize])
                let cl: Tensor? = isLSTM ? (c0.map { $0.narrow(axis: 0, start: l, length: 1).squeezed(0) } ?? Tensor.zeros([batch, hiddenSize])) : nil
                let packed = Tensor.recurrentLayer(
                    kind, x: x, h0: hl, c0: cl, weightIH: weightsIH[l], weightHH: weightsHH[l],
                    biasIH: biasesIH.isEmpty ? nil : biasesIH[l],
                    biasHH: biasesHH.isEmpty ? nil : biasesHH[l])
                let outputs = isLSTM ? packed.narrow(axis: 0, start: 0, length: steps) : packed
                hs.append(packed.narrow(axis: 0, start: steps - 1, length: 1).squeezed(0))
                if isLSTM { cs.append(packed.narrow(axis: 0, start: steps, length: 1).squeezed(0)) }
                x = outputs
                if training && dropout > 0 && l < numLayers - 1 {
                    let keep = 1 - dropout
                    let mask = DefaultGenerator.with { g in (0..<x.count).map { _ in g.nextUniform() < Double(keep) ? 1 / keep : 0 } }
                    x = x * Tensor(shape: x.shape, scalars: mask)
                }
            }
            let output = batchFirst ? x.transposed(0, 1) : x
            return (output, Tensor.stack(hs), isLSTM ? Tensor.stack(cs) : nil)
        }
    }
}

/// Elman RNN, `torch.nn.RNN`: `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)` (or ReLU).
public final class RNN: RecurrentNetwork {
    /// An Elman RNN with tanh (or ReLU) non-linearity, as `torch.nn.RNN`.
    public init(
        inputSize: Int, hiddenSize: Int, numLayers: Int = 1, nonlinearity: Nonlinearity = .tanh, bias: Bool = true,
        batchFirst: Bool = false, dropout: Float = 0, weightInit: Initializer? = nil,
        recurrentInit: Initializer? = nil, biasInit: Initializer? = nil
    ) {
        require(nonlinearity == .tanh || nonlinearity == .relu, "RNN: nonlinearity must be .tanh or .relu")
        super.init(
            kind: nonlinearity == .relu ? .rnnRelu : .rnnTanh, inputSize: inputSize, hiddenSize: hiddenSize,
            numLayers: numLayers, bias: bias, batchFirst: batchFirst, dropout: dropout,
            weightInit: weightInit, recurrentInit: recurrentInit, biasInit: biasInit)
    }

    /// Returns the outputs `[T, B, H]` (or `[B, T, H]`) and the final states `[numLayers, B, H]`.
    public func callAsFunction(_ x: Tensor, _ h0: Tensor? = nil) -> (output: Tensor, h: Tensor) {
        let r = run(x, h0: h0, c0: nil)
        return (r.output, r.h)
    }
}

/// Long short-term memory (Hochreiter & Schmidhuber, 1997), `torch.nn.LSTM`; gates i, f, g, o.
public final class LSTM: RecurrentNetwork {
    /// An LSTM, as `torch.nn.LSTM` (gates i, f, g, o).
    public init(
        inputSize: Int, hiddenSize: Int, numLayers: Int = 1, bias: Bool = true, batchFirst: Bool = false,
        dropout: Float = 0, weightInit: Initializer? = nil, recurrentInit: Initializer? = nil,
        biasInit: Initializer? = nil
    ) {
        super.init(
            kind: .lstm, inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers, bias: bias,
            batchFirst: batchFirst, dropout: dropout, weightInit: weightInit, recurrentInit: recurrentInit,
            biasInit: biasInit)
    }

    /// Returns the outputs and the final `(h, c)`, each `[numLayers, B, H]`.
    public func callAsFunction(_ x: Tensor, _ state: (h: Tensor, c: Tensor)? = nil) -> (output: Tensor, state: (h: Tensor, c: Tensor)) {
        let r = run(x, h0: state?.h, c0: state?.c)
        return (r.output, (r.h, r.c!))
    }

    /// Sets every layer's forget-gate bias so that b_ih + b_hh = `value` (1 in Gers et al.
    /// 2000 and Jozefowicz et al. 2015): the cell keeps its memory from the first step.
    public func setForgetGateBias(_ value: Float) {
        for b in biasesIH + biasesHH {
            b.withUnsafeMutableScalars { v in for k in hiddenSize..<(2 * hiddenSize) { v[k] = value / 2 } }
        }
    }
}

/// Gated recurrent unit (Cho et al., 2014), `torch.nn.GRU`; gates r, z, n.
public final class GRU: RecurrentNetwork {
    /// A GRU, as `torch.nn.GRU` (gates r, z, n).
    public init(
        inputSize: Int, hiddenSize: Int, numLayers: Int = 1, bias: Bool = true, batchFirst: Bool = false,
        dropout: Float = 0, weightInit: Initializer? = nil, recurrentInit: Initializer? = nil,
        biasInit: Initializer? = nil
    ) {
        super.init(
            kind: .gru, inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers, bias: bias,
            batchFirst: batchFirst, dropout: dropout, weightInit: weightInit, recurrentInit: recurrentInit,
            biasInit: biasInit)
    }

    /// The outputs of the last layer at every step, and the last hidden state of every layer.
    public func callAsFunction(_ x: Tensor, _ h0: Tensor? = nil) -> (output: Tensor, h: Tensor) {
        let r = run(x, h0: h0, c0: nil)
        return (r.output, r.h)
    }
}

// MARK: - Cells

/// One step of a recurrent cell, with parameters `weight_ih`, `weight_hh`, `bias_ih`,
/// `bias_hh` as `torch.nn.RNNCell`/`LSTMCell`/`GRUCell`.
public class RecurrentCell: Module {
    /// The cell: tanh or ReLU RNN, LSTM or GRU.
    public let kind: RecurrentKind
    /// Features of the hidden state.
    public let hiddenSize: Int
    /// The input weights, `[gates·hidden, input]` (`weight_ih`).
    public var weightIH: Tensor
    /// The recurrent weights, `[gates·hidden, hidden]` (`weight_hh`).
    public var weightHH: Tensor
    /// The input bias (`bias_ih`); nil without biases.
    public var biasIH: Tensor?
    /// The recurrent bias (`bias_hh`); nil without biases.
    public var biasHH: Tensor?

    init(
        kind: RecurrentKind, inputSize: Int, hiddenSize: Int, bias: Bool, weightInit: Initializer?,
        recurrentInit: Initializer?, biasInit: Initializer?
    ) {
        self.kind = kind
        self.hiddenSize = hiddenSize
        let k = 1 / Float(hiddenSize).squareRoot()
        let fallback = Initializer.uniform(low: -k, high: k)
        let gw = kind.gateCount * hiddenSize
        weightIH = (weightInit ?? fallback).make([gw, inputSize])
        weightHH = (recurrentInit ?? weightInit ?? fallback).make([gw, hiddenSize])
        biasIH = bias ? (biasInit ?? fallback).make([gw]) : nil
        biasHH = bias ? (biasInit ?? fallback).make([gw]) : nil
        super.init()
    }

    public override func localParameters() -> [(name: String, tensor: Tensor)] {
        var out: [(String, Tensor)] = [("weight_ih", weightIH), ("weight_hh", weightHH)]
        if let biasIH, let biasHH { out += [("bias_ih", biasIH), ("bias_hh", biasHH)] }
        return out
    }

    func step(_ x: Tensor, h: Tensor?, c: Tensor?) -> (h: Tensor, c: Tensor?) {
        scoped {
            require(x.rank == 2, "\(type(of: self)): input must be [batch, features], got \(x.shape)")
            let batch = x.shape[0]
            let h0 = h ?? Tensor.zeros([batch, hiddenSize])
            let c0: Tensor? = kind == .lstm ? (c ?? Tensor.zeros([batch, hiddenSize])) : nil
            let packed = Tensor.recurrentLayer(
                kind, x: x.unsqueezed(0), h0: h0, c0: c0, weightIH: weightIH,
                weightHH: weightHH, biasIH: biasIH, biasHH: biasHH)
            let hNew = packed.narrow(axis: 0, start: 0, length: 1).squeezed(0)
            let cNew = kind == .lstm ? packed.narrow(axis: 0, start: 1, length: 1).squeezed(0) : nil
            return (hNew, cNew)
        }
    }
}

/// One step of an Elman RNN, as `torch.nn.RNNCell`.
public final class RNNCell: RecurrentCell {
    /// A cell from `inputSize` to `hiddenSize` features.
    public init(
        inputSize: Int, hiddenSize: Int, bias: Bool = true, nonlinearity: Nonlinearity = .tanh,
        weightInit: Initializer? = nil, recurrentInit: Initializer? = nil, biasInit: Initializer? = nil
    ) {
        require(nonlinearity == .tanh || nonlinearity == .relu, "RNNCell: nonlinearity must be .tanh or .relu")
        super.init(
            kind: nonlinearity == .relu ? .rnnRelu : .rnnTanh, inputSize: inputSize, hiddenSize: hiddenSize,
            bias: bias, weightInit: weightInit, recurrentInit: recurrentInit, biasInit: biasInit)
    }
    /// The next hidden state from `x` `[batch, input]` and `h` (zeros when nil).
    public func callAsFunction(_ x: Tensor, _ h: Tensor? = nil) -> Tensor { step(x, h: h, c: nil).h }
}

/// One step of an LSTM, as `torch.nn.LSTMCell`.
public final class LSTMCell: RecurrentCell {
    /// A cell from `inputSize` to `hiddenSize` features.
    public init(
        inputSize: Int, hiddenSize: Int, bias: Bool = true,
        weightInit: Initializer? = nil, recurrentInit: Initializer? = nil, biasInit: Initializer? = nil
    ) {
        super.init(
            kind: .lstm, inputSize: inputSize, hiddenSize: hiddenSize, bias: bias,
            weightInit: weightInit, recurrentInit: recurrentInit, biasInit: biasInit)
    }
    /// The next hidden and cell states from `x` `[batch, input]` and `state` (zeros when nil).
    public func callAsFunction(_ x: Tensor, _ state: (h: Tensor, c: Tensor)? = nil) -> (h: Tensor, c: Tensor) {
        let r = step(x, h: state?.h, c: state?.c)
        return (r.h, r.c!)
    }
}

/// One step of a GRU, as `torch.nn.GRUCell`.
public final class GRUCell: RecurrentCell {
    /// A cell from `inputSize` to `hiddenSize` features.
    public init(
        inputSize: Int, hiddenSize: Int, bias: Bool = true,
        weightInit: Initializer? = nil, recurrentInit: Initializer? = nil, biasInit: Initializer? = nil
    ) {
        super.init(
            kind: .gru, inputSize: inputSize, hiddenSize: hiddenSize, bias: bias,
            weightInit: weightInit, recurrentInit: recurrentInit, biasInit: biasInit)
    }
    /// The next hidden state from `x` `[batch, input]` and `h` (zeros when nil).
    public func callAsFunction(_ x: Tensor, _ h: Tensor? = nil) -> Tensor { step(x, h: h, c: nil).h }
}
