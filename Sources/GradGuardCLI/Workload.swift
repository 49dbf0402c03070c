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
    let model: Sequential
    let optimizer: Optimizer
    let scheduler: LRScheduler?
    let policy: GuardPolicy
    let train: TensorDataset
    let validation: TensorDataset?
    let trainer: TrainerConfig

    init(_ c: RunConfig) {
        DefaultGenerator.seed(UInt64(c.seed))
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
        model = Sequential(layers)
        let params = model.parameters()
        switch c.optimizer {
        case "adam": optimizer = Adam(params, lr: c.lr, weightDecay: c.weightDecay)
        case "adamw": optimizer = AdamW(params, lr: c.lr, weightDecay: c.weightDecay)
        case "rmsprop": optimizer = RMSprop(params, lr: c.lr, weightDecay: c.weightDecay, momentum: c.momentum)
        default: optimizer = SGD(params, lr: c.lr, momentum: c.momentum, weightDecay: c.weightDecay)
        }
        let stepsPerEpoch = Swift.max(1, c.trainSize / (c.batchSize * c.accumulation))
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
        policy = GuardPolicy(clipper: clipper, snapshotEvery: c.snapshotEvery, maxFailedRecoveries: c.maxFailedRecoveries)
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
        trainer = t
    }

    /// Cross-entropy of the model on a batch.
    static func loss(_ model: Module, _ batch: Batch) -> Tensor {
        crossEntropy((model as! Sequential)(batch.inputs), batch.targets)
    }

    /// Loss and accuracy of a batch (for evaluation).
    static func metrics(_ model: Module, _ batch: Batch) -> [String: Double] {
        let logits = (model as! Sequential)(batch.inputs)
        return ["loss": Double(crossEntropy(logits, batch.targets).item),
                "accuracy": Double(logits.argmax(axis: 1).eq(batch.targets).mean().item)]
    }

    func makeTrainer(runDirectory: String) throws -> Trainer {
        let t = try Trainer(model: model, optimizer: optimizer, scheduler: scheduler, policy: policy, config: trainer,
                            runDirectory: runDirectory, loss: Workload.loss)
        t.evaluate = Workload.metrics
        return t
    }
}
