import Foundation
import GradGuard

/// A configuration that cannot be built.
package enum BenchError: Error, CustomStringConvertible {
    case noValidation(String)
    package var description: String {
        switch self {
        case .noValidation(let name): return "\(name): the dataset has no validation split"
        }
    }
}

/// The configurations of GuardBench.
package enum BenchCatalog {
    /// Every configuration, the halves alternating within each architecture family.
    package static var all: [BenchConfig] {
        var out: [BenchConfig] = []
        var flip = false
        func add(
            _ architecture: String, _ optimizer: BenchOptimizer, _ objective: BenchObjective, lr: Double, steps: Int,
            faults: [BenchFault], build: @escaping @Sendable (BenchOptimizer, BenchFault, UInt64, Double) throws -> BenchTask
        ) {
            let half: BenchHalf = flip ? .checking : .tuning
            flip.toggle()
            let suffix = objective == .crossEntropy ? "" : "-\(objective.rawValue)"
            // Every rate fault also comes as a ramp to the same rate: the failure foresight is for.
            let ramps = faults.compactMap { f -> BenchFault? in if case .rate(let k) = f { return .rateRamp(k) } else { return nil } }
            out.append(
                BenchConfig(
                    name: "\(architecture)-\(optimizer.rawValue)\(suffix)", architecture: architecture, optimizer: optimizer,
                    objective: objective, half: half, steps: steps, lr: lr, faults: [.none] + faults + ramps,
                    build: { fault, seed, rate in try build(optimizer, fault, seed, rate) }))
        }

        // MARK: MLPs on a teacher's labels
        for (opt, lr, k) in [(BenchOptimizer.sgd, 0.1, 30.0), (.sgdMomentum, 0.02, 50), (.adam, 1e-3, 100), (.rmsprop, 1e-3, 100)] {
            add("mlp6", opt, .crossEntropy, lr: lr, steps: 300, faults: [.rate(k), .normalInit, .deep(24), .poisonedBatch(step: 150)]) {
                opt, fault, seed, rate in
                // A deep variant keeps PyTorch's default initialisation, as a user who stacks layers does.
                var depth = 6
                if case .deep(let d) = fault { depth = d }
                return teacherTask(opt, fault, seed, rate, .crossEntropy, outputs: 4) { i, o in
                    BenchModels.mlp(inputs: i, width: 64, depth: depth, outputs: o, layerNorm: false, pytorchDefault: depth != 6)
                }
            }
        }
        for (opt, lr, k) in [(BenchOptimizer.sgdMomentum, 0.02, 50.0), (.adamw, 2e-3, 50)] {
            add("mlp6-layernorm", opt, .crossEntropy, lr: lr, steps: 300, faults: [.rate(k), .normalInit, .poisonedBatch(step: 150)]) {
                opt, fault, seed, rate in
                teacherTask(opt, fault, seed, rate, .crossEntropy, outputs: 4) { i, o in
                    BenchModels.mlp(inputs: i, width: 64, depth: 6, outputs: o, layerNorm: true)
                }
            }
        }
        for (opt, lr, k) in [(BenchOptimizer.sgd, 0.05, 30.0), (.adam, 1e-3, 50)] {
            add("resmlp", opt, .crossEntropy, lr: lr, steps: 300, faults: [.rate(k), .normalInit]) { opt, fault, seed, rate in
                teacherTask(opt, fault, seed, rate, .crossEntropy, outputs: 4) { i, o in
                    BenchModels.residualMLP(inputs: i, width: 48, blocks: 4, outputs: o, layerNorm: false)
                }
            }
        }
        for (opt, lr, k) in [(BenchOptimizer.sgdMomentum, 0.02, 50.0), (.adamw, 2e-3, 50), (.rmsprop, 1e-3, 100)] {
            add("resmlp-layernorm", opt, .crossEntropy, lr: lr, steps: 300, faults: [.rate(k), .normalInit, .labelNoise(from: 150, steps: 40)]) {
                opt, fault, seed, rate in
                teacherTask(opt, fault, seed, rate, .crossEntropy, outputs: 4) { i, o in
                    BenchModels.residualMLP(inputs: i, width: 48, blocks: 4, outputs: o, layerNorm: true)
                }
            }
        }
        for (opt, lr, k) in [(BenchOptimizer.sgd, 0.02, 30.0), (.adam, 1e-3, 100), (.rmsprop, 5e-4, 100)] {
            add("mlp3", opt, .mse, lr: lr, steps: 300, faults: [.rate(k), .normalInit, .poisonedBatch(step: 150)]) { opt, fault, seed, rate in
                teacherTask(opt, fault, seed, rate, .mse, outputs: 2) { i, o in
                    BenchModels.mlp(inputs: i, width: 64, depth: 3, outputs: o, layerNorm: false)
                }
            }
        }
        for (opt, lr, k) in [(BenchOptimizer.sgdMomentum, 0.05, 50.0), (.adam, 1e-3, 100)] {
            add("mlp3", opt, .bce, lr: lr, steps: 400, faults: [.rate(k), .normalInit]) { opt, fault, seed, rate in
                teacherTask(opt, fault, seed, rate, .bce, outputs: 8) { i, o in
                    BenchModels.mlp(inputs: i, width: 64, depth: 3, outputs: o, layerNorm: false, activation: .tanh)
                }
            }
        }

        // MARK: CNNs on bar images
        for (opt, lr, k) in [(BenchOptimizer.sgd, 0.05, 30.0), (.sgdMomentum, 0.01, 50), (.adam, 1e-3, 50)] {
            add("cnn", opt, .crossEntropy, lr: lr, steps: 200, faults: [.rate(k), .normalInit, .poisonedBatch(step: 100)]) {
                opt, fault, seed, rate in
                let data = BenchDataSets.bars(train: 1024, valid: 256, seed: seed &+ 1000)
                let model = BenchModels.cnn(side: 12, channels: 8, outputs: 4, batchNorm: false)
                return dataTask(model, { model($0) }, data, batch: 32, opt, rate, fault)
            }
        }
        for (opt, lr, k) in [(BenchOptimizer.sgdMomentum, 0.05, 50.0), (.adamw, 2e-3, 50), (.rmsprop, 1e-3, 100)] {
            add("cnn-batchnorm", opt, .crossEntropy, lr: lr, steps: 200, faults: [.rate(k), .poisonedBatch(step: 100)]) {
                opt, fault, seed, rate in
                let data = BenchDataSets.bars(train: 1024, valid: 256, seed: seed &+ 1000)
                let model = BenchModels.cnn(side: 12, channels: 8, outputs: 4, batchNorm: true)
                return dataTask(model, { model($0) }, data, batch: 32, opt, rate, fault)
            }
        }

        // MARK: Recurrent classifiers on chirps
        for (cell, opt, lr, k) in [
            (SequenceModel.Cell.rnn, BenchOptimizer.sgdMomentum, 0.02, 50.0), (.rnn, .adam, 3e-3, 30), (.lstm, .sgdMomentum, 0.15, 30),
            (.lstm, .adam, 3e-3, 50), (.lstm, .rmsprop, 2e-3, 50), (.gru, .sgd, 0.7, 20), (.gru, .adamw, 3e-3, 50)
        ] {
            add("\(cell.rawValue)-chirps", opt, .crossEntropy, lr: lr, steps: 300, faults: [.rate(k), .normalInit]) { opt, fault, seed, rate in
                let data = BenchDataSets.chirps(length: 24, train: 1024, valid: 256, seed: seed &+ 1000)
                let model = SequenceModel(
                    cell: cell, inputSize: 1, hiddenSize: 32, outputSize: 2, forgetGateBias: cell == .lstm ? 1 : nil)
                return dataTask(model, { model($0) }, data, batch: 32, opt, rate, fault)
            }
        }
        // A tanh RNN asked to remember the first of T symbols: short sequences learn, long ones vanish.
        add("rnn-memory", .adam, .crossEntropy, lr: 3e-3, steps: 400, faults: [.longSequence(60)]) { opt, fault, seed, rate in
            var t = 6
            if case .longSequence(let long) = fault { t = long }
            let data = BenchDataSets.firstSymbol(length: t, train: 1024, valid: 256, seed: seed &+ 1000)
            let model = SequenceModel(cell: .rnn, inputSize: 4, hiddenSize: 32, outputSize: 4)
            return dataTask(model, { model($0) }, data, batch: 32, opt, rate, fault)
        }
        // The adding problem with a ReLU RNN (recurrent weights N(0, 1/H)) and with an LSTM.
        for (cell, opt, lr, faults) in [
            (SequenceModel.Cell.rnn, BenchOptimizer.sgdMomentum, 0.01, [BenchFault.rate(30), .recurrentGain(2.5)]),
            (.lstm, .adam, 5e-3, [.rate(50), .normalInit])
        ] {
            add("\(cell.rawValue)-adding", opt, .mse, lr: lr, steps: 400, faults: faults) { opt, fault, seed, rate in
                let data = BenchDataSets.adding(length: 8, train: 1024, valid: 256, seed: seed &+ 1000)
                let model = SequenceModel(
                    cell: cell, inputSize: 2, hiddenSize: 32, outputSize: 1,
                    recurrentInit: cell == .rnn ? .normal(std: 1 / Float(32).squareRoot()) : nil, forgetGateBias: cell == .lstm ? 1 : nil,
                    relu: cell == .rnn)
                if case .recurrentGain(let g) = fault, let rnn = model.rnn {
                    for w in rnn.weightsHH { w.withUnsafeMutableScalars { for i in 0..<$0.count { $0[i] *= Float(g) } } }
                }
                return dataTask(model, { model($0) }, data, batch: 32, opt, rate, fault)
            }
        }

        // MARK: Character language models on the built-in corpus
        for (cell, opt, lr, k) in [(SequenceModel.Cell.lstm, BenchOptimizer.adam, 5e-3, 30.0), (.gru, .adamw, 5e-3, 30), (.rnn, .rmsprop, 2e-3, 30)] {
            add("lm-\(cell.rawValue)", opt, .crossEntropy, lr: lr, steps: 200, faults: [.rate(k), .normalInit, .labelNoise(from: 100, steps: 30)]) {
                opt, fault, seed, rate in
                let (data, vocabulary) = BenchDataSets.characters(length: 24, train: 2048, valid: 128, seed: seed &+ 1000)
                let model = CharLanguageModel(vocabularySize: vocabulary, embeddingSize: 16, hiddenSize: 48, cell: cell)
                return dataTask(model, { model($0) }, data, batch: 16, opt, rate, fault, tokens: true)
            }
        }

        // MARK: Decoder-only transformers on the same characters (causal self-attention, pre-norm)
        for (opt, lr, k, qkNorm) in [
            (BenchOptimizer.adamw, 3e-3, 30.0, false), (.adam, 2e-3, 50, false), (.adamw, 3e-3, 30, true), (.sgdMomentum, 0.05, 30, false)
        ] {
            add(
                qkNorm ? "transformer-qknorm" : "transformer", opt, .crossEntropy, lr: lr, steps: 200,
                faults: [.rate(k), .normalInit, .labelNoise(from: 100, steps: 30)]
            ) {
                opt, fault, seed, rate in
                let (data, vocabulary) = BenchDataSets.characters(length: 24, train: 2048, valid: 128, seed: seed &+ 1000)
                let model = CharTransformer(vocabularySize: vocabulary, width: 32, heads: 2, layers: 2, context: 24, qkNorm: qkNorm)
                return dataTask(model, { model($0) }, data, batch: 16, opt, rate, fault, tokens: true)
            }
        }

        // MARK: Sequence to sequence (number words → digits), LSTM encoder-decoder with attention
        for (opt, lr, k) in [(BenchOptimizer.adam, 3e-3, 50.0), (.sgdMomentum, 0.1, 30)] {
            add("seq2seq", opt, .crossEntropy, lr: lr, steps: 150, faults: [.rate(k), .normalInit]) { opt, fault, seed, rate in
                try translationTask(opt, fault, seed, rate)
            }
        }

        // MARK: The YOLO-style detector on generated shapes (64 pixels, width 8), mAP@0.5
        // (No poisoned batch here: BatchNorm hides ×1000 inputs from the loss and the gradients,
        // while the batch ruins its running statistics — a failure no gradient shows.)
        for (opt, lr, k) in [(BenchOptimizer.sgdMomentum, 0.05, 40.0), (.adamw, 5e-3, 40)] {
            add("detector", opt, .crossEntropy, lr: lr, steps: 200, faults: [.rate(k)]) { opt, fault, seed, rate in
                try detectionTask(opt, fault, seed, rate)
            }
        }

        // MARK: Hybrids: convolution → recurrent → residual MLP (the chirp model of issue 25)
        for (cell, opt, lr, k) in [
            (SequenceModel.Cell.gru, BenchOptimizer.adamw, 3e-3, 50.0), (.gru, .adam, 3e-3, 50), (.gru, .sgdMomentum, 0.02, 50),
            (.lstm, .rmsprop, 1e-3, 100), (.lstm, .adam, 2e-3, 50)
        ] {
            add("hybrid-\(cell.rawValue)", opt, .crossEntropy, lr: lr, steps: 192, faults: [.rate(k), .normalInit, .poisonedBatch(step: 96)]) {
                opt, fault, seed, rate in
                let data = BenchDataSets.chirps(length: 32, train: 1024, valid: 256, seed: seed &+ 1000)
                let model = BenchModels.Hybrid(hidden: 24, outputs: 2, cell: cell, blocks: 2)
                return dataTask(model, { model($0) }, data, batch: 32, opt, rate, fault)
            }
        }
        return out
    }

    // MARK: Tasks

    /// A model on a teacher's data (16 features).
    static func teacherTask(
        _ opt: BenchOptimizer, _ fault: BenchFault, _ seed: UInt64, _ rate: Double, _ objective: BenchObjective, outputs: Int,
        model make: (Int, Int) -> Sequential
    ) -> BenchTask {
        let data = BenchDataSets.teacher(features: 16, outputs: outputs, objective: objective, train: 2048, valid: 512, seed: seed &+ 1000)
        let model = make(16, outputs)
        return dataTask(model, { model($0) }, data, batch: 32, opt, rate, fault)
    }

    /// A model trained on in-memory data under its objective, with the data faults applied.
    /// `tokens`: the inputs are indices (never multiplied).
    static func dataTask(
        _ model: Module, _ forward: @escaping (Tensor) -> Tensor, _ data: BenchData, batch: Int, _ opt: BenchOptimizer, _ rate: Double,
        _ fault: BenchFault, tokens: Bool = false
    ) -> BenchTask {
        let optimizer = opt.make(model.parameters(), lr: rate)
        return BenchTask(
            model: model, optimizer: optimizer,
            loss: { step in
                var (x, y) = data.batch(step, size: batch)
                if case .poisonedBatch(let s) = fault, s == step, !tokens { x = x * 1000 }
                if case .labelNoise(let from, let n) = fault, step >= from, step < from + n {
                    y = data.objective == .mse ? Tensor.zeros(y.shape) + 5 : Tensor.zeros(y.shape)
                }
                return objectiveLoss(forward(x), y, data.objective)
            },
            score: {
                model.eval()
                defer { model.train() }
                return withoutGrad { score(forward(data.validX), data.validY, data.objective) }
            },
            chance: data.chance,
            probe: {
                let (x, y) = data.batch(0, size: BenchRunner.probeBatches * batch)
                return objectiveLoss(forward(x), y, data.objective)
            })
    }

    static func objectiveLoss(_ out: Tensor, _ y: Tensor, _ objective: BenchObjective) -> Tensor {
        switch objective {
        case .crossEntropy:
            let c = out.shape[out.rank - 1]
            return crossEntropy(out.reshaped([-1, c]), y.reshaped([-1]))
        case .mse: return mseLoss(out, y.reshaped(out.shape))
        case .bce: return binaryCrossEntropyWithLogits(out, y)
        }
    }

    /// Accuracy, R² (at least −1) or label accuracy; NaN outputs score as nothing learnt.
    static func score(_ out: Tensor, _ y: Tensor, _ objective: BenchObjective) -> Double {
        let o = out.scalars, t = y.scalars
        switch objective {
        case .crossEntropy:
            let c = out.shape[out.rank - 1], rows = o.count / c
            var right = 0
            for r in 0..<rows {
                var best = 0
                for j in 1..<c where o[r * c + j] > o[r * c + best] { best = j }
                if o[r * c + best].isFinite, best == Int(t[r]) { right += 1 }
            }
            return Double(right) / Double(Swift.max(rows, 1))
        case .mse:
            let mean = t.reduce(0.0) { $0 + Double($1) } / Double(t.count)
            let variance = t.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(t.count)
            let mse = zip(o, t).reduce(0.0) { $0 + (Double($1.0) - Double($1.1)) * (Double($1.0) - Double($1.1)) } / Double(t.count)
            return mse.isFinite ? Swift.max(-1, 1 - mse / Swift.max(variance, 1e-12)) : -1
        case .bce:
            let right = zip(o, t).filter { $0.0.isFinite && ($0.0 > 0) == ($0.1 > 0.5) }.count
            return Double(right) / Double(Swift.max(t.count, 1))
        }
    }

    /// The detector of the workloads (coupled head, two scales, no augmentation) on 96 images
    /// of generated shapes, written once per seed to the temporary folder; score mAP@0.5 on 32.
    static func detectionTask(_ opt: BenchOptimizer, _ fault: BenchFault, _ seed: UInt64, _ rate: Double) throws -> BenchTask {
        let dir = FileManager.default.temporaryDirectory.path + "/gradguard-guardbench-shapes-\(seed)"
        let yaml = dir + "/data.yaml"
        if !FileManager.default.fileExists(atPath: yaml) {
            try ShapesDataset.write(to: dir, options: ShapesDataset.Options(train: 96, val: 32, size: 64, seed: seed &+ 1000), replace: true)
        }
        var s = DetectionWorkload.Settings()
        (s.imageSize, s.width, s.augment, s.seed) = (64, 8, false, seed)
        let workload = try DetectionWorkload(dataYAML: yaml, settings: s)
        let model = workload.model
        let optimizer = opt.make(model.parameters(), lr: rate)
        let batch = 8, count = workload.train.count
        guard let validation = workload.validation else { throw BenchError.noValidation("detector") }
        let probeBatch = try workload.train.batch(Array(BenchData.rows(0, size: BenchRunner.probeBatches * batch, of: count)))
        return BenchTask(
            model: model, optimizer: optimizer,
            loss: { step in
                var b = try workload.train.batch(Array(BenchData.rows(step, size: batch, of: count)))
                if case .poisonedBatch(let at) = fault, at == step { b = Batch(inputs: b.inputs * 1000, targets: b.targets, indices: b.indices) }
                return workload.loss(model, b)
            },
            score: { try workload.datasetMetrics(model, validation)["map50"] ?? 0 },
            chance: 0,
            probe: { workload.loss(model, probeBatch) })
    }

    /// Number words → digits with the project's encoder-decoder; score exp(−validation loss)
    /// (the mean probability of the right next character).
    static func translationTask(_ opt: BenchOptimizer, _ fault: BenchFault, _ seed: UInt64, _ rate: Double) throws -> BenchTask {
        let pairs = NumberWordsTask.pairs(train: 2048, validation: 128, seed: seed &+ 1000)
        let set = TranslationSet(pairs: pairs.train + pairs.validation)
        var s = TranslationTask.Settings()
        (s.embedding, s.hidden) = (16, 48)
        let task = TranslationTask(train: pairs.train, validation: pairs.validation, set: set, settings: s)
        let model = task.model
        let optimizer = opt.make(model.parameters(), lr: rate)
        let batch = 32, count = pairs.train.count
        let valid = try task.validation!.batch(Array(0..<pairs.validation.count))
        let probeBatch = try task.train.batch(Array(BenchData.rows(0, size: BenchRunner.probeBatches * batch, of: count)))
        return BenchTask(
            model: model, optimizer: optimizer,
            loss: { step in
                var b = try task.train.batch(Array(BenchData.rows(step, size: batch, of: count)))
                if case .labelNoise(let from, let n) = fault, step >= from, step < from + n {
                    b = Batch(inputs: b.inputs, targets: Tensor.zeros(b.targets.shape) + 3, indices: b.indices)
                }
                return task.loss(model, b)
            },
            score: {
                let l = Double(model.inferring { withoutGrad { task.loss(model, valid) } }.item)
                return l.isFinite ? Foundation.exp(-l) : 0
            },
            chance: 1 / Double(set.target.count),
            probe: { task.loss(model, probeBatch) })
    }
}
