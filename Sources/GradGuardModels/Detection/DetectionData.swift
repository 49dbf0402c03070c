import Foundation
import GradGuardData
import GradGuardTensor
import Yams

/// One box of a label file: the class and the centre, width and height normalised to the
/// image (`class cx cy w h`, the Ultralytics YOLO format).
public struct BoxLabel: Hashable, Sendable {
    /// The class, from 0.
    public var classIndex: Int
    /// The centre, width and height, as fractions of the image's width and height.
    public var cx: Double, cy: Double, w: Double, h: Double
    /// A box of `classIndex` with normalised centre and size.
    public init(classIndex: Int, cx: Double, cy: Double, w: Double, h: Double) {
        self.classIndex = classIndex
        (self.cx, self.cy, self.w, self.h) = (cx, cy, w, h)
    }
    /// `[x0, y0, x1, y1]`, normalised.
    public var corners: [Double] { [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2] }
}

/// A problem found in a dataset: the file, the line when it is one, and what is wrong.
public struct DataIssue: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file the problem is in.
    public var file: String
    /// Its line, when the problem is one line.
    public var line: Int?
    /// What is wrong.
    public var message: String
    /// A problem in `file`, at `line` when given.
    public init(file: String, line: Int? = nil, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }
    /// "file:line: message".
    public var description: String { line.map { "\(file):\($0): \(message)" } ?? "\(file): \(message)" }
}

/// What to do with bad label lines, label files without an image and unreadable images.
public enum DataIssuePolicy: String, Sendable, CaseIterable {
    /// Leave the bad line (or image) out and report it.
    case skip
    /// Stop with every problem found.
    case fail
}

/// Why a detection dataset cannot be used.
public enum DetectionDataError: Error, CustomStringConvertible, Equatable {
    case config(path: String, line: Int?, message: String)
    case invalid([DataIssue])
    case noImages(path: String)

    /// The problem, or the first 20 problems, in words.
    public var description: String {
        switch self {
        case let .config(p, l, m): return l.map { "\(p):\($0): \(m)" } ?? "\(p): \(m)"
        case let .invalid(issues):
            let shown = issues.prefix(20).map { "  \($0)" }.joined(separator: "\n")
            return "\(issues.count) problem\(issues.count == 1 ? "" : "s") in the dataset:\n\(shown)\(issues.count > 20 ? "\n  …" : "")"
        case let .noImages(p): return "\(p): no PNG or JPEG images found"
        }
    }
}

/// A dataset's `data.yaml` in the Ultralytics layout: `path` (the root, relative to the
/// file), `train` and `val` (image directories or lists of image paths, relative to the
/// root) and `names` (a list, or a mapping from class index to name).
public struct DetectionDataConfig: Equatable, Sendable {
    /// The data.yaml read.
    public var file: String
    /// The dataset's root directory.
    public var root: String
    /// The training images (a directory or a list file), relative to the root.
    public var train: String
    /// The validation images, relative to the root.
    public var val: String
    /// The class names, by index.
    public var names: [String]

    /// The most classes a dataset may name (LVIS has 1 203; the head's class branch grows
    /// with the count, and 100 000 names took 2.4 GB).
    public static let maxClasses = 2_000

    /// Reads and checks a data.yaml; errors name the file, the line and the key.
    public static func load(path: String) throws -> DetectionDataConfig {
        let data: Data
        do { data = try FileContents.read(path, limit: 1 << 20) } catch let e as FileReadFailure {
            throw DetectionDataError.config(path: path, line: nil, message: e.reason)
        }
        switch FileContents.utf8Text(data) {
        case .success(let text): return try parse(text, path: path)
        case .failure(let bad):
            throw DetectionDataError.config(path: path, line: bad.line, message: "not UTF-8 text (byte \(bad.offset) is not valid UTF-8)")
        }
    }

