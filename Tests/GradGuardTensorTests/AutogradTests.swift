import GradGuard
import XCTest
import _TestSupport

final class AutogradTests: XCTestCase {
    func testBackwardOnScalarAndGradientAccumulation() {
        let w = Tensor([1, 2, 3], requiresGrad: true)
        (w * w).sum().backward()
        XCTAssertEqual(w.grad?.scalars, [2, 4, 6])
        (w * 3).sum().backward()
        XCTAssertEqual(w.grad?.scalars, [5, 7, 9], "gradients accumulate until zeroGrad")
        w.zeroGrad()
        XCTAssertNil(w.grad)
    }

    func testBackwardWithGradient() {
        let x = Tensor([1, 2], requiresGrad: true)
        let y = x * x
        y.backward(gradient: Tensor([10, 100]))
        XCTAssertEqual(x.grad?.scalars, [20, 400])
    }

    func testDocumentedExample() {
        let x = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        let w = Tensor(shape: [3, 4], scalars: (0..<12).map { Float($0) - 5 }, requiresGrad: true)
        let loss = x.matmul(w).relu().sum()
        loss.backward()
        // d/dw of sum(relu(xw)) = xᵀ · 1[xw > 0]
        let mask = x.matmul(w).gt(0)
        assertClose(w.grad!, x.transposed().matmul(mask))
    }

    func testWithoutGradAndDetach() {
        let x = Tensor([1, 2], requiresGrad: true)
        let y = withoutGrad { x * 2 }
        XCTAssertFalse(y.requiresGrad)
        XCTAssertNil(y.creator)
        let z = (x * 2).detach()
        XCTAssertFalse(z.requiresGrad)
        XCTAssertTrue(z.isLeaf)
        let u = x * 2 + z
        u.sum().backward()
        XCTAssertEqual(x.grad?.scalars, [2, 2], "no gradient flows through a detached tensor")
    }

    func testHooksSeeAndReplaceGradients() {
        let x = Tensor([1, 2, 3], requiresGrad: true)
        let h = x * 2
        var seen: [Float] = []
        h.registerHook { g in
            seen = g.scalars; return nil
        }
        x.registerHook { g in g * 0.5 }
        (h * h).sum().backward()
        XCTAssertEqual(seen, [4, 8, 12])  // d(h²)/dh = 2h
        XCTAssertEqual(x.grad?.scalars, [4, 8, 12])  // 2 · 2h · ½
    }

    func testNodesCarryOpLabelsAndModuleNames() {
        let x = Tensor([1, 2], requiresGrad: true)
        let y = Autograd.withModule("encoder.fc") { x.tanh() }
        XCTAssertEqual(y.creator?.op, "tanh")
        XCTAssertEqual(y.creator?.module, "encoder.fc")
        let z = y * 2
        XCTAssertNil(z.creator?.module)
        XCTAssertGreaterThan(z.creator!.index, y.creator!.index)
    }

    func testAnomalyModeNamesTheForwardOpAndModule() {
        let x = Tensor([1, -1], requiresGrad: true)
        XCTAssertThrowsError(
            try withAnomalyDetection {
                let y = Autograd.withModule("decoder.0") { (x - 1).log() }  // log(0) = -inf, log(-2) = nan
                y.sum().backward()
            }
        ) { error in
            guard let e = error as? AnomalyError else { return XCTFail("wrong error \(error)") }
            XCTAssertEqual(e.phase, .forward)
            XCTAssertEqual(e.op, "log")
            XCTAssertEqual(e.module, "decoder.0")
            XCTAssertEqual(e.nanCount, 1)
            XCTAssertEqual(e.infCount, 1)
            XCTAssertNotNil(e.nodeIndex)
            XCTAssertTrue(e.description.contains("log") && e.description.contains("decoder.0"))
        }
    }

    func testAnomalyModeCatchesNonFiniteGradientsInBackward() {
        let x = Tensor([0, 4], requiresGrad: true)
        XCTAssertThrowsError(
            try withAnomalyDetection {
                x.sqrt().sum().backward()  // finite forward, d√x/dx = ∞ at 0
            }
        ) { error in
            let e = error as! AnomalyError
            XCTAssertEqual(e.phase, .backward)
            XCTAssertEqual(e.op, "sqrt")
            XCTAssertEqual(e.infCount, 1)
        }
        XCTAssertNoThrow(try withAnomalyDetection { (x + 1).sqrt().sum().backward() })
    }

    func testGraphIsReleasedAfterBackwardUnlessRetained() {
        let x = Tensor([1, 2], requiresGrad: true)
        let y = (x * x).sum()
        y.backward(retainGraph: true)
        y.backward()
        XCTAssertEqual(x.grad?.scalars, [4, 8])
    }

    func testGradientStorageIsNotShared() {
        // add's rule hands the same gradient to both inputs; scaling one must not scale the other.
        let a = Tensor([1], requiresGrad: true), b = Tensor([1], requiresGrad: true)
        (a + b).sum().backward()
        a.grad!.withUnsafeMutableScalars { $0[0] = 100 }
        XCTAssertEqual(b.grad?.scalars, [1])
    }
}

final class GraphLifetimeTests: XCTestCase {
    /// A forward pass that is never back-propagated must not leak: no rule may retain the
    /// tensor it belongs to.
    func testUnusedGraphsAreFreed() {
        let x = Tensor.randn([4, 3], requiresGrad: true)
        let ops: [(String, (Tensor) -> Tensor)] = [
            ("exp", { $0.exp() }), ("sqrt", { $0.abs().sqrt() }), ("tanh", { $0.tanh() }), ("sigmoid", { $0.sigmoid() }),
            ("softmax", { $0.softmax(axis: 1) }), ("logSoftmax", { $0.logSoftmax(axis: 0) }),
            ("pow", { $0.abs().pow(Tensor(2)) }), ("relu", { $0.relu() }), ("silu", { $0.silu() }), ("gelu", { $0.gelu() }),
            ("matmul", { $0.matmul($0.transposed()) }), ("max", { $0.max(axis: 1).values })
        ]
        for (name, op) in ops {
            weak var weakOut: Tensor?
            do {
                let y = op(x)
                weakOut = y
                XCTAssertNotNil(weakOut)
            }
            XCTAssertNil(weakOut, "\(name): the output of an abandoned forward pass was not freed")
        }
    }
}
