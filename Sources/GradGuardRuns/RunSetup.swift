import Foundation
import GradGuard

/// Everything a run needs, built from its configuration: one of the library's workloads
/// with the optimizer, schedule, guard policy and trainer settings the configuration names.
public struct RunSetup {
    /// The workload's model.
    public let model: Module
    /// The optimizer over the model's parameter groups.
    public let optimizer: any Optimizer
    /// The learning-rate schedule, when the configuration names one.
    public let scheduler: LRScheduler?
    /// The guard's clipper and responses.
    public let policy: GuardPolicy
    /// The training set.
    public let train: any Dataset
    /// The validation set, when there is one.
    public let validation: (any Dataset)?
    /// The trainer's settings.
    public let trainer: TrainerConfig
    /// The workload's training loss of one batch (of `model`).
    public let loss: (Module, Batch) -> Tensor
    /// Builds the trainer of the workload (its loss and metrics), writing into a run directory,
    /// one of the ranks of `communicator` (nil: a single process).
    public let makeTrainer: (_ runDirectory: String?, _ lock: RunLock?, _ communicator: (any Communicator)?) throws -> Trainer
    /// Problems found in a detection dataset and passed over (data.on_error skip).
    public var dataIssues: [DataIssue] = []
    /// A detector's class names, from its data.yaml.
    public var classNames: [String] = []
    /// The text corpus of a character model (its vocabulary is saved in the run directory).
    public var corpus: CharCorpus? = nil
    /// The vocabularies and lengths of a translation model (saved in the run directory).
    public var translation: TranslationSet? = nil

    /// Builds the run; a character or translation model reads its data (or the built-in
    /// data) and, in an existing run directory, keeps the vocabulary saved there.
    /// The default generator must be seeded first (`seeded(_:)`): models draw their weights from it.
    public init(_ c: RunConfig, runDirectory: String? = nil) throws {
        switch c.model.kind {
        case .charlm, .transformer:
            let source = c.data.path.isEmpty ? "built-in corpus" : c.data.path
            let text = c.data.path.isEmpty ? BuiltinCorpus.text : try CharCorpus.readText(path: c.data.path)
            var corpus = try CharCorpus.checked(text: text, source: source)
            if let saved: [String] = RunSetup.saved("vocabulary.json", in: runDirectory) {
                corpus = CharCorpus(text: text, vocabulary: saved.compactMap(\.first))
            }
            try MemoryBudget.of(c, vocabulary: corpus.vocabulary.count).check(c)
            if c.model.kind == .transformer {
                self.init(try CharTransformerModelling(corpus: corpus, source: source, settings: RunSetup.transformerSettings(c)), config: c)
            } else {
                self.init(try CharLanguageModelling(corpus: corpus, source: source, settings: RunSetup.charSettings(c)), config: c)
            }
            self.corpus = corpus
        case .seq2seq:
            let trainPairs: [TranslationPair], validPairs: [TranslationPair]
            if c.data.path.isEmpty {
                (trainPairs, validPairs) = NumberWordsTask.pairs(train: c.data.trainSize, validation: c.data.validationSize, seed: UInt64(c.seed))
            } else {
                var pairs = try TranslationPair.load(path: c.data.path)
                guard pairs.count >= 2 else { throw TranslationDataError.tooFewPairs(path: c.data.path, pairs: pairs.count, needed: 2) }
                var g = RandomGenerator(seed: UInt64(c.seed) &+ 11)
                for i in stride(from: pairs.count - 1, to: 0, by: -1) { pairs.swapAt(i, Int(g.next() % UInt64(i + 1))) }
                // Validation: data.validation pairs, at most a fifth of the file.
                let v = Swift.max(1, Swift.min(c.data.validationSize, pairs.count / 5))
                (trainPairs, validPairs) = (Array(pairs[v...]), Array(pairs[..<v]))
            }
            let set =
                RunSetup.saved("translation.json", in: runDirectory).map { (s: SavedTranslationSet) in s.set }
                ?? TranslationSet(pairs: trainPairs + validPairs)
            try MemoryBudget.of(
                c, vocabulary: set.source.count, targetVocabulary: set.target.count, sourceLength: set.sourceLength,
                targetLength: set.targetLength
            ).check(c)
            self.init(TranslationTask(train: trainPairs, validation: validPairs, set: set, settings: RunSetup.translationSettings(c)), config: c)
            translation = set
        case .sequence:
            try MemoryBudget.of(c).check(c)
            var s = LongDependencyWorkload.Settings()
            (s.length, s.trainSize, s.validationSize, s.hidden, s.layers) = (
                c.data.sequenceLength, c.data.trainSize, c.data.validationSize, c.widthValue, c.layerCount
            )
            (s.cell, s.successLoss, s.seed) = (c.model.cell, c.data.successLoss, UInt64(c.seed))
            self.init(LongDependencyWorkload(c.data.kind.task ?? .adding, settings: s), config: c)
        case .detector:
            if c.data.path.isEmpty { try MemoryBudget.of(c, classes: ShapesDataset.names.count).check(c) }  // before generating the shapes
            let yaml = c.data.path.isEmpty ? try RunSetup.builtinShapes(c) : c.data.path
            let config = try DetectionDataConfig.load(path: yaml)
            try MemoryBudget.of(c, classes: config.names.count).check(c)
            let w = try DetectionWorkload(config: config, settings: RunSetup.detectionSettings(c))
            self.init(w, config: c)
            dataIssues = w.issues
            classNames = w.classNames
        case .mlp:
            try MemoryBudget.of(c).check(c)
            var s = TeacherClassification.Settings()
            (s.inputs, s.classes, s.trainSize, s.validationSize, s.labelNoise) = (
                c.data.inputs, c.data.classes, c.data.trainSize, c.data.validationSize, c.data.labelNoise
            )
            (s.layers, s.width, s.activation, s.initialisation, s.batchNorm, s.seed) =
                (c.layerCount, c.widthValue, c.model.activation, c.model.initialisation, c.model.batchNorm, UInt64(c.seed))
            self.init(TeacherClassification(settings: s), config: c)
        }
    }

