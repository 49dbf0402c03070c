import Foundation
import GradGuardTensor

/// What one rank of a data-parallel job saw at one step, before the gradients were averaged:
/// its loss, the norm of its local gradient, the tensors where it held NaN or ±Inf, and how
/// long it computed, waited for the others and communicated.
public struct RankStatistics: Sendable, Codable, Equatable {
    /// The rank these statistics are of.
    public let rank: Int
    /// This rank's loss (nil when it had none).
    public let loss: Float?
    /// L2 norm of this rank's local gradient (NaN or ∞ when it holds such values).
    public let gradNorm: Float
    /// Tensors whose local gradient holds NaN or ±Inf, with the count of such values.
    public let nonFinite: [String: Int]
    /// Time since the previous step outside the collectives: forward and backward, and the
    /// rank's own work (rank 0 writes the records).
    public var computeSeconds: Double
    /// Waiting for the slowest rank (the statistics exchange, which every rank must reach).
    public var waitSeconds: Double
    /// Averaging the gradients.
    public var communicationSeconds: Double

    /// A rank's statistics.
    public init(
        rank: Int, loss: Float?, gradNorm: Float, nonFinite: [String: Int], computeSeconds: Double, waitSeconds: Double, communicationSeconds: Double
    ) {
        (self.rank, self.loss, self.gradNorm, self.nonFinite) = (rank, loss, gradNorm, nonFinite)
        (self.computeSeconds, self.waitSeconds, self.communicationSeconds) = (computeSeconds, waitSeconds, communicationSeconds)
    }
}

/// The distributed part of a guard step: exchange every rank's statistics, average the
/// gradients, agree on the decision, check that the parameters are the same everywhere.
public struct RankExchange {
    /// The ranks that exchange.
    public let communicator: any Communicator
    /// The gradient averaging whose buckets the exchange waits for.
    public let sync: GradientSync

    /// An exchange over `communicator` for `sync`'s gradients.
    public init(communicator: any Communicator, sync: GradientSync) { (self.communicator, self.sync) = (communicator, sync) }

    /// Per-rank statistics, the mean loss, the presence of each gradient on any rank and the
    /// activation-gradient norms of the whole batch — the same on every rank.
    public struct Gathered {
        /// Every rank's statistics, in rank order.
        public var ranks: [RankStatistics]
        /// The loss averaged over the ranks that had one.
        public var loss: Float?
        /// For each tensor, whether any rank had a gradient for it.
        public var present: [Bool]
        /// The activation-gradient norms of the whole batch, in the order given (empty when the
        /// ranks probed different activations).
        public var activationNorms: [Float]
    }

    /// Gathers every rank's local statistics (one exchange of a few numbers per tensor):
    /// `gradientSums` holds each tensor's Σg² and count of NaN and ±Inf (nil: no gradient),
    /// `activations` the norms of the probed activation gradients.
    public func gather(
        loss: Float?, gradientSums scans: [(sumSquares: Double, nonFinite: Int)?], activations: [Float], computeSeconds: Double
    ) throws -> Gathered {
        let names = sync.names
        // [loss (NaN: none given), has loss, compute seconds, per tensor: Σg², NaN+Inf count, has
        // gradient, then each activation norm].
        var mine: [Double] = [Double(loss ?? .nan), loss == nil ? 0 : 1, computeSeconds]
        mine.reserveCapacity(3 + 3 * names.count + activations.count)
        for s in scans {
            mine += [s?.sumSquares ?? 0, Double(s?.nonFinite ?? 0), s == nil ? 0 : 1]
        }
        mine += activations.map { Double($0) }
        let start = Date()
        let all = try communicator.allGatherVariable(mine)
        let wait = Date().timeIntervalSince(start)
        var ranks: [RankStatistics] = []
        var present = [Bool](repeating: false, count: names.count)
        var lossSum: Float = 0, lossCount = 0
        let fixed = 3 + 3 * names.count
        for (r, v) in all.enumerated() {
            guard v.count >= fixed else {
                throw CommunicatorError.mismatch(what: "number of parameters (\((v.count - 3) / 3) against \(names.count))", ranks: [r])
            }
            var bad: [String: Int] = [:], sumSq = 0.0, nonFinite = 0
            for i in names.indices {
                let ss = v[3 + 3 * i], nf = Int(v[4 + 3 * i])
                sumSq += ss
                nonFinite += nf
                if nf > 0 { bad[names[i]] = nf }
                if v[5 + 3 * i] != 0 { present[i] = true }
            }
            let l: Float? = v[1] != 0 ? Float(v[0]) : nil
            if let l {
                lossSum += l
                lossCount += 1
            }
            ranks.append(
                RankStatistics(
                    rank: r, loss: l, gradNorm: nonFinite > 0 ? .nan : Float(sumSq.squareRoot()), nonFinite: bad,
                    computeSeconds: v[2], waitSeconds: r == communicator.rank ? wait : 0, communicationSeconds: 0))
        }
        // The gradient reaching an activation of the global batch: each rank's part scaled by
        // 1/N (its loss is a mean over its own samples), so the norm is √(Σ‖g_r‖²)/N.
        let n = Double(communicator.size)
        let counts = all.map { $0.count - fixed }
        var combined: [Float] = []
        if counts.allSatisfy({ $0 == activations.count }) {
            combined = activations.indices.map { k in
                let ss = all.reduce(0.0) { $0 + $1[fixed + k] * $1[fixed + k] }
                return Float(ss.squareRoot() / n)
            }
        }
        let meanLoss: Float? = lossCount == 0 ? nil : lossSum / Float(lossCount)
        // The same on every rank, whichever ranks gave a loss.
        return Gathered(ranks: ranks, loss: meanLoss, present: present, activationNorms: combined)
    }
}

extension RankExchange {
    /// Checks that every rank took the same decision (they measured the same averaged
    /// gradient and hold the same memory, so they must), and fills in every rank's wait and
    /// communication times. One small exchange.
    public func agree(onDecision digest: Double, ranks: [RankStatistics], step: Int) throws -> [RankStatistics] {
        let me = ranks[communicator.rank]
        let all = try communicator.allGather([digest, me.waitSeconds, me.communicationSeconds])
        let differing = all.indices.filter { all[$0][0] != all[0][0] }
        if !differing.isEmpty {
            throw CommunicatorError.mismatch(what: "guard decision at step \(step)", ranks: differing)
        }
        var out = ranks
        for r in out.indices {
            out[r].waitSeconds = all[r][1]
            out[r].communicationSeconds = all[r][2]
        }
        return out
    }

    /// Checks that every rank holds the same parameters, one digest per tensor; the error
    /// names the first tensor that differs.
    public func checkParameters(what: String) throws {
        let mine = sync.tensors.map { Double(bitPattern: parameterDigest([$0])) }
        let all = try communicator.allGather(mine)
        for (i, name) in sync.names.enumerated() {
            let differing = all.indices.filter { all[$0][i].bitPattern != all[0][i].bitPattern }
            if !differing.isEmpty { throw CommunicatorError.mismatch(what: "\(name) \(what)", ranks: differing) }
        }
    }
}
