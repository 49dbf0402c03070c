import GradGuard
import XCTest
import _TestSupport

/// Sub-modules and tensors held where discovery does not look.
final class HiddenState: Module, UnaryLayer {
    let pair = (Linear(inputSize: 2, outputSize: 2), Linear(inputSize: 2, outputSize: 2))
    let grid = [[Linear(inputSize: 2, outputSize: 2)]]
    lazy var late = Linear(inputSize: 2, outputSize: 2)
    let scale = Tensor(2)  // looks like a constant, but is stored as a plain Tensor
    let plainCount = 3
    let names = ["a", "b"]
    func forward(_ x: Tensor) -> Tensor { pair.0(x) * scale }
}

/// The declared forms: a dictionary of modules, an optional child, a constant, a buffer.
final class Declared: Module, UnaryLayer {
    let heads: [String: Module] = ["b": Linear(inputSize: 2, outputSize: 1), "a": Linear(inputSize: 2, outputSize: 1, bias: false)]
    let extra: Linear? = Linear(inputSize: 2, outputSize: 2)
    let layers: [any UnaryLayer] = [Linear(inputSize: 2, outputSize: 2), ReLU()]
    let gains: [String: Tensor] = ["x": Tensor.ones([2], requiresGrad: true)]
    @Constant var mask = Tensor([1, 0])
    @Buffer var count = Tensor.zeros([1])
    func forward(_ x: Tensor) -> Tensor { x * mask }
}

final class DiscoveryTests: XCTestCase {
    func testPropertiesDiscoveryCannotSeeAreNamedOnce() {
        let m = HiddenState()
        let found = m.undiscoveredProperties()
        XCTAssertEqual(found.map(\.property).sorted(), ["grid", "late", "pair", "scale"])
        XCTAssertEqual(found.first { $0.property == "pair" }?.problem, .hidden("tuple"))
        XCTAssertEqual(found.first { $0.property == "late" }?.problem, .lazy)
        XCTAssertEqual(found.first { $0.property == "scale" }?.problem, .constantTensor)
        XCTAssertTrue(found.first { $0.property == "pair" }!.description.contains("HiddenState.pair"))
        // Reported through the handler on first use, once per class and property.
        var seen: [DiscoveryWarning] = []
        let saved = Module.discoveryWarningHandler
        Module.discoveryWarningHandler = { seen.append($0) }
        defer { Module.discoveryWarningHandler = saved }
        _ = m(Tensor.ones([1, 2]))
        _ = HiddenState()(Tensor.ones([1, 2]))
        XCTAssertEqual(seen.map(\.property).sorted(), ["grid", "late", "pair", "scale"])
    }

    func testDeclaredFormsAreFoundAndConstantsAreNotParameters() {
        let m = Declared()
        XCTAssertEqual(m.undiscoveredProperties(), [])
        XCTAssertEqual(
            m.namedParameters().map(\.name),
            ["gains.x", "heads.a.weight", "heads.b.weight", "heads.b.bias", "extra.weight", "extra.bias", "layers.0.weight", "layers.0.bias"])
        XCTAssertFalse(m.stateDict().keys.contains("mask"))
        XCTAssertTrue(m.stateDict().keys.contains("count"))
        XCTAssertFalse(m.parameters().contains { $0 === m.mask })
    }

    func testFreezeKeepsParametersButStopsTraining() throws {
        let m = Sequential(Linear(inputSize: 2, outputSize: 2), ReLU(), Linear(inputSize: 2, outputSize: 1))
        let first = m.namedModules()[1].module
        first.freeze()
        XCTAssertEqual(m.parameters().count, 4)
        XCTAssertEqual(m.parameters().map(\.requiresGrad), [false, false, true, true])
        XCTAssertEqual(m.undiscoveredProperties() + first.undiscoveredProperties(), [])
        let before = m.parameters()[0].copy()
        let opt = SGD(m.parameters(), lr: 0.5)
        m(Tensor.ones([3, 2])).sum().backward()
        opt.step()
        XCTAssertEqual(m.parameters()[0].scalars, before.scalars)
        first.unfreeze()
        XCTAssertTrue(m.parameters().allSatisfy(\.requiresGrad))
    }

    func testEveryBuiltInLayerIsFullyDiscovered() {
        let layers: [Module] = [
            Linear(inputSize: 2, outputSize: 2), Embedding(numEmbeddings: 4, embeddingDim: 2),
            Conv2d(1, 2, kernelSize: 3), Conv1d(inChannels: 1, outChannels: 2, kernelSize: 3),
            BatchNorm2d(numFeatures: 2), LayerNorm(2), LSTM(inputSize: 2, hiddenSize: 2, numLayers: 2), GRU(inputSize: 2, hiddenSize: 2),
            RNN(inputSize: 2, hiddenSize: 2), Dropout(p: 0.1), Sequential(Linear(inputSize: 2, outputSize: 2), ReLU())
        ]
        for l in layers {
            XCTAssertEqual(l.undiscoveredProperties(), [], "\(type(of: l))")
            for (_, child) in l.namedModules() { XCTAssertEqual(child.undiscoveredProperties(), [], "\(type(of: child))") }
        }
    }
}
