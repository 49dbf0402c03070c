import ArgumentParser
import Foundation

/// `gradguard`: train, resume, evaluate, report on, diagnose, inspect and compare runs.
///
/// Exit codes: 0 success; 1 training diverged (the guard halted); 2 usage or
/// configuration error; 3 a missing or unreadable file or run; 4 no loadable checkpoint.
public struct GradGuardCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "gradguard",
        abstract: "Train neural networks with a guard against exploding and vanishing gradients.",
        discussion: "Exit codes: 0 ok, 1 training diverged, 2 usage or configuration error, 3 missing file or run, 4 no loadable checkpoint.",
        subcommands: [Train.self, Resume.self, Eval.self, Report.self, Diagnose.self, Inspect.self, Compare.self, Demo.self, Generate.self, Translate.self, DataCommand.self, Detect.self])

    public init() {}
}
