import Foundation
import GradGuardDistributed
import GradGuardTensor

/// Hessian-vector products of a loss by central differences of two gradients:
///
///     H·v ≈ (∇L(θ + h·v̂) − ∇L(θ − h·v̂)) / (2h) · ‖v‖,   v̂ = v/‖v‖,   h = ε·max(‖θ‖, 1)
///
/// (Pearlmutter 1994 gives the exact product by a second backward pass; this tape's backward
/// rules are not themselves recorded, so the product is taken by differences, whose error is
/// O(h²) from the third derivative plus float32 rounding of the gradients over h). The
/// parameters are put back bit for bit after each product; the differences are taken in
/// double precision. In data-parallel training the gradient differences are averaged over
/// the ranks, so every rank has the same product (of the mean loss over their batches).
public struct HessianVectorProduct {
    /// The parameters θ the Hessian is taken over.
    public let parameters: [Tensor]
    /// The loss whose Hessian is probed (a fixed batch: the same function at every call).
    public let loss: () throws -> Tensor
    /// The relative step ε.
    public var epsilon: Double
    /// The ranks whose products are averaged (nil: one process).
    public var communicator: (any Communicator)?
    /// The number of scalars in all parameters.
    public let count: Int

    /// H·v of `loss` over `parameters` by central differences with step ε·max(‖θ‖, 1).
    public init(parameters: [Tensor], epsilon: Double = 1e-3, communicator: (any Communicator)? = nil, loss: @escaping () throws -> Tensor) {
        self.parameters = parameters
        self.loss = loss
        self.epsilon = epsilon
        self.communicator = communicator
        count = parameters.reduce(0) { $0 + $1.count }
    }

    /// The flat gradient of the loss at the current parameters (zeros for a parameter the
    /// loss does not reach); the parameters' `grad` are left nil.
    public func gradient() throws -> (loss: Double, gradient: [Double]) {
        for p in parameters { p.grad = nil }
        let l = try loss()
        l.backward()
        var out = [Double](repeating: 0, count: count)
        var offset = 0
        for p in parameters {
            if let g = p.grad {
                g.withUnsafeScalars { gb in for i in 0..<gb.count { out[offset + i] = Double(gb[i]) } }
            }
            offset += p.count
            p.grad = nil
        }
        return (Double(l.item), out)
    }

    /// ‖θ‖ over all parameters.
    public var parameterNorm: Double {
        var s = 0.0
        for p in parameters { p.withUnsafeScalars { for x in $0 { s += Double(x) * Double(x) } } }
        return s.squareRoot()
    }

    /// H·v at the current parameters.
    public func apply(_ v: [Double]) throws -> [Double] {
        let vNorm = Lanczos.norm(v)
        guard vNorm > 0 else { return v }
        let h = epsilon * Swift.max(parameterNorm, 1)
        let saved = parameters.map(\.scalars)
        defer { restore(saved) }
        shift(saved, by: v, scale: h / vNorm)
        let plus = try gradient().gradient
        shift(saved, by: v, scale: -h / vNorm)
        let minus = try gradient().gradient
        var out = [Double](repeating: 0, count: count)
        let f = vNorm / (2 * h)
        for i in 0..<count { out[i] = (plus[i] - minus[i]) * f }
        if let c = communicator, c.isDistributed {
            try out.withUnsafeMutableBufferPointer { try c.allReduce($0, .sum) }
            let n = Double(c.size)
            for i in 0..<count { out[i] /= n }
        }
        return out
    }

    /// Sets every parameter to `base + scale·v` (float32).
    private func shift(_ base: [[Float]], by v: [Double], scale: Double) {
        var offset = 0
        for (p, b) in zip(parameters, base) {
            p.withUnsafeMutableScalars { pb in
                for i in 0..<pb.count { pb[i] = Float(Double(b[i]) + scale * v[offset + i]) }
            }
            offset += p.count
        }
    }

    private func restore(_ saved: [[Float]]) {
        for (p, b) in zip(parameters, saved) { p.withUnsafeMutableScalars { pb in for i in 0..<pb.count { pb[i] = b[i] } } }
    }
}
