import Foundation
import GradGuardTensor

/// A synthetic detection dataset in the Ultralytics layout: circles, squares and triangles
/// of several colours and sizes on noisy backgrounds, deterministic by seed.
public enum ShapesDataset {
    /// The class names, by index.
    public static let names = ["circle", "square", "triangle"]
    static let palette: [(UInt8, UInt8, UInt8)] = [(230, 40, 40), (40, 200, 60), (50, 80, 235), (240, 220, 40), (220, 60, 220), (40, 210, 220)]

    /// What to generate.
    public struct Options: Sendable {
        /// Training images.
        public var train = 64
        /// Validation images.
        public var val = 16
        /// The images' side, in pixels.
        public var size = 128
        /// The seed of every draw.
        public var seed: UInt64 = 0
        /// Objects per image: 1 … maxObjects.
        public var maxObjects = 4
        /// Largest IoU allowed between two objects of an image (0: none touch).
        public var maxOverlap = 0.1
        /// Object sides as fractions of the image side.
        public var minSide = 0.12, maxSide = 0.4
        /// Write JPEG (quality 95) instead of PNG.
        public var jpeg = false
        /// The options with these counts, size and seed.
        public init(train: Int = 64, val: Int = 16, size: Int = 128, seed: UInt64 = 0) {
            (self.train, self.val, self.size, self.seed) = (train, val, size, seed)
        }
    }

    /// One image and its labels.
    public static func sample(
        size: Int, generator g: inout RandomGenerator, maxObjects: Int, maxOverlap: Double,
        minSide: Double, maxSide: Double
    ) -> (RGBImage, [BoxLabel]) {
        func uniform(_ a: Double, _ b: Double) -> Double { a + (b - a) * g.nextUniform() }
        let base = (0..<3).map { _ in uniform(20, 120) }
        var pixels = [UInt8](repeating: 0, count: size * size * 3)
        for i in 0..<(size * size) {
            for k in 0..<3 { pixels[i * 3 + k] = UInt8(Swift.max(0, Swift.min(255, base[k] + uniform(-25, 25)))) }
        }
        var image = RGBImage(width: size, height: size, pixels: pixels)
        var boxes: [BoxLabel] = []
        let count = 1 + Int(g.next() % UInt64(Swift.max(1, maxObjects)))
        for _ in 0..<count {
            for _ in 0..<30 {
                let side = uniform(minSide, maxSide) * Double(size)
                let aspect = uniform(0.8, 1.25)
                let w = (side * aspect).rounded(), h = (side / aspect).rounded()
                let x0 = uniform(0, Double(size) - w).rounded(.down), y0 = uniform(0, Double(size) - h).rounded(.down)
                let box = BoxLabel(
                    classIndex: Int(g.next() % 3), cx: (x0 + w / 2) / Double(size), cy: (y0 + h / 2) / Double(size),
                    w: w / Double(size), h: h / Double(size))
                if boxes.contains(where: { DetectionMetrics.iou($0.corners, box.corners) > maxOverlap }) { continue }
                let color = palette[Int(g.next() % UInt64(palette.count))]
                let (ix0, iy0, ix1, iy1) = (Int(x0), Int(y0), Int(x0 + w), Int(y0 + h))
                switch box.classIndex {
                case 0:
                    let cx = x0 + w / 2, cy = y0 + h / 2
                    image.fill(x0: ix0, y0: iy0, x1: ix1, y1: iy1, color: color) { x, y in
                        let dx = (x - cx) / (w / 2), dy = (y - cy) / (h / 2)
                        return dx * dx + dy * dy <= 1
                    }
                case 1:
                    image.fill(x0: ix0, y0: iy0, x1: ix1, y1: iy1, color: color)
                default:
                    // Apex at the top centre, base along the bottom edge.
                    image.fill(x0: ix0, y0: iy0, x1: ix1, y1: iy1, color: color) { x, y in
                        let t = (y - y0) / h
                        return Swift.abs(x - (x0 + w / 2)) <= t * w / 2
                    }
                }
                boxes.append(box)
                break
            }
        }
        return (image, boxes)
    }

    /// Why a dataset cannot be written where it was asked to go.
    public struct OutputRefused: Error, CustomStringConvertible, Equatable {
        /// The directory refused.
        public let directory: String
        /// Why.
        public let reason: String
        /// "directory: reason".
        public var description: String { "\(directory): \(reason)" }
    }

    /// The file that marks a folder as a dataset this command wrote (JSON with a format).
    public static let markerName = ".gradguard-dataset"

    /// The most images of one split, and the disk the images of `o` may take at most (an
    /// uncompressed image and its label each).
    public static let maxImages = 100_000
    static func worstCaseBytes(_ o: Options) -> Int { (o.train + o.val) * (o.size * o.size * 3 + 8192) }

