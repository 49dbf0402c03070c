import Foundation
import GradGuard

/// Any text as a YOLO label file: boxes inside the image with classes in range, or issues.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var issues: [DataIssue] = []
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    for box in DetectionSplit.parseLabels(text, file: "fuzz.txt", classes: 3, issues: &issues) {
        guard (0..<3).contains(box.classIndex), box.w > 0, box.h > 0 else { fatalError("accepted a bad box \(box)") }
    }
    return 0
}
