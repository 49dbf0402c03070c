import Foundation
import GradGuard

/// The guard settings GuardBench measures: watching only (the unguarded trajectory), the
/// default policy, and the default policy with each clipper at its default settings.
package enum GuardSetting: String, Sendable, Codable, CaseIterable {
    case monitorOnly = "monitor-only"
    case standard = "default"
    case globalNorm = "global-norm"
    case value, zclip, autoclip, agc, adagc
    case perModule = "per-module"
    /// Watching only, with the curvature probe: the unguarded trajectory and its
    /// `edgeOfStability` warnings (the probe changes nothing), for lead time and false warnings.
    case foresight
    /// The default policy with the curvature probe and the `cap` action.
    case cap

    /// Whether the curvature probe runs.
    package var probes: Bool { self == .foresight || self == .cap }

    package func policy() -> GuardPolicy {
        switch self {
        case .monitorOnly, .foresight: return .monitorOnly
        case .cap:
            var p = GuardPolicy()
            p.actions[.edgeOfStability] = [.cap]
            return p
        case .standard: return GuardPolicy()
        default: return GuardPolicy(clipper: ClipperKind(rawValue: rawValue)?.make(ClipperSettings()))
        }
    }
}

/// A finding of a run: its step and kind.
package struct BenchFinding: Sendable, Codable, Equatable {
    package let step: Int
    package let kind: FindingKind
    package let message: String
}

/// What one run did.
package struct BenchRunResult: Sendable, Codable {
    package let config: String
    package let half: BenchHalf
    package let fault: String
    package let planted: Cause.Kind?
    package let seed: UInt64
    package let setting: GuardSetting
    /// Steps attempted (fewer than planned when the guard halted or an unguarded loss became NaN).
    package let steps: Int
    package let plannedSteps: Int
    /// Mean training loss of the first five steps and of the last ten.
    package let startLoss: Double, endLoss: Double
    package let firstNonFinite: Int?
    /// First step whose loss exceeds ten times the first step's.
    package let firstTenfold: Int?
    package let score: Double
    package let chance: Double
    package let findings: [BenchFinding]
    package let skipped: Int, rollbacks: Int, backOffs: Int
    /// Curvature caps taken (the cap setting), and the probe's readings: step, λ_max, margin.
    package var caps = 0
    package var readings: [[Double]] = []
    /// The probe's share of the run's time.
    package var probeShare = 0.0
    package let halted: Bool
    /// The top cause of the first incident that names one, and the step of that incident.
    package let firstCause: Cause.Kind?
    package let firstCauseStep: Int?
    /// The largest module update ratio ‖Δw‖/‖w‖ of any applied step.
    package let largestUpdate: Double
    package let seconds: Double

    /// The guard skipped, rolled back, lowered the rate or halted.
    package var intervened: Bool { skipped > 0 || rollbacks > 0 || backOffs > 0 || halted || caps > 0 }
    /// The first curvature warning.
    package var firstWarning: Int? { findings.first { $0.kind == .edgeOfStability }?.step }
    /// The step by which a failure must be flagged: the first non-finite loss or tenfold loss.
    package var event: Int? { [firstNonFinite, firstTenfold].compactMap { $0 }.min() }
}

