import Foundation
import GradGuardNN
import GradGuardOptim
import GradGuardTensor

/// Convolution (no bias), BatchNorm, SiLU: the building block of the YOLO family.
public final class ConvBNSiLU: Module, UnaryLayer {
    public var conv: Conv2d
    public var bn: BatchNorm2d

    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int = 3, stride: Int = 1) {
        conv = Conv2d(inChannels, outChannels, kernelSize: kernel, stride: stride, padding: kernel / 2, bias: false)
        // Ultralytics' BatchNorm settings: eps 1e-3, momentum 0.03.
        bn = BatchNorm2d(numFeatures: outChannels, eps: 1e-3, momentum: 0.03)
        super.init()
    }

    public func forward(_ x: Tensor) -> Tensor { bn(conv(x)).silu() }
}

/// A small YOLO-style, anchor-free detector: a Conv-BN-SiLU backbone to strides 8 and 16,
/// a light feature-pyramid neck (top-down, then bottom-up as PANet) and a 1×1 head per
/// scale predicting, for every cell, 4 box values, objectness and one logit per class.
///
/// Box decoding follows YOLOv5: centre = (cell + 2σ(t) − 0.5)·stride, side =
/// (2σ(t))²·4·stride (so at most 16 strides, bounded and stable).
public final class YOLODetector: Module {
    public let classes: Int
    public let strides = [8, 16]
    public var backbone: [ConvBNSiLU]
    public var lateral: ConvBNSiLU
    public var fuse3: ConvBNSiLU
    public var down: ConvBNSiLU
    public var fuse4: ConvBNSiLU
    public var heads: [Conv2d]

    /// `width`: channels of the first layer (the deeper ones are 2, 4 and 8 times that).
    public init(classes: Int, width: Int = 16, imageSize: Int = 128) {
        self.classes = classes
        let w = width
        backbone = [
            ConvBNSiLU(3, w, stride: 2), ConvBNSiLU(w, 2 * w, stride: 2), ConvBNSiLU(2 * w, 2 * w),
            ConvBNSiLU(2 * w, 4 * w, stride: 2), ConvBNSiLU(4 * w, 4 * w),  // stride 8: P3
            ConvBNSiLU(4 * w, 8 * w, stride: 2), ConvBNSiLU(8 * w, 8 * w)
        ]  // stride 16: P4
        lateral = ConvBNSiLU(8 * w, 4 * w, kernel: 1)
        fuse3 = ConvBNSiLU(8 * w, 4 * w)
        down = ConvBNSiLU(4 * w, 4 * w, stride: 2)
        fuse4 = ConvBNSiLU(8 * w, 8 * w)
        heads = [Conv2d(4 * w, 5 + classes, kernelSize: 1), Conv2d(8 * w, 5 + classes, kernelSize: 1)]
        super.init()
        // Prior biases (YOLOv5's initialize_biases): about 8 objects per 640² image for
        // objectness, 0.6 / classes for the class logits.
        for (head, stride) in zip(heads, strides) {
            head.bias!.withUnsafeMutableScalars { b in
                b[4] = Float(Foundation.log(8 / Foundation.pow(Double(imageSize) / Double(stride), 2)))
                for c in 0..<classes { b[5 + c] = Float(Foundation.log(0.6 / (Double(classes) - 0.99))) }
            }
        }
    }

    /// `[B, 3, S, S]` images in [0, 1] → one `[B, 5 + classes, S/stride, S/stride]` map per stride.
    public func callAsFunction(_ x: Tensor) -> [Tensor] {
        var h = x
        var p3 = x
        for (i, layer) in backbone.enumerated() {
            h = layer(h)
            if i == 4 { p3 = h }
        }
        let l4 = lateral(h)
        let n3 = fuse3(Tensor.concatenate([l4.upsampleNearest(scale: (2, 2)), p3], axis: 1))
        let n4 = fuse4(Tensor.concatenate([down(n3), l4], axis: 1))
        return [heads[0](n3), heads[1](n4)]
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

    /// Detections of every image of a batch in the `S`×`S` input's pixels: cells whose
    /// σ(objectness)·σ(class) exceeds `confidence`, then per-class NMS at `iou`.
    public func detect(_ images: Tensor, confidence: Double = 0.001, iou: Double = 0.6, maxDetections: Int = 300) -> [[Box]] {
        let outputs = inferring { self(images) }
        return Self.decode(outputs, strides: strides, classes: classes, confidence: confidence, iou: iou, maxDetections: maxDetections)
    }

    static func sigmoid(_ v: Float) -> Double { 1 / (1 + Foundation.exp(-Double(v))) }

    /// Boxes of raw head outputs (see `detect`).
    public static func decode(
        _ outputs: [Tensor], strides: [Int], classes: Int, confidence: Double, iou: Double,
        maxDetections: Int = 300
    ) -> [[Box]] {
        let batch = outputs[0].shape[0]
        var result = [[Box]](repeating: [], count: batch)
        for b in 0..<batch {
            var candidates: [Box] = []
            for (out, stride) in zip(outputs, strides) {
                let h = out.shape[2], w = out.shape[3], plane = h * w, channels = 5 + classes
                let v = out.scalars
                let base = b * channels * plane
                let s = Double(stride)
                for y in 0..<h {
                    for x in 0..<w {
                        let cell = y * w + x
                        let obj = sigmoid(v[base + 4 * plane + cell])
                        if obj < confidence { continue }
                        let cx = (Double(x) + 2 * sigmoid(v[base + cell]) - 0.5) * s
                        let cy = (Double(y) + 2 * sigmoid(v[base + plane + cell]) - 0.5) * s
                        let bw = Foundation.pow(2 * sigmoid(v[base + 2 * plane + cell]), 2) * 4 * s
                        let bh = Foundation.pow(2 * sigmoid(v[base + 3 * plane + cell]), 2) * 4 * s
                        for c in 0..<classes {
                            let score = obj * sigmoid(v[base + (5 + c) * plane + cell])
                            if score >= confidence {
                                candidates.append(Box(x0: cx - bw / 2, y0: cy - bh / 2, x1: cx + bw / 2, y1: cy + bh / 2, classIndex: c, score: score))
                            }
                        }
                    }
                }
            }
            result[b] = DetectionMetrics.nms(candidates, iouThreshold: iou, maxDetections: maxDetections)
        }
        return result
    }
}
