import CYaml
import Foundation
import Yams

/// YAML read from users' files with the expansion of aliases bounded. Yams builds an alias
/// as a copy of its anchor's node and hashes every mapping key to find duplicates, so
/// aliases nested on aliases ("billion laughs") used as keys take exponential time before
/// any key is looked at. Before composing, the document's events are walked once with
/// libyaml's parser: the size of every anchored node is counted, aliases adding their
/// anchor's size, and a document whose expanded size passes `maxNodes`, or that uses a
/// collection alias as a mapping key, is refused.
public enum SafeYAML {
    /// The most nodes a document may expand to (a config has about 150).
    public static let maxNodes = 100_000

    /// Why a document was refused, and the line (from 1) where it was seen.
    public struct Refusal: Error, Equatable {
        /// The line.
        public let line: Int
        /// Why the document was refused.
        public let message: String
    }

    /// The root node of `text`, or nil for an empty document.
    public static func compose(_ text: String) throws -> Node? {
        try check(text)
        return try Yams.compose(yaml: text)
    }

    /// Throws a `Refusal` for a document whose aliases expand past the limit or alias a
    /// collection as a key; passes what libyaml cannot parse on to Yams (its error is better).
    public static func check(_ text: String) throws {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return }
        defer { yaml_parser_delete(&parser) }
        let bytes = Array(text.utf8)
        try bytes.withUnsafeBufferPointer { buffer in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            // One frame per open collection: its size so far, its anchor, whether it is a
            // mapping and whether the next node is a key.
            struct Frame { var size: Int; var anchor: String?; var mapping: Bool; var expectKey: Bool }
            var stack: [Frame] = []
            var anchorSizes: [String: (size: Int, collection: Bool)] = [:]
            var total = 0
            // A finished node of `size` nodes (after expansion) joins the collection around it;
            // `counted` when its nodes were already added to the total as they came.
            func finished(_ size: Int, counted: Bool, line: Int) throws {
                if !counted { total += size }
                guard total <= maxNodes else {
                    throw Refusal(line: line, message: "its aliases expand to more than \(maxNodes) nodes (nested aliases, a \"billion laughs\")")
                }
                if !stack.isEmpty {
                    stack[stack.count - 1].size += size
                    if stack[stack.count - 1].mapping { stack[stack.count - 1].expectKey.toggle() }
                }
            }
            func anchorName(_ p: UnsafeMutablePointer<yaml_char_t>?) -> String? { p.map { String(cString: $0) } }
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { return }
                defer { yaml_event_delete(&event) }
                let line = Int(event.start_mark.line) + 1
                switch event.type {
                case YAML_STREAM_END_EVENT: return
                case YAML_SCALAR_EVENT:
                    if let a = anchorName(event.data.scalar.anchor) { anchorSizes[a] = (1, false) }
                    try finished(1, counted: false, line: line)
                case YAML_ALIAS_EVENT:
                    let name = anchorName(event.data.alias.anchor) ?? ""
                    guard let anchored = anchorSizes[name] else { return }  // Yams reports the undefined alias
                    if anchored.collection, let top = stack.last, top.mapping, top.expectKey {
                        throw Refusal(line: line, message: "the alias *\(name) of a list or mapping is used as a key; keys must be plain values")
                    }
                    try finished(anchored.size, counted: false, line: line)
                case YAML_SEQUENCE_START_EVENT:
                    total += 1
                    stack.append(Frame(size: 1, anchor: anchorName(event.data.sequence_start.anchor), mapping: false, expectKey: false))
                case YAML_MAPPING_START_EVENT:
                    total += 1
                    stack.append(Frame(size: 1, anchor: anchorName(event.data.mapping_start.anchor), mapping: true, expectKey: true))
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    guard let done = stack.popLast() else { return }
                    if let a = done.anchor { anchorSizes[a] = (done.size, true) }
                    try finished(done.size, counted: true, line: line)
                default: continue
                }
            }
        }
    }
}
