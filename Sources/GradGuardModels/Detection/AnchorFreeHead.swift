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
    /// Positives per box (k), and the exponents of the alignment t = s^α · u^β.
    public var topK = 10, alpha = 0.5, beta = 6.0
    /// The shortest box side the candidate region takes (0: the box as it is).
    public var minSide = 0.0
    /// An assigner with YOLOv8's defaults unless given.
    public init(topK: Int = 10, alpha: Double = 0.5, beta: Double = 6, minSide: Double = 0) {
        (self.topK, self.alpha, self.beta, self.minSide) = (topK, alpha, beta, minSide)
    }

    /// The assignment of one image: for every anchor point the index of its ground-truth box
    /// (nil: background) and its target score (0 for background).
    public struct Assignment: Equatable, Sendable {
        /// Each anchor point's box index, nil for background.
        public var box: [Int?]
        /// Each anchor point's target score (0 for background).
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
        // Overlap and alignment of every point inside every box's candidate region, box-major
        // ([g · a + i]); the number of boxes that chose each point, and the last that did.
        var overlap = [Double](repeating: 0, count: n * a), metric = overlap
        var claims = [Int](repeating: 0, count: a), claimant = [Int](repeating: 0, count: a)
        var inside: [Int] = []
        for (gi, g) in truths.enumerated() {
            let cx = (g.x0 + g.x1) / 2, cy = (g.y0 + g.y1) / 2
            let hw = Swift.max(g.x1 - g.x0, minSide) / 2, hh = Swift.max(g.y1 - g.y0, minSide) / 2
            let truth = [g.x0, g.y0, g.x1, g.y1]
            inside.removeAll(keepingCapacity: true)
            for (i, p) in points.enumerated() where p.x - (cx - hw) > 1e-9 && p.y - (cy - hh) > 1e-9 && (cx + hw) - p.x > 1e-9 && (cy + hh) - p.y > 1e-9 {
                let q = predicted[i]
                let u = Swift.max(0, Self.completeIoU(truth, [q.x0, q.y0, q.x1, q.y1]))
                overlap[gi * a + i] = u
                metric[gi * a + i] = Foundation.pow(scores[i][g.classIndex], alpha) * Foundation.pow(u, beta)
                inside.append(i)
            }
            // Largest alignment first; ties keep the lower point index, as a stable top-k.
            let row = gi * a
            inside.sort { metric[row + $0] != metric[row + $1] ? metric[row + $0] > metric[row + $1] : $0 < $1 }
            for i in inside.prefix(topK) {
                claims[i] += 1
                claimant[i] = gi
            }
        }
        // A point chosen by several boxes goes to the box it overlaps most (the first on a tie).
        var owner = [Int](repeating: -1, count: a)
        for i in 0..<a where claims[i] > 0 {
            if claims[i] == 1 {
                owner[i] = claimant[i]
                continue
            }
            var best = 0
            for gi in 1..<n where overlap[gi * a + i] > overlap[best * a + i] { best = gi }
            owner[i] = best
        }
        // Per box, the largest alignment and overlap among its points.
        var maxMetric = [Double](repeating: -1, count: n), maxOverlap = [Double](repeating: 0, count: n)
        for i in 0..<a where owner[i] >= 0 {
            let gi = owner[i]
            maxMetric[gi] = Swift.max(maxMetric[gi], metric[gi * a + i])
            maxOverlap[gi] = Swift.max(maxOverlap[gi], overlap[gi * a + i])
        }
        for i in 0..<a where owner[i] >= 0 {
            let gi = owner[i]
            box[i] = gi
            score[i] = metric[gi * a + i] * maxOverlap[gi] / (maxMetric[gi] + 1e-9)
        }
        return Assignment(box: box, score: score)
    }
}
