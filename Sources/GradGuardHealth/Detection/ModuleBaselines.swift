import Foundation

/// Each module's own healthy gradient-norm baseline (the median of its last healthy steps),
/// and the step since which it has been far above it: the evidence for blame.
public final class ModuleBaselines {
    /// A module counts as departed while its norm is above this multiple of its baseline.
    public let departureFactor: Double
    private let window: Int
    private var history: [String: Window] = [:]
    private var departed: [String: Int] = [:]

    public init(window: Int = 50, departureFactor: Double = 3) {
        self.window = window
        self.departureFactor = departureFactor
    }

    /// The module's baseline norm, once it has a few healthy steps.
    public func baseline(_ module: String) -> Double? {
        guard let h = history[module], h.count >= 3 else { return nil }
        return median(h.values)
    }

    /// Updates departures from this step's norms; healthy steps also extend the baselines.
    func update(_ stats: StepStatistics, healthy: Bool) {
        for m in stats.modules {
            let n = Double(m.gradNorm)
            if let b = baseline(m.name), !(n <= b * departureFactor) {
                if departed[m.name] == nil { departed[m.name] = stats.step }
            } else if n.isFinite {
                departed[m.name] = nil
            }
            if healthy && n.isFinite && n > 0 { history[m.name, default: Window(window)].append(n) }
        }
    }

    /// Modules ranked by blame: first to depart from their own baseline, then by ratio.
    /// `among` restricts the ranking (for example to the modules with non-finite gradients).
    public func rank(_ stats: StepStatistics, among: Set<String>? = nil, limit: Int = 5) -> [Blame] {
        var out: [Blame] = []
        for m in stats.modules where among?.contains(m.name) ?? true {
            let n = Double(m.gradNorm)
            let ratio: Float = n.isFinite ? baseline(m.name).map { Float(n / Swift.max($0, 1e-30)) } ?? 1 : .infinity
            let since = departed[m.name] ?? (ratio > Float(departureFactor) ? stats.step : nil)
            if among == nil && since == nil { continue }
            out.append(Blame(module: m.name, ratio: ratio, departedAt: since))
        }
        out.sort { a, b in
            switch (a.departedAt, b.departedAt) {
            case let (x?, y?) where x != y: return x < y
            case (.some, nil): return true
            case (nil, .some): return false
            default: return a.ratio > b.ratio
            }
        }
        return Array(out.prefix(limit))
    }
}
