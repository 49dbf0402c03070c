import Foundation
import GradGuardHealth

extension LRFindResult {
    /// A self-contained HTML page: the loss and its smoothed curve against log₁₀(rate), the
    /// suggestion and the stability limit marked, the rule in words.
    public func html(title: String) -> String {
        let raw = zip(rates, losses).filter { $0.1.isFinite }.map { (x: Foundation.log10($0.0), y: $0.1) }
        let smooth = zip(rates, smoothed).filter { $0.1.isFinite }.map { (x: Foundation.log10($0.0), y: $0.1) }
        var markers: [(x: Double, label: String)] = []
        if let s = suggestion { markers.append((Foundation.log10(s), "suggested rate \(formatNumber(s))")) }
        if let l = curvatureLimit, let lo = rates.first, let hi = rates.last, l >= lo, l <= hi {
            markers.append((Foundation.log10(l), "stability limit c/λ_max \(formatNumber(l))"))
        }
        var body = "<h1>Learning-rate range test: \(SVGChart.escape(title))</h1>"
        body += "<p>\(SVGChart.escape(explanation))</p>"
        if let stopped { body += "<p>stopped early: \(SVGChart.escape(stopped))</p>" }
        body += SVGChart(
            title: "training loss against log₁₀(learning rate)",
            series: [
                .init(name: "loss", color: "#aec7e8", points: raw, dots: true),
                .init(name: "smoothed", color: "#1f77b4", points: smooth)
            ], logY: false, markers: markers, id: "chart-lr-find"
        ).render()
        if let c = curvature {
            body +=
                "<p>curvature at the starting weights: \(c.preconditioned ? "λ_max(P⁻¹H)" : "λ_max") \(formatNumber(c.lambdaMax)) "
                + "(\(SVGChart.escape(c.rule)), \(c.iterations) Hessian-vector products)</p>"
        }
        body += "<table><tr><th>rate</th><th>loss</th><th>smoothed</th></tr>"
        for (i, r) in rates.enumerated() where i % Swift.max(1, rates.count / 25) == 0 || i == rates.count - 1 {
            body += "<tr><td>\(formatNumber(r))</td><td>\(formatNumber(losses[i]))</td><td>\(formatNumber(smoothed[i]))</td></tr>"
        }
        body += "</table>"
        return "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>GradGuard lr-find: \(SVGChart.escape(title))</title>"
            + "<style>\(RunReport.style)</style></head><body>\(body)</body></html>\n"
    }
}
