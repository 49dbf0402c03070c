import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate a run's newest checkpoint on its validation data.")
    @Argument(help: "Run name or directory.") var runName: String

    func run() throws {
        let (_, w, step) = try trainedRun(runName, command: "eval")
        let trainer = try w.makeTrainer(nil, nil, nil)
        guard let validation = w.validation else { throw fail("run \(runName) has no validation data (data.validation is 0)", code: Exit.usage) }
        let m = try trainer.runEvaluation(validation)
        print("checkpoint step \(step): " + m.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.4f", $0.value))" }.joined(separator: ", "))
    }
}
