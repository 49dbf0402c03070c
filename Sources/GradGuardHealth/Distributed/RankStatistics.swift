import Foundation
import GradGuardTensor

/// What one rank of a data-parallel job saw at one step, before the gradients were averaged:
/// its loss, the norm of its local gradient, the tensors where it held NaN or ±Inf, and how
/// long it computed, waited for the others and communicated.
public struct RankStatistics: Sendable, Codable, Equatable {
    public let rank: Int
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
}

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
        let scans = scanAll(params, grads: true)
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

extension Finding {
    /// The finding with the ranks behind it named: the ranks whose local gradient held NaN or
    /// ±Inf in each tensor ("rank 1, lstm.weight_hh_l0: NaN or ±Inf in 12 values"), the ranks
    /// whose loss was not finite, or the rank whose local norm stood out among the ranks.
    func namingRanks(_ ranks: [RankStatistics]) -> Finding {
        var notes: [String] = []
        var named: [Int] = []
        switch kind {
        case .nonFiniteGradient, .nonFiniteWeights:
            for r in ranks {
                for (tensor, count) in r.nonFinite.sorted(by: { $0.key < $1.key }) {
                    notes.append("rank \(r.rank), \(tensor): NaN or ±Inf (\(count) value\(count == 1 ? "" : "s"))")
                }
                if !r.nonFinite.isEmpty { named.append(r.rank) }
            }
        case .nonFiniteLoss:
            for r in ranks where r.loss.map({ !$0.isFinite }) ?? false {
                notes.append("rank \(r.rank): loss \(r.loss!)")
                named.append(r.rank)
            }
        default:
            if let (rank, ratio, median) = Self.outlier(ranks), ratio >= 2 {
                notes.append(
                    "rank \(rank)'s local gradient norm is \(formatNumber(Double(ratio)))× the median of the ranks (\(formatNumber(Double(median))))")
                named.append(rank)
            }
        }
        guard !notes.isEmpty else { return self }
        var f = Finding(
            kind: kind, step: step, message: message + " — " + notes.joined(separator: "; "), evidence: evidence, blame: blame,
            tensors: tensors)
        f.ranks = named
        return f
    }

    /// The rank with the largest local norm over the median of the others.
    static func outlier(_ ranks: [RankStatistics]) -> (rank: Int, ratio: Float, median: Float)? {
        guard ranks.count > 1 else { return nil }
        let norms = ranks.map(\.gradNorm)
        guard let top = norms.indices.max(by: { (norms[$0].isFinite ? norms[$0] : .infinity) < (norms[$1].isFinite ? norms[$1] : .infinity) })
        else { return nil }
        let others = norms.enumerated().filter { $0.offset != top }.map { Double($0.element) }.filter(\.isFinite)
        let m = Float(median(others))
        guard m > 0 else { return nil }
        return (ranks[top].rank, norms[top] / m, m)
    }
}

/// Reports a rank whose local gradient norm is an outlier among the ranks on most recent
/// steps: a bad shard of the data or a faulty host. Once per rank until it recovers.
public final class RankOutlierMonitor {
    /// A rank's local norm over the median of the others' counts as an outlier beyond this.
    public var factor: Float = 3
    public var window = 50
    /// Outlier steps out of the last `window` that make a finding.
    public var minimum = 20
    private var history: [Int: [Bool]] = [:]
    private var reported: Set<Int> = []

    public init() {}

    func observe(step: Int, ranks: [RankStatistics]) -> Finding? {
        guard ranks.count > 1 else { return nil }
        var finding: Finding? = nil
        for r in ranks {
            let others = ranks.filter { $0.rank != r.rank }.map { Double($0.gradNorm) }.filter(\.isFinite)
            let m = median(others)
            let out = r.gradNorm.isFinite && m > 0 && Double(r.gradNorm) > Double(factor) * m
            var h = history[r.rank, default: []]
            h.append(out)
            if h.count > window { h.removeFirst(h.count - window) }
            history[r.rank] = h
            let count = h.filter { $0 }.count
            if count == 0 { reported.remove(r.rank) }
            if count >= minimum, !reported.contains(r.rank), finding == nil {
                reported.insert(r.rank)
                var f = Finding(
                    kind: .rankOutlier, step: step,
                    message:
                        "rank \(r.rank)'s local gradient norm was over \(formatNumber(Double(factor)))× the other ranks' median on \(count) of the last \(h.count) steps: a bad shard of the data or a faulty host",
                    evidence: ["rank": Double(r.rank), "steps": Double(count)])
                f.ranks = [r.rank]
                finding = f
            }
        }
        return finding
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
