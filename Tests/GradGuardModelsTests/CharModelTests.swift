import Foundation
import GradGuard
import XCTest
import _TestSupport

final class CharModelTests: TemporaryDirectoryTestCase {
    func testCorpusVocabularyWindowsAndErrors() throws {
        let c = CharCorpus(text: "abcab\nba")
        XCTAssertEqual(c.vocabulary, ["\n", "a", "b", "c"])
        XCTAssertEqual(c.decode(c.ids.map(Int.init)), "abcab\nba")
        let p: [Double] = [3.0 / 8, 3.0 / 8, 1.0 / 8, 1.0 / 8]
        var entropy = 0.0
        for q in p { entropy -= q * Foundation.log(q) }
        XCTAssertEqual(c.unigramEntropy, entropy, accuracy: 1e-12)
        let big = CharCorpus(text: BuiltinCorpus.text)
        let (train, valid) = try big.datasets(length: 32)
        // Windows every 32 characters; targets are the inputs shifted by one character.
        let cut = Int(Double(big.ids.count) * 0.9)
        XCTAssertEqual(train.count, (cut - 34) / 32 + 1)
        let b = try train.batch([0, 2, train.count - 1])
        XCTAssertEqual(b.inputs.shape, [3, 32])
        XCTAssertEqual(Array(b.inputs.scalars[1..<32]), Array(b.targets.scalars[0..<31]))
        XCTAssertEqual(Array(b.inputs.scalars[32..<64]), big.ids[64..<96].map(Float.init))
        XCTAssertLessThanOrEqual((train.count - 1) * 32 + 33, cut, "the last training window's target stays before the held-out part")
        XCTAssertGreaterThan(valid.count, 0)
        XCTAssertEqual(try valid.batch([0]).inputs.scalars, big.ids[cut..<(cut + 32)].map(Float.init))
        XCTAssertThrowsError(try CharCorpus(text: "short").datasets(length: 32)) { XCTAssertTrue("\($0)".contains("characters"), "\($0)") }
        let bad = tmp + "/bad.txt"
        try Data([0x61, 0x62, 0xFF, 0x63]).write(to: URL(fileURLWithPath: bad))
        XCTAssertThrowsError(try CharCorpus.load(path: bad)) { XCTAssertEqual("\($0)", "\(bad): not UTF-8 text (invalid byte sequence at byte 2)") }
        XCTAssertThrowsError(try CharCorpus.load(path: tmp + "/none.txt")) { XCTAssertTrue("\($0)".contains("no such file")) }
    }

    /// A small char-LSTM learns the built-in corpus well below its unigram entropy.
    func testCharLSTMBeatsTheUnigramEntropy() throws {
        DefaultGenerator.seed(6)
        let corpus = CharCorpus(text: BuiltinCorpus.text)
        let (train, valid) = try corpus.datasets(length: 32)
        let model = CharLanguageModel(vocabularySize: corpus.vocabulary.count, embeddingSize: 24, hiddenSize: 64)
        let c = testTrainerConfig(epochs: 3, batchSize: 32, seed: 6)
        let trainer = try Trainer(
            model: model, optimizer: Adam(model.parameters(), lr: 0.01),
            policy: GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 1)), config: c
        ) { m, b in
            (m as! CharLanguageModel).loss(b.inputs, b.targets)
        }
        let result = try trainer.fit(train: train, validation: valid)
        let loss = try XCTUnwrap(result.lastEvaluation?["loss"])
        XCTAssertLessThan(loss, 0.6 * corpus.unigramEntropy, "validation \(loss) nats/char against the unigram entropy \(corpus.unigramEntropy)")
        let sample = corpus.decode(model.generate(prompt: corpus.encode("the "), length: 40, temperature: 0.5, seed: 1))
        XCTAssertEqual(sample.count, 40)
        XCTAssertEqual(
            model.generate(prompt: corpus.encode("the "), length: 20, temperature: 0.5, seed: 1),
            model.generate(prompt: corpus.encode("the "), length: 20, temperature: 0.5, seed: 1), "seeded sampling repeats")
    }

    /// Generation carries the recurrent state: reading a text in pieces from the state each
    /// piece leaves gives the logits of reading it whole, and greedy generation equals the
    /// loop that re-reads the whole context for every character.
    func testStatefulGenerationMatchesRereadingTheContext() {
        DefaultGenerator.seed(8)
        for cell in SequenceModel.Cell.allCases {
            let model = CharLanguageModel(vocabularySize: 11, embeddingSize: 8, hiddenSize: 16, layers: 2, cell: cell)
            let ids = (0..<30).map { Float(($0 * 7) % 11) }
            let whole = model.inferring { model(Tensor(shape: [1, 30], scalars: ids)) }
            let first = model.inferring { model.forward(Tensor(shape: [1, 17], scalars: Array(ids[..<17])), state: nil) }
            let second = model.inferring { model.forward(Tensor(shape: [1, 13], scalars: Array(ids[17...])), state: first.state) }
            assertClose(Tensor.concatenate([first.logits, second.logits], axis: 1), whole, rtol: 1e-5, atol: 1e-5, "\(cell)")

            let prompt = [1, 2, 3]
            var context = prompt
            for _ in 0..<12 {
                let input = Tensor(shape: [1, context.count], scalars: context.map(Float.init))
                let logits: [Float] = Array(model.inferring { model(input) }.scalars.suffix(11))
                var best = 0
                for i in 1..<11 where logits[i] > logits[best] { best = i }
                context.append(best)
            }
            XCTAssertEqual(model.generate(prompt: prompt, length: 12, temperature: 0), Array(context.suffix(12)), "\(cell)")
        }
    }

    /// ASCII text takes a byte path; it must give what breaking the text into Characters
    /// gives, "\r\n" (one Character) and lone "\r" included.
    func testASCIIPathEqualsCharacterPath() throws {
        let texts = ["to be\r\nor not\rto be\n\r!\r", "\r\n\r\n\r", "plain text, no line ends", "\t~\u{7f}\u{01} a"]
        for text in texts {
            let vocabulary = Set(text).sorted()
            let ids = text.map { UInt16(vocabulary.firstIndex(of: $0)!) }
            for corpus in [CharCorpus(text: text), try CharCorpus.checked(text: text, source: "t")] {
                XCTAssertEqual(corpus.vocabulary, vocabulary, text.debugDescription)
                XCTAssertEqual(corpus.ids, ids, text.debugDescription)
                XCTAssertEqual(corpus.decode(corpus.ids.map(Int.init)), text)
            }
        }
        // Not ASCII: the Character path, the same vocabulary rule.
        let accented = "cafe\u{301} café"
        XCTAssertEqual(CharCorpus(text: accented).vocabulary, Set(accented).sorted())
    }
}
