import Foundation
import GradGuard

/// Built-in data: Gaussian inputs labelled by the arg-max of a fixed random linear teacher
/// (learnable, so accuracy means something), with optional label noise.
struct TeacherData {
    static func make(_ c: RunConfig) -> (train: TensorDataset, validation: TensorDataset?) {
        var g = RandomGenerator(seed: UInt64(c.seed) &+ 7)
        let teacher = Tensor.randn([c.classes, c.inputs], generator: &g)
        func sample(_ n: Int, noisy: Bool) -> TensorDataset {
            let x = Tensor.randn([n, c.inputs], generator: &g)
            var y = withoutGrad { Tensor.linear(x, weight: teacher, bias: nil).argmax(axis: 1) }.scalars
            if noisy && c.labelNoise > 0 {
                for i in 0..<n where g.nextUniform() < c.labelNoise { y[i] = Float(Int(g.next() % UInt64(c.classes))) }
            }
            return TensorDataset(inputs: x, targets: Tensor(shape: [n], scalars: y))
        }
        let train = sample(c.trainSize, noisy: true)
        return (train, c.validationSize > 0 ? sample(c.validationSize, noisy: false) : nil)
    }
}

/// Everything a run needs, built from its configuration.
struct Workload {
    let model: Module
    let optimizer: Optimizer
    let scheduler: LRScheduler?
    let policy: GuardPolicy
    let train: TensorDataset
    let validation: TensorDataset?
    let trainer: TrainerConfig
    let loss: (Module, Batch) -> Tensor
    let metrics: (Module, Batch) -> [String: Double]
    /// The text corpus of a character model (its vocabulary is saved in the run directory).
    let corpus: CharCorpus?

    /// Builds the run; a character model reads its text (or the built-in corpus) and, in an
    /// existing run directory, keeps the vocabulary saved there.
    init(_ c: RunConfig, runDirectory: String? = nil) throws {
        DefaultGenerator.seed(UInt64(c.seed))
        if c.model == "charlm" {
            let text = c.dataPath.isEmpty ? BuiltinCorpus.text : try CharCorpus.readText(path: c.dataPath)
            var corpus = CharCorpus(text: text)
            if let runDirectory, let saved = FileManager.default.contents(atPath: runDirectory + "/vocabulary.json"),
               let chars = try? JSONDecoder().decode([String].self, from: saved) {
                corpus = CharCorpus(text: text, vocabulary: chars.compactMap(\.first))
            }
            let (train, validation) = try corpus.datasets(length: c.sequenceLength, source: c.dataPath.isEmpty ? "built-in corpus" : c.dataPath)
            self.corpus = corpus
            self.train = train
            self.validation = validation
            let cell = SequenceModel.Cell(rawValue: c.cell) ?? .lstm
            let lm = CharLanguageModel(vocabularySize: corpus.vocabulary.count, embeddingSize: c.embedding, hiddenSize: c.width,
                                       layers: Swift.max(1, Swift.min(c.layers, 4)), cell: cell)
            model = lm
            loss = { m, b in (m as! CharLanguageModel).loss(b.inputs, b.targets) }
            metrics = { m, b in
                let l = Double((m as! CharLanguageModel).loss(b.inputs, b.targets).item)
                return ["loss": l, "bits_per_char": l / Foundation.log(2.0)]
            }
            (optimizer, scheduler, policy, trainer) = Workload.training(c, params: lm.parameters(), trainSize: train.count)
            return
        }
        corpus = nil
        let (train, validation) = TeacherData.make(c)
        self.train = train
        self.validation = validation
        let weightInit: Initializer? = {
            switch c.initialisation {
            case "kaiming": return .kaimingNormal(nonlinearity: c.activation == "tanh" ? .tanh : .relu)
            case "xavier": return .xavierUniform(gain: c.activation == "tanh" ? 5.0 / 3 : 1)
            case "normal": return .normal(std: 1)
            default: return nil
            }
        }()
        var layers: [any UnaryLayer] = []
        var width = c.inputs
        for _ in 0..<c.layers {
            layers.append(Linear(inputSize: width, outputSize: c.width, weightInit: weightInit))
            if c.batchNorm { layers.append(BatchNorm1d(numFeatures: c.width)) }
            layers.append(c.activation == "tanh" ? Tanh() as any UnaryLayer : ReLU())
            width = c.width
        }
        layers.append(Linear(inputSize: width, outputSize: c.classes, weightInit: weightInit))
        let mlp = Sequential(layers)
        model = mlp
        loss = { m, b in crossEntropy((m as! Sequential)(b.inputs), b.targets) }
        metrics = { m, b in
            let logits = (m as! Sequential)(b.inputs)
            return ["loss": Double(crossEntropy(logits, b.targets).item),
                    "accuracy": Double(logits.argmax(axis: 1).eq(b.targets).mean().item)]
        }
        (optimizer, scheduler, policy, trainer) = Workload.training(c, params: mlp.parameters(), trainSize: train.count)
    }

