import Foundation
import GradGuard

/// What a GuardBench task predicts, which loss trains it and how its validation score is
/// read (higher is better in every case).
package enum BenchObjective: String, Sendable, Codable {
    /// Cross-entropy over classes; score: accuracy.
    case crossEntropy = "cross-entropy"
    /// Mean squared error; score: R² (1 − MSE / variance of the targets), at least −1.
    case mse
    /// Binary cross-entropy on logits over independent labels; score: label accuracy.
    case bce
}

/// A training pool and a validation set drawn from one generator: inputs in their model's
/// layout, targets class indices (cross-entropy), values (MSE) or 0/1 labels (BCE).
package struct BenchData {
    package var trainX: Tensor, trainY: Tensor
    package var validX: Tensor, validY: Tensor
    package let objective: BenchObjective
    /// Classes (cross-entropy), outputs (MSE, BCE).
    package let outputs: Int
    /// The score of guessing (the most frequent class, or a constant prediction).
    package let chance: Double

    /// Rows of the training pool.
    package var count: Int { trainX.shape[0] }

    /// The `i`-th batch of `size` rows: consecutive rows of the pool, which was drawn in
    /// random order, wrapping round.
    package func batch(_ i: Int, size: Int) -> (x: Tensor, y: Tensor) {
        let rows = BenchData.rows(i, size: size, of: count)
        return (trainX.narrow(axis: 0, start: rows.lowerBound, length: size), trainY.narrow(axis: 0, start: rows.lowerBound, length: size))
    }

    /// The rows of batch `i` of `size` in a pool of `count`: consecutive, wrapping round.
    package static func rows(_ i: Int, size: Int, of count: Int) -> Range<Int> {
        let start = (i * size) % Swift.max(count - size + 1, 1)
        return start..<(start + size)
    }
}

