import GradGuardTensor

// The enumerated settings of the model library, with their help texts.

extension SequenceModel.Cell: SettingChoice {
    public var help: String {
        switch self {
        case .rnn: return "Elman RNN, tanh"
        case .lstm: return "LSTM (forget-gate bias 1)"
        case .gru: return "GRU"
        }
    }
}

extension BoxLoss: SettingChoice {
    public var help: String {
        switch self {
        case .giou: return "1 − GIoU (Rezatofighi et al. 2019)"
        case .ciou: return "1 − CIoU (Zheng et al. 2020)"
        }
    }
}

extension DataIssuePolicy: SettingChoice {
    public var help: String {
        switch self {
        case .skip: return "leave bad label lines, orphan labels and unreadable images out, and report them"
        case .fail: return "stop with every problem found"
        }
    }
}

extension LongDependencyTask: SettingChoice {
    public var help: String {
        switch self {
        case .adding: return "the sum of two marked values (Hochreiter & Schmidhuber 1997)"
        case .temporalOrder: return "the order of two symbols among distractors"
        case .copyMemory: return "reproduce ten symbols after a long blank stretch"
        }
    }
}
