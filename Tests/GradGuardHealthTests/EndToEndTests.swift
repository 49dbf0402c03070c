import GradGuard
import XCTest
import _TestSupport

/// The whole health layer on real training, small enough to run in seconds.
final class EndToEndTests: XCTestCase {
    /// Vanilla ReLU RNN → Linear on the last hidden state.
    final class AddingModel: Module {
        let rnn: RNN
        let head: Linear
        init(hidden: Int) {
            // Recurrent weights N(0, 1/H): spectral radius ≈ 1, so a few large updates push
            // it above 1 and the signal grows through the 40 steps — the classic explosion.
            rnn = RNN(inputSize: 2, hiddenSize: hidden, nonlinearity: .relu, recurrentInit: .normal(std: 1 / Float(hidden).squareRoot()))
            head = Linear(inputSize: hidden, outputSize: 1)
            super.init()
        }
        func callAsFunction(_ x: Tensor) -> Tensor { scoped { head(rnn(x).h.squeezed(0)) } }
    }

    /// A batch of the adding problem: [T, B, 2] inputs (values, markers) and [B, 1] sums.
    func addingBatch(steps: Int, batch: Int, _ g: inout RandomGenerator) -> (Tensor, Tensor) {
        var x = [Float](repeating: 0, count: steps * batch * 2), y = [Float](repeating: 0, count: batch)
        for b in 0..<batch {
            let i = Int(g.nextUniform() * Double(steps / 2)), j = steps / 2 + Int(g.nextUniform() * Double(steps / 2))
            for t in 0..<steps {
                let v = Float(g.nextUniform())
                x[(t * batch + b) * 2] = v
                if t == i || t == j { x[(t * batch + b) * 2 + 1] = 1; y[b] += v }
            }
        }
        return (Tensor(shape: [steps, batch, 2], scalars: x), Tensor(shape: [batch, 1], scalars: y))
    }

    func train(guarded: Bool, steps: Int = 150) throws -> (losses: [Float], firstFinding: Finding?, guardian: GradientGuard?) {
        DefaultGenerator.seed(5)
        let model = AddingModel(hidden: 24)
        let opt = SGD(model.parameters(), lr: 0.1)
        let monitor = HealthMonitor()
        let health = GradientHealth(model: model)
        let guardian = guarded ? GradientGuard(model: model, optimizer: opt, policy: GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: 1))) : nil
        var g = RandomGenerator(seed: 17)
        var losses: [Float] = [], first: Finding? = nil
        for s in 0..<steps {
            let (x, y) = addingBatch(steps: 40, batch: 16, &g)
            opt.zeroGrad()
            let loss = mseLoss(model(x), y)
            loss.backward()
            losses.append(loss.item)
            if let guardian {
                _ = try guardian.step(loss: loss.item)
            } else {
                let stats = health.observe(step: s, loss: loss.item)
                let findings = monitor.inspect(stats)
                monitor.record(stats, healthy: !findings.contains { $0.kind.isExploding })
                if first == nil, let f = findings.first(where: { $0.kind.isExploding }) { first = f }
                opt.step()
                if !loss.item.isFinite { break }
            }
        }
        return (losses, first ?? guardian?.incidents.first?.findings.first, guardian)
    }

    func testVanillaRNNExplodesUnguardedAndTrainsGuarded() throws {
        let unguarded = try train(guarded: false)
        let last = unguarded.losses.last!
        XCTAssertTrue(!last.isFinite || last > 10 * unguarded.losses[0], "unguarded run did not diverge: \(unguarded.losses.suffix(5))")
        let finding = try XCTUnwrap(unguarded.firstFinding, "no detector fired on the exploding run")
        XCTAssertEqual(finding.blame.first?.module, "rnn", "blame: \(finding.blame)")

        let guarded: (losses: [Float], firstFinding: Finding?, guardian: GradientGuard?)
        do { guarded = try train(guarded: true) } catch let e as TrainingDiverged { XCTFail(e.incidents.map(\.summary).joined(separator: "\n")); return }
        XCTAssertTrue(guarded.losses.allSatisfy(\.isFinite))
        let early = guarded.losses.prefix(20).reduce(0, +) / 20, late = guarded.losses.suffix(20).reduce(0, +) / 20
        XCTAssertLessThan(late, early, "guarded loss did not decrease: \(early) → \(late)")
    }

    func testDeepMLPWithUnitNormalInitIsDiagnosedAsInitialisation() throws {
        DefaultGenerator.seed(8)
        var layers: [any UnaryLayer] = []
        for _ in 0..<20 { layers += [Linear(inputSize: 32, outputSize: 32, weightInit: .normal(std: 1)), ReLU()] }
        layers.append(Linear(inputSize: 32, outputSize: 4, weightInit: .normal(std: 1)))
        let model = Sequential(layers)
        let opt = SGD(model.parameters(), lr: 0.01)
        let guardian = GradientGuard(model: model, optimizer: opt)
        let x = Tensor.randn([32, 32]), y = Tensor.randint([32], high: 4)
        for _ in 0..<3 {
            opt.zeroGrad()
            let loss = crossEntropy(model(x), y)
            loss.backward()
            // The guard may halt this run (TrainingDiverged); any other error fails the test.
            do { _ = try guardian.step(loss: loss.item) } catch is TrainingDiverged { break }
        }
        let incident = try XCTUnwrap(guardian.incidents.first, "no incident")
        XCTAssertEqual(incident.causes.first?.kind, .initialisation, incident.summary)
        XCTAssertTrue(incident.causes.first?.evidence.contains("0.weight std") ?? false, incident.summary)
        XCTAssertTrue(incident.recommendations.contains { $0.contains("kaimingNormal") }, incident.summary)
    }
}
