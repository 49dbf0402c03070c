import Foundation
import GradGuardData
import GradGuardTensor

/// What is wrong with a file of translation pairs, naming the file and the line.
public enum TranslationDataError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case notUTF8(path: String)
    case malformedLine(path: String, line: Int, reason: String)
    case tooFewPairs(path: String, pairs: Int, needed: Int)

    /// The file, the line and what is wrong.
    public var description: String {
        switch self {
        case let .unreadable(p, r): return "\(p): cannot read the pairs: \(r)"
        case let .notUTF8(p): return "\(p): not UTF-8 text"
        case let .malformedLine(p, l, r): return "\(p):\(l): \(r)"
        case let .tooFewPairs(p, n, k): return "\(p): \(n) pairs, at least \(k) are needed (training and validation)"
        }
    }
}

/// One source sentence and its translation.
public struct TranslationPair: Equatable, Sendable {
    /// The sentence to translate.
    public var source: String
    /// Its translation.
    public var target: String
    /// Where the pair was read ("pairs.tsv:17"), when it came from a file.
    public var origin: String? = nil
    /// A pair, read at `origin` when it came from a file.
    public init(source: String, target: String, origin: String? = nil) {
        self.source = source
        self.target = target
        self.origin = origin
    }

    /// The same sentences, wherever they were read.
    public static func == (a: TranslationPair, b: TranslationPair) -> Bool { a.source == b.source && a.target == b.target }
}

/// A character vocabulary with the four special tokens every sequence-to-sequence model
/// needs: padding (0), begin (1), end (2) and unknown (3); characters follow, sorted.
public struct TokenVocabulary: Equatable, Sendable {
    /// The special tokens' ids.
    public static let pad = 0, begin = 1, end = 2, unknown = 3
    /// How many special tokens come before the characters.
    public static let specials = 4
    /// The characters, sorted; character i has id i + 4.
    public let characters: [Character]
    private let index: [Character: Int]

    /// A vocabulary of `characters` (in the order given).
    public init(characters: [Character]) {
        self.characters = characters
        var idx: [Character: Int] = [:]
        for (i, c) in characters.enumerated() { idx[c] = i + Self.specials }
        index = idx
    }

    /// The distinct characters of `texts`.
    public init(texts: [String]) {
        var set = Set<Character>()
        for t in texts { set.formUnion(t) }
        self.init(characters: set.sorted())
    }

    /// Ids in all: the characters and the special tokens.
    public var count: Int { characters.count + Self.specials }

    /// The ids of `text`'s characters (unknown for those not in the vocabulary).
    public func encode(_ text: String) -> [Int] { text.map { index[$0] ?? Self.unknown } }

    /// Text of `ids` up to the first end token; padding, begin and end are dropped, unknown
    /// shows as U+FFFD.
    public func decode(_ ids: [Int]) -> String {
        var s = ""
        for i in ids {
            if i == Self.end { break }
            if i >= Self.specials && i < count { s.append(characters[i - Self.specials]) } else if i == Self.unknown { s.append("\u{FFFD}") }
        }
        return s
    }
}

extension TranslationPair {
    /// Reads tab-separated pairs, one per line (`source<TAB>target`); blank lines and lines
    /// starting with `#` are skipped. A line without exactly one tab, or with an empty side,
    /// is an error naming the line.
    /// The file is read line by line (an error on an early line is reported before the rest
    /// is read), up to `maxFileBytes`.
    public static func load(path: String) throws -> [TranslationPair] {
        var pairs: [TranslationPair] = []
        do {
            try FileContents.forEachLine(path, limit: maxFileBytes, maxLineBytes: 8 * maxLength + 16) { number, bytes in
                guard let line = String(validating: bytes, as: UTF8.self) else { throw TranslationDataError.notUTF8(path: path) }
                if let pair = try parseLine(line, number: number, source: path) { pairs.append(pair) }
            }
        } catch let e as FileReadFailure {
            throw TranslationDataError.unreadable(path: path, reason: e.reason)
        }
        return pairs
    }

    /// The largest pairs file read (256 MiB).
    public static let maxFileBytes = 256 << 20

    /// The longest side of a pair, in characters: a pair's tensors are as wide as the
    /// longest sentence of the file, so one runaway line would size every batch (a pair of
    /// 1 000 characters took 2.3 GB; 256 keeps the worst case near a tenth of that).
    public static let maxLength = 256

    /// Parses tab-separated pairs; `source` names the text in errors.
    public static func parse(_ text: String, source: String) throws -> [TranslationPair] {
        // "\r\n" is one Character (a newline) to Swift, so CRLF files split the same way.
        try text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated().compactMap { i, line in
            try parseLine(String(line), number: i + 1, source: source)
        }
    }

    /// One line of a pairs file: a pair, nil for a blank or `#` line, or an error naming it.
    static func parseLine(_ line: String, number: Int, source: String) throws -> TranslationPair? {
        if line.allSatisfy(\.isWhitespace) || line.hasPrefix("#") { return nil }
        let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
        guard fields.count == 2 else {
            throw TranslationDataError.malformedLine(
                path: source, line: number,
                reason: "expected 'source<TAB>target', found \(fields.count - 1) tab\(fields.count == 2 ? "" : "s")")
        }
        let s = fields[0].trimmingCharacters(in: .whitespaces), t = fields[1].trimmingCharacters(in: .whitespaces)
        guard !s.isEmpty, !t.isEmpty else {
            throw TranslationDataError.malformedLine(path: source, line: number, reason: "the \(s.isEmpty ? "source" : "target") is empty")
        }
        for (side, text) in [("source", s), ("target", t)] where text.count > maxLength {
            throw TranslationDataError.malformedLine(
                path: source, line: number, reason: "the \(side) has \(text.count) characters, more than the \(maxLength) a pair may have")
        }
        return TranslationPair(source: s, target: t, origin: "\(source):\(number)")
    }
}

