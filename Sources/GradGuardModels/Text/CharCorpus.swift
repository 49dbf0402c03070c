import Foundation
import GradGuardData
import GradGuardTensor

/// What is wrong with a text corpus, naming the file.
public enum CorpusError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case notUTF8(path: String, byteOffset: Int)
    case tooShort(path: String, characters: Int, needed: Int)
    case tooManyCharacters(path: String, distinct: Int)

    /// The file and what is wrong with it.
    public var description: String {
        switch self {
        case let .unreadable(p, r): return "\(p): cannot read the corpus: \(r)"
        case let .notUTF8(p, o): return "\(p): not UTF-8 text (invalid byte sequence at byte \(o))"
        case let .tooShort(p, c, n): return "\(p): \(c) characters, at least \(n) are needed for the sequence length and split"
        case let .tooManyCharacters(p, n): return "\(p): \(n) distinct characters, more than the \(CharCorpus.maxVocabulary) a character model takes"
        }
    }
}

/// A character-level corpus: its vocabulary (the distinct characters, sorted) and the text
/// as vocabulary indices, two bytes per character (the windows of `datasets` are cut from
/// them batch by batch, never stored).
public struct CharCorpus: Sendable {
    /// The most distinct characters a corpus may have (its ids are 16-bit).
    public static let maxVocabulary = Int(UInt16.max)

    /// The distinct characters, sorted; a character's id is its index.
    public let vocabulary: [Character]
    /// The text as ids.
    public let ids: [UInt16]
    private let index: [Character: Int]

    /// A corpus of `text`; at most `maxVocabulary` distinct characters are kept (use
    /// `checked(text:source:)` to have more refused).
    public init(text: String) {
        let codes = CharCorpus.asciiCodes(text)
        self.init(text: text, distinct: codes.map(CharCorpus.distinct) ?? Set(text), codes: codes)
    }

    /// A corpus of `text` whose distinct characters are `distinct` (counted once by the
    /// caller), and its ASCII codes when it is ASCII.
    private init(text: String, distinct: Set<Character>, codes: [UInt8]?) {
        vocabulary = Array(distinct.sorted().prefix(CharCorpus.maxVocabulary))
        var idx: [Character: Int] = [:]
        for (i, c) in vocabulary.enumerated() { idx[c] = i }
        index = idx
        if let codes {
            // By a table of the 129 codes instead of hashing each Character (8× faster).
            var table = [Int](repeating: -1, count: 129)
            for code in 0..<129 { table[code] = idx[CharCorpus.character(UInt8(code))] ?? -1 }
            var ids = [UInt16]()
            ids.reserveCapacity(codes.count)
            for c in codes where table[Int(c)] >= 0 { ids.append(UInt16(table[Int(c)])) }
            self.ids = ids
            return
        }
        var ids: [UInt16] = []
        ids.reserveCapacity(text.utf8.count)
        for ch in text { if let i = idx[ch] { ids.append(UInt16(i)) } }
        self.ids = ids
    }

    /// A corpus of `text`, refusing more distinct characters than `maxVocabulary`.
    public static func checked(text: String, source: String) throws -> CharCorpus {
        if let codes = asciiCodes(text) { return CharCorpus(text: text, distinct: distinct(codes), codes: codes) }
        var distinct = Set<Character>()
        for ch in text {
            distinct.insert(ch)
            if distinct.count > maxVocabulary { throw CorpusError.tooManyCharacters(path: source, distinct: distinct.count) }
        }
        return CharCorpus(text: text, distinct: distinct, codes: nil)
    }

    /// The characters of ASCII text as codes, so that a corpus need not break it into
    /// grapheme clusters: the byte, or 128 for "\r\n" (one Character, as Swift counts it);
    /// nil when the text has a byte outside ASCII.
    static func asciiCodes(_ text: String) -> [UInt8]? {
        var text = text
        return text.withUTF8 { bytes -> [UInt8]? in
            var codes = [UInt8]()
            codes.reserveCapacity(bytes.count)
            var i = 0
            while i < bytes.count {
                let b = bytes[i]
                if b >= 0x80 { return nil }
                if b == 13 && i + 1 < bytes.count && bytes[i + 1] == 10 {
                    codes.append(128)
                    i += 2
                } else {
                    codes.append(b)
                    i += 1
                }
            }
            return codes
        }
    }

    static func character(_ code: UInt8) -> Character { code == 128 ? "\r\n" : Character(Unicode.Scalar(code)) }

    static func distinct(_ codes: [UInt8]) -> Set<Character> {
        var seen = [Bool](repeating: false, count: 129)
        for c in codes { seen[Int(c)] = true }
        return Set((0..<129).filter { seen[$0] }.map { character(UInt8($0)) })
    }

    /// A corpus with a fixed vocabulary (restored from a run): characters outside it are dropped.
    public init(text: String, vocabulary: [Character]) {
        self.vocabulary = Array(vocabulary.prefix(CharCorpus.maxVocabulary))
        var idx: [Character: Int] = [:]
        for (i, c) in self.vocabulary.enumerated() { idx[c] = i }
        index = idx
        ids = text.compactMap { idx[$0].map(UInt16.init) }
    }

    /// Reads a UTF-8 text file as a corpus.
    public static func load(path: String) throws -> CharCorpus { CharCorpus(text: try readText(path: path)) }

