import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

struct Diagnose: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the run's incidents with causes and recommendations.")
    @Argument(help: "Run name or directory.") var runName: String

    func run() throws {
        let dir = try runDirectory(runName)
        let incidents = try RunRecords.incidents(in: dir)
        let steps = try RunRecords.metrics(in: dir).steps
        if let c = CurvatureSummary(steps: steps) { for l in c.lines { print(l) } }
        // A data-parallel run: the ranks' times and the batch size its gradients suggest.
        if let dp = DataParallelSummary(steps: steps) {
            let slowest = dp.ranks.max { $0.compute < $1.compute }!
            print(
                String(
                    format: "%d ranks, global batch %d; slowest rank %d computes %.1f ms/step, communication %.1f ms/step", dp.ranks.count,
                    dp.globalBatch, slowest.rank, 1000 * slowest.compute, 1000 * (dp.ranks.map(\.communication).max() ?? 0)))
            if let note = dp.batchNote { print("batch size: " + note) }
        }
        guard !incidents.isEmpty else {
            print("\(dir): no incidents — the guard saw nothing to act on")
            return
        }
        print("\(dir): \(incidents.count) incident\(incidents.count == 1 ? "" : "s")")
        for i in incidents.prefix(20) { print(i.summary) }
        if incidents.count > 20 { print("… \(incidents.count - 20) more in \(dir)/incidents.jsonl") }
        var causes: [String: (count: Int, evidence: String)] = [:]
        for i in incidents { for c in i.causes { causes[c.kind.rawValue, default: (0, c.evidence)].count += 1 } }
        if !causes.isEmpty {
            print("\nprobable causes over the run:")
            for (k, v) in causes.sorted(by: { $0.value.count > $1.value.count }) { print("  \(k): \(v.count) incident(s) — \(v.evidence)") }
        }
        let recs = Recommendations.folded(incidents.map(\.recommendations))
        if !recs.isEmpty {
            print("\nrecommendations:")
            for r in recs.prefix(8) { print("  - \(r.text)" + (r.count > 1 ? " (\(r.count) incidents)" : "")) }
        }
    }
}