/// The built-in translation task: English number words to digits, 0 … 9999
/// ("four thousand two hundred seven" → "4207"). Numbers are split between training and
/// validation by a seeded shuffle, so validation measures generalisation to unseen numbers.
public enum NumberWordsTask {
    static let ones = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"
    ]
    static let tens = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

    /// `n` in words, as written in American English without "and" (0 ≤ n < 10 000).
    public static func words(_ n: Int) -> String {
        require((0..<10_000).contains(n), "NumberWordsTask: \(n) is outside 0 … 9999")
        func below100(_ n: Int) -> String {
            n < 20 ? ones[n] : tens[n / 10] + (n % 10 == 0 ? "" : "-" + ones[n % 10])
        }
        if n < 100 { return below100(n) }
        var parts: [String] = []
        if n >= 1000 { parts.append(ones[n / 1000] + " thousand") }
        if (n / 100) % 10 > 0 { parts.append(ones[(n / 100) % 10] + " hundred") }
        if n % 100 > 0 { parts.append(below100(n % 100)) }
        return parts.joined(separator: " ")
    }

    /// `train` and `validation` disjoint pairs (at most 10 000 in all), by seed.
    public static func pairs(train: Int, validation: Int, seed: UInt64) -> (train: [TranslationPair], validation: [TranslationPair]) {
        var numbers = Array(0..<10_000)
        var g = RandomGenerator(seed: seed)
        for i in stride(from: numbers.count - 1, to: 0, by: -1) { numbers.swapAt(i, Int(g.next() % UInt64(i + 1))) }
        let v = Swift.min(validation, 10_000), t = Swift.min(train, 10_000 - v)
        let pair = { (n: Int) in TranslationPair(source: words(n), target: String(n)) }
        return (numbers[v..<(v + t)].map(pair), numbers[0..<v].map(pair))
    }
}

/// Pairs as tensors for a sequence-to-sequence model: the source left-padded to the longest
/// source (so the encoder's last step is the sentence's last character), the target as
/// `begin, characters…, end` right-padded.
public struct TranslationSet: Sendable {
    /// The source vocabulary.
    public let source: TokenVocabulary
    /// The target vocabulary.
    public let target: TokenVocabulary
    /// The source width in tokens.
    public let sourceLength: Int
    /// The target width in tokens (begin and end included).
    public let targetLength: Int

    /// Vocabularies from `pairs`; lengths from the longest pair (plus begin and end).
    public init(pairs: [TranslationPair]) {
        source = TokenVocabulary(texts: pairs.map(\.source))
        target = TokenVocabulary(texts: pairs.map(\.target))
        sourceLength = pairs.map { $0.source.count }.max() ?? 1
        targetLength = (pairs.map { $0.target.count }.max() ?? 1) + 2
    }

    /// A set of the given vocabularies and lengths (a saved run's).
    public init(source: TokenVocabulary, target: TokenVocabulary, sourceLength: Int, targetLength: Int) {
        self.source = source
        self.target = target
        self.sourceLength = sourceLength
        self.targetLength = targetLength
    }

    /// `[N, sourceLength]` ids, left-padded (longer sources keep their last characters).
    public func encodeSources(_ texts: [String]) -> Tensor {
        var out = [Float](repeating: Float(TokenVocabulary.pad), count: texts.count * sourceLength)
        for (i, t) in texts.enumerated() {
            let ids = source.encode(t).suffix(sourceLength)
            for (j, id) in ids.enumerated() { out[i * sourceLength + sourceLength - ids.count + j] = Float(id) }
        }
        return Tensor(shape: [texts.count, sourceLength], scalars: out)
    }

    /// `[N, targetLength]` ids: begin, the characters (cut to fit), end, padding.
    public func encodeTargets(_ texts: [String]) -> Tensor {
        var out = [Float](repeating: Float(TokenVocabulary.pad), count: texts.count * targetLength)
        for (i, t) in texts.enumerated() {
            let ids = [TokenVocabulary.begin] + target.encode(t).prefix(targetLength - 2) + [TokenVocabulary.end]
            for (j, id) in ids.enumerated() { out[i * targetLength + j] = Float(id) }
        }
        return Tensor(shape: [texts.count, targetLength], scalars: out)
    }

    /// Inputs are the sources, targets the full target rows (the model shifts them).
    public func dataset(_ pairs: [TranslationPair]) -> TranslationPairs {
        TranslationPairs(
            tensors: TensorDataset(inputs: encodeSources(pairs.map(\.source)), targets: encodeTargets(pairs.map(\.target))), pairs: pairs)
    }
}

/// Encoded translation pairs that say where each came from (a file and line).
public struct TranslationPairs: Dataset, SampleDescribing {
    /// The encoded sources and targets.
    public let tensors: TensorDataset
    /// The pairs, in the same order.
    public let pairs: [TranslationPair]

    /// The number of pairs.
    public var count: Int { tensors.count }
    /// The encoded pairs `indices`.
    public func batch(_ indices: [Int]) throws -> Batch { try tensors.batch(indices) }

    /// "pairs.tsv:17: "the cat" → "le chat"".
    public func describe(_ index: Int) -> String {
        guard pairs.indices.contains(index) else { return "pair \(index)" }
        let p = pairs[index]
        return "\(p.origin ?? "pair \(index)"): \"\(p.source)\" → \"\(p.target)\""
    }
}
