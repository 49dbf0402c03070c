import Foundation

/// Inline SVG line charts for the reports: no scripts, no network.
struct SVGChart {
    struct Series {
        let name: String
        let color: String
        let points: [(x: Double, y: Double)]
        var dots = false
    }

    var title: String
    var series: [Series]
    /// A logarithmic y axis; nil: chosen from the data (log when every value is positive and
    /// they span three orders of magnitude or more, so a diverged run and a healthy one are
    /// both visible).
    var logY: Bool? = nil
    /// Vertical markers (incidents) with a label each.
    var markers: [(x: Double, label: String)] = []
    /// A horizontal reference line (the clip threshold).
    var reference: (y: Double, label: String)? = nil
    var id: String
    let width = 920.0, height = 240.0, left = 64.0, right = 16.0, top = 28.0, bottom = 30.0

    /// At most `limit` points: the series is cut into buckets and each bucket keeps its
    /// lowest and highest point, in order, so spikes survive the thinning.
    static func downsample(_ pts: [(x: Double, y: Double)], limit: Int = 800) -> [(x: Double, y: Double)] {
        guard pts.count > limit else { return pts }
        let buckets = limit / 2
        var out: [(x: Double, y: Double)] = []
        for b in 0..<buckets {
            let lo = pts.count * b / buckets, hi = pts.count * (b + 1) / buckets
            guard hi > lo else { continue }
            let slice = pts[lo..<hi]
            let mn = slice.min { $0.y < $1.y }!, mx = slice.max { $0.y < $1.y }!
            if mn.x <= mx.x { out += [mn, mx] } else { out += [mx, mn] }
        }
        return out
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func label(_ v: Double) -> String {
        let a = Swift.abs(v)
        if a != 0 && (a < 1e-2 || a >= 1e4) { return String(format: "%.0e", v) }
        return String(format: a < 1 ? "%.3g" : "%.4g", v)
    }

    /// Labels for tick values, with the fewest significant digits that tell them apart.
    static func labels(_ values: [Double]) -> [String] {
        let largest = values.map { Swift.abs($0) }.max() ?? 0
        let scientific = largest >= 1e5 || (largest > 0 && largest < 1e-3)
        for digits in 0...8 {
            let out = values.map { v -> String in
                if v == 0 { return "0" }
                return String(format: scientific ? "%.\(digits)e" : "%.\(digits)f", v)
            }
            if Set(out).count == out.count { return out }
        }
        return values.map { label($0) }
    }

    /// Round tick values (1, 2 or 5 × 10^k apart) inside `lo … hi`, about `count` of them;
    /// `integers` keeps them whole (steps).
    static func niceTicks(_ lo: Double, _ hi: Double, count: Int = 5, integers: Bool = false) -> [Double] {
        guard lo.isFinite, hi.isFinite, hi > lo else { return lo.isFinite ? [lo] : [] }
        let raw = (hi - lo) / Double(Swift.max(1, count - 1))
        let magnitude = Foundation.pow(10, Foundation.floor(Foundation.log10(raw)))
        var step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw * 0.999 } ?? 10 * magnitude
        if integers { step = Swift.max(1, step.rounded()) }
        var ticks: [Double] = []
        var t = Foundation.ceil(lo / step - 1e-9) * step
        while t <= hi + step * 1e-9 && ticks.count < 50 {
            ticks.append(Swift.abs(t) < step * 1e-9 ? 0 : t)
            t += step
        }
        return ticks
    }

