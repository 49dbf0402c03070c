import Foundation
import GradGuardDistributed
import GradGuardOptim
import GradGuardTensor

/// One measurement of the curvature probe: the top eigenvalue of the loss Hessian on the
/// probe batch (of P⁻¹H for an adaptive optimizer), and where it stands against the
/// optimizer's stability limit at the rate in force.
public struct CurvatureReading: Sendable, Codable, Equatable {
    /// The step (applied steps before it) the probe ran at, before that step's update.
    public var step: Int
    /// λ_max: the largest eigenvalue found.
    public var lambdaMax: Double
    /// The rate judged: the largest group rate the coming update uses (scheduled × the
    /// guard's back-off and cap).
    public var lr: Double
    /// c of the rule η·λ < c.
    public var threshold: Double
    /// The stability rule in words ("Adam β₁ 0.9: λ < (2 + 2β₁)/((1 − β₁)η)").
    public var rule: String
    /// Whether λ_max is of the preconditioned Hessian P⁻¹H (adaptive optimizers).
    public var preconditioned: Bool
    /// Hessian-vector products taken, and the probe's wall time.
    public var iterations: Int
    /// The probe's wall time.
    public var seconds: Double

    /// A reading of λ_max at `step` against the rule η·λ < `threshold` at rate `lr`.
    public init(
        step: Int, lambdaMax: Double, lr: Double, threshold: Double, rule: String, preconditioned: Bool, iterations: Int, seconds: Double
    ) {
        (self.step, self.lambdaMax, self.lr, self.threshold, self.rule) = (step, lambdaMax, lr, threshold, rule)
        (self.preconditioned, self.iterations, self.seconds) = (preconditioned, iterations, seconds)
    }

    /// The optimizer's rule this reading was judged by.
    public var stability: StabilityRule { StabilityRule(threshold: threshold, preconditioned: preconditioned, name: rule) }
    /// The largest curvature the rate is stable under: c/η.
    public var limit: Double { stability.limit(lr: lr) }
    /// The stability margin m = η·λ_max / c: the update is unstable along the top
    /// eigen-direction above 1.
    public var margin: Double { stability.margin(lambda: lambdaMax, lr: lr) }
    /// The rate at which the margin would be `m`.
    public func rate(atMargin m: Double) -> Double { stability.rate(lambda: lambdaMax, margin: m) }
}

/// The curvature probe: every `every` steps, λ_max of the loss Hessian on a fixed probe batch
/// by Lanczos over Hessian-vector products (`HessianVectorProduct`), warm-started from the
/// previous top eigenvector; for Adam, AdamW, SPAM and RMSprop, λ_max of the preconditioned
/// Hessian P^(-1/2)·H·P^(-1/2) (the same eigenvalues as P⁻¹H) with the P of the coming update.
///
/// Training is left exactly as it was: the parameters are put back bit for bit, and the
/// gradients, the buffers (running statistics) and the default generator (dropout) are
/// restored after the probe's own forward and backward passes. Deterministic: the first
/// start vector comes from a generator of its own.
public final class CurvatureProbe {
    /// Steps between probes (0: off).
    public var every: Int
    /// Hessian-vector products per probe at most (each two forward and backward passes).
    public var iterations: Int
    /// Stop a probe early once the top Ritz pair's residual is below this fraction of λ.
    public var tolerance: Double
    /// The Hessian-vector product of the probe's fixed batch.
    public private(set) var product: HessianVectorProduct
    /// Buffers (running statistics) put back after every product.
    public let buffers: [Tensor]
    /// Every reading so far, oldest first (at most `keep`).
    public private(set) var readings: [CurvatureReading] = []
    /// The most readings kept.
    public var keep = 2000
    /// Wall time spent probing.
    public private(set) var seconds = 0.0
    /// The last top eigenvector, the next probe's start (float32, so that a checkpoint holds it
    /// exactly and a resumed run probes as the uninterrupted one would).
    public var warmStart: [Float]?
    private var generator = RandomGenerator(seed: 0x5eed_c0de)
    /// The default generator's state at the probe's start, put back before every forward pass
    /// so that dropout draws the same masks for every gradient of one probe.
    private let pin = RandomPin()

