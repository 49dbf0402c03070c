import GradGuardOptim
import GradGuardTensor

/// Adaptive gradient clipping (AGC; Brock et al. 2021, "High-Performance Large-Scale Image
/// Recognition Without Normalization"), unit-wise as optax's `adaptive_grad_clip`:
///
///     max_i = clipping · max(‖W_i‖, eps);   G_i ← G_i · max_i / max(‖G_i‖, 1e-6)  where ‖G_i‖ ≥ max_i
///
/// **Units.** A unit is one output unit: a slice along the first axis of a weight in
/// PyTorch layout, the norm taken over all other axes — a row of a `Linear` weight
/// `[out, in]`, an output channel of a `Conv2d` weight `[out, in/groups, kh, kw]`, one
/// token's vector of an `Embedding` `[num, dim]`, one gate row of a recurrent `weight_ih`/
/// `weight_hh` `[gates·hidden, ·]`. A tensor with at most one axis longer than 1 (biases,
/// norm scales, a `[1, n]` weight) is a single unit, as optax treats vectors. (optax's
/// default axes assume JAX's `[in, out]` layout; they select the same units.)
///
/// **Exclusions.** NFNets leave the final classifier unclipped: `excludeFinalLayer` skips
/// the module of the last parameter; `exclude` skips parameters whose names match any glob
/// pattern (`"head.*"`).
public final class AdaptiveGradientClipping: GradientClipper {
    /// λ: the largest ratio of a unit's gradient norm to its weight norm.
    public let clipping: Float
    /// The floor of a unit's weight norm (a zero-initialised unit still moves).
    public let eps: Float
    /// Glob patterns of parameter names left unclipped.
    public let exclude: [String]
    /// Whether the module of the last parameter (the classifier) is left unclipped.
    public let excludeFinalLayer: Bool
    /// `agc`.
    public var name: String { "agc" }

    /// AGC at ratio `clipping` (NFNets' defaults), with the given exclusions.
    public init(clipping: Float = 0.01, eps: Float = 1e-3, exclude: [String] = [], excludeFinalLayer: Bool = false) {
        require(clipping > 0 && eps >= 0, "AdaptiveGradientClipping: clipping must be positive and eps non-negative")
        self.clipping = clipping
        self.eps = eps
        self.exclude = exclude
        self.excludeFinalLayer = excludeFinalLayer
    }

    /// Number of units of a tensor of this shape, and the values per unit.
    public static func units(of shape: [Int]) -> (count: Int, size: Int) {
        let total = shape.reduce(1, *)
        if shape.filter({ $0 > 1 }).count <= 1 || shape.count < 2 { return (1, total) }
        return (shape[0], total / Swift.max(shape[0], 1))
    }

    /// Scales every unit whose gradient norm exceeds λ·max(‖w‖, ε) down to it.
    public func clip(_ parameters: [NamedParameter]) throws -> ClipReport {
        let finalModule = excludeFinalLayer ? parameters.last?.module : nil
        var before = [Double](repeating: 0, count: parameters.count), after = before
        var touched: [String] = [], smallest: Float = 1
        for (i, p) in parameters.enumerated() {
            guard let g = p.tensor.grad else { continue }
            let skip = p.module == finalModule || exclude.contains { globMatch($0, p.name) }
            let (count, size) = Self.units(of: p.tensor.shape)
            var sb = 0.0, sa = 0.0
            p.tensor.withUnsafeScalars { w in
                g.withUnsafeMutableScalars { gb in
                    for u in 0..<count {
                        let units = (u * size)..<((u + 1) * size)
                        let wNorm = GradientClipping.norm(UnsafeBufferPointer(rebasing: w[units]))
                        let gn = GradientClipping.norm(UnsafeBufferPointer(rebasing: gb[units]))
                        sb += gn * gn
                        let gNorm = Float(gn), maxNorm = clipping * Swift.max(Float(wNorm), eps)
                        guard !skip, gNorm.isFinite, !(gNorm < maxNorm) else { sa += gn * gn; continue }
                        let factor = maxNorm / Swift.max(gNorm, 1e-6)
                        GradientClipping.scale(UnsafeMutableBufferPointer(rebasing: gb[units]), by: factor)
                        sa += gn * gn * Double(factor) * Double(factor)
                        touched.append(count == 1 ? p.name : "\(p.name)[\(u)]")
                        smallest = Swift.min(smallest, factor)
                    }
                }
            }
            before[i] = sb.squareRoot()
            after[i] = sa.squareRoot()
        }
        return ClipReport(
            normBefore: Float(l2(before)), normAfter: Float(l2(after)), scale: smallest, threshold: clipping,
            touched: touched)
    }
}
