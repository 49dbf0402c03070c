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

/// The detector's training loss, after YOLOv5 (Ultralytics' `ComputeLoss`), anchor-free:
///
/// - Scale: a box goes to stride 8 when its longer side is at most 64 pixels and to
///   stride 16 when it is over 32 (both in between).
/// - Cells: the one holding the centre and its two nearest neighbours (YOLOv5's offset
///   rule); a cell claimed twice keeps the smaller box.
/// - Box: 1 − GIoU (default) or 1 − CIoU of the decoded box; objectness: BCE against the detached IoU (0 at
///   unassigned cells), scales weighted 4 : 1; classes: BCE against one-hot.
/// - Gains: box 0.05, objectness 1.0·(S/640)², classes 0.5·(classes/80), each ×3/2 for two
///   scales, and the sum × batch size (YOLOv5's `hyp.scratch-low` scaled as in `train.py`).
public struct YOLOLoss: Sendable {
    public var classes: Int
    public var imageSize: Int
    public var boxGain = YOLOLoss.defaultBoxGain, objectnessGain = 1.0, classGain = 0.5
    /// YOLOv5's box gain.
    public static let defaultBoxGain = 0.05
    public var balance = [4.0, 1.0]
    public var box: BoxLoss = .giou

    public init(classes: Int, imageSize: Int) {
        self.classes = classes
        self.imageSize = imageSize
    }

    /// Parts of the loss, each already weighted; `total` is what training minimises.
    public struct Parts {
        public var box: Tensor, objectness: Tensor, classes: Tensor, total: Tensor
    }

    /// `outputs` from `YOLODetector`, `targets` `[B, M, 5]` (class, cx, cy, w, h in pixels
    /// of the input; class −1 pads).
    public func callAsFunction(_ outputs: [Tensor], targets: Tensor, strides: [Int] = [8, 16]) -> Parts {
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
                    let wanted = k == 0 ? side <= 64 : (k == outputs.count - 1 ? side > 32 : (side > 32 && side <= 8 * s))
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
        return Parts(box: box, objectness: obj, classes: cls, total: box + obj + cls)
    }
}
