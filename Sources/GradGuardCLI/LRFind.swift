import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

/// `gradguard lr-find`: the learning-rate range test on a run's model and data, before training.
struct LRFind: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lr-find",
        abstract: "Find a learning rate: an exponential sweep on a throwaway copy of the run (nothing is trained or saved but the picture).",
        discussion: """
            The rate grows from --start to --end over --steps batches; the loss is smoothed and the sweep stops once it passes \
            --divergence times its best. The suggestion follows --rule (fastai's valley by default); with --curvature-iterations \
            above 0 the curvature probe measures λ_max at the start and the optimizer's stability limit c/λ_max there is marked \
            (not imposed: the curvature at initialisation is often far above where it settles). `gradguard train --set optimizer.lr=auto` runs this test first and \
            writes the suggestion into config.yaml.
            """)
    @Option(name: .long, help: "YAML configuration file.") var config: String?
    @OptionGroup var settings: SettingFlags
    @Option(name: .long, help: "The first rate of the sweep.") var start = 1e-7
    @Option(name: .long, help: "The last rate of the sweep.") var end = 10.0
    @Option(name: .long, help: "Batches (rates) in the sweep.") var steps = 100
    @Option(name: .long, help: "Stop once the smoothed loss passes this multiple of its best.") var divergence = 4.0
    @Option(name: .long, help: "How to suggest a rate: valley, steepest or minimum.") var rule = "valley"
    @Option(name: .long, help: "Hessian-vector products of the curvature probe at the start (0: no probe).") var curvatureIterations = 20
    @Option(name: .long, help: "Write the picture here (an HTML page with an SVG chart).") var out: String?
    @Flag(name: .long, help: "Print the result as JSON.") var json = false

    func validate() throws {
        guard start > 0, start.isFinite, end.isFinite, end > start else { throw ValidationError("--start and --end must be rates with 0 < start < end") }
        try Bounds.check(steps, 2...100_000, "--steps")
        try Bounds.check(curvatureIterations, 0...1000, "--curvature-iterations")
        guard divergence > 1, divergence.isFinite else { throw ValidationError("--divergence must be a number above 1") }
        guard LRFindRule(rawValue: rule) != nil else {
            throw ValidationError("--rule must be one of \(LRFindRule.allCases.map(\.rawValue).joined(separator: ", ")), not '\(printable(rule))'")
        }
    }

    func run() throws {
        var c = try settings.runConfig(file: config)
        if c.optimizer.lrIsAuto { c.optimizer.lr = 1e-3 }  // the sweep sets the rates itself
        let setup = try workload(c, runDirectory: nil)
        var s = LRFinder.Settings()
        (s.start, s.end, s.steps, s.divergence, s.curvatureIterations) = (start, end, steps, divergence, curvatureIterations)
        s.rule = LRFindRule(rawValue: rule) ?? .valley
        let result = try setup.findRate(c, settings: s)
        if json {
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys]
            e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            var object = try JSONSerialization.jsonObject(with: e.encode(result)) as? [String: Any] ?? [:]
            object["suggestion"] = result.suggestion
            object["explanation"] = result.explanation
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print(
                "lr-find: \(c.model.kind.rawValue) with \(c.optimizer.kind.rawValue), \(result.rates.count) rates from \(formatNumber(start)) to \(formatNumber(result.rates.last ?? end))"
            )
            print(RateFindingReport.terminal(result))
            if let why = result.stopped { print("stopped early: \(why)") }
            print(result.explanation)
        }
        if let out {
            do { try AtomicFile.write(Data(result.html(title: "\(c.model.kind.rawValue), \(c.optimizer.kind.rawValue)").utf8), to: out) } catch {
                throw fail("cannot write \(printable(out)): \(AtomicFile.reason(error))", code: Exit.cannotWrite)
            }
            if !json { print("wrote \(out)") }
        }
    }
}
