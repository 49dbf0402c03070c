import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

/// `gradguard data`: datasets in the Ultralytics YOLO layout.
struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Make or check detection datasets.",
        subcommands: [Shapes.self, Check.self])

    struct Shapes: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a synthetic shapes dataset (circles, squares, triangles) in the YOLO layout.",
            discussion: "Writes DIR/data.yaml, DIR/images/{train,val} and DIR/labels/{train,val}; the same seed gives the same files.")
        @Option(name: .long, help: "Output directory.") var out: String
        @Option(name: .long, parsing: .unconditional, help: "Training images.") var train = 256
        @Option(name: .long, parsing: .unconditional, help: "Validation images.") var val = 64
        @Option(name: .long, parsing: .unconditional, help: "Image side in pixels.") var size = 128
        @Option(name: .long, parsing: .unconditional, help: "Seed.") var seed = 0
        @Option(name: .customLong("max-objects"), parsing: .unconditional, help: "Objects per image: 1 to this.") var maxObjects = 4
        @Option(name: .customLong("max-overlap"), parsing: .unconditional, help: "Largest IoU between two objects of an image.") var maxOverlap = 0.1
        @Option(name: .customLong("min-side"), parsing: .unconditional, help: "Smallest object side, as a fraction of the image side.") var minSide = 0.12
        @Option(name: .customLong("max-side"), parsing: .unconditional, help: "Largest object side, as a fraction of the image side.") var maxSide = 0.4
        @Flag(name: .long, help: "Write JPEG instead of PNG.") var jpeg = false
        @Flag(name: .long, help: "Replace a shapes dataset written to --out before (never another folder).") var overwrite = false

        func validate() throws {
            try Bounds.check(train, Bounds.shapesImages, "--train")
            try Bounds.check(val, Bounds.shapesImages, "--val")
            try Bounds.check(seed, Bounds.seed, "--seed")
        }

        func run() throws {
            guard train >= 0, val >= 0, size >= 16, size * size <= RGBImage.defaultMaxPixels, maxObjects >= 1, maxObjects <= 1000,
                (0...1).contains(maxOverlap), minSide > 0, minSide <= maxSide, maxSide <= 0.8, Double(size) * minSide >= 2
            else {
                throw fail(
                    "--train and --val must not be negative, --size in 16 … \(Int(Double(RGBImage.defaultMaxPixels).squareRoot())) (the decoded-pixel limit), --max-objects in 1 … 1000, --max-overlap in 0 … 1, "
                        + "0 < --min-side ≤ --max-side ≤ 0.8 (a side may be stretched by 1.25) with objects of at least 2 pixels",
                    code: Exit.usage)
            }
            var o = ShapesDataset.Options(train: train, val: val, size: size, seed: UInt64(seed))
            (o.maxObjects, o.maxOverlap, o.jpeg, o.minSide, o.maxSide) = (maxObjects, maxOverlap, jpeg, minSide, maxSide)
            do {
                let path = try ShapesDataset.write(to: out, options: o, replace: overwrite)
                print("wrote \(train) training and \(val) validation images of \(size)×\(size); dataset: \(path)")
            } catch let e as ShapesDataset.OutputRefused { throw fail(e.description, code: Exit.usage) }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Read a data.yaml dataset and list every problem by file and line.")
        @Argument(help: "The dataset's data.yaml.") var yaml: String

        func run() throws {
            do {
                let config = try DetectionDataConfig.load(path: yaml)
                var problems = 0
                for split in ["train", "val"] {
                    let s = try DetectionSplit.load(config, split: split, policy: .skip)
                    let boxes = s.samples.reduce(0) { $0 + $1.boxes.count }
                    print("\(split): \(s.samples.count) images, \(boxes) boxes, \(s.issues.count) problem\(s.issues.count == 1 ? "" : "s")")
                    for i in s.issues { print("  \(i)") }
                    problems += s.issues.count
                }
                if problems > 0 { throw ExitCode(Exit.missing) }
            } catch let e as DetectionDataError { throw fail(e.description, code: Exit.missing) }
        }
    }
}

