import Foundation
import GradGuardTensor
import GradGuardTrain

/// What is wrong with a text corpus, naming the file.
public enum CorpusError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case notUTF8(path: String, byteOffset: Int)
    case tooShort(path: String, characters: Int, needed: Int)

    public var description: String {
        switch self {
        case let .unreadable(p, r): return "\(p): cannot read the corpus: \(r)"
        case let .notUTF8(p, o): return "\(p): not UTF-8 text (invalid byte sequence at byte \(o))"
        case let .tooShort(p, c, n): return "\(p): \(c) characters, at least \(n) are needed for the sequence length and split"
        }
    }
}

/// A character-level corpus: the text, its vocabulary (the distinct characters, sorted) and
/// the text as vocabulary indices.
public struct CharCorpus: Sendable {
    public let vocabulary: [Character]
    public let ids: [Int]
    private let index: [Character: Int]

    public init(text: String) {
        vocabulary = Array(Set(text)).sorted()
        var idx: [Character: Int] = [:]
        for (i, c) in vocabulary.enumerated() { idx[c] = i }
        index = idx
        ids = text.map { idx[$0]! }
    }

    /// A corpus with a fixed vocabulary (restored from a run): characters outside it are dropped.
    public init(text: String, vocabulary: [Character]) {
        self.vocabulary = vocabulary
        var idx: [Character: Int] = [:]
        for (i, c) in vocabulary.enumerated() { idx[c] = i }
        index = idx
        ids = text.compactMap { idx[$0] }
    }

    /// Reads a UTF-8 text file as a corpus.
    public static func load(path: String) throws -> CharCorpus { CharCorpus(text: try readText(path: path)) }

    /// Reads a UTF-8 text file, reporting the first invalid byte.
    public static func readText(path: String) throws -> String {
        let data: Data
        do { data = try FileContents.read(path) } catch let e as FileReadFailure {
            throw CorpusError.unreadable(path: path, reason: e.reason)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            // Find the first invalid sequence for the message.
            var offset = 0
            var it = data.makeIterator()
            var decoder = UTF8()
            loop: while true {
                switch decoder.decode(&it) {
                case .scalarValue(let s): offset += String(s).utf8.count
                case .emptyInput: break loop
                case .error: break loop
                }
            }
            throw CorpusError.notUTF8(path: path, byteOffset: offset)
        }
        return text
    }

    public func encode(_ s: String) -> [Int] { s.compactMap { index[$0] } }
    public func decode(_ ids: [Int]) -> String { String(ids.map { vocabulary[$0] }) }

    /// Entropy of the character frequencies, in nats: the loss of the best model that
    /// ignores context.
    public var unigramEntropy: Double {
        var counts = [Int](repeating: 0, count: vocabulary.count)
        for i in ids { counts[i] += 1 }
        let n = Double(ids.count)
        return -counts.filter { $0 > 0 }.map { Double($0) / n }.reduce(0) { $0 + $1 * Foundation.log($1) }
    }

    /// Training and validation windows of `length` characters (inputs) with the next
    /// characters as targets, the last `validationFraction` of the text held out.
    public func datasets(length: Int, validationFraction: Double = 0.1, stride: Int? = nil, source: String = "corpus") throws
        -> (train: TensorDataset, validation: TensorDataset) {
        let cut = Int(Double(ids.count) * (1 - validationFraction))
        guard cut > length + 1, ids.count - cut > length + 1 else {
            throw CorpusError.tooShort(path: source, characters: ids.count, needed: Int(Double(2 * (length + 2)) / Swift.min(validationFraction, 1 - validationFraction)))
        }
        func windows(_ part: ArraySlice<Int>) -> TensorDataset {
            let step = stride ?? length
            let starts = Swift.stride(from: part.startIndex, to: part.endIndex - length - 1, by: step).map { $0 }
            var x = [Float](), y = [Float]()
            x.reserveCapacity(starts.count * length)
            y.reserveCapacity(starts.count * length)
            for s in starts {
                for k in 0..<length {
                    x.append(Float(ids[s + k]))
                    y.append(Float(ids[s + k + 1]))
                }
            }
            return TensorDataset(inputs: Tensor(shape: [starts.count, length], scalars: x), targets: Tensor(shape: [starts.count, length], scalars: y))
        }
        return (windows(ids[0..<cut]), windows(ids[cut...]))
    }
}
