import Foundation
import GradGuard
import GradGuardRuns

/// The demos on initialisation, learning rate and regularisation (small MLPs and CNNs).
extension Demo {
    /// Teacher data of the MLP demos (`gradguard train`'s built-in data).
    func teacherData(train: Int, validation: Int, inputs: Int = 32, classes: Int = 10, labelNoise: Double = 0) -> (TensorDataset, TensorDataset) {
        var s = TeacherClassification.Settings()
        (s.seed, s.trainSize, s.validationSize, s.inputs, s.classes, s.labelNoise) = (
            UInt64(seed), train, Swift.max(1, validation), inputs, classes, labelNoise
        )
        let (t, v) = TeacherClassification.teacherData(s)
        return (t, v ?? t)
    }

    /// Cross-entropy and accuracy of a classifier on a whole dataset, in evaluation mode.
    func classification(_ model: Module & UnaryLayer, _ data: TensorDataset) -> (loss: Double, accuracy: Double) {
        model.inferring {
            let logits = model(data.inputs)
            return (Double(crossEntropy(logits, data.targets).item), Double(logits.argmax(axis: 1).eq(data.targets).mean().item))
        }
    }

    /// Gradient norms of every weight matrix or kernel (not biases, not BatchNorm), in
    /// depth order, from one forward and backward pass on `batch`.
    func layerGradientNorms(_ model: Module & UnaryLayer, inputs: Tensor, targets: Tensor) -> [Double] {
        let weights = model.namedParameters().filter { $0.name.hasSuffix("weight") && $0.tensor.rank >= 2 }.map(\.tensor)
        model.zeroGrad()
        crossEntropy(model(inputs), targets).backward()
        defer { model.zeroGrad() }
        return weights.map { w in
            guard let g = w.grad else { return 0 }
            return Foundation.sqrt(g.scalars.reduce(0.0) { $0 + Double($1) * Double($1) })
        }
    }

    // MARK: init

    func initialisation(steps: Int) throws -> DemoTable {
        let depth = 30
        let inits: [(String, Initializer)] = [
            ("N(0,1)", .normal(std: 1)), ("xavier", .xavierUniform(gain: 1)),
            ("kaiming", .kaimingNormal(nonlinearity: .relu))
        ]
        let n = examples ?? 2048
        let (mlpTrain, mlpValid) = teacherData(train: examples ?? 4096, validation: 512)
        // Shapes images of 16×16 with one object, labelled by its class.
        var g = RandomGenerator(seed: UInt64(seed) &+ 3)
        func shapes(_ n: Int) -> TensorDataset {
            var xs: [Tensor] = [], ys: [Float] = []
            for _ in 0..<n {
                let (image, boxes) = ShapesDataset.sample(size: 16, generator: &g, maxObjects: 1, maxOverlap: 0, minSide: 0.45, maxSide: 0.8)
                xs.append(image.tensor())
                ys.append(Float(boxes[0].classIndex))
            }
            return TensorDataset(inputs: Tensor.stack(xs), targets: Tensor(shape: [n], scalars: ys))
        }
        let (cnnTrain, cnnValid) = (shapes(n), shapes(n / 4))
        var lines: [String] = []
        for kind in ["mlp", "cnn"] {
            for batchNorm in [false, true] {
                for (initName, initializer) in inits {
                    DefaultGenerator.seed(UInt64(seed))
                    var layers: [any UnaryLayer] = []
                    for i in 0..<depth {
                        if kind == "mlp" {
                            layers.append(Linear(inputSize: i == 0 ? 32 : 64, outputSize: 64, weightInit: initializer))
                            if batchNorm { layers.append(BatchNorm1d(numFeatures: 64)) }
                        } else {
                            layers.append(Conv2d(inChannels: i == 0 ? 3 : 16, outChannels: 16, kernelSize: (3, 3), padding: (1, 1), weightInit: initializer))
                            if batchNorm { layers.append(BatchNorm2d(numFeatures: 16)) }
                        }
                        layers.append(ReLU())
                    }
                    if kind == "cnn" { layers += [AdaptiveAvgPool2d(outputSize: (1, 1)), Flatten()] }
                    layers.append(Linear(inputSize: kind == "mlp" ? 64 : 16, outputSize: kind == "mlp" ? 10 : 3, weightInit: initializer))
                    let model = Sequential(layers)
                    let (train, valid) = kind == "mlp" ? (mlpTrain, mlpValid) : (cnnTrain, cnnValid)
                    let probe = (
                        train.inputs.narrow(axis: 0, start: 0, length: Swift.min(64, n)), train.targets.narrow(axis: 0, start: 0, length: Swift.min(64, n))
                    )
                    let before = layerGradientNorms(model, inputs: probe.0, targets: probe.1)
                    let name = "\(kind)-\(initName == "N(0,1)" ? "normal" : initName)\(batchNorm ? "-bn" : "")"
                    let run = try fitRun(
                        model, optimizer: SGD(model.parameters(), lr: 0.01, momentum: 0.9), policy: .monitorOnly, steps: steps,
                        directory: "\(runsDirectory)/\(name)",
                        config: """
                            # gradguard demo init
                            model: \(depth)-layer \(kind), \(initName) initialisation\(batchNorm ? ", BatchNorm" : "")
                            optimizer: SGD lr 0.01 momentum 0.9, batch 32, \(steps) steps
                            guard: monitor only
                            """, train: train, validation: valid
                    ) { _, b in crossEntropy(model(b.inputs), b.targets) }
                    let after = layerGradientNorms(model, inputs: probe.0, targets: probe.1)
                    let (_, accuracy) = classification(model, valid)
                    let mid = depth / 2
                    let at = { (v: [Double]) in [v[0], v[mid], v[depth - 1]].map { Demo.cell($0, "%.1e") }.joined(separator: " / ") }
                    lines.append(
                        "| \(kind) | \(initName) | \(batchNorm ? "yes" : "no") | \(at(before)) | \(at(after)) | \(Demo.cell(accuracy)) | \(run.trainer.guardian.incidents.count) |"
                    )
                    print("\(name): accuracy \(Demo.cell(accuracy))")
                }
            }
        }
        return table(
            "\(depth)-layer ReLU MLP (width 64, teacher data, 10 classes: chance 0.1) and CNN (16 channels, 16×16 shapes, 3 classes: chance 0.33); SGD lr 0.01 momentum 0.9, \(steps) steps, unguarded",
            header: "model | init | BatchNorm | ‖g‖ layers 1 / 15 / 30, step 0 | ‖g‖ layers 1 / 15 / 30, after | validation accuracy | incidents", rows: lines)
    }

