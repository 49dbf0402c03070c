import Foundation
import GradGuard
import XCTest
import _TestSupport

final class DetectionTests: TemporaryDirectoryTestCase {
    // MARK: Images

    func testPNGAndJPEGRoundTripsAndCorruptFilesAreNamed() throws {
        var image = RGBImage(width: 5, height: 3, fill: (10, 20, 30))
        image[4, 2] = (250, 0, 128)
        try image.write(path: tmp + "/a.png")
        XCTAssertEqual(try RGBImage.read(path: tmp + "/a.png"), image, "PNG is lossless")
        let flat = RGBImage(width: 16, height: 16, fill: (200, 100, 50))
        try flat.write(path: tmp + "/b.jpg", jpegQuality: 95)
        let back = try RGBImage.read(path: tmp + "/b.jpg")
        XCTAssertEqual(back.width, 16)
        XCTAssertLessThanOrEqual(zip(back.pixels, flat.pixels).map { abs(Int($0) - Int($1)) }.max()!, 3, "JPEG of a flat colour is near exact")
        // Truncated JPEG and PNG, not an image, missing.
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: tmp + "/b.jpg"))
        try jpeg.prefix(40).write(to: URL(fileURLWithPath: tmp + "/cut.jpg"))
        XCTAssertThrowsError(try RGBImage.read(path: tmp + "/cut.jpg")) { XCTAssertTrue("\($0)".hasPrefix(tmp + "/cut.jpg: corrupt image: "), "\($0)") }
        let png = try Data(contentsOf: URL(fileURLWithPath: tmp + "/a.png"))
        try png.prefix(30).write(to: URL(fileURLWithPath: tmp + "/cut.png"))
        XCTAssertThrowsError(try RGBImage.read(path: tmp + "/cut.png")) { XCTAssertTrue("\($0)".hasPrefix(tmp + "/cut.png: corrupt image: "), "\($0)") }
        try Data("hello".utf8).write(to: URL(fileURLWithPath: tmp + "/t.png"))
        XCTAssertThrowsError(try RGBImage.read(path: tmp + "/t.png")) { XCTAssertEqual("\($0)", tmp + "/t.png: not a PNG or JPEG image") }
        XCTAssertThrowsError(try RGBImage.read(path: tmp + "/none.png")) { XCTAssertEqual("\($0)", tmp + "/none.png: cannot read the image: no such file") }
    }

    /// A CMYK JPEG (Adobe's, inks inverted, as Pillow and Photoshop write them) decodes to
    /// the RGB Pillow's `convert("RGB")` gives: (215, 215, 0) first, (38, 63, 177) last.
    func testCMYKJPEGDecodesAsPillowConvertsIt() throws {
        let image = try RGBImage.read(path: fixturePath("cmyk.jpg"))
        XCTAssertEqual([image.width, image.height], [8, 4])
        let first = Array(image.pixels[0..<3]).map(Int.init), last = Array(image.pixels.suffix(3)).map(Int.init)
        for (got, want) in zip(first + last, [215, 215, 0, 38, 63, 177]) { XCTAssertEqual(Double(got), Double(want), accuracy: 2, "\(first) \(last)") }
    }

    func testLetterboxFlipAndHSV() {
        var image = RGBImage(width: 4, height: 2, fill: (0, 0, 0))
        image[0, 0] = (255, 255, 255)
        let (box, scale, ox, oy) = image.letterbox(size: 8)
        XCTAssertEqual(scale, 2)
        XCTAssertEqual(ox, 0)
        XCTAssertEqual(oy, 2)
        XCTAssertTrue(box[0, 0] == (114, 114, 114) && box[7, 7] == (114, 114, 114), "padding is grey 114")
        XCTAssertTrue(box[0, 2] == (255, 255, 255) && box[7, 5] == (0, 0, 0), "the image fills rows 2 … 5")
        XCTAssertTrue(image.flippedHorizontally()[3, 0] == (255, 255, 255))
        var red = RGBImage(width: 1, height: 1, fill: (200, 50, 50))
        XCTAssertTrue(red.hsvAdjusted(hue: 1, saturation: 1, value: 1)[0, 0] == (200, 50, 50), "unit gains change nothing")
        red = red.hsvAdjusted(hue: 1, saturation: 0, value: 0.5)
        XCTAssertTrue(red[0, 0] == (100, 100, 100), "no saturation: grey at half the value")
    }

    /// A whole-pixel shift at scale 1 (an image already at the input size) copies pixels:
    /// each output pixel is the input pixel it lands on, or the grey fill.
    func testWholePixelShiftCopiesPixels() {
        let pixels = (0..<(7 * 5 * 3)).map { UInt8(($0 * 37) % 251) }
        let image = RGBImage(width: 7, height: 5, pixels: pixels)
        for (ox, oy) in [(0, 0), (1, 2), (-2, 0), (3, -1), (20, 0), (0, -9)] {
            let out = image.resampled(size: 9, scale: 1, offsetX: Double(ox), offsetY: Double(oy))
            for v in 0..<9 {
                for u in 0..<9 {
                    let (x, y) = (u - ox, v - oy)
                    let inside = x >= 0 && x < 7 && y >= 0 && y < 5
                    for k in 0..<3 {
                        XCTAssertEqual(out.pixels[(v * 9 + u) * 3 + k], inside ? pixels[(y * 7 + x) * 3 + k] : 114, "offset \(ox),\(oy) at \(u),\(v)")
                    }
                }
            }
        }
    }

    // MARK: Dataset layout and its errors

    func writeDataset(labels: [String: String], images: [String], yaml: String? = nil) throws -> String {
        let root = tmp + "/data"
        for d in ["images/train", "labels/train", "images/val", "labels/val"] {
            try FileManager.default.createDirectory(atPath: root + "/" + d, withIntermediateDirectories: true)
        }
        for name in images { try RGBImage(width: 20, height: 10, fill: (1, 2, 3)).write(path: root + "/images/train/" + name) }
        try RGBImage(width: 8, height: 8).write(path: root + "/images/val/v.png")
        for (name, text) in labels { try text.write(toFile: root + "/labels/train/" + name, atomically: true, encoding: .utf8) }
        try (yaml ?? "path: .\ntrain: images/train\nval: images/val\nnames: [circle, square]\n")
            .write(toFile: root + "/data.yaml", atomically: true, encoding: .utf8)
        return root + "/data.yaml"
    }

    func testLabelsAndEveryMalformedCaseAreReportedByFileAndLine() throws {
        let bad = """
            0 0.5 0.5 0.2 0.4
            1 0.5 0.5 0.2
            x 0.5 0.5 0.2 0.2
            2 0.5 0.5 0.2 0.2
            0 0.95 0.5 0.2 0.2
            1 0.5 0.5 0 0.2
            1.5 0.5 0.5 0.1 0.1
            0 0.5 0.5 0.2 0.4

            """
        let yaml = try writeDataset(
            labels: ["a.txt": bad, "b.txt": "1 0.25 0.5 0.5 1\n", "orphan.txt": "0 0.5 0.5 0.1 0.1\n"],
            images: ["a.png", "b.jpg", "c.png"])
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: tmp + "/data/images/train/d.png"))
        let config = try DetectionDataConfig.load(path: yaml)
        XCTAssertEqual(config.names, ["circle", "square"])
        let split = try DetectionSplit.load(config, split: "train", policy: .skip)
        let a = tmp + "/data/labels/train/a.txt"
        XCTAssertEqual(
            split.issues.map(\.description),
            [
                tmp + "/data/labels/train/orphan.txt: no image for this label file in \(tmp)/data/images/train",
                "\(a):2: expected 5 values 'class cx cy w h', found 4",
                "\(a):3: 'x' is not a number",
                "\(a):4: class 2 is out of range: data.yaml names 2 classes (0 … 1)",
                "\(a):5: box outside the image: x from 0.85 to 1.05, y from 0.4 to 0.6 (normalised coordinates lie in 0 … 1)",
                "\(a):6: width and height must be positive, got 0 and 0.2",
                "\(a):7: class '1.5' is not an integer",
                "\(a):8: duplicate of an earlier line",
                tmp + "/data/images/train/d.png: not a PNG or JPEG image"
            ])
        XCTAssertEqual(split.samples.map { ($0.imagePath as NSString).lastPathComponent }, ["a.png", "b.jpg", "c.png"])
        XCTAssertEqual(split.samples[0].boxes, [BoxLabel(classIndex: 0, cx: 0.5, cy: 0.5, w: 0.2, h: 0.4)])
        XCTAssertEqual(split.samples[1].boxes.count, 1)
        XCTAssertEqual(split.samples[2].boxes, [], "an image without a label file has no objects")
        XCTAssertThrowsError(try DetectionSplit.load(config, split: "train", policy: .fail)) {
            guard case DetectionDataError.invalid(let issues) = $0 else { return XCTFail("\($0)") }
            XCTAssertEqual(issues.count, 9)
            XCTAssertTrue("\($0)".hasPrefix("9 problems in the dataset:\n  \(tmp)/data/labels/train/orphan.txt"), "\($0)")
        }
    }

    func testHugeClassNumbersNonUTF8LabelsAndManyBoxes() throws {
        var issues: [DataIssue] = []
        // A class number beyond Int's range was converted before the range check (a trap).
        let boxes = DetectionSplit.parseLabels("99999999999999999999999 0.5 0.5 0.2 0.2\n-1e300 0.5 0.5 0.2 0.2\n", file: "l.txt", classes: 3, issues: &issues)
        XCTAssertEqual(boxes, [])
        XCTAssertEqual(
            issues.map(\.description),
            [
                "l.txt:1: class 99999999999999999999999 is out of range: data.yaml names 3 classes (0 … 2)",
                "l.txt:2: class -1e300 is out of range: data.yaml names 3 classes (0 … 2)"
            ])
        // A label file that is not UTF-8 is a problem, not "no objects".
        let yaml = try writeDataset(labels: ["a.txt": "0 0.5 0.5 0.2 0.4\n"], images: ["a.png", "b.png"])
        try Data([0x30, 0x20, 0x0A, 0xFF, 0xFE, 0x0A]).write(to: URL(fileURLWithPath: tmp + "/data/labels/train/b.txt"))
        let split = try DetectionSplit.load(try DetectionDataConfig.load(path: yaml), split: "train", policy: .skip)
        XCTAssertEqual(split.issues.map(\.description), [tmp + "/data/labels/train/b.txt:2: not UTF-8 text (invalid byte at offset 3); the image is left out"])
        XCTAssertEqual(split.samples.map { ($0.imagePath as NSString).lastPathComponent }, ["a.png"])
        // Many boxes: the duplicate check is a hash lookup, not a scan of the earlier boxes.
        let many: [String] = (0..<50_000).map { (i: Int) -> String in
            let x = Double(i % 500) / 500 + 0.001, y = Double(i / 500) / 100 + 0.001
            return String(format: "%d %.6f %.6f 0.000010 0.000010", i % 3, x, y)
        }
        issues = []
        XCTAssertEqual(DetectionSplit.parseLabels(many.joined(separator: "\n") + "\n" + many[7], file: "m.txt", classes: 3, issues: &issues).count, 50_000)
        XCTAssertEqual(issues.map(\.description), ["m.txt:50001: duplicate of an earlier line"])
    }

    /// A PNG whose header declares 37 000 × 37 000 pixels is refused before decoding.
    func testDecompressionBombIsRefusedFromItsHeader() throws {
        var png = [UInt8](try RGBImage(width: 2, height: 2, pixels: [UInt8](repeating: 90, count: 12)).pngData())
        // IHDR: length (8..<12), "IHDR" (12..<16), width and height big-endian (16..<24), …, CRC of type + data (29..<33).
        for (offset, v) in [(16, UInt32(37_000)), (20, UInt32(37_000))] {
            for k in 0..<4 { png[offset + k] = UInt8(truncatingIfNeeded: v >> (24 - 8 * k)) }
        }
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in png[12..<29] {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        crc = ~crc
        for k in 0..<4 { png[29 + k] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * k)) }
        XCTAssertThrowsError(try RGBImage.decode(Data(png), path: "bomb.png")) {
            XCTAssertEqual($0 as? ImageError, .tooManyPixels(path: "bomb.png", width: 37_000, height: 37_000, limit: RGBImage.defaultMaxPixels))
            XCTAssertTrue("\($0)".contains("1369000000 pixels"), "\($0)")
        }
        // Under a limit it fits, the header is decoded as far as libpng goes (here: the data is short).
        XCTAssertThrowsError(try RGBImage.decode(Data(png), path: "bomb.png", maxPixels: 2_000_000_000)) {
            guard case ImageError.corrupt = $0 else { return XCTFail("\($0)") }
        }
    }

    func testDataYAMLErrors() throws {
        func error(_ yaml: String) throws -> String {
            let path = try writeDataset(labels: [:], images: [], yaml: yaml)
            do { _ = try DetectionSplit.load(try DetectionDataConfig.load(path: path), split: "train") } catch {
                return "\(error)".replacingOccurrences(of: tmp, with: "")
            }
            return "no error"
        }
        XCTAssertEqual(try error("train: images/train\nval: images/val\n"), "/data/data.yaml: missing key 'names'")
        XCTAssertEqual(try error("val: images/val\nnames: [a]\n"), "/data/data.yaml: missing key 'train'")
        XCTAssertEqual(
            try error("train: images/train\nval: images/val\nnames: {0: a, 2: b}\n"),
            "/data/data.yaml:3: names: class indices must run 0 … 1 without gaps")
        XCTAssertEqual(try error("train: images/train\nval: images/val\nnc: 3\nnames: [a, b]\n"), "/data/data.yaml:3: nc is 3 but names lists 2 classes")
        XCTAssertEqual(try error("train: [a, b]\nval: images/val\nnames: [a]\n"), "/data/data.yaml:1: train: expected a path, got a list")
        XCTAssertEqual(try error("train: images/nowhere\nval: images/val\nnames: [a]\n"), "/data/data.yaml: train: /data/images/nowhere does not exist")
        XCTAssertEqual(try error("train: images/train\nval: images/val\nnames: [a]\n"), "/data/images/train: no PNG or JPEG images found")
        XCTAssertThrowsError(try DetectionDataConfig.load(path: tmp + "/none.yaml")) { XCTAssertEqual("\($0)", tmp + "/none.yaml: no such file") }
    }

    /// `train` as a list of image paths: a listed image that does not exist is named by the list's line.
    func testImageListWithAMissingImage() throws {
        let yaml = try writeDataset(
            labels: ["a.txt": "1 0.5 0.5 0.2 0.2\n"], images: ["a.png"],
            yaml: "path: .\ntrain: train.txt\nval: images/val\nnames: [a, b]\n")
        try "./images/train/a.png\n\nimages/train/gone.png\n".write(toFile: tmp + "/data/train.txt", atomically: true, encoding: .utf8)
        let split = try DetectionSplit.load(try DetectionDataConfig.load(path: yaml), split: "train")
        XCTAssertEqual(split.samples.count, 1)
        XCTAssertEqual(split.samples[0].boxes.count, 1)
        XCTAssertEqual(split.issues.map(\.description), ["\(tmp)/data/train.txt:3: image \(tmp)/data/images/train/gone.png does not exist"])
    }

    func testShapesAreDeterministicAndValid() throws {
        var o = ShapesDataset.Options(train: 6, val: 2, size: 64, seed: 9)
        let a = try ShapesDataset.write(to: tmp + "/s1", options: o)
        try ShapesDataset.write(to: tmp + "/s2", options: o)
        for f in ["images/train/train_00003.png", "labels/train/train_00003.txt", "labels/val/val_00001.txt", "data.yaml"] {
            XCTAssertEqual(FileManager.default.contents(atPath: tmp + "/s1/" + f), FileManager.default.contents(atPath: tmp + "/s2/" + f), f)
        }
        let config = try DetectionDataConfig.load(path: a)
        XCTAssertEqual(config.names, ShapesDataset.names)
        let split = try DetectionSplit.load(config, split: "train", policy: .fail)
        XCTAssertEqual(split.samples.count, 6)
        let boxes = split.samples.flatMap(\.boxes)
        XCTAssertGreaterThanOrEqual(boxes.count, 6)
        for s in split.samples {
            for (i, p) in s.boxes.enumerated() {
                for q in s.boxes[(i + 1)...] { XCTAssertLessThanOrEqual(DetectionMetrics.iou(p.corners, q.corners), o.maxOverlap + 1e-9) }
            }
        }
        o.jpeg = true
        let j = try ShapesDataset.write(to: tmp + "/s3", options: o)
        XCTAssertEqual(try DetectionSplit.load(try DetectionDataConfig.load(path: j), split: "val", policy: .fail).samples.count, 2)
    }

    func testAugmentedBoxesFollowTheImage() throws {
        // A white square on black: after any augmentation its box still frames white pixels.
        var image = RGBImage(width: 40, height: 20, fill: (0, 0, 0))
        image.fill(x0: 10, y0: 4, x1: 20, y1: 14, color: (255, 255, 255))
        let sample = DetectionSample(imagePath: "x", image: image, boxes: [BoxLabel(classIndex: 0, cx: 15.0 / 40, cy: 9.0 / 20, w: 10.0 / 40, h: 10.0 / 20)])
        var aug = Augmentation()
        (aug.hue, aug.saturation, aug.value) = (0, 0, 0)
        aug.flip = 0.5
        let data = DetectionDataset([sample], size: 64, augmentation: aug, seed: 3)
        for draw in 0..<8 {
            let (img, boxes) = data.example(0, epoch: draw)
            guard let b = boxes.first, b.x1 < 60 else { continue }
            let cx = Int((b.x0 + b.x1) / 2), cy = Int((b.y0 + b.y1) / 2)
            XCTAssertGreaterThan(img[cx, cy].0, 200, "draw \(draw): centre of the box is white")
            XCTAssertLessThan(img[Swift.min(63, Int(b.x1) + 2), cy].0, 120, "draw \(draw): right of the box is not white")
        }
        // The draws depend on the epoch only: the same batch again (a resumed run), another epoch differs.
        let twice = (try data.batch([0], epoch: 3), try data.batch([0], epoch: 3), try data.batch([0], epoch: 4))
        XCTAssertEqual(twice.0.inputs.scalars, twice.1.inputs.scalars)
        XCTAssertEqual(twice.0.targets.scalars, twice.1.targets.scalars)
        XCTAssertNotEqual(twice.0.inputs.scalars, twice.2.inputs.scalars)
        let plain = DetectionDataset([sample], size: 64)
        let batch = try plain.batch([0])
        XCTAssertEqual(batch.targets.shape, [1, 1, 5])
        assertClose(batch.targets, Tensor(shape: [1, 1, 5], scalars: [0, 24, 30.4, 16, 16]), rtol: 1e-6, atol: 1e-5)  // scale 1.6, offset (0, 16)
    }

    // MARK: NMS and mAP, by hand

    func box(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, _ c: Int = 0, _ s: Double = 1) -> Box {
        Box(x0: x0, y0: y0, x1: x1, y1: y1, classIndex: c, score: s)
    }

    func testNMS() {
        let boxes = [box(0, 0, 10, 10, 0, 0.9), box(1, 0, 11, 10, 0, 0.8), box(1, 0, 11, 10, 1, 0.7), box(20, 20, 30, 30, 0, 0.6)]
        // IoU of the first two: 90 / 110 = 0.818.
        XCTAssertEqual(DetectionMetrics.nms(boxes, iouThreshold: 0.5).map(\.score), [0.9, 0.7, 0.6])
        XCTAssertEqual(DetectionMetrics.nms(boxes, iouThreshold: 0.85).map(\.score), [0.9, 0.8, 0.7, 0.6])
        XCTAssertEqual(DetectionMetrics.nms(boxes, iouThreshold: 0.5, classAware: false).map(\.score), [0.9, 0.6])
        XCTAssertEqual(DetectionMetrics.nms(boxes, iouThreshold: 0.5, maxDetections: 2).map(\.score), [0.9, 0.7])
        XCTAssertEqual(DetectionMetrics.iou([0, 0, 10, 10], [5, 0, 15, 10]), 50.0 / 150, accuracy: 1e-12)
    }

    func testAveragePrecisionHandComputedCases() {
        let gt = [[box(0, 0, 10, 10), box(20, 20, 30, 30)]]
        func ap(_ preds: [[Box]], _ truths: [[Box]], _ t: Double = 0.5) -> Double? {
            DetectionMetrics.averagePrecision(predictions: preds, truths: truths, classIndex: 0, threshold: t)
        }
        // Perfect detections.
        XCTAssertEqual(ap([[box(0, 0, 10, 10, 0, 0.9), box(20, 20, 30, 30, 0, 0.8)]], gt)!, 1, accuracy: 1e-12)
        // One hit of two ground truths: precision 1 up to recall 0.5, i.e. 51 of the 101 points.
        XCTAssertEqual(ap([[box(0, 0, 10, 10, 0, 0.9)]], gt)!, 51.0 / 101, accuracy: 1e-12)
        // A duplicate after the hit is a false positive that costs nothing: recall 1 was reached at precision 1.
        let one = [[box(0, 0, 10, 10)]]
        XCTAssertEqual(ap([[box(0, 0, 10, 10, 0, 0.9), box(0, 0, 10, 10, 0, 0.8)]], one)!, 1, accuracy: 1e-12)
        // A false positive ranked first: precision 1/2 at every recall.
        XCTAssertEqual(ap([[box(50, 50, 60, 60, 0, 0.9), box(0, 0, 10, 10, 0, 0.8)]], one)!, 0.5, accuracy: 1e-12)
        // Hit, miss, hit over two GTs: points 0 … 0.5 at 1, 0.51 … 1 at 2/3 → (51 + 50·2/3)/101.
        XCTAssertEqual(
            ap([[box(0, 0, 10, 10, 0, 0.9), box(50, 50, 60, 60, 0, 0.8), box(20, 20, 30, 30, 0, 0.7)]], gt)!,
            (51 + 50 * 2.0 / 3) / 101, accuracy: 1e-12)
        // Empty images: no ground truth and no detections change nothing; detections on them are false positives.
        XCTAssertEqual(ap([[box(0, 0, 10, 10, 0, 0.9)], [], []], [[box(0, 0, 10, 10)], [], []])!, 1, accuracy: 1e-12)
        XCTAssertEqual(ap([[box(0, 0, 10, 10, 0, 0.8)], [box(0, 0, 10, 10, 0, 0.9)]], [[box(0, 0, 10, 10)], []])!, 0.5, accuracy: 1e-12)
        XCTAssertNil(ap([[box(0, 0, 10, 10)]], [[]]), "no ground truth of the class: AP undefined")
        // IoU thresholds: a box with IoU 0.75 counts at 0.75, not at 0.8.
        let shifted = [[box(0, 0, 10, 7.5)]]  // 10 × 7.5 inside 10 × 10: IoU 0.75
        XCTAssertEqual(ap(shifted, one, 0.75)!, 1, accuracy: 1e-12)
        XCTAssertEqual(ap(shifted, one, 0.8)!, 0, accuracy: 1e-12)
        // mAP over classes skips classes without ground truth; 0.5:0.95 averages the ten thresholds.
        let r = DetectionMetrics.meanAveragePrecision(
            predictions: [[box(0, 0, 10, 10, 0, 0.9), box(0, 0, 10, 10, 1, 0.9)]],
            truths: [[box(0, 0, 10, 10, 0), box(0, 0, 10, 7.5, 1)]], classes: 3)
        XCTAssertEqual(r.perClass50[0]!, 1, accuracy: 1e-12)
        XCTAssertNil(r.perClass50[2])
        XCTAssertEqual(r.map50, 1, accuracy: 1e-12)
        // Class 1 has IoU 0.75: counted at 0.50 … 0.75 (6 of 10 thresholds).
        XCTAssertEqual(r.map50to95, (1 + 0.6) / 2, accuracy: 1e-12)
    }

    // MARK: Loss

    func testGIoUValuesAndGradients() {
        let a = Tensor(shape: [3, 4], scalars: [0, 0, 2, 2, 0, 0, 2, 2, 0, 0, 1, 1])
        let b = Tensor(shape: [3, 4], scalars: [0, 0, 2, 2, 3, 0, 5, 2, 0, 0, 2, 2])
        // Same box: 1. Disjoint side by side: 0 − (10 − 8)/10 = −0.2. Nested: 1/4.
        assertClose(generalizedIoU(a, b), Tensor(shape: [3], scalars: [1, -0.2, 0.25]), rtol: 1e-5, atol: 1e-6)
        let x = Tensor(shape: [2, 4], scalars: [0.1, 0.2, 2.3, 1.9, 1, 1.5, 3, 4])
        checkGradients([x]) { generalizedIoU($0[0], Tensor(shape: [2, 4], scalars: [0.5, 0, 2, 2.5, 0, 0, 2, 3])).sum() }
    }

    func testCIoUValuesAndGradients() {
        let a = Tensor(shape: [4, 4], scalars: [0, 0, 2, 2, 0, 0, 2, 2, 0, 0, 1, 1, 0, 0, 2, 1])
        let b = Tensor(shape: [4, 4], scalars: [0, 0, 2, 2, 3, 0, 5, 2, 0, 0, 2, 2, 0, 0, 2, 2])
        // Same box: 1. Disjoint: 0 − 9/29 (centre distance² 9, enclosing diagonal² 29).
        // Nested, same aspect: 1/4 − 0.5/8. Aspects 2:1 against 1:1: IoU 1/2, ρ²/c² = 0.25/8,
        // v = 4/π²·(atan 1 − atan 2)², α = v/(v + 1/2).
        let v = 4 / (Double.pi * Double.pi) * Foundation.pow(Foundation.atan(1.0) - Foundation.atan(2.0), 2)
        let expected = [1, -9.0 / 29, 0.25 - 0.5 / 8, 0.5 - 0.25 / 8 - v * v / (v + 0.5)].map(Float.init)
        assertClose(completeIoU(a, b), Tensor(shape: [4], scalars: expected), rtol: 1e-5, atol: 1e-6)
        // With the aspect ratios of the targets the detached α has no effect: finite differences apply.
        let x = Tensor(shape: [2, 4], scalars: [0.1, 0.2, 2.1, 2.2, 1, 1.5, 3, 5.5])
        checkGradients([x]) { completeIoU($0[0], Tensor(shape: [2, 4], scalars: [0.5, 0, 2.5, 2, 0, 0, 2, 4])).sum() }
        // The loss takes either.
        var loss = YOLOLoss(classes: 2, imageSize: 64)
        loss.box = .ciou
        DefaultGenerator.seed(3)
        let outputs = YOLODetector(classes: 2, width: 4, imageSize: 64)(Tensor.rand([1, 3, 64, 64]))
        let parts = loss(outputs, targets: Tensor(shape: [1, 1, 5], scalars: [1, 30, 20, 12, 20]))
        XCTAssertTrue(parts.box.item.isFinite && parts.box.item > 0)
    }

    /// The coupled head's loss by hand, on outputs of all-zero logits: every prediction is a
    /// 32×32 box centred on its cell (σ(0)·2 − 0.5 + cell, (σ(0)·2)²·4·stride), and every BCE
    /// against a target in [0, 1] is ln 2. One 10×12 box of class 1 at (20, 20) goes to stride
    /// 8 (its side ≤ 64), cells (2, 2), (3, 2) and (2, 3) (the centre's and the nearer
    /// neighbours, its fractions being 0.5); each of the three predictions holds the whole box,
    /// so GIoU = IoU = 120/1024. Parts, with YOLOv5's gains at 64 pixels over two scales:
    /// box 0.05·3/2·(1 − 120/1024); objectness ln 2·(4 + 1)·(64/640)²·3/2; classes
    /// ln 2·0.5·(2/80)·3/2.
    func testCoupledLossByHand() {
        let outputs = [Tensor.zeros([1, 7, 8, 8]), Tensor.zeros([1, 7, 4, 4])]
        let parts = YOLOLoss(classes: 2, imageSize: 64)(outputs, targets: Tensor(shape: [1, 1, 5], scalars: [1, 20, 20, 10, 12]))
        let ln2 = Foundation.log(2.0)
        XCTAssertEqual(Double(parts.box.item), 0.05 * 1.5 * (1 - 120.0 / 1024), accuracy: 1e-6)
        XCTAssertEqual(Double(parts.objectness.item), ln2 * 5 * 0.01 * 1.5, accuracy: 1e-6)
        XCTAssertEqual(Double(parts.classes.item), ln2 * 0.5 * 2 / 80 * 1.5, accuracy: 1e-6)
        XCTAssertEqual(parts.total.item, parts.box.item + parts.objectness.item + parts.classes.item, accuracy: 1e-6)
    }

    func testLossPartsAndGradientsReachEveryParameter() {
        DefaultGenerator.seed(1)
        let model = YOLODetector(classes: 2, width: 4, imageSize: 64)
        let x = Tensor.rand([2, 3, 64, 64])
        let outputs = model(x)
        XCTAssertEqual(outputs.map(\.shape), [[2, 7, 8, 8], [2, 7, 4, 4]])
        let targets = Tensor(
            shape: [2, 2, 5],
            scalars: [
                0, 20, 20, 10, 12, 1, 40, 40, 50, 40,
                -1, 0, 0, 0, 0, -1, 0, 0, 0, 0
            ])
        let loss = YOLOLoss(classes: 2, imageSize: 64)
        let parts = loss(outputs, targets: targets)
        XCTAssertTrue(parts.total.item.isFinite)
        XCTAssertGreaterThan(parts.box.item, 0)
        XCTAssertGreaterThan(parts.classes.item, 0)
        parts.total.backward()
        XCTAssertTrue(model.parameters().allSatisfy { $0.grad != nil })
        // No boxes: only objectness remains.
        let empty = loss(outputs, targets: Tensor.full([2, 1, 5], -1))
        XCTAssertEqual(empty.box.item, 0)
        XCTAssertEqual(empty.classes.item, 0)
        XCTAssertGreaterThan(empty.objectness.item, 0)
    }
}
