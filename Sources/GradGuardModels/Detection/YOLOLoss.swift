import Foundation
import GradGuardNN
import GradGuardTensor

/// The four columns x0, y0, x1, y1 of `[N, 4]` boxes, each `[N]`.
private func corners(_ t: Tensor) -> (Tensor, Tensor, Tensor, Tensor) {
    let c = (0..<4).map { t.narrow(axis: 1, start: $0, length: 1).squeezed(1) }
    return (c[0], c[1], c[2], c[3])
}

/// The element-wise minimum and maximum, the gradient going to the chosen side.
private func minimum(_ a: Tensor, _ b: Tensor) -> Tensor { Tensor.where(a.lt(b), a, b) }
private func maximum(_ a: Tensor, _ b: Tensor) -> Tensor { Tensor.where(a.gt(b), a, b) }

/// Generalised IoU (Rezatofighi et al. 2019) of corner boxes `[N, 4]` against constant
/// targets `[N, 4]`: IoU − (|C| − |A ∪ B|)/|C| with C the smallest enclosing box; `[N]`.
public func generalizedIoU(_ boxes: Tensor, _ targets: Tensor) -> Tensor {
    let (ax0, ay0, ax1, ay1) = corners(boxes), (bx0, by0, bx1, by1) = corners(targets)
    let iw = (minimum(ax1, bx1) - maximum(ax0, bx0)).relu(), ih = (minimum(ay1, by1) - maximum(ay0, by0)).relu()
    let inter = iw * ih
    let union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter + 1e-7
    let enclosing = (maximum(ax1, bx1) - minimum(ax0, bx0)) * (maximum(ay1, by1) - minimum(ay0, by0)) + 1e-7
    return inter / union - (enclosing - union) / enclosing
}

/// Complete IoU (Zheng et al. 2020, the box loss of YOLOv5 and later) of corner boxes
/// `[N, 4]` against constant targets: IoU − ρ²/c² − α·v, with ρ the distance between the
/// centres, c the diagonal of the enclosing box, v = 4/π²·(atan(w_t/h_t) − atan(w/h))² and
/// α = v/(v − IoU + 1) taken as a constant (as Ultralytics computes it, without gradient); `[N]`.
public func completeIoU(_ boxes: Tensor, _ targets: Tensor) -> Tensor {
    let eps: Float = 1e-7
    let (ax0, ay0, ax1, ay1) = corners(boxes), (bx0, by0, bx1, by1) = corners(targets)
    let (aw, ah, bw, bh) = (ax1 - ax0, ay1 - ay0 + eps, bx1 - bx0, by1 - by0 + eps)
    let inter = (minimum(ax1, bx1) - maximum(ax0, bx0)).relu() * (minimum(ay1, by1) - maximum(ay0, by0)).relu()
    let iou = inter / (aw * ah + bw * bh - inter + eps)
    let cw = maximum(ax1, bx1) - minimum(ax0, bx0), ch = maximum(ay1, by1) - minimum(ay0, by0)
    let c2 = cw.square() + ch.square() + eps
    let rho2 = ((bx0 + bx1 - ax0 - ax1).square() + (by0 + by1 - ay0 - ay1).square()) / 4
    let v = ((bw / bh).atan() - (aw / ah).atan()).square() * Float(4 / (Double.pi * Double.pi))
    let alpha = withoutGrad { v / (v - iou + (1 + eps)) }.detach()
    return iou - (rho2 / c2 + v * alpha)
}

/// The box term of the detector's loss: 1 − GIoU or 1 − CIoU.
public enum BoxLoss: String, Sendable, CaseIterable {
    case giou, ciou
}

