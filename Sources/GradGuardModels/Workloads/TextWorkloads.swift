import Foundation
import GradGuardData
import GradGuardNN
import GradGuardOptim
import GradGuardTensor

/// A character model on windows of a text (`CharLanguageModelling`, `CharTransformerModelling`):
/// loss cross-entropy of the next characters plus the z-loss when weighted; metrics loss and
/// bits per character of the cross-entropy alone.
public protocol CharacterWorkload: Workload where Model: CharacterModel {
    /// The text and its vocabulary.
    var corpus: CharCorpus { get }
    /// The z-loss weight of the training loss.
    var zLossWeight: Float { get }
}

extension CharacterWorkload {
    /// Cross-entropy of the next characters, plus the z-loss when weighted.
    public func loss(_ model: Model, _ batch: Batch) -> Tensor { model.loss(batch.inputs, batch.targets, zLossWeight: zLossWeight) }

    /// Loss and bits per character of the cross-entropy alone (without the z-loss).
    public func metrics(_ model: Model, _ batch: Batch) -> [String: Double] {
        let l = Double(model.loss(batch.inputs, batch.targets, zLossWeight: 0).item)
        return ["loss": l, "bits_per_char": l / Foundation.log(2.0)]
    }
}

/// A character language model on a text: windows of `sequenceLength` characters with the
/// next characters as targets, the last tenth of the text held out; loss cross-entropy,
/// metrics loss and bits per character.
public struct CharLanguageModelling: CharacterWorkload {
    /// How the model and its windows are built.
    public struct Settings: Sendable, Equatable {
        /// Characters per window.
        public var sequenceLength = 64
        /// The embedding size.
        public var embedding = 64
        /// The recurrent hidden size.
        public var hidden = 64
        /// Stacked recurrent layers.
        public var layers = 1
        /// The recurrent cell.
        public var cell = SequenceModel.Cell.lstm
        /// Weight of PaLM's z-loss on the logits (0: none).
        public var zLoss = 0.0
        /// The defaults.
        public init() {}
    }

    /// The text and its vocabulary.
    public let corpus: CharCorpus
    /// The z-loss weight of the training loss.
    public let zLossWeight: Float
    /// The model.
    public let model: CharLanguageModel
    /// Windows of the first nine tenths of the text.
    public let train: any Dataset
    /// Windows of the last tenth.
    public let validation: (any Dataset)?

    /// `source` names the text in errors (a path, or "built-in corpus").
    public init(corpus: CharCorpus, source: String = "text", settings s: Settings = Settings()) throws {
        self.corpus = corpus
        zLossWeight = Float(s.zLoss)
        let data = try corpus.datasets(length: s.sequenceLength, source: source)
        (train, validation) = (data.train, data.validation)
        model = Self.model(vocabularySize: corpus.vocabulary.count, settings: s)
    }

    /// The model these settings describe over `vocabularySize` characters (a trained run's,
    /// before its weights are loaded).
    public static func model(vocabularySize: Int, settings s: Settings) -> CharLanguageModel {
        CharLanguageModel(vocabularySize: vocabularySize, embeddingSize: s.embedding, hiddenSize: s.hidden, layers: s.layers, cell: s.cell)
    }

    /// A text checked for use (`CharCorpus.checked`).
    public init(text: String, source: String = "text", settings: Settings = Settings()) throws {
        try self.init(corpus: try CharCorpus.checked(text: text, source: source), source: source, settings: settings)
    }

}

/// A character language model with a decoder-only transformer (`CharTransformer`) on the
/// same windows of text as `CharLanguageModelling`: loss cross-entropy (plus the z-loss when
/// weighted), metrics loss and bits per character.
public struct CharTransformerModelling: CharacterWorkload {
    /// How the transformer and its windows are built.
    public struct Settings: Sendable, Equatable {
        /// Characters per window, and the model's context.
        public var sequenceLength = 64
        /// The model width.
        public var width = 64
        /// Attention heads (the width must divide into them).
        public var heads = 4
        /// Transformer blocks.
        public var layers = 2
        /// The dropout probability.
        public var dropout = 0.0
        /// Whether queries and keys are RMS-normalised per head.
        public var qkNorm = false
        /// Weight of PaLM's z-loss on the logits (0: none).
        public var zLoss = 0.0
        /// The defaults.
        public init() {}
    }

    /// The text and its vocabulary.
    public let corpus: CharCorpus
    /// The z-loss weight of the training loss.
    public let zLossWeight: Float
    /// The model.
    public let model: CharTransformer
    /// Windows of the first nine tenths of the text.
    public let train: any Dataset
    /// Windows of the last tenth.
    public let validation: (any Dataset)?

    /// The workload of `corpus`; `source` names the text in errors.
    public init(corpus: CharCorpus, source: String = "text", settings s: Settings = Settings()) throws {
        self.corpus = corpus
        zLossWeight = Float(s.zLoss)
        let data = try corpus.datasets(length: s.sequenceLength, source: source)
        (train, validation) = (data.train, data.validation)
        model = Self.model(vocabularySize: corpus.vocabulary.count, settings: s)
    }

