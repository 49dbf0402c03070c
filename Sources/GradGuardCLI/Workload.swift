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
    let train: any Dataset
    let validation: (any Dataset)?
    let trainer: TrainerConfig
    let loss: (Module, Batch) -> Tensor
    let metrics: (Module, Batch) -> [String: Double]
    /// Metrics over the whole validation set (detection: mAP), instead of `metrics`.
    var datasetMetrics: ((Module, any Dataset) throws -> [String: Double])? = nil
    /// Problems found in a detection dataset and passed over (data.on_error skip).
    var dataIssues: [DataIssue] = []
    /// A detector's class names, from its data.yaml.
    var classNames: [String] = []
    /// The text corpus of a character model (its vocabulary is saved in the run directory).
    let corpus: CharCorpus?
    /// The vocabularies and lengths of a translation model (saved in the run directory).
    let translation: TranslationSet?

    /// Builds the run; a character or translation model reads its data (or the built-in
    /// data) and, in an existing run directory, keeps the vocabulary saved there.
    init(_ c: RunConfig, runDirectory: String? = nil) throws {
        DefaultGenerator.seed(UInt64(c.seed))
        switch c.model {
        case .charlm: try self.init(charlm: c, runDirectory: runDirectory)
        case .seq2seq: try self.init(seq2seq: c, runDirectory: runDirectory)
        case .sequence: try self.init(sequence: c)
        case .detector: try self.init(detector: c)
        case .mlp: try self.init(mlp: c)
        }
    }

    private init(model: Module, data: (any Dataset, (any Dataset)?), config c: RunConfig, corpus: CharCorpus? = nil,
                 translation: TranslationSet? = nil, loss: @escaping (Module, Batch) -> Tensor,
                 metrics: @escaping (Module, Batch) -> [String: Double]) {
        self.model = model
        (train, validation) = data
        self.corpus = corpus
        self.translation = translation
        self.loss = loss
        self.metrics = metrics
        (optimizer, scheduler, policy, trainer) = Workload.training(c, model: model, trainSize: data.0.count)
    }

    /// The built-in detection data: the shapes dataset, generated once per seed and size.
    static func builtinShapes(_ c: RunConfig) throws -> String {
        let dir = "\(c.runsDirectory)/.shapes-seed\(c.seed)-\(c.trainSize)x\(c.validationSize)-\(c.imageSize)"
        if FileManager.default.fileExists(atPath: dir + "/data.yaml") { return dir + "/data.yaml" }
        let o = ShapesDataset.Options(train: c.trainSize, val: Swift.max(1, c.validationSize), size: c.imageSize, seed: UInt64(c.seed))
        let partial = dir + ".partial"
        try? FileManager.default.removeItem(atPath: partial)
        try ShapesDataset.write(to: partial, options: o)
        try FileManager.default.moveItem(atPath: partial, toPath: dir)
        return dir + "/data.yaml"
    }

    private init(detector c: RunConfig) throws {
        if c.dataPath.isEmpty { try MemoryBudget.of(c, classes: ShapesDataset.names.count).check(c) }   // before generating the shapes
        let yaml = c.dataPath.isEmpty ? try Workload.builtinShapes(c) : c.dataPath
        let config = try DetectionDataConfig.load(path: yaml)
        try MemoryBudget.of(c, classes: config.names.count).check(c)
        let policy = c.onError
        let trainSplit = try DetectionSplit.load(config, split: "train", policy: policy, maxPixels: c.maxImagePixels)
        let validSplit = try DetectionSplit.load(config, split: "val", policy: policy, maxPixels: c.maxImagePixels)
        let size = c.imageSize
        let train = DetectionDataset(trainSplit.samples, size: size, augmentation: c.augment ? Augmentation() : .none, seed: UInt64(c.seed))
        let valid = DetectionDataset(validSplit.samples, size: size)
        let model = Workload.detector(c, classes: config.names.count)
        var criterion = YOLOLoss(classes: config.names.count, imageSize: size)
        criterion.box = c.boxLoss
        let loss: (Module, Batch) -> Tensor = { m, b in criterion((m as! YOLODetector)(b.inputs), targets: b.targets).total }
        self.init(model: model, data: (train, valid), config: c, loss: loss, metrics: { m, b in ["loss": Double(loss(m, b).item)] })
        dataIssues = trainSplit.issues + validSplit.issues
        classNames = config.names
        datasetMetrics = { m, data in
            let r = try (data as! DetectionDataset).evaluate(m as! YOLODetector, loss: criterion)
            return ["loss": r.loss!, "map50": r.map50, "map50_95": r.map50to95]
        }
    }

    private init(charlm c: RunConfig, runDirectory: String?) throws {
        let text = c.dataPath.isEmpty ? BuiltinCorpus.text : try CharCorpus.readText(path: c.dataPath)
        var corpus = try CharCorpus.checked(text: text, source: c.dataPath.isEmpty ? "built-in corpus" : c.dataPath)
        if let saved: [String] = Workload.saved("vocabulary.json", in: runDirectory) {
            corpus = CharCorpus(text: text, vocabulary: saved.compactMap(\.first))
        }
        try MemoryBudget.of(c, vocabulary: corpus.vocabulary.count).check(c)
        let data = try corpus.datasets(length: c.sequenceLength, source: c.dataPath.isEmpty ? "built-in corpus" : c.dataPath)
        let lm = Workload.charModel(c, vocabularySize: corpus.vocabulary.count)
        self.init(model: lm, data: data, config: c, corpus: corpus, loss: { m, b in (m as! CharLanguageModel).loss(b.inputs, b.targets) },
                  metrics: { m, b in
                      let l = Double((m as! CharLanguageModel).loss(b.inputs, b.targets).item)
                      return ["loss": l, "bits_per_char": l / Foundation.log(2.0)]
                  })
    }

    private init(seq2seq c: RunConfig, runDirectory: String?) throws {
        let trainPairs: [TranslationPair], validPairs: [TranslationPair]
        if c.dataPath.isEmpty {
            (trainPairs, validPairs) = NumberWordsTask.pairs(train: c.trainSize, validation: c.validationSize, seed: UInt64(c.seed))
        } else {
            var pairs = try TranslationPair.load(path: c.dataPath)
            guard pairs.count >= 2 else { throw TranslationDataError.tooFewPairs(path: c.dataPath, pairs: pairs.count, needed: 2) }
            var g = RandomGenerator(seed: UInt64(c.seed) &+ 11)
            for i in stride(from: pairs.count - 1, to: 0, by: -1) { pairs.swapAt(i, Int(g.next() % UInt64(i + 1))) }
            // Validation: data.validation pairs, at most a fifth of the file.
            let v = Swift.max(1, Swift.min(c.validationSize, pairs.count / 5))
            (trainPairs, validPairs) = (Array(pairs[v...]), Array(pairs[..<v]))
        }
        let set = Workload.saved("translation.json", in: runDirectory).map { (s: SavedTranslationSet) in s.set }
            ?? TranslationSet(pairs: trainPairs + validPairs)
        try MemoryBudget.of(c, vocabulary: set.source.count, targetVocabulary: set.target.count, sourceLength: set.sourceLength,
                            targetLength: set.targetLength).check(c)
        let model = Workload.seq2seqModel(c, set: set)
        let loss: (Module, Batch) -> Tensor = { m, b in (m as! Seq2SeqModel).loss(source: b.inputs, target: b.targets) }
        self.init(model: model, data: (set.dataset(trainPairs), set.dataset(validPairs)), config: c, translation: set, loss: loss,
                  metrics: { m, b in
                      let s2s = m as! Seq2SeqModel
                      let decoded = s2s.greedyDecode(b.inputs, maxLength: set.targetLength - 1)
                      let truth = b.targets.scalars.map { Int($0) }, width = set.targetLength
                      // A target row is begin, characters, end, padding: decode stops at the end.
                      let exact = decoded.enumerated().filter { i, ids in
                          set.target.decode(ids) == set.target.decode(Array(truth[(i * width + 1)..<((i + 1) * width)]))
                      }.count
                      return ["loss": Double(loss(m, b).item), "exact_match": Double(exact) / Double(decoded.count)]
                  })
    }

    private init(sequence c: RunConfig) throws {
        try MemoryBudget.of(c).check(c)
        let task = c.data.task ?? .adding
        let t = c.sequenceLength
        let model = SequenceModel(cell: c.cell, inputSize: task.inputSize, hiddenSize: c.widthValue,
                                  outputSize: task.outputSize, layers: c.layerCount, perStep: task == .copyMemory,
                                  forgetGateBias: c.cell == .lstm ? 1 : nil)
        let baseline = task.baseline(t)
        let success = c.successLoss > 0 ? c.successLoss : 0.1 * baseline
        self.init(model: model, data: (task.dataset(count: c.trainSize, t: t, seed: UInt64(c.seed) &+ 1),
                                       c.validationSize > 0 ? task.dataset(count: c.validationSize, t: t, seed: UInt64(c.seed) &+ 2) : nil),
                  config: c, loss: { m, b in task.loss((m as! SequenceModel)(b.inputs), b.targets) },
                  metrics: { m, b in
                      let out = (m as! SequenceModel)(b.inputs)
                      let l = Double(task.loss(out, b.targets).item)
                      var r = ["loss": l, "baseline": baseline, "loss_over_baseline": l / baseline, "solved": l < success ? 1 : 0]
                      if let a = task.accuracy(out, b.targets) { r["accuracy"] = a }
                      return r
                  })
    }

    private init(mlp c: RunConfig) throws {
        try MemoryBudget.of(c).check(c)
        let weightInit = c.initialisation.initializer(for: c.activation)
        var layers: [any UnaryLayer] = []
        var width = c.inputs
        for _ in 0..<c.layerCount {
            layers.append(Linear(inputSize: width, outputSize: c.widthValue, weightInit: weightInit))
            if c.batchNorm { layers.append(BatchNorm1d(numFeatures: c.widthValue)) }
            layers.append(c.activation.layer())
            width = c.widthValue
        }
        layers.append(Linear(inputSize: width, outputSize: c.classes, weightInit: weightInit))
        self.init(model: Sequential(layers), data: TeacherData.make(c), config: c,
                  loss: { m, b in crossEntropy((m as! Sequential)(b.inputs), b.targets) },
                  metrics: { m, b in
                      let logits = (m as! Sequential)(b.inputs)
                      return ["loss": Double(crossEntropy(logits, b.targets).item),
                              "accuracy": Double(logits.argmax(axis: 1).eq(b.targets).mean().item)]
                  })
    }

    // MARK: Models from settings (shared with TrainedModel)

    static func detector(_ c: RunConfig, classes: Int) -> YOLODetector {
        YOLODetector(classes: classes, width: c.widthValue, imageSize: c.imageSize)
    }

    static func charModel(_ c: RunConfig, vocabularySize: Int) -> CharLanguageModel {
        CharLanguageModel(vocabularySize: vocabularySize, embeddingSize: c.embedding, hiddenSize: c.widthValue,
                          layers: c.layerCount, cell: c.cell)
    }

    static func seq2seqModel(_ c: RunConfig, set: TranslationSet) -> Seq2SeqModel {
        Seq2SeqModel(sourceVocabularySize: set.source.count, targetVocabularySize: set.target.count, embeddingSize: c.embedding,
                     hiddenSize: c.widthValue, layers: c.layerCount, attention: c.attention)
    }

    /// A JSON file saved in the run directory, if any.
    static func saved<T: Decodable>(_ name: String, in runDirectory: String?) -> T? {
        guard let runDirectory, let data = try? FileContents.read(runDirectory + "/" + name, limit: 64 << 20) else { return nil }
        return try? JSONDecoder().decode(T.self, from: data)
    }

    /// Optimizer, schedule, guard policy and trainer settings of a run.
    static func training(_ c: RunConfig, model: Module, trainSize: Int) -> (Optimizer, LRScheduler?, GuardPolicy, TrainerConfig) {
        // A detector's groups: BatchNorm weights and biases without weight decay (Ultralytics).
        let detector = model as? YOLODetector
        let groups = detector?.parameterGroups(weightDecay: c.weightDecay) ?? [ParamGroup(params: model.parameters())]
        let optimizer = c.optimizer.make(groups, c.optimizerSettings)
        let perStep = c.batchSize * c.accumulation
        let stepsPerEpoch = Swift.max(1, (trainSize + perStep - 1) / perStep)
        let total = c.maxSteps > 0 ? c.maxSteps : stepsPerEpoch * c.epochs
        // Ultralytics' warm-up: rates from 0 (a detector's biases from 0.1) and momentum from
        // 0.8, linearly to their values over the warm-up steps.
        let scheduler = c.schedule.make(optimizer, totalSteps: total, stepsPerEpoch: stepsPerEpoch, warmupSteps: c.warmupSteps,
                                        startLR: detector == nil ? [:] : [YOLODetector.biasGroup: 0.1],
                                        startMomentum: c.optimizer == .sgd && c.momentum > 0.8 ? 0.8 : nil)
        let clipper = c.clipper.make(c.clipping)
        var policy = GuardPolicy(clipper: clipper, snapshotEvery: c.snapshotEvery, maxFailedRecoveries: c.maxFailedRecoveries)
        policy.validationDivergence = c.validationDivergence > 0 ? c.validationDivergence : nil
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

    /// The trainer of this workload, writing into `runDirectory` (locked by `lock`).
    func makeTrainer(runDirectory: String, lock: RunLock? = nil) throws -> Trainer {
        let t = try Trainer(model: model, optimizer: optimizer, scheduler: scheduler, policy: policy, config: trainer,
                            runDirectory: runDirectory, runLock: lock, loss: loss)
        t.evaluate = metrics
        t.evaluateDataset = datasetMetrics
        return t
    }

    /// Saves what later commands need besides the checkpoints: a character model's
    /// vocabulary, a translation model's vocabularies and lengths.
    func saveArtifacts(runDirectory: String) throws {
        if let corpus {
            let chars = corpus.vocabulary.map { String($0) }
            try AtomicFile.write(try JSONEncoder().encode(chars), to: runDirectory + "/vocabulary.json")
        }
        if let translation {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try AtomicFile.write(try encoder.encode(SavedTranslationSet(translation)), to: runDirectory + "/translation.json")
        }
        if !classNames.isEmpty {
            try AtomicFile.write(try JSONEncoder().encode(classNames), to: runDirectory + "/classes.json")
        }
    }
}