/// The detector's training loss, for either head.
///
/// Coupled head (YOLOv5's `ComputeLoss`, anchor-free):
/// - Scale: a box goes to stride 8 when its longer side is at most 64 pixels, to the
///   coarsest stride when it is over twice that stride, and to a middle stride s when it is
///   between 2s and 8s.
/// - Cells: the one holding the centre and its two nearest neighbours (YOLOv5's offset
///   rule); a cell claimed twice keeps the smaller box.
/// - Box: 1 − GIoU (default) or 1 − CIoU of the decoded box; objectness: BCE against the detached IoU (0 at
///   unassigned cells), scales weighted 4 : 1 (4 : 1 : 0.4 with three); classes: BCE against one-hot.
/// - Gains: box 0.05, objectness 1.0·(S/640)², classes 0.5·(classes/80), each ×3/scales, and
///   the sum × batch size (YOLOv5's `hyp.scratch-low` scaled as in `train.py`).
///
/// Decoupled head (YOLOv8's `v8DetectionLoss`):
/// - Assignment: `TaskAlignedAssigner` (top 10, α 0.5, β 6) over every cell centre of every
///   scale, from the detached predicted class probabilities and boxes.
/// - Classes: BCE of every cell's class logits against the assigned, alignment-weighted
///   targets, summed and divided by the targets' sum.
/// - Box: 1 − CIoU (or 1 − GIoU) of each positive's decoded box, weighted by its target score;
///   DFL (`distributionFocalLoss`) of its four side distributions against the true distances
///   in strides, weighted the same; both divided by the targets' sum.
/// - Gains: box 7.5, classes 0.5, DFL 1.5, and the sum × batch size.
public struct YOLOLoss: Sendable {
    /// The number of classes.
    public var classes: Int
    /// The input side in pixels.
    public var imageSize: Int
    /// The head whose outputs it scores.
    public var head: DetectorHead
    /// The strides of the head's scales.
    public var strides: [Int]
    /// Bins of a box side's distribution (decoupled head).
    public var regMax = 16
    /// The weights of the box, objectness, class and DFL terms.
    public var boxGain: Double, objectnessGain = 1.0, classGain = 0.5, dflGain = 1.5
    /// YOLOv5's box gain.
    public static let defaultBoxGain = 0.05
    /// The box gain Ultralytics uses with each head (YOLOv5's 0.05, YOLOv8's 7.5).
    public static func defaultBoxGain(for head: DetectorHead) -> Double { head == .coupled ? defaultBoxGain : 7.5 }
    /// The coupled head's objectness weight per scale (YOLOv5's 4, 1, 0.4).
    public var balance = [4.0, 1.0, 0.4]
    /// The box term: 1 − GIoU or 1 − CIoU.
    public var box: BoxLoss
    /// The decoupled head's assignment of cells to boxes.
    public var assigner = TaskAlignedAssigner()

    /// The loss of a head with `classes` classes on `imageSize` inputs, with Ultralytics' gains.
    public init(classes: Int, imageSize: Int, head: DetectorHead = .coupled, strides: [Int] = [8, 16]) {
        self.classes = classes
        self.imageSize = imageSize
        self.head = head
        self.strides = strides
        boxGain = Self.defaultBoxGain(for: head)
        box = head == .coupled ? .giou : .ciou
        // Ultralytics widens a box's candidate region to the middle stride.
        assigner.minSide = Double(strides.count > 1 ? strides[1] : strides[0])
    }

    /// The loss that goes with `model`: its head, strides and bins.
    public init(for model: YOLODetector, imageSize: Int) {
        self.init(classes: model.classes, imageSize: imageSize, head: model.head, strides: model.strides)
        regMax = model.regMax
    }

    /// Parts of the loss, each already weighted; `total` is what training minimises.
    /// `objectness` is the coupled head's, `dfl` the decoupled head's (0 for the other).
    public struct Parts {
        /// The weighted box, objectness, class and DFL terms, and their sum.
        public var box: Tensor, objectness: Tensor, classes: Tensor, dfl: Tensor, total: Tensor
    }

    /// `outputs` from `YOLODetector`, `targets` `[B, M, 5]` (class, cx, cy, w, h in pixels
    /// of the input; class −1 pads).
    public func callAsFunction(_ outputs: [Tensor], targets: Tensor) -> Parts {
        head == .coupled ? coupled(outputs, targets: targets) : decoupled(outputs, targets: targets)
    }

