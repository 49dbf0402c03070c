import Foundation
import GradGuard

/// Any text as a data.yaml: a typed error naming the file, or a configuration with names.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let c = try? DetectionDataConfig.parse(text, path: "/fuzz/data.yaml"), c.names.isEmpty { fatalError("accepted a data.yaml without names") }
    return 0
}