    func render() -> String {
        let plotW = width - left - right, plotH = height - top - bottom
        let positive = series.flatMap(\.points).map(\.y).filter { $0.isFinite && $0 > 0 }
        let logY =
            self.logY
            ?? (!positive.isEmpty && positive.count == series.flatMap(\.points).filter { $0.y.isFinite }.count
                && positive.max()! / positive.min()! >= 1e3)
        let usable = series.map { s in (s, SVGChart.downsample(s.points.filter { $0.y.isFinite && (!logY || $0.y > 0) })) }
        let all = usable.flatMap(\.1)
        var svg =
            "<svg id=\"\(id)\" class=\"chart\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"100%\" role=\"img\" aria-label=\"\(SVGChart.escape(title))\">"
        svg += "<text x=\"\(left)\" y=\"18\" class=\"ct\">\(SVGChart.escape(title))</text>"
        guard !all.isEmpty else {
            return svg + "<text x=\"\(left)\" y=\"\(top + plotH / 2)\" class=\"empty\">no data</text></svg>"
        }
        func ty(_ y: Double) -> Double { logY ? Foundation.log10(y) : y }
        let xAll = all.map(\.x)
        var (x0, x1) = (xAll.min()!, xAll.max()!)
        var ys = all.map { ty($0.y) }
        if let r = reference, r.y.isFinite, !logY || r.y > 0 { ys.append(ty(r.y)) }
        var (y0, y1) = (ys.min()!, ys.max()!)
        if x1 - x0 < 1 { x1 = x0 + 1 }
        if y1 == y0 { y0 -= logY ? 1 : Swift.max(Swift.abs(y0) * 0.1, 1e-9); y1 += logY ? 1 : Swift.max(Swift.abs(y1) * 0.1, 1e-9) }
        let pad = (y1 - y0) * 0.05
        y0 -= pad
        y1 += pad
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * plotW }
        func py(_ y: Double) -> Double { top + (1 - (ty(y) - y0) / (y1 - y0)) * plotH }
        svg += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(plotW)\" height=\"\(plotH)\" class=\"frame\"/>"
        // Round ticks: powers of ten on a log axis, 1-2-5 steps otherwise; whole steps on x.
        var yTicks = SVGChart.niceTicks(y0, y1)
        if logY {
            let decades = SVGChart.niceTicks(Foundation.ceil(y0), Foundation.floor(y1), integers: true).filter { $0 >= y0 && $0 <= y1 }
            yTicks =
                decades.count >= 2
                ? decades.map { Foundation.pow(10, $0) }
                : SVGChart.niceTicks(Foundation.pow(10, y0), Foundation.pow(10, y1)).filter { $0 > 0 }
        }
        for (v, text) in zip(yTicks, SVGChart.labels(yTicks)) {
            let yy = py(v)
            svg += "<line x1=\"\(left)\" x2=\"\(left + plotW)\" y1=\"\(yy)\" y2=\"\(yy)\" class=\"grid\"/>"
            svg += "<text x=\"\(left - 6)\" y=\"\(yy + 4)\" class=\"tick\" text-anchor=\"end\">\(text)</text>"
        }
        let xTicks = SVGChart.niceTicks(x0, x1, integers: true)
        for v in xTicks {
            svg += "<text x=\"\(px(v))\" y=\"\(height - 10)\" class=\"tick\" text-anchor=\"middle\">\(Int(v))</text>"
        }
        if let r = reference, r.y.isFinite, !logY || r.y > 0 {
            let yy = py(r.y)
            svg +=
                "<line x1=\"\(left)\" x2=\"\(left + plotW)\" y1=\"\(yy)\" y2=\"\(yy)\" class=\"ref\"/><text x=\"\(left + plotW - 4)\" y=\"\(yy - 4)\" class=\"tick\" text-anchor=\"end\">\(SVGChart.escape(r.label))</text>"
        }
        for m in markers where m.x >= x0 && m.x <= x1 {
            let xx = px(m.x)
            svg += "<line x1=\"\(xx)\" x2=\"\(xx)\" y1=\"\(top)\" y2=\"\(top + plotH)\" class=\"incident\"><title>\(SVGChart.escape(m.label))</title></line>"
        }
        for (s, pts) in usable where !pts.isEmpty {
            let coords = pts.map { String(format: "%.1f,%.1f", px($0.x), py($0.y)) }.joined(separator: " ")
            if s.dots || pts.count < 2 {  // a lone point draws no line
                svg += "<g class=\"series\" data-series=\"\(SVGChart.escape(s.name))\" data-points=\"\(pts.count)\" fill=\"\(s.color)\">"
                for p in pts { svg += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\"/>", px(p.x), py(p.y)) }
                svg += "</g>"
            } else {
                svg +=
                    "<polyline class=\"series\" data-series=\"\(SVGChart.escape(s.name))\" data-points=\"\(pts.count)\" data-last=\"\(pts.last!.y)\" fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.5\" points=\"\(coords)\"/>"
            }
        }
        var lx = left + 8
        for s in series {
            svg +=
                "<rect x=\"\(lx)\" y=\"\(top + 6)\" width=\"10\" height=\"10\" fill=\"\(s.color)\"/><text x=\"\(lx + 14)\" y=\"\(top + 15)\" class=\"tick\">\(SVGChart.escape(s.name))</text>"
            lx += 24 + Double(s.name.count) * 6.5
        }
        return svg + "</svg>"
    }
}

