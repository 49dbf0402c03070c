import Foundation
import GradGuard

/// Which half of GuardBench a configuration belongs to: thresholds are chosen on the tuning
/// half only; the checking half reports how they hold on runs they were not chosen on.
package enum BenchHalf: String, Sendable, Codable, CaseIterable { case tuning, checking }

/// What is wrong with a failing variant, planted on purpose.
package enum BenchFault: Sendable, Equatable, Codable {
    /// The healthy twin: the rate and initialisation a practitioner would choose.
    case none
    /// The learning rate multiplied by this factor (10–100×).
    case rate(Double)
    /// The learning rate rising linearly from the healthy one to this multiple of it over the
    /// run (a warm-up to a peak far too high, a cyclic schedule's upswing): healthy at first,
    /// failing once the rate passes the stability limit.
    case rateRamp(Double)
    /// Every weight matrix (Linear, Conv, recurrent) drawn from N(0, 1).
    case normalInit
    /// The model made this many layers deep, without normalisation.
    case deep(Int)
    /// Sequences this long (the healthy twin's are short).
    case longSequence(Int)
    /// Recurrent weights multiplied by this factor.
    case recurrentGain(Double)
    /// One batch at this step with its inputs multiplied by 1000 (a corrupted shard, wrong units).
    case poisonedBatch(step: Int)
    /// Labels replaced by one class for `steps` steps from `from` (a mislabelled shard).
    case labelNoise(from: Int, steps: Int)

    package var label: String {
        switch self {
        case .none: return "healthy"
        case .rate(let k): return "lr×\(Int(k))"
        case .rateRamp(let k): return "lr ramp→×\(Int(k))"
        case .normalInit: return "N(0,1) init"
        case .deep(let d): return "\(d) layers, no norm"
        case .longSequence(let t): return "T=\(t)"
        case .recurrentGain(let g): return "W_hh ×\(formatNumber(g))"
        case .poisonedBatch(let s): return "poisoned batch @\(s)"
        case .labelNoise(let f, let n): return "bad labels @\(f)+\(n)"
        }
    }

    /// The cause the diagnosis should name first.
    package var planted: Cause.Kind? {
        switch self {
        case .none: return nil
        case .rate, .rateRamp: return .learningRateTooHigh
        case .normalInit: return .initialisation
        case .deep: return .missingNormalisation
        case .longSequence: return .saturatingActivations
        case .recurrentGain: return .recurrentSpectralNorm
        case .poisonedBatch, .labelNoise: return .unusualBatch
        }
    }
}

/// The optimizers GuardBench trains with.
package enum BenchOptimizer: String, Sendable, Codable, CaseIterable {
    case sgd
    case sgdMomentum = "sgd-momentum"
    case adam, adamw, rmsprop

    package func make(_ params: [Tensor], lr: Double) -> any Optimizer {
        switch self {
        case .sgd: return SGD(params, lr: lr)
        case .sgdMomentum: return SGD(params, lr: lr, momentum: 0.9)
        case .adam: return Adam(params, lr: lr)
        case .adamw: return AdamW(params, lr: lr, weightDecay: 0.01)
        case .rmsprop: return RMSprop(params, lr: lr)
        }
    }
}

/// One training run ready to go: the model, its optimizer, the loss of each step's batch and
/// the validation score at the end.
package struct BenchTask {
    package let model: Module
    package let optimizer: any Optimizer
    /// The training loss of step `i` (its batch, with any planted data fault).
    package let loss: (Int) throws -> Tensor
    /// The validation score, higher is better (accuracy, R², exp(−loss), mAP).
    package let score: () throws -> Double
    /// The score of guessing.
    package let chance: Double
    /// The loss of a fixed batch (the first step's, without planted faults): the curvature
    /// probe's.
    package let probe: () throws -> Tensor
}

/// One GuardBench configuration: an architecture, an optimizer and a loss at a healthy rate,
/// with the failing variants planted on it.
package struct BenchConfig: Sendable {
    package let name: String
    package let architecture: String
    package let optimizer: BenchOptimizer
    package let objective: BenchObjective
    package let half: BenchHalf
    package let steps: Int
    package let lr: Double
    /// The healthy twin first, then the failing variants.
    package let faults: [BenchFault]
    /// Builds the run of `fault` (rate faults are applied by the caller) from `seed`.
    let build: @Sendable (BenchFault, UInt64, Double) throws -> BenchTask

    /// The rate multiplier of `fault` at `step` (1 but for a ramp).
    package func rateFactor(_ fault: BenchFault, step: Int) -> Double {
        guard case .rateRamp(let k) = fault else { return 1 }
        return 1 + (k - 1) * Double(step) / Double(Swift.max(steps - 1, 1))
    }

    /// The run of `fault` from `seed`, at `rate` instead of the configuration's when given.
    package func task(_ fault: BenchFault, seed: UInt64, rate healthy: Double? = nil) throws -> BenchTask {
        DefaultGenerator.seed(seed)
        var rate = healthy ?? lr
        if case .rate(let k) = fault { rate *= k }
        let task = try build(fault, seed, rate)
        if fault == .normalInit { BenchConfig.drawNormal(task.model) }
        return task
    }

    /// Redraws every weight matrix of the layers that chain (Linear, Conv, recurrent) from N(0, 1).
    static func drawNormal(_ model: Module) {
        for (_, module) in model.namedModules() where !(module is Embedding) {
            for (_, t) in module.localParameters() where t.rank >= 2 { t.assign(Tensor.randn(t.shape)) }
        }
    }
}
