/// Gradient and weight statistics of one parameter tensor at one step.
public struct TensorStatistics: Sendable, Codable, Equatable {
    public let name: String
    public let module: String
    /// L2 norm of the gradient (NaN or ∞ when the gradient holds such values), 0 without a gradient.
    public var gradNorm: Float
    /// Largest finite |g|.
    public var gradMaxAbs: Float
    public var nanCount: Int
    public var infCount: Int
    /// L2 norm of the weights, and whether any weight is NaN or infinite.
    public var weightNorm: Float
    public var weightsFinite: Bool
    public var hasGradient: Bool

    /// No NaN and no ±Inf in the gradient.
    public var gradientFinite: Bool { nanCount + infCount == 0 }
}

/// The same, summed over the parameters of one module.
public struct ModuleStatistics: Sendable, Codable, Equatable {
    public let name: String
    /// L2 norm over the gradients of all the module's parameters.
    public var gradNorm: Float
    public var weightNorm: Float
    public var gradMaxAbs: Float
    public var nonFiniteCount: Int
    /// ‖Δw‖ / ‖w‖ of the last optimizer step, filled by `GradientHealth.recordUpdate()`.
    public var updateRatio: Float?
}

/// The L2 norm of the gradient that reached a watched activation during backward.
public struct ActivationGradient: Sendable, Codable, Equatable {
    public let name: String
    public let norm: Float
}

/// Everything `GradientHealth.observe` measured at one step.
public struct StepStatistics: Sendable, Codable {
    public var step: Int
    public var loss: Float?
    /// Global gradient norm of order `normType` (the norm of the per-tensor norms, as
    /// `clip_grad_norm_` computes it).
    public var globalNorm: Float
    public var normType: Float
    /// Global L2 norm (same as `globalNorm` when `normType` is 2).
    public var globalL2: Float
    public var maxAbs: Float
    public var tensors: [TensorStatistics]
    public var modules: [ModuleStatistics]
    /// Gradient norms at watched activations, in the order backward reached them.
    public var activations: [ActivationGradient]
    /// Filled every `histogramEvery` steps.
    public var histogram: MagnitudeHistogram?

    /// Names of the tensors whose gradient holds NaN or ±Inf.
    public var nonFiniteGradients: [String] { tensors.filter { !$0.gradientFinite }.map(\.name) }
    /// Names of the tensors whose weights hold NaN or ±Inf.
    public var nonFiniteWeights: [String] { tensors.filter { !$0.weightsFinite }.map(\.name) }

    /// The statistics of one module, by name.
    public func module(_ name: String) -> ModuleStatistics? { modules.first { $0.name == name } }
}
