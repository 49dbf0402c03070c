import GradGuardDistributed
import GradGuardTensor

// MARK: - Batch normalisation

/// Batch normalisation over the channel dimension 1 of `[N, C]`, `[N, C, L]` or
/// `[N, C, H, W]` input (Ioffe & Szegedy, 2015), as `torch.nn.BatchNorm1d/2d`:
///
/// - training: normalise with the batch mean and biased variance; update
///   `running_mean ← (1 − m)·running_mean + m·mean` and `running_var` likewise with the
///   unbiased variance; count `num_batches_tracked`;
/// - evaluation: normalise with the running statistics.
///
/// Forward and backward are one fused pass per channel each.
public class BatchNorm: Module, UnaryLayer {
    /// The per-feature scale (ones at the start); nil without `affine`.
    public var weight: Tensor?
    /// The per-feature shift (zeros at the start); nil without `affine`.
    public var bias: Tensor?
    /// The running mean used in evaluation (`running_mean`).
    @Buffer public var runningMean: Tensor
    /// The running (unbiased) variance used in evaluation (`running_var`).
    @Buffer public var runningVar: Tensor
    /// Training batches seen (`num_batches_tracked`).
    @Buffer public var numBatchesTracked: Tensor
    /// The features (channels) normalised.
    public let numFeatures: Int
    /// Added to the variance before the square root.
    public let eps: Float
    /// Weight of the newest batch in the running statistics (PyTorch's `momentum`).
    public let momentum: Float
    let expectedRanks: Set<Int>
    /// The ranks whose batches are normalised together (PyTorch's `SyncBatchNorm`): in
    /// training, the mean and variance are those of every rank's batch, and backward sums the
    /// gradient terms over the ranks. Nil: this process's batch alone (as DDP without sync).
    public var statisticsSync: (any Communicator)? = nil

    /// Makes every batch normalisation in `model` normalise over the ranks of `communicator`
    /// (`torch.nn.SyncBatchNorm.convert_sync_batchnorm`); returns how many there are.
    @discardableResult
    public static func synchronise(_ model: Module, over communicator: any Communicator) -> Int {
        let layers = model.namedModules().compactMap { $0.module as? BatchNorm }
        for bn in layers { bn.statisticsSync = communicator.isDistributed ? communicator : nil }
        return layers.count
    }

    /// Every rank's `values`, in rank order. A collective that fails inside a layer cannot be
    /// thrown through the tape: it ends the job (exit 7, as the command line's other failures
    /// of a data-parallel job).
    static func gather(_ values: [Double], _ world: any Communicator) -> [[Double]] {
        do { return try world.allGather(values) } catch {
            world.abort(code: 7, message: "gradguard: synchronised batch normalisation: \(error)")
        }
    }

    init(numFeatures: Int, eps: Float, momentum: Float, affine: Bool, ranks: Set<Int>) {
        self.numFeatures = numFeatures
        self.eps = eps
        self.momentum = momentum
        expectedRanks = ranks
        weight = affine ? Init.constant([numFeatures], 1) : nil
        bias = affine ? Init.zeros([numFeatures]) : nil
        _runningMean = Buffer(wrappedValue: Tensor.zeros([numFeatures]), key: "running_mean")
        _runningVar = Buffer(wrappedValue: Tensor.ones([numFeatures]), key: "running_var")
        _numBatchesTracked = Buffer(wrappedValue: Tensor(0), key: "num_batches_tracked")
        super.init()
    }

