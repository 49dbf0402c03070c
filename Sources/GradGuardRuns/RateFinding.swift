import Foundation
import GradGuard

/// The learning-rate range test of a run (`gradguard lr-find`, `optimizer.lr: auto`).
extension RunSetup {
    /// The range test on this run's model, optimizer and training data, from `c`'s settings;
    /// nothing of the run is changed.
    public func findRate(_ c: RunConfig, settings: LRFinder.Settings) throws -> LRFindResult {
        var s = settings
        s.batchSize = c.training.batchSize
        s.seed = UInt64(c.seed)
        return try LRFinder(model: model, optimizer: optimizer, settings: s).run(on: train, loss: loss)
    }

    /// `c` with `optimizer.lr: auto` replaced by the range test's suggestion (the run built
    /// with a stand-in rate to sweep from), and the test's result; `c` unchanged when its rate
    /// is a number.
    public static func resolvingAutoRate(_ c: RunConfig, settings: LRFinder.Settings = LRFinder.Settings()) throws -> (RunConfig, LRFindResult?) {
        guard c.optimizer.lrIsAuto else { return (c, nil) }
        var probe = c
        probe.optimizer.lr = 1e-3
        let setup = try RunSetup.seeded(probe)
        let result = try setup.findRate(probe, settings: settings)
        guard let rate = result.suggestion, rate.isFinite, rate > 0 else { throw RateFindingError.noSuggestion(result.stopped) }
        var out = c
        out.optimizer.lr = Swift.min(Swift.max(rate, 1e-12), 100)
        return (out, result)
    }
}

/// Why `optimizer.lr: auto` found no rate.
public enum RateFindingError: Error, CustomStringConvertible {
    case noSuggestion(String?)
    /// The reason, in one sentence.
    public var description: String {
        switch self {
        case .noSuggestion(let why):
            return "optimizer.lr auto: the range test found no rate to suggest" + (why.map { " (\($0))" } ?? "")
                + "; give optimizer.lr a number, or try gradguard lr-find with a wider --start/--end"
        }
    }
}

/// The range test as a picture: a terminal plot and an HTML page with an SVG chart.
public enum RateFindingReport {
    /// A plot of the smoothed loss against log(rate), `width` × `height` characters, with the
    /// suggestion (|) and the stability limit (!) marked.
    public static func terminal(_ r: LRFindResult, width: Int = 64, height: Int = 14) -> String {
        let pts = zip(r.rates, r.smoothed).filter { $0.1.isFinite }
        guard pts.count >= 2 else { return "(too few finite losses to plot)" }
        let lx = pts.map { Foundation.log10($0.0) }
        let (x0, x1) = (lx.min()!, lx.max()!)
        // The loss axis: from the lowest to a little above the start (a diverging tail is cut).
        let ys = pts.map(\.1)
        let y0 = ys.min()!, y1 = Swift.max(Swift.min(ys.max()!, ys[0] * 1.5), y0 + 1e-12)
        var grid = [[Character]](repeating: [Character](repeating: " ", count: width), count: height)
        func col(_ lr: Double) -> Int { Swift.min(width - 1, Swift.max(0, Int(((Foundation.log10(lr) - x0) / Swift.max(x1 - x0, 1e-12)) * Double(width - 1)))) }
        if let limit = r.curvatureLimit, limit >= pts.first!.0, limit <= pts.last!.0 {
            for row in 0..<height { grid[row][col(limit)] = "!" }
        }
        if let s = r.suggestion, s >= pts.first!.0, s <= pts.last!.0 {
            for row in 0..<height { grid[row][col(s)] = "|" }
        }
        for (lr, y) in pts {
            let row = Int(((Swift.min(y, y1) - y0) / (y1 - y0)) * Double(height - 1))
            grid[height - 1 - row][col(lr)] = "*"
        }
        var lines = grid.map { "  │" + String($0) }
        lines.insert(String(format: "  smoothed loss (%.3g … %.3g) against the rate, log scale", y0, y1), at: 0)
        lines.append("  └" + String(repeating: "─", count: width))
        let (left, right) = (formatNumber(pts.first!.0), formatNumber(pts.last!.0))
        lines.append("   " + left + String(repeating: " ", count: Swift.max(1, width - left.count - right.count)) + right)
        var legend = "   * smoothed loss"
        if r.suggestion != nil { legend += "   | suggestion" }
        if r.curvatureLimit != nil { legend += "   ! stability limit c/λ_max at the start" }
        lines.append(legend)
        return lines.joined(separator: "\n")
    }
}