    /// The model these settings describe over `vocabularySize` characters (a trained run's,
    /// before its weights are loaded).
    public static func model(vocabularySize: Int, settings s: Settings) -> CharTransformer {
        CharTransformer(
            vocabularySize: vocabularySize, width: s.width, heads: s.heads, layers: s.layers, context: s.sequenceLength, dropout: Float(s.dropout),
            qkNorm: s.qkNorm)
    }

    /// Weight decay on the matrices only (GPT-2's groups): embeddings, biases and norms are not decayed.
    public func parameterGroups(weightDecay: Double) -> [ParamGroup] {
        let named = model.namedParameters()
        let decayed = named.filter { $0.tensor.rank >= 2 && !$0.name.hasPrefix("token.") && !$0.name.hasPrefix("position.") }.map(\.tensor)
        let rest = named.filter { p in !decayed.contains { $0 === p.tensor } }.map(\.tensor)
        return [ParamGroup(params: decayed, options: ["weight_decay": weightDecay]), ParamGroup(params: rest, options: ["weight_decay": 0])]
    }
}

/// Translation with an encoder-decoder over characters: loss cross-entropy with teacher
/// forcing; metrics loss and the fraction of sentences greedy decoding gets exactly right.
public struct TranslationTask: Workload {
    /// How the encoder-decoder is built.
    public struct Settings: Sendable, Equatable {
        /// The embedding size of both sides.
        public var embedding = 64
        /// The LSTMs' hidden size.
        public var hidden = 64
        /// Stacked LSTM layers on each side.
        public var layers = 1
        /// Whether the decoder attends over the source.
        public var attention = true
        /// Weight of PaLM's z-loss on the logits (0: none).
        public var zLoss = 0.0
        /// The defaults.
        public init() {}
    }

    /// The vocabularies and lengths.
    public let set: TranslationSet
    /// The z-loss weight of the training loss.
    public let zLossWeight: Float
    /// The model.
    public let model: Seq2SeqModel
    /// The training pairs, encoded.
    public let train: any Dataset
    /// The validation pairs, encoded.
    public let validation: (any Dataset)?

    /// The workload of `train` and `validation` pairs encoded with `set`.
    public init(train: [TranslationPair], validation: [TranslationPair], set: TranslationSet, settings s: Settings = Settings()) {
        self.set = set
        zLossWeight = Float(s.zLoss)
        model = Seq2SeqModel(
            sourceVocabularySize: set.source.count, targetVocabularySize: set.target.count, embeddingSize: s.embedding,
            hiddenSize: s.hidden, layers: s.layers, attention: s.attention)
        self.train = set.dataset(train)
        self.validation = set.dataset(validation)
    }

    /// Cross-entropy of the target characters with teacher forcing, plus the z-loss when weighted.
    public func loss(_ model: Seq2SeqModel, _ batch: Batch) -> Tensor {
        model.loss(source: batch.inputs, target: batch.targets, zLossWeight: zLossWeight)
    }

    /// Loss and the fraction of sentences greedy decoding gets exactly right.
    public func metrics(_ model: Seq2SeqModel, _ batch: Batch) -> [String: Double] {
        let decoded = model.greedyDecode(batch.inputs, maxLength: set.targetLength - 1)
        let truth = batch.targets.scalars.map { Int($0) }, width = set.targetLength
        // A target row is begin, characters, end, padding: decode stops at the end.
        let exact = decoded.enumerated().filter { i, ids in
            set.target.decode(ids) == set.target.decode(Array(truth[(i * width + 1)..<((i + 1) * width)]))
        }.count
        return ["loss": Double(model.loss(source: batch.inputs, target: batch.targets).item), "exact_match": Double(exact) / Double(decoded.count)]
    }
}

/// A recurrent model on a long-dependency task (adding, temporal order, copy memory):
/// metrics loss, the memoryless baseline, their ratio, whether the task counts as solved,
/// and accuracy where the task has one.
public struct LongDependencyWorkload: Workload {
    /// How the task and the model are built.
    public struct Settings: Sendable, Equatable {
        /// The sequence length T.
        public var length = 64
        /// Training sequences.
        public var trainSize = 4096
        /// Validation sequences.
        public var validationSize = 512
        /// The recurrent hidden size.
        public var hidden = 64
        /// Stacked recurrent layers.
        public var layers = 1
        /// The recurrent cell.
        public var cell = SequenceModel.Cell.lstm
        /// Solved below this validation loss (0: a tenth of the memoryless baseline).
        public var successLoss = 0.0
        /// The seed of the generated sequences.
        public var seed: UInt64 = 0
        /// The defaults.
        public init() {}
    }

    /// The task.
    public let task: LongDependencyTask
    /// The model.
    public let model: SequenceModel
    /// The generated training sequences.
    public let train: any Dataset
    /// The generated validation sequences.
    public let validation: (any Dataset)?
    /// The loss of the best predictor that remembers nothing.
    public let baseline: Double
    /// The validation loss below which the task counts as solved.
    public let successLoss: Double

