import Foundation
import GradGuardNN
import GradGuardOptim
import GradGuardTensor

/// Convolution (no bias), BatchNorm, SiLU: the building block of the YOLO family.
public final class ConvBNSiLU: Module, UnaryLayer {
    /// The convolution (no bias).
    public var conv: Conv2d
    /// The batch normalisation after it.
    public var bn: BatchNorm2d

    /// A `kernel`×`kernel` convolution with stride `stride` and padding that keeps the size (at stride 1).
    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int = 3, stride: Int = 1) {
        conv = Conv2d(inChannels, outChannels, kernelSize: kernel, stride: stride, padding: kernel / 2, bias: false)
        // Ultralytics' BatchNorm settings: eps 1e-3, momentum 0.03.
        bn = BatchNorm2d(numFeatures: outChannels, eps: 1e-3, momentum: 0.03)
        super.init()
    }

    /// SiLU(BN(conv(x))).
    public func forward(_ x: Tensor) -> Tensor { bn(conv(x)).silu() }
}

/// YOLOv8's C2f block (Ultralytics' `C2f`): a 1×1 convolution to twice the hidden width,
/// split in two halves; `n` bottlenecks (two 3×3 convolutions, with a residual when
/// `shortcut`) each take the last output; every piece is concatenated and mixed by a 1×1
/// convolution.
public final class C2f: Module, UnaryLayer {
    /// The 1×1 convolution to twice the hidden width.
    public var cv1: ConvBNSiLU
    /// The 1×1 convolution mixing every piece.
    public var cv2: ConvBNSiLU
    /// The bottlenecks.
    public var m: [Bottleneck]
    let hidden: Int

    /// A C2f block with `n` bottlenecks.
    public init(_ inChannels: Int, _ outChannels: Int, n: Int = 1, shortcut: Bool = false) {
        hidden = outChannels / 2
        cv1 = ConvBNSiLU(inChannels, 2 * hidden, kernel: 1)
        cv2 = ConvBNSiLU((2 + n) * hidden, outChannels, kernel: 1)
        m = (0..<n).map { _ in Bottleneck(outChannels / 2, shortcut: shortcut) }
        super.init()
    }

    /// The block on `[B, inChannels, H, W]`.
    public func forward(_ x: Tensor) -> Tensor {
        let y = cv1(x)
        var pieces = [y.narrow(axis: 1, start: 0, length: hidden), y.narrow(axis: 1, start: hidden, length: hidden)]
        for b in m { pieces.append(b(pieces[pieces.count - 1])) }
        return cv2(Tensor.concatenate(pieces, axis: 1))
    }
}

/// Two 3×3 Conv-BN-SiLU layers of the same width, added to their input when `shortcut`.
public final class Bottleneck: Module, UnaryLayer {
    /// The first 3×3 convolution.
    public var cv1: ConvBNSiLU
    /// The second 3×3 convolution.
    public var cv2: ConvBNSiLU
    let shortcut: Bool

    /// A bottleneck of `channels`, residual when `shortcut`.
    public init(_ channels: Int, shortcut: Bool) {
        cv1 = ConvBNSiLU(channels, channels)
        cv2 = ConvBNSiLU(channels, channels)
        self.shortcut = shortcut
        super.init()
    }

    /// The two convolutions, plus the input when `shortcut`.
    public func forward(_ x: Tensor) -> Tensor { shortcut ? x + cv2(cv1(x)) : cv2(cv1(x)) }
}

/// Spatial pyramid pooling, fast (YOLOv5/v8's `SPPF`): halve the channels, max-pool 5×5
/// three times in a row, concatenate the four and mix them back by a 1×1 convolution.
public final class SPPF: Module, UnaryLayer {
    /// The 1×1 convolution halving the channels.
    public var cv1: ConvBNSiLU
    /// The 1×1 convolution mixing the four pooled maps.
    public var cv2: ConvBNSiLU

    /// SPPF over `channels`.
    public init(_ channels: Int) {
        cv1 = ConvBNSiLU(channels, channels / 2, kernel: 1)
        cv2 = ConvBNSiLU(channels / 2 * 4, channels, kernel: 1)
        super.init()
    }

