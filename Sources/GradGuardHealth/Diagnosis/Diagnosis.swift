import Foundation
import GradGuardTensor

/// Turns findings into probable causes and concrete recommendations.
///
/// Causes recognised, each from its own evidence:
/// - learning rate too high: the modules' norms left their baselines together, or the
///   learning rate rose in the steps before (warm-up, a schedule's increase);
/// - initialisation: trouble from the first steps, or weights whose standard deviation is
///   far from gain/√fan_in (√2 for ReLU networks), or drifts that compound over many layers;
/// - recurrent weights with a spectral norm above 1 (power iteration on each gate block);
/// - missing normalisation: activation gradients changing geometrically with depth;
/// - saturating activations: vanishing through a recurrent or tanh/sigmoid network.
public struct Diagnostician {
    /// Named weights of the model (for the weight checks).
    public let parameters: [NamedParameter]
    /// Layer type by module name (`"Linear"`, `"Conv2d"`); when known, only the weights of
    /// layers that chain (Linear, Conv2d) enter the initialisation checks.
    public let layerTypes: [String: String]

    /// Settings of the run that its usual failure modes depend on (a detector's warm-up, box
    /// gain, rate and batch), when the run says them.
    public var hints: TrainingHints? = nil

    /// What a run tells the diagnostician about its settings, with the usual values to compare.
    public struct TrainingHints: Sendable {
        /// Warm-up steps, and the usual (Ultralytics: max(3 epochs, 100 steps)).
        public var warmupSteps: Int?, usualWarmupSteps: Int?
        /// The box-loss gain and its default.
        public var boxGain: Double?, defaultBoxGain: Double?
        /// The base learning rate, the batch, and the rate at a reference batch (linear scaling,
        /// Goyal et al. 2017; for the detector, its recommended SGD 0.01 at a batch of 16).
        public var learningRate: Double?, batchSize: Int?
        public var referenceRate: Double?, referenceBatch: Int?
        /// A detector's decoupled head: the stride of each scale's branch `decoupled.K`.
        public var headStrides: [Int]?
        public init() {}
    }

    public init(parameters: [NamedParameter], layerTypes: [String: String] = [:]) {
        self.parameters = parameters
        self.layerTypes = layerTypes
    }

    /// The causes and recommendations that the run's settings explain (a detector's usual
    /// failure modes), for an exploding finding at `step`.
    public func settingCauses(step: Int) -> [(Cause, String)] {
        guard let h = hints else { return [] }
        var out: [(Cause, String)] = []
        if let w = h.warmupSteps, let usual = h.usualWarmupSteps, w < usual / 2, step < 2 * usual {
            out.append(
                (
                    Cause(
                        kind: .warmupTooShort, confidence: 0.7,
                        evidence: "the trouble came at step \(step), within \(2 * usual) steps of the start, and the warm-up is \(w) steps (usual: \(usual))"),
                    "lengthen the warm-up to \(usual) steps (schedule.warmup_steps \(usual); schedule.kind warmup or warmup-cosine)"
                ))
        }
        if let g = h.boxGain, let d = h.defaultBoxGain, g > 4 * d {
            out.append(
                (
                    Cause(
                        kind: .boxLossGainTooHigh, confidence: 0.65,
                        evidence:
                            "the box-loss gain \(formatNumber(g)) is \(formatNumber(g / d))× its default \(formatNumber(d)): box regression dominates the head's gradient"
                    ),
                    "lower the box-loss gain to \(formatNumber(d)) (model.box_gain)"
                ))
        }
        if let lr = h.learningRate, let b = h.batchSize, let r = h.referenceRate, let rb = h.referenceBatch {
            let scaled = r * Double(b) / Double(rb)
            if lr > 3 * scaled {
                out.append(
                    (
                        Cause(
                            kind: .learningRateTooHighForBatch, confidence: 0.6,
                            evidence:
                                "the learning rate \(formatNumber(lr)) is \(formatNumber(lr / scaled))× the linear-scaling rate for a batch of \(b) (\(formatNumber(r)) at \(rb) → \(formatNumber(scaled)))"
                        ),
                        "lower the learning rate to \(formatNumber(roundToOneDigit(scaled))) for a batch of \(b), or raise the batch towards \(rb)"
                    ))
            }
        }
        return out
    }

