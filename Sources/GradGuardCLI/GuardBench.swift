import ArgumentParser
import Foundation
import GradGuard
import GradGuardBench

/// `gradguard guard-bench`: GuardBench, the benchmark of healthy and failing runs the guard is
/// judged on.
struct GuardBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guard-bench",
        abstract: "Run GuardBench: healthy and failing training runs under guard settings, scored for false alarms, recall, rescue and diagnosis.",
        discussion:
            "Each configuration (architecture, optimizer, loss) trains a healthy variant and failing ones (rate too high, N(0,1) initialisation, depth without normalisation, long sequences, recurrent gain, poisoned batches, bad labels). The monitor-only runs are the ground truth. Build in release: swift run -c release gradguard guard-bench."
    )
    @Option(name: .long, help: "Guard settings, comma-separated, or 'all': \(GuardSetting.allCases.map(\.rawValue).joined(separator: ", ")).")
    var settings = "monitor-only,default"
    @Option(name: .long, parsing: .unconditional, help: "Seeds per variant (seed, seed + 1, …).") var seeds = 1
    @Option(name: .long, parsing: .unconditional, help: "The first seed.") var seed = 1
    @Option(name: .long, help: "Half: tuning, checking or all.") var half = "all"
    @Option(name: .long, help: "Only configurations whose name contains one of these, comma-separated.") var only: String?
    @Option(name: .long, help: "Folder for results.json and summary.md (created).") var out: String?
    @Flag(name: .long, help: "List the configurations and their variants, and exit.") var list = false

    func validate() throws {
        try Bounds.check(seeds, 1...100, "--seeds")
        try Bounds.check(seed, 0...Int(Int32.max), "--seed")
        guard half == "all" || BenchHalf(rawValue: half) != nil else {
            throw ValidationError("--half must be tuning, checking or all, not '\(printable(half))'")
        }
        for s in settings.split(separator: ",") where s != "all" && GuardSetting(rawValue: String(s)) == nil {
            throw ValidationError(
                "unknown guard setting '\(printable(String(s)))'; known: \(GuardSetting.allCases.map(\.rawValue).joined(separator: ", ")), all")
        }
    }

    @Flag(
        name: .long, help: "Instead of the guard settings: lr-find's suggestion against a grid of rates (÷16 … ×16 of each configuration's), trained unguarded."
    )
    var rateSweep = false

    func sweepRates(_ configs: [BenchConfig]) throws {
        var rows = [
            "| configuration | seed | lr-find's suggestion | its score | configuration's rate: score | grid's best rate: score | within 5 % of the best |",
            "|---|---|---|---|---|---|---|"
        ]
        var results: [RateSweepResult] = []
        for c in configs {
            for s in 0..<seeds {
                let r = try BenchRunner.rateSweep(c, seed: UInt64(seed + s))
                results.append(r)
                let chance = try c.task(.none, seed: r.seed).chance
                let row =
                    "| \(c.name) | \(r.seed) | \(formatNumber(r.suggestion)) | \(String(format: "%.3f", r.suggestionScore)) | \(formatNumber(r.defaultRate)): \(String(format: "%.3f", r.defaultScore)) | "
                    + "\(formatNumber(r.best.rate)): \(String(format: "%.3f", r.best.score)) | \(r.withinFivePercent(chance: chance) ? "yes" : "no") |"
                rows.append(row)
                print(row + "  " + r.grid.map { "\(formatNumber($0[0])):\(String(format: "%.3f", $0[1]))" }.joined(separator: " "))
            }
        }
        print("\n" + rows.joined(separator: "\n"))
        if let out {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            try write(try encoder.encode(results), to: out + "/rate-sweep.json")
            try write(Data(("# lr-find against a grid\n\n" + rows.joined(separator: "\n") + "\n").utf8), to: out + "/rate-sweep.md")
        }
    }

    func run() throws {
        var chosen = settings == "all" ? GuardSetting.allCases : settings.split(separator: ",").compactMap { GuardSetting(rawValue: String($0)) }
        // The unguarded runs are the ground truth of every other setting.
        if !chosen.contains(.monitorOnly) { chosen.insert(.monitorOnly, at: 0) }
        let filters = only?.split(separator: ",").map(String.init) ?? []
        let configs = BenchCatalog.all.filter { c in
            (half == "all" || c.half.rawValue == half) && (filters.isEmpty || filters.contains { c.name.contains($0) })
        }
        if list {
            for c in configs {
                print("\(c.name)  [\(c.half.rawValue), \(c.steps) steps, lr \(formatNumber(c.lr))]  " + c.faults.map(\.label).joined(separator: ", "))
            }
            print("\(configs.count) configurations, \(configs.reduce(0) { $0 + $1.faults.count }) variants")
            return
        }
        guard !configs.isEmpty else { throw fail("no configuration matches --only \(printable(only ?? "")) and --half \(half)", code: Exit.usage) }
        if let out { try prepareOutput(out) }
        if rateSweep { return try sweepRates(configs) }
        var results: [BenchRunResult] = []
        for c in configs {
            for fault in c.faults {
                for s in 0..<seeds {
                    for setting in chosen {
                        let r = try BenchRunner.run(c, fault: fault, seed: UInt64(seed + s), setting: setting)
                        results.append(r)
                        let acts = r.intervened ? " skips \(r.skipped) rollbacks \(r.rollbacks) back-offs \(r.backOffs)\(r.halted ? " halted" : "")" : ""
                        print(
                            "\(c.name) | \(fault.label) | seed \(r.seed) | \(setting.rawValue): score \(String(format: "%.3f", r.score)), loss "
                                + "\(formatNumber(r.startLoss)) → \(formatNumber(r.endLoss)), \(r.findings.count) findings"
                                + (r.findings.first.map { " (first \($0.kind.rawValue) @\($0.step))" } ?? "") + acts
                                + (r.firstCause.map { ", cause \($0.rawValue)" } ?? "") + String(format: ", %.1f s", r.seconds))
                    }
                }
            }
        }
        var table = BenchScoring.markdown(results)
        let foresight = BenchScoring.foresightMarkdown(results)
        if !foresight.isEmpty { table += "\n\n### Foresight (curvature probe every \(BenchRunner.probeEvery) steps)\n\n" + foresight }
        print("\n" + table)
        if let out {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            try write(try encoder.encode(results), to: out + "/results.json")
            let summary = "# GuardBench\n\n" + table + "\n\n## Every variant\n\n" + BenchScoring.detail(results) + "\n"
            try write(Data(summary.utf8), to: out + "/summary.md")
            print("wrote \(out)/results.json and \(out)/summary.md")
        }
    }

    func prepareOutput(_ dir: String) throws {
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            throw fail("cannot create \(printable(dir)): \(AtomicFile.reason(error))", code: Exit.cannotWrite)
        }
    }

    func write(_ data: Data, to path: String) throws {
        do { try AtomicFile.write(data, to: path) } catch { throw fail("cannot write \(printable(path)): \(AtomicFile.reason(error))", code: Exit.cannotWrite) }
    }
}