    /// The largest text read as a corpus (256 MiB: it is held as text and as two bytes a
    /// character), and the most validation windows an evaluation reads.
    public static let maxFileBytes = 256 << 20
    /// The most validation windows an evaluation reads.
    public static let maxValidationWindows = 4096

    /// Reads a UTF-8 text file, reporting the first invalid byte.
    public static func readText(path: String) throws -> String {
        let data: Data
        do { data = try FileContents.read(path, limit: maxFileBytes) } catch let e as FileReadFailure {
            throw CorpusError.unreadable(path: path, reason: e.reason)
        }
        return try text(data, source: path)
    }

    /// Bytes of a corpus as UTF-8 text, reporting the first invalid byte; `source` names them.
    public static func text(_ data: Data, source: String) throws -> String {
        switch FileContents.utf8Text(data) {
        case .success(let text): return text
        case .failure(let bad): throw CorpusError.notUTF8(path: source, byteOffset: bad.offset)
        }
    }

    /// The ids of `s`'s characters (those not in the vocabulary left out).
    public func encode(_ s: String) -> [Int] { s.compactMap { index[$0] } }
    /// The text of `ids` (ids outside the vocabulary left out).
    public func decode(_ ids: [Int]) -> String { String(ids.compactMap { $0 >= 0 && $0 < vocabulary.count ? vocabulary[$0] : nil }) }

    /// Entropy of the character frequencies, in nats: the loss of the best model that
    /// ignores context.
    public var unigramEntropy: Double {
        var counts = [Int](repeating: 0, count: vocabulary.count)
        for i in ids { counts[Int(i)] += 1 }
        let n = Double(ids.count)
        return -counts.filter { $0 > 0 }.map { Double($0) / n }.reduce(0) { $0 + $1 * Foundation.log($1) }
    }

    /// Training and validation windows of `length` characters (inputs) with the next
    /// characters as targets, the last `validationFraction` of the text held out.
    public func datasets(length: Int, validationFraction: Double = 0.1, stride: Int? = nil, source: String = "corpus") throws
        -> (train: CharWindows, validation: CharWindows)
    {
        let cut = Int(Double(ids.count) * (1 - validationFraction))
        guard length >= 1, cut > length + 1, ids.count - cut > length + 1 else {
            throw CorpusError.tooShort(
                path: source, characters: ids.count, needed: Int(Double(2 * (length + 2)) / Swift.min(validationFraction, 1 - validationFraction)))
        }
        let step = Swift.max(1, stride ?? length)
        // A long held-out part is sampled by at most `maxValidationWindows` windows spread
        // evenly over it: an evaluation costs the same on a 100 MB text as on a 3 MB one.
        let validationStep = Swift.max(step, (ids.count - cut - length) / CharCorpus.maxValidationWindows)
        return (
            CharWindows(ids: ids, range: 0..<cut, length: length, step: step, source: source, vocabulary: vocabulary),
            CharWindows(ids: ids, range: cut..<ids.count, length: length, step: validationStep, source: source, vocabulary: vocabulary)
        )
    }
}

/// Windows of `length` characters cut from a corpus's ids (inputs) with the next characters
/// as targets, starting every `step` characters within `range`. The ids are shared, not
/// copied: a batch is assembled when it is asked for.
public struct CharWindows: Dataset, SampleDescribing {
    /// The corpus's ids.
    public let ids: [UInt16]
    /// The part of the ids windows are cut from.
    public let range: Range<Int>
    /// Characters per window.
    public let length: Int
    /// Characters between window starts.
    public let step: Int
    /// The text's name (a path, "built-in corpus") and its characters, for `describe`.
    public let source: String
    /// The characters, by id.
    public let vocabulary: [Character]

    /// Windows of `ids` within `range`.
    public init(ids: [UInt16], range: Range<Int>, length: Int, step: Int, source: String = "text", vocabulary: [Character] = []) {
        (self.ids, self.range, self.length, self.step, self.source, self.vocabulary) = (ids, range, length, step, source, vocabulary)
    }

    /// "built-in corpus, characters 5120–5184: "the quick …"" — the window's offsets in the text
    /// (the input characters and the last target) and its text.
    public func describe(_ index: Int) -> String {
        guard index >= 0 && index < count else { return "window \(index)" }
        let start = range.lowerBound + index * step
        let text = String(ids[start...(start + length)].map { Int($0) < vocabulary.count ? vocabulary[Int($0)] : "?" })
        let shown = text.replacingOccurrences(of: "\n", with: "⏎")
        return "\(source), characters \(start)–\(start + length): \"\(shown)\""
    }

    /// The number of windows.
    public var count: Int { range.count > length + 1 ? (range.count - length - 2) / step + 1 : 0 }

    /// The windows `indices` as `[B, length]` inputs and targets.
    public func batch(_ indices: [Int]) throws -> Batch {
        var x = [Float](repeating: 0, count: indices.count * length), y = x
        for (row, i) in indices.enumerated() {
            require(i >= 0 && i < count, "CharWindows: window \(i) of \(count)")
            let start = range.lowerBound + i * step
            for k in 0..<length {
                x[row * length + k] = Float(ids[start + k])
                y[row * length + k] = Float(ids[start + k + 1])
            }
        }
        return Batch(
            inputs: Tensor(shape: [indices.count, length], scalars: x), targets: Tensor(shape: [indices.count, length], scalars: y),
            indices: indices)
    }
}
