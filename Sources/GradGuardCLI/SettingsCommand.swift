import ArgumentParser
import GradGuard
import GradGuardRuns

/// `gradguard settings [PREFIX]`: every setting a run takes, from the declarations themselves —
/// its key, type and allowed values, default, whether `resume --set` may change it, and help.
struct SettingsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "settings", abstract: "List the settings of config.yaml and --set: key, type, default, help.",
        discussion: "A PREFIX such as 'guard' or 'optimizer.lr' lists only the keys that start with it.")
    @Argument(help: "Only the keys that start with this (a section such as guard, or a key).") var prefix: String?

    func run() throws {
        let defaults = RunConfig()
        let shown = RunConfig.table.settings.filter { s in prefix.map { s.key == $0 || s.key.hasPrefix($0 + ".") } ?? true }
        guard !shown.isEmpty else {
            let hint = prefix.flatMap { RunConfig.table.suggestion(for: $0) ?? RunConfig.table.suggestion(for: $0, sections: true) }
            throw fail("no setting starts with '\(prefix ?? "")'" + (hint.map { " (did you mean '\($0)'?)" } ?? ""), code: Exit.usage)
        }
        for s in shown {
            let type: String
            switch s.kind {
            case let .int(r, _): type = "integer \(r.lowerBound)...\(r.upperBound)"
            case let .double(r, _): type = "number \(r.lowerBound)...\(r.upperBound)" + (s.word.map { " or '\($0.text)'" } ?? "")
            case .string: type = "text"
            case .bool: type = "true or false"
            case .choice: type = "a choice"
            }
            print("\(s.key) = \(RunConfig.table.value(of: s, in: defaults))   (\(type)\(s.resumable ? "; resume may change it" : ""))")
            print("    \(s.help)")
        }
    }
}
