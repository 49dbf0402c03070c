import Foundation
import GradGuardDistributed
import GradGuardHealth
import GradGuardNN
import GradGuardTensor

/// `report.html`: one self-contained page (inline SVG and CSS, no script, no network) with
/// the run's loss, gradient norm on a log scale with the clip threshold and every incident
/// marked, a per-module gradient-norm heatmap, update-to-weight ratios, the learning rate,
/// the incident table with diagnosis and recommendations, and the run's config and
/// environment. Long runs are thinned keeping each bucket's extremes, so spikes stay visible.
public enum RunReport {
    static let style = """
        body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:980px;color:#222;padding:0 12px}
        h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
        .ct{font-weight:600;font-size:13px}.tick{font-size:11px;fill:#555}.empty{fill:#999}
        .frame{fill:#fcfcfc;stroke:#ccc}.grid{stroke:#eee}.ref{stroke:#e67e22;stroke-dasharray:6 4}
        .incident{stroke:#d62728;stroke-width:1.5;opacity:.7}
        table{border-collapse:collapse;width:100%;font-size:13px}td,th{border:1px solid #ddd;padding:4px 6px;vertical-align:top;text-align:left}
        th{background:#f4f4f4}pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}
        .summary span{display:inline-block;margin-right:18px}.ok{color:#2a7}.bad{color:#c33}
        """

    /// Writes `report.html` in the run directory and returns its path; `moduleParts` groups
    /// the model's modules into parts (its model kind's, when it has them).
    @discardableResult
    public static func write(runDirectory dir: String, moduleParts: (any ModuleParts)? = nil) throws -> String {
        let path = dir + "/report.html"
        try AtomicFile.write(Data(try html(runDirectory: dir, moduleParts: moduleParts).utf8), to: path)
        return path
    }

    /// Records the machine and versions beside the run (`environment.txt`).
    public static func writeEnvironment(runDirectory dir: String, communicator: (any Communicator)? = nil) throws {
        let p = ProcessInfo.processInfo
        let text = """
            host: \(p.hostName)
            processes: \(communicator?.label ?? "single process")
            os: \(p.operatingSystemVersionString)
            cores: \(p.activeProcessorCount)
            memory: \(p.physicalMemory / (1 << 20)) MiB
            kernels: \(Kernels.summary)
            started: \(ISO8601DateFormatter().string(from: Date()))
            command: \(CommandLine.arguments.joined(separator: " "))
            """
        try AtomicFile.write(Data(text.utf8), to: dir + "/environment.txt")
    }

