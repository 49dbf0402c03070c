import Foundation
import GradGuardTensor

/// How a loss combines per-element values.
public enum Reduction: String, Sendable, CaseIterable {
    case mean, sum, none
}

extension Tensor {
    fileprivate func reduced(_ r: Reduction) -> Tensor {
        switch r {
        case .mean: return mean()
        case .sum: return sum()
        case .none: return self
        }
    }
}

/// Mean squared error `(input − target)²`, reduced (`torch.nn.functional.mse_loss`).
/// Shapes broadcast.
public func mseLoss(_ input: Tensor, _ target: Tensor, reduction: Reduction = .mean) -> Tensor {
    let d = input - target
    return (d * d).reduced(reduction)
}

/// PaLM's z-loss (Chowdhery et al. 2022, "PaLM: Scaling Language Modeling with Pathways",
/// §5 "Training instability"): `weight · mean((log Z)²)` over the rows of logits `[N, C]`,
/// Z = Σ exp(logits). It pulls the softmax normaliser towards 1 (log Z towards 0), which keeps
/// the logits from drifting to large values; PaLM uses weight 1e-4. Rows whose `targets` equal
/// `ignoreIndex` (padding) are left out of the mean, as in `crossEntropy`.
public func zLoss(_ logits: Tensor, weight: Float = 1e-4, targets: Tensor? = nil, ignoreIndex: Int? = nil) -> Tensor {
    require(logits.rank == 2, "zLoss: logits must be [N, C], got \(logits.shape)")
    // log Z = x − logSoftmax(x), the same in every column: take the first.
    let logZ = (logits - logits.logSoftmax(axis: 1)).narrow(axis: 1, start: 0, length: 1).reshaped([-1])
    let squared = logZ * logZ
    guard let targets, let ignoreIndex else { return squared.mean() * weight }
    require(targets.count == logits.shape[0], "zLoss: \(targets.count) targets for \(logits.shape[0]) rows")
    let keep = Tensor(shape: [targets.count], scalars: targets.scalars.map { Int($0) == ignoreIndex ? 0 : 1 })
    let count = keep.scalars.reduce(0, +)
    return (squared * keep).sum() * (weight / Swift.max(count, 1))
}

/// Cross-entropy between logits `[N, C]` (or `[C]`) and class indices `[N]` (or `[]`), as
/// `torch.nn.functional.cross_entropy`. Targets equal to `ignoreIndex` contribute nothing,
/// and `.mean` divides by the number of the others. Forward and backward are fused:
/// the gradient is `(softmax − onehot) / count`.
public func crossEntropy(
    _ logits: Tensor, _ targets: Tensor, ignoreIndex: Int = -100,
    reduction: Reduction = .mean
) -> Tensor {
    let x = logits.rank == 1 ? logits.unsqueezed(0) : logits
    require(x.rank == 2, "crossEntropy: logits must be [N, C], got \(logits.shape)")
    let n = x.shape[0], c = x.shape[1]
    require(targets.count == n, "crossEntropy: \(targets.count) targets for \(n) rows")
    let t = targets.scalars.map { Int($0) }
    for (i, k) in t.enumerated() where k != ignoreIndex {
        require(k >= 0 && k < c, "crossEntropy: target \(k) at row \(i) is outside 0..<\(c)")
    }
    let logp = withoutGrad { x.detach().logSoftmax(axis: 1) }
    let valid = t.filter { $0 != ignoreIndex }.count
    var perRow = [Float](repeating: 0, count: n)
    for i in 0..<n where t[i] != ignoreIndex { perRow[i] = -logp.scalars[i * c + t[i]] }
    let out: Tensor
    switch reduction {
    case .none: out = Tensor(shape: targets.shape, scalars: perRow)
    case .sum: out = Tensor(perRow.reduce(0, +))
    case .mean: out = Tensor(valid == 0 ? .nan : perRow.reduce(0, +) / Float(valid))
    }
    let result = Tensor.recordOp("crossEntropy", out, [x]) { g in
        let grad = Tensor(
            shape: [n, c],
            scalars: [Float](unsafeUninitializedCapacity: n * c) { buf, count in
                for i in 0..<n {
                    let gi: Float
                    switch reduction {
                    case .none: gi = g.scalars[i]
                    case .sum: gi = g.scalars[0]
                    case .mean: gi = g.scalars[0] / Float(Swift.max(valid, 1))
                    }
                    for j in 0..<c {
                        let p = Foundation.exp(logp.scalars[i * c + j])
                        buf[i * c + j] = t[i] == ignoreIndex ? 0 : gi * (p - (j == t[i] ? 1 : 0))
                    }
                }
                count = n * c
            })
        return [grad]
    }
    return result
}

/// Binary cross-entropy on logits, `torch.nn.functional.binary_cross_entropy_with_logits`:
/// `(1 − y)·x + (1 + (w−1)·y) · softplus(−x)` with `w` the optional positive-class weight
/// (broadcast over the last dimension), computed without overflow.
public func binaryCrossEntropyWithLogits(
    _ logits: Tensor, _ targets: Tensor, posWeight: Tensor? = nil,
    reduction: Reduction = .mean
) -> Tensor {
    require(logits.shape == targets.shape, "bce: logits \(logits.shape) and targets \(targets.shape) differ")
    let w = (posWeight ?? Tensor(1)).detach().expanded(to: logits.shape)
    func softplus(_ v: Float) -> Float { Swift.max(v, 0) + Foundation.log1p(Foundation.exp(-Swift.abs(v))) }
    func sigmoid(_ v: Float) -> Float { v >= 0 ? 1 / (1 + Foundation.exp(-v)) : Foundation.exp(v) / (1 + Foundation.exp(v)) }
    let xs = logits.scalars, ys = targets.scalars, ws = w.scalars
    let per = (0..<xs.count).map { i in (1 - ys[i]) * xs[i] + (1 + (ws[i] - 1) * ys[i]) * softplus(-xs[i]) }
    let elementwise = Tensor.recordOp("bceWithLogits", Tensor(shape: logits.shape, scalars: per), [logits, targets]) { g in
        let gx = (0..<xs.count).map { i in g.scalars[i] * ((1 - ys[i]) - (1 + (ws[i] - 1) * ys[i]) * sigmoid(-xs[i])) }
        let gy = (0..<xs.count).map { i in g.scalars[i] * (-xs[i] + (ws[i] - 1) * softplus(-xs[i])) }
        return [Tensor(shape: logits.shape, scalars: gx), Tensor(shape: logits.shape, scalars: gy)]
    }
    return elementwise.reduced(reduction)
}