    /// The pooled pyramid mixed back to `channels`.
    public func forward(_ x: Tensor) -> Tensor {
        var pieces = [cv1(x)]
        for _ in 0..<3 { pieces.append(pieces[pieces.count - 1].maxPool2d(kernel: (5, 5), stride: (1, 1), padding: (2, 2))) }
        return cv2(Tensor.concatenate(pieces, axis: 1))
    }
}

/// YOLOv8's decoupled head for one scale (Ultralytics' `Detect`): a box branch ending in
/// 4 × `regMax` logits (a distribution over distances, in strides, for each side of the box)
/// and a class branch ending in one logit per class; `[B, 4·regMax + classes, H, W]`.
public final class DecoupledHead: Module, UnaryLayer {
    /// The box branch's two 3×3 convolutions.
    public var box: [ConvBNSiLU]
    /// The box branch's 1×1 output, 4·regMax channels.
    public var boxOut: Conv2d
    /// The class branch's two 3×3 convolutions.
    public var cls: [ConvBNSiLU]
    /// The class branch's 1×1 output, one channel per class.
    public var clsOut: Conv2d

    /// A head on `channels`-wide features, branches `boxWidth` and `classWidth` wide.
    public init(_ channels: Int, boxWidth: Int, classWidth: Int, classes: Int, regMax: Int) {
        box = [ConvBNSiLU(channels, boxWidth), ConvBNSiLU(boxWidth, boxWidth)]
        boxOut = Conv2d(boxWidth, 4 * regMax, kernelSize: 1)
        cls = [ConvBNSiLU(channels, classWidth), ConvBNSiLU(classWidth, classWidth)]
        clsOut = Conv2d(classWidth, classes, kernelSize: 1)
        super.init()
    }

    /// The box and class logits, concatenated over channels.
    public func forward(_ x: Tensor) -> Tensor {
        Tensor.concatenate([boxOut(box[1](box[0](x))), clsOut(cls[1](cls[0](x)))], axis: 1)
    }
}

/// A small YOLO-style, anchor-free detector: a Conv-BN-SiLU backbone to strides 8 and 16
/// (and 32 with `scales` 3), a feature-pyramid neck (top-down, then bottom-up as PANet) and
/// a head per scale.
///
/// - `head` coupled (YOLOv5's): a 1×1 convolution predicting, for every cell, 4 box values,
///   objectness and one logit per class; centre = (cell + 2σ(t) − 0.5)·stride, side =
///   (2σ(t))²·4·stride (at most 16 strides, bounded and stable).
/// - `head` decoupled (YOLOv8's): `DecoupledHead`; each side of a box is the expected value
///   of a distribution over `regMax` bins, in strides from the cell's centre.
/// - `block` conv: one 3×3 Conv-BN-SiLU after each downsampling and in the neck; c2f:
///   YOLOv8n's C2f blocks (1, 2, 2, 1 bottlenecks in the backbone, 1 in the neck) and SPPF.
public final class YOLODetector: Module {
    /// The number of classes.
    public let classes: Int
    /// The strides of the output scales (8, 16 and 32 with three scales).
    public let strides: [Int]
    /// Coupled (YOLOv5's) or decoupled (YOLOv8's) head.
    public let head: DetectorHead
    /// Plain Conv-BN-SiLU or C2f blocks.
    public let block: DetectorBlock
    /// Bins of a box side's distribution (decoupled head).
    public let regMax: Int
    /// The backbone's stages, input to stride 16 (or 32).
    public var backbone: [any UnaryLayer]
    /// Two scales: the 1×1 convolution taking stride 16 to the width of stride 8.
    public var lateral: ConvBNSiLU?
    /// Three scales: stride 32 upsampled and fused with stride 16.
    public var top4: (any UnaryLayer)?
    /// The block fusing the upsampled deep features with stride 8's.
    public var fuse3: any UnaryLayer
    /// The stride-2 convolution of the bottom-up path, stride 8 to 16.
    public var down: ConvBNSiLU
    /// The block fusing the bottom-up features with stride 16's.
    public var fuse4: any UnaryLayer
    /// Three scales: the bottom-up path to stride 32.
    public var down5: ConvBNSiLU?
    /// Three scales: the block fusing the bottom-up features with stride 32's.
    public var fuse5: (any UnaryLayer)?
    /// The coupled head's 1×1 convolutions (empty for the decoupled head).
    public var heads: [Conv2d]
    /// The decoupled head of every scale (empty for the coupled head).
    public var decoupled: [DecoupledHead]

