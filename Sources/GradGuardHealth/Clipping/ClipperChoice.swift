import GradGuardOptim
import GradGuardSettings
import GradGuardTensor

/// The thresholds and parameters of every clipper a run can name; each clipper reads its own
/// (`ClipperKind.settings`).
public struct ClipperSettings: Sendable, Equatable {
    /// global-norm, per-module: the largest global (or per-module) L2 norm.
    public var maxNorm = 5.0
    /// value: the largest gradient magnitude.
    public var clipValue = 1.0
    /// agc: the largest ratio of a unit's gradient norm to its weight norm.
    public var agcRatio = 0.01
    /// zclip: the z-score above which a norm is clipped, the EMA factor, the warm-up steps.
    public var zThreshold = 2.5
    /// zclip: the EMA factor α.
    public var zAlpha = 0.97
    /// zclip: the warm-up steps.
    public var zWarmupSteps = 25
    /// autoclip: the percentile of the norm history that is the threshold.
    public var percentile = 10.0
    /// adagc: the global threshold of its warm-up, the relative threshold, the EMA factor of
    /// each tensor's clipped norm, the warm-up steps.
    public var adagcLambdaAbs = 1.0
    /// adagc: λ_rel.
    public var adagcLambdaRel = 1.05
    /// adagc: β.
    public var adagcBeta = 0.98
    /// adagc: the warm-up steps.
    public var adagcWarmupSteps = 100

    /// The defaults.
    public init() {}
}

/// One setting of `ClipperSettings`: its key under `guard.`, range and help.
public enum ClipperSetting: String, CaseIterable, Sendable {
    case maxNorm = "max_norm"
    case clipValue = "clip_value"
    case agcRatio = "agc_ratio"
    case zThreshold = "zclip.z_threshold"
    case zAlpha = "zclip.alpha"
    case zWarmupSteps = "zclip.warmup_steps"
    case percentile = "autoclip.percentile"
    case adagcLambdaAbs = "adagc.lambda_abs"
    case adagcLambdaRel = "adagc.lambda_rel"
    case adagcBeta = "adagc.beta"
    case adagcWarmupSteps = "adagc.warmup_steps"

    /// The setting's type and range, and where its value lives.
    public enum Value {
        case double(ClosedRange<Double>, WritableKeyPath<ClipperSettings, Double>)
        case int(ClosedRange<Int>, WritableKeyPath<ClipperSettings, Int>)
    }

    /// This setting's type, range and place.
    public var value: Value {
        switch self {
        case .maxNorm: return .double(1e-12...1e12, \.maxNorm)
        case .clipValue: return .double(1e-12...1e12, \.clipValue)
        case .agcRatio: return .double(1e-12...1e6, \.agcRatio)
        case .zThreshold: return .double(1e-6...1e6, \.zThreshold)
        case .zAlpha: return .double(1e-6...0.999999, \.zAlpha)
        case .zWarmupSteps: return .int(1...1_000_000, \.zWarmupSteps)
        case .percentile: return .double(0...100, \.percentile)
        case .adagcLambdaAbs: return .double(1e-12...1e12, \.adagcLambdaAbs)
        case .adagcLambdaRel: return .double(1e-6...1e6, \.adagcLambdaRel)
        case .adagcBeta: return .double(0...0.999999, \.adagcBeta)
        case .adagcWarmupSteps: return .int(0...1_000_000, \.adagcWarmupSteps)
        }
    }