/// Runs GuardBench configurations under guard settings.
package enum BenchRunner {
    /// Trains `config`'s variant `fault` from `seed` under `setting` (or under `policy`, which
    /// then replaces the setting's, the result still naming `setting`).
    package static func run(
        _ config: BenchConfig, fault: BenchFault, seed: UInt64, setting: GuardSetting, policy: GuardPolicy? = nil,
        probeEvery: Int = BenchRunner.probeEvery, rate: Double? = nil
    ) throws -> BenchRunResult {
        let start = Date()
        let task = try config.task(fault, seed: seed, rate: rate)
        let guardian = GradientGuard(model: task.model, optimizer: task.optimizer, policy: policy ?? setting.policy())
        if setting.probes {
            guardian.curvature = CurvatureProbe(
                parameters: task.model.parameters(), buffers: task.model.namedBuffers().map(\.tensor), every: probeEvery, iterations: 10,
                tolerance: 1e-2, loss: task.probe)
        }
        let baseRates = task.optimizer.paramGroups.map(\.lr)
        var losses: [Double] = []
        var findings: [BenchFinding] = []
        var halted = false
        var largestUpdate = 0.0
        var firstNonFinite: Int? = nil, firstTenfold: Int? = nil
        for step in 0..<config.steps {
            let factor = config.rateFactor(fault, step: step)
            if factor != 1 { for i in baseRates.indices { task.optimizer.paramGroups[i].lr = baseRates[i] * factor } }
            task.optimizer.zeroGrad()
            let loss = try task.loss(step)
            loss.backward()
            let l = Double(loss.item)
            losses.append(l)
            if !l.isFinite, firstNonFinite == nil { firstNonFinite = step }
            if l.isFinite, l > 10 * losses[0], firstTenfold == nil { firstTenfold = step }
            do {
                let outcome = try guardian.step(loss: loss.item)
                findings += outcome.findings.map { BenchFinding(step: step, kind: $0.kind, message: $0.message) }
                if let r = outcome.stats.modules.compactMap(\.updateRatio).filter(\.isFinite).max() { largestUpdate = Swift.max(largestUpdate, Double(r)) }
            } catch let e as TrainingDiverged {
                findings += (e.incidents.last?.findings ?? []).filter { $0.step == step }.map { BenchFinding(step: step, kind: $0.kind, message: $0.message) }
                halted = true
                break
            }
            // An unguarded run that reached NaN has nothing more to tell.
            if setting == .monitorOnly, !l.isFinite { break }
        }
        let finite = losses.filter(\.isFinite)
        let startLoss = mean(Array(losses.prefix(5)))
        let endLoss = firstNonFinite != nil && setting == .monitorOnly ? .nan : mean(Array(finite.suffix(10)))
        var score = (try? task.score()) ?? task.chance
        let weightsFinite = task.model.parameters().allSatisfy { t in t.withUnsafeScalars { $0.allSatisfy(\.isFinite) } }
        if !score.isFinite || !weightsFinite { score = task.chance }
        let backOffs = guardian.incidents.reduce(0) { n, inc in
            n + inc.taken.filter { if case .backedOff = $0 { return true } else { return false } }.count
        }
        let caused = guardian.incidents.first { !$0.causes.isEmpty }
        let caps = guardian.incidents.reduce(0) { n, inc in n + inc.taken.filter { if case .capped = $0 { return true } else { return false } }.count }
        let seconds = Date().timeIntervalSince(start)
        var result = BenchRunResult(
            config: config.name, half: config.half, fault: fault.label, planted: fault.planted, seed: seed, setting: setting,
            steps: losses.count, plannedSteps: config.steps, startLoss: startLoss, endLoss: endLoss, firstNonFinite: firstNonFinite,
            firstTenfold: firstTenfold, score: score, chance: task.chance, findings: findings, skipped: guardian.skippedSteps,
            rollbacks: guardian.rollbacks, backOffs: backOffs, halted: halted, firstCause: caused?.causes.first?.kind,
            firstCauseStep: caused?.step, largestUpdate: largestUpdate, seconds: seconds)
        result.caps = caps
        if let probe = guardian.curvature {
            result.readings = probe.readings.map { [Double($0.step), $0.lambdaMax, $0.margin] }
            result.probeShare = seconds > 0 ? probe.seconds / seconds : 0
        }
        return result
    }

    /// Steps between curvature probes in GuardBench.
    package static let probeEvery = 5
    /// The probe's fixed batch, in training batches: one. (A small batch's Hessian overstates
    /// the whole data's curvature; eight batches gave the same warnings on the tuning half, at
    /// three times the time.)
    package static let probeBatches = 1

    static func mean(_ v: [Double]) -> Double { v.isEmpty ? .nan : v.reduce(0, +) / Double(v.count) }
}