    /// Checks that `directory` may receive the dataset of `o`, clearing it when it holds an
    /// earlier one and `replace` is set: the folder must be missing, empty, or a dataset this
    /// command marked (never a folder of other files, whose data.yaml and images would be
    /// replaced or mixed in); the counts within `maxImages`; and the disk must have room for
    /// the worst case.
    public static func prepare(_ directory: String, options o: Options, replace: Bool) throws {
        let fm = FileManager.default
        guard (0...maxImages).contains(o.train), (0...maxImages).contains(o.val) else {
            throw OutputRefused(directory: directory, reason: "at most \(maxImages) images a split, asked for \(o.train) and \(o.val)")
        }
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: directory, isDirectory: &isDir) {
            guard isDir.boolValue else { throw OutputRefused(directory: directory, reason: "exists and is not a directory") }
            let entries = (try? fm.contentsOfDirectory(atPath: directory)) ?? []
            if !entries.isEmpty {
                let marked = fm.fileExists(atPath: directory + "/" + markerName)
                guard marked && replace else {
                    throw OutputRefused(
                        directory: directory,
                        reason: marked
                            ? "holds a shapes dataset already: pass --overwrite to replace it"
                            : "is not empty and is not a dataset written by gradguard data shapes: choose a new or empty folder")
                }
                for e in ["images", "labels", "data.yaml", markerName] where fm.fileExists(atPath: directory + "/" + e) {
                    do { try fm.removeItem(atPath: directory + "/" + e) } catch {
                        throw ImageError.cannotWrite(path: directory + "/" + e, reason: "cannot remove: " + AtomicFile.reason(error))
                    }
                }
            }
        }
        // The nearest folder that exists, where the disk's free space is read.
        var existing = directory.hasPrefix("/") ? directory : fm.currentDirectoryPath + "/" + directory
        while !fm.fileExists(atPath: existing), let slash = existing.lastIndex(of: "/") {
            existing = slash == existing.startIndex ? "/" : String(existing[..<slash])
        }
        var st = statvfs()
        if statvfs(existing, &st) == 0, st.f_blocks > 0 {  // a pseudo file system has no size: its write fails instead
            let free = Int(st.f_bavail) &* Int(st.f_frsize), need = worstCaseBytes(o)
            guard need <= free else {
                throw OutputRefused(
                    directory: directory,
                    reason:
                        "\(o.train + o.val) images of \(o.size)×\(o.size) may take \(FileContents.byteCount(need)); the disk has \(FileContents.byteCount(free)) free"
                )
            }
        }
    }

    /// Writes `data.yaml`, `images/{train,val}` and `labels/{train,val}` under `directory`
    /// (see `prepare`), and marks the folder. Returns the path of `data.yaml`.
    @discardableResult
    public static func write(to directory: String, options o: Options = Options(), replace: Bool = false) throws -> String {
        let fm = FileManager.default
        try prepare(directory, options: o, replace: replace)
        do { try fm.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw ImageError.cannotWrite(path: directory, reason: AtomicFile.reason(error))
        }
        do { try AtomicFile.write(Data("{\"kind\": \"gradguard-shapes\", \"format\": 1}\n".utf8), to: directory + "/" + markerName) } catch let e as FileError {
            throw ImageError.cannotWrite(path: directory + "/" + markerName, reason: AtomicFile.reason(e))
        }
        var g = RandomGenerator(seed: o.seed)
        for (split, n) in [("train", o.train), ("val", o.val)] {
            let images = directory + "/images/" + split, labels = directory + "/labels/" + split
            for d in [images, labels] {
                do { try fm.createDirectory(atPath: d, withIntermediateDirectories: true) } catch {
                    throw ImageError.cannotWrite(path: d, reason: AtomicFile.reason(error))
                }
            }
            for i in 0..<n {
                let (image, boxes) = sample(
                    size: o.size, generator: &g, maxObjects: o.maxObjects, maxOverlap: o.maxOverlap,
                    minSide: o.minSide, maxSide: o.maxSide)
                let stem = String(format: "%@_%05d", split, i)
                try image.write(path: images + "/" + stem + (o.jpeg ? ".jpg" : ".png"), jpegQuality: 95)
                let text = boxes.map { String(format: "%d %.6f %.6f %.6f %.6f", $0.classIndex, $0.cx, $0.cy, $0.w, $0.h) }.joined(separator: "\n")
                do { try AtomicFile.write(Data((text + "\n").utf8), to: labels + "/" + stem + ".txt") } catch {
                    throw ImageError.cannotWrite(path: labels + "/" + stem + ".txt", reason: AtomicFile.reason(error))
                }
            }
        }
        let yaml = """
            # Synthetic shapes (gradguard data shapes, seed \(o.seed)): \(o.train) training and \(o.val) validation images of \(o.size)×\(o.size)
            path: .
            train: images/train
            val: images/val
            names:
            \(names.enumerated().map { "  \($0.offset): \($0.element)" }.joined(separator: "\n"))

            """
        let path = directory + "/data.yaml"
        do { try AtomicFile.write(Data(yaml.utf8), to: path) } catch {
            throw ImageError.cannotWrite(path: path, reason: AtomicFile.reason(error))
        }
        return path
    }
}