    /// One line for `gradguard settings`.
    public var help: String {
        switch self {
        case .maxNorm: return "global-norm, per-module: the largest L2 norm of all gradients (of each module's)"
        case .clipValue: return "value: the largest gradient magnitude"
        case .agcRatio: return "agc: the largest ratio of a unit's gradient norm to its weight norm"
        case .zThreshold: return "zclip: the z-score of the gradient norm above which it is clipped"
        case .zAlpha: return "zclip: the factor of the running mean and variance of the norm"
        case .zWarmupSteps: return "zclip: steps whose norms start the statistics"
        case .percentile: return "autoclip: the percentile of the norms so far that is the threshold"
        case .adagcLambdaAbs: return "adagc: the global L2 norm its warm-up clips to"
        case .adagcLambdaRel: return "adagc: a tensor's norm is clipped to this multiple of its own running clipped norm"
        case .adagcBeta: return "adagc: the EMA factor of each tensor's clipped norm"
        case .adagcWarmupSteps: return "adagc: steps of global clipping before the per-tensor thresholds"
        }
    }
}

/// The clippers a run can name.
public enum ClipperKind: String, SettingChoice {
    case none
    case globalNorm = "global-norm"
    case value, zclip, autoclip, agc, adagc
    case perModule = "per-module"

    /// What the clipper's threshold measures, for `gradguard settings`.
    public var help: String {
        switch self {
        case .none: return "no clipping"
        case .globalNorm: return "scale all gradients to a global L2 norm of at most guard.max_norm (clip_grad_norm_)"
        case .value: return "clamp every gradient value to ±guard.clip_value (clip_grad_value_)"
        case .zclip: return "ZClip: clip norms whose z-score exceeds guard.zclip.z_threshold (Kumar et al. 2025)"
        case .autoclip: return "AutoClip: clip at the guard.autoclip.percentile-th percentile of past norms (Seetharaman et al. 2020)"
        case .agc: return "adaptive gradient clipping, unit-wise, at guard.agc_ratio of the weight norm (Brock et al. 2021)"
        case .perModule: return "each module's gradients to an L2 norm of at most guard.max_norm"
        case .adagc: return "AdaGC: each tensor against the EMA of its own clipped norms, global during warm-up (Wang et al. 2025)"
        }
    }

    /// The settings this clipper reads; any other clipper setting does not apply to it.
    public var settings: [ClipperSetting] {
        switch self {
        case .none: return []
        case .globalNorm, .perModule: return [.maxNorm]
        case .value: return [.clipValue]
        case .agc: return [.agcRatio]
        case .zclip: return [.zThreshold, .zAlpha, .zWarmupSteps]
        case .autoclip: return [.percentile]
        case .adagc: return [.adagcLambdaAbs, .adagcLambdaRel, .adagcBeta, .adagcWarmupSteps]
        }
    }

    /// What the threshold this clipper reports (`ClipReport.threshold`) measures; nil when
    /// it is the global gradient norm, which the report draws on the gradient-norm chart.
    public var thresholdUnit: String? {
        switch self {
        case .none, .globalNorm, .zclip, .autoclip, .perModule: return nil
        case .value: return "largest gradient magnitude"
        case .agc: return "gradient norm per unit of weight norm"
        case .adagc: return "global L2 norm of the warm-up (per-tensor thresholds after it)"
        }
    }

    /// This clipper with the settings' values (nil for `none`).
    public func make(_ s: ClipperSettings) -> (any GradientClipper)? {
        switch self {
        case .none: return nil
        case .globalNorm: return ClipByGlobalNorm(maxNorm: Float(s.maxNorm))
        case .perModule: return ClipPerGroup(maxNorm: Float(s.maxNorm), per: .module)
        case .value: return ClipByValue(Float(s.clipValue))
        case .agc: return AdaptiveGradientClipping(clipping: Float(s.agcRatio), excludeFinalLayer: true)
        case .zclip: return ZClip(alpha: s.zAlpha, zThreshold: s.zThreshold, warmupSteps: s.zWarmupSteps)
        case .autoclip: return AutoClip(percentile: s.percentile)
        case .adagc:
            return AdaGC(lambdaAbs: s.adagcLambdaAbs, lambdaRel: s.adagcLambdaRel, beta: s.adagcBeta, warmupSteps: s.adagcWarmupSteps)
        }
    }
}