    /// The workload of `task` with generated data.
    public init(_ task: LongDependencyTask, settings s: Settings = Settings()) {
        self.task = task
        model = SequenceModel(
            cell: s.cell, inputSize: task.inputSize, hiddenSize: s.hidden, outputSize: task.outputSize, layers: s.layers,
            perStep: task == .copyMemory, forgetGateBias: s.cell == .lstm ? 1 : nil)
        baseline = task.baseline(s.length)
        successLoss = s.successLoss > 0 ? s.successLoss : 0.1 * baseline
        train = task.dataset(count: s.trainSize, t: s.length, seed: s.seed &+ 1)
        validation = s.validationSize > 0 ? task.dataset(count: s.validationSize, t: s.length, seed: s.seed &+ 2) : nil
    }

    /// The task's loss.
    public func loss(_ model: SequenceModel, _ batch: Batch) -> Tensor { task.loss(model(batch.inputs), batch.targets) }

    /// Loss, baseline, their ratio, solved, and accuracy where the task has one.
    public func metrics(_ model: SequenceModel, _ batch: Batch) -> [String: Double] {
        let out = model(batch.inputs)
        let l = Double(task.loss(out, batch.targets).item)
        var r = ["loss": l, "baseline": baseline, "loss_over_baseline": l / baseline, "solved": l < successLoss ? 1 : 0]
        if let a = task.accuracy(out, batch.targets) { r["accuracy"] = a }
        return r
    }
}

/// A multilayer perceptron classifying Gaussian inputs labelled by the arg-max of a fixed
/// random linear teacher (learnable, so accuracy means something), with optional label
/// noise on the training set; metrics loss and accuracy.
public struct TeacherClassification: Workload {
    /// How the data and the MLP are built.
    public struct Settings: Sendable, Equatable {
        /// Input dimensions.
        public var inputs = 32
        /// Classes.
        public var classes = 10
        /// Training examples.
        public var trainSize = 4096
        /// Validation examples.
        public var validationSize = 512
        /// Fraction of training labels replaced at random.
        public var labelNoise = 0.0
        /// Hidden layers.
        public var layers = 8
        /// Hidden width.
        public var width = 64
        /// The hidden activation.
        public var activation = ActivationKind.relu
        /// The weight initialisation.
        public var initialisation = InitKind.kaiming
        /// BatchNorm1d after every hidden layer.
        public var batchNorm = false
        /// The seed of the teacher and the data.
        public var seed: UInt64 = 0
        /// The defaults.
        public init() {}
    }

    /// The MLP.
    public let model: Sequential
    /// The training examples (with label noise).
    public let train: any Dataset
    /// The validation examples (clean labels).
    public let validation: (any Dataset)?

    /// The workload with generated data.
    public init(settings s: Settings = Settings()) {
        let weightInit = s.initialisation.initializer(for: s.activation)
        var layers: [any UnaryLayer] = []
        var width = s.inputs
        for _ in 0..<s.layers {
            layers.append(Linear(inputSize: width, outputSize: s.width, weightInit: weightInit))
            if s.batchNorm { layers.append(BatchNorm1d(numFeatures: s.width)) }
            layers.append(s.activation.layer())
            width = s.width
        }
        layers.append(Linear(inputSize: width, outputSize: s.classes, weightInit: weightInit))
        model = Sequential(layers)
        (train, validation) = Self.teacherData(s)
    }

    /// The teacher data of `s` (training set, and validation set unless its size is 0).
    public static func teacherData(_ s: Settings) -> (TensorDataset, TensorDataset?) {
        var g = RandomGenerator(seed: s.seed &+ 7)
        let teacher = Tensor.randn([s.classes, s.inputs], generator: &g)
        func sample(_ n: Int, noisy: Bool) -> TensorDataset {
            let x = Tensor.randn([n, s.inputs], generator: &g)
            var y = withoutGrad { Tensor.linear(x, weight: teacher, bias: nil).argmax(axis: 1) }.scalars
            if noisy && s.labelNoise > 0 {
                for i in 0..<n where g.nextUniform() < s.labelNoise { y[i] = Float(Int(g.next() % UInt64(s.classes))) }
            }
            return TensorDataset(inputs: x, targets: Tensor(shape: [n], scalars: y))
        }
        let train = sample(s.trainSize, noisy: true)
        return (train, s.validationSize > 0 ? sample(s.validationSize, noisy: false) : nil)
    }

    /// Cross-entropy.
    public func loss(_ model: Sequential, _ batch: Batch) -> Tensor { crossEntropy(model(batch.inputs), batch.targets) }

    /// Loss and accuracy.
    public func metrics(_ model: Sequential, _ batch: Batch) -> [String: Double] {
        let logits = model(batch.inputs)
        return [
            "loss": Double(crossEntropy(logits, batch.targets).item),
            "accuracy": Double(logits.argmax(axis: 1).eq(batch.targets).mean().item)
        ]
    }
}