    /// Parses the text of a data.yaml found at `path` (relative paths in it are resolved
    /// against `path`'s folder).
    public static func parse(_ text: String, path: String) throws -> DetectionDataConfig {
        let node: Node?
        do { node = try SafeYAML.compose(text) } catch let r as SafeYAML.Refusal {
            throw DetectionDataError.config(path: path, line: r.line, message: r.message)
        } catch {
            throw DetectionDataError.config(path: path, line: nil, message: "not valid YAML: \(error)")
        }
        guard case .mapping(let map)? = node else {
            throw DetectionDataError.config(path: path, line: node?.mark?.line, message: "expected a mapping with path, train, val and names")
        }
        func scalar(_ key: String, required: Bool = true) throws -> String? {
            guard let v = map[Node(key)] else {
                if required { throw DetectionDataError.config(path: path, line: nil, message: "missing key '\(key)'") }
                return nil
            }
            guard case .scalar(let s) = v else {
                throw DetectionDataError.config(
                    path: path, line: v.mark?.line, message: "\(key): expected a path, got a \(v.mapping != nil ? "mapping" : "list")")
            }
            return s.string
        }
        let base = (path as NSString).deletingLastPathComponent
        var root = try scalar("path", required: false) ?? ""
        while root.hasPrefix("./") { root.removeFirst(2) }
        if root == "." { root = "" }
        if !root.hasPrefix("/") { root = base.isEmpty ? (root.isEmpty ? "." : root) : (root.isEmpty ? base : base + "/" + root) }
        let train = try scalar("train")!, val = try scalar("val")!
        guard let namesNode = map[Node("names")] else { throw DetectionDataError.config(path: path, line: nil, message: "missing key 'names'") }
        var names: [String]
        switch namesNode {
        case .sequence(let seq): names = seq.map { $0.string ?? "" }
        case .mapping(let m):
            var byIndex: [Int: String] = [:]
            for (k, v) in m {
                guard let i = k.int, i >= 0 else {
                    throw DetectionDataError.config(path: path, line: k.mark?.line, message: "names: expected class indices 0, 1, …, got '\(k.string ?? "?")'")
                }
                byIndex[i] = v.string ?? ""
            }
            guard byIndex.keys.sorted() == Array(0..<byIndex.count) else {
                throw DetectionDataError.config(
                    path: path, line: namesNode.mark?.line, message: "names: class indices must run 0 … \(byIndex.count - 1) without gaps")
            }
            names = (0..<byIndex.count).map { byIndex[$0]! }
        default:
            throw DetectionDataError.config(path: path, line: namesNode.mark?.line, message: "names: expected a list or a mapping of class names")
        }
        guard !names.isEmpty else { throw DetectionDataError.config(path: path, line: namesNode.mark?.line, message: "names: no classes") }
        guard names.count <= maxClasses else {
            throw DetectionDataError.config(
                path: path, line: namesNode.mark?.line, message: "names: \(names.count) classes, more than the \(maxClasses) a detector may have")
        }
        if let nc = map[Node("nc")]?.int, nc != names.count {
            throw DetectionDataError.config(path: path, line: map[Node("nc")]?.mark?.line, message: "nc is \(nc) but names lists \(names.count) classes")
        }
        return DetectionDataConfig(file: path, root: root, train: train, val: val, names: names)
    }
}

/// One image with its boxes, decoded.
public struct DetectionSample: Sendable {
    /// The image file.
    public var imagePath: String
    /// The decoded image.
    public var image: RGBImage
    /// Its boxes, from its label file.
    public var boxes: [BoxLabel]
    /// An image and its boxes.
    public init(imagePath: String, image: RGBImage, boxes: [BoxLabel]) {
        self.imagePath = imagePath
        self.image = image
        self.boxes = boxes
    }
}

/// The images and labels of one split, read and checked.
public struct DetectionSplit: Sendable {
    /// The images with their boxes.
    public var samples: [DetectionSample]
    /// Problems found and passed over (with `.skip`).
    public var issues: [DataIssue]
    /// The class names.
    public var names: [String]

    static let imageExtensions: Set<String> = ["png", "jpg", "jpeg"]

    /// The label file of an image: the last `/images/` component becomes `/labels/` and the
    /// extension `.txt` (Ultralytics' rule).
    public static func labelPath(forImage path: String) -> String {
        var parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if let i = parts.lastIndex(of: "images") { parts[i] = "labels" }
        let joined = parts.joined(separator: "/")
        return (joined as NSString).deletingPathExtension + ".txt"
    }