    /// Probes the Hessian of `loss` (a fixed batch) over `parameters`; `buffers` (running
    /// statistics the forward pass updates) are put back after each probe.
    public init(
        parameters: [Tensor], buffers: [Tensor] = [], every: Int, iterations: Int = 20, tolerance: Double = 1e-3, epsilon: Double = 1e-3,
        communicator: (any Communicator)? = nil, loss: @escaping () throws -> Tensor
    ) {
        self.every = every
        self.iterations = iterations
        self.tolerance = tolerance
        self.buffers = buffers
        let pin = self.pin
        product = HessianVectorProduct(parameters: parameters, epsilon: epsilon, communicator: communicator) {
            if let s = pin.state, let r = RandomGenerator(state: s) { DefaultGenerator.with { $0 = r } }
            return try loss()
        }
    }

    /// Whether a probe is due before applied step `step`.
    public func isDue(step: Int) -> Bool { every > 0 && step % every == 0 }

    /// Measures λ_max at the current parameters, for `optimizer` at rate `lr` (the largest
    /// group rate the coming update uses). The parameters' current gradients (the step's)
    /// set the adaptive preconditioner and are put back afterwards.
    public func measure(step: Int, optimizer: any Optimizer, lr: Double) throws -> CurvatureReading {
        let start = Date()
        let params = product.parameters
        let rule = optimizer.stabilityRule
        // The preconditioner's P^(-1/2), flat (nil: the identity).
        var scale: [Double]? = nil
        if rule.preconditioned, let d = optimizer as? any StabilityDescribing {
            var s = [Double]()
            s.reserveCapacity(product.count)
            for p in params {
                var diag = [Double](repeating: 1, count: p.count)
                if d.preconditioner(for: p, grad: p.grad, group: optimizer.group(of: p), into: &diag) {
                    s += diag.map { 1 / $0.squareRoot() }
                } else {
                    s += diag
                }
            }
            scale = s
        }
        let grads = params.map(\.grad)
        let savedBuffers = buffers.map { $0.scalars }
        let random = DefaultGenerator.with { $0.state }
        pin.state = random
        defer {
            pin.state = nil
            for (p, g) in zip(params, grads) { p.grad = g }
            for (b, s) in zip(buffers, savedBuffers) { b.withUnsafeMutableScalars { bb in for i in 0..<bb.count { bb[i] = s[i] } } }
            DefaultGenerator.with { g in if let r = RandomGenerator(state: random) { g = r } }
        }
        var startVector: [Double]
        if let v = warmStart, v.count == product.count {
            startVector = v.map(Double.init)
        } else {
            startVector = (0..<product.count).map { _ in generator.nextNormal() }
        }
        let result = try Lanczos.top(start: startVector, iterations: iterations, tolerance: tolerance) { x in
            guard let scale else { return try product.apply(x) }
            var y = try product.apply(zip(x, scale).map { $0 * $1 })
            for i in y.indices { y[i] *= scale[i] }
            return y
        }
        if result.value.isFinite, result.vector.allSatisfy(\.isFinite) { warmStart = result.vector.map(Float.init) } else { warmStart = nil }
        let elapsed = Date().timeIntervalSince(start)
        seconds += elapsed
        let reading = CurvatureReading(
            step: step, lambdaMax: result.value, lr: lr, threshold: rule.threshold, rule: rule.name, preconditioned: rule.preconditioned,
            iterations: result.iterations, seconds: elapsed)
        readings.append(reading)
        if readings.count > keep { readings.removeFirst(readings.count - keep) }
        return reading
    }
}

/// A generator state shared with the probe's loss closure.
private final class RandomPin { var state: [UInt64]? }
