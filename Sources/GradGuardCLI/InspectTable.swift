import Foundation
import GradGuard
import GradGuardRuns

/// The parameter table of `gradguard inspect`.
enum InspectTable {
    static func render(_ tensors: [String: Tensor]) -> String {
        var rows: [[String]] = [["tensor", "shape", "norm", "std", "std·√fan_in/√2", "note"]]
        for (name, t) in tensors.sorted(by: { $0.key < $1.key }) {
            let values = t.scalars.map(Double.init)
            let n = Double(Swift.max(values.count, 1))
            let mean = values.reduce(0, +) / n
            let std = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / n).squareRoot()
            let norm = values.reduce(0) { $0 + $1 * $1 }.squareRoot()
            var ratio = "", note = ""
            if let r = WeightChecks.initialisationRatio(t), name.hasSuffix("weight") || name.contains("weight_") {
                ratio = String(format: "%.3g", r.std / r.expected)
                if r.std / r.expected > 3 { note = "large for its fan-in: activations grow with depth" }
                if r.std / r.expected < 1.0 / 8 { note = "small for its fan-in: activations shrink with depth" }
            }
            if name.contains("weight_hh") {
                let s = WeightChecks.recurrentSpectralNorm(t)
                note = String(format: "spectral norm %.3g", s) + (s > 1 ? " > 1: can explode through time" : " ≤ 1")
            }
            if values.contains(where: { !$0.isFinite }) { note = "NaN or Inf values!" }
            rows.append([
                name, "[" + t.shape.map(String.init).joined(separator: ", ") + "]", String(format: "%.4g", norm),
                String(format: "%.4g", std), ratio, note
            ])
        }
        let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max()! }
        return rows.enumerated().map { i, r in
            let line = r.enumerated().map { c, s in s.padding(toLength: widths[c], withPad: " ", startingAt: 0) }.joined(separator: "  ")
            return i == 0 ? line + "\n" + widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") : line
        }.joined(separator: "\n")
    }
}