/// Generators of GuardBench's data, each from a seed.
package enum BenchDataSets {
    /// Targets of a random two-layer tanh teacher on Gaussian inputs `[N, features]`:
    /// the arg-max of `outputs` logits (cross-entropy), their values (MSE) or their signs (BCE).
    package static func teacher(
        features: Int, outputs: Int, objective: BenchObjective, train: Int, valid: Int, noise: Float = 0.05, seed: UInt64
    ) -> BenchData {
        var g = RandomGenerator(seed: seed)
        let hidden = 32
        let w1 = Tensor.randn([features, hidden], std: 1.5 / Float(features).squareRoot(), generator: &g)
        let w2 = Tensor.randn([hidden, outputs], std: 1 / Float(hidden).squareRoot(), generator: &g)
        func draw(_ n: Int) -> (Tensor, Tensor) {
            let x = Tensor.randn([n, features], generator: &g)
            let logits = withoutGrad { x.matmul(w1).tanh().matmul(w2) } + Tensor.randn([n, outputs], std: noise, generator: &g)
            let v = logits.scalars
            switch objective {
            case .crossEntropy:
                let y = (0..<n).map { r in Float((0..<outputs).max { v[r * outputs + $0] < v[r * outputs + $1] }!) }
                return (x, Tensor(shape: [n], scalars: y))
            case .mse:
                return (x, logits * 2)
            case .bce:
                return (x, Tensor(shape: [n, outputs], scalars: v.map { $0 > 0 ? 1 : 0 }))
            }
        }
        let (tx, ty) = draw(train), (vx, vy) = draw(valid)
        let chance: Double
        switch objective {
        case .crossEntropy: chance = majority(vy.scalars, classes: outputs)
        case .mse: chance = 0
        case .bce: chance = 0.5
        }
        return BenchData(trainX: tx, trainY: ty, validX: vx, validY: vy, objective: objective, outputs: outputs, chance: chance)
    }

    /// Images `[N, 1, side, side]` of a bar through the centre region — horizontal, vertical or
    /// either diagonal (4 classes) — at a random offset, on Gaussian noise.
    package static func bars(side: Int = 12, train: Int, valid: Int, noise: Float = 0.4, seed: UInt64) -> BenchData {
        var g = RandomGenerator(seed: seed)
        func draw(_ n: Int) -> (Tensor, Tensor) {
            var x = [Float](repeating: 0, count: n * side * side), y = [Float](repeating: 0, count: n)
            for i in 0..<n {
                let c = Int(g.next() % 4)
                y[i] = Float(c)
                let off = Int(g.next() % UInt64(side / 2)) - side / 4
                for p in 0..<(side * side) { x[i * side * side + p] = Float(g.nextNormal()) * noise }
                for t in 0..<side {
                    let (r, col): (Int, Int)
                    switch c {
                    case 0: (r, col) = (side / 2 + off, t)
                    case 1: (r, col) = (t, side / 2 + off)
                    case 2: (r, col) = (t, (t + off + side) % side)
                    default: (r, col) = (t, (side - 1 - t + off + side) % side)
                    }
                    x[i * side * side + r * side + col] += 1
                }
            }
            return (Tensor(shape: [n, 1, side, side], scalars: x), Tensor(shape: [n], scalars: y))
        }
        let (tx, ty) = draw(train), (vx, vy) = draw(valid)
        return BenchData(trainX: tx, trainY: ty, validX: vx, validY: vy, objective: .crossEntropy, outputs: 4, chance: majority(vy.scalars, classes: 4))
    }

    /// Noisy chirps `[N, length, 1]`: a sine whose frequency rises (class 1) or falls (class 0)
    /// over the sequence, random phase and amplitude.
    package static func chirps(length: Int, train: Int, valid: Int, noise: Float = 0.3, seed: UInt64) -> BenchData {
        var g = RandomGenerator(seed: seed)
        func draw(_ n: Int) -> (Tensor, Tensor) {
            var x = [Float](repeating: 0, count: n * length), y = [Float](repeating: 0, count: n)
            for i in 0..<n {
                let rising = g.next() % 2 == 0
                y[i] = rising ? 1 : 0
                let phase = g.nextUniform() * 2 * Double.pi, amp = 0.7 + 0.6 * g.nextUniform()
                let f0 = 0.05 + 0.05 * g.nextUniform(), f1 = 0.25 + 0.1 * g.nextUniform()
                var angle = phase
                for t in 0..<length {
                    let u = Double(t) / Double(length - 1)
                    angle += 2 * Double.pi * (rising ? f0 + (f1 - f0) * u : f1 - (f1 - f0) * u)
                    x[i * length + t] = Float(amp * Foundation.sin(angle)) + Float(g.nextNormal()) * noise
                }
            }
            return (Tensor(shape: [n, length, 1], scalars: x), Tensor(shape: [n], scalars: y))
        }
        let (tx, ty) = draw(train), (vx, vy) = draw(valid)
        return BenchData(trainX: tx, trainY: ty, validX: vx, validY: vy, objective: .crossEntropy, outputs: 2, chance: majority(vy.scalars, classes: 2))
    }

    /// Sequences `[N, length, 4]` of random one-hot symbols whose class is the first symbol:
    /// the information sits `length` steps before the output (a long dependency).
    package static func firstSymbol(length: Int, train: Int, valid: Int, seed: UInt64) -> BenchData {
        var g = RandomGenerator(seed: seed)
        func draw(_ n: Int) -> (Tensor, Tensor) {
            var x = [Float](repeating: 0, count: n * length * 4), y = [Float](repeating: 0, count: n)
            for i in 0..<n {
                for t in 0..<length {
                    let s = Int(g.next() % 4)
                    x[(i * length + t) * 4 + s] = 1
                    if t == 0 { y[i] = Float(s) }
                }
            }
            return (Tensor(shape: [n, length, 4], scalars: x), Tensor(shape: [n], scalars: y))
        }
        let (tx, ty) = draw(train), (vx, vy) = draw(valid)
        return BenchData(trainX: tx, trainY: ty, validX: vx, validY: vy, objective: .crossEntropy, outputs: 4, chance: majority(vy.scalars, classes: 4))
    }

    /// The adding problem `[N, length, 2]` (values and two markers; the target is the sum of
    /// the marked values), regression.
    package static func adding(length: Int, train: Int, valid: Int, seed: UInt64) -> BenchData {
        let task = LongDependencyTask.adding
        let t = task.dataset(count: train, t: length, seed: seed), v = task.dataset(count: valid, t: length, seed: seed &+ 1)
        return BenchData(trainX: t.inputs, trainY: t.targets, validX: v.inputs, validY: v.targets, objective: .mse, outputs: 1, chance: 0)
    }

    /// Windows of the built-in corpus, `[N, length]` character indices with the next characters
    /// as targets (`[N, length]`), scored by next-character accuracy.
    package static func characters(length: Int, train: Int, valid: Int, seed: UInt64) -> (BenchData, vocabulary: Int) {
        let corpus = CharCorpus(text: BuiltinCorpus.text)
        let ids = corpus.encode(BuiltinCorpus.text)
        var g = RandomGenerator(seed: seed)
        let cut = ids.count * 9 / 10
        func draw(_ n: Int, _ range: Range<Int>) -> (Tensor, Tensor) {
            var x = [Float](), y = [Float]()
            x.reserveCapacity(n * length)
            y.reserveCapacity(n * length)
            for _ in 0..<n {
                let s = range.lowerBound + Int(g.next() % UInt64(range.count - length - 1))
                for t in 0..<length {
                    x.append(Float(ids[s + t]))
                    y.append(Float(ids[s + t + 1]))
                }
            }
            return (Tensor(shape: [n, length], scalars: x), Tensor(shape: [n, length], scalars: y))
        }
        let (tx, ty) = draw(train, 0..<cut), (vx, vy) = draw(valid, cut..<ids.count)
        let v = corpus.vocabulary.count
        return (
            BenchData(
                trainX: tx, trainY: ty, validX: vx, validY: vy, objective: .crossEntropy, outputs: v, chance: majority(vy.scalars, classes: v)),
            v
        )
    }

    /// The share of the most frequent class.
    static func majority(_ labels: [Float], classes: Int) -> Double {
        var counts = [Int](repeating: 0, count: Swift.max(classes, 1))
        for l in labels where Int(l) >= 0 && Int(l) < counts.count { counts[Int(l)] += 1 }
        return Double(counts.max() ?? 0) / Double(Swift.max(labels.count, 1))
    }
}
