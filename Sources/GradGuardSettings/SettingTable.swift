import Foundation

/// Every setting of a configuration, in the order config.yaml lists them, and what is done
/// with settings whatever they are: set from text (a file, `--set`) or a typed value (a
/// flag), checked against type and range, written back as text and YAML, compared on resume,
/// and a typo's nearest key.
public struct SettingTable<Root>: @unchecked Sendable {  // immutable declarations
    /// The settings in config.yaml's order.
    public let settings: [Setting<Root>]
    private let byKey: [String: Int]
    private let byPath: [AnyKeyPath: Int]

    /// A table of `settings` (their keys must be unique).
    public init(_ settings: [Setting<Root>]) {
        self.settings = settings
        byKey = Dictionary(settings.enumerated().map { ($0.element.key, $0.offset) }, uniquingKeysWith: { a, _ in a })
        byPath = Dictionary(settings.enumerated().map { ($0.element.path, $0.offset) }, uniquingKeysWith: { a, _ in a })
    }

    /// The setting of `key`, if there is one.
    public func setting(_ key: String) -> Setting<Root>? { byKey[key].map { settings[$0] } }

    /// The setting stored at `path`.
    public func setting(at path: AnyKeyPath) -> Setting<Root>? { byPath[path].map { settings[$0] } }

    /// Whether `key` names a section of settings (`guard`, `guard.zclip`).
    public func isSection(_ key: String) -> Bool { settings.contains { $0.key.hasPrefix(key + ".") } }

