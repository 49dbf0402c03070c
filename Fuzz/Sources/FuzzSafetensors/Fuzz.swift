import Foundation
import GradGuard

/// Any bytes as a safetensors file: a typed error or tensors, never a crash.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = try? Safetensors.decode(Data(bytes: data, count: size), file: "fuzz.safetensors")
    return 0
}