    // MARK: lr

    func learningRates(steps: Int) throws -> DemoTable {
        let (train, valid) = teacherData(train: 4096, validation: 512)
        let rates = [0.01, 0.03, 0.1, 0.3, 1, 3]
        let warm = Swift.max(1, steps / 4)
        var lines: [String] = []
        for lr in rates {
            var cells: [String] = []
            for variant in ["plain", "warmup-cosine", "guard", "guard-clip"] {
                DefaultGenerator.seed(UInt64(seed))
                var layers: [any UnaryLayer] = []
                for i in 0..<8 { layers += [Linear(inputSize: i == 0 ? 32 : 64, outputSize: 64, weightInit: .kaimingNormal(nonlinearity: .relu)), ReLU()] }
                layers.append(Linear(inputSize: 64, outputSize: 10))
                let model = Sequential(layers)
                let opt = SGD(model.parameters(), lr: lr, momentum: 0.9)
                let scheduler =
                    variant == "warmup-cosine"
                    ? LRScheduler(
                        opt, SequentialSchedule([LinearLR(startFactor: 0.01, totalIters: warm), CosineAnnealingLR(tMax: steps - warm)], milestones: [warm]))
                    : nil
                let policy = variant == "guard" ? GuardPolicy() : variant == "guard-clip" ? GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 1)) : .monitorOnly
                let run = try fitRun(
                    model, optimizer: opt, scheduler: scheduler, policy: policy, steps: steps,
                    batchSize: 64, directory: "\(runsDirectory)/lr\(lr)-\(variant)",
                    config: """
                        # gradguard demo lr
                        model: 8-layer ReLU MLP, width 64, kaiming
                        optimizer: SGD lr \(lr) momentum 0.9, batch 64, \(steps) steps
                        schedule: \(variant == "warmup-cosine" ? "linear warm-up over \(warm) steps, then cosine" : "constant")
                        guard: \(variant == "guard" ? "skip, back off ×0.5, roll back (no clipping)" : variant == "guard-clip" ? "clip the global norm at 1, back off ×0.5, roll back" : "monitor only")
                        """, train: train, validation: valid
                ) { _, b in crossEntropy(model(b.inputs), b.targets) }
                let (loss, accuracy) = classification(model, valid)
                let diverged = run.diverged || !loss.isFinite || loss > 10 * Foundation.log(10.0)
                var details = diverged ? ["loss \(Demo.cell(loss, "%.3g"))"] : []
                if variant.hasPrefix("guard") {
                    let g = run.trainer.guardian
                    details += ["lr ×\(Demo.cell(g.lrScale, "%.3g"))", "\(g.incidents.count) incidents", "\(g.skippedSteps + g.undoneSteps) steps lost"]
                }
                let text = diverged ? "diverged" : Demo.cell(accuracy)
                cells.append(details.isEmpty ? text : text + " (" + details.joined(separator: ", ") + ")")
            }
            lines.append("| \(lr) | " + cells.joined(separator: " | ") + " |")
            print("lr \(lr): " + cells.joined(separator: "; "))
        }
        return table(
            "8-layer ReLU MLP (width 64, kaiming) on teacher data (10 classes), SGD momentum 0.9, batch 64, \(steps) steps: validation accuracy",
            header: "lr | plain | warm-up \(warm) steps + cosine | guard: skip and back off | guard: clip at 1, back off", rows: lines)
    }

    // MARK: regularization

    func regularization(steps: Int) throws -> DemoTable {
        let (train, valid) = teacherData(train: 512, validation: 2048, labelNoise: 0.3)
        let variants: [(String, Double, Double, Bool)] = [  // name, L1 λ, L2 / weight decay, decoupled
            ("none", 0, 0, false), ("L1 penalty 1e-4", 1e-4, 0, false), ("L2 (Adam weight_decay 1e-3)", 0, 1e-3, false),
            ("decoupled weight decay (AdamW 0.5)", 0, 0.5, true)
        ]
        var lines: [String] = []
        for (name, l1, decay, decoupled) in variants {
            DefaultGenerator.seed(UInt64(seed))
            let model = Sequential(
                Linear(inputSize: 32, outputSize: 256), ReLU(), Linear(inputSize: 256, outputSize: 256), ReLU(),
                Linear(inputSize: 256, outputSize: 256), ReLU(), Linear(inputSize: 256, outputSize: 10))
            let weights = model.namedParameters().filter { $0.name.hasSuffix("weight") }.map(\.tensor)
            let opt: any Optimizer =
                decoupled ? AdamW(model.parameters(), lr: 1e-3, weightDecay: decay) : Adam(model.parameters(), lr: 1e-3, weightDecay: decay)
            let run = try fitRun(
                model, optimizer: opt, policy: .monitorOnly, steps: steps, batchSize: 64,
                directory: "\(runsDirectory)/\(name.split(separator: " ")[0].lowercased())",
                config: """
                    # gradguard demo regularization
                    model: MLP 32-256-256-256-10, ReLU; 512 training examples, 30 % of labels noisy
                    optimizer: \(decoupled ? "AdamW" : "Adam") lr 0.001, weight decay \(decay), L1 \(l1), batch 64, \(steps) steps
                    """, train: train, validation: valid
            ) { _, b in
                let ce = crossEntropy(model(b.inputs), b.targets)
                return l1 > 0 ? ce + l1Penalty(weights) * Float(l1) : ce
            }
            let weightNorm = Foundation.sqrt(weights.reduce(0.0) { $0 + $1.scalars.reduce(0.0) { $0 + Double($1) * Double($1) } })
            let tail = run.gradNorms.suffix(100)
            let (trainLoss, _) = classification(model, train)
            let (validLoss, validAccuracy) = classification(model, valid)
            lines.append(
                "| \(name) | \(Demo.cell(weightNorm, "%.1f")) | \(Demo.cell(tail.reduce(0, +) / Double(Swift.max(1, tail.count)))) | \(Demo.cell(trainLoss)) | \(Demo.cell(validLoss)) | \(Demo.cell(validAccuracy)) |"
            )
            print("\(name): validation loss \(Demo.cell(validLoss))")
        }
        return table(
            "MLP 32-256-256-256-10 on 512 teacher examples with 30 % noisy labels (validation clean), Adam lr 0.001, batch 64, \(steps) steps",
            header: "regularisation | ‖W‖ at the end | mean ‖g‖, last 100 steps | training loss | validation loss | validation accuracy", rows: lines)
    }
}