    /// `width`: channels of the first layer (the deeper ones are 2, 4, 8 and 16 times that).
    public init(
        classes: Int, width: Int = 16, imageSize: Int = 128, head: DetectorHead = .coupled, scales: Int = 2,
        block: DetectorBlock = .conv, regMax: Int = 16
    ) {
        require(scales == 2 || scales == 3, "YOLODetector: 2 or 3 scales, got \(scales)")
        self.classes = classes
        self.head = head
        self.block = block
        self.regMax = regMax
        strides = scales == 3 ? [8, 16, 32] : [8, 16]
        let w = width
        func stage(_ cin: Int, _ cout: Int, n: Int, shortcut: Bool) -> any UnaryLayer {
            block == .conv ? ConvBNSiLU(cin, cout) : C2f(cin, cout, n: n, shortcut: shortcut)
        }
        var layers: [any UnaryLayer] = [
            ConvBNSiLU(3, w, stride: 2), ConvBNSiLU(w, 2 * w, stride: 2), stage(2 * w, 2 * w, n: 1, shortcut: true),
            ConvBNSiLU(2 * w, 4 * w, stride: 2), stage(4 * w, 4 * w, n: 2, shortcut: true),  // stride 8: P3
            ConvBNSiLU(4 * w, 8 * w, stride: 2), stage(8 * w, 8 * w, n: 2, shortcut: true)  // stride 16: P4
        ]
        let channels: [Int]
        if scales == 3 {
            layers += [ConvBNSiLU(8 * w, 16 * w, stride: 2), stage(16 * w, 16 * w, n: 1, shortcut: true)]  // stride 32: P5
            if block == .c2f { layers.append(SPPF(16 * w)) }
            top4 = stage(24 * w, 8 * w, n: 1, shortcut: false)
            fuse3 = stage(12 * w, 4 * w, n: 1, shortcut: false)
            down = ConvBNSiLU(4 * w, 4 * w, stride: 2)
            fuse4 = stage(12 * w, 8 * w, n: 1, shortcut: false)
            down5 = ConvBNSiLU(8 * w, 8 * w, stride: 2)
            fuse5 = stage(24 * w, 16 * w, n: 1, shortcut: false)
            channels = [4 * w, 8 * w, 16 * w]
        } else {
            lateral = ConvBNSiLU(8 * w, 4 * w, kernel: 1)
            fuse3 = stage(8 * w, 4 * w, n: 1, shortcut: false)
            down = ConvBNSiLU(4 * w, 4 * w, stride: 2)
            fuse4 = stage(8 * w, 8 * w, n: 1, shortcut: false)
            channels = [4 * w, 8 * w]
        }
        backbone = layers
        switch head {
        case .coupled:
            heads = channels.map { Conv2d($0, 5 + classes, kernelSize: 1) }
            decoupled = []
        case .decoupled:
            // Ultralytics' Detect: c2 = max(16, ch₀/4, 4·reg_max), c3 = max(ch₀, min(classes, 100)).
            let boxWidth = Swift.max(16, channels[0] / 4, 4 * regMax), classWidth = Swift.max(channels[0], Swift.min(classes, 100))
            heads = []
            decoupled = channels.map { DecoupledHead($0, boxWidth: boxWidth, classWidth: classWidth, classes: classes, regMax: regMax) }
        }
        super.init()
        let area = { (stride: Int) in Foundation.pow(Double(imageSize) / Double(stride), 2) }
        // Prior biases. Coupled (YOLOv5's initialize_biases): about 8 objects per 640² image
        // for objectness, 0.6 / classes for the class logits. Decoupled (YOLOv8's
        // Detect.bias_init): box logits 1, class logits about 5 objects per 640² image.
        for (k, stride) in strides.enumerated() {
            switch head {
            case .coupled:
                heads[k].bias!.withUnsafeMutableScalars { b in
                    b[4] = Float(Foundation.log(8 / area(stride)))
                    for c in 0..<classes { b[5 + c] = Float(Foundation.log(0.6 / (Double(classes) - 0.99))) }
                }
            case .decoupled:
                decoupled[k].boxOut.bias!.withUnsafeMutableScalars { b in for i in 0..<b.count { b[i] = 1 } }
                decoupled[k].clsOut.bias!.withUnsafeMutableScalars { b in
                    for c in 0..<classes { b[c] = Float(Foundation.log(5 / Double(classes) / area(stride))) }
                }
            }
        }
    }

