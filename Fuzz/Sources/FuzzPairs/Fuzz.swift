import Foundation
import GradGuard

/// Any text as a translation pairs file: pairs with both sides non-empty and bounded, or an
/// error naming the line; the pairs then encode into a dataset.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let pairs = try? TranslationPair.parse(text, source: "fuzz.tsv"), !pairs.isEmpty else { return 0 }
    for p in pairs where p.source.isEmpty || p.target.isEmpty || p.source.count > TranslationPair.maxLength {
        fatalError("accepted a bad pair \(p)")
    }
    let set = TranslationSet(pairs: pairs)
    _ = set.dataset(pairs)
    return 0
}