    /// The report's HTML for the run in `dir`.
    public static func html(runDirectory dir: String, moduleParts: (any ModuleParts)? = nil) throws -> String {
        let (steps, evals) = try RunRecords.metrics(in: dir)
        let incidents = try RunRecords.incidents(in: dir)
        // config.yaml for a run of `gradguard train`; run.json (what the API knows) for one trained from Swift.
        let described = try? RunDescription.read(in: dir)
        let config =
            (try? FileContents.read(dir + "/config.yaml")).map { String(decoding: $0, as: UTF8.self) }
            ?? (try? FileContents.read(dir + "/" + RunDescription.fileName)).map { String(decoding: $0, as: UTF8.self) } ?? "(no config.yaml or run.json)"
        let environment = (try? FileContents.read(dir + "/environment.txt")).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let name = (dir as NSString).lastPathComponent
        let xs = RunRecords.chartPositions(steps.map(\.step))
        func line(_ value: (StepRecord) -> Double?) -> [(x: Double, y: Double)] {
            zip(xs, steps).compactMap { x, r in value(r).map { (x, $0) } }
        }
        let markerX = RunRecords.chartPositions(incidents.map(\.step))
        let markers = zip(markerX, incidents).map { (x: $0, label: "step \($1.step): " + $1.findings.map(\.message).joined(separator: "; ")) }
        var body = "<h1>GradGuard run: \(SVGChart.escape(name))</h1>"
        if let d = described ?? nil { body += "<p>\(SVGChart.escape(d.summary))</p>" }
        let last = steps.last
        let distinct = Set(steps.map(\.step)).count
        body += "<p class=\"summary\"><span>steps: <b>\(distinct)</b>\(steps.count > distinct ? " (\(steps.count) attempts)" : "")</span>"
        if let l = last { body += "<span>last loss: <b>\(String(format: "%.4f", l.loss))</b></span>" }
        if let e = evals.last {
            body += e.metrics.sorted { $0.key < $1.key }.map { "<span>eval \($0.key): <b>\(String(format: "%.4f", $0.value))</b></span>" }.joined()
        }
        body += "<span class=\"\(incidents.isEmpty ? "ok" : "bad")\">incidents: <b>\(incidents.count)</b></span>"
        body += "<span>skipped steps: <b>\(steps.filter(\.skipped).count)</b></span></p>"

        body += "<h2>Loss</h2>"
        body += SVGChart(
            title: "loss",
            series: [
                .init(name: "train", color: "#1f77b4", points: line { Double($0.loss) }),
                .init(name: "validation", color: "#ff7f0e", points: evals.compactMap { e in e.metrics["loss"].map { (Double(e.step), $0) } }, dots: true)
            ], markers: markers, id: "chart-loss"
        ).render()

        body += "<h2>Gradient norm</h2>"
        // The clip threshold of every step, from the records: a line when it never moved,
        // a series when it did (ZClip, AutoClip); below the chart when it is not a norm.
        let clipper = steps.last { $0.clipper != nil }?.clipper
        let thresholds = line { $0.clipThreshold.map(Double.init) }
        let values = Set(thresholds.map(\.y))
        var normSeries: [SVGChart.Series] = [
            .init(name: "before clipping", color: "#2ca02c", points: line { Double($0.gradNorm) }),
            .init(name: "after clipping", color: "#9467bd", points: line { $0.gradNormAfterClip.map(Double.init) })
        ]
        var reference: (y: Double, label: String)? = nil
        // The built-in clippers say what their threshold measures; another clipper's is noted below the chart.
        let kind = clipper.flatMap(ClipperKind.init(rawValue:))
        let onNormChart = kind != nil && kind?.thresholdUnit == nil
        if onNormChart, values.count == 1, let v = values.first {
            reference = (v, "clip threshold \(v)")
        } else if onNormChart, !thresholds.isEmpty {
            normSeries.append(.init(name: "clip threshold (\(clipper!))", color: "#7f7f7f", points: thresholds))
        }
        body += SVGChart(
            title: "global gradient norm (log scale)", series: normSeries, logY: true, markers: markers,
            reference: reference, id: "chart-gradnorm"
        ).render()
        if let clipper, !onNormChart, let lo = values.min(), let hi = values.max() {
            let range = lo == hi ? String(format: "%g", lo) : String(format: "%g to %g", lo, hi)
            let unit = kind?.thresholdUnit.map { " (\($0))" } ?? ""
            body += "<p>clipper <b>\(SVGChart.escape(clipper))</b>: threshold \(range)\(unit)</p>"
        }

        // The edge-of-stability picture: λ_max against the limit c/η of the rate in force.
        let probed = steps.filter { $0.lambdaMax != nil }
        if !probed.isEmpty {
            body += "<h2>Curvature against the stability limit</h2>"
            body += SVGChart(
                title: "λ_max of the loss Hessian and the optimizer's stability limit c/η",
                series: [
                    .init(name: "λ_max", color: "#d62728", points: line { $0.lambdaMax }, dots: true),
                    .init(name: "stability limit c/η", color: "#7f7f7f", points: line { $0.stabilityLimit })
                ], markers: markers, id: "chart-curvature"
            ).render()
            if let c = CurvatureSummary(steps: steps) { body += "<p>" + c.lines.map(SVGChart.escape).joined(separator: "<br>") + "</p>" }
        }

        // Attention: the largest logit q·k/√d over the run (all layers), and each layer's at detailed steps.
        if steps.contains(where: { $0.maxAttentionLogit != nil }) {
            body += "<h2>Attention logits</h2>"
            let layers = Array(Set(steps.flatMap { $0.attentionLogits?.keys.map { $0 } ?? [] })).sorted {
                $0.compare($1, options: .numeric) == .orderedAscending
            }
            let palette = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
            var series: [SVGChart.Series] = [.init(name: "largest (all layers)", color: "#d62728", points: line { $0.maxAttentionLogit.map(Double.init) })]
            for (i, layer) in layers.prefix(palette.count).enumerated() {
                series.append(.init(name: layer, color: palette[i], points: line { $0.attentionLogits?[layer].map(Double.init) }))
            }
            body += SVGChart(
                title: "largest attention logit q·k/√d (QK-clip's quantity; log scale)", series: series, logY: true, markers: markers, id: "chart-attention"
            )
            .render()
        }

        let detailed = steps.filter { $0.moduleNorms != nil }
        // Modules in model order: dotted paths compared with numbers as numbers ("2" < "10").
        let byPath: (String, String) -> Bool = { $0.compare($1, options: .numeric) == .orderedAscending }
        var modules = Array(Set(detailed.flatMap { $0.moduleNorms!.keys })).sorted(by: byPath)
        body += "<h2>Per-module gradient norms</h2>"
        // A model's modules in its parts (a detector's backbone, neck and head), each labelled.
        let parts = moduleParts?.parts ?? []
        let partOf = { (m: String) in moduleParts?.part(of: m) }
        let grouped = modules.contains { partOf($0) != nil }
        var columns = detailed.map { ($0.step, $0.moduleNorms!) }
        if grouped {
            func label(_ m: String) -> String {
                let part = partOf(m) ?? "other"
                return m.hasPrefix(part) ? m : "\(part) · \(m)"
            }
            modules = modules.sorted { a, b in
                let pa = parts.firstIndex(of: partOf(a) ?? "") ?? parts.count, pb = parts.firstIndex(of: partOf(b) ?? "") ?? parts.count
                return pa != pb ? pa < pb : byPath(a, b)
            }.map(label)
            columns = columns.map { step, norms in (step, Dictionary(norms.map { (label($0.key), $0.value) }, uniquingKeysWith: { a, _ in a })) }
        }
        body += SVGHeatmap(id: "chart-heatmap", title: "gradient norm per module over steps", modules: modules, columns: columns).render()
        if grouped {
            body += "<table id=\"parts\"><tr><th>part</th><th>gradient norm, median over the recorded steps</th><th>last</th></tr>"
            for part in parts {
                let perStep = detailed.map { r -> Double in
                    r.moduleNorms!.filter { partOf($0.key) == part }.reduce(0.0) { $0 + Double($1.value) * Double($1.value) }.squareRoot()
                }.filter(\.isFinite)
                guard !perStep.isEmpty else { continue }
                let sorted = perStep.sorted()
                body += String(format: "<tr><td>%@</td><td>%.4g</td><td>%.4g</td></tr>", part, sorted[sorted.count / 2], perStep.last!)
            }
            body += "</table>"
        }

        let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
        let ratioModules = Array(Set(detailed.flatMap { ($0.updateRatios ?? [:]).keys })).sorted(by: byPath)
        body += "<h2>Update-to-weight ratios</h2>"
        body += SVGChart(
            title: "‖Δw‖ / ‖w‖ per module (log scale)",
            series: ratioModules.prefix(10).enumerated().map { i, m in
                .init(name: m, color: palette[i % palette.count], points: detailed.compactMap { r in r.updateRatios?[m].map { (Double(r.step), Double($0)) } })
            }, logY: true, id: "chart-update"
        ).render()

        body += "<h2>Learning rate</h2>"
        body += SVGChart(
            title: "learning rate (with the guard's back-off)",
            series: [
                .init(name: "lr", color: "#8c564b", points: line { $0.lr * $0.lrScale })
            ], logY: false, markers: markers, id: "chart-lr"
        ).render()

        if let dp = DataParallelSummary(steps: steps) {
            body += "<h2>Ranks</h2>"
            let rows = steps.filter { ($0.ranks?.count ?? 0) > 1 }
            let xr = RunRecords.chartPositions(rows.map(\.step))
            body += SVGChart(
                title: "seconds per step outside the collectives, by rank (rank 0 also writes the records; a straggler stands above the others)",
                series: dp.ranks.prefix(10).enumerated().map { i, r in
                    .init(
                        name: "rank \(r.rank)", color: palette[i % palette.count],
                        points: zip(xr, rows).compactMap { x, s in s.ranks?.first { $0.rank == r.rank }.map { (x, $0.computeSeconds) } })
                }, logY: false, id: "chart-ranks"
            ).render()
            body += "<table id=\"ranks\"><tr><th>rank</th><th>compute (ms/step)</th><th>wait (ms/step)</th><th>communication (ms/step)</th></tr>"
            for r in dp.ranks {
                body += String(
                    format: "<tr><td>%d</td><td>%.2f</td><td>%.2f</td><td>%.2f</td></tr>", r.rank, 1000 * r.compute, 1000 * r.wait, 1000 * r.communication)
            }
            body += "</table><p>global batch: <b>\(dp.globalBatch)</b> examples per step over \(dp.ranks.count) ranks</p>"
            if let note = dp.batchNote { body += "<p id=\"batch-note\">\(SVGChart.escape(note))</p>" }
        }

        body += "<h2>Incidents</h2>"
        if incidents.isEmpty {
            body += "<p class=\"ok\">None: the guard saw nothing to act on.</p>"
        } else {
            body +=
                "<table id=\"incidents\"><tr><th>step</th><th>what was seen</th><th>done</th><th>blame</th><th>examples with the largest gradients</th><th>probable causes</th><th>recommendations</th></tr>"
            // Consecutive incidents at one step with the same findings and causes are one row.
            let groups = foldedIncidents(incidents)
            for g in groups.prefix(500) {
                let i = g.first
                let at = g.count > 1 ? "\(i.step) (\(g.count) attempts)" : "\(i.step)"
                body += "<tr><td>\(at)</td><td>\(SVGChart.escape(i.findings.map(\.message).joined(separator: "; ")))</td>"
                body += "<td>\(SVGChart.escape(g.actions.joined(separator: "; ")))</td>"
                let blame = i.blame.prefix(3).map { "\($0.module.isEmpty ? "(root)" : $0.module) ×\(SVGChart.label(Double($0.ratio)))" }.joined(separator: ", ")
                body += "<td>\(blame.isEmpty ? "— (no baseline yet: the run was abnormal from its first steps)" : SVGChart.escape(blame))</td>"
                let top = (i.samples ?? []).prefix(3).map { "\($0.source) (\(Int(($0.share * 100).rounded())) %)" }.joined(separator: "; ")
                body += "<td>\(top.isEmpty ? "—" : SVGChart.escape(top))\(i.replay.map { "<br><small>replay: \(SVGChart.escape($0))</small>" } ?? "")</td>"
                body +=
                    "<td>\(SVGChart.escape(i.causes.map { "\($0.kind.rawValue) (\(Int($0.confidence * 100)) %): \($0.evidence)" }.joined(separator: "; ")))</td>"
                body += "<td>\(SVGChart.escape(Recommendations.folded(g.recommendations).map(\.text).joined(separator: "; ")))</td></tr>"
            }
            body += "</table>"
            if groups.count > 500 { body += "<p>… \(groups.count - 500) more in incidents.jsonl</p>" }
        }
        body += "<h2>Configuration</h2><pre>\(SVGChart.escape(config))</pre>"
        if !environment.isEmpty { body += "<h2>Environment</h2><pre>\(SVGChart.escape(environment))</pre>" }
        return "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            + "<title>GradGuard report: \(SVGChart.escape(name))</title><style>\(style)</style></head><body>\(body)</body></html>\n"
    }