/// `gradguard detect`: a detector run on a directory of images.
struct Detect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Detect objects with a detector run's newest checkpoint.",
        discussion: """
            For each PNG or JPEG in --images, writes OUT/labels/<name>.txt (class cx cy w h confidence, normalised) and OUT/<name>.png \
            with the boxes drawn; <name> is the file name without its extension, or with the extension's dot made '_' when two \
            images share a name (a.png, a.jpg → a_png, a_jpg). Exits 3 when no image could be read.
            """)
    @Argument(help: "Run name or directory.") var runName: String
    @Option(name: .long, help: "Directory of images.") var images: String
    @Option(name: .long, help: "Output directory (default: RUN/detect).") var out: String?
    @Option(name: .long, parsing: .unconditional, help: "Smallest confidence kept.") var conf = 0.25
    @Option(name: .long, parsing: .unconditional, help: "IoU above which NMS drops the weaker box of a class.") var iou = 0.6
    @Option(name: .customLong("max-pixels"), parsing: .unconditional, help: "Largest image (width × height) decoded.") var maxPixels = RGBImage.defaultMaxPixels

    func validate() throws {
        guard conf.isFinite, (0...1).contains(conf) else { throw ValidationError("--conf must be a confidence in 0 … 1, got \(conf)") }
        guard iou.isFinite, (0...1).contains(iou) else { throw ValidationError("--iou must be an overlap in 0 … 1, got \(iou)") }
        guard maxPixels > 0 else { throw ValidationError("--max-pixels must be positive, got \(maxPixels)") }
    }

    func run() throws {
        let dir = try runDirectory(runName)
        // The annotated copies never replace the images they were made from (checked before
        // anything is loaded).
        for folder in [out ?? dir + "/detect", (out ?? dir + "/detect") + "/labels"] {
            try refuseOutput(folder, flag: "--out", over: [(images, "the images of --images")])
        }
        let (c, trained) = try trainedModel(runName, kind: .detector, command: "detect")
        guard case let .detector(model, names) = trained else { throw fail("run \(runName) holds no detector", code: Exit.usage) }
        let outDir = out ?? dir + "/detect"
        guard let files = try? FileManager.default.contentsOfDirectory(atPath: images) else {
            throw fail("\(images): no such directory", code: Exit.missing)
        }
        let imageFiles = files.sorted().filter { ["png", "jpg", "jpeg"].contains(($0 as NSString).pathExtension.lowercased()) }
        guard !imageFiles.isEmpty else { throw fail("\(images): no .png, .jpg or .jpeg files", code: Exit.missing) }
        let stems = imageFiles.map { ($0 as NSString).deletingPathExtension }
        let shared = Set(Dictionary(grouping: stems, by: { $0 }).filter { $0.value.count > 1 }.keys)
        try FileManager.default.createDirectory(atPath: outDir + "/labels", withIntermediateDirectories: true)
        let palette: [(UInt8, UInt8, UInt8)] = [(255, 56, 56), (56, 255, 56), (56, 120, 255), (255, 220, 40), (255, 56, 255), (40, 230, 230)]
        var count = 0
        for (f, fileStem) in zip(imageFiles, stems) {
            let path = images + "/" + f
            let image: RGBImage
            do { image = try RGBImage.read(path: path, maxPixels: maxPixels) } catch {
                FileHandle.standardError.write(Data("gradguard: \(error); skipped\n".utf8))
                continue
            }
            let (boxed, scale, ox, oy) = image.letterbox(size: c.detector.imageSize)
            let found = model.detect(boxed.tensor().unsqueezed(0), confidence: conf, iou: iou)[0]
            var drawn = image
            var lines: [String] = []
            for b in found {
                // Back from the letterbox to the image's pixels, clipped to it.
                let x0 = Swift.max(0, (b.x0 - ox) / scale), x1 = Swift.min(Double(image.width), (b.x1 - ox) / scale)
                let y0 = Swift.max(0, (b.y0 - oy) / scale), y1 = Swift.min(Double(image.height), (b.y1 - oy) / scale)
                guard x1 > x0, y1 > y0 else { continue }
                lines.append(
                    String(
                        format: "%d %.6f %.6f %.6f %.6f %.4f", b.classIndex, (x0 + x1) / 2 / Double(image.width),
                        (y0 + y1) / 2 / Double(image.height), (x1 - x0) / Double(image.width), (y1 - y0) / Double(image.height), b.score))
                drawn.strokeRectangle(
                    x0: Int(x0), y0: Int(y0), x1: Int(x1.rounded(.up)), y1: Int(y1.rounded(.up)),
                    color: palette[b.classIndex % palette.count], thickness: Swift.max(1, image.width / 160))
            }
            let stem = shared.contains(fileStem) ? fileStem + "_" + (f as NSString).pathExtension : fileStem
            try AtomicFile.write(Data(lines.map { $0 + "\n" }.joined().utf8), to: outDir + "/labels/" + stem + ".txt")
            try drawn.write(path: outDir + "/" + stem + ".png")
            let summary = Dictionary(grouping: found, by: \.classIndex).sorted { $0.key < $1.key }
                .map { "\($0.value.count) \($0.key < names.count ? names[$0.key] : "class \($0.key)")" }.joined(separator: ", ")
            print("\(f): \(found.isEmpty ? "nothing" : summary)")
            count += 1
        }
        guard count > 0 else { throw fail("none of the \(imageFiles.count) images in \(images) could be read", code: Exit.missing) }
        print("\(count) images; labels and annotated images in \(outDir)")
    }
}
