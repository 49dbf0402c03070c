import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-run the step of an incident from its replay record: its gradient norms (compared bit for bit) and the examples behind them.")
    @Argument(help: "Run name or directory.") var runName: String
    @Option(name: .long, parsing: .unconditional, help: "The incident, counted from 1 in incidents.jsonl (gradguard diagnose lists them in order).")
    var incident: Int
    @Option(name: .long, parsing: .unconditional, help: "Examples to list, largest gradient first.") var top = 10

    func validate() throws {
        try Bounds.check(incident, 1...Int(Int32.max), "--incident")
        try Bounds.check(top, 0...100_000, "--top")
    }

    func run() throws {
        let (dir, c) = try runConfig(runName, kind: nil, command: "replay")
        let r: ReplayOutcome
        do { r = try ReplayOutcome.run(directory: dir, config: c, incident: incident) } catch let e as ReplayError {
            throw fail(e.description, code: Exit.missing)
        }
        func bits(_ a: Float, _ b: Float) -> String { a.bitPattern == b.bitPattern ? "identical" : "recorded \(b)" }
        print("\(dir), incident \(incident): step \(r.step) replayed")
        print("  loss \(r.loss.replayed) (\(bits(r.loss.replayed, r.loss.recorded)))")
        print("  global gradient norm \(r.globalNorm.replayed) (\(bits(r.globalNorm.replayed, r.globalNorm.recorded)))")
        for t in r.tensors { print("  \(t.name): \(t.replayed) (\(bits(t.replayed, t.recorded)))") }
        print(r.identical ? "every norm identical to the step's, bit for bit" : "the replay differs from the recorded step")
        print("\nexamples by gradient norm (each run alone):")
        for s in r.samples.prefix(top) {
            print(String(format: "  %5.1f %%  norm %-10.4g loss %-8.4g  ", s.share * 100, s.gradNorm, s.loss) + s.source)
        }
        if let note = DataBlame.note(r.samples) { print("\n" + note) }
        if !r.identical { throw ExitCode(Exit.diverged) }
    }
}