    /// Incidents at one step with the same kinds of finding and cause, in a row: one group.
    struct IncidentGroup {
        let first: Incident
        var count = 1
        var actions: [String]
        var recommendations: [[String]]
    }

    static func foldedIncidents(_ incidents: [Incident]) -> [IncidentGroup] {
        var groups: [IncidentGroup] = []
        for i in incidents {
            if var g = groups.last, g.first.step == i.step, g.first.findings.map(\.kind) == i.findings.map(\.kind),
                g.first.causes.map(\.kind) == i.causes.map(\.kind)
            {
                g.count += 1
                for a in i.actions where !g.actions.contains(a) { g.actions.append(a) }
                g.recommendations.append(i.recommendations)
                groups[groups.count - 1] = g
            } else {
                groups.append(IncidentGroup(first: i, actions: i.actions, recommendations: [i.recommendations]))
            }
        }
        return groups
    }

    /// A page overlaying the loss and gradient norm of several runs.
    public static func comparison(_ dirs: [String]) throws -> String {
        let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
        var loss: [SVGChart.Series] = [], norm: [SVGChart.Series] = []
        for (i, d) in dirs.enumerated() {
            let steps = try RunRecords.metrics(in: d).steps
            let n = (d as NSString).lastPathComponent, c = palette[i % palette.count]
            let xs = RunRecords.chartPositions(steps.map(\.step))
            loss.append(.init(name: n, color: c, points: zip(xs, steps).map { ($0, Double($1.loss)) }))
            norm.append(.init(name: n, color: c, points: zip(xs, steps).map { ($0, Double($1.gradNorm)) }))
        }
        let table = RunRecords.table(try dirs.map { try RunRecords.summary(of: $0) })
        let body =
            "<h1>GradGuard: \(dirs.count) runs compared</h1><pre>\(SVGChart.escape(table))</pre>"
            + SVGChart(title: "loss", series: loss, id: "chart-loss").render()
            + SVGChart(title: "global gradient norm (log scale)", series: norm, logY: true, id: "chart-gradnorm").render()
        return
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>GradGuard comparison</title><style>\(style)</style></head><body>\(body)</body></html>\n"
    }
}