    /// Channels of one scale's output map.
    public var outputChannels: Int { head == .coupled ? 5 + classes : 4 * regMax + classes }

    /// `[B, 3, S, S]` images in [0, 1] → one `[B, outputChannels, S/stride, S/stride]` map per stride.
    public func callAsFunction(_ x: Tensor) -> [Tensor] {
        var h = x
        var taps: [Tensor] = []
        for (i, layer) in backbone.enumerated() {
            h = layer(h)
            if i == 4 || i == 6 { taps.append(h) }
        }
        let features: [Tensor]
        if let top4, let down5, let fuse5 {
            let p3 = taps[0], p4 = taps[1], p5 = h
            let t4 = top4(Tensor.concatenate([p5.upsampleNearest(scale: (2, 2)), p4], axis: 1))
            let o3 = fuse3(Tensor.concatenate([t4.upsampleNearest(scale: (2, 2)), p3], axis: 1))
            let o4 = fuse4(Tensor.concatenate([down(o3), t4], axis: 1))
            let o5 = fuse5(Tensor.concatenate([down5(o4), p5], axis: 1))
            features = [o3, o4, o5]
        } else {
            let p3 = taps[0]
            let l4 = lateral.map { $0(h) } ?? h
            let n3 = fuse3(Tensor.concatenate([l4.upsampleNearest(scale: (2, 2)), p3], axis: 1))
            let n4 = fuse4(Tensor.concatenate([down(n3), l4], axis: 1))
            features = [n3, n4]
        }
        switch head {
        case .coupled: return zip(heads, features).map { $0($1) }
        case .decoupled: return zip(decoupled, features).map { $0($1) }
        }
    }

    /// The position of the biases' group in `parameterGroups` (Ultralytics' warm-up starts
    /// its rate at 0.1).
    public static let biasGroup = 2

    /// Parameter groups as Ultralytics builds them: BatchNorm weights without weight decay,
    /// weights of convolutions with it, all biases without (group `biasGroup`).
    public func parameterGroups(weightDecay: Double) -> [ParamGroup] {
        var decayed: [Tensor] = [], norms: [Tensor] = [], biases: [Tensor] = []
        for (name, p) in namedParameters() {
            if name.hasSuffix(".bias") { biases.append(p) } else if name.contains(".bn.") { norms.append(p) } else { decayed.append(p) }
        }
        var groups = [ParamGroup(params: norms, weightDecay: 0), ParamGroup(params: decayed, weightDecay: weightDecay)]
        groups.insert(ParamGroup(params: biases, weightDecay: 0), at: Self.biasGroup)
        return groups
    }

    // MARK: Decoding

    /// Detections of every image of a batch in the `S`×`S` input's pixels: for the coupled
    /// head, cells whose σ(objectness)·σ(class) exceeds `confidence`; for the decoupled head,
    /// cells whose σ(class) does; then per-class NMS at `iou`.
    public func detect(_ images: Tensor, confidence: Double = 0.001, iou: Double = 0.6, maxDetections: Int = 300) -> [[Box]] {
        let outputs = inferring { self(images) }
        return decode(outputs, confidence: confidence, iou: iou, maxDetections: maxDetections)
    }

    /// Boxes of this model's raw outputs (see `detect`).
    public func decode(_ outputs: [Tensor], confidence: Double, iou: Double, maxDetections: Int = 300) -> [[Box]] {
        switch head {
        case .coupled:
            return Self.decode(outputs, strides: strides, classes: classes, confidence: confidence, iou: iou, maxDetections: maxDetections)
        case .decoupled:
            return Self.decodeDistributions(
                outputs, strides: strides, classes: classes, regMax: regMax, confidence: confidence, iou: iou, maxDetections: maxDetections)
        }
    }

    static func sigmoid(_ v: Float) -> Double { 1 / (1 + Foundation.exp(-Double(v))) }

