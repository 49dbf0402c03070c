import Foundation

/// One setting of a configuration `Root`, declared once beside the code it configures: its key
/// in the YAML file (`optimizer.lr`), its type and allowed values, its help (config.yaml's
/// comment and `gradguard settings`), whether `gradguard resume --set` may change it, and when
/// it applies. A section (`SettingSection`) lists its settings; a run's configuration composes
/// the sections (`within`), and reading, writing, checking and typo hints are the same for all
/// (`SettingTable`).
public struct Setting<Root>: @unchecked Sendable {  // key paths into value types and pure closures over them: immutable
    /// The setting's type with its range, and where its value lives.
    public enum Kind {
        case int(ClosedRange<Int>, WritableKeyPath<Root, Int>)
        case double(ClosedRange<Double>, WritableKeyPath<Root, Double>)
        case string(WritableKeyPath<Root, String>)
        case bool(WritableKeyPath<Root, Bool>)
        /// One of a `SettingChoice`'s values, read and written by name.
        case choice(names: [String], get: (Root) -> String, set: (inout Root, String) -> Bool)
    }
    /// The dotted key in config.yaml and `--set` (`optimizer.lr`).
    public let key: String
    /// The type, range and place of the value.
    public let kind: Kind
    /// One line of help (config.yaml's comment, `gradguard settings`).
    public let help: String
    /// `gradguard resume --set` may change it (the length of the run, how often it evaluates
    /// and checkpoints, the guard's thresholds); the rest shapes the model, the data or the
    /// optimizer state a checkpoint holds.
    public let resumable: Bool
    /// Where the value lives: what a typed write (`SettingTable.set(_:to:in:)`) looks it up by.
    public let path: AnyKeyPath
    /// Why the setting does not apply to a configuration (another clipper's threshold, SPAM's
    /// settings for Adam), or nil when it does: config.yaml leaves it out, and giving it is an
    /// error.
    public let inapplicable: ((Root) -> String?)?
    /// A text's problem beyond being text (a run name with a '/'), or nil.
    public let textProblem: ((String) -> String?)?
    /// An empty text is a value (`data.path`: the built-in data).
    public let emptyAllowed: Bool
    /// A word that a number setting also takes, stored as a value outside its range
    /// (`optimizer.lr: auto`, stored as 0: the rate is found by the range test).
    public var word: (text: String, value: Double)? = nil

    init(
        key: String, kind: Kind, help: String, resumable: Bool, path: AnyKeyPath, inapplicable: ((Root) -> String?)?,
        textProblem: ((String) -> String?)? = nil, emptyAllowed: Bool = false
    ) {
        (self.key, self.kind, self.help, self.resumable, self.path) = (key, kind, help, resumable, path)
        (self.inapplicable, self.textProblem, self.emptyAllowed) = (inapplicable, textProblem, emptyAllowed)
    }

    /// An integer setting within `range`.
    public static func int(
        _ key: String, _ path: WritableKeyPath<Root, Int>, in range: ClosedRange<Int>, _ help: String, resumable: Bool = false,
        inapplicable: ((Root) -> String?)? = nil
    ) -> Setting {
        Setting(key: key, kind: .int(range, path), help: help, resumable: resumable, path: path, inapplicable: inapplicable)
    }

    /// A number setting within `range`.
    public static func double(
        _ key: String, _ path: WritableKeyPath<Root, Double>, in range: ClosedRange<Double>, _ help: String, resumable: Bool = false,
        inapplicable: ((Root) -> String?)? = nil
    ) -> Setting {
        Setting(key: key, kind: .double(range, path), help: help, resumable: resumable, path: path, inapplicable: inapplicable)
    }

    /// A number setting that also takes `word`, stored as `value` (outside `range`).
    public static func double(
        _ key: String, _ path: WritableKeyPath<Root, Double>, in range: ClosedRange<Double>, or word: String, storedAs value: Double, _ help: String,
        resumable: Bool = false
    ) -> Setting {
        var s = Setting(key: key, kind: .double(range, path), help: help, resumable: resumable, path: path, inapplicable: nil)
        s.word = (word, value)
        return s
    }

