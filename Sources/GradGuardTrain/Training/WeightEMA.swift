import Foundation
import GradGuardNN
import GradGuardTensor

/// An exponential moving average of a model's weights and buffers, for evaluation and for the
/// weights a run delivers — Ultralytics' `ModelEMA` (after Polyak & Juditsky 1992, with a
/// decay that ramps up over the first updates so the early average is not stuck at the
/// initialisation): after each applied optimizer step, with u the number of updates,
///
///     d = decay · (1 − exp(−u / tau)),   ema ← d · ema + (1 − d) · w
///
/// for every floating-point entry of the state dict (`num_batches_tracked`, a count, is copied).
/// Defaults as Ultralytics': decay 0.9999, tau 2000.
public final class WeightEMA {
    /// The decay once ramped up, and the updates over which it ramps.
    public let decay: Double, tau: Double
    /// Updates so far.
    public private(set) var updates = 0
    /// The averaged state dict.
    public private(set) var shadow: [String: Tensor]

    /// An average of `model`'s weights and buffers, starting from them.
    public init(model: Module, decay: Double = 0.9999, tau: Double = 2000) {
        require(decay > 0 && decay < 1 && tau > 0, "WeightEMA: decay in (0, 1), tau > 0")
        self.decay = decay
        self.tau = tau
        shadow = model.stateDict().mapValues { $0.copy() }
    }

    /// The decay of update number `u`.
    public func decay(at u: Int) -> Double { decay * (1 - Foundation.exp(-Double(u) / tau)) }

    static func isCount(_ key: String) -> Bool { key.hasSuffix("num_batches_tracked") }

    /// Folds the model's current weights into the average.
    public func update(_ model: Module) {
        updates += 1
        let d = decay(at: updates)
        let fd = Float(d), fc = Float(1 - d)
        for (key, w) in model.stateDict() {
            guard let s = shadow[key], s.shape == w.shape else {
                shadow[key] = w.copy()
                continue
            }
            if Self.isCount(key) {
                s.assign(w)
                continue
            }
            s.withUnsafeMutableScalars { sv in
                w.withUnsafeScalars { wv in
                    for i in 0..<sv.count {
                        sv[i] *= fd
                        sv[i] += fc * wv[i]
                    }
                }
            }
        }
    }

    /// Runs `body` with the averaged weights in `model`, then puts its own back.
    public func withAveragedWeights<R>(in model: Module, _ body: () throws -> R) throws -> R {
        let own = model.stateDict().mapValues { $0.copy() }
        _ = try model.load(stateDict: shadow)  // load copies the values in
        defer { _ = try? model.load(stateDict: own) }
        return try body()
    }

    /// Restores an average saved from `shadow` and `updates` (checkpoints).
    public func load(shadow saved: [String: Tensor], updates u: Int) throws {
        for (k, t) in shadow {
            guard let s = saved[k] else { throw StateDictError.keyMismatch(missing: [k], unexpected: []) }
            guard s.shape == t.shape else { throw StateDictError.shapeMismatch(key: k, expected: t.shape, found: s.shape) }
        }
        shadow = saved.mapValues { $0.copy() }
        updates = u
    }
}
