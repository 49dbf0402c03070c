import Foundation
import GradGuardRuns

/// Any bytes as a run's config.yaml: a ConfigError naming the line, or settings that write
/// back to YAML and read back the same.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var c = RunConfig()
    guard (try? c.apply(yaml: String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self), source: "fuzz.yaml")) != nil else { return 0 }
    var back = RunConfig()
    guard (try? back.apply(yaml: c.yaml, source: "config.yaml")) != nil, back == c else {
        fatalError("config.yaml did not read back the same:\n\(c.yaml)")
    }
    return 0
}
