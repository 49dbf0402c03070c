import ArgumentParser
import Foundation
import GradGuard
import GradGuardDemos
import GradGuardRuns

/// `gradguard demo NAME`: the demo experiments of `GradGuardRuns.Demo`.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo", abstract: "Run a canned experiment and print its table (rnn, init, lr, regularization, detector, charlm, stabilizers).",
        discussion: Demo.help)
    @Argument(help: "Demo: rnn, init, lr, regularization, detector or charlm.") var name: String
    @Option(name: .long, help: "charlm: a UTF-8 text file instead of the built-in corpus.") var text: String?
    @Option(name: .long, parsing: .unconditional, help: "Sequence length of the adding problem.") var length = 20
    @Option(
        name: .customLong("steps"), parsing: .unconditional,
        help: "Optimizer steps per run (rnn 3000, init 300, lr 400, regularization 1500, detector 300, charlm 600).")
    var stepsOption: Int?
    @Option(
        name: .customLong("lr"), parsing: .unconditional, help: "Learning rate, high enough to explode without protection (rnn 0.5, detector 0.1, charlm 40).")
    var lrOption: Double?
    @Option(name: .long, help: "Optimizer: sgd or adam.") var optimizer = "sgd"
    @Option(name: .long, parsing: .unconditional, help: "SGD momentum.") var momentum = 0.0
    @Option(name: .long, help: "Cells to run, comma-separated: rnn, lstm.") var cells = "rnn,lstm"
    @Flag(name: .long, help: "ReLU instead of tanh in the vanilla RNN.") var relu = false
    @Option(name: .customLong("runs-directory"), help: "Where the run directories go (default runs/demo-NAME).") var runsDirectory: String?
    @Option(name: .long, parsing: .unconditional, help: "Seed.") var seed = 0
    @Option(
        name: .long, parsing: .unconditional,
        help:
            "Training examples of the init demo's CNN (default 2048; the MLP 4096) and the detector demo (256 images); validation a quarter as many (the MLP 512)."
    )
    var examples: Int?
    @Option(name: .long, parsing: .unconditional, help: "Run the demo with this many seeds (seed, seed + 1, …) and print medians with their range.")
    var seeds = 1

    func run() throws {
        var demo = Demo(name: name, runsDirectory: runsDirectory)
        (demo.text, demo.length, demo.stepsOption, demo.lrOption, demo.optimizer) = (text, length, stepsOption, lrOption, optimizer)
        (demo.momentum, demo.cells, demo.relu, demo.seed, demo.examples) = (momentum, cells, relu, seed, examples)
        do { try demo.run(seeds: seeds) } catch let e as DemoError {
            switch e {
            case .usage(let m): throw fail(m, code: Exit.usage)
            case .missing(let m): throw fail(m, code: Exit.missing)
            }
        }
    }
}