    /// One cell of one image in a raw output map.
    struct Cell {
        let values: [Float]
        let base, plane, x, y, index: Int
        let stride: Double
        /// The cell's value in `channel`.
        func at(_ channel: Int) -> Float { values[base + channel * plane + index] }
    }

    /// Every image's candidates from every cell of every scale (`candidates` adds a cell's),
    /// then per-class NMS at `iou`.
    static func decodeCells(_ outputs: [Tensor], strides: [Int], iou: Double, maxDetections: Int, _ candidates: (Cell, inout [Box]) -> Void) -> [[Box]] {
        let batch = outputs[0].shape[0]
        let values = outputs.map(\.scalars)
        var result = [[Box]](repeating: [], count: batch)
        for b in 0..<batch {
            var found: [Box] = []
            for (k, (out, stride)) in zip(outputs, strides).enumerated() {
                let h = out.shape[2], w = out.shape[3], plane = h * w, base = b * out.shape[1] * plane
                for y in 0..<h {
                    for x in 0..<w {
                        candidates(Cell(values: values[k], base: base, plane: plane, x: x, y: y, index: y * w + x, stride: Double(stride)), &found)
                    }
                }
            }
            result[b] = DetectionMetrics.nms(found, iouThreshold: iou, maxDetections: maxDetections)
        }
        return result
    }

    /// Boxes of the coupled head's raw outputs.
    public static func decode(
        _ outputs: [Tensor], strides: [Int], classes: Int, confidence: Double, iou: Double,
        maxDetections: Int = 300
    ) -> [[Box]] {
        decodeCells(outputs, strides: strides, iou: iou, maxDetections: maxDetections) { c, found in
            let obj = sigmoid(c.at(4))
            if obj < confidence { return }
            let s = c.stride
            let cx = (Double(c.x) + 2 * sigmoid(c.at(0)) - 0.5) * s, cy = (Double(c.y) + 2 * sigmoid(c.at(1)) - 0.5) * s
            let bw = Foundation.pow(2 * sigmoid(c.at(2)), 2) * 4 * s, bh = Foundation.pow(2 * sigmoid(c.at(3)), 2) * 4 * s
            for k in 0..<classes {
                let score = obj * sigmoid(c.at(5 + k))
                if score >= confidence { found.append(Box(x0: cx - bw / 2, y0: cy - bh / 2, x1: cx + bw / 2, y1: cy + bh / 2, classIndex: k, score: score)) }
            }
        }
    }

    /// The expected distance, in bins, of the distribution whose `regMax` logits start at
    /// `v[start]` and lie `step` apart.
    static func expectedDistance(_ v: [Float], start: Int, step: Int, regMax: Int) -> Double {
        var top = -Double.infinity
        for i in 0..<regMax { top = Swift.max(top, Double(v[start + i * step])) }
        var total = 0.0, weighted = 0.0
        for i in 0..<regMax {
            let e = Foundation.exp(Double(v[start + i * step]) - top)
            total += e
            weighted += e * Double(i)
        }
        return weighted / total
    }

    /// Boxes of the decoupled head's raw outputs: sides are the expected distances of their
    /// distributions, in strides from the cell's centre (Ultralytics' `dist2bbox`).
    public static func decodeDistributions(
        _ outputs: [Tensor], strides: [Int], classes: Int, regMax: Int, confidence: Double, iou: Double, maxDetections: Int = 300
    ) -> [[Box]] {
        decodeCells(outputs, strides: strides, iou: iou, maxDetections: maxDetections) { c, found in
            let scores = (0..<classes).map { sigmoid(c.at(4 * regMax + $0)) }
            guard let best = scores.max(), best >= confidence else { return }
            let d = (0..<4).map { expectedDistance(c.values, start: c.base + $0 * regMax * c.plane + c.index, step: c.plane, regMax: regMax) * c.stride }
            let px = (Double(c.x) + 0.5) * c.stride, py = (Double(c.y) + 0.5) * c.stride
            for k in 0..<classes where scores[k] >= confidence {
                found.append(Box(x0: px - d[0], y0: py - d[1], x1: px + d[2], y1: py + d[3], classIndex: k, score: scores[k]))
            }
        }
    }
}
