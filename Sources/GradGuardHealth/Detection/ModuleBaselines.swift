import Foundation

/// Each module's own healthy gradient-norm baseline (the median of its last healthy steps),
/// and the step since which it has been far above it: the evidence for blame.
public final class ModuleBaselines {
    /// A module counts as departed while its norm is above this multiple of its baseline.
    public let departureFactor: Double
    private var window: Int { state.window }

    /// When a module departed from its baseline, and how far it was then.
    struct Departure: SavedRecord {
        var step: Int, ratio: Double
        init(step: Int, ratio: Double) { (self.step, self.ratio) = (step, ratio) }
        init?(numbers v: [Double]) {
            guard v.count == 2, let step = Int(savedValue: v[0]) else { return nil }
            (self.step, self.ratio) = (step, v[1])
        }
        var numbers: [Double] { [Double(step), ratio] }
    }

    /// Each module's healthy norms (`history.<module>`) and departure (`departed.<module>` =
    /// [step, ratio]).
    struct State: SavedState {
        let window: Int
        var history: [String: Window] = [:]
        var departed: [String: Departure] = [:]
        static let fields: [SavedField<State>] = [.windows("history", \.history, capacity: \.window), .table("departed", \.departed)]
    }
    private var state: State

    /// Baselines over `window` healthy steps; a module departs at `departureFactor` times its own.
    public init(window: Int = 50, departureFactor: Double = 3) {
        state = State(window: window)
        self.departureFactor = departureFactor
    }

    /// Histories and departures, for checkpoints.
    public func stateDict() -> SavedNumbers { state.saved }

    /// Restores the baselines `stateDict()` returned.
    public func load(stateDict: SavedNumbers) { state.read(stateDict) }

    /// The module's baseline norm, once it has two healthy steps.
    public func baseline(_ module: String) -> Double? {
        guard let h = state.history[module], h.count >= 2 else { return nil }
        return median(h.values)
    }

    /// Updates departures from this step's norms; healthy steps also extend the baselines.
    func update(_ stats: StepStatistics, healthy: Bool) {
        let capacity = window
        for m in stats.modules {
            let n = Double(m.gradNorm)
            if let b = baseline(m.name), !(n <= b * departureFactor) {
                if state.departed[m.name] == nil {
                    state.departed[m.name] = Departure(step: stats.step, ratio: n.isFinite ? n / Swift.max(b, 1e-30) : .infinity)
                }
            } else if n.isFinite {
                state.departed[m.name] = nil
            }
            if healthy && n.isFinite && n > 0 { state.history[m.name, default: Window(capacity)].append(n) }
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
            let earlier = state.departed[m.name]
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
