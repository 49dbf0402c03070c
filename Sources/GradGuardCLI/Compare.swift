import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Compare runs side by side; writes compare.html with overlay charts.")
    @Argument(help: "Run names or directories.") var runs: [String]
    @Option(name: .long, help: "Where to write the overlay page (default: compare.html in the first run's runs directory).") var output: String?

    func run() throws {
        guard runs.count >= 1 else { throw fail("name at least one run", code: Exit.usage) }
        let dirs = try runs.map { try runDirectory($0) }
        let output = self.output ?? (dirs[0] as NSString).deletingLastPathComponent + "/compare.html"
        try refuseOutput(output, flag: "--output", over: dirs.map { ($0, "a file of the run") })
        let summaries = try dirs.map { try RunRecords.summary(of: $0) }
        print(RunRecords.table(summaries))
        try AtomicFile.write(Data(RunReport.comparison(dirs).utf8), to: output)
        print("overlay: \(output)")
    }
}
