import Foundation
import GradGuardData
import GradGuardNN
import GradGuardTensor

/// The classic long-dependency benchmarks of exploding and vanishing gradients, generated
/// from a seed. Inputs are batch-first `[N, T, features]`.
public enum LongDependencyTask: String, Sendable, CaseIterable {
    /// Adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015): two channels, values
    /// U(0, 1) and a marker in one position of each half; the target is the sum of the two
    /// marked values. Regression, mean squared error.
    case adding
    /// Temporal order (Hochreiter & Schmidhuber 1997; Pascanu et al. 2013): a sequence of
    /// distractor symbols with X or Y at one position in each of two windows; the class is
    /// the ordered pair (XX, XY, YX, YY): 4 classes.
    case temporalOrder = "temporal-order"
    /// Copy memory (Arjovsky et al. 2016): 10 symbols from 8, T blanks with a delimiter at
    /// the 10th-to-last of them, then 10 blanks; the model must output the 10 symbols in the
    /// last 10 steps and blanks before. Classes per step: 8 symbols, blank (8), delimiter (9).
    case copyMemory = "copy-memory"

    /// Input features per step.
    public var inputSize: Int {
        switch self {
        case .adding: return 2
        case .temporalOrder: return 6  // a, b, c, d (distractors), X, Y
        case .copyMemory: return 10
        }
    }

    /// Outputs of the model: per sequence (adding, temporal order) or per step (copy memory).
    public var outputSize: Int {
        switch self {
        case .adding: return 1
        case .temporalOrder: return 4
        case .copyMemory: return 10
        }
    }

    /// Sequence length for a "difficulty" T.
    public func steps(_ t: Int) -> Int { self == .copyMemory ? t + 20 : t }

    /// The loss of the best memoryless strategy: for adding, always predicting 1 (the mean
    /// of the sum; its MSE is the variance of a sum of two U(0,1), 1/6); for temporal order,
    /// uniform over 4 classes (ln 4); for copy memory, blanks then uniform over the 8 symbols
    /// in the last 10 steps, averaged over T + 20 steps: 10·ln 8 / (T + 20).
    public func baseline(_ t: Int) -> Double {
        switch self {
        case .adding: return 1.0 / 6
        case .temporalOrder: return Foundation.log(4.0)
        case .copyMemory: return 10 * Foundation.log(8.0) / Double(t + 20)
        }
    }

    /// `count` examples of difficulty `t`.
    public func dataset(count: Int, t: Int, seed: UInt64) -> TensorDataset {
        require(t >= (self == .copyMemory ? 11 : 4), "\(rawValue): sequence length \(t) is too short")
        var g = RandomGenerator(seed: seed)
        let steps = self.steps(t), f = inputSize
        var x = [Float](repeating: 0, count: count * steps * f)
        var y: [Float] = []
        func randInt(_ n: Int) -> Int { Int(g.next() % UInt64(n)) }
        for n in 0..<count {
            let base = n * steps * f
            switch self {
            case .adding:
                let i = randInt(t / 2), j = t / 2 + randInt(t - t / 2)
                var sum: Float = 0
                for s in 0..<t {
                    let v = Float(g.nextUniform())
                    x[base + s * 2] = v
                    if s == i || s == j { x[base + s * 2 + 1] = 1; sum += v }
                }
                y.append(sum)
            case .temporalOrder:
                // Relevant symbols in [10 %, 20 %) and [50 %, 60 %) of the sequence (Pascanu et al.).
                let i = t / 10 + randInt(Swift.max(1, t / 10)), j = t / 2 + randInt(Swift.max(1, t / 10))
                let a = randInt(2), b = randInt(2)
                for s in 0..<t {
                    let symbol = s == i ? 4 + a : s == j ? 4 + b : randInt(4)
                    x[base + s * f + symbol] = 1
                }
                y.append(Float(2 * a + b))
            case .copyMemory:
                var targets = [Float](repeating: 8, count: steps)
                for s in 0..<10 {
                    let symbol = randInt(8)
                    x[base + s * f + symbol] = 1
                    targets[t + 10 + s] = Float(symbol)
                }
                for s in 10..<steps { x[base + s * f + (s == t + 9 ? 9 : 8)] = 1 }
                y += targets
            }
        }
        let targetShape = self == .copyMemory ? [count, steps] : self == .adding ? [count, 1] : [count]
        return TensorDataset(inputs: Tensor(shape: [count, steps, f], scalars: x), targets: Tensor(shape: targetShape, scalars: y))
    }

    /// The task's loss of model outputs (`[B, 1]`, `[B, 4]` or `[B, T, 10]`) against targets.
    public func loss(_ output: Tensor, _ targets: Tensor) -> Tensor {
        switch self {
        case .adding: return mseLoss(output, targets)
        case .temporalOrder: return crossEntropy(output, targets)
        case .copyMemory: return crossEntropy(output.reshaped([-1, 10]), targets.reshaped([-1]))
        }
    }

