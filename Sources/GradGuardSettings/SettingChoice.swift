/// A setting with a fixed set of named values: each value owns its help text, and the type
/// builds what the value names. Configuration files and command-line flags are checked
/// against `allCases`.
public protocol SettingChoice: RawRepresentable<String>, CaseIterable, Sendable, Equatable {
    /// One line saying what this value means.
    var help: String { get }
}

extension SettingChoice {
    /// Every value, comma-separated (`"sgd, adam, adamw, rmsprop"`).
    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
    /// Every value with its help, one per line.
    public static var helpLines: String { allCases.map { "\($0.rawValue): \($0.help)" }.joined(separator: "\n") }
}
