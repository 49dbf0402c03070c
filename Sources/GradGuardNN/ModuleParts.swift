/// How a model's modules group into named parts (a detector's backbone, neck and head), for
/// the report's heatmap and its table of parts. A model kind contributes its own
/// (`DetectorParts`); modules of no part are shown as they are.
public protocol ModuleParts: Sendable {
    /// The parts, in the order they are shown.
    var parts: [String] { get }
    /// The part `module` (a dotted module name) belongs to, or nil.
    func part(of module: String) -> String?
}