    func coupled(_ outputs: [Tensor], targets: Tensor) -> Parts {
        let batch = outputs[0].shape[0], m = targets.shape[1]
        let t = targets.scalars
        let layers = Double(outputs.count)
        let gains = (
            box: boxGain * 3 / layers,
            obj: objectnessGain * Foundation.pow(Double(imageSize) / 640, 2) * 3 / layers,
            cls: classGain * Double(classes) / 80 * 3 / layers
        )
        var boxLoss = Tensor(0), objLoss = Tensor(0), clsLoss = Tensor(0)
        for (k, (out, stride)) in zip(outputs, strides).enumerated() {
            let h = out.shape[2], w = out.shape[3], channels = 5 + classes
            let s = Double(stride)
            let flat = out.permuted([0, 2, 3, 1]).reshaped([batch * h * w, channels])
            // Assignment: cell → (target box, area).
            var owner: [Int: (box: [Double], cls: Int, area: Double)] = [:]
            for b in 0..<batch {
                for j in 0..<m {
                    let o = (b * m + j) * 5
                    let cls = Int(t[o])
                    if cls < 0 { continue }
                    let (cx, cy, bw, bh) = (Double(t[o + 1]), Double(t[o + 2]), Double(t[o + 3]), Double(t[o + 4]))
                    let side = Swift.max(bw, bh)
                    let wanted = k == 0 ? side <= 8 * s : (k == outputs.count - 1 ? side > 2 * s : (side > 2 * s && side <= 8 * s))
                    if !wanted { continue }
                    let gx = cx / s, gy = cy / s
                    let ix = Swift.min(w - 1, Int(gx)), iy = Swift.min(h - 1, Int(gy))
                    var cells = [(ix, iy)]
                    let fx = gx - Double(ix), fy = gy - Double(iy)
                    cells.append((fx < 0.5 ? ix - 1 : ix + 1, iy))
                    cells.append((ix, fy < 0.5 ? iy - 1 : iy + 1))
                    let area = bw * bh
                    let box = [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]
                    for (x, y) in cells where x >= 0 && x < w && y >= 0 && y < h {
                        let cell = (b * h + y) * w + x
                        if let existing = owner[cell], existing.area <= area { continue }
                        owner[cell] = (box, cls, area)
                    }
                }
            }
            var objTarget = [Float](repeating: 0, count: batch * h * w)
            let objLogits = flat.narrow(axis: 1, start: 4, length: 1).reshaped([batch * h * w])
            if !owner.isEmpty {
                let cells = owner.keys.sorted()
                let picked = flat.indexSelect(axis: 0, indices: Tensor(shape: [cells.count], scalars: cells.map(Float.init)))
                var grid: [Float] = [], boxes: [Float] = [], oneHot = [Float](repeating: 0, count: cells.count * classes)
                for (i, cell) in cells.enumerated() {
                    let x = cell % w, y = (cell / w) % h
                    grid += [Float(x), Float(y)]
                    let o = owner[cell]!
                    boxes += o.box.map(Float.init)
                    oneHot[i * classes + o.cls] = 1
                }
                let n = cells.count
                let xy = (picked.narrow(axis: 1, start: 0, length: 2).sigmoid() * 2 - 0.5 + Tensor(shape: [n, 2], scalars: grid)) * Float(s)
                let wh = (picked.narrow(axis: 1, start: 2, length: 2).sigmoid() * 2).square() * Float(4 * s)
                let corners = Tensor.concatenate([xy - wh * 0.5, xy + wh * 0.5], axis: 1)
                let target = Tensor(shape: [n, 4], scalars: boxes)
                let overlap = box == .ciou ? completeIoU(corners, target) : generalizedIoU(corners, target)
                boxLoss = boxLoss + (1 - overlap).mean()
                let iouValues = overlap.detach().scalars
                for (i, cell) in cells.enumerated() { objTarget[cell] = Swift.max(0, iouValues[i]) }
                if classes > 1 {
                    clsLoss =
                        clsLoss
                        + binaryCrossEntropyWithLogits(
                            picked.narrow(axis: 1, start: 5, length: classes),
                            Tensor(shape: [n, classes], scalars: oneHot))
                }
            }
            let balance = k < self.balance.count ? self.balance[k] : 1
            objLoss = objLoss + binaryCrossEntropyWithLogits(objLogits, Tensor(shape: [batch * h * w], scalars: objTarget)) * Float(balance)
        }
        let box = boxLoss * Float(gains.box * Double(batch)), obj = objLoss * Float(gains.obj * Double(batch))
        let cls = clsLoss * Float(gains.cls * Double(batch))
        return Parts(box: box, objectness: obj, classes: cls, dfl: Tensor(0), total: box + obj + cls)
    }

    /// The cell centres of every scale in pixels, with their strides, in the order the
    /// decoupled loss flattens the outputs (scale by scale, row by row).
    static func anchorPoints(_ outputs: [Tensor], strides: [Int]) -> (x: [Double], y: [Double], stride: [Double]) {
        var px: [Double] = [], py: [Double] = [], ps: [Double] = []
        for (out, stride) in zip(outputs, strides) {
            let s = Double(stride)
            for y in 0..<out.shape[2] {
                for x in 0..<out.shape[3] {
                    px.append((Double(x) + 0.5) * s)
                    py.append((Double(y) + 0.5) * s)
                    ps.append(s)
                }
            }
        }
        return (px, py, ps)
    }