    /// A vanishing finding confined to one scale of a detector's decoupled head: its box branch
    /// gets gradient only through the anchor points the assigner gives it. At the start every
    /// scale predicts sides of 7.5 strides (uniform bins), so for objects much smaller than
    /// that the finest scale's boxes overlap them most, the alignment's IoU⁶ gives it every
    /// top-k place, and a coarser branch may never be matched. Not an initialisation or
    /// depth problem.
    func unassignedScaleCause(_ findings: [Finding]) -> (Cause, String)? {
        guard let strides = hints?.headStrides, let blame = findings.first(where: { $0.kind == .vanishing })?.blame, !blame.isEmpty else { return nil }
        let scales = Set(blame.map { $0.module.split(separator: ".").prefix(2).joined(separator: ".") })
        guard scales.count == 1, let only = scales.first, only.hasPrefix("decoupled."), let k = Int(only.dropFirst(10)), k < strides.count, k > 0
        else { return nil }
        let s = strides[k]
        return (
            Cause(
                kind: .unassignedScale, confidence: 0.85,
                evidence:
                    "the faint modules are all in the head of stride \(s) (\(only)): the task-aligned assigner matched no object there, so its box branch receives no gradient "
                    + "(objects under about \(8 * s) pixels are matched at the finer strides first)"
            ),
            k == strides.count - 1 && strides.count > 2
                ? "if the objects stay under about \(8 * s) pixels at this image size, drop the stride-\(s) scale (model.scales \(strides.count - 1)) to save its time; otherwise nothing to change: the branch learns once objects are matched there"
                : "nothing to change if the objects are under about \(8 * s) pixels (the finer scale takes them); otherwise check the labels' box sizes"
        )
    }

    /// The module holding `module` (`a.b` of `a.b.conv`; "" at the top).
    func parent(of module: String) -> String { module.split(separator: ".").dropLast().joined(separator: ".") }

    /// Whether a parameter is the weight of a feed-forward layer (Linear, Conv2d, …).
    func isChainWeight(_ p: NamedParameter) -> Bool {
        guard p.tensor.rank >= 2, p.name.hasSuffix("weight") else { return false }
        if let type = layerTypes[p.module] { return type == "Linear" || type.hasPrefix("Conv") }
        return !p.name.contains("weight_ih") && !p.name.contains("weight_hh")
    }

    /// What the diagnostician knows about the run around the finding.
    public struct Context {
        /// The step's statistics.
        public var stats: StepStatistics
        /// Healthy global norms of recent steps, oldest first.
        public var healthyNorms: [Double]
        /// Learning rate of the first group now and `lookback` steps ago.
        public var learningRate: Double?
        public var earlierLearningRate: Double?
        /// Steps seen so far, applied or not (a finding in the first few points at initialisation).
        public var stepsSeen: Int
        public init(
            stats: StepStatistics, healthyNorms: [Double] = [], learningRate: Double? = nil, earlierLearningRate: Double? = nil,
            stepsSeen: Int? = nil
        ) {
            self.stats = stats
            self.healthyNorms = healthyNorms
            self.learningRate = learningRate
            self.earlierLearningRate = earlierLearningRate
            self.stepsSeen = stepsSeen ?? stats.step + 1
        }
    }