    /// Optimizer, schedule, guard policy and trainer settings of a run.
    static func training(_ c: RunConfig, params: [Tensor], trainSize: Int) -> (Optimizer, LRScheduler?, GuardPolicy, TrainerConfig) {
        let optimizer: Optimizer, scheduler: LRScheduler?
        switch c.optimizer {
        case "adam": optimizer = Adam(params, lr: c.lr, weightDecay: c.weightDecay)
        case "adamw": optimizer = AdamW(params, lr: c.lr, weightDecay: c.weightDecay)
        case "rmsprop": optimizer = RMSprop(params, lr: c.lr, weightDecay: c.weightDecay, momentum: c.momentum)
        default: optimizer = SGD(params, lr: c.lr, momentum: c.momentum, weightDecay: c.weightDecay)
        }
        let perStep = c.batchSize * c.accumulation
        let stepsPerEpoch = Swift.max(1, (trainSize + perStep - 1) / perStep)
        let total = c.maxSteps > 0 ? c.maxSteps : stepsPerEpoch * c.epochs
        switch c.schedule {
        case "cosine": scheduler = LRScheduler(optimizer, CosineAnnealingLR(tMax: total))
        case "warmup-cosine":
            let w = Swift.max(1, c.warmupSteps)
            scheduler = LRScheduler(optimizer, SequentialSchedule([LinearLR(startFactor: 0.01, totalIters: w),
                                                                     CosineAnnealingLR(tMax: Swift.max(1, total - w))], milestones: [w]))
        default: scheduler = nil
        }
        let clipper: (any GradientClipper)? = {
            switch c.clipper {
            case "none": return nil
            case "value": return ClipByValue(Float(c.maxNorm))
            case "zclip": return ZClip()
            case "autoclip": return AutoClip()
            case "agc": return AdaptiveGradientClipping(clipping: Float(c.maxNorm), excludeFinalLayer: true)
            case "per-module": return ClipPerGroup(maxNorm: Float(c.maxNorm), per: .module)
            default: return ClipByGlobalNorm(maxNorm: Float(c.maxNorm))
            }
        }()
        let policy = GuardPolicy(clipper: clipper, snapshotEvery: c.snapshotEvery, maxFailedRecoveries: c.maxFailedRecoveries)
        var t = TrainerConfig()
        t.epochs = c.epochs
        t.maxSteps = c.maxSteps > 0 ? c.maxSteps : nil
        t.batchSize = c.batchSize
        t.accumulation = c.accumulation
        t.seed = UInt64(c.seed)
        t.evalEvery = c.evalEvery
        t.checkpointEvery = c.checkpointEvery
        t.keepCheckpoints = c.keepCheckpoints
        t.moduleNormsEvery = c.moduleNormsEvery
        return (optimizer, scheduler, policy, t)
    }

    func makeTrainer(runDirectory: String) throws -> Trainer {
        if let corpus {
            let chars = corpus.vocabulary.map { String($0) }
            try AtomicFile.write(try JSONEncoder().encode(chars), to: runDirectory + "/vocabulary.json")
        }
        let t = try Trainer(model: model, optimizer: optimizer, scheduler: scheduler, policy: policy, config: trainer,
                            runDirectory: runDirectory, loss: loss)
        t.evaluate = metrics
        return t
    }
}
