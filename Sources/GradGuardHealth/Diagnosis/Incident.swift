import Foundation

/// A probable cause of an incident, with its evidence.
public struct Cause: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable {
        case learningRateTooHigh, initialisation, recurrentSpectralNorm, missingNormalisation, saturatingActivations
        /// The clipping threshold sits below the typical gradient norm.
        case clippingThresholdTooLow
    }
    public let kind: Kind
    /// 0…1, used to rank the causes.
    public let confidence: Double
    public let evidence: String
}

/// One intervention of the guard: what was seen, what was done, who is to blame, why it
/// probably happened and what to change.
public struct Incident: Sendable, Codable {
    public let step: Int
    public let findings: [Finding]
    /// What the guard did: `"skipped the step"`, `"learning rate ×0.5 (now 5e-4)"`, …
    public var actions: [String]
    public let blame: [Blame]
    /// Ranked, most likely first.
    public let causes: [Cause]
    public let recommendations: [String]

    /// One paragraph for a terminal.
    public var summary: String {
        var lines = ["step \(step): " + findings.map(\.message).joined(separator: "; ")]
        if !blame.isEmpty {
            lines.append("  blame: " + blame.prefix(3).map { b in
                let since = b.departedAt.map { " since step \($0)" } ?? ""
                return "\(b.module.isEmpty ? "(root)" : b.module) (×\(formatNumber(Double(b.ratio)))\(since))"
            }.joined(separator: ", "))
        }
        if !actions.isEmpty { lines.append("  done: " + actions.joined(separator: "; ")) }
        for c in causes { lines.append("  cause (\(Int((c.confidence * 100).rounded())) %): \(c.kind.rawValue) — \(c.evidence)") }
        for r in recommendations { lines.append("  try: \(r)") }
        return lines.joined(separator: "\n")
    }
}

/// Raised when the guard gives up: recoveries kept failing.
public struct TrainingDiverged: Error, CustomStringConvertible, Sendable {
    public let step: Int
    public let failedRecoveries: Int
    public let incidents: [Incident]

    public var description: String {
        "training diverged at step \(step) after \(failedRecoveries) failed recoveries\n"
            + (incidents.last?.summary ?? "")
    }
}

/// A number in short human form: 3 significant digits, scientific below 1e-3 or above 1e4.
func formatNumber(_ x: Double) -> String {
    if !x.isFinite { return "\(x)" }
    let a = Swift.abs(x)
    if a != 0 && (a < 1e-3 || a >= 1e4) { return String(format: "%.2g", x) }
    return String(format: "%.3g", x)
}

/// `x` rounded to one significant digit (3e-4, 0.02, 2.1 stays 2): a value people type.
func roundToOneDigit(_ x: Double) -> Double {
    guard x > 0, x.isFinite else { return x }
    let e = (x.log10Floor)
    let scale = pow10(e)
    return (x / scale).rounded() * scale
}

extension Double {
    var log10Floor: Int { Int(Foundation.log10(self).rounded(.down)) }
}

func pow10(_ e: Int) -> Double { Foundation.pow(10, Double(e)) }