/// Per-module gradient norms over steps as a heatmap (log colour scale).
struct SVGHeatmap {
    let id: String
    let title: String
    let modules: [String]
    /// (step, module → norm)
    let columns: [(step: Int, values: [String: Float])]

    func render() -> String {
        let width = 920.0, left = 120.0, top = 28.0, row = 16.0
        let height = top + row * Double(Swift.max(modules.count, 1)) + 24
        var svg =
            "<svg id=\"\(id)\" class=\"chart\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"100%\" role=\"img\" aria-label=\"\(SVGChart.escape(title))\">"
        svg += "<text x=\"\(left)\" y=\"18\" class=\"ct\">\(SVGChart.escape(title))</text>"
        guard !columns.isEmpty, !modules.isEmpty else { return svg + "<text x=\"\(left)\" y=\"50\" class=\"empty\">no data</text></svg>" }
        // At most 300 columns: each keeps the largest norm of the steps it covers.
        let n = Swift.min(columns.count, 300)
        var cells: [[Float]] = Array(repeating: Array(repeating: -.infinity, count: n), count: modules.count)
        for (c, col) in columns.enumerated() {
            let k = c * n / columns.count
            for (r, m) in modules.enumerated() {
                if let v = col.values[m], v.isFinite, v > 0 { cells[r][k] = Swift.max(cells[r][k], Foundation.log10(v)) }
            }
        }
        let finite = cells.flatMap { $0 }.filter(\.isFinite)
        let lo = finite.min() ?? 0, hi = Swift.max(finite.max() ?? 1, (finite.min() ?? 0) + 1e-6)
        let cw = (width - left - 10) / Double(n)
        for (r, m) in modules.enumerated() {
            let y = top + Double(r) * row
            svg += "<text x=\"\(left - 6)\" y=\"\(y + 12)\" class=\"tick\" text-anchor=\"end\">\(SVGChart.escape(m.isEmpty ? "(root)" : m))</text>"
            for k in 0..<n {
                let v = cells[r][k]
                let color: String
                if v.isFinite {
                    let t = Double((v - lo) / (hi - lo))
                    color = String(format: "hsl(%.0f,75%%,%.0f%%)", 240 - 240 * t, 35 + 25 * t)
                } else {
                    color = "#eee"
                }
                svg += String(
                    format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%@\"/>", left + Double(k) * cw, y, cw + 0.3, row - 1, color)
            }
        }
        svg +=
            "<text x=\"\(left)\" y=\"\(height - 6)\" class=\"tick\">steps \(columns.first!.step)–\(columns.last!.step); colour: log10 norm from \(String(format: "%.1f", lo)) (blue) to \(String(format: "%.1f", hi)) (red)</text>"
        return svg + "</svg>"
    }
}

/// Test access to the chart helpers.
public enum SVGChartProbe {
    /// Round tick values covering `lo`…`hi`.
    public static func niceTicks(_ lo: Double, _ hi: Double, integers: Bool = false) -> [Double] {
        SVGChart.niceTicks(lo, hi, integers: integers)
    }

    /// The ticks' labels, as short as they can be and still distinct.
    public static func labels(_ values: [Double]) -> [String] { SVGChart.labels(values) }

    /// At most `limit` points, each bucket keeping its extremes (spikes stay visible).
    public static func downsample(_ pts: [(x: Double, y: Double)], limit: Int = 800) -> [(x: Double, y: Double)] {
        SVGChart.downsample(pts, limit: limit)
    }
}
