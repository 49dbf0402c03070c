import GradGuard

/// The models a run can train.
public enum ModelKind: String, SettingChoice {
    case mlp, charlm, transformer, seq2seq, sequence, detector

    /// One line for `gradguard settings`.
    public var help: String {
        switch self {
        case .mlp: return "a multilayer perceptron on teacher data"
        case .charlm: return "a character language model on a text"
        case .transformer: return "a decoder-only transformer character model on a text (causal self-attention)"
        case .seq2seq: return "an encoder-decoder translation model on sentence pairs"
        case .sequence: return "a recurrent model on a long-dependency task"
        case .detector: return "a YOLO-style object detector on a data.yaml dataset"
        }
    }

    /// The data kinds this model trains on.
    public var dataKinds: [DataKind] {
        switch self {
        case .mlp: return [.teacher]
        case .charlm, .transformer: return [.text]
        case .seq2seq: return [.pairs]
        case .sequence: return [.adding, .temporalOrder, .copyMemory]
        case .detector: return [.yolo]
        }
    }

    /// How this model's modules group into parts in the report (the detector's backbone, neck
    /// and head), when they do.
    public var moduleParts: (any ModuleParts)? { self == .detector ? DetectorParts() : nil }

    var defaultWidth: Int { self == .detector ? 16 : 64 }
    var defaultLayers: Int { self == .mlp ? 8 : self == .transformer ? 2 : 1 }
}

/// The data a run can train on.
public enum DataKind: String, SettingChoice {
    case teacher, text, pairs, yolo, adding
    case temporalOrder = "temporal-order"
    case copyMemory = "copy-memory"

    /// One line for `gradguard settings`.
    public var help: String {
        switch self {
        case .teacher: return "Gaussian inputs labelled by a random linear teacher"
        case .text: return "the characters of data.path (UTF-8), or the built-in corpus"
        case .pairs: return "tab-separated translation pairs in data.path, or number words → digits"
        case .yolo: return "a data.yaml dataset (Ultralytics layout), or generated shapes"
        case .adding, .temporalOrder, .copyMemory: return "long-dependency task: " + (task?.help ?? "")
        }
    }

    /// The long-dependency task, for those kinds.
    public var task: LongDependencyTask? { LongDependencyTask(rawValue: rawValue) }
}

/// The model a run trains (`model.*`; the detector's own are `DetectorSettings`).
public struct ModelSettings: SettingSection {
    /// The model (and with it the data it takes).
    public var kind = ModelKind.mlp
    /// Hidden layers, transformer blocks or recurrent layers (0: the kind's default).
    public var layers = 0
    /// Hidden width, recurrent hidden size, transformer width or a detector's first channels (0: the default).
    public var width = 0
    /// The MLP's hidden activation.
    public var activation = ActivationKind.relu
    /// The weight initialisation.
    public var initialisation = InitKind.kaiming
    /// BatchNorm1d after every hidden layer of the MLP.
    public var batchNorm = false
    /// The recurrent cell of the char LM and the long-dependency model.
    public var cell = SequenceModel.Cell.lstm
    /// The embedding size of the char LM and the translation model.
    public var embedding = 64
    /// Whether the translation model's decoder attends over the source.
    public var attention = true
    /// The transformer: attention heads, QK-norm, dropout.
    public var heads = 4
    /// Whether the transformer normalises its queries and keys (QK-norm).
    public var qkNorm = false
    /// The transformer's dropout probability.
    public var dropout = 0.0
    /// An exponential moving average of the weights for evaluation and checkpoints (Ultralytics'
    /// ModelEMA), its decay and ramp.
    public var ema = false
    /// The weight average's decay once ramped up.
    public var emaDecay = 0.9999
    /// Updates over which the weight average's decay ramps up.
    public var emaTau = 2000.0
    /// The char LM and the translation model: weight of PaLM's z-loss, 1e-4·log²Z (0: off).
    public var zLoss = 0.0
    /// Batch normalisation over every rank's batch (PyTorch's SyncBatchNorm) instead of each
    /// rank's own.
    public var syncBatchNorm = false

    /// The defaults.
    public init() {}

