import Foundation
import GradGuard
import XCTest
import _TestSupport

/// YOLOv8's decoupled head, C2f blocks and the third scale in the detector, and their loss.
final class DecoupledHeadTests: XCTestCase {
    /// The n size with three scales, C2f blocks and the decoupled head is YOLOv8n: for three
    /// classes Ultralytics 8.4 counts 3,011,433 parameters (`YOLO("yolov8n.yaml")` trained on
    /// a three-class data.yaml), 16 of them the fixed weights 0…15 of its DFL convolution
    /// (the expected bin, computed here without a layer); one C2f(64, 64, n = 1) has
    /// 64·64 + 2·9·32·32 + 96·64 convolution weights and 2·(64 + 32 + 32 + 64) BatchNorm
    /// parameters.
    func testYOLOv8nHasUltralyticsParameterCount() {
        XCTAssertEqual(C2f(64, 64, n: 1, shortcut: true).parameters().reduce(0) { $0 + $1.count }, 64 * 64 + 2 * 9 * 32 * 32 + 96 * 64 + 2 * 192)
        let v8n = YOLODetector(classes: 3, width: 16, imageSize: 128, head: .decoupled, scales: 3, block: .c2f)
        XCTAssertEqual(v8n.parameters().reduce(0) { $0 + $1.count }, 3_011_433 - 16)
        XCTAssertEqual(v8n(Tensor.zeros([1, 3, 64, 64])).map(\.shape), [[1, 67, 8, 8], [1, 67, 4, 4], [1, 67, 2, 2]])
    }

    /// Every head, scale count and block builds, runs and sends gradients to every parameter;
    /// the original detector keeps its parameter names (older checkpoints load).
    func testEveryConfigurationTrainsEveryParameter() {
        let old = YOLODetector(classes: 2, width: 4, imageSize: 64)
        XCTAssertEqual(
            old.namedParameters().map(\.name).filter { !$0.hasPrefix("backbone") },
            [
                "lateral.conv.weight", "lateral.bn.weight", "lateral.bn.bias", "fuse3.conv.weight", "fuse3.bn.weight", "fuse3.bn.bias",
                "down.conv.weight", "down.bn.weight", "down.bn.bias", "fuse4.conv.weight", "fuse4.bn.weight", "fuse4.bn.bias",
                "heads.0.weight", "heads.0.bias", "heads.1.weight", "heads.1.bias"
            ])
        let targets = Tensor(shape: [2, 2, 5], scalars: [0, 20, 20, 10, 12, 1, 40, 36, 40, 40, 1, 30, 30, 44, 40, -1, 0, 0, 0, 0])
        for head in DetectorHead.allCases {
            for scales in [2, 3] {
                for block in DetectorBlock.allCases {
                    DefaultGenerator.seed(2)
                    let model = YOLODetector(classes: 2, width: 4, imageSize: 64, head: head, scales: scales, block: block)
                    let outputs = model(Tensor.rand([2, 3, 64, 64]))
                    XCTAssertEqual(outputs.map { $0.shape[1] }, Array(repeating: model.outputChannels, count: scales))
                    let parts = YOLOLoss(for: model, imageSize: 64)(outputs, targets: targets)
                    let name = "\(head) \(scales) \(block)"
                    XCTAssertTrue(parts.total.item.isFinite, name)
                    XCTAssertGreaterThan(parts.box.item, 0, name)
                    XCTAssertGreaterThan(parts.classes.item, 0, name)
                    XCTAssertEqual(parts.dfl.item > 0, head == .decoupled, name)
                    parts.total.backward()
                    XCTAssertEqual(model.parameters().filter { $0.grad == nil }.count, 0, name)
                }
            }
        }
    }

