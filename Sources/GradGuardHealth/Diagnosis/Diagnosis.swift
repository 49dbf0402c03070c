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

    /// What the workload knows of its own failure modes (a detector's warm-up, box gain,
    /// rate for its batch, unassigned head scales).
    public var rules: [any DiagnosisRules] = []

    /// A diagnostician of `parameters`, knowing their modules' layer types when given.
    public init(parameters: [NamedParameter], layerTypes: [String: String] = [:]) {
        self.parameters = parameters
        self.layerTypes = layerTypes
    }

    /// The causes and recommendations that the run's settings explain (the workload's rules),
    /// for trouble at `step`.
    public func settingCauses(step: Int) -> [(Cause, String)] { rules.flatMap { $0.settingCauses(step: step) } }

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
        /// The learning rate `lookback` steps ago.
        public var earlierLearningRate: Double?
        /// Steps seen so far, applied or not (a finding in the first few points at initialisation).
        public var stepsSeen: Int
        /// Losses of recent healthy steps, oldest first.
        public var recentLosses: [Double]
        /// The largest module update-to-weight ratio ‖Δw‖/‖w‖ of recent applied steps, oldest first.
        public var updateRatios: [Double]
        /// Whether a clipper acts on every kept step already.
        public var clipping: Bool
        /// The largest update ratio of any applied step so far.
        public var largestUpdate: Double
        /// The weights were out of scale for their fan-in before the first update
        /// (`initialScaleFinding`); nil when not known.
        public var startedOutOfScale: Bool?
        /// The curvature probe's recent readings, oldest first (empty: the probe is off), and
        /// the margin a rate recommendation aims at.
        public var curvature: [CurvatureReading]
        /// The stability margin a rate recommendation aims at.
        public var capMargin: Double
        /// A context of `stats` and whatever else is known.
        public init(
            stats: StepStatistics, healthyNorms: [Double] = [], learningRate: Double? = nil, earlierLearningRate: Double? = nil,
            stepsSeen: Int? = nil, recentLosses: [Double] = [], updateRatios: [Double] = [], clipping: Bool = false,
            largestUpdate: Double = 0, startedOutOfScale: Bool? = nil, curvature: [CurvatureReading] = [], capMargin: Double = 0.5
        ) {
            self.curvature = curvature
            self.capMargin = capMargin
            self.largestUpdate = largestUpdate
            self.startedOutOfScale = startedOutOfScale
            self.stats = stats
            self.healthyNorms = healthyNorms
            self.learningRate = learningRate
            self.earlierLearningRate = earlierLearningRate
            self.stepsSeen = stepsSeen ?? stats.step + 1
            self.recentLosses = recentLosses
            self.updateRatios = updateRatios
            self.clipping = clipping
        }
    }

    /// The layer type of the module holding parameter `p` (`"RNN"`, `"LSTM"`, `"Linear"`), when known.
    func layerType(of p: NamedParameter) -> String? { layerTypes[p.module] }

    /// Whether `p` is a recurrent weight (`weight_hh_l0` of `rnn.weight_hh_l0`).
    func isRecurrentWeight(_ p: NamedParameter) -> Bool { p.name.split(separator: ".").last?.hasPrefix("weight_hh") ?? false }

    /// Whether `p` belongs to a vanilla RNN (no gates between W_hh and the backward signal).
    func inVanillaRNN(_ p: NamedParameter) -> Bool { layerType(of: p).map { $0 == "RNN" || $0 == "RNNCell" } ?? false }

    /// Whether `p` belongs to a gated recurrent layer (LSTM, GRU or their cells).
    func inGatedRecurrent(_ p: NamedParameter) -> Bool { layerType(of: p).map { ["LSTM", "GRU", "LSTMCell", "GRUCell"].contains($0) } ?? false }

    /// Modules whose outputs a BatchNorm rescales (a layer followed by BatchNorm is
    /// scale-invariant, Ioffe & Szegedy 2015: BN(a·Wx) = BN(Wx)).
    var batchNormalised: Set<String> { Set(layerTypes.filter { $0.value.hasPrefix("BatchNorm") }.map { parent(of: $0.key) }) }

    /// Whether the model has any normalisation layer.
    var hasNormalisation: Bool { layerTypes.values.contains { $0.hasPrefix("BatchNorm") || $0 == "LayerNorm" || $0 == "GroupNorm" } }

    /// A finding for weights far larger than their fan-in allows, before any update: the
    /// standard deviation of a Linear or convolution weight (not followed by BatchNorm) above
    /// 3·√2/√fan_in (three times Kaiming's scale for ReLU; PyTorch's default is 0.41 of it), or of a
    /// recurrent weight above 3/√hidden. An N(0, 1) start is caught here at step 0, before
    /// its gradients (hundreds of times the healthy norm) reach any other detector.
    public func initialScaleFinding(step: Int) -> Finding? {
        var offenders: [(name: String, module: String, std: Double, expected: Double, fanIn: Int)] = []
        let normalised = batchNormalised
        for p in parameters {
            let last = p.name.split(separator: ".").last.map(String.init) ?? p.name
            let recurrent = last.hasPrefix("weight_hh") || last.hasPrefix("weight_ih")
            guard recurrent || (isChainWeight(p) && !normalised.contains(parent(of: p.module))) else { continue }
            guard let r = WeightChecks.initialisationRatio(p.tensor, gain: recurrent ? 1 : 2.0.squareRoot()), r.expected > 0,
                r.std > 3 * r.expected
            else { continue }
            offenders.append((p.name, p.module, r.std, r.expected, r.fanIn))
        }
        // A vanilla RNN's recurrent weight multiplies the backward signal at every time step: a
        // spectral norm above 3 (N(0, 1/H) gives about 2, PyTorch's default about 1.15) compounds
        // to an explosion over a few dozen steps, whatever its entries' spread.
        var recurrentOffenders: [(name: String, module: String, norm: Double)] = []
        for p in parameters where isRecurrentWeight(p) && inVanillaRNN(p) {
            let norm = WeightChecks.recurrentSpectralNorm(p.tensor)
            if norm > 3, !offenders.contains(where: { $0.name == p.name }) { recurrentOffenders.append((p.name, p.module, norm)) }
        }
        guard !offenders.isEmpty || !recurrentOffenders.isEmpty else { return nil }
        if offenders.isEmpty {
            let r = recurrentOffenders.max { $0.norm < $1.norm }!
            return Finding(
                kind: .initialScale, step: step,
                message: "\(r.name) has spectral norm \(formatNumber(r.norm)): the backward signal of this RNN can grow ×\(formatNumber(r.norm)) per time step",
                evidence: ["spectral_norm": r.norm, "tensors": Double(recurrentOffenders.count)],
                blame: recurrentOffenders.map { Blame(module: $0.module, ratio: Float($0.norm)) }, tensors: recurrentOffenders.map(\.name))
        }
        offenders.sort { $0.std / $0.expected > $1.std / $1.expected }
        let worst = offenders[0]
        let listed = offenders.prefix(3).map {
            "\($0.name) std \(formatNumber($0.std)) (≈ \(formatNumber($0.expected)) expected for fan-in \($0.fanIn))"
        }
        return Finding(
            kind: .initialScale, step: step,
            message: "\(offenders.count) weight tensor\(offenders.count == 1 ? " is" : "s are") far larger than their fan-in allows: "
                + listed.joined(separator: "; "),
            evidence: ["tensors": Double(offenders.count), "ratio": worst.std / worst.expected],
            blame: offenders.prefix(5).map { Blame(module: $0.module, ratio: Float($0.std / $0.expected)) },
            tensors: offenders.map(\.name))
    }

    /// The probable causes of `findings`, most likely first, and what to change.
    public func diagnose(_ findings: [Finding], context: Context) -> (causes: [Cause], recommendations: [String]) {
        var causes: [Cause] = []
        var recs: [String] = []
        let exploding = findings.contains { $0.kind.isExploding }
        let vanishing = findings.contains { $0.kind == .vanishing || $0.kind == .stalled }
        let stats = context.stats

        // Recurrent weights. In a vanilla RNN the backward signal is multiplied by W_hh at every
        // time step, so a spectral norm above 1 can compound; in an LSTM or GRU the gates scale
        // it (and the cell path bypasses W_hh), so only a far larger norm is evidence there.
        var worstRecurrent: (name: String, norm: Double, gated: Bool)? = nil
        for p in parameters where isRecurrentWeight(p) {
            let s = WeightChecks.recurrentSpectralNorm(p.tensor)
            if worstRecurrent == nil || s > worstRecurrent!.norm { worstRecurrent = (p.name, s, inGatedRecurrent(p)) }
        }
        let outOfScaleAtStart = findings.contains { $0.kind == .initialScale }
        if exploding || outOfScaleAtStart || findings.contains(where: { $0.kind == .largeUpdate }), let r = worstRecurrent, r.norm > (r.gated ? 4 : 1.2) {
            let blamedHere = findings.flatMap(\.blame).prefix(2).contains { r.name.hasPrefix($0.module) }
            causes.append(
                Cause(
                    kind: .recurrentSpectralNorm,
                    confidence: r.gated ? 0.4 : (context.startedOutOfScale == true && r.norm > 3 ? 0.92 : (blamedHere ? 0.8 : 0.5)),
                    evidence:
                        "\(r.name) has spectral norm \(formatNumber(r.norm)) > 1: the backward signal can grow by up to that factor per time step"))
            recs.append(
                r.gated
                    ? "initialise \(r.name) orthogonally (spectral norm 1) and clip the gradient norm"
                    : "initialise \(r.name) orthogonally (spectral norm 1), or use an LSTM/GRU")
        }

        // Initialisation: weight scale and its compounding over depth.
        var initEvidence: [String] = []
        var logProduct = 0.0, layers = 0
        // A layer followed by BatchNorm is scale-invariant: its weights' scale neither compounds
        // nor matters at initialisation.
        let normalised = batchNormalised
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
        let compounding = layers >= 8 && (compound < 1e-3 || compound > 1e3)
        if !initEvidence.isEmpty || compounding {
            var ev = initEvidence.prefix(3).joined(separator: "; ")
            if layers >= 8 { ev += (ev.isEmpty ? "" : "; ") + "the scale ratios of \(layers) layers multiply to \(formatNumber(compound))" }
            if early { ev += "; abnormal from the first steps (step \(context.stepsSeen - 1))" }
            // Every layer at a sensible scale, but many of them and nothing that renormalises:
            // depth without normalisation is the cause, initialisation a remedy.
            if initEvidence.isEmpty && !hasNormalisation {
                causes.append(
                    Cause(
                        kind: .missingNormalisation, confidence: 0.85,
                        evidence: "\(layers) layers without normalisation: their scale ratios multiply to \(formatNumber(compound)), so the signal "
                            + (compound < 1 ? "vanishes" : "explodes") + " with depth"))
                recs.append("add BatchNorm (or LayerNorm) after each hidden layer, or residual connections, so that the scale stays put with depth")
            }
            // Out of scale before the first update: the initialisation. Out of scale only now, after
            // starting in scale: the updates did it (the rate), and initialisation is a weak lead.
            let confidence: Double
            switch context.startedOutOfScale {
            case true?: confidence = 0.95
            case false?: confidence = initEvidence.isEmpty ? 0.6 : 0.35
            case nil: confidence = early && !initEvidence.isEmpty ? 0.9 : 0.6
            }
            causes.append(Cause(kind: .initialisation, confidence: confidence, evidence: ev))
            recs.append("initialise the weights with kaimingNormal (std √2/√fan_in) for ReLU layers, xavierUniform for tanh layers")
        }

        // Learning rate, and a batch unlike the others.
        let rateFindings = findings.contains { [.largeUpdate, .stalled, .edgeOfStability, .attentionLogitGrowth].contains($0.kind) }
        // Weights in scale at step 0 and out of it now: updates put them there.
        let grewOutOfScale = !initEvidence.isEmpty && context.startedOutOfScale == false
        let moving = Array(context.updateRatios.suffix(10))
        let typicalUpdate = moving.isEmpty ? 0 : median(moving)
        if exploding || rateFindings {
            // A loss far above the recent ones while the weights had barely moved: the batch, not
            // the model, changed.
            var unusualBatch = false
            if exploding, let l = stats.loss.map(Double.init), context.recentLosses.count >= 10 {
                let typical = median(Array(context.recentLosses.suffix(50)))
                if typical > 0, !l.isFinite || l > 2.5 * typical, typicalUpdate < 0.05, (moving.max() ?? 0) < 0.5, initEvidence.isEmpty {
                    unusualBatch = true
                    causes.append(
                        Cause(
                            kind: .unusualBatch, confidence: 0.85,
                            evidence:
                                "the loss jumped to \(formatNumber(l)) from a typical \(formatNumber(typical)) while the last updates moved the weights by \(formatNumber(100 * typicalUpdate)) % at most: this batch is unlike the others"
                        ))
                    recs.append("inspect the batch of step \(stats.step) (corrupted inputs, wrong units or labels); the guard kept it out of the weights")
                }
            }
            let ranked = stats.modules.filter { $0.gradNorm > 0 }
            let moved = findings.flatMap(\.blame).filter { $0.ratio > 2 }.count
            let together =
                !ranked.isEmpty
                && Double(Set(findings.flatMap(\.blame).filter { $0.ratio > 2 }.map(\.module)).count) >= 0.6 * Double(Swift.min(ranked.count, 5))
            var ev: [String] = []
            var strong = false
            if together && moved > 1 && !unusualBatch {
                ev.append("\(Set(findings.flatMap(\.blame).map(\.module)).count) modules left their baselines together")
            }
            if let now = context.learningRate, let before = context.earlierLearningRate, now > before * 1.05 {
                ev.append("the learning rate rose from \(formatNumber(before)) to \(formatNumber(now)) just before")
            }
            // Updates that move a module by more than a few percent of its norm: the rate outruns
            // the weights (a healthy step moves them by about 0.1–1 %).
            // The largest update of the run counts when it is recent, or when the finding is one
            // that accumulates (a stall) or comes early.
            let atOnce = Swift.max(moving.max() ?? 0, rateFindings || context.stepsSeen <= 50 ? context.largestUpdate : 0)
            if atOnce > 0.5 {
                ev.append("an update moved a module by \(formatNumber(100 * atOnce)) % of its weight norm at once")
                strong = true
            } else if typicalUpdate > 0.03 {
                ev.append("each update moved a module by \(formatNumber(100 * typicalUpdate)) % of its weight norm (healthy: 0.1–1 %)")
                strong = typicalUpdate > 0.1
            }
            if grewOutOfScale {
                ev.append("the weights were in scale at the start and grew out of it under the updates")
                strong = true
            }
            // Attention logits that keep growing: the updates are sharpening the attention past
            // what the softmax can use (attention-logit growth); the rate drives it.
            if let a = findings.first(where: { $0.kind == .attentionLogitGrowth }), let now = a.evidence["max_logit"] {
                let layer = a.blame.first?.module ?? "an attention layer"
                ev.insert(
                    "the largest attention logit (\(layer)) grew to \(formatNumber(now)) from \(formatNumber(a.evidence["before"] ?? 0)): the attention is collapsing onto single keys",
                    at: 0)
                strong = true
                recs.append(
                    "bound the attention logits: QK-norm (MultiheadAttention(qkNorm: true), model.qk_norm true), a z-loss (model.z_loss 1e-4), or a lower learning rate"
                )
            }
            // The curvature probe weighs the rate: past the stability limit it is the cause (the
            // margin history says by how much); well inside it, the rate is a weak lead.
            let reading = context.curvature.last { $0.lambdaMax.isFinite }
            var weight = 1.0
            if let r = reading {
                if r.margin >= 1 {
                    ev.insert(StepJudge.curvatureSentence(r, history: context.curvature, target: context.capMargin), at: 0)
                    strong = true
                } else if r.margin >= 0.5 {
                    ev.append("the curvature probe put the rate at \(formatNumber(r.margin)) of its stability limit at step \(r.step)")
                } else if !ev.isEmpty {
                    ev.append("but the curvature probe put the rate at only \(formatNumber(r.margin)) of its stability limit at step \(r.step)")
                    weight = 0.6
                }
            }
            if !ev.isEmpty {
                causes.append(
                    Cause(
                        kind: .learningRateTooHigh, confidence: weight * (strong ? 0.88 : (ev.count >= 2 ? 0.8 : 0.55)),
                        evidence: ev.joined(separator: "; ")))
            }
            // Lowering the rate is the advice when it is the likely cause, or when nothing else is;
            // the curvature probe gives the rate that keeps the margin at the cap's target.
            if let lr = context.learningRate, (exploding && causes.isEmpty) || causes.contains(where: { $0.kind == .learningRateTooHigh }) {
                if let r = reading, r.margin >= 0.5 {
                    recs.append(
                        "lower the learning rate to \(formatNumber(roundToOneDigit(r.rate(atMargin: context.capMargin)))) (λ_max \(formatNumber(r.lambdaMax)) puts its stability limit at \(formatNumber(r.rate(atMargin: 1))))"
                    )
                } else {
                    recs.append("lower the learning rate to \(formatNumber(roundToOneDigit(lr * 0.3)))")
                }
            }
            // Clipping is the remedy for spikes of a run whose weights are sound and that does not
            // clip already; its threshold comes from healthy norms (not from a run that started out
            // of scale, whose every norm is a symptom).
            let clipRemedies = causes.isEmpty || causes.contains { [.learningRateTooHigh, .unusualBatch, .recurrentSpectralNorm].contains($0.kind) }
            if exploding, !context.clipping, clipRemedies, initEvidence.isEmpty, context.healthyNorms.count >= 10 {
                let p90 = AutoClip.linearPercentile(context.healthyNorms, 90)
                recs.append("clip the global norm at \(formatNumber(p90)) (the 90th percentile of the last \(context.healthyNorms.count) healthy steps)")
            }
        }

        // The run's settings (a detector's usual failure modes): whatever the finding — weights
        // that a too-large box gain blew up show as vanishing gradients, for one.
        if vanishing {
            for (cause, rec) in rules.compactMap({ $0.vanishingCause(findings) }) {
                causes.append(cause)
                recs.insert(rec, at: 0)
            }
        }
        if exploding || vanishing || rateFindings {
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
            let recurrent = parameters.filter(isRecurrentWeight)
            if !recurrent.isEmpty {
                let vanilla = recurrent.contains(where: inVanillaRNN)
                causes.append(
                    Cause(
                        kind: .saturatingActivations, confidence: 0.5,
                        evidence: "gradients vanish through a recurrent network: tanh/sigmoid saturate and ‖W_hh‖ < 1 shrinks the signal every step"))
                recs.append(
                    vanilla
                        ? "use an LSTM or GRU, initialise weight_hh orthogonally, or shorten the sequences (truncated backpropagation)"
                        : "initialise weight_hh orthogonally, or shorten the sequences (truncated backpropagation)")
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
        // Decay applies to weight matrices, never to biases or normalisation parameters.
        if exploding, let top = findings.flatMap(\.blame).first, let m = stats.module(top.module),
            let ratio = m.updateRatio, ratio > 0.1,
            parameters.contains(where: { $0.module == top.module && $0.tensor.rank >= 2 }),
            !(layerTypes[top.module].map { $0.contains("Norm") } ?? false)
        {
            recs.append(
                "add weight decay 1e-4 to the weight matrices (not the biases or normalisation parameters): \(top.module) moved by \(formatNumber(Double(ratio))) of its norm in one step"
            )
        }
        return (causes.sorted { $0.confidence > $1.confidence }, recs)
    }
}
