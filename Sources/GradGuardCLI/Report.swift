import ArgumentParser
import Foundation
import GradGuard
import GradGuardRuns

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write the run's report.html and print its path.")
    @Argument(help: "Run name or directory.") var runName: String

    func run() throws {
        let dir = try runDirectory(runName)
        // The model kind's parts, when its config.yaml says which it is.
        let parts = (try? RunConfig.load(path: dir + "/config.yaml"))?.model.kind.moduleParts
        print(try RunReport.write(runDirectory: dir, moduleParts: parts))
    }
}
