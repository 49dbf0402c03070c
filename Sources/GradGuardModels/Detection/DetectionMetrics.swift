import Foundation

/// A box in pixels (corners) with its class and, for a prediction, its confidence.
public struct Box: Equatable, Sendable {
    /// The corners, in pixels.
    public var x0: Double, y0: Double, x1: Double, y1: Double
    /// The class.
    public var classIndex: Int
    /// The confidence (1 for a ground-truth box).
    public var score: Double
    /// A box from its corners.
    public init(x0: Double, y0: Double, x1: Double, y1: Double, classIndex: Int, score: Double = 1) {
        (self.x0, self.y0, self.x1, self.y1) = (x0, y0, x1, y1)
        self.classIndex = classIndex
        self.score = score
    }
    /// `[x0, y0, x1, y1]`.
    public var corners: [Double] { [x0, y0, x1, y1] }
}

/// Non-maximum suppression and COCO-style average precision.
public enum DetectionMetrics {
    /// Intersection over union of two `[x0, y0, x1, y1]` boxes (0 when either is empty).
    public static func iou(_ a: [Double], _ b: [Double]) -> Double {
        let w = Swift.max(0, Swift.min(a[2], b[2]) - Swift.max(a[0], b[0])), h = Swift.max(0, Swift.min(a[3], b[3]) - Swift.max(a[1], b[1]))
        let inter = w * h
        let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return union > 0 ? inter / union : 0
    }

    /// Greedy non-maximum suppression: boxes by descending score, each kept unless it
    /// overlaps a kept box of the same class (any class when `classAware` is false) by more
    /// than `iouThreshold`; at most `maxDetections` kept.
    public static func nms(_ boxes: [Box], iouThreshold: Double, classAware: Bool = true, maxDetections: Int = 300) -> [Box] {
        let order = boxes.indices.sorted { boxes[$0].score > boxes[$1].score || (boxes[$0].score == boxes[$1].score && $0 < $1) }
        var kept: [Box] = []
        for i in order {
            let b = boxes[i]
            if kept.contains(where: { (!classAware || $0.classIndex == b.classIndex) && iou($0.corners, b.corners) > iouThreshold }) { continue }
            kept.append(b)
            if kept.count == maxDetections { break }
        }
        return kept
    }

    /// Average precision of one class at one IoU threshold over a set of images, as the
    /// COCO evaluation computes it: detections by descending score (ties in input order)
    /// are matched to the unmatched ground truth of highest IoU ≥ `threshold` in their
    /// image; precision is made monotone (each point takes the best precision at any higher
    /// recall) and read at the 101 recalls 0, 0.01, …, 1 (the first point reaching each
    /// recall; 0 beyond the highest recall). Returns nil when the class has no ground truth.
    public static func averagePrecision(predictions: [[Box]], truths: [[Box]], classIndex: Int, threshold: Double) -> Double? {
        let total = truths.reduce(0) { $0 + $1.filter { $0.classIndex == classIndex }.count }
        guard total > 0 else { return nil }
        var scored: [(score: Double, tp: Bool, order: Int)] = []
        for (image, preds) in predictions.enumerated() {
            let gts = image < truths.count ? truths[image].filter { $0.classIndex == classIndex } : []
            var matched = [Bool](repeating: false, count: gts.count)
            let mine = preds.filter { $0.classIndex == classIndex }
            let order = mine.indices.sorted { mine[$0].score > mine[$1].score || (mine[$0].score == mine[$1].score && $0 < $1) }
            for i in order {
                var best = -1, bestIoU = Swift.min(threshold, 1 - 1e-10)
                for (j, g) in gts.enumerated() where !matched[j] {
                    let v = iou(mine[i].corners, g.corners)
                    if v >= bestIoU { best = j; bestIoU = v }
                }
                if best >= 0 { matched[best] = true }
                scored.append((mine[i].score, best >= 0, scored.count))
            }
        }
        scored.sort { $0.score > $1.score || ($0.score == $1.score && $0.order < $1.order) }
        var tp = 0.0, fp = 0.0
        var recall: [Double] = [], precision: [Double] = []
        for s in scored {
            if s.tp { tp += 1 } else { fp += 1 }
            recall.append(tp / Double(total))
            precision.append(tp / (tp + fp))
        }
        if precision.count > 1 {
            for i in stride(from: precision.count - 2, through: 0, by: -1) { precision[i] = Swift.max(precision[i], precision[i + 1]) }
        }
        var sum = 0.0
        for k in 0...100 {
            let r = Double(k) / 100
            // The first index whose recall reaches r (numpy.searchsorted, side 'left').
            var lo = 0, hi = recall.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if recall[mid] < r - 1e-12 { lo = mid + 1 } else { hi = mid }
            }
            if lo < recall.count { sum += precision[lo] }
        }
        return sum / 101
    }

    /// mAP@0.5, mAP@0.5:0.95 (the mean over thresholds 0.50, 0.55, …, 0.95) and the per-class
    /// AP@0.5 (nil for a class without ground truth; such classes are left out of the means).
    public static func meanAveragePrecision(predictions: [[Box]], truths: [[Box]], classes: Int)
        -> (map50: Double, map50to95: Double, perClass50: [Double?])
    {
        let thresholds = (0..<10).map { 0.5 + 0.05 * Double($0) }
        var perClass50: [Double?] = []
        var all: [Double] = []
        for c in 0..<classes {
            let aps = thresholds.map { averagePrecision(predictions: predictions, truths: truths, classIndex: c, threshold: $0) }
            perClass50.append(aps[0])
            if aps[0] != nil { all.append(aps.map { $0! }.reduce(0, +) / Double(thresholds.count)) }
        }
        let present = perClass50.compactMap { $0 }
        return (
            present.isEmpty ? 0 : present.reduce(0, +) / Double(present.count),
            all.isEmpty ? 0 : all.reduce(0, +) / Double(all.count), perClass50
        )
    }
}
