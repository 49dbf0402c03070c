import Foundation

/// Each module's own healthy gradient-norm baseline (the median of its last healthy steps),
/// and the step since which it has been far above it: the evidence for blame.
public final class ModuleBaselines {
    /// A module counts as departed while its norm is above this multiple of its baseline.
    public let departureFactor: Double
    private let window: Int
    private var history: [String: Window] = [:]
    private var departed: [String: (step: Int, ratio: Double)] = [:]

    public init(window: Int = 50, departureFactor: Double = 3) {
        self.window = window
        self.departureFactor = departureFactor
    }

    /// Histories and departures, for checkpoints: `history.<module>`, `departed.<module>` = [step, ratio].
    public func stateDict() -> [String: [Double]] {
        var out: [String: [Double]] = [:]
        for (m, w) in history { out["history.\(m)"] = w.values }
        for (m, d) in departed { out["departed.\(m)"] = [Double(d.step), d.ratio] }
        return out
    }

    public func load(stateDict: [String: [Double]]) {
        history = [:]
        departed = [:]
        for (k, v) in stateDict {
            if k.hasPrefix("history.") {
                var w = Window(window)
                w.values = v
                history[String(k.dropFirst(8))] = w
            } else if k.hasPrefix("departed."), v.count == 2, let step = Int(savedValue: v[0]) {
                departed[String(k.dropFirst(9))] = (step, v[1])
            }
        }
    }

    /// The module's baseline norm, once it has two healthy steps.
    public func baseline(_ module: String) -> Double? {
        guard let h = history[module], h.count >= 2 else { return nil }
        return median(h.values)
    }

    /// Updates departures from this step's norms; healthy steps also extend the baselines.
    func update(_ stats: StepStatistics, healthy: Bool) {
        for m in stats.modules {
            let n = Double(m.gradNorm)
            if let b = baseline(m.name), !(n <= b * departureFactor) {
                if departed[m.name] == nil { departed[m.name] = (stats.step, n.isFinite ? n / Swift.max(b, 1e-30) : .infinity) }
            } else if n.isFinite {
                departed[m.name] = nil
            }
            if healthy && n.isFinite && n > 0 { history[m.name, default: Window(window)].append(n) }
        }
    }

    /// Modules ranked by blame: first to depart from their own baseline, then by how far
    /// they were when they departed, then by ratio now.
    /// `among` restricts the ranking (for example to the modules with non-finite gradients).
    public func rank(_ stats: StepStatistics, among: Set<String>? = nil, limit: Int = 5) -> [Blame] {
        var out: [(blame: Blame, atDeparture: Double)] = []
        for m in stats.modules where among?.contains(m.name) ?? true {
            let n = Double(m.gradNorm)
            let ratio: Float = n.isFinite ? baseline(m.name).map { Float(n / Swift.max($0, 1e-30)) } ?? 1 : .infinity
            let earlier = departed[m.name]
            let since = earlier?.step ?? (ratio > Float(departureFactor) ? stats.step : nil)
            if among == nil && since == nil { continue }
            out.append((Blame(module: m.name, ratio: ratio, departedAt: since), earlier?.ratio ?? Double(ratio)))
        }
        out.sort { a, b in
            switch (a.blame.departedAt, b.blame.departedAt) {
            case let (x?, y?) where x != y: return x < y
            case (.some, nil): return true
            case (nil, .some): return false
            default: return a.atDeparture != b.atDeparture ? a.atDeparture > b.atDeparture : a.blame.ratio > b.blame.ratio
            }
        }
        return out.prefix(limit).map(\.blame)
    }
}