    /// Reads split `split` ("train" or "val") of `config`.
    public static func load(
        _ config: DetectionDataConfig, split: String, policy: DataIssuePolicy = .skip,
        maxPixels: Int = RGBImage.defaultMaxPixels
    ) throws -> DetectionSplit {
        let entry = split == "train" ? config.train : config.val
        let location = entry.hasPrefix("/") ? entry : config.root + "/" + entry
        let fm = FileManager.default
        var imagePaths: [String] = []
        var issues: [DataIssue] = []
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: location, isDirectory: &isDirectory) else {
            throw DetectionDataError.config(path: config.file, line: nil, message: "\(split): \(location) does not exist")
        }
        if isDirectory.boolValue {
            let files = (try? fm.contentsOfDirectory(atPath: location)) ?? []
            imagePaths = files.filter { imageExtensions.contains(($0 as NSString).pathExtension.lowercased()) }.sorted().map { location + "/" + $0 }
            // A label file whose image is missing.
            let labelDirectory = labelPath(forImage: location + "/x.png").dropLast("/x.txt".count)
            let stems = Set(imagePaths.map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension })
            for f in ((try? fm.contentsOfDirectory(atPath: String(labelDirectory))) ?? []).sorted() where f.hasSuffix(".txt") {
                if !stems.contains((f as NSString).deletingPathExtension) {
                    issues.append(DataIssue(file: labelDirectory + "/" + f, message: "no image for this label file in \(location)"))
                }
            }
        } else {
            // A text file listing image paths, relative to the dataset root.
            let text: String
            do { text = try readLabelText(location) } catch let e as DataIssue {
                throw DetectionDataError.config(path: config.file, line: nil, message: "\(split): \(e)")
            }
            for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let p = line.trimmingCharacters(in: .whitespaces)
                if p.isEmpty { continue }
                let full = p.hasPrefix("/") ? p : config.root + "/" + (p.hasPrefix("./") ? String(p.dropFirst(2)) : p)
                if fm.fileExists(atPath: full) {
                    imagePaths.append(full)
                } else {
                    issues.append(DataIssue(file: location, line: i + 1, message: "image \(full) does not exist"))
                }
            }
        }
        var samples: [DetectionSample] = []
        for path in imagePaths {
            let image: RGBImage
            do { image = try RGBImage.read(path: path, maxPixels: maxPixels) } catch {
                issues.append(DataIssue(file: path, message: "\(error)".replacingOccurrences(of: path + ": ", with: "")))
                continue
            }
            let labels = labelPath(forImage: path)
            var boxes: [BoxLabel] = []
            if FileManager.default.fileExists(atPath: labels) {
                do { boxes = parseLabels(try readLabelText(labels), file: labels, classes: config.names.count, issues: &issues) } catch let e as DataIssue {
                    issues.append(e)  // an unreadable label file: the image is left out, not taken as background
                    continue
                }
            }  // no label file: an image without objects (a background image)
            samples.append(DetectionSample(imagePath: path, image: image, boxes: boxes))
        }
        if policy == .fail && !issues.isEmpty { throw DetectionDataError.invalid(issues) }
        guard !samples.isEmpty else { throw DetectionDataError.noImages(path: location) }
        return DetectionSplit(samples: samples, issues: issues, names: config.names)
    }

    /// The largest label or image-list file read (64 MB: over a million boxes).
    public static let maxLabelFileBytes = 64 << 20

    /// A label or list file as UTF-8 text; an unreadable, oversized or non-UTF-8 file is an issue.
    static func readLabelText(_ path: String) throws -> String {
        let data: Data
        do { data = try FileContents.read(path, limit: maxLabelFileBytes) } catch let e as FileReadFailure {
            throw DataIssue(file: path, message: e.reason)
        }
        switch FileContents.utf8Text(data) {
        case .success(let text): return text
        case .failure(let bad):
            throw DataIssue(file: path, line: bad.line, message: "not UTF-8 text (invalid byte at offset \(bad.offset)); the image is left out")
        }
    }

    /// Parses a label file's lines; every bad line becomes an issue and is left out.
    public static func parseLabels(_ text: String, file: String, classes: Int, issues: inout [DataIssue]) -> [BoxLabel] {
        var boxes: [BoxLabel] = []
        var seen = Set<BoxLabel>()
        for (i, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let fields = raw.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.isEmpty { continue }
            func issue(_ m: String) { issues.append(DataIssue(file: file, line: i + 1, message: m)) }
            guard fields.count == 5 else { issue("expected 5 values 'class cx cy w h', found \(fields.count)"); continue }
            let values = fields.map { Double($0) }
            if let bad = values.firstIndex(where: { $0 == nil || !$0!.isFinite }) { issue("'\(fields[bad])' is not a number"); continue }
            let v = values.map { $0! }
            guard v[0] == v[0].rounded() else { issue("class '\(fields[0])' is not an integer"); continue }
            guard v[0] >= 0, v[0] < Double(classes) else {
                issue("class \(fields[0]) is out of range: data.yaml names \(classes) class\(classes == 1 ? "" : "es") (0 … \(classes - 1))"); continue
            }
            guard v[3] > 0, v[4] > 0 else { issue("width and height must be positive, got \(fields[3]) and \(fields[4])"); continue }
            let tolerance = 1e-6
            let x0 = v[1] - v[3] / 2, x1 = v[1] + v[3] / 2, y0 = v[2] - v[4] / 2, y1 = v[2] + v[4] / 2
            guard x0 >= -tolerance, y0 >= -tolerance, x1 <= 1 + tolerance, y1 <= 1 + tolerance else {
                issue(String(format: "box outside the image: x from %.4g to %.4g, y from %.4g to %.4g (normalised coordinates lie in 0 … 1)", x0, x1, y0, y1))
                continue
            }
            let box = BoxLabel(classIndex: Int(v[0]), cx: v[1], cy: v[2], w: v[3], h: v[4])
            if !seen.insert(box).inserted { issue("duplicate of an earlier line"); continue }
            boxes.append(box)
        }
        return boxes
    }
}