    func decoupled(_ outputs: [Tensor], targets: Tensor) -> Parts {
        let batch = outputs[0].shape[0], r = regMax, channels = 4 * r + classes
        let anchors = Self.anchorPoints(outputs, strides: strides)
        let a = anchors.x.count
        // [B·A, 4R + classes]: every cell of every scale, image by image.
        let rows = Tensor.concatenate(
            outputs.map { $0.permuted([0, 2, 3, 1]).reshaped([batch, $0.shape[2] * $0.shape[3], channels]) }, axis: 1
        ).reshaped([batch * a, channels])
        let distLogits = rows.narrow(axis: 1, start: 0, length: 4 * r)
        let clsLogits = rows.narrow(axis: 1, start: 4 * r, length: classes)
        // Detached predictions for the assigner.
        let dv = distLogits.scalars, cv = clsLogits.scalars
        let points = (0..<a).map { (x: anchors.x[$0], y: anchors.y[$0]) }
        let truthsPerImage = DetectionDataset.truths(targets)
        var targetScores = [Float](repeating: 0, count: batch * a * classes)
        var fgRows: [Int] = [], fgBoxes: [Float] = [], fgPoints: [Float] = [], fgStrides: [Float] = [], fgWeights: [Float] = []
        var sideTargets: [Float] = []
        for b in 0..<batch {
            let truths = truthsPerImage[b].filter { $0.classIndex < classes }
            if truths.isEmpty { continue }
            var scores = [[Double]](), predicted = [Box]()
            scores.reserveCapacity(a)
            predicted.reserveCapacity(a)
            for i in 0..<a {
                let row = b * a + i
                scores.append((0..<classes).map { YOLODetector.sigmoid(cv[row * classes + $0]) })
                let d = (0..<4).map {
                    YOLODetector.expectedDistance(dv, start: row * 4 * r + $0 * r, step: 1, regMax: r) * anchors.stride[i]
                }
                predicted.append(
                    Box(x0: anchors.x[i] - d[0], y0: anchors.y[i] - d[1], x1: anchors.x[i] + d[2], y1: anchors.y[i] + d[3], classIndex: 0, score: 0))
            }
            let assignment = assigner.assign(points: points, scores: scores, predicted: predicted, truths: truths)
            for i in 0..<a {
                guard let g = assignment.box[i] else { continue }
                let row = b * a + i, truth = truths[g], score = Float(assignment.score[i])
                targetScores[row * classes + truth.classIndex] = score
                if score <= 0 { continue }
                fgRows.append(row)
                fgBoxes += [Float(truth.x0), Float(truth.y0), Float(truth.x1), Float(truth.y1)]
                fgPoints += [Float(anchors.x[i]), Float(anchors.y[i])]
                fgStrides.append(Float(anchors.stride[i]))
                fgWeights.append(score)
                let s = anchors.stride[i]
                sideTargets += [(anchors.x[i] - truth.x0) / s, (anchors.y[i] - truth.y0) / s, (truth.x1 - anchors.x[i]) / s, (truth.y1 - anchors.y[i]) / s]
                    .map(Float.init)
            }
        }
        let scoreSum = Swift.max(1, targetScores.reduce(0, +))
        let clsLoss =
            binaryCrossEntropyWithLogits(clsLogits, Tensor(shape: [batch * a, classes], scalars: targetScores), reduction: .sum) / scoreSum
        var boxLoss = Tensor(0), dflLoss = Tensor(0)
        if !fgRows.isEmpty {
            let f = fgRows.count
            let picked = distLogits.indexSelect(axis: 0, indices: Tensor(shape: [f], scalars: fgRows.map(Float.init))).reshaped([f * 4, r])
            let sides = expectedBin(picked).reshaped([f, 4]) * Tensor(shape: [f, 1], scalars: fgStrides)
            let points = Tensor(shape: [f, 2], scalars: fgPoints)
            let corners = Tensor.concatenate(
                [points - sides.narrow(axis: 1, start: 0, length: 2), points + sides.narrow(axis: 1, start: 2, length: 2)], axis: 1)
            let target = Tensor(shape: [f, 4], scalars: fgBoxes), weights = Tensor(shape: [f], scalars: fgWeights)
            let overlap = box == .ciou ? completeIoU(corners, target) : generalizedIoU(corners, target)
            boxLoss = ((1 - overlap) * weights).sum() / scoreSum
            let dfl = distributionFocalLoss(picked, Tensor(shape: [f * 4], scalars: sideTargets)).reshaped([f, 4]).mean(axis: 1)
            dflLoss = (dfl * weights).sum() / scoreSum
        }
        let scale = Float(batch)
        let boxPart = boxLoss * Float(boxGain) * scale, clsPart = clsLoss * Float(classGain) * scale, dflPart = dflLoss * Float(dflGain) * scale
        return Parts(box: boxPart, objectness: Tensor(0), classes: clsPart, dfl: dflPart, total: boxPart + clsPart + dflPart)
    }
}
