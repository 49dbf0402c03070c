import Foundation
import GradGuardData
import GradGuardTensor

/// Augmentations of Ultralytics' defaults (hyp.scratch-low): HSV gains 1 ± (0.015, 0.7,
/// 0.4), left-right flip with probability 0.5, scale 1 ± 0.5 and translation ± 0.1 of the
/// image side.
public struct Augmentation: Sendable, Equatable {
    /// The HSV gains: each channel scaled by a random factor within 1 ± the gain.
    public var hue = 0.015, saturation = 0.7, value = 0.4
    /// The probability of a left-right flip.
    public var flip = 0.5
    /// The random scale (1 ± scale) and translation (± translate of the side).
    public var scale = 0.5, translate = 0.1
    /// Ultralytics' defaults.
    public init() {}
    /// No augmentation (validation, detection).
    public static let none: Augmentation = {
        var a = Augmentation()
        (a.hue, a.saturation, a.value, a.flip, a.scale, a.translate) = (0, 0, 0, 0, 0, 0)
        return a
    }()
}

/// A detection split as a `Dataset`: each example is the image letterboxed to `size`×`size`
/// and augmented, its boxes mapped the same way. Batches are `[B, 3, S, S]` images and
/// `[B, M, 5]` targets (class, cx, cy, w, h in input pixels; class −1 pads to the most
/// boxes of any image, M).
///
/// The random draws of an example depend only on the seed, the example and the epoch, so
/// a run repeats exactly and a resumed run sees the same images as an unbroken one.
public final class DetectionDataset: Dataset, SampleDescribing, Sendable {
    /// The images and their boxes.
    public let samples: [DetectionSample]
    /// The side of the square input, in pixels.
    public let size: Int
    /// The augmentations drawn for each example.
    public let augmentation: Augmentation
    /// The seed the draws start from.
    public let seed: UInt64
    /// The most boxes of any image (M, the targets' second dimension).
    public let maxBoxes: Int
    /// Training epochs before this one draw mosaics (four images around a random centre),
    /// the later ones single images — Ultralytics' `close_mosaic` (0: no mosaics).
    public let mosaicUntilEpoch: Int

    /// A dataset of `samples` at `size`×`size`, augmented as `augmentation` says.
    public init(_ samples: [DetectionSample], size: Int, augmentation: Augmentation = .none, seed: UInt64 = 0, mosaicUntilEpoch: Int = 0) {
        self.samples = samples
        self.size = size
        self.augmentation = augmentation
        self.seed = seed
        self.mosaicUntilEpoch = samples.count >= 4 ? mosaicUntilEpoch : 0
        maxBoxes = Swift.max(1, samples.map(\.boxes.count).max() ?? 1) * (self.mosaicUntilEpoch > 0 ? 4 : 1)
    }

    /// The number of images.
    public var count: Int { samples.count }

    /// "images/train/0042.png (labels/train/0042.txt, 3 boxes)".
    public func describe(_ index: Int) -> String {
        guard samples.indices.contains(index) else { return "image \(index)" }
        let s = samples[index]
        return "\(s.imagePath) (\(DetectionSplit.labelPath(forImage: s.imagePath)), \(s.boxes.count) box\(s.boxes.count == 1 ? "" : "es"))"
    }

