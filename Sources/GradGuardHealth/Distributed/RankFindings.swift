import Foundation
import GradGuardDistributed
import GradGuardTensor

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
    /// Recent steps judged.
    public var window = 50
    /// Outlier steps out of the last `window` that make a finding.
    public var minimum = 20
    private var history: [Int: [Bool]] = [:]
    private var reported: Set<Int> = []

    /// A monitor with the defaults.
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

/// Each parameter's Σg² and count of NaN and ±Inf in its gradient (nil: no gradient): what a
/// rank tells the others of its local gradient.
public func localGradientSums(_ params: [NamedParameter]) -> [(sumSquares: Double, nonFinite: Int)?] {
    scanAll(params, grads: true).map { s in s.map { ($0.sumSquares, $0.nonFinite) } }
}

extension GradientSync {
    /// Averages the gradients of the named `parameters`.
    public convenience init(parameters: [NamedParameter], communicator: any Communicator, bucketBytes: Int = 25 << 20, overlap: Bool = true) {
        self.init(
            names: parameters.map(\.name), tensors: parameters.map(\.tensor), communicator: communicator, bucketBytes: bucketBytes, overlap: overlap)
    }
}
