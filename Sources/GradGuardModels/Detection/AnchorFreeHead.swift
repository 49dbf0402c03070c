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
/// §3.2; as YOLOv8's TaskAlignedAssigner): for each ground-truth box, the anchor points inside
/// it are scored by the alignment t = s^α · u^β — s the predicted score of the box's class, u
/// the IoU of the predicted box with it — and the `topK` best become its positives; a point
/// claimed by several boxes keeps the one it overlaps most. A positive's target score for the
/// box's class is t normalised so that the box's best point gets its best IoU:
/// t · max u / max t over the box's positives. Defaults as YOLOv8: top 10, α 0.5, β 6.
public struct TaskAlignedAssigner: Sendable {
    public var topK = 10, alpha = 0.5, beta = 6.0
    public init(topK: Int = 10, alpha: Double = 0.5, beta: Double = 6) {
        (self.topK, self.alpha, self.beta) = (topK, alpha, beta)
    }

    /// The assignment of one image: for every anchor point the index of its ground-truth box
    /// (nil: background) and its target score (0 for background).
    public struct Assignment: Equatable, Sendable {
        public var box: [Int?]
        public var score: [Double]
    }

    /// `points`: anchor centres in pixels; `scores[a][c]`: predicted class probabilities;
    /// `predicted[a]`: predicted boxes; `truths`: ground-truth boxes with their classes.
    public func assign(points: [(x: Double, y: Double)], scores: [[Double]], predicted: [Box], truths: [Box]) -> Assignment {
        let a = points.count
        var box = [Int?](repeating: nil, count: a), score = [Double](repeating: 0, count: a)
        guard !truths.isEmpty, a > 0 else { return Assignment(box: box, score: score) }
        // Alignment and IoU of every point inside every box; the top k of each box.
        var candidates: [[(point: Int, metric: Double, iou: Double)]] = []
        for g in truths {
            var inside: [(point: Int, metric: Double, iou: Double)] = []
            for (i, p) in points.enumerated() where p.x > g.x0 + 1e-9 && p.x < g.x1 - 1e-9 && p.y > g.y0 + 1e-9 && p.y < g.y1 - 1e-9 {
                let u = Swift.max(0, DetectionMetrics.iou([predicted[i].x0, predicted[i].y0, predicted[i].x1, predicted[i].y1], [g.x0, g.y0, g.x1, g.y1]))
                let s = scores[i][g.classIndex]
                inside.append((i, Foundation.pow(s, alpha) * Foundation.pow(u, beta), u))
            }
            // Largest alignment first; ties keep the lower point index, as a stable top-k.
            candidates.append(Array(inside.sorted { $0.metric != $1.metric ? $0.metric > $1.metric : $0.point < $1.point }.prefix(topK)))
        }
        // A point claimed by several boxes keeps the one it overlaps most.
        var owner = [Int?](repeating: nil, count: a), ownerIoU = [Double](repeating: -1, count: a)
        for (gi, list) in candidates.enumerated() {
            for c in list where c.iou > ownerIoU[c.point] {
                owner[c.point] = gi
                ownerIoU[c.point] = c.iou
            }
        }
        for (gi, list) in candidates.enumerated() {
            let kept = list.filter { owner[$0.point] == gi }
            guard let maxMetric = kept.map(\.metric).max(), let maxIoU = kept.map(\.iou).max() else { continue }
            for c in kept {
                box[c.point] = gi
                score[c.point] = c.metric * maxIoU / (maxMetric + 1e-9)
            }
        }
        return Assignment(box: box, score: score)
    }
}
