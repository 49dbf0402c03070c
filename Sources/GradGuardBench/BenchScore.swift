import Foundation
import GradGuard

/// What the unguarded run of a variant says about it.
package struct BenchTruth: Sendable, Codable {
    package enum Verdict: String, Sendable, Codable {
        /// The healthy twin converged.
        case healthy
        /// The healthy twin did not converge unguarded: the configuration needs another rate.
        case unconverged
        /// A failing variant failed (non-finite, the loss ended above its start, or the score
        /// ended far below the healthy twin's).
        case failed
        /// A failing variant trained anyway: neither a false alarm nor a miss counts on it.
        case benign
    }
    package let config: String, fault: String, seed: UInt64
    package let verdict: Verdict
    package let reason: String
    /// The first non-finite or tenfold loss of the unguarded run.
    package let event: Int?
    package let healthyScore: Double
    package let unguardedScore: Double

    /// The verdict on `run` (a monitor-only run) given its healthy twin's monitor-only run.
    package static func judge(_ run: BenchRunResult, twin: BenchRunResult) -> BenchTruth {
        let converged = twin.firstNonFinite == nil && twin.endLoss < twin.startLoss
        func truth(_ v: Verdict, _ why: String) -> BenchTruth {
            BenchTruth(
                config: run.config, fault: run.fault, seed: run.seed, verdict: v, reason: why, event: run.event, healthyScore: twin.score,
                unguardedScore: run.score)
        }
        if run.planted == nil {
            return converged
                ? truth(.healthy, "loss \(formatNumber(run.startLoss)) → \(formatNumber(run.endLoss))")
                : truth(.unconverged, "the healthy twin did not converge")
        }
        if let s = run.firstNonFinite { return truth(.failed, "non-finite loss at step \(s)") }
        if !(run.endLoss < run.startLoss) {
            return truth(.failed, "loss ended at \(formatNumber(run.endLoss)), above its start \(formatNumber(run.startLoss))")
        }
        let floor = run.chance + 0.5 * (twin.score - run.chance)
        if run.score < floor {
            return truth(.failed, "score \(formatNumber(run.score)) against the healthy \(formatNumber(twin.score))")
        }
        return truth(.benign, "trained to \(formatNumber(run.score)) (healthy \(formatNumber(twin.score)))")
    }
}

