import GradGuard
import XCTest
import _TestSupport

final class Block: Module, UnaryLayer {
    let fc = Linear(inputSize: 4, outputSize: 3)
    let act = Tanh()
    @ParameterInfo(key: "scale_param") var scale = Tensor.ones([3], requiresGrad: true)
    @Buffer var seen = Tensor.zeros([1])
    func forward(_ x: Tensor) -> Tensor { act(fc(x)) * scale }
}

final class TwoLevel: Module, UnaryLayer {
    let encoder = Block()
    let heads = [Linear(inputSize: 3, outputSize: 2), Linear(inputSize: 3, outputSize: 2, bias: false)]
    func forward(_ x: Tensor) -> Tensor {
        let h = encoder(x)
        return heads[0](h) + heads[1](h)
    }
}

final class ModuleTests: XCTestCase {
    func testDottedNamesLikePyTorch() {
        let m = TwoLevel()
        XCTAssertEqual(
            m.namedParameters().map(\.name),
            [
                "encoder.scale_param", "encoder.fc.weight", "encoder.fc.bias",
                "heads.0.weight", "heads.0.bias", "heads.1.weight"
            ])
        XCTAssertEqual(m.namedBuffers().map(\.name), ["encoder.seen"])
        XCTAssertEqual(m.namedModules().map(\.name), ["", "encoder", "encoder.fc", "encoder.act", "heads.0", "heads.1"])
        XCTAssertEqual(Set(m.stateDict().keys).count, 7)
        let seq = Sequential(Linear(inputSize: 2, outputSize: 3), ReLU(), Linear(inputSize: 3, outputSize: 1))
        XCTAssertEqual(seq.namedParameters().map(\.name), ["0.weight", "0.bias", "2.weight", "2.bias"])
        XCTAssertEqual(seq.parameters().map(\.shape), [[3, 2], [3], [1, 3], [1]])
    }

    func testOpsRecordTheModuleThatRanThem() {
        let m = TwoLevel()
        let y = m(Tensor.ones([2, 4]))
        XCTAssertEqual(y.creator?.op, "add")
        XCTAssertEqual(y.creator?.module, "")
        let fcWeight = m.encoder.fc.weight
        XCTAssertEqual(fcWeight.name, "encoder.fc.weight")
        // Walk a recorded layer directly.
        let h = m.encoder(Tensor.ones([1, 4]))
        XCTAssertEqual(h.creator?.module, "encoder")
        XCTAssertEqual(m.encoder.fc(Tensor.ones([1, 4])).creator?.module, "encoder.fc")
    }

    func testDefaultInitialisationBoundsMatchPyTorch() {
        DefaultGenerator.seed(0)
        let lin = Linear(inputSize: 400, outputSize: 300)
        let bound: Float = 1 / 20
        XCTAssertTrue(lin.weight.scalars.allSatisfy { Swift.abs($0) <= bound })
        XCTAssertGreaterThan(lin.weight.abs().max().item, bound * 0.99)
        // U(-b, b) has variance b²/3.
        XCTAssertEqual(lin.weight.variance().item, bound * bound / 3, accuracy: bound * bound / 3 * 0.03)
        let emb = Embedding(numEmbeddings: 500, embeddingDim: 100)
        XCTAssertEqual(emb.weight.variance().item, 1, accuracy: 0.03)
        XCTAssertTrue(lin.weight.requiresGrad && emb.weight.requiresGrad)
        // Kaiming normal, fan-in mode, ReLU gain: variance 2 / fan-in, fan-in = 50 · 3 · 3.
        let k = Init.kaimingNormal([64, 50, 3, 3], nonlinearity: .relu)
        XCTAssertEqual(Init.fanIn([64, 50, 3, 3]), 450)
        XCTAssertEqual(k.variance().item, 2.0 / 450, accuracy: 2.0 / 450 * 0.05)
    }

    func testTrainEvalAndDropout() {
        let drop = Dropout(p: 0.3, generator: RandomGenerator(seed: 1))
        let seq = Sequential(Linear(inputSize: 2, outputSize: 2), drop)
        XCTAssertTrue(drop.training)
        let x = Tensor.ones([20_000])
        let y = drop(x)
        let zeros = y.scalars.filter { $0 == 0 }.count
        XCTAssertEqual(Double(zeros) / 20_000, 0.3, accuracy: 0.015)
        XCTAssertTrue(y.scalars.allSatisfy { $0 == 0 || Swift.abs($0 - 1 / 0.7) < 1e-6 })
        seq.eval()
        XCTAssertFalse(drop.training)
        XCTAssertEqual(drop(x).scalars, x.scalars)
        seq.train()
        XCTAssertTrue(drop.training)
    }

    func testLoadStateDictReportsMismatchesByNameAndChangesNothing() throws {
        let m = Sequential(Linear(inputSize: 2, outputSize: 3), Linear(inputSize: 3, outputSize: 1))
        let before = m.parameters().map(\.scalars)
        var sd = m.stateDict().mapValues { $0.copy() }
        sd["1.bias"] = nil
        sd["2.weight"] = Tensor.zeros([1])
        XCTAssertThrowsError(try m.load(stateDict: sd)) { e in
            XCTAssertEqual(e as? StateDictError, .keyMismatch(missing: ["1.bias"], unexpected: ["2.weight"]))
            XCTAssertTrue("\(e)".contains("1.bias") && "\(e)".contains("2.weight"))
        }
        let report = try m.load(stateDict: sd, strict: false)
        XCTAssertEqual(report.missingKeys, ["1.bias"])
        XCTAssertEqual(report.unexpectedKeys, ["2.weight"])

        var wrong = m.stateDict().mapValues { Tensor.zeros($0.shape) }
        wrong["1.weight"] = Tensor.zeros([3, 1])
        XCTAssertThrowsError(try m.load(stateDict: wrong)) { e in
            XCTAssertEqual(e as? StateDictError, .shapeMismatch(key: "1.weight", expected: [1, 3], found: [3, 1]))
        }
        XCTAssertEqual(m.parameters().map(\.scalars), before, "a failed load leaves the model unchanged")
    }

    func testPyTorchStateDictLoadsAndGivesPyTorchOutputs() throws {
        // Sequential(Linear(6,8), Tanh, Linear(8,8), ReLU, Linear(8,3)) saved by
        // safetensors.torch.save_file; the first step's logits come from the same weights.
        let mlp = Sequential(
            Linear(inputSize: 6, outputSize: 8), Tanh(), Linear(inputSize: 8, outputSize: 8),
            ReLU(), Linear(inputSize: 8, outputSize: 3))
        try mlp.load(stateDict: Safetensors.read(fixturePath("mlp_state.safetensors")))
        let f = try fixture("mlp_train.safetensors")
        assertClose(mlp(try f.at("mlp.x")), try f.at("mlp.step0.logits"))
    }
}
