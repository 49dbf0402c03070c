import Foundation
import GradGuard

/// Any bytes as a character corpus: UTF-8 checked, vocabulary, windows and one batch.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let text = try? CharCorpus.text(Data(bytes: data, count: size), source: "fuzz.txt"),
        let corpus = try? CharCorpus.checked(text: text, source: "fuzz.txt")
    else { return 0 }
    guard let (train, validation) = try? corpus.datasets(length: 4) else { return 0 }
    for set in [train, validation] where set.count > 0 {
        guard let b = try? set.batch([0, set.count - 1]) else { fatalError("a window could not be cut") }
        if b.inputs.scalars.contains(where: { Int($0) >= corpus.vocabulary.count }) { fatalError("an id outside the vocabulary") }
    }
    return 0
}
