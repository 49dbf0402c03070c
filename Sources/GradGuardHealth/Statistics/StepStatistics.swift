import GradGuardDistributed

/// Gradient and weight statistics of one parameter tensor at one step.
public struct TensorStatistics: Sendable, Codable, Equatable {
    /// The parameter's dotted name.
    public let name: String
    /// The module that owns it.
    public let module: String
    /// L2 norm of the gradient (NaN or ∞ when the gradient holds such values), 0 without a gradient.
    public var gradNorm: Float
    /// Largest finite |g|.
    public var gradMaxAbs: Float
    /// NaN values in the gradient.
    public var nanCount: Int
    /// Infinite values in the gradient.
    public var infCount: Int
    /// L2 norm of the weights, and whether any weight is NaN or infinite.
    public var weightNorm: Float
    /// Whether every weight is finite.
    public var weightsFinite: Bool
    /// Whether the parameter had a gradient at this step.
    public var hasGradient: Bool

    /// One parameter's statistics.
    public init(
        name: String, module: String, gradNorm: Float, gradMaxAbs: Float = 0, nanCount: Int = 0, infCount: Int = 0,
        weightNorm: Float = 1, weightsFinite: Bool = true, hasGradient: Bool = true
    ) {
        (self.name, self.module, self.gradNorm, self.gradMaxAbs, self.nanCount, self.infCount) =
            (name, module, gradNorm, gradMaxAbs, nanCount, infCount)
        (self.weightNorm, self.weightsFinite, self.hasGradient) = (weightNorm, weightsFinite, hasGradient)
    }

    /// No NaN and no ±Inf in the gradient.
    public var gradientFinite: Bool { nanCount + infCount == 0 }
}

/// The same, summed over the parameters of one module.
public struct ModuleStatistics: Sendable, Codable, Equatable {
    /// The module's dotted name.
    public let name: String
    /// L2 norm over the gradients of all the module's parameters.
    public var gradNorm: Float
    /// L2 norm over all its weights.
    public var weightNorm: Float
    /// Largest finite |g| of its gradients.
    public var gradMaxAbs: Float
    /// NaN and infinite values in its gradients.
    public var nonFiniteCount: Int
    /// ‖Δw‖ / ‖w‖ of the last optimizer step, filled by `GradientHealth.recordUpdate()`.
    public var updateRatio: Float?
    /// Whether the module holds a weight matrix or kernel (rank ≥ 2), not only vectors (a
    /// normalisation layer's scale and shift, biases); nil when not known.
    public var holdsMatrix: Bool? = nil

    /// One module's statistics.
    public init(
        name: String, gradNorm: Float, weightNorm: Float = 1, gradMaxAbs: Float = 0, nonFiniteCount: Int = 0,
        updateRatio: Float? = nil
    ) {
        (self.name, self.gradNorm, self.weightNorm, self.gradMaxAbs, self.nonFiniteCount, self.updateRatio) =
            (name, gradNorm, weightNorm, gradMaxAbs, nonFiniteCount, updateRatio)
    }
}

/// The L2 norm of the gradient that reached a watched activation during backward.
public struct ActivationGradient: Sendable, Codable, Equatable {
    /// The watched activation's name.
    public let name: String
    /// The L2 norm of the gradient that reached it.
    public let norm: Float
    /// An activation gradient's norm.
    public init(name: String, norm: Float) {
        self.name = name
        self.norm = norm
    }
}

/// The largest scaled logit q·k/√d an attention layer computed at one step (what QK-clip caps).
public struct AttentionLogit: Sendable, Codable, Equatable {
    /// The attention module's dotted name.
    public let module: String
    /// The largest scaled logit of the step's forward pass.
    public let maxLogit: Float
    /// A layer's largest logit.
    public init(module: String, maxLogit: Float) { (self.module, self.maxLogit) = (module, maxLogit) }
}

/// Everything `GradientHealth.observe` measured at one step.
public struct StepStatistics: Sendable, Codable {
    /// The step (updates applied before it).
    public var step: Int
    /// The step's loss, when known.
    public var loss: Float?
    /// Global gradient norm of order `normType` (the norm of the per-tensor norms, as
    /// `clip_grad_norm_` computes it).
    public var globalNorm: Float
    /// The order of `globalNorm`.
    public var normType: Float
    /// Global L2 norm (same as `globalNorm` when `normType` is 2).
    public var globalL2: Float
    /// Largest finite |g| over all gradients.
    public var maxAbs: Float
    /// Every parameter's statistics.
    public var tensors: [TensorStatistics]
    /// Every module's statistics.
    public var modules: [ModuleStatistics]
    /// Gradient norms at watched activations, in the order backward reached them.
    public var activations: [ActivationGradient]
    /// Filled every `histogramEvery` steps.
    public var histogram: MagnitudeHistogram?
    /// Each rank's local view of the step, in data-parallel training (nil: one process). The
    /// other fields describe the gradient averaged over the ranks.
    public var ranks: [RankStatistics]? = nil
    /// The curvature probe's reading, at the steps it ran.
    public var curvature: CurvatureReading? = nil
    /// The largest attention logit of every attention layer at this step's forward pass (nil:
    /// the model has none). In data-parallel training, the largest over the ranks.
    public var attentionLogits: [AttentionLogit]? = nil

    /// The statistics of one step.
    public init(
        step: Int, loss: Float?, globalNorm: Float, normType: Float = 2, globalL2: Float? = nil, maxAbs: Float = 0,
        tensors: [TensorStatistics], modules: [ModuleStatistics], activations: [ActivationGradient] = [],
        histogram: MagnitudeHistogram? = nil
    ) {
        (self.step, self.loss, self.globalNorm, self.normType, self.globalL2, self.maxAbs) =
            (step, loss, globalNorm, normType, globalL2 ?? globalNorm, maxAbs)
        (self.tensors, self.modules, self.activations, self.histogram) = (tensors, modules, activations, histogram)
    }

    /// Names of the tensors whose gradient holds NaN or ±Inf.
    public var nonFiniteGradients: [String] { tensors.filter { !$0.gradientFinite }.map(\.name) }
    /// Names of the tensors whose weights hold NaN or ±Inf.
    public var nonFiniteWeights: [String] { tensors.filter { !$0.weightsFinite }.map(\.name) }

    /// The statistics of one module, by name.
    public func module(_ name: String) -> ModuleStatistics? { modules.first { $0.name == name } }
}
