import Foundation
import GradGuardNN
import GradGuardTensor

// The pieces of YOLOv8's anchor-free head: distribution focal loss over the box sides and the
// task-aligned assignment of targets to anchor points.

/// Distribution focal loss (Li et al. 2020, "Generalized Focal Loss", §3.3): a box side is a
/// distance y in bins (0 … R − 1) predicted as a distribution over R bins; with y between
/// bins i and i + 1,
///
///     DFL = −((i + 1 − y)·log Sᵢ + (y − i)·log Sᵢ₊₁),   S = softmax(logits)
///
/// per row of `logits` `[N, R]` against `targets` `[N]` (distances in bins, clamped to
/// [0, R − 1 − 0.01] as Ultralytics' DFLoss does). Returns the per-row losses `[N]`.
public func distributionFocalLoss(_ logits: Tensor, _ targets: Tensor) -> Tensor {
    require(logits.rank == 2 && targets.count == logits.shape[0], "distributionFocalLoss: logits [N, R] and N targets, got \(logits.shape), \(targets.count)")
    let r = Float(logits.shape[1])
    let t = targets.scalars.map { Swift.min(Swift.max($0, 0), r - 1 - 0.01) }
    let left = t.map { $0.rounded(.down) }
    let wl = zip(left, t).map { $0 + 1 - $1 }, wr = wl.map { 1 - $0 }
    let n = t.count
    let ceLeft = crossEntropy(logits, Tensor(shape: [n], scalars: left), reduction: .none)
    let ceRight = crossEntropy(logits, Tensor(shape: [n], scalars: left.map { $0 + 1 }), reduction: .none)
    return ceLeft * Tensor(shape: [n], scalars: wl) + ceRight * Tensor(shape: [n], scalars: wr)
}

/// The expected distance of each row's distribution over the bins, Σ i·softmax(logits)ᵢ
/// (how the head decodes a box side).
public func expectedBin(_ logits: Tensor) -> Tensor {
    let r = logits.shape[logits.rank - 1]
    let bins = Tensor(shape: [r], scalars: (0..<r).map(Float.init))
    return (logits.softmax(axis: -1) * bins).sum(axis: -1)
}

/// Task-aligned assignment (Feng et al. 2021, "TOOD: Task-aligned One-stage Object Detection",
/// §3.2), as Ultralytics 8.4's `TaskAlignedAssigner` computes it: for each ground-truth box,
/// the anchor points inside it (a side shorter than `minSide` is widened to it about the box's
/// centre, so small boxes get candidates) are scored by the alignment t = s^α · u^β — s the
/// predicted score of the box's class, u the CIoU of the predicted box with it, clamped at 0 —
/// and the `topK` best become its positives. A point that several boxes chose goes to the box
/// it overlaps most among all boxes it lies in. A positive's target score for the box's class
/// is t normalised so that the box's best point gets its best overlap: t · max u / max t over
/// the box's positives. Defaults as YOLOv8: top 10, α 0.5, β 6; `minSide` is the middle stride
/// (16 with strides 8, 16, 32).
public struct TaskAlignedAssigner: Sendable {
    public var topK = 10, alpha = 0.5, beta = 6.0
    /// The shortest box side the candidate region takes (0: the box as it is).
    public var minSide = 0.0
    public init(topK: Int = 10, alpha: Double = 0.5, beta: Double = 6, minSide: Double = 0) {
        (self.topK, self.alpha, self.beta, self.minSide) = (topK, alpha, beta, minSide)
    }

    /// The assignment of one image: for every anchor point the index of its ground-truth box
    /// (nil: background) and its target score (0 for background).
    public struct Assignment: Equatable, Sendable {
        public var box: [Int?]
        public var score: [Double]
    }

