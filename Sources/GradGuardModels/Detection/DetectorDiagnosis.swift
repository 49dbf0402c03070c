import GradGuardHealth
import GradGuardNN

/// The detector's usual failure modes, for the diagnosis: a warm-up shorter than
/// Ultralytics' max(3 epochs, 100 steps), a box-loss gain far above its default, an SGD rate
/// far above the linear-scaling rate for the batch (Goyal et al. 2017; the detector's
/// recommended 0.01 at a batch of 16), and a decoupled head's scale that the assigner never
/// gave an object. `RunSetup` fills it from the run's settings.
public struct DetectorDiagnosis: DiagnosisRules, Equatable {
    /// Warm-up steps, and the usual (Ultralytics: max(3 epochs, 100 steps)).
    public var warmupSteps: Int?, usualWarmupSteps: Int?
    /// The box-loss gain and its default.
    public var boxGain: Double?, defaultBoxGain: Double?
    /// The base learning rate, the batch, and the rate at a reference batch.
    public var learningRate: Double?, batchSize: Int?
    /// The rate of `referenceBatch` examples that the linear scaling rule starts from.
    public var referenceRate: Double?, referenceBatch: Int?
    /// A decoupled head: the stride of each scale's branch `decoupled.K`.
    public var headStrides: [Int]?

    /// No settings known.
    public init() {}

    /// The causes these settings explain at `step` (a short warm-up, a large box gain, a rate too high for the batch), each with its recommendation.
    public func settingCauses(step: Int) -> [(Cause, String)] {
        var out: [(Cause, String)] = []
        if let w = warmupSteps, let usual = usualWarmupSteps, w < usual / 2, step < 2 * usual {
            out.append(
                (
                    Cause(
                        kind: .warmupTooShort, confidence: 0.7,
                        evidence: "the trouble came at step \(step), within \(2 * usual) steps of the start, and the warm-up is \(w) steps (usual: \(usual))"),
                    "lengthen the warm-up to \(usual) steps (schedule.warmup_steps \(usual); schedule.kind warmup or warmup-cosine)"
                ))
        }
        if let g = boxGain, let d = defaultBoxGain, g > 4 * d {
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
        if let lr = learningRate, let b = batchSize, let r = referenceRate, let rb = referenceBatch {
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
    public func vanishingCause(_ findings: [Finding]) -> (Cause, String)? {
        guard let strides = headStrides, let blame = findings.first(where: { $0.kind == .vanishing })?.blame, !blame.isEmpty else { return nil }
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
}

/// The YOLO-style detector's three parts, by the names of its top-level modules.
public struct DetectorParts: ModuleParts {
    /// The detector's parts.
    public init() {}

    /// Backbone, neck, head.
    public var parts: [String] { ["backbone", "neck", "head"] }

    /// The part of a module by its first name component.
    public func part(of module: String) -> String? {
        switch module.split(separator: ".").first.map(String.init) ?? module {
        case "backbone": return "backbone"
        case "lateral", "top4", "fuse3", "down", "fuse4", "down5", "fuse5": return "neck"
        case "heads", "decoupled": return "head"
        default: return nil
        }
    }
}