    /// Example `index` as the model sees it in epoch `epoch`: the image and its boxes in input pixels.
    public func example(_ index: Int, epoch: Int) -> (image: RGBImage, boxes: [Box]) {
        if epoch < mosaicUntilEpoch { return mosaic(index, epoch: epoch) }
        let s = samples[index]
        let a = augmentation
        var g = RandomGenerator(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(index) &* 0xBF58_476D_1CE4_E5B9 &+ UInt64(epoch))
        func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * g.nextUniform() }
        let fit = Swift.min(Double(size) / Double(s.image.width), Double(size) / Double(s.image.height))
        let scale = fit * (a.scale > 0 ? uniform(1 - a.scale, 1 + a.scale) : 1)
        let w = Double(s.image.width) * scale, h = Double(s.image.height) * scale
        let ox = ((Double(size) - w) / 2 + (a.translate > 0 ? uniform(-a.translate, a.translate) * Double(size) : 0)).rounded(.down)
        let oy = ((Double(size) - h) / 2 + (a.translate > 0 ? uniform(-a.translate, a.translate) * Double(size) : 0)).rounded(.down)
        var image = s.image.resampled(size: size, scale: scale, offsetX: ox, offsetY: oy)
        let flip = flipAndColour(&image, &g)
        var boxes: [Box] = []
        let side = Double(size)
        for b in s.boxes {
            var x0 = (b.cx - b.w / 2) * Double(s.image.width) * scale + ox, x1 = (b.cx + b.w / 2) * Double(s.image.width) * scale + ox
            let y0 = (b.cy - b.h / 2) * Double(s.image.height) * scale + oy, y1 = (b.cy + b.h / 2) * Double(s.image.height) * scale + oy
            if flip { (x0, x1) = (side - x1, side - x0) }
            let c = Box(x0: Swift.max(0, x0), y0: Swift.max(0, y0), x1: Swift.min(side, x1), y1: Swift.min(side, y1), classIndex: b.classIndex)
            // Ultralytics' box_candidates: at least 2 pixels a side and 10 % of the area kept.
            let kept = (c.x1 - c.x0) * (c.y1 - c.y0), before = (x1 - x0) * (y1 - y0)
            if c.x1 - c.x0 >= 2, c.y1 - c.y0 >= 2, kept >= 0.1 * before { boxes.append(c) }
        }
        return (image, boxes)
    }

    /// Left-right flip and HSV jitter of an augmented image (drawn from `g`); whether it flipped.
    func flipAndColour(_ image: inout RGBImage, _ g: inout RandomGenerator) -> Bool {
        let a = augmentation
        func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * g.nextUniform() }
        let flip = a.flip > 0 && g.nextUniform() < a.flip
        if flip { image = image.flippedHorizontally() }
        if a.hue > 0 || a.saturation > 0 || a.value > 0 {
            image = image.hsvAdjusted(
                hue: uniform(1 - a.hue, 1 + a.hue), saturation: uniform(1 - a.saturation, 1 + a.saturation),
                value: uniform(1 - a.value, 1 + a.value))
        }
        return flip
    }

    /// Ultralytics' mosaic (`Mosaic._mosaic4` then `RandomPerspective`): example `index` and
    /// three others drawn from the seed, the example and the epoch, each letterboxed to the
    /// input side S (its longer side), placed on a 2S×2S grey canvas around a centre drawn in
    /// [S/2, 3S/2] — the first ending at it, the others starting from it — then the canvas
    /// scaled by 1 ± `scale` about its middle and an S×S window cut at the middle shifted by ±
    /// `translate`·S; then the flip and colour jitter of a single image. Objects keep their
    /// size (up to the scale draw). A box keeps the part inside the window, if at least 2
    /// pixels a side and 10 % of its scaled area remain (Ultralytics' box_candidates).
    func mosaic(_ index: Int, epoch: Int) -> (image: RGBImage, boxes: [Box]) {
        var g = RandomGenerator(seed: (seed ^ 0x6D6F_7361_6963) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(index) &* 0xBF58_476D_1CE4_E5B9 &+ UInt64(epoch))
        func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * g.nextUniform() }
        let side = Double(size), big = 2 * size
        let xc = Int(uniform(side / 2, 3 * side / 2).rounded()), yc = Int(uniform(side / 2, 3 * side / 2).rounded())
        let tiles = [index] + (0..<3).map { _ in Int(g.next() % UInt64(samples.count)) }
        // Quarters of the canvas: top-left, top-right, bottom-left, bottom-right.
        let quarters = [(0..<xc, 0..<yc), (xc..<big, 0..<yc), (0..<xc, yc..<big), (xc..<big, yc..<big)]
        var canvas = [UInt8](repeating: 114, count: big * big * 3)
        var boxes: [Box] = []
        for (q, i) in tiles.enumerated() {
            let s = samples[i]
            let fit = side / Double(Swift.max(s.image.width, s.image.height))
            let w = (Double(s.image.width) * fit).rounded(), h = (Double(s.image.height) * fit).rounded()
            let ox = q % 2 == 0 ? Double(xc) - w : Double(xc), oy = q < 2 ? Double(yc) - h : Double(yc)
            let tile = s.image.resampled(size: big, scale: fit, offsetX: ox, offsetY: oy)
            let (us, vs) = quarters[q]
            for v in vs where !us.isEmpty {
                let o = (v * big + us.lowerBound) * 3
                canvas.replaceSubrange(o..<(o + us.count * 3), with: tile.pixels[o..<(o + us.count * 3)])
            }
            for b in s.boxes {
                let x0 = (b.cx - b.w / 2) * Double(s.image.width) * fit + ox, x1 = (b.cx + b.w / 2) * Double(s.image.width) * fit + ox
                let y0 = (b.cy - b.h / 2) * Double(s.image.height) * fit + oy, y1 = (b.cy + b.h / 2) * Double(s.image.height) * fit + oy
                boxes.append(
                    Box(
                        x0: Swift.max(Double(us.lowerBound), x0), y0: Swift.max(Double(vs.lowerBound), y0), x1: Swift.min(Double(us.upperBound), x1),
                        y1: Swift.min(Double(vs.upperBound), y1), classIndex: b.classIndex))
            }
        }
        // RandomPerspective with only scale and translation: canvas point p ↦ k·(p − S) + (½ + t)·S.
        let a = augmentation
        let k = a.scale > 0 ? uniform(1 - a.scale, 1 + a.scale) : 1
        let tx = a.translate > 0 ? uniform(0.5 - a.translate, 0.5 + a.translate) : 0.5
        let ty = a.translate > 0 ? uniform(0.5 - a.translate, 0.5 + a.translate) : 0.5
        let offX = (tx - k) * side, offY = (ty - k) * side
        var image = RGBImage(width: big, height: big, pixels: canvas).resampled(size: size, scale: k, offsetX: offX, offsetY: offY)
        var kept: [Box] = []
        for b in boxes {
            let x0 = b.x0 * k + offX, x1 = b.x1 * k + offX, y0 = b.y0 * k + offY, y1 = b.y1 * k + offY
            let c = Box(x0: Swift.max(0, x0), y0: Swift.max(0, y0), x1: Swift.min(side, x1), y1: Swift.min(side, y1), classIndex: b.classIndex)
            let area = (c.x1 - c.x0) * (c.y1 - c.y0), before = (x1 - x0) * (y1 - y0)
            if c.x1 - c.x0 >= 2, c.y1 - c.y0 >= 2, area >= 0.1 * before { kept.append(c) }
        }
        if flipAndColour(&image, &g) { kept = kept.map { Box(x0: side - $0.x1, y0: $0.y0, x1: side - $0.x0, y1: $0.y1, classIndex: $0.classIndex) } }
        return (image, kept)
    }

    /// Batch without a training epoch (evaluation): epoch 0's draws.
    public func batch(_ indices: [Int]) throws -> Batch { try batch(indices, epoch: 0) }

    /// The images `indices` letterboxed and augmented as drawn for `epoch`, and their targets.
    public func batch(_ indices: [Int], epoch: Int) throws -> Batch {
        var images: [Tensor] = []
        var targets = [Float](repeating: -1, count: indices.count * maxBoxes * 5)
        for (i, index) in indices.enumerated() {
            let (image, boxes) = example(index, epoch: epoch)
            images.append(image.tensor())
            for (j, b) in boxes.prefix(maxBoxes).enumerated() {
                let o = (i * maxBoxes + j) * 5
                targets[o] = Float(b.classIndex)
                targets[o + 1] = Float((b.x0 + b.x1) / 2)
                targets[o + 2] = Float((b.y0 + b.y1) / 2)
                targets[o + 3] = Float(b.x1 - b.x0)
                targets[o + 4] = Float(b.y1 - b.y0)
            }
        }
        return Batch(
            inputs: withoutGrad { Tensor.stack(images) },
            targets: Tensor(shape: [indices.count, maxBoxes, 5], scalars: targets), indices: indices)
    }

    /// The ground-truth boxes of a batch's targets, per image.
    public static func truths(_ targets: Tensor) -> [[Box]] {
        let t = targets.scalars, n = targets.shape[0], m = targets.shape[1]
        return (0..<n).map { i in
            (0..<m).compactMap { j in
                let o = (i * m + j) * 5
                guard t[o] >= 0 else { return nil }
                let (cx, cy, w, h) = (Double(t[o + 1]), Double(t[o + 2]), Double(t[o + 3]), Double(t[o + 4]))
                return Box(x0: cx - w / 2, y0: cy - h / 2, x1: cx + w / 2, y1: cy + h / 2, classIndex: Int(t[o]))
            }
        }
    }

    /// mAP@0.5 and mAP@0.5:0.95 of `model` on this dataset (its images letterboxed, not
    /// augmented; detections above confidence 0.001, NMS at IoU 0.6), and with `loss` the mean
    /// of its total over the batches.
    public func evaluate(_ model: YOLODetector, loss: YOLOLoss? = nil, batchSize: Int = 32) throws
        -> (map50: Double, map50to95: Double, loss: Double?)
    {
        try Self.evaluate(model, on: self, loss: loss, batchSize: batchSize)
    }

    /// The same over any dataset of images and YOLO targets (`batch` gives the inputs and
    /// the `[n, 6]` targets this type makes).
    public static func evaluate(_ model: YOLODetector, on data: any Dataset, loss: YOLOLoss? = nil, batchSize: Int = 32) throws
        -> (map50: Double, map50to95: Double, loss: Double?)
    {
        var predictions: [[Box]] = [], truths: [[Box]] = []
        var lossSum = 0.0, batches = 0
        for start in stride(from: 0, to: data.count, by: batchSize) {
            let b = try data.batch(Array(start..<Swift.min(data.count, start + batchSize)))
            let outputs = model.inferring { model(b.inputs) }
            if let loss { lossSum += Double(loss(outputs, targets: b.targets).total.item) }
            batches += 1
            predictions += model.decode(outputs, confidence: 0.001, iou: 0.6)
            truths += Self.truths(b.targets)
        }
        let r = DetectionMetrics.meanAveragePrecision(predictions: predictions, truths: truths, classes: model.classes)
        return (r.map50, r.map50to95, loss == nil ? nil : lossSum / Double(Swift.max(1, batches)))
    }
}