    /// Complete IoU of corner boxes as Ultralytics' `bbox_iou(…, CIoU=True)` computes it (eps
    /// 1e-7 in the heights, the union and the enclosing diagonal).
    public static func completeIoU(_ a: [Double], _ b: [Double]) -> Double {
        let eps = 1e-7
        let w1 = a[2] - a[0], h1 = a[3] - a[1] + eps, w2 = b[2] - b[0], h2 = b[3] - b[1] + eps
        let inter = Swift.max(0, Swift.min(a[2], b[2]) - Swift.max(a[0], b[0])) * Swift.max(0, Swift.min(a[3], b[3]) - Swift.max(a[1], b[1]))
        let iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
        let cw = Swift.max(a[2], b[2]) - Swift.min(a[0], b[0]), ch = Swift.max(a[3], b[3]) - Swift.min(a[1], b[1])
        let c2 = cw * cw + ch * ch + eps
        let rho2 = (Foundation.pow(b[0] + b[2] - a[0] - a[2], 2) + Foundation.pow(b[1] + b[3] - a[1] - a[3], 2)) / 4
        let v = 4 / (Double.pi * Double.pi) * Foundation.pow(Foundation.atan(w2 / h2) - Foundation.atan(w1 / h1), 2)
        let alpha = v / (v - iou + (1 + eps))
        return iou - (rho2 / c2 + v * alpha)
    }

    /// `points`: anchor centres in pixels; `scores[a][c]`: predicted class probabilities;
    /// `predicted[a]`: predicted boxes; `truths`: ground-truth boxes with their classes.
    public func assign(points: [(x: Double, y: Double)], scores: [[Double]], predicted: [Box], truths: [Box]) -> Assignment {
        let a = points.count, n = truths.count
        var box = [Int?](repeating: nil, count: a), score = [Double](repeating: 0, count: a)
        guard n > 0, a > 0 else { return Assignment(box: box, score: score) }
        // Overlap and alignment of every point inside every box's candidate region.
        var overlap = [[Double]](repeating: [Double](repeating: 0, count: a), count: n)
        var metric = overlap
        var chosen = [[Bool]](repeating: [Bool](repeating: false, count: a), count: n)
        for (gi, g) in truths.enumerated() {
            let cx = (g.x0 + g.x1) / 2, cy = (g.y0 + g.y1) / 2
            let hw = Swift.max(g.x1 - g.x0, minSide) / 2, hh = Swift.max(g.y1 - g.y0, minSide) / 2
            var inside: [Int] = []
            for (i, p) in points.enumerated() where p.x - (cx - hw) > 1e-9 && p.y - (cy - hh) > 1e-9 && (cx + hw) - p.x > 1e-9 && (cy + hh) - p.y > 1e-9 {
                let u = Swift.max(
                    0, Self.completeIoU([g.x0, g.y0, g.x1, g.y1], [predicted[i].x0, predicted[i].y0, predicted[i].x1, predicted[i].y1]))
                overlap[gi][i] = u
                metric[gi][i] = Foundation.pow(scores[i][g.classIndex], alpha) * Foundation.pow(u, beta)
                inside.append(i)
            }
            // Largest alignment first; ties keep the lower point index, as a stable top-k.
            for i in inside.sorted(by: { metric[gi][$0] != metric[gi][$1] ? metric[gi][$0] > metric[gi][$1] : $0 < $1 }).prefix(topK) {
                chosen[gi][i] = true
            }
        }
        // A point chosen by several boxes goes to the box it overlaps most (the first on a tie).
        var owner = [Int?](repeating: nil, count: a)
        for i in 0..<a {
            let claims = (0..<n).filter { chosen[$0][i] }
            guard !claims.isEmpty else { continue }
            owner[i] = claims.count == 1 ? claims[0] : (0..<n).max { overlap[$0][i] < overlap[$1][i] || overlap[$0][i] == overlap[$1][i] && $0 > $1 }
        }
        for gi in 0..<n {
            let kept = (0..<a).filter { owner[$0] == gi }
            guard let maxMetric = kept.map({ metric[gi][$0] }).max(), let maxOverlap = kept.map({ overlap[gi][$0] }).max() else { continue }
            for i in kept {
                box[i] = gi
                score[i] = metric[gi][i] * maxOverlap / (maxMetric + 1e-9)
            }
        }
        return Assignment(box: box, score: score)
    }
}