    /// The run of `workload` with the optimizer, schedule, guard and trainer settings of `c`.
    public init<W: Workload>(_ workload: W, config c: RunConfig) {
        model = workload.model
        let m = workload.model
        loss = { _, batch in workload.loss(m, batch) }
        (train, validation) = (workload.train, workload.validation)
        let optimizer = c.optimizer.make(workload.parameterGroups(weightDecay: c.optimizer.weightDecay))
        // Each rank's share of an epoch (DataLoader's padded shard), in steps of its batches.
        let perStep = c.training.batchSize * c.training.accumulation, perRank = (workload.train.count + c.worldSize - 1) / c.worldSize
        let stepsPerEpoch = Swift.max(1, (perRank + perStep - 1) / perStep)
        let total = c.training.maxSteps > 0 ? c.training.maxSteps : stepsPerEpoch * c.training.epochs
        // Ultralytics' warm-up: rates from 0 (some groups from their own start, a detector's
        // biases from 0.1) and momentum from 0.8, linearly to their values.
        let scheduler = c.schedule.kind.make(
            optimizer, totalSteps: total, stepsPerEpoch: stepsPerEpoch, warmupSteps: c.schedule.warmupSteps,
            startLR: workload.warmupStartLR,
            startMomentum: c.optimizer.kind == .sgd && c.optimizer.momentum > 0.8 ? 0.8 : nil)
        let policy = c.guard.makePolicy()
        var t = TrainerConfig()
        t.epochs = c.training.epochs
        t.maxSteps = c.training.maxSteps > 0 ? c.training.maxSteps : nil
        t.batchSize = c.training.batchSize
        t.accumulation = c.training.accumulation
        t.seed = UInt64(c.seed)
        t.evalEvery = c.training.evalEvery
        t.checkpointEvery = c.training.checkpointEvery
        t.keepCheckpoints = c.training.keepCheckpoints
        t.moduleNormsEvery = c.training.moduleNormsEvery
        t.parameterCheckEvery = c.distributed.checkEvery
        t.replayBudgetBytes = Int(c.guard.replayBudgetMB * 1_048_576)
        t.dataBlameLimit = c.guard.dataBlame
        t.curvature = TrainerConfig.CurvatureProbeConfig(
            every: c.guard.curvatureEvery, iterations: c.guard.curvatureIterations, batch: c.guard.curvatureBatch)
        t.weightAverage = c.model.ema ? TrainerConfig.WeightAverage(decay: c.model.emaDecay, tau: c.model.emaTau) : nil
        let bucketBytes = Int(c.distributed.bucketMB * 1_048_576), syncBN = c.model.syncBatchNorm
        let guardSettings = c.guard
        // The detector's usual failure modes, for the diagnosis: its warm-up against Ultralytics'
        // max(3 epochs, 100 steps), its box gain, its SGD rate against the recommended 0.01 at a batch of 16.
        if c.model.kind == .detector {
            var h = DetectorDiagnosis()
            let usual = Swift.max(3 * stepsPerEpoch, 100)
            let warms = c.schedule.kind == .warmup || c.schedule.kind == .warmupCosine || c.schedule.kind == .warmupLinear
            h.warmupSteps = warms ? (c.schedule.warmupSteps > 0 ? c.schedule.warmupSteps : Swift.min(usual, total / 2)) : 0
            h.usualWarmupSteps = Swift.min(usual, Swift.max(total / 2, 1))
            (h.boxGain, h.defaultBoxGain) = (c.detector.boxGain, YOLOLoss.defaultBoxGain(for: c.detector.head))
            if c.detector.head == .decoupled { h.headStrides = c.detector.scales == 3 ? [8, 16, 32] : [8, 16] }
            if c.optimizer.kind == .sgd {
                (h.learningRate, h.batchSize, h.referenceRate, h.referenceBatch) = (
                    c.optimizer.lr, c.training.batchSize * c.training.accumulation * c.worldSize, 0.01, 16
                )
            }
            t.diagnosisRules = [h]
        }
        (self.optimizer, self.scheduler, self.policy, trainer) = (optimizer, scheduler, policy, t)
        let trainerConfig = t
        makeTrainer = { dir, lock, world in
            if syncBN, let world { BatchNorm.synchronise(workload.model, over: world) }
            let monitor = guardSettings.monitor()
            let t = try Trainer(
                workload, optimizer: optimizer, scheduler: scheduler, policy: policy, monitor: monitor, config: trainerConfig, runDirectory: dir,
                runLock: lock, communicator: world, bucketBytes: bucketBytes)
            return t
        }
    }