    /// A true/false setting.
    public static func bool(_ key: String, _ path: WritableKeyPath<Root, Bool>, _ help: String, resumable: Bool = false) -> Setting {
        Setting(key: key, kind: .bool(path), help: help, resumable: resumable, path: path, inapplicable: nil)
    }

    /// A text setting (empty only when `emptyAllowed`).
    public static func string(
        _ key: String, _ path: WritableKeyPath<Root, String>, _ help: String, resumable: Bool = false, emptyAllowed: Bool = false,
        problem: ((String) -> String?)? = nil
    ) -> Setting {
        Setting(
            key: key, kind: .string(path), help: help, resumable: resumable, path: path, inapplicable: nil, textProblem: problem,
            emptyAllowed: emptyAllowed)
    }

    /// A setting whose values are `E`'s; the help lists them.
    public static func choice<E: SettingChoice>(_ key: String, _ path: WritableKeyPath<Root, E>, _ help: String, resumable: Bool = false) -> Setting {
        Setting(
            key: key,
            kind: .choice(
                names: E.allCases.map(\.rawValue), get: { $0[keyPath: path].rawValue },
                set: { root, text in
                    guard let v = E(rawValue: text) else { return false }
                    root[keyPath: path] = v
                    return true
                }),
            help: "\(help): \(E.names)", resumable: resumable, path: path, inapplicable: nil)
    }

    /// The same setting of a configuration that holds `Root` at `section`.
    public func within<Outer>(_ section: WritableKeyPath<Outer, Root>) -> Setting<Outer> {
        let k: Setting<Outer>.Kind
        switch kind {
        case let .int(r, p): k = .int(r, section.appending(path: p))
        case let .double(r, p): k = .double(r, section.appending(path: p))
        case let .string(p): k = .string(section.appending(path: p))
        case let .bool(p): k = .bool(section.appending(path: p))
        case let .choice(names, get, set): k = .choice(names: names, get: { get($0[keyPath: section]) }, set: { set(&$0[keyPath: section], $1) })
        }
        var s = Setting<Outer>(
            key: key, kind: k, help: help, resumable: resumable, path: (section as AnyKeyPath).appending(path: path) ?? section,
            inapplicable: inapplicable.map { f in { f($0[keyPath: section]) } }, textProblem: textProblem, emptyAllowed: emptyAllowed)
        s.word = word
        return s
    }
}

/// A group of settings declared beside the code they configure (the optimizer's in
/// GradGuardOptim, the guard's in GradGuardHealth, …): the values, their defaults (`init()`)
/// and the declarations.
public protocol SettingSection: Sendable, Equatable {
    init()
    static var settings: [Setting<Self>] { get }
    /// A problem of settings that depend on each other within the section — the key to blame
    /// and the sentence — or nil.
    func problem() -> (key: String, message: String)?
}

extension SettingSection {
    /// No problem across settings.
    public func problem() -> (key: String, message: String)? { nil }
}

/// A configuration error, naming the file, the line and the key.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    /// The file (or `--set`) the value came from.
    public let source: String
    /// The line of the file, when known.
    public let line: Int?
    /// The setting's key, when one is concerned.
    public let key: String?
    /// What was expected and what was found.
    public let message: String
    /// The file itself could not be read (missing, a directory, unreadable): exit code 3,
    /// where a file that reads but says something wrong is a usage error (2).
    public var unreadable = false

    /// An error at `source`, `line` and `key`.
    public init(source: String, line: Int?, key: String?, message: String, unreadable: Bool = false) {
        (self.source, self.line, self.key, self.message, self.unreadable) = (source, line, key, message, unreadable)
    }

    /// "file:line: key: message", for the command line.
    public var description: String {
        var place = source
        if let line { place += ":\(line)" }
        return key.map { "\(place): \($0): \(message)" } ?? "\(place): \(message)"
    }
}
