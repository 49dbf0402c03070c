import Foundation
import GradGuard
import XCTest
import _TestSupport

/// The report against the records it was drawn from, and rendered by a real browser.
final class ReportTests: TemporaryDirectoryTestCase {

    /// A short run with one incident (a NaN injected into a gradient at step 5).
    func makeRun(clipper: any GradientClipper = ClipByGlobalNorm(maxNorm: 1), name: String = "run") throws -> String {
        let dir = tmp + "/" + name
        DefaultGenerator.seed(2)
        let model = Sequential(Linear(inputSize: 4, outputSize: 8), ReLU(), Linear(inputSize: 8, outputSize: 3))
        var c = TrainerConfig()
        c.epochs = 2
        c.batchSize = 8
        c.moduleNormsEvery = 2
        let t = try Trainer(
            model: model, optimizer: SGD(model.parameters(), lr: 0.05),
            policy: GuardPolicy(clipper: clipper), config: c, runDirectory: dir
        ) { m, b in
            crossEntropy((m as! Sequential)(b.inputs), b.targets)
        }
        var poisoned = false
        t.callbacks.beforeStep = { step, _ in
            guard step == 5, !poisoned else { return }
            poisoned = true
            let p = model.parameters()[0]
            p.registerHook { g in
                p.removeHooks()
                return g * Tensor(Float.nan)
            }
        }
        var g = RandomGenerator(seed: 1)
        let x = Tensor.randn([96, 4], generator: &g), y = Tensor(shape: [96], scalars: (0..<96).map { Float($0 % 3) })
        try t.fit(train: TensorDataset(inputs: x, targets: y), validation: TensorDataset(inputs: x, targets: y))
        try Data("guard:\n  clipper: global-norm   # x\n  max_norm: 1.0   # y\n".utf8).write(to: URL(fileURLWithPath: dir + "/config.yaml"))
        return dir
    }

    func attribute(_ name: String, in tag: Substring) -> String? {
        guard let r = tag.range(of: name + "=\"") else { return nil }
        return String(tag[r.upperBound...].prefix { $0 != "\"" })
    }

    func testSVGContentMatchesTheRecords() throws {
        let dir = try makeRun()
        let path = try RunReport.write(runDirectory: dir)
        let html = try String(contentsOfFile: path, encoding: .utf8)
        let (steps, evals) = try RunRecords.metrics(in: dir)
        let incidents = try RunRecords.incidents(in: dir)
        XCTAssertEqual(incidents.count, 1)
        XCTAssertFalse(html.contains("<script"), "the report needs no script")
        XCTAssertFalse(html.contains("http://") || html.contains("https://"), "no network references")
        for id in ["chart-loss", "chart-gradnorm", "chart-heatmap", "chart-update", "chart-lr"] {
            XCTAssertTrue(html.contains("id=\"\(id)\""), id)
        }
        let polylines = html.components(separatedBy: "<polyline").dropFirst().map { Substring($0.prefix { $0 != ">" }) }
        let train = try XCTUnwrap(polylines.first { attribute("data-series", in: $0) == "train" })
        XCTAssertEqual(attribute("data-points", in: train), "\(steps.count)")
        XCTAssertEqual(Float(attribute("data-last", in: train) ?? "") ?? 0, steps.last!.loss, accuracy: 1e-6)
        XCTAssertTrue(html.contains("data-series=\"validation\" data-points=\"\(evals.count)\""))
        // The incident is marked on the charts and listed in the table.
        XCTAssertEqual(html.components(separatedBy: "class=\"incident\"").count - 1, 3, "loss, gradient norm and lr charts mark it")
        XCTAssertTrue(html.contains("<table id=\"incidents\">") && html.contains("skipped the step"))
        XCTAssertTrue(html.contains("clip threshold 1.0"))
    }

    /// Every clipper's threshold is drawn from the step records alone (no config.yaml): a
    /// series for the moving ZClip and AutoClip thresholds, a note for a value threshold.
    func testClipThresholdsComeFromTheRecords() throws {
        for (clipper, name) in [
            (ZClip(warmupSteps: 3) as any GradientClipper, "zclip"), (AutoClip(percentile: 50), "autoclip"),
            (ClipByValue(0.25), "value")
        ] {
            let dir = try makeRun(clipper: clipper, name: name)
            try FileManager.default.removeItem(atPath: dir + "/config.yaml")
            let (steps, _) = try RunRecords.metrics(in: dir)
            XCTAssertTrue(steps.allSatisfy { $0.clipper == name }, name)
            let html = try String(contentsOfFile: try RunReport.write(runDirectory: dir), encoding: .utf8)
            if name == "value" {
                XCTAssertTrue(html.contains("clipper <b>value</b>: threshold 0.25 (largest gradient magnitude)"), name)
                continue
            }
            let thresholds = steps.compactMap(\.clipThreshold)
            XCTAssertGreaterThan(Set(thresholds).count, 1, "\(name): the threshold moves")
            let polylines = html.components(separatedBy: "<polyline").dropFirst().map { Substring($0.prefix { $0 != ">" }) }
            let series = try XCTUnwrap(polylines.first { attribute("data-series", in: $0) == "clip threshold (\(name))" }, name)
            XCTAssertEqual(attribute("data-points", in: series), "\(thresholds.count)", name)
            XCTAssertEqual(Float(attribute("data-last", in: series) ?? "") ?? 0, thresholds.last!, accuracy: 1e-4 * thresholds.last!, name)
        }
    }