/// What `generate`, `translate` and `detect` need of a trained run: its model, built from
/// config.yaml and the files the run saved (vocabularies, class names), without reading or
/// decoding its training data.
struct TrainedModel {
    let model: Module
    var corpus: CharCorpus? = nil
    var translation: TranslationSet? = nil
    var classNames: [String] = []

    init(_ c: RunConfig, runDirectory dir: String) throws {
        func missing(_ file: String) -> FileError {
            FileError.cannotRead(path: dir + "/" + file, reason: "missing or not what gradguard train saves there; the run cannot be used without it")
        }
        switch c.model {
        case .charlm:
            guard let chars: [String] = Workload.saved("vocabulary.json", in: dir) else { throw missing("vocabulary.json") }
            let corpus = CharCorpus(text: "", vocabulary: chars.compactMap(\.first))
            self.corpus = corpus
            model = Workload.charModel(c, vocabularySize: corpus.vocabulary.count)
        case .seq2seq:
            guard let saved: SavedTranslationSet = Workload.saved("translation.json", in: dir) else { throw missing("translation.json") }
            translation = saved.set
            model = Workload.seq2seqModel(c, set: saved.set)
        case .detector:
            if let names: [String] = Workload.saved("classes.json", in: dir) {
                classNames = names
            } else {
                classNames = try Workload(c, runDirectory: dir).classNames   // a run saved before classes.json existed
            }
            model = Workload.detector(c, classes: classNames.count)
        case .mlp, .sequence:
            model = try Workload(c, runDirectory: dir).model
        }
    }
}

/// A translation model's vocabularies and lengths as saved in `translation.json`.
struct SavedTranslationSet: Codable {
    var source: [String]
    var target: [String]
    var sourceLength: Int
    var targetLength: Int

    init(_ s: TranslationSet) {
        source = s.source.characters.map { String($0) }
        target = s.target.characters.map { String($0) }
        sourceLength = s.sourceLength
        targetLength = s.targetLength
    }

    var set: TranslationSet {
        TranslationSet(source: TokenVocabulary(characters: source.compactMap(\.first)), target: TokenVocabulary(characters: target.compactMap(\.first)),
                       sourceLength: sourceLength, targetLength: targetLength)
    }
}
