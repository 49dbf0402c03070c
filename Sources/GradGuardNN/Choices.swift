import GradGuardSettings
import GradGuardTensor

/// The hidden activations a run can name.
public enum ActivationKind: String, SettingChoice {
    case relu, tanh

    /// One line for `gradguard settings`.
    public var help: String {
        switch self {
        case .relu: return "max(0, x)"
        case .tanh: return "tanh(x)"
        }
    }

    /// The gain the initialisers use before this activation.
    public var nonlinearity: Nonlinearity { self == .tanh ? .tanh : .relu }

    /// A new layer computing this activation.
    public func layer() -> any UnaryLayer { self == .tanh ? Tanh() : ReLU() }
}

/// The weight initialisations a run can name.
public enum InitKind: String, SettingChoice {
    case `default`, kaiming, xavier, normal

    /// One line for `gradguard settings`.
    public var help: String {
        switch self {
        case .default: return "each layer's own (PyTorch's)"
        case .kaiming: return "Kaiming normal, fan-in, with the activation's gain (He et al. 2015)"
        case .xavier: return "Xavier uniform, gain 5/3 before tanh and 1 before ReLU (Glorot & Bengio 2010)"
        case .normal: return "N(0, 1): too large for deep networks, to watch gradients explode"
        }
    }

    /// The initialiser for layers followed by `activation` (nil: the layer's default).
    public func initializer(for activation: ActivationKind) -> Initializer? {
        switch self {
        case .default: return nil
        case .kaiming: return .kaimingNormal(nonlinearity: activation.nonlinearity)
        case .xavier: return .xavierUniform(gain: activation == .tanh ? 5.0 / 3 : 1)  // ReLU layers with gain 1, as before
        case .normal: return .normal(std: 1)
        }
    }
}