    func testTicksAreRoundDistinctAndInRange() {
        XCTAssertEqual(SVGChartProbe.niceTicks(0, 791, integers: true), [0, 200, 400, 600])  // not 198, 395, 593
        XCTAssertEqual(SVGChartProbe.niceTicks(0, 1, integers: true), [0, 1])  // not 0 0 1 1 1
        XCTAssertEqual(SVGChartProbe.niceTicks(0.0027, 0.0033), [0.0028, 0.003, 0.0032])
        // A constant learning rate: distinct labels, not "3e-03" on every tick.
        let labels = SVGChartProbe.labels([0.0028, 0.003, 0.0032])
        XCTAssertEqual(Set(labels).count, 3, "\(labels)")
        XCTAssertEqual(SVGChartProbe.labels([0, 200, 400]), ["0", "200", "400"])
        XCTAssertEqual(SVGChartProbe.labels([0.0028, 0.003, 0.0032]), ["0.0028", "0.0030", "0.0032"])
        XCTAssertEqual(SVGChartProbe.labels([0, 0.5, 1]), ["0", "0.5", "1.0"])
    }

    /// A run that never got past step 0 (every attempt skipped) still draws its attempts as
    /// a line, its incidents fold into one table row, and a comparison with a healthy run
    /// switches to a log axis so both are visible.
    func testAStuckRunIsDrawnByAttempts() throws {
        XCTAssertEqual(RunRecords.chartPositions([0, 0, 0, 0, 0, 1, 2, 2]), [0, 0.2, 0.4, 0.6, 0.8, 1, 2, 2.5])
        let dir = tmp + "/stuck"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let step = { (loss: Double, scale: Double) in
            "{\"clipped\":false,\"epoch\":0,\"gradNorm\":1.2e16,\"kind\":\"step\",\"loss\":\(loss),\"lr\":0.003,\"lrScale\":\(scale),\"skipped\":true,\"step\":0}"
        }
        let lines = (0..<4).map { step(5e15 + Double($0) * 1e14, Foundation.pow(0.5, Double($0 + 1))) }
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: dir + "/metrics.jsonl"))
        let incident = { (k: Int) -> String in
            "{\"actions\":[\"skipped the step\",\"learning rate ×0.5\"],\"blame\":[],\"causes\":[{\"confidence\":0.9,\"evidence\":\"std 0.99\",\"kind\":\"initialisation\"}],"
                + "\"findings\":[{\"blame\":[],\"evidence\":{},\"kind\":\"normCeiling\",\"message\":\"gradient norm 1.2e+16 is above the ceiling 1e+08\",\"step\":0,\"tensors\":[]}],"
                + "\"recommendations\":[\"lower the learning rate to 0.00\(k + 1)\"],\"step\":0}"
        }
        try Data(((0..<5).map(incident).joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: dir + "/incidents.jsonl"))
        let html = try RunReport.html(runDirectory: dir)
        XCTAssertTrue(html.contains("data-series=\"train\" data-points=\"4\""), "four attempts, one line")
        XCTAssertTrue(html.contains("steps: <b>1</b> (4 attempts)"))
        XCTAssertTrue(html.contains("<td>0 (5 attempts)</td>"), "five incidents at step 0 are one row")
        XCTAssertEqual(html.components(separatedBy: "lower the learning rate").count - 1, 1, "one recommendation, not five")
        XCTAssertTrue(html.contains("no baseline yet"))
        // Beside a healthy run, the loss axis is logarithmic.
        let healthy = try makeRun()
        let page = try RunReport.comparison([dir, healthy])
        let lossChart = try XCTUnwrap(page.components(separatedBy: "id=\"chart-loss\"").dropFirst().first)
        XCTAssertTrue(lossChart.prefix(4000).contains("1e+15") || lossChart.prefix(4000).contains("1e+16"), "decade ticks on the loss axis")
    }

    func testDownsamplingKeepsSpikes() {
        var pts = (0..<100_000).map { (x: Double($0), y: 1.0) }
        pts[54_321].y = 1e6
        let thin = SVGChartProbe.downsample(pts)
        XCTAssertLessThanOrEqual(thin.count, 800)
        XCTAssertTrue(thin.contains { $0.y == 1e6 && $0.x == 54_321 })
    }

    func testChromiumRendersTheCharts() throws {
        let candidates = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        guard let browser = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            XCTFail("no chromium to render the report: Scripts/setup.sh installs Debian's chromium")
            return
        }
        let dir = try makeRun()
        let report = try RunReport.write(runDirectory: dir)
        func chromium(_ args: [String]) throws -> (String, String) {
            let r = try runProcess(
                browser,
                [
                    "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr",
                    "--v=0"
                ] + args)
            return (r.out, r.err)
        }
        let (dom, log) = try chromium(["--dump-dom", "file://" + report])
        for id in ["chart-loss", "chart-gradnorm", "chart-heatmap", "chart-update", "chart-lr"] {
            XCTAssertTrue(dom.contains("id=\"\(id)\""), "\(id) missing from the rendered DOM")
        }
        XCTAssertTrue(dom.contains("<polyline"), "no chart lines in the rendered DOM")
        XCTAssertFalse(log.contains("Uncaught") || log.contains(":CONSOLE("), "console errors:\n\(log)")
        let png = tmp + "/report.png"
        _ = try chromium(["--window-size=1100,2400", "--screenshot=" + png, "file://" + report])
        let size = (try? FileManager.default.attributesOfItem(atPath: png)[.size] as? Int) ?? 0
        XCTAssertGreaterThan(size, 20_000, "the screenshot is missing or blank")
    }
}
