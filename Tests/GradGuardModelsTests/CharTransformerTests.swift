import Foundation
import GradGuard
import XCTest
import _TestSupport

final class CharTransformerTests: XCTestCase {
    /// Each position's logits depend on the characters before it only.
    func testEveryPositionSeesOnlyThePast() {
        DefaultGenerator.seed(4)
        let model = CharTransformer(vocabularySize: 9, width: 16, heads: 2, layers: 2, context: 12)
        let a: [Float] = (0..<10).map { Float($0 % 9) }
        var b = a
        b[6] = 8
        let ya = model.inferring { model(Tensor(shape: [1, 10], scalars: a)) }, yb = model.inferring { model(Tensor(shape: [1, 10], scalars: b)) }
        XCTAssertEqual(Array(ya.scalars[..<(6 * 9)]), Array(yb.scalars[..<(6 * 9)]), "positions before the change are unchanged")
        XCTAssertNotEqual(Array(ya.scalars[(6 * 9)...]), Array(yb.scalars[(6 * 9)...]))
        // Greedy generation is the loop that reads the last `context` characters each time.
        var context = [1, 2, 3]
        for _ in 0..<15 {
            let window = Array(context.suffix(12))
            let logits = Array(model.inferring { model(Tensor(shape: [1, window.count], scalars: window.map(Float.init))) }.scalars.suffix(9))
            context.append(logits.indices.max { logits[$0] < logits[$1] }!)
        }
        XCTAssertEqual(model.generate(prompt: [1, 2, 3], length: 15, temperature: 0), Array(context.suffix(15)))
    }

    /// Names as PyTorch's modules would give them, GPT-2's initialisation scale, and every
    /// parameter trained.
    func testNamesInitialisationAndTraining() throws {
        DefaultGenerator.seed(5)
        let corpus = CharCorpus(text: BuiltinCorpus.text)
        let (train, valid) = try corpus.datasets(length: 16)
        let model = CharTransformer(vocabularySize: corpus.vocabulary.count, width: 16, heads: 2, layers: 1, context: 16, qkNorm: true)
        let names = model.namedParameters().map(\.name)
        XCTAssertTrue(names.contains("blocks.0.self_attn.in_proj_weight"), "\(names)")
        XCTAssertTrue(names.contains("blocks.0.self_attn.q_norm.weight"))
        XCTAssertTrue(names.contains("blocks.0.linear2.bias"))
        XCTAssertEqual(model.undiscoveredProperties(), [])
        let w = model.token.weight.scalars
        let std = (w.map { Double($0 * $0) }.reduce(0, +) / Double(w.count)).squareRoot()
        XCTAssertEqual(std, 0.02, accuracy: 0.003)
        var c = testTrainerConfig(epochs: 1, batchSize: 16, seed: 5, maxSteps: 40)
        c.moduleNormsEvery = 10
        let trainer = try Trainer(model: model, optimizer: AdamW(model.parameters(), lr: 3e-3), config: c) { m, b in
            (m as! CharTransformer).loss(b.inputs, b.targets, zLossWeight: 1e-4)
        }
        var logits: [Float] = []
        trainer.callbacks.afterStep = { r, o in
            if let l = r.maxAttentionLogit { logits.append(l) }
            XCTAssertEqual(o.stats.attentionLogits?.map(\.module), ["blocks.0.self_attn"])
        }
        let result = try trainer.fit(train: train, validation: valid)
        XCTAssertEqual(logits.count, 40, "the largest logit is recorded at every step")
        XCTAssertLessThan(try XCTUnwrap(result.lastEvaluation?["loss"]), 0.8 * Foundation.log(Double(corpus.vocabulary.count)))
        XCTAssertTrue(model.parameters().allSatisfy { $0.grad != nil }, "every parameter receives a gradient")
    }
}
