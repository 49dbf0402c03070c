import Foundation
import GradGuard
import XCTest
import _TestSupport

/// Mosaics: every box of a mosaic still frames its object.
final class MosaicTests: XCTestCase {
    let colours: [[UInt8]] = [[230, 20, 20], [20, 230, 20], [20, 20, 230]]

    /// A grey image of `width`×`height` with one solid rectangle of class `c`'s colour.
    func sample(_ k: Int) -> DetectionSample {
        let width = 40 + 7 * (k % 5), height = 30 + 11 * (k % 3), c = k % 3
        var px = [UInt8](repeating: 128, count: width * height * 3)
        let x0 = 3 + k % 7, y0 = 2 + k % 5, x1 = width - 4 - k % 3, y1 = height - 3 - k % 4
        for y in y0..<y1 { for x in x0..<x1 { for ch in 0..<3 { px[(y * width + x) * 3 + ch] = colours[c][ch] } } }
        let box = BoxLabel(
            classIndex: c, cx: Double(x0 + x1) / 2 / Double(width), cy: Double(y0 + y1) / 2 / Double(height),
            w: Double(x1 - x0) / Double(width), h: Double(y1 - y0) / Double(height))
        return DetectionSample(imagePath: "images/\(k).png", image: RGBImage(width: width, height: height, pixels: px), boxes: [box])
    }

    func testMosaicBoxesFollowTheirObjects() {
        var aug = Augmentation.none
        aug.flip = 0.5
        let data = DetectionDataset((0..<9).map(sample), size: 64, augmentation: aug, seed: 3, mosaicUntilEpoch: 2)
        XCTAssertEqual(data.maxBoxes, 4)
        var boxesSeen = 0, flippedOrNot = Set<Bool>()
        for epoch in 0..<2 {
            for i in 0..<9 {
                let (image, boxes) = data.example(i, epoch: epoch)
                XCTAssertEqual(image.width, 64)
                for b in boxes {
                    boxesSeen += 1
                    // Inside the box (a pixel in from its edges, where resampling blends), the
                    // object's colour; the box lies in the image.
                    XCTAssertTrue(b.x0 >= 0 && b.y0 >= 0 && b.x1 <= 64 && b.y1 <= 64, "\(b)")
                    var right = 0, all = 0
                    for y in Int(b.y0.rounded(.up)) + 1..<Swift.max(Int(b.y0.rounded(.up)) + 1, Int(b.y1.rounded(.down)) - 1) {
                        for x in Int(b.x0.rounded(.up)) + 1..<Swift.max(Int(b.x0.rounded(.up)) + 1, Int(b.x1.rounded(.down)) - 1) {
                            let o = (y * 64 + x) * 3
                            let p = Array(image.pixels[o..<(o + 3)])
                            all += 1
                            if p.indices.max(by: { p[$0] < p[$1] }) == b.classIndex && p[b.classIndex] > 150 { right += 1 }
                        }
                    }
                    if all > 0 { XCTAssertGreaterThan(Double(right) / Double(all), 0.95, "epoch \(epoch) example \(i): \(b)") }
                    // The box's neighbourhood just outside its left and right edges is not the object (the box is tight).
                    let yMid = Int((b.y0 + b.y1) / 2)
                    for x in [Int(b.x0) - 2, Int(b.x1) + 2] where x >= 0 && x < 64 && b.x1 - b.x0 > 6 {
                        let o = (yMid * 64 + x) * 3
                        let p = Array(image.pixels[o..<(o + 3)])
                        XCTAssertFalse(p[b.classIndex] > 200 && p.indices.allSatisfy { $0 == b.classIndex || p[$0] < 60 }, "a box edge cuts its object: \(b)")
                    }
                }
                flippedOrNot.insert(boxes.contains { $0.x0 > 32 })
            }
        }
        XCTAssertGreaterThan(boxesSeen, 20)
        XCTAssertEqual(flippedOrNot, [true, false], "some examples have a box right of the centre and some none")
        // After the mosaic epochs, single letterboxed images with their one box.
        XCTAssertEqual(data.example(4, epoch: 2).boxes.count, 1)
        // The same example and epoch draw the same mosaic.
        XCTAssertEqual(data.example(5, epoch: 1).image, data.example(5, epoch: 1).image)
    }

    /// As Ultralytics', a mosaic keeps its objects at their letterboxed size (it cuts a window
    /// of a canvas twice the side, without the scale draw here): the largest boxes of the
    /// mosaics are as large as the single images' boxes, not a quarter of their area.
    func testMosaicObjectsKeepTheirSize() {
        let data = DetectionDataset((0..<9).map(sample), size: 64, augmentation: .none, seed: 4, mosaicUntilEpoch: 1)
        let single = DetectionDataset((0..<9).map(sample), size: 64)
        let area = { (b: Box) in (b.x1 - b.x0) * (b.y1 - b.y0) }
        let singleLargest = (0..<9).compactMap { single.example($0, epoch: 0).boxes.map(area).max() }.max()!
        let mosaicLargest = (0..<9).compactMap { data.example($0, epoch: 0).boxes.map(area).max() }.max()!
        XCTAssertGreaterThan(mosaicLargest, 0.5 * singleLargest, "images at half the side would give at most a quarter")
        XCTAssertLessThanOrEqual(mosaicLargest, singleLargest + 1e-6)
    }
}
