import Foundation
import GradGuardTensor

/// Watches the largest attention logit q·k/√d of every attention layer (`StepStatistics.attentionLogits`)
/// and reports `attentionLogitGrowth` when it is high and still growing: at least `floor` and
/// at least `growth` times what it was `window` steps before. A logit of 30 already puts
/// e⁻³⁰ ≈ 10⁻¹³ on the keys it beats: the attention has collapsed onto single keys
/// (attention-entropy collapse), and unchecked the logits grow on to hundreds or thousands
/// before the loss spikes (Dehghani et al. 2023, "Scaling Vision Transformers to 22 Billion
/// Parameters"; Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer
/// training instabilities"; Kimi K2's QK-clip caps the logits at τ = 100). Reported again only
/// once the logit has grown by `growth` again since the last report.
public final class AttentionLogitDetector: GradientDetector {
    /// The logit from which growth is reported, the growth factor, and the steps it is measured over.
    public let floor: Double, growth: Double, window: Int
    struct State: SavedState {
        var recent: Window
        var reported = 0.0
        static let fields: [SavedField<State>] = [.window("recent", \.recent), .number("reported", \.reported)]
    }
    private var state: State
    /// `attention_logit`: the prefix of its state in checkpoints.
    public var name: String { "attention_logit" }

    /// A detector with the given floor, growth and window.
    public init(floor: Double = 30, growth: Double = 2, window: Int = 50) {
        require(floor > 0 && growth > 1 && window >= 2, "AttentionLogitDetector: floor > 0, growth > 1, window ≥ 2")
        (self.floor, self.growth, self.window) = (floor, growth, window)
        state = State(recent: Window(window))
    }

    /// The largest finite logit of the step, and the layer that had it.
    static func largest(_ stats: StepStatistics) -> AttentionLogit? {
        stats.attentionLogits?.filter { $0.maxLogit.isFinite }.max { $0.maxLogit < $1.maxLogit }
    }

    /// `attentionLogitGrowth` when the largest logit is past the floor and has grown by `growth` over the window.
    public func inspect(_ stats: StepStatistics, baselines: ModuleBaselines) -> Finding? {
        guard let top = Self.largest(stats), state.recent.count >= window, let before = state.recent.values.first else { return nil }
        let now = Double(top.maxLogit)
        guard now >= floor, now >= growth * Swift.max(before, 1e-6), state.reported == 0 || now >= growth * state.reported else { return nil }
        state.reported = now
        let layers = (stats.attentionLogits ?? []).filter { $0.maxLogit.isFinite }.sorted { $0.maxLogit > $1.maxLogit }
        return Finding(
            kind: .attentionLogitGrowth, step: stats.step,
            message: "the largest attention logit of \(top.module.isEmpty ? "the model" : top.module) reached \(formatNumber(now)) "
                + "(\(formatNumber(before)) \(window) steps before): the softmax saturates and the attention collapses onto single keys; "
                + "QK-norm, a z-loss or a lower learning rate keep the logits bounded",
            evidence: ["max_logit": now, "before": before, "floor": floor],
            blame: layers.prefix(5).map { Blame(module: $0.module, ratio: Float(Double($0.maxLogit) / floor)) })
    }

    /// Adds the step's largest logit to the window.
    public func record(_ stats: StepStatistics, healthy: Bool) {
        guard let top = Self.largest(stats) else { return }
        state.recent.append(Double(top.maxLogit))
    }

    /// Nothing for a model without attention (its checkpoints stay as they were).
    public func stateDict() -> SavedNumbers { state.recent.count == 0 && state.reported == 0 ? [:] : state.saved }
    /// Restores a history `stateDict()` returned.
    public func load(stateDict: SavedNumbers) { state.read(stateDict) }
}