    /// The decoupled head's loss against Ultralytics' own `v8DetectionLoss` (8.4) on fixed
    /// head outputs and targets (Scripts/make_detector_loss_fixture.py): the box (CIoU), class
    /// (BCE) and DFL parts, each with its gain and × batch, and the gradient of their sum with
    /// respect to every output. Tolerances: float32 sums over 2 × 84 cells, and the assigner's
    /// top-k ties broken in the same order.
    func testLossMatchesUltralyticsV8DetectionLoss() throws {
        let f = try fixture("detector_loss.safetensors")
        let outputs = try (0..<3).map { k -> Tensor in
            let t = try f.at("out\(k)")
            return Tensor(shape: t.shape, scalars: t.scalars, requiresGrad: true)
        }
        var loss = YOLOLoss(classes: 3, imageSize: 64, head: .decoupled, strides: [8, 16, 32])
        loss.box = .ciou
        loss.boxGain = 7.5
        let parts = loss(outputs, targets: try f.at("targets"))
        XCTAssertEqual(parts.box.item, try f.at("box").item, accuracy: 1e-4 * (try f.at("box").item))
        XCTAssertEqual(parts.classes.item, try f.at("cls").item, accuracy: 1e-4 * (try f.at("cls").item))
        XCTAssertEqual(parts.dfl.item, try f.at("dfl").item, accuracy: 1e-4 * (try f.at("dfl").item))
        parts.total.backward()
        for k in 0..<3 {
            assertClose(try XCTUnwrap(outputs[k].grad), try f.at("grad\(k)"), rtol: 1e-3, atol: 1e-5, "scale \(k)")
        }
    }

    /// Decoding the decoupled head by hand: a side's distribution peaked on bin 2 (logit 30,
    /// the rest 0) is 2 strides long; the class probability is σ(logit).
    func testDecodingDistributionsByHand() {
        let r = 4, classes = 2, channels = 4 * r + classes
        var v = [Float](repeating: 0, count: channels * 4)  // one image, a 2×2 map at stride 8
        let cell = 3  // x 1, y 1: centre (12, 12)
        for side in 0..<4 { v[(side * r + 2) * 4 + cell] = 30 }
        v[(4 * r + 1) * 4 + cell] = 2  // class 1
        for other in 0..<3 { for c in 0..<classes { v[(4 * r + c) * 4 + other] = -20 } }
        v[(4 * r) * 4 + cell] = -20
        let boxes = YOLODetector.decodeDistributions(
            [Tensor(shape: [1, channels, 2, 2], scalars: v)], strides: [8], classes: classes, regMax: r, confidence: 0.25, iou: 0.6)
        XCTAssertEqual(boxes[0].count, 1)
        let b = boxes[0][0]
        XCTAssertEqual(b.classIndex, 1)
        XCTAssertEqual(b.score, 1 / (1 + Foundation.exp(-2.0)), accuracy: 1e-9)
        for (got, want) in [(b.x0, 12.0 - 16), (b.y0, 12.0 - 16), (b.x1, 12.0 + 16), (b.y1, 12.0 + 16)] { XCTAssertEqual(got, want, accuracy: 1e-6) }
    }

    /// With nothing to find, the decoupled loss is the class term alone: BCE against zeros
    /// over every cell, summed and divided by max(Σ targets, 1) = 1, × 0.5 × batch.
    func testEmptyImagesLeaveOnlyTheClassTerm() {
        DefaultGenerator.seed(3)
        let model = YOLODetector(classes: 2, width: 4, imageSize: 64, head: .decoupled)
        let outputs = model(Tensor.rand([2, 3, 64, 64]))
        let parts = YOLOLoss(for: model, imageSize: 64)(outputs, targets: Tensor.full([2, 1, 5], -1))
        XCTAssertEqual(parts.box.item, 0)
        XCTAssertEqual(parts.dfl.item, 0)
        var bce = 0.0
        for out in outputs {
            let v = out.scalars, plane = out.shape[2] * out.shape[3], channels = out.shape[1]
            for b in 0..<2 {
                for c in 0..<2 {
                    for p in 0..<plane {
                        let x = Double(v[(b * channels + 4 * 16 + c) * plane + p])
                        bce += Swift.max(x, 0) + Foundation.log(1 + Foundation.exp(-Swift.abs(x)))
                    }
                }
            }
        }
        XCTAssertEqual(Double(parts.classes.item), bce * 0.5 * 2, accuracy: bce * 1e-5)
    }
}
