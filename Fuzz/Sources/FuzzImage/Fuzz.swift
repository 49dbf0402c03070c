import Foundation
import GradGuard

/// Any bytes as a PNG or JPEG (libpng and libjpeg-turbo under AddressSanitizer): an image of
/// the declared size or a typed error; at most 4 M pixels so the fuzzer stays fast.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    if let image = try? RGBImage.decode(Data(bytes: data, count: size), path: "fuzz", maxPixels: 4 << 20) {
        guard image.pixels.count == image.width * image.height * 3 else { fatalError("pixel count does not match the size") }
        _ = image.letterbox(size: 32)
    }
    return 0
}