    /// The `model.*` settings.
    public static let settings: [Setting<ModelSettings>] = [
        .choice("model.kind", \.kind, "the model (and the data it takes)"),
        .int(
            "model.layers", \.layers, in: 0...1000,
            "hidden layers (mlp), transformer blocks, or stacked recurrent layers, at most 4 (0: 8 for mlp, 2 for transformer, 1 otherwise)"),
        .int(
            "model.width", \.width, in: 0...100_000,
            "hidden width, recurrent hidden size, or a detector's first-layer channels (0: the detector's model.size, 64 otherwise)"),
        .bool("model.ema", \.ema, "evaluate and deliver a moving average of the weights (Ultralytics' ModelEMA)"),
        .double("model.ema_decay", \.emaDecay, in: 0.5...0.999999999, "model.ema: the average's decay once ramped up"),
        .double("model.ema_tau", \.emaTau, in: 1...1e9, "model.ema: updates over which the decay ramps up, d = decay·(1 − e^(−updates/tau))"),
        .double(
            "model.z_loss", \.zLoss, in: 0...1,
            "charlm, transformer, seq2seq: weight of the z-loss on the output logits, weight·log²Z (PaLM: 1e-4; 0: off)"),
        .int("model.heads", \.heads, in: 1...1024, "transformer: attention heads (model.width must divide into them)"),
        .bool("model.qk_norm", \.qkNorm, "transformer: RMS-normalise every head's queries and keys (QK-norm: bounds the attention logits)"),
        .double("model.dropout", \.dropout, in: 0...0.9, "transformer: dropout on attention weights, residual branches and the feed-forward network"),
        .choice("model.cell", \.cell, "recurrent cell (charlm, sequence)"),
        .int("model.embedding", \.embedding, in: 1...100_000, "embedding size (charlm, seq2seq; a transformer's is model.width)"),
        .bool("model.attention", \.attention, "dot-product attention over the source (seq2seq)"),
        .choice("model.activation", \.activation, "hidden activation"),
        .choice("model.init", \.initialisation, "weight initialisation (default: PyTorch's)"),
        .bool(
            "model.sync_batch_norm", \.syncBatchNorm,
            "under mpirun: batch statistics over every rank's batch (SyncBatchNorm), not each rank's own", resumable: true),
        .bool("model.batch_norm", \.batchNorm, "BatchNorm1d after every hidden layer")
    ]

    /// A combination of model settings that cannot run, with the key to change.
    public func problem() -> (key: String, message: String)? {
        if zLoss > 0 && ![.charlm, .transformer, .seq2seq].contains(kind) {
            return ("model.z_loss", "the z-loss is for model.kind charlm, transformer or seq2seq, got '\(kind.rawValue)'")
        }
        if kind == .transformer && width > 0 && width % heads != 0 {
            return ("model.width", "a transformer's width must divide into model.heads \(heads) heads, got \(width)")
        }
        if kind == .transformer && width == 0 && 64 % heads != 0 {
            return ("model.heads", "the default width 64 does not divide into \(heads) heads: set model.width")
        }
        if kind == .transformer && layers > 12 { return ("model.layers", "at most 12 transformer blocks, got \(layers)") }
        if kind != .mlp && kind != .transformer && layers > 4 { return ("model.layers", "at most 4 recurrent layers, got \(layers)") }
        return nil
    }

    /// Hidden layers of the MLP, or stacked recurrent layers, with 0 resolved to the model's default.
    public var layerCount: Int { layers > 0 ? layers : kind.defaultLayers }
}

/// The data a run trains on (`data.*`; the detector's images are `DetectorSettings`).
public struct DataSettings: SettingSection {
    /// The data.
    public var kind = DataKind.teacher
    /// The data file (empty: the built-in data).
    public var path = ""
    /// Characters per window of text, or the length T of a long-dependency task.
    public var sequenceLength = 64
    /// Training examples of generated data.
    public var trainSize = 4096
    /// Validation examples of generated data.
    public var validationSize = 512
    /// Input dimensions of the teacher data.
    public var inputs = 32
    /// Classes of the teacher data.
    public var classes = 10
    /// The fraction of training labels replaced at random.
    public var labelNoise = 0.0
    /// The validation loss below which a long-dependency task counts as solved (0: a tenth of the memoryless baseline).
    public var successLoss = 0.0

    /// The defaults.
    public init() {}

    /// The `data.*` settings.
    public static let settings: [Setting<DataSettings>] = [
        .choice("data.kind", \.kind, "the data"),
        .string(
            "data.path", \.path,
            "UTF-8 text (text), tab-separated pairs (pairs) or data.yaml (yolo); empty: the built-in corpus, number words → digits, or generated shapes",
            emptyAllowed: true),
        .int("data.sequence_length", \.sequenceLength, in: 2...100_000, "characters per training window (text); T of a long-dependency task"),
        .int("data.train", \.trainSize, in: 1...10_000_000, "training examples"),
        .int("data.validation", \.validationSize, in: 0...10_000_000, "validation examples"),
        .int("data.inputs", \.inputs, in: 1...100_000, "input dimensions"),
        .int("data.classes", \.classes, in: 2...100_000, "classes"),
        .double("data.label_noise", \.labelNoise, in: 0...1, "fraction of training labels replaced at random"),
        .double(
            "data.success_loss", \.successLoss, in: 0...1e6,
            "long-dependency task solved below this validation loss (0: a tenth of the memoryless baseline)")
    ]

    /// A combination of data settings that cannot run, with the key to change.
    public func problem() -> (key: String, message: String)? {
        if let task = kind.task, sequenceLength < (task == .copyMemory ? 11 : 4) {
            return ("data.sequence_length", "\(kind.rawValue) needs a sequence length of at least \(task == .copyMemory ? 11 : 4), got \(sequenceLength)")
        }
        return nil
    }
}
