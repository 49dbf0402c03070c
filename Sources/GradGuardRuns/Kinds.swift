import GradGuard

/// The models a run can train.
public enum ModelKind: String, SettingChoice {
    case mlp, charlm, seq2seq, sequence, detector

    public var help: String {
        switch self {
        case .mlp: return "a multilayer perceptron on teacher data"
        case .charlm: return "a character language model on a text"
        case .seq2seq: return "an encoder-decoder translation model on sentence pairs"
        case .sequence: return "a recurrent model on a long-dependency task"
        case .detector: return "a YOLO-style object detector on a data.yaml dataset"
        }
    }

    /// The data kinds this model trains on.
    public var dataKinds: [DataKind] {
        switch self {
        case .mlp: return [.teacher]
        case .charlm: return [.text]
        case .seq2seq: return [.pairs]
        case .sequence: return [.adding, .temporalOrder, .copyMemory]
        case .detector: return [.yolo]
        }
    }

    var defaultWidth: Int { self == .detector ? 16 : 64 }
    var defaultLayers: Int { self == .mlp ? 8 : 1 }
}

/// The data a run can train on.
public enum DataKind: String, SettingChoice {
    case teacher, text, pairs, yolo, adding
    case temporalOrder = "temporal-order"
    case copyMemory = "copy-memory"

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