    /// The run of `c` with its models drawn from the default generator seeded with `c.seed`.
    public static func seeded(_ c: RunConfig, runDirectory: String? = nil) throws -> RunSetup {
        DefaultGenerator.seed(UInt64(c.seed))
        return try RunSetup(c, runDirectory: runDirectory)
    }

    /// The built-in detection data: the shapes dataset, generated once per seed and size.
    static func builtinShapes(_ c: RunConfig) throws -> String {
        let dir = "\(c.runsDirectory)/.shapes-seed\(c.seed)-\(c.data.trainSize)x\(c.data.validationSize)-\(c.detector.imageSize)"
        if FileManager.default.fileExists(atPath: dir + "/data.yaml") { return dir + "/data.yaml" }
        let o = ShapesDataset.Options(train: c.data.trainSize, val: Swift.max(1, c.data.validationSize), size: c.detector.imageSize, seed: UInt64(c.seed))
        let partial = dir + ".partial"
        try? FileManager.default.removeItem(atPath: partial)
        try ShapesDataset.write(to: partial, options: o)
        try FileManager.default.moveItem(atPath: partial, toPath: dir)
        return dir + "/data.yaml"
    }

    // MARK: Workload settings from a run's

    static func charSettings(_ c: RunConfig) -> CharLanguageModelling.Settings {
        var s = CharLanguageModelling.Settings()
        (s.sequenceLength, s.embedding, s.hidden, s.layers, s.cell) = (c.data.sequenceLength, c.model.embedding, c.widthValue, c.layerCount, c.model.cell)
        s.zLoss = c.model.zLoss
        return s
    }

    static func transformerSettings(_ c: RunConfig) -> CharTransformerModelling.Settings {
        var s = CharTransformerModelling.Settings()
        (s.sequenceLength, s.width, s.heads, s.layers) = (c.data.sequenceLength, c.widthValue, c.model.heads, c.layerCount)
        (s.dropout, s.qkNorm, s.zLoss) = (c.model.dropout, c.model.qkNorm, c.model.zLoss)
        return s
    }

    static func translationSettings(_ c: RunConfig) -> TranslationTask.Settings {
        var s = TranslationTask.Settings()
        (s.embedding, s.hidden, s.layers, s.attention) = (c.model.embedding, c.widthValue, c.layerCount, c.model.attention)
        s.zLoss = c.model.zLoss
        return s
    }

