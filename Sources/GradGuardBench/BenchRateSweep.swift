import Foundation
import GradGuard

/// lr-find against a grid of rates on a GuardBench configuration's healthy run: the range
/// test's suggestion, the configuration's own rate and rates from ÷16 to ×16 of it, each
/// trained unguarded to the end and scored on the validation data.
package struct RateSweepResult: Sendable, Codable {
    package let config: String
    package let seed: UInt64
    package let suggestion: Double
    package let explanation: String
    package let suggestionScore: Double
    package let defaultRate: Double
    package let defaultScore: Double
    /// (rate, score) of the grid, lowest rate first.
    package let grid: [[Double]]

    package var best: (rate: Double, score: Double) {
        let b = grid.max { $0[1] < $1[1] }!
        return (b[0], b[1])
    }
    /// The suggestion's score within 5 % of the grid's best (relative to the best's distance from chance).
    package func withinFivePercent(chance: Double) -> Bool { suggestionScore >= best.score - 0.05 * Swift.abs(best.score - chance) }
}

extension BenchRunner {
    package static func rateSweep(_ config: BenchConfig, seed: UInt64, settings: LRFinder.Settings = LRFinder.Settings()) throws -> RateSweepResult {
        let task = try config.task(.none, seed: seed)
        let result = try LRFinder(model: task.model, optimizer: task.optimizer, settings: settings).run(probe: task.probe) { i in try task.loss(i) }
        let suggestion = result.suggestion ?? config.lr
        func score(_ rate: Double) throws -> Double {
            try run(config, fault: .none, seed: seed, setting: .monitorOnly, rate: rate).score
        }
        let grid = try (-4...4).map { k -> [Double] in
            let r = config.lr * Foundation.pow(2, Double(k))
            return [r, try score(r)]
        }
        return RateSweepResult(
            config: config.name, seed: seed, suggestion: suggestion, explanation: result.explanation, suggestionScore: try score(suggestion),
            defaultRate: config.lr, defaultScore: grid[4][1], grid: grid)
    }
}