    /// Normalises with the batch's statistics in training (updating the running ones), with the running ones in evaluation.
    public func forward(_ x: Tensor) -> Tensor {
        require(
            expectedRanks.contains(x.rank) && x.shape[1] == numFeatures,
            "\(type(of: self)): expected \(expectedRanks.sorted())-D input with \(numFeatures) channels, got \(x.shape)")
        let n = x.shape[0], c = numFeatures, s = x.count / Swift.max(n * c, 1)
        let m = n * s
        let useBatch = training
        require(!useBatch || m > 1, "\(type(of: self)): training needs more than one value per channel, got \(x.shape)")
        let gamma = weight?.scalars ?? [Float](repeating: 1, count: c)
        let beta = bias?.scalars ?? [Float](repeating: 0, count: c)
        var mean = [Float](repeating: 0, count: c), invStd = [Float](repeating: 0, count: c)
        var batchVar = [Double](repeating: 0, count: c), batchMean = [Double](repeating: 0, count: c)
        // Values per channel that the statistics cover: this batch's, or every rank's.
        var globalCount = m
        if useBatch {
            x.withUnsafeScalars { px in
                mean.withUnsafeMutableBufferPointer { pm in
                    invStd.withUnsafeMutableBufferPointer { pi in
                        batchVar.withUnsafeMutableBufferPointer { pv in
                            batchMean.withUnsafeMutableBufferPointer { pbm in
                                parallelFor(c, grain: Swift.max(1, 65_536 / Swift.max(m, 1))) { range in
                                    for ch in range {
                                        // Eight-lane float partial sums per plane, combined in Double.
                                        var sum = 0.0
                                        for i in 0..<n { sum += planeSum(px.baseAddress! + (i * c + ch) * s, s, shift: 0) }
                                        let mu = sum / Double(m)
                                        var sq = 0.0
                                        for i in 0..<n { sq += planeSum(px.baseAddress! + (i * c + ch) * s, s, shift: Float(mu), squared: true) }
                                        pv[ch] = sq / Double(m)
                                        pbm[ch] = mu
                                        pm[ch] = Float(mu)
                                        pi[ch] = Float(1 / (pv[ch] + Double(eps)).squareRoot())
                                    }
                                }
                            }
                        }
                    }
                }
            }
            if let world = statisticsSync {
                // Chan et al.'s pairwise combination of counts, means and centred sums of squares:
                // M = Σm_r, μ = Σm_r·μ_r / M, M2 = Σ(M2_r + m_r·(μ_r − μ)²). (Each rank's mean
                // travels in Double; the float mean above is its rounding.)
                let local = [Double(m)] + batchMean + batchVar.map { $0 * Double(m) }
                let all = Self.gather(local, world)
                let total = all.reduce(0.0) { $0 + $1[0] }
                globalCount = Int(total)
                for ch in 0..<c {
                    let mu = all.reduce(0.0) { $0 + $1[0] * $1[1 + ch] } / total
                    let m2 = all.reduce(0.0) { $0 + $1[1 + c + ch] + $1[0] * ($1[1 + ch] - mu) * ($1[1 + ch] - mu) }
                    batchVar[ch] = m2 / total
                    mean[ch] = Float(mu)
                    invStd[ch] = Float(1 / (batchVar[ch] + Double(eps)).squareRoot())
                }
            }
            let mom = momentum
            if mom > 0 {
                runningMean.withUnsafeMutableScalars { rm in
                    for ch in 0..<c { rm[ch] = (1 - mom) * rm[ch] + mom * mean[ch] }
                }
                runningVar.withUnsafeMutableScalars { rv in
                    for ch in 0..<c { rv[ch] = (1 - mom) * rv[ch] + mom * Float(batchVar[ch] * Double(globalCount) / Double(globalCount - 1)) }
                }
            }
            numBatchesTracked.assign(Tensor(numBatchesTracked.item + 1))
        } else {
            for ch in 0..<c {
                mean[ch] = runningMean.scalars[ch]
                invStd[ch] = 1 / (runningVar.scalars[ch] + eps).squareRoot()
            }
        }
        // y = γ·x̂ + β with x̂ = (x − μ)·σ⁻¹; backward recomputes x̂ from x rather than keep it.
        let out = Tensor(
            shape: x.shape,
            uninitialized: { y in
                x.withUnsafeScalars { px in
                    parallelFor(n * c, grain: Swift.max(1, 32_768 / Swift.max(s, 1))) { range in
                        for plane in range {
                            let ch = plane % c
                            let src = px.baseAddress! + plane * s, yo = y.baseAddress! + plane * s
                            let scale = gamma[ch] * invStd[ch], shift = beta[ch] - gamma[ch] * invStd[ch] * mean[ch]
                            for j in 0..<s { yo[j] = scale * src[j] + shift }
                        }
                    }
                }
            })
        var inputs = [x]
        if let weight, let bias { inputs += [weight, bias] }
        let world = useBatch ? statisticsSync : nil, total = globalCount
        return Tensor.recordOp("batchNorm", out, inputs) { g in
            if let world { return Self.synchronisedBackward(g, x, mean: mean, invStd: invStd, gamma: gamma, count: total, world) }
            var sumDy = [Float](repeating: 0, count: c), sumDyXhat = [Float](repeating: 0, count: c)
            let dx = Tensor(
                shape: x.shape,
                uninitialized: { dx in
                    g.withUnsafeScalars { pg in
                        x.withUnsafeScalars { px in
                            sumDy.withUnsafeMutableBufferPointer { sd in
                                sumDyXhat.withUnsafeMutableBufferPointer { sdx in
                                    parallelFor(c, grain: Swift.max(1, 65_536 / Swift.max(m, 1))) { range in
                                        for ch in range {
                                            // Σdy and Σdy·x̂ = σ⁻¹·(Σdy·x − μ·Σdy).
                                            let mu = mean[ch], inv = invStd[ch]
                                            var a: Float = 0, dx0: Float = 0
                                            for i in 0..<n {
                                                let gp = pg.baseAddress! + (i * c + ch) * s, xp = px.baseAddress! + (i * c + ch) * s
                                                var va = SIMD8<Float>(repeating: 0), vd = SIMD8<Float>(repeating: 0)
                                                var j = 0
                                                while j + 8 <= s {
                                                    let gv = UnsafeRawPointer(gp + j).loadUnaligned(as: SIMD8<Float>.self)
                                                    va += gv
                                                    vd += gv * (UnsafeRawPointer(xp + j).loadUnaligned(as: SIMD8<Float>.self) - mu)
                                                    j += 8
                                                }
                                                a += va.sum(); dx0 += vd.sum()
                                                while j < s { a += gp[j]; dx0 += gp[j] * (xp[j] - mu); j += 1 }
                                            }
                                            let d = dx0 * inv
                                            sd[ch] = a
                                            sdx[ch] = d
                                            // training: dx = γ·σ⁻¹/M · (M·dy − Σdy − x̂·Σ(dy·x̂)); evaluation: dx = γ·σ⁻¹·dy
                                            let k = useBatch ? gamma[ch] * invStd[ch] / Float(m) : gamma[ch] * invStd[ch]
                                            let fm: Float = useBatch ? Float(m) : 1
                                            let (ma, md): (Float, Float) = useBatch ? (a, d) : (0, 0)
                                            for i in 0..<n {
                                                let off = (i * c + ch) * s
                                                let gp = pg.baseAddress! + off, xp = px.baseAddress! + off, dp = dx.baseAddress! + off
                                                for j in 0..<s { dp[j] = k * (fm * gp[j] - ma - (xp[j] - mu) * inv * md) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                })
            return [dx, Tensor(sumDyXhat), Tensor(sumDy)]
        }
    }
}

extension BatchNorm {
    /// Backward of a training pass normalised over the ranks: Σdy and Σdy·(x − μ) are summed
    /// over the ranks for the input gradient, dx = γσ⁻¹/M·(M·dy − Σdy − x̂·Σdy·x̂) with M every
    /// rank's count; the weight and bias gradients stay this rank's (averaged with the others'
    /// afterwards, as PyTorch's SyncBatchNorm under DDP).
    static func synchronisedBackward(
        _ g: Tensor, _ x: Tensor, mean: [Float], invStd: [Float], gamma: [Float], count: Int, _ world: any Communicator
    ) -> [Tensor] {
        let n = x.shape[0], c = mean.count, s = x.count / Swift.max(n * c, 1)
        var local = [Double](repeating: 0, count: 2 * c)
        g.withUnsafeScalars { pg in
            x.withUnsafeScalars { px in
                for ch in 0..<c {
                    var a = 0.0, d = 0.0
                    for i in 0..<n {
                        let off = (i * c + ch) * s
                        for j in 0..<s {
                            a += Double(pg[off + j])
                            d += Double(pg[off + j]) * Double(px[off + j] - mean[ch])
                        }
                    }
                    local[ch] = a
                    local[c + ch] = d
                }
            }
        }
        var sums = [Double](repeating: 0, count: 2 * c)
        for v in gather(local, world) { for i in v.indices { sums[i] += v[i] } }
        let m = Float(count)
        let dx = Tensor(
            shape: x.shape,
            uninitialized: { dx in
                g.withUnsafeScalars { pg in
                    x.withUnsafeScalars { px in
                        for ch in 0..<c {
                            let inv = invStd[ch], k = gamma[ch] * inv / m
                            let a = Float(sums[ch]), md = Float(sums[c + ch]) * inv
                            for i in 0..<n {
                                let off = (i * c + ch) * s
                                for j in 0..<s { dx[off + j] = k * (m * pg[off + j] - a - (px[off + j] - mean[ch]) * inv * md) }
                            }
                        }
                    }
                }
            })
        let weightGrad = (0..<c).map { Float(local[c + $0]) * invStd[$0] }, biasGrad = (0..<c).map { Float(local[$0]) }
        return [dx, Tensor(weightGrad), Tensor(biasGrad)]
    }
}

/// `torch.nn.BatchNorm1d`: input `[N, C]` or `[N, C, L]`.
public final class BatchNorm1d: BatchNorm {
    /// Batch normalisation of `[N, numFeatures]` or `[N, numFeatures, L]` input.
    public init(numFeatures: Int, eps: Float = 1e-5, momentum: Float = 0.1, affine: Bool = true) {
        super.init(numFeatures: numFeatures, eps: eps, momentum: momentum, affine: affine, ranks: [2, 3])
    }
}

/// `torch.nn.BatchNorm2d`: input `[N, C, H, W]`.
public final class BatchNorm2d: BatchNorm {
    /// Batch normalisation of `[N, numFeatures, H, W]` input.
    public init(numFeatures: Int, eps: Float = 1e-5, momentum: Float = 0.1, affine: Bool = true) {
        super.init(numFeatures: numFeatures, eps: eps, momentum: momentum, affine: affine, ranks: [4])
    }
}

// MARK: - Layer and group normalisation

/// Normalises over the trailing `normalizedShape` dimensions (Ba et al., 2016), with a
/// per-element affine `weight` (ones) and `bias` (zeros), as `torch.nn.LayerNorm`.
public final class LayerNorm: Module, UnaryLayer {
    /// The per-element scale (ones at the start); nil without `elementwiseAffine`.
    public var weight: Tensor?
    /// The per-element shift (zeros at the start); nil without `elementwiseAffine`.
    public var bias: Tensor?
    /// The trailing dimensions normalised over.
    public let normalizedShape: [Int]
    /// Added to the variance before the square root.
    public let eps: Float

    /// Normalises over the trailing `normalizedShape`.
    public init(_ normalizedShape: [Int], eps: Float = 1e-5, elementwiseAffine: Bool = true) {
        self.normalizedShape = normalizedShape
        self.eps = eps
        weight = elementwiseAffine ? Init.constant(normalizedShape, 1) : nil
        bias = elementwiseAffine ? Init.zeros(normalizedShape) : nil
        super.init()
    }

    /// Normalises over the last dimension, of size `size` (`nn.LayerNorm(size)`).
    public convenience init(_ size: Int, eps: Float = 1e-5, elementwiseAffine: Bool = true) {
        self.init([size], eps: eps, elementwiseAffine: elementwiseAffine)
    }

    /// (x − mean) / √(variance + eps) over the trailing dimensions, then scaled and shifted.
    public func forward(_ x: Tensor) -> Tensor {
        require(
            Array(x.shape.suffix(normalizedShape.count)) == normalizedShape,
            "LayerNorm: input \(x.shape) does not end in \(normalizedShape)")
        let axes = Array((x.rank - normalizedShape.count)..<x.rank)
        var y = normalize(x, axes: axes, eps: eps)
        if let weight { y = y * weight }
        if let bias { y = y + bias }
        return y
    }
}

/// Normalises each sample over groups of channels (Wu & He, 2018), with a per-channel
/// affine, as `torch.nn.GroupNorm`. Input `[N, C, …]`.
public final class GroupNorm: Module, UnaryLayer {
    /// The per-channel scale (ones at the start); nil without `affine`.
    public var weight: Tensor?
    /// The per-channel shift (zeros at the start); nil without `affine`.
    public var bias: Tensor?
    /// The groups the channels are split into.
    public let numGroups: Int
    /// The channels of the input.
    public let numChannels: Int
    /// Added to the variance before the square root.
    public let eps: Float

    /// Normalises `numChannels` channels in `numGroups` groups.
    public init(numGroups: Int, numChannels: Int, eps: Float = 1e-5, affine: Bool = true) {
        require(numChannels % numGroups == 0, "GroupNorm: \(numChannels) channels do not split into \(numGroups) groups")
        self.numGroups = numGroups
        self.numChannels = numChannels
        self.eps = eps
        weight = affine ? Init.constant([numChannels], 1) : nil
        bias = affine ? Init.zeros([numChannels]) : nil
        super.init()
    }

    /// Each sample's groups normalised, then scaled and shifted per channel.
    public func forward(_ x: Tensor) -> Tensor {
        require(x.rank >= 2 && x.shape[1] == numChannels, "GroupNorm: expected [N, \(numChannels), …], got \(x.shape)")
        let n = x.shape[0]
        let grouped = x.reshaped([n, numGroups, -1])
        var y = normalize(grouped, axes: [2], eps: eps).reshaped(x.shape)
        let affineShape = [numChannels] + [Int](repeating: 1, count: x.rank - 2)
        if let weight { y = y * weight.reshaped(affineShape) }
        if let bias { y = y + bias.reshaped(affineShape) }
        return y
    }
}

/// (x − mean) / √(biased variance + eps) over `axes`, built from differentiable ops.
func normalize(_ x: Tensor, axes: [Int], eps: Float) -> Tensor {
    let centered = x - x.mean(axes: axes, keepDims: true)
    let variance = (centered * centered).mean(axes: axes, keepDims: true)
    return centered / (variance + eps).sqrt()
}

/// Σ (x − shift) or Σ (x − shift)² over `count` values, with eight float lanes.
@inline(__always)
func planeSum(_ p: UnsafePointer<Float>, _ count: Int, shift: Float, squared: Bool = false) -> Double {
    var acc = SIMD8<Float>(repeating: 0)
    let sh = SIMD8<Float>(repeating: shift)
    var i = 0
    while i + 8 <= count {
        let v = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self) - sh
        acc += squared ? v * v : v
        i += 8
    }
    var total = Double(acc.sum())
    while i < count {
        let v = Double(p[i] - shift)
        total += squared ? v * v : v
        i += 1
    }
    return total
}
