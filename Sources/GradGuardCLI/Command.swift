import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

/// `gradguard`: train, resume, evaluate, report on, diagnose, inspect and compare runs.
///
/// Exit codes: 0 success; 1 training diverged (the guard halted); 2 usage or
/// configuration error; 3 a missing or unreadable file or run, or bad data; 4 no loadable
/// checkpoint; 5 cannot write (disk full, read-only, permission); 6 the run is in use by
/// another process; 7 a data-parallel job failed (a rank died, stalled or disagreed).
public struct GradGuardCommand: ParsableCommand {
    /// The subcommands and their help.
    public static let configuration = CommandConfiguration(
        commandName: "gradguard",
        abstract: "Train neural networks with a guard against exploding and vanishing gradients.",
        discussion:
            "Exit codes: 0 ok, 1 training diverged, 2 usage or configuration error, 3 missing or unreadable file or run, or bad data, 4 no loadable checkpoint, 5 cannot write (disk full, read-only, permission), 6 run in use by another process, 7 data-parallel job failed (a rank died, stalled or disagreed). Under `mpirun -np N` train and resume run data-parallel over the N processes.",
        subcommands: [
            Train.self, Resume.self, Eval.self, Report.self, Diagnose.self, Replay.self, Inspect.self, Compare.self, DemoCommand.self, Generate.self,
            Translate.self,
            DataCommand.self, Detect.self, Env.self, GuardBenchCommand.self, SettingsCommand.self, LRFind.self
        ])

    /// The command, as the argument parser makes it.
    public init() {}

    /// Parses the command line, runs the command and exits with its documented code: every
    /// error a user can cause ends in one sentence on standard error, never a trap or an
    /// error dump.
    public static func runAndExit(_ arguments: [String]? = nil) -> Never {
        // Progress lines reach a log as they are printed, not in blocks.
        lineBufferStandardOutput()
        // A file-size limit (ulimit -f) makes writes fail with EFBIG, reported as any failed
        // write is, instead of killing the process mid-record.
        signal(SIGXFSZ, SIG_IGN)
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            Launch.end(code: Exit.ok, agreed: true)
        } catch let code as ExitCode {
            // The ranks of a job halt together (their guards decide alike); other failures may be
            // one rank's, so they end the whole job.
            Launch.end(code: code.rawValue, agreed: code.rawValue == Exit.diverged || !Launch.underMPI)
        } catch let agreed as Launch.AgreedExit {
            Launch.end(code: agreed.code, agreed: true)
        } catch let e as CommunicatorError {
            // A rank died, stalled or disagreed: end every process of the job.
            _ = fail(e.description, code: Exit.distributed)
            Launch.end(code: Exit.distributed, agreed: false)
        } catch {
            let parserCode = exitCode(for: error)
            if parserCode == .success { exit(withError: error) }  // --help, --version
            if let (message, code) = userError(error) {
                _ = fail(message, code: code)
                Launch.end(code: code, agreed: !Launch.underMPI)
            }
            if parserCode == .validationFailure {  // a usage error
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(Exit.usage)
            }
            _ = fail("internal error: \(error) — please report it with the command that caused it", code: Exit.internalError)
            Foundation.exit(Exit.internalError)
        }
    }
}
