import Foundation
import GradGuardHealth

/// What the records of a data-parallel run say about its ranks and its batch size.
public struct DataParallelSummary: Sendable, Equatable {
    /// Per rank: mean compute, wait and communication seconds per step.
    public struct RankTimes: Sendable, Equatable {
        /// The rank.
        public let rank: Int
        /// Its mean compute seconds per step.
        public let compute: Double
        /// Its mean seconds per step waiting for the other ranks.
        public let wait: Double
        /// Its mean seconds per step averaging gradients.
        public let communication: Double
    }

    /// Every rank's times, in rank order.
    public let ranks: [RankTimes]
    /// Examples per step over every rank.
    public let globalBatch: Int
    /// The simple gradient noise scale B_simple = tr(Σ)/|G|² (McCandlish et al. 2018, "An
    /// Empirical Model of Large-Batch Training", appendix A): |G|² and tr(Σ) are estimated
    /// from the per-rank gradient norms (batch B) and the norm of their average (batch N·B),
    /// each averaged over the steps before dividing, as the paper advises. Nil when the
    /// estimate is not meaningful (too few steps, or |G|² ≤ 0: noise dominates).
    public let noiseScale: Double?
    /// Steps the estimate averaged.
    public let noiseSteps: Int

    /// The summary of `steps` (records with per-rank statistics); nil for a single process.
    public init?(steps: [StepRecord]) {
        let distributed = steps.filter { ($0.ranks?.count ?? 0) > 1 && !$0.skipped }
        guard let first = distributed.first, let n = first.ranks?.count else { return nil }
        ranks = (0..<n).map { r in
            let rows = distributed.compactMap { $0.ranks?.first { $0.rank == r } }
            let k = Double(Swift.max(rows.count, 1))
            return RankTimes(
                rank: r, compute: rows.reduce(0) { $0 + $1.computeSeconds } / k, wait: rows.reduce(0) { $0 + $1.waitSeconds } / k,
                communication: rows.reduce(0) { $0 + $1.communicationSeconds } / k)
        }
        globalBatch = first.batch ?? 0
        // The second half of the run: the noise scale grows as training proceeds, and the
        // first steps say little about the batch size that suits the rest.
        let late = distributed.suffix(Swift.max(distributed.count / 2, 1)).filter { r in
            r.gradNorm.isFinite && (r.ranks ?? []).allSatisfy { $0.gradNorm.isFinite } && (r.batch ?? 0) > 0
        }
        noiseSteps = late.count
        guard late.count >= 5, let global = late.first?.batch, global >= 2 * n else {
            noiseScale = nil
            return
        }
        let bBig = Double(global), bSmall = bBig / Double(n)
        let small =
            late.reduce(0.0) { acc, r in acc + r.ranks!.reduce(0.0) { $0 + Double($1.gradNorm) * Double($1.gradNorm) } / Double(n) }
            / Double(late.count)
        let big = late.reduce(0.0) { $0 + Double($1.gradNorm) * Double($1.gradNorm) } / Double(late.count)
        let g2 = (bBig * big - bSmall * small) / (bBig - bSmall)
        let trace = (small - big) / (1 / bSmall - 1 / bBig)
        noiseScale = g2 > 0 && trace > 0 ? trace / g2 : nil
    }

    /// The batch-size note of the diagnosis.
    public var batchNote: String? {
        guard let b = noiseScale else { return nil }
        let scale = formatCount(b)
        if Double(globalBatch) < b / 2 {
            return "gradient noise scale B_simple ≈ \(scale) examples (McCandlish et al. 2018), above the global batch of \(globalBatch): "
                + "more ranks or a bigger per-rank batch (or gradient accumulation) would still cut the steps needed almost in proportion"
        } else if Double(globalBatch) > 2 * b {
            return "gradient noise scale B_simple ≈ \(scale) examples (McCandlish et al. 2018), below the global batch of \(globalBatch): "
                + "a bigger batch mostly repeats what the gradient already knows; fewer examples per step (or more steps) use the compute better"
        }
        return
            "gradient noise scale B_simple ≈ \(scale) examples (McCandlish et al. 2018), near the global batch of \(globalBatch): the batch size is about right"
    }

    private func formatCount(_ x: Double) -> String { x >= 100 ? String(Int(x.rounded())) : String(format: "%.1f", x) }
}
