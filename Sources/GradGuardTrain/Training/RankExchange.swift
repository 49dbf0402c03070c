import Foundation
import GradGuardHealth
import GradGuardTensor

/// The distributed part of a guard step: exchange every rank's statistics, average the
/// gradients, and name the ranks behind a finding.
struct RankExchange {
    let communicator: any Communicator
    let sync: GradientSync

    /// Per-rank statistics, the mean loss, the presence of each gradient on any rank and the
    /// activation-gradient norms of the whole batch — the same on every rank.
    struct Gathered {
        var ranks: [RankStatistics]
        var loss: Float?
        var present: [Bool]
        var activations: [ActivationGradient]
    }

    /// Gathers every rank's local statistics (one exchange of a few numbers per tensor).
    func gather(loss: Float?, activations: [ActivationGradient], computeSeconds: Double) throws -> Gathered {
        let params = sync.parameters
        let scans = localGradientSums(params)
        // [loss (NaN: none given), has loss, compute seconds, per tensor: Σg², NaN+Inf count, has
        // gradient, then each activation norm].
        var mine: [Double] = [Double(loss ?? .nan), loss == nil ? 0 : 1, computeSeconds]
        mine.reserveCapacity(3 + 3 * params.count + activations.count)
        for s in scans {
            mine += [s?.sumSquares ?? 0, Double(s?.nonFinite ?? 0), s == nil ? 0 : 1]
        }
        mine += activations.map { Double($0.norm) }
        let start = Date()
        let all = try communicator.allGatherVariable(mine)
        let wait = Date().timeIntervalSince(start)
        var ranks: [RankStatistics] = []
        var present = [Bool](repeating: false, count: params.count)
        var lossSum: Float = 0, lossCount = 0
        let fixed = 3 + 3 * params.count
        for (r, v) in all.enumerated() {
            guard v.count >= fixed else {
                throw CommunicatorError.mismatch(what: "number of parameters (\((v.count - 3) / 3) against \(params.count))", ranks: [r])
            }
            var bad: [String: Int] = [:], sumSq = 0.0, nonFinite = 0
            for i in params.indices {
                let ss = v[3 + 3 * i], nf = Int(v[4 + 3 * i])
                sumSq += ss
                nonFinite += nf
                if nf > 0 { bad[params[i].name] = nf }
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
        var combined: [ActivationGradient] = []
        if counts.allSatisfy({ $0 == activations.count }) {
            combined = activations.indices.map { k in
                let ss = all.reduce(0.0) { $0 + $1[fixed + k] * $1[fixed + k] }
                return ActivationGradient(name: activations[k].name, norm: Float(ss.squareRoot() / n))
            }
        }
        let meanLoss: Float? = lossCount == 0 ? nil : lossSum / Float(lossCount)
        // The same on every rank, whichever ranks gave a loss.
        return Gathered(ranks: ranks, loss: meanLoss, present: present, activations: combined)
    }
}

extension RankExchange {
    /// A number that differs when two decisions differ.
    static func digest(_ d: GuardDecision) -> Double {
        var code: Double
        switch d.disposition {
        case .apply: code = 1
        case let .skip(noSnapshot): code = noSnapshot ? 3 : 2
        case let .rollback(toStep, previous): code = 4 + Double(toStep) * 2 + (previous ? 1 : 0)
        }
        code = code * 8 + (d.backOff ? 4 : 0) + (d.escalated ? 2 : 0) + (d.halt ? 1 : 0)
        return code
    }

    /// Checks that every rank took the same decision (they measured the same averaged
    /// gradient and hold the same memory, so they must), and fills in every rank's wait and
    /// communication times. One small exchange.
    func agree(on decision: GuardDecision, ranks: [RankStatistics], step: Int) throws -> [RankStatistics] {
        let me = ranks[communicator.rank]
        let all = try communicator.allGather([Self.digest(decision), me.waitSeconds, me.communicationSeconds])
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
    func checkParameters(what: String) throws {
        let params = sync.parameters
        let mine = params.map { Double(bitPattern: parameterDigest([$0.tensor])) }
        let all = try communicator.allGather(mine)
        for (i, p) in params.enumerated() {
            let differing = all.indices.filter { all[$0][i].bitPattern != all[0][i].bitPattern }
            if !differing.isEmpty { throw CommunicatorError.mismatch(what: "\(p.name) \(what)", ranks: differing) }
        }
    }
}