    /// The known key (or, with `sections`, top-level section) closest to `key` by edit
    /// distance, if it is close enough to be a typo.
    public func suggestion(for key: String, sections: Bool = false) -> String? {
        func distance(_ a: String, _ b: String) -> Int {
            let a = Array(a), b = Array(b)
            var row = Array(0...b.count)
            for i in 1...Swift.max(a.count, 1) where !a.isEmpty {
                var prev = row[0]
                row[0] = i
                for j in stride(from: 1, through: b.count, by: 1) {
                    let cur = row[j]
                    row[j] = Swift.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1))
                    prev = cur
                }
            }
            return row[b.count]
        }
        let candidates =
            sections
            ? Array(Set(settings.compactMap { $0.key.contains(".") ? String($0.key.split(separator: ".")[0]) : nil })).sorted()
            : settings.map(\.key)
        let best = candidates.map { ($0, distance(key, $0)) }.min { $0.1 < $1.1 }
        guard let (k, d) = best, d <= Swift.max(2, key.count / 3) else { return nil }
        return k
    }

    /// Sets `key` in `root` from its text, checking type and range.
    public func set(_ key: String, text: String, in root: inout Root, source: String, line: Int?) throws {
        guard let s = setting(key) else {
            let hint = suggestion(for: key).map { " (did you mean '\($0)'?)" } ?? ""
            throw ConfigError(source: source, line: line, key: key, message: "unknown key\(hint)")
        }
        func fail(_ expected: String) -> ConfigError {
            ConfigError(source: source, line: line, key: key, message: "expected \(expected), got '\(text)'")
        }
        switch s.kind {
        case let .int(range, path):
            guard let v = Int(text) else { throw fail("an integer") }
            guard range.contains(v) else { throw fail("an integer in \(range.lowerBound)...\(range.upperBound)") }
            root[keyPath: path] = v
        case let .double(range, path):
            if let w = s.word, text == w.text {
                root[keyPath: path] = w.value
                return
            }
            let or = s.word.map { " or '\($0.text)'" } ?? ""
            guard let v = Double(text), v.isFinite else { throw fail("a number\(or)") }
            guard range.contains(v) else { throw fail("a number in \(range.lowerBound)...\(range.upperBound)\(or)") }
            root[keyPath: path] = v
        case let .string(path):
            try check(text: text, of: s, source: source, line: line)
            root[keyPath: path] = text
        case let .choice(names, _, set):
            guard set(&root, text) else { throw fail("one of \(names.joined(separator: ", "))") }
        case let .bool(path):
            switch text.lowercased() {
            case "true", "yes", "on": root[keyPath: path] = true
            case "false", "no", "off": root[keyPath: path] = false
            default: throw fail("true or false")
            }
        }
    }

    /// Sets the setting stored at `path` to a typed value (a command-line flag), checking its
    /// range as its text would be; returns the setting's key.
    @discardableResult
    public func set<V>(_ path: WritableKeyPath<Root, V>, to value: V, in root: inout Root, source: String) throws -> String {
        guard let s = setting(at: path) else { preconditionFailure("no setting is declared at \(path)") }
        switch (s.kind, value) {
        case let (.int(range, _), v as Int) where !range.contains(v):
            throw ConfigError(
                source: source, line: nil, key: s.key, message: "expected an integer in \(range.lowerBound)...\(range.upperBound), got '\(v)'")
        case let (.double(range, _), v as Double) where !v.isFinite || (!range.contains(v) && v != s.word?.value):
            throw ConfigError(source: source, line: nil, key: s.key, message: "expected a number in \(range.lowerBound)...\(range.upperBound), got '\(v)'")
        case let (.string, v as String):
            try check(text: v, of: s, source: source, line: nil)
        default:
            break
        }
        root[keyPath: path] = value
        return s.key
    }

    private func check(text: String, of s: Setting<Root>, source: String, line: Int?) throws {
        func fail(_ expected: String) -> ConfigError {
            ConfigError(source: source, line: line, key: s.key, message: "expected \(expected), got '\(text)'")
        }
        guard !text.isEmpty || s.emptyAllowed else { throw fail("a non-empty text") }
        if let why = s.textProblem?(text) { throw ConfigError(source: source, line: line, key: s.key, message: why) }
        if text.unicodeScalars.contains(where: { $0.value == 0 }) { throw fail("a text without NUL characters") }
        if text.unicodeScalars.first == "\u{FEFF}" { throw fail("a text that does not start with a byte-order mark (U+FEFF)") }
    }

    /// A setting's value as config.yaml writes it.
    public func value(of s: Setting<Root>, in root: Root) -> String {
        switch s.kind {
        case let .int(_, p): return String(root[keyPath: p])
        case let .double(_, p):
            if let w = s.word, root[keyPath: p] == w.value { return w.text }
            return "\(root[keyPath: p])"
        case let .string(p): return Self.quoted(root[keyPath: p])
        case let .bool(p): return root[keyPath: p] ? "true" : "false"
        case let .choice(_, get, _): return get(root)
        }
    }

    /// Every setting's value as written in config.yaml.
    public func values(of root: Root) -> [String: String] {
        Dictionary(settings.map { ($0.key, value(of: $0, in: root)) }, uniquingKeysWith: { a, _ in a })
    }

    /// The first setting that differs between `saved` and `new` and may not change on resume.
    public func unresumableChange(from saved: Root, to new: Root) -> ConfigError? {
        for s in settings where !s.resumable {
            let (old, now) = (value(of: s, in: saved), value(of: s, in: new))
            guard old != now else { continue }
            return ConfigError(
                source: "--set", line: nil, key: s.key,
                message: "cannot change when resuming (the run was trained with \(old), the checkpoint holds its state); "
                    + "resume can change \(settings.filter(\.resumable).map(\.key).sorted().joined(separator: ", ")) — start a new run for anything else")
        }
        return nil
    }

    /// The first of the `given` settings that does not apply to `root`, as an error.
    public func inapplicable(in root: Root, given: Set<String>, source: String) -> ConfigError? {
        for s in settings where given.contains(s.key) {
            if let why = s.inapplicable?(root) { return ConfigError(source: source, line: nil, key: s.key, message: why) }
        }
        return nil
    }

    /// The settings as YAML under `header`, each top-level section once (its settings in
    /// table order), each setting with its help as a comment; a setting that does not apply
    /// is left out unless given.
    public func yaml(of root: Root, header: String, given: Set<String>) -> String {
        var out = header + "\n"
        var order: [String] = []
        var groups: [String: [Setting<Root>]] = [:]
        for s in settings {
            if s.inapplicable?(root) != nil && !given.contains(s.key) { continue }
            let top = s.key.contains(".") ? String(s.key.split(separator: ".")[0]) : ""
            if groups[top] == nil { order.append(top) }
            groups[top, default: []].append(s)
        }
        var open: [String] = []
        for top in order {
            for s in groups[top]! {
                let parts = s.key.split(separator: ".").map(String.init)
                let sections = Array(parts.dropLast())
                var depth = 0
                while depth < open.count && depth < sections.count && open[depth] == sections[depth] { depth += 1 }
                open = Array(open.prefix(depth))
                for d in depth..<sections.count {
                    out += String(repeating: "  ", count: d) + sections[d] + ":\n"
                    open.append(sections[d])
                }
                out += String(repeating: "  ", count: sections.count) + "\(parts.last ?? s.key): \(value(of: s, in: root))   # \(s.help)\n"
            }
        }
        return out
    }

    /// `s` as a YAML scalar that reads back as exactly `s`: plain when it is made of ASCII
    /// letters, digits and `_./-` (not starting with `-`), otherwise double-quoted with
    /// `\\`, `\"` and every character YAML does not allow raw (controls, line and paragraph
    /// separators, non-characters) escaped.
    public static func quoted(_ s: String) -> String {
        let plain = s.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_./-".unicodeScalars.contains($0)) }
        if plain && !s.isEmpty && !s.hasPrefix("-") { return s }
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\t": out += "\\t"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            default:
                let v = u.value
                let printable =
                    (v >= 0x20 && v < 0x7F) || v == 0x85 || (v >= 0xA0 && v <= 0xD7FF && v != 0x2028 && v != 0x2029)
                    || (v >= 0xE000 && v <= 0xFFFD && v != 0xFEFF) || v >= 0x10000
                out += printable && v != 0x85 ? String(u) : (v <= 0xFF ? String(format: "\\x%02X", v) : String(format: "\\u%04X", v))
            }
        }
        return out + "\""
    }
}
