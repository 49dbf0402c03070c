import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

struct Translate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Translate with a seq2seq run's newest checkpoint.",
        discussion: "Reads the sentences from the arguments, or one per line from standard input when none is given.")
    @Argument(help: "Run name or directory.") var runName: String
    @Argument(help: "Sentences to translate.") var sentences: [String] = []
    @Option(name: .long, parsing: .unconditional, help: "Beam width (1: greedy decoding).") var beam = 1

    func validate() throws {
        try Bounds.check(beam, 1...64, "--beam")
        for (i, t) in sentences.enumerated() where t.count > Bounds.sentenceCharacters {
            throw ValidationError("sentence \(i + 1) has \(t.count) characters, more than the limit of \(Bounds.sentenceCharacters)")
        }
    }

    func run() throws {
        guard case let .seq2seq(model, set) = try trainedModel(runName, kind: .seq2seq, command: "translate").trained else {
            throw fail("run \(runName) holds no translation model", code: Exit.usage)
        }
        func translate(_ texts: [String], from first: Int) {
            for (k, t) in texts.enumerated() {
                let i = first + k
                let unknown = Set(t.filter { set.source.encode(String($0)) == [TokenVocabulary.unknown] })
                if !unknown.isEmpty {
                    FileHandle.standardError.write(
                        Data(
                            "gradguard: sentence \(i + 1): the characters \(unknown.sorted().map { "'\(printable(String($0)))'" }.joined(separator: ", ")) never occurred in training; the translation is unreliable\n"
                                .utf8))
                }
                if t.count > set.sourceLength {
                    FileHandle.standardError.write(
                        Data(
                            "gradguard: sentence \(i + 1) has \(t.count) characters, more than the longest training sentence (\(set.sourceLength)); the translation is unreliable\n"
                                .utf8))
                }
            }
            let out = model.translate(texts, set: set, beamWidth: beam > 1 ? beam : nil)
            for (s, t) in zip(texts, out) { print("\(printable(s))\t\(printable(t))") }
        }
        guard sentences.isEmpty else { return translate(sentences, from: 0) }
        // Standard input is translated as it comes, a batch of lines at a time: memory stays
        // bounded whatever its length, and each batch is printed before the next is read.
        var batch: [String] = [], first = 0
        do {
            try FileContents.forEachLine(fd: 0, name: "standard input", maxLineBytes: 4 * Bounds.sentenceCharacters) { number, bytes in
                guard let line = String(validating: bytes, as: UTF8.self) else {
                    throw fail("standard input, line \(number): not valid UTF-8 text", code: Exit.usage)
                }
                guard line.count <= Bounds.sentenceCharacters else {
                    throw fail(
                        "standard input, line \(number): \(line.count) characters, more than the limit of \(Bounds.sentenceCharacters) for one sentence",
                        code: Exit.usage)
                }
                if line.isEmpty { return }
                batch.append(line)
                if batch.count == 64 {
                    translate(batch, from: first)
                    first += batch.count
                    batch.removeAll(keepingCapacity: true)
                }
            }
        } catch let e as FileReadFailure { throw fail(e.description, code: Exit.usage) }
        if !batch.isEmpty { translate(batch, from: first) }
    }
}