    static func detectionSettings(_ c: RunConfig) -> DetectionWorkload.Settings {
        var s = DetectionWorkload.Settings()
        (s.imageSize, s.width, s.augment, s.boxLoss, s.onError, s.maxImagePixels, s.seed) =
            (c.detector.imageSize, c.widthValue, c.detector.augment, c.detector.boxLoss, c.detector.onError, c.detector.maxImagePixels, UInt64(c.seed))
        s.mosaicUntilEpoch = c.detector.mosaic ? Swift.max(0, c.training.epochs - c.detector.closeMosaic) : 0
        (s.boxGain, s.head, s.scales, s.block) = (c.detector.boxGain, c.detector.head, c.detector.scales, c.detector.block)
        return s
    }

    /// A JSON file saved in the run directory, if any.
    public static func saved<T: Decodable>(_ name: String, in runDirectory: String?) -> T? {
        guard let runDirectory, let data = try? FileContents.read(runDirectory + "/" + name, limit: 64 << 20) else { return nil }
        return try? JSONDecoder().decode(T.self, from: data)
    }

    /// Saves what later commands need besides the checkpoints: a character model's
    /// vocabulary, a translation model's vocabularies and lengths.
    public func saveArtifacts(runDirectory: String) throws {
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
public enum TrainedModel {
    /// A character model (recurrent or transformer) and its vocabulary.
    case charlm(any CharacterModel, CharCorpus)
    case seq2seq(Seq2SeqModel, TranslationSet)
    case detector(YOLODetector, classNames: [String])
    case other(Module)

    /// The model, whatever its kind.
    public var model: Module {
        switch self {
        case let .charlm(m, _): return m
        case let .seq2seq(m, _): return m
        case let .detector(m, _): return m
        case let .other(m): return m
        }
    }

    /// The model of the run in `dir` as its config.yaml and saved files describe it (weights not loaded).
    public init(_ c: RunConfig, runDirectory dir: String) throws {
        func missing(_ file: String) -> FileError {
            FileError.cannotRead(path: dir + "/" + file, reason: "missing or not what gradguard train saves there; the run cannot be used without it")
        }
        switch c.model.kind {
        case .charlm, .transformer:
            guard let chars: [String] = RunSetup.saved("vocabulary.json", in: dir) else { throw missing("vocabulary.json") }
            let corpus = CharCorpus(text: "", vocabulary: chars.compactMap(\.first))
            let n = corpus.vocabulary.count
            let model: any CharacterModel =
                c.model.kind == .transformer
                ? CharTransformerModelling.model(vocabularySize: n, settings: RunSetup.transformerSettings(c))
                : CharLanguageModelling.model(vocabularySize: n, settings: RunSetup.charSettings(c))
            self = .charlm(model, corpus)
        case .seq2seq:
            guard let saved: SavedTranslationSet = RunSetup.saved("translation.json", in: dir) else { throw missing("translation.json") }
            let s = RunSetup.translationSettings(c), set = saved.set
            self = .seq2seq(
                Seq2SeqModel(
                    sourceVocabularySize: set.source.count, targetVocabularySize: set.target.count, embeddingSize: s.embedding,
                    hiddenSize: s.hidden, layers: s.layers, attention: s.attention), set)
        case .detector:
            // A run saved before classes.json existed: the names come from its data.yaml.
            let names: [String] = try RunSetup.saved("classes.json", in: dir) ?? RunSetup.seeded(c, runDirectory: dir).classNames
            self = .detector(
                YOLODetector(
                    classes: names.count, width: c.widthValue, imageSize: c.detector.imageSize, head: c.detector.head, scales: c.detector.scales,
                    block: c.detector.block),
                classNames: names)
        case .mlp, .sequence:
            self = .other(try RunSetup.seeded(c, runDirectory: dir).model)
        }
    }
}

/// A translation model's vocabularies and lengths as saved in `translation.json`.
public struct SavedTranslationSet: Codable {
    /// The source vocabulary's characters.
    public var source: [String]
    /// The target vocabulary's characters.
    public var target: [String]
    /// The longest source sentence, in tokens.
    public var sourceLength: Int
    /// The longest target sentence, in tokens.
    public var targetLength: Int

    /// The saved form of `s`.
    public init(_ s: TranslationSet) {
        source = s.source.characters.map { String($0) }
        target = s.target.characters.map { String($0) }
        sourceLength = s.sourceLength
        targetLength = s.targetLength
    }

    /// The translation set these describe.
    public var set: TranslationSet {
        TranslationSet(
            source: TokenVocabulary(characters: source.compactMap(\.first)), target: TokenVocabulary(characters: target.compactMap(\.first)),
            sourceLength: sourceLength, targetLength: targetLength)
    }
}