    public func diagnose(_ findings: [Finding], context: Context) -> (causes: [Cause], recommendations: [String]) {
        var causes: [Cause] = []
        var recs: [String] = []
        let exploding = findings.contains { $0.kind.isExploding }
        let vanishing = findings.contains { $0.kind == .vanishing }
        let stats = context.stats

        // Recurrent weights.
        var worstRecurrent: (String, Double)? = nil
        for p in parameters where p.name.split(separator: ".").last.map({ $0.hasPrefix("weight_hh") }) ?? false {
            let s = WeightChecks.recurrentSpectralNorm(p.tensor)
            if worstRecurrent == nil || s > worstRecurrent!.1 { worstRecurrent = (p.name, s) }
        }
        if exploding, let (name, s) = worstRecurrent, s > 1 {
            let blamedHere = findings.flatMap(\.blame).prefix(2).contains { name.hasPrefix($0.module) }
            causes.append(
                Cause(
                    kind: .recurrentSpectralNorm, confidence: blamedHere ? 0.8 : 0.5,
                    evidence: "\(name) has spectral norm \(formatNumber(s)) > 1: the backward signal can grow by up to that factor per time step"))
            recs.append("initialise \(name) orthogonally (spectral norm 1), or use an LSTM/GRU")
        }

        // Initialisation: weight scale and its compounding over depth.
        var initEvidence: [String] = []
        var logProduct = 0.0, layers = 0
        // A layer followed by BatchNorm is scale-invariant (Ioffe & Szegedy 2015: BN(a·Wx) =
        // BN(Wx)): its weights' scale neither compounds nor matters at initialisation.
        let normalised = Set(layerTypes.filter { $0.value.hasPrefix("BatchNorm") }.map { parent(of: $0.key) })
        for p in parameters where isChainWeight(p) && !normalised.contains(parent(of: p.module)) {
            guard let r = WeightChecks.initialisationRatio(p.tensor), r.expected > 0, r.std > 0 else { continue }
            let ratio = r.std / r.expected
            logProduct += Foundation.log(ratio)
            layers += 1
            // PyTorch's default (kaiming_uniform with a = √5) sits at 1/√6 ≈ 0.41 of this scale.
            if ratio > 3 || ratio < 1.0 / 8 {
                initEvidence.append("\(p.name) std \(formatNumber(r.std)), expected ≈ \(formatNumber(r.expected)) (√2/√fan_in, fan_in \(r.fanIn))")
            }
        }
        let compound = Foundation.exp(logProduct)
        let early = context.stepsSeen <= 5
        if !initEvidence.isEmpty || (layers >= 8 && (compound < 1e-3 || compound > 1e3)) {
            var ev = initEvidence.prefix(3).joined(separator: "; ")
            if layers >= 8 { ev += (ev.isEmpty ? "" : "; ") + "the scale ratios of \(layers) layers multiply to \(formatNumber(compound))" }
            if early { ev += "; abnormal from the first steps (step \(context.stepsSeen - 1))" }
            causes.append(Cause(kind: .initialisation, confidence: early ? 0.9 : 0.6, evidence: ev))
            recs.append("initialise the weights with kaimingNormal (std √2/√fan_in) for ReLU layers, xavierUniform for tanh layers")
        }

        // Learning rate.
        if exploding {
            let ranked = stats.modules.filter { $0.gradNorm > 0 }
            let moved = findings.flatMap(\.blame).filter { $0.ratio > 2 }.count
            let together =
                !ranked.isEmpty
                && Double(Set(findings.flatMap(\.blame).filter { $0.ratio > 2 }.map(\.module)).count) >= 0.6 * Double(Swift.min(ranked.count, 5))
            var ev: [String] = []
            if together && moved > 1 { ev.append("\(Set(findings.flatMap(\.blame).map(\.module)).count) modules left their baselines together") }
            if let now = context.learningRate, let before = context.earlierLearningRate, now > before * 1.05 {
                ev.append("the learning rate rose from \(formatNumber(before)) to \(formatNumber(now)) just before")
            }
            if !ev.isEmpty {
                causes.append(Cause(kind: .learningRateTooHigh, confidence: ev.count == 2 ? 0.8 : 0.55, evidence: ev.joined(separator: "; ")))
            }
            // Lowering the rate is the advice when it is the likely cause, or when nothing else is.
            if let lr = context.learningRate, causes.isEmpty || causes.contains(where: { $0.kind == .learningRateTooHigh }) {
                recs.append("lower the learning rate to \(formatNumber(roundToOneDigit(lr * 0.3)))")
            }
            if context.healthyNorms.count >= 10 {
                let p90 = AutoClip.linearPercentile(context.healthyNorms, 90)
                recs.append("clip the global norm at \(formatNumber(p90)) (the 90th percentile of the last \(context.healthyNorms.count) healthy steps)")
            }
        }

        // The run's settings (a detector's usual failure modes): whatever the finding — weights
        // that a too-large box gain blew up show as vanishing gradients, for one.
        if vanishing, let (cause, rec) = unassignedScaleCause(findings) {
            causes.append(cause)
            recs.insert(rec, at: 0)
        }
        if exploding || vanishing {
            for (cause, rec) in settingCauses(step: stats.step) {
                causes.append(cause)
                recs.insert(rec, at: 0)
            }
        }

        // Activation scale with depth (needs watched activations).
        let acts = stats.activations.map { Double($0.norm) }.filter { $0 > 0 && $0.isFinite }
        if acts.count >= 4 {
            let steps = zip(acts.dropFirst(), acts).map { Foundation.log($0 / $1) }
            let meanStep = steps.reduce(0, +) / Double(steps.count)
            let consistent = steps.allSatisfy { $0 * meanStep > 0 }
            if consistent && Swift.abs(meanStep) > Foundation.log(1.5) {
                let deepest = stats.activations.first!.name
                causes.append(
                    Cause(
                        kind: .missingNormalisation, confidence: 0.5,
                        evidence:
                            "the gradient reaching each layer's input changes ×\(formatNumber(Foundation.exp(meanStep))) per layer over \(acts.count) layers"))
                recs.append("add BatchNorm (or LayerNorm) after \(deepest.isEmpty ? "each layer" : "layer \(deepest)") so that the scale stays put with depth")
            }
        }

        if vanishing {
            let recurrent = parameters.contains { $0.name.contains("weight_hh") }
            if recurrent {
                causes.append(
                    Cause(
                        kind: .saturatingActivations, confidence: 0.5,
                        evidence: "gradients vanish through a recurrent network: tanh/sigmoid saturate and ‖W_hh‖ < 1 shrinks the signal every step"))
                recs.append("use an LSTM or GRU, initialise weight_hh orthogonally, or shorten the sequences (truncated backpropagation)")
            }
        }

        // A clipper that acts on most steps.
        if let over = findings.first(where: { $0.kind == .overClipping }) {
            let norms = context.healthyNorms.suffix(100)
            if norms.count >= 10 {
                let p90 = AutoClip.linearPercentile(Array(norms), 90)
                recs.append(
                    "raise the clipping threshold to \(formatNumber(roundToOneDigit(p90))) (the 90th percentile of the last \(norms.count) gradient norms), "
                        + "so that it catches spikes only, or use an adaptive clipper (guard.clipper zclip or autoclip)")
            } else {
                recs.append("raise the clipping threshold, or use an adaptive clipper (guard.clipper zclip or autoclip)")
            }
            let median = over.evidence["median_norm"].map { ", the median gradient norm is \(formatNumber($0))" } ?? ""
            let threshold = over.evidence["threshold"].map { "the threshold is \(formatNumber($0))" } ?? "the threshold is low"
            causes.append(
                Cause(
                    kind: .clippingThresholdTooLow, confidence: 0.8,
                    evidence:
                        "\(threshold)\(median): the clipper acted on \(Int(((over.evidence["clip_rate"] ?? 0) * 100).rounded())) % of the steps, so the effective learning rate is lower than the configured one"
                ))
        }

        // Weight growth suggests decay.
        if exploding, let top = findings.flatMap(\.blame).first, let m = stats.module(top.module),
            let ratio = m.updateRatio, ratio > 0.1
        {
            recs.append("add weight decay 1e-4: \(top.module) moved by \(formatNumber(Double(ratio))) of its norm in one step")
        }
        return (causes.sorted { $0.confidence > $1.confidence }, recs)
    }
}