/// The measures of one guard setting over a set of runs.
package struct BenchSummary: Sendable, Codable {
    package let setting: GuardSetting
    package let half: BenchHalf?
    package var healthyRuns = 0, falseInterventions = 0, healthySteps = 0, falseFindings = 0
    package var failingRuns = 0, flagged = 0, rescued = 0
    package var leadTimes: [Int] = []
    package var diagnosable = 0, diagnosed = 0
    package var benignRuns = 0, benignInterventions = 0
    /// Guarded minus unguarded score on the healthy runs.
    package var scoreDeltas: [Double] = []
    package var seconds = 0.0
    /// Healthy runs with an intervention, and failing runs missed (config, fault, seed).
    package var intervenedOn: [String] = [], missed: [String] = [], misdiagnosed: [String] = []

    package var findingsPerThousand: Double { healthySteps == 0 ? 0 : 1000 * Double(falseFindings) / Double(healthySteps) }
    package var recall: Double { failingRuns == 0 ? .nan : Double(flagged) / Double(failingRuns) }
    package var medianLead: Double? {
        guard !leadTimes.isEmpty else { return nil }
        let s = leadTimes.sorted()
        return s.count % 2 == 1 ? Double(s[s.count / 2]) : Double(s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
    package var meanScoreDelta: Double { scoreDeltas.isEmpty ? 0 : scoreDeltas.reduce(0, +) / Double(scoreDeltas.count) }
}

/// Scores guard settings against the unguarded ground truth.
package enum BenchScoring {
    static func key(_ r: BenchRunResult) -> String { "\(r.config)|\(r.fault)|\(r.seed)" }
    static func twinKey(_ r: BenchRunResult) -> String { "\(r.config)|\(BenchFault.none.label)|\(r.seed)" }

    /// The verdict on every variant that has an unguarded (monitor-only) run and a healthy twin.
    package static func truths(_ results: [BenchRunResult]) -> [String: BenchTruth] {
        let unguarded = Dictionary(results.filter { $0.setting == .monitorOnly }.map { (key($0), $0) }, uniquingKeysWith: { a, _ in a })
        var out: [String: BenchTruth] = [:]
        for (k, r) in unguarded {
            guard let twin = unguarded[twinKey(r)] else { continue }
            out[k] = BenchTruth.judge(r, twin: twin)
        }
        return out
    }

    /// The first finding that flags a failure in time: before the event, or at it when it is
    /// more than the non-finite value itself.
    static func flag(_ r: BenchRunResult, deadline: Int) -> BenchFinding? {
        r.findings.first { f in
            f.step < deadline
                || (f.step == deadline && ![FindingKind.nonFiniteLoss, .nonFiniteGradient, .nonFiniteWeights].contains(f.kind))
        }
    }

    package static func summarise(_ results: [BenchRunResult], setting: GuardSetting, half: BenchHalf?) -> BenchSummary {
        let truth = truths(results)
        var s = BenchSummary(setting: setting, half: half)
        for r in results where r.setting == setting && (half == nil || r.half == half) {
            guard let t = truth[key(r)] else { continue }
            let name = "\(r.config) \(r.fault) seed \(r.seed)"
            s.seconds += r.seconds
            switch t.verdict {
            case .healthy:
                s.healthyRuns += 1
                s.healthySteps += r.steps
                s.falseFindings += r.findings.count
                if r.intervened {
                    s.falseInterventions += 1
                    s.intervenedOn.append(name)
                }
                s.scoreDeltas.append(r.score - t.unguardedScore)
            case .failed:
                s.failingRuns += 1
                if let f = flag(r, deadline: t.event ?? r.plannedSteps) {
                    s.flagged += 1
                    if let e = t.event { s.leadTimes.append(e - f.step) }
                } else {
                    s.missed.append(name)
                }
                if r.score >= 0.9 * t.healthyScore { s.rescued += 1 }
                if let p = r.planted {
                    s.diagnosable += 1
                    if r.firstCause == p { s.diagnosed += 1 } else { s.misdiagnosed.append("\(name): \(r.firstCause?.rawValue ?? "no cause")") }
                }
            case .benign:
                s.benignRuns += 1
                if r.intervened { s.benignInterventions += 1 }
            case .unconverged:
                break
            }
        }
        return s
    }

    /// The totals table: one row per setting and half.
    package static func markdown(_ results: [BenchRunResult]) -> String {
        let settings = GuardSetting.allCases.filter { s in results.contains { $0.setting == s } }
        var out = [
            "| setting | half | healthy runs | false interventions | false findings / 1000 steps | failing runs | recall | median lead (steps) | rescued | diagnosis right | healthy score Δ |",
            "|---|---|---|---|---|---|---|---|---|---|---|"
        ]
        for setting in settings {
            for half in BenchHalf.allCases {
                let s = summarise(results, setting: setting, half: half)
                out.append(
                    "| \(setting.rawValue) | \(half.rawValue) | \(s.healthyRuns) | \(s.falseInterventions) | \(String(format: "%.2f", s.findingsPerThousand)) | \(s.failingRuns) | "
                        + "\(s.flagged)/\(s.failingRuns) (\(percent(s.recall))) | \(s.medianLead.map { formatNumber($0) } ?? "–") | \(s.rescued)/\(s.failingRuns) | "
                        + "\(s.diagnosed)/\(s.diagnosable) | \(String(format: "%+.3f", s.meanScoreDelta)) |")
            }
        }
        return out.joined(separator: "\n")
    }

    /// One row per variant and seed: the verdict, unguarded and default scores, first finding
    /// and event, the default policy's actions and first cause.
    package static func detail(_ results: [BenchRunResult]) -> String {
        let truth = truths(results)
        let byKey = Dictionary(results.map { ("\(key($0))|\($0.setting.rawValue)", $0) }, uniquingKeysWith: { a, _ in a })
        var out = [
            "| configuration | half | variant | seed | verdict | event | first finding (monitor) | score unguarded → default | default: skips/rollbacks/back-offs | first cause |",
            "|---|---|---|---|---|---|---|---|---|---|"
        ]
        for r in results where r.setting == .monitorOnly {
            guard let t = truth[key(r)] else { continue }
            let d = byKey["\(key(r))|default"]
            let first = r.findings.first.map { "\($0.kind.rawValue) @\($0.step)" } ?? "–"
            out.append(
                "| \(r.config) | \(r.half.rawValue) | \(r.fault) | \(r.seed) | \(t.verdict.rawValue) | \(t.event.map(String.init) ?? "–") | \(first) | "
                    + "\(String(format: "%.3f", r.score)) → \(d.map { String(format: "%.3f", $0.score) } ?? "–") | "
                    + "\(d.map { "\($0.skipped)/\($0.rollbacks)/\($0.backOffs)\($0.halted ? " halted" : "")" } ?? "–") | "
                    + "\((d?.firstCause ?? r.firstCause)?.rawValue ?? "–") |")
        }
        return out.joined(separator: "\n")
    }

    static func percent(_ x: Double) -> String { x.isFinite ? String(format: "%.0f %%", 100 * x) : "–" }
}

/// Foresight on GuardBench: the curvature probe's warnings on the unguarded trajectory
/// (`foresight`: lead time before the event, warnings on failing and healthy runs) and what
/// the `cap` policy makes of the runs a too-high rate breaks.
package struct ForesightSummary: Sendable, Codable {
    package let half: BenchHalf?
    /// Rate-caused failing runs (a constant rate ×k, a ramp to ×k) and those warned in time
    /// (before the event, or at any step when the run fails without one).
    package var rateFailing = 0, warned = 0
    package var rampFailing = 0, rampWarned = 0
    /// Steps from the first warning to the event (first non-finite or tenfold loss), all rate
    /// faults and ramps only.
    package var leads: [Int] = [], rampLeads: [Int] = []
    package var healthyRuns = 0, healthyWarned = 0
    package var warnedHealthy: [String] = []
    /// Under `cap`: rate-caused failing runs that end within 10 % of their healthy twin's score,
    /// the default policy's count on the same runs, and healthy runs the cap touched.
    package var capRuns = 0, capRescued = 0, defaultRescued = 0, healthyCapped = 0
    package var capScoreDeltas: [Double] = []
    /// The probe's share of the foresight runs' time.
    package var probeShares: [Double] = []

    static func median(_ v: [Int]) -> Double? {
        guard !v.isEmpty else { return nil }
        let s = v.sorted()
        return s.count % 2 == 1 ? Double(s[s.count / 2]) : Double(s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
    package var medianLead: Double? { Self.median(leads) }
    package var medianRampLead: Double? { Self.median(rampLeads) }
}

extension BenchScoring {
    package static func foresight(_ results: [BenchRunResult], half: BenchHalf?) -> ForesightSummary {
        let truth = truths(results)
        let byKey = Dictionary(results.map { ("\(key($0))|\($0.setting.rawValue)", $0) }, uniquingKeysWith: { a, _ in a })
        var s = ForesightSummary(half: half)
        for r in results where r.setting == .foresight && (half == nil || r.half == half) {
            guard let t = truth[key(r)] else { continue }
            s.probeShares.append(r.probeShare)
            let ramp = r.fault.hasPrefix("lr ramp")
            switch t.verdict {
            case .healthy:
                s.healthyRuns += 1
                if r.firstWarning != nil {
                    s.healthyWarned += 1
                    s.warnedHealthy.append("\(r.config) seed \(r.seed) @\(r.firstWarning!)")
                }
                if let c = byKey["\(key(r))|cap"] {
                    if c.caps > 0 { s.healthyCapped += 1 }
                    s.capScoreDeltas.append(c.score - t.unguardedScore)
                }
            case .failed where r.planted == .learningRateTooHigh:
                s.rateFailing += 1
                if ramp { s.rampFailing += 1 }
                if let w = r.firstWarning, t.event.map({ w <= $0 }) ?? true {
                    s.warned += 1
                    if ramp { s.rampWarned += 1 }
                    if let e = t.event {
                        s.leads.append(e - w)
                        if ramp { s.rampLeads.append(e - w) }
                    }
                }
                if let c = byKey["\(key(r))|cap"] {
                    s.capRuns += 1
                    if c.score >= 0.9 * t.healthyScore { s.capRescued += 1 }
                    if let d = byKey["\(key(r))|default"], d.score >= 0.9 * t.healthyScore { s.defaultRescued += 1 }
                }
            default: break
            }
        }
        return s
    }

    /// The foresight table: one row per half.
    package static func foresightMarkdown(_ results: [BenchRunResult]) -> String {
        guard results.contains(where: { $0.setting == .foresight }) else { return "" }
        var out = [
            "| half | rate-caused failing runs | warned in time | median lead (steps) | ramps warned | ramps' median lead | healthy runs warned | cap: rescued (default policy) | healthy runs capped | cap: healthy score Δ | probe's share of time |",
            "|---|---|---|---|---|---|---|---|---|---|---|"
        ]
        for half in BenchHalf.allCases {
            let s = foresight(results, half: half)
            let share = s.probeShares.isEmpty ? 0 : s.probeShares.reduce(0, +) / Double(s.probeShares.count)
            let delta = s.capScoreDeltas.isEmpty ? 0 : s.capScoreDeltas.reduce(0, +) / Double(s.capScoreDeltas.count)
            out.append(
                "| \(half.rawValue) | \(s.rateFailing) | \(s.warned)/\(s.rateFailing) (\(percent(Double(s.warned) / Double(Swift.max(s.rateFailing, 1))))) | "
                    + "\(s.medianLead.map { formatNumber($0) } ?? "–") | \(s.rampWarned)/\(s.rampFailing) | \(s.medianRampLead.map { formatNumber($0) } ?? "–") | "
                    + "\(s.healthyWarned)/\(s.healthyRuns) | \(s.capRuns > 0 ? "\(s.capRescued)/\(s.capRuns) (\(s.defaultRescued))" : "–") | "
                    + "\(s.capRuns > 0 ? "\(s.healthyCapped)/\(s.healthyRuns)" : "–") | \(String(format: "%+.3f", delta)) | \(percent(share)) |")
        }
        return out.joined(separator: "\n")
    }
}
