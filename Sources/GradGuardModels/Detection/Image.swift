import CGradGuardImage
import Foundation
import GradGuardData
import GradGuardTensor

/// What is wrong with an image file, naming it.
public enum ImageError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case unsupportedFormat(path: String)
    case corrupt(path: String, message: String)
    case cannotWrite(path: String, reason: String)
    case tooManyPixels(path: String, width: Int, height: Int, limit: Int)

    /// The file and what is wrong with it, in one sentence.
    public var description: String {
        switch self {
        case let .unreadable(p, r): return "\(p): cannot read the image: \(r)"
        case let .unsupportedFormat(p): return "\(p): not a PNG or JPEG image"
        case let .corrupt(p, m): return "\(p): corrupt image: \(m)"
        case let .cannotWrite(p, r): return "\(p): cannot write the image: \(r)"
        case let .tooManyPixels(p, w, h, l):
            return "\(p): \(w)×\(h) = \(w * h) pixels, more than the limit of \(l) (a decompression bomb?); raise data.max_image_pixels to accept it"
        }
    }
}

/// An 8-bit RGB image, row-major, three bytes a pixel.
public struct RGBImage: Equatable, Sendable {
    /// Pixels per row.
    public let width: Int
    /// Rows.
    public let height: Int
    /// The bytes, R G B per pixel, row after row.
    public var pixels: [UInt8]

