import GradGuardSettings
import GradGuardTensor

// The enumerated settings of the model library, with their help texts.

extension SequenceModel.Cell: SettingChoice {
    /// One line for `gradguard settings`.
    public var help: String {
        switch self {
        case .rnn: return "Elman RNN, tanh"
        case .lstm: return "LSTM (forget-gate bias 1)"
        case .gru: return "GRU"
        }
    }
}

extension BoxLoss: SettingChoice {
    /// One line for `gradguard settings`.
    public var help: String {
        switch self {
        case .giou: return "1 − GIoU (Rezatofighi et al. 2019)"
        case .ciou: return "1 − CIoU (Zheng et al. 2020)"
        }
    }
}

extension DataIssuePolicy: SettingChoice {
    /// One line for `gradguard settings`.
    public var help: String {
        switch self {
        case .skip: return "leave bad label lines, orphan labels and unreadable images out, and report them"
        case .fail: return "stop with every problem found"
        }
    }
}

extension LongDependencyTask: SettingChoice {
    /// One line for `gradguard settings`.
    public var help: String {
        switch self {
        case .adding: return "the sum of two marked values (Hochreiter & Schmidhuber 1997)"
        case .temporalOrder: return "the order of two symbols among distractors"
        case .copyMemory: return "reproduce ten symbols after a long blank stretch"
        }
    }
}

/// The detector's sizes, as Ultralytics' scales: n and s share the depth and differ in width
/// (YOLOv8's width multiples 0.25 and 0.5 of 64 channels give a first layer of 16 and 32).
public enum DetectorSize: String, SettingChoice {
    case n, s, m

    /// Channels of the first layer.
    public var width: Int {
        switch self {
        case .n: return 16
        case .s: return 32
        case .m: return 48
        }
    }

    /// One line for `gradguard settings`.
    public var help: String {
        switch self {
        case .n: return "nano: first layer 16 channels (as YOLOv8n)"
        case .s: return "small: 32 channels (as YOLOv8s)"
        case .m: return "medium: 48 channels (YOLOv8m's width, this depth)"
        }
    }
}

/// The detector's head and the loss that goes with it.
public enum DetectorHead: String, SettingChoice {
    case coupled, decoupled

    /// One line for `gradguard settings`.
    public var help: String {
        switch self {
        case .coupled: return "YOLOv5's: one 1×1 convolution per scale for box, objectness and classes; centre-cell assignment, bounded box decoding"
        case .decoupled:
            return "YOLOv8's: separate box and class branches, box sides as distributions over 16 bins (DFL), task-aligned assignment"
        }
    }
}

/// The detector's blocks after each downsampling convolution.
public enum DetectorBlock: String, SettingChoice {
    case conv, c2f

    /// One line for `gradguard settings`.
    public var help: String {
        switch self {
        case .conv: return "one 3×3 Conv-BN-SiLU"
        case .c2f: return "YOLOv8's C2f: a split, bottlenecks of two 3×3 convolutions, every output concatenated (SPPF at the top with 3 scales)"
        }
    }
}