    /// Accuracy (classification tasks) or nil.
    public func accuracy(_ output: Tensor, _ targets: Tensor) -> Double? {
        switch self {
        case .adding: return nil
        case .temporalOrder: return Double(output.argmax(axis: 1).eq(targets).mean().item)
        case .copyMemory:
            // Accuracy on the 10 recalled symbols only.
            let steps = targets.shape[1]
            let pred = output.argmax(axis: 2).narrow(axis: 1, start: steps - 10, length: 10)
            return Double(pred.eq(targets.narrow(axis: 1, start: steps - 10, length: 10)).mean().item)
        }
    }
}

/// A recurrent network for sequence tasks: a stack of RNN/LSTM/GRU layers (batch-first)
/// and a linear read-out, of the last step (`perStep` false) or of every step.
public final class SequenceModel: Module, UnaryLayer {
    /// The recurrent cell.
    public enum Cell: String, Sendable, CaseIterable { case rnn, lstm, gru }
    /// The cell of this model.
    public let cell: Cell
    /// Whether the read-out is of every step (otherwise of the last).
    public let perStep: Bool
    /// The stack, when the cell is a plain RNN.
    public var rnn: RNN?
    /// The stack, when the cell is an LSTM.
    public var lstm: LSTM?
    /// The stack, when the cell is a GRU.
    public var gru: GRU?
    /// The linear read-out.
    public var head: Linear

    /// `forgetGateBias`: for an LSTM, the forget gate's total bias (b_ih + b_hh) starts at
    /// this value (1 in Gers et al. 2000 and Jozefowicz et al. 2015), so the cell keeps its
    /// memory from the first step; nil keeps PyTorch's default initialisation.
    /// `relu`: a vanilla RNN with ReLU instead of tanh (unbounded: it explodes where tanh saturates).
    public init(
        cell: Cell, inputSize: Int, hiddenSize: Int, outputSize: Int, layers: Int = 1, perStep: Bool = false,
        recurrentInit: Initializer? = nil, forgetGateBias: Float? = nil, relu: Bool = false
    ) {
        self.cell = cell
        self.perStep = perStep
        switch cell {
        case .rnn:
            rnn = RNN(
                inputSize: inputSize, hiddenSize: hiddenSize, numLayers: layers, nonlinearity: relu ? .relu : .tanh,
                batchFirst: true, recurrentInit: recurrentInit)
        case .lstm: lstm = LSTM(inputSize: inputSize, hiddenSize: hiddenSize, numLayers: layers, batchFirst: true, recurrentInit: recurrentInit)
        case .gru: gru = GRU(inputSize: inputSize, hiddenSize: hiddenSize, numLayers: layers, batchFirst: true, recurrentInit: recurrentInit)
        }
        head = Linear(inputSize: hiddenSize, outputSize: outputSize)
        super.init()
        if let forgetGateBias { lstm?.setForgetGateBias(forgetGateBias) }
    }

    /// The state a recurrent core carries from one call to the next: `h`, and `c` for an
    /// LSTM, each `[layers, B, hidden]`.
    public struct State {
        /// The hidden state.
        public var h: Tensor
        /// The cell state (LSTM only).
        public var c: Tensor?
        /// A state of `h` and, for an LSTM, `c`.
        public init(h: Tensor, c: Tensor?) {
            self.h = h
            self.c = c
        }
    }

    /// `[B, T, in]` → `[B, out]` (last step) or `[B, T, out]` (every step).
    public func forward(_ x: Tensor) -> Tensor { forward(x, state: nil).output }

    /// As `forward(_:)`, starting from `state` (zeros when nil), and the state after the last
    /// step: feeding a sequence in pieces, each from the state the previous piece left, gives
    /// the outputs of feeding it whole.
    public func forward(_ x: Tensor, state: State?) -> (output: Tensor, state: State) {
        let output: Tensor, next: State
        switch cell {
        case .rnn:
            let r = rnn!(x, state?.h)
            (output, next) = (r.output, State(h: r.h, c: nil))
        case .lstm:
            let r = lstm!(x, state.flatMap { s in s.c.map { (s.h, $0) } })
            (output, next) = (r.output, State(h: r.state.h, c: r.state.c))
        case .gru:
            let r = gru!(x, state?.h)
            (output, next) = (r.output, State(h: r.h, c: nil))
        }
        if perStep { return (head(output), next) }
        let steps = output.shape[1]
        return (head(output.narrow(axis: 1, start: steps - 1, length: 1).squeezed(1)), next)
    }
}