    /// An image of `pixels` (width × height × 3 bytes).
    public init(width: Int, height: Int, pixels: [UInt8]) {
        require(pixels.count == width * height * 3, "RGBImage: \(pixels.count) bytes for \(width)×\(height)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// An image of one colour.
    public init(width: Int, height: Int, fill: (UInt8, UInt8, UInt8) = (0, 0, 0)) {
        self.init(width: width, height: height, pixels: Array((0..<(width * height)).map { _ in [fill.0, fill.1, fill.2] }.joined()))
    }

    // MARK: Files

    /// The most pixels (width × height) an image may declare before it is decoded: Pillow's
    /// decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`, 89 478 485 ≈ 0.27 GB of RGB).
    public static let defaultMaxPixels = 89_478_485

    /// The largest image file read for `maxPixels` pixels: an uncompressed PNG of 16-bit RGBA
    /// (8 bytes a pixel) and 1 MiB of other chunks; anything larger is padding or not an image.
    public static func maxFileBytes(maxPixels: Int) -> Int { Swift.min(Int(Int32.max), 8 * Swift.max(0, maxPixels) + (1 << 20)) }

    /// Reads a PNG or JPEG file (recognised by its first bytes, not its name).
    public static func read(path: String, maxPixels: Int = defaultMaxPixels) throws -> RGBImage {
        let data: Data
        do {
            // A PNG declares its size in its first 24 bytes: the file may then be no larger
            // than that many pixels can take, so padding is refused before it is read.
            var limit = maxFileBytes(maxPixels: maxPixels)
            let (fd, _) = try FileContents.openRegular(path, limit: limit)
            var head = [UInt8](repeating: 0, count: 24)
            let n = pread(fd, &head, 24, 0)
            close(fd)
            if n == 24, head.starts(with: [0x89, 0x50, 0x4E, 0x47]) {
                let w = head[16..<20].reduce(0) { $0 << 8 | Int($1) }, h = head[20..<24].reduce(0) { $0 << 8 | Int($1) }
                if w > 0, h > 0, w <= maxPixels, h <= maxPixels, w * h <= maxPixels { limit = Swift.min(limit, maxFileBytes(maxPixels: w * h)) }
            }
            data = try FileContents.read(path, limit: limit)
        } catch let e as FileReadFailure {
            throw ImageError.unreadable(path: path, reason: e.reason)
        }
        return try decode(data, path: path, maxPixels: maxPixels)
    }

    /// Decodes PNG or JPEG bytes; `path` names them in errors. An image whose header
    /// declares more than `maxPixels` pixels is refused before anything is allocated.
    public static func decode(_ data: Data, path: String = "<memory>", maxPixels: Int = defaultMaxPixels) throws -> RGBImage {
        let isPNG = data.starts(with: [0x89, 0x50, 0x4E, 0x47]), isJPEG = data.starts(with: [0xFF, 0xD8, 0xFF])
        guard isPNG || isJPEG else { throw ImageError.unsupportedFormat(path: path) }
        var out: UnsafeMutablePointer<UInt8>?
        var w: Int32 = 0, h: Int32 = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = data.withUnsafeBytes { raw in
            let b = raw.bindMemory(to: UInt8.self)
            return isPNG
                ? gg_decode_png(b.baseAddress, b.count, Swift.max(0, maxPixels), &out, &w, &h, &message, message.count)
                : gg_decode_jpeg(b.baseAddress, b.count, Swift.max(0, maxPixels), &out, &w, &h, &message, message.count)
        }
        if status == 2 { throw ImageError.tooManyPixels(path: path, width: Int(w), height: Int(h), limit: maxPixels) }
        guard status == 0, let out else {
            throw ImageError.corrupt(path: path, message: String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        defer { gg_image_free(out) }
        return RGBImage(width: Int(w), height: Int(h), pixels: Array(UnsafeBufferPointer(start: out, count: Int(w) * Int(h) * 3)))
    }

    /// PNG bytes of the image.
    public func pngData() throws -> Data { try encode(jpegQuality: nil) }

    /// JPEG bytes at `quality` (1–100).
    public func jpegData(quality: Int = 90) throws -> Data { try encode(jpegQuality: Swift.max(1, Swift.min(100, quality))) }

    private func encode(jpegQuality: Int?) throws -> Data {
        var out: UnsafeMutablePointer<UInt8>?
        var size = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = pixels.withUnsafeBufferPointer { p in
            jpegQuality.map { gg_encode_jpeg(p.baseAddress, Int32(width), Int32(height), Int32($0), &out, &size, &message, message.count) }
                ?? gg_encode_png(p.baseAddress, Int32(width), Int32(height), &out, &size, &message, message.count)
        }
        guard status == 0, let out else {
            throw ImageError.cannotWrite(path: "<memory>", reason: String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        defer { gg_image_free(out) }
        return Data(bytes: out, count: size)
    }

    /// Writes PNG, or JPEG when the name ends in .jpg or .jpeg.
    public func write(path: String, jpegQuality: Int = 90) throws {
        let lower = path.lowercased()
        let data = lower.hasSuffix(".jpg") || lower.hasSuffix(".jpeg") ? try jpegData(quality: jpegQuality) : try pngData()
        // Through a fresh temporary file, never through a link at `path`; removed on failure.
        do { try AtomicFile.write(data, to: path) } catch {
            throw ImageError.cannotWrite(path: path, reason: AtomicFile.reason(error))
        }
    }

    // MARK: Pixels

    /// The pixel at column `x`, row `y`.
    public subscript(x: Int, y: Int) -> (UInt8, UInt8, UInt8) {
        get {
            let i = (y * width + x) * 3
            return (pixels[i], pixels[i + 1], pixels[i + 2])
        }
        set {
            let i = (y * width + x) * 3
            (pixels[i], pixels[i + 1], pixels[i + 2]) = newValue
        }
    }

    /// Paints the pixels whose centres `inside(x, y)` accepts within the clipped rectangle,
    /// blending `color` with weight `alpha`.
    public mutating func fill(
        x0: Int, y0: Int, x1: Int, y1: Int, color: (UInt8, UInt8, UInt8), alpha: Double = 1,
        where inside: (Double, Double) -> Bool = { _, _ in true }
    ) {
        let c = [Double(color.0), Double(color.1), Double(color.2)]
        for y in Swift.max(0, y0)..<Swift.min(height, Swift.max(y1, 0)) {
            for x in Swift.max(0, x0)..<Swift.min(width, Swift.max(x1, 0)) where inside(Double(x) + 0.5, Double(y) + 0.5) {
                let i = (y * width + x) * 3
                for k in 0..<3 { pixels[i + k] = UInt8((Double(pixels[i + k]) * (1 - alpha) + c[k] * alpha).rounded()) }
            }
        }
    }

    /// Draws the outline of a rectangle `thickness` pixels wide.
    public mutating func strokeRectangle(x0: Int, y0: Int, x1: Int, y1: Int, color: (UInt8, UInt8, UInt8), thickness: Int = 1) {
        fill(x0: x0, y0: y0, x1: x1, y1: y0 + thickness, color: color)
        fill(x0: x0, y0: y1 - thickness, x1: x1, y1: y1, color: color)
        fill(x0: x0, y0: y0, x1: x0 + thickness, y1: y1, color: color)
        fill(x0: x1 - thickness, y0: y0, x1: x1, y1: y1, color: color)
    }

    // MARK: Geometry

    /// Resamples into a `size`×`size` canvas filled with `fill`: canvas point (u, v) shows
    /// image point ((u − offsetX)/scale, (v − offsetY)/scale), bilinear. The letterbox
    /// (`letterbox(size:)`) and the scale/translate augmentation are both this map.
    public func resampled(size: Int, scale: Double, offsetX: Double, offsetY: Double, fill: UInt8 = 114) -> RGBImage {
        var out = [UInt8](repeating: fill, count: size * size * 3)
        if scale == 1, offsetX == offsetX.rounded(), offsetY == offsetY.rounded(), Swift.abs(offsetX) < 1e9, Swift.abs(offsetY) < 1e9 {
            // A whole-pixel shift: every bilinear weight below is 0, so each output pixel is one
            // input pixel — copied a row at a time (an image already at the input size).
            let ox = Int(offsetX), oy = Int(offsetY)
            let u0 = Swift.max(0, ox), u1 = Swift.min(size, ox + width)
            guard u1 > u0 else { return RGBImage(width: size, height: size, pixels: out) }
            pixels.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for v in Swift.max(0, oy)..<Swift.max(Swift.max(0, oy), Swift.min(size, oy + height)) {
                        let from = src.baseAddress! + ((v - oy) * width + (u0 - ox)) * 3
                        (dst.baseAddress! + (v * size + u0) * 3).update(from: from, count: (u1 - u0) * 3)
                    }
                }
            }
            return RGBImage(width: size, height: size, pixels: out)
        }
        let inv = 1 / scale
        let u0 = Swift.max(0, Int(offsetX.rounded(.down))), u1 = Swift.min(size, Int((offsetX + Double(width) * scale).rounded(.up)))
        let v0 = Swift.max(0, Int(offsetY.rounded(.down))), v1 = Swift.min(size, Int((offsetY + Double(height) * scale).rounded(.up)))
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for v in v0..<Swift.max(v0, v1) {
                    let sy = (Double(v) + 0.5 - offsetY) * inv - 0.5
                    if sy < -0.5 || sy > Double(height) - 0.5 { continue }
                    let y0 = Swift.max(0, Swift.min(height - 1, Int(sy.rounded(.down)))), y1 = Swift.min(height - 1, y0 + 1)
                    let fy = Swift.max(0, Swift.min(1, sy - Double(y0)))
                    for u in u0..<Swift.max(u0, u1) {
                        let sx = (Double(u) + 0.5 - offsetX) * inv - 0.5
                        if sx < -0.5 || sx > Double(width) - 0.5 { continue }
                        let x0 = Swift.max(0, Swift.min(width - 1, Int(sx.rounded(.down)))), x1 = Swift.min(width - 1, x0 + 1)
                        let fx = Swift.max(0, Swift.min(1, sx - Double(x0)))
                        for k in 0..<3 {
                            let a = Double(src[(y0 * width + x0) * 3 + k]), b = Double(src[(y0 * width + x1) * 3 + k])
                            let c = Double(src[(y1 * width + x0) * 3 + k]), d = Double(src[(y1 * width + x1) * 3 + k])
                            let top = a + (b - a) * fx, bottom = c + (d - c) * fx
                            dst[(v * size + u) * 3 + k] = UInt8((top + (bottom - top) * fy).rounded())
                        }
                    }
                }
            }
        }
        return RGBImage(width: size, height: size, pixels: out)
    }

    /// The letterbox of YOLO: scaled to fit `size`×`size` keeping the aspect ratio, centred,
    /// padded with grey 114. Returns the image and the map (scale, offsets) for boxes.
    public func letterbox(size: Int) -> (image: RGBImage, scale: Double, offsetX: Double, offsetY: Double) {
        let scale = Swift.min(Double(size) / Double(width), Double(size) / Double(height))
        let ox = ((Double(size) - Double(width) * scale) / 2).rounded(.down), oy = ((Double(size) - Double(height) * scale) / 2).rounded(.down)
        return (resampled(size: size, scale: scale, offsetX: ox, offsetY: oy), scale, ox, oy)
    }

    /// The image mirrored left to right.
    public func flippedHorizontally() -> RGBImage {
        var out = self
        for y in 0..<height {
            for x in 0..<width { out[x, y] = self[width - 1 - x, y] }
        }
        return out
    }

    /// Multiplies hue, saturation and value by the given gains (Ultralytics' HSV
    /// augmentation: gains drawn from 1 ± hsv_h, 1 ± hsv_s, 1 ± hsv_v); hue wraps around.
    public func hsvAdjusted(hue: Double, saturation: Double, value: Double) -> RGBImage {
        var out = self
        for i in stride(from: 0, to: pixels.count, by: 3) {
            let r = Double(pixels[i]) / 255, g = Double(pixels[i + 1]) / 255, b = Double(pixels[i + 2]) / 255
            let mx = Swift.max(r, g, b), mn = Swift.min(r, g, b), d = mx - mn
            var h = 0.0
            if d > 0 {
                if mx == r { h = (g - b) / d } else if mx == g { h = (b - r) / d + 2 } else { h = (r - g) / d + 4 }
                h /= 6
                if h < 0 { h += 1 }
            }
            let s = mx > 0 ? d / mx : 0
            h = (h * hue).truncatingRemainder(dividingBy: 1)
            let s2 = Swift.min(1, s * saturation), v2 = Swift.min(1, mx * value)
            let c = v2 * s2, hp = h * 6, x = c * (1 - Swift.abs(hp.truncatingRemainder(dividingBy: 2) - 1)), m = v2 - c
            let (r1, g1, b1): (Double, Double, Double)
            switch Int(hp) % 6 {
            case 0: (r1, g1, b1) = (c, x, 0)
            case 1: (r1, g1, b1) = (x, c, 0)
            case 2: (r1, g1, b1) = (0, c, x)
            case 3: (r1, g1, b1) = (0, x, c)
            case 4: (r1, g1, b1) = (x, 0, c)
            default: (r1, g1, b1) = (c, 0, x)
            }
            out.pixels[i] = UInt8(((r1 + m) * 255).rounded())
            out.pixels[i + 1] = UInt8(((g1 + m) * 255).rounded())
            out.pixels[i + 2] = UInt8(((b1 + m) * 255).rounded())
        }
        return out
    }

    /// `[3, height, width]` values in [0, 1].
    public func tensor() -> Tensor {
        let plane = width * height
        var out = [Float](repeating: 0, count: 3 * plane)
        for p in 0..<plane {
            for k in 0..<3 { out[k * plane + p] = Float(pixels[p * 3 + k]) / 255 }
        }
        return Tensor(shape: [3, height, width], scalars: out)
    }
}
