import Foundation
import GradGuardTensor

/// A stored property of a module that discovery passes over although it holds a module or
/// a tensor, or a plain `Tensor` property that does not require gradients (`Module`'s
/// discovery rules). Reported once per class and property.
public struct DiscoveryWarning: Sendable, Equatable, CustomStringConvertible {
    /// What is wrong with the property.
    public enum Problem: Sendable, Equatable {
        /// A module or tensor inside a container discovery does not open (`"tuple"`,
        /// `"nested array"`, `"struct Pair"`, …): never trained, saved or guarded.
        case hidden(String)
        /// A `lazy var`: its storage is created on first use, after discovery.
        case lazy
        /// A plain `Tensor` that does not require gradients: it is a parameter (saved,
        /// guarded, listed for the optimizer) although it looks like a constant.
        case constantTensor
    }

    /// The module's class name.
    public let type: String
    /// The property's name.
    public let property: String
    /// What is wrong with the property.
    public let problem: Problem

    /// The sentence printed once per class and property, with what to do.
    public var description: String {
        switch problem {
        case .hidden(let shape):
            return "\(type).\(property) holds a module or tensor inside a \(shape), which GradGuard does not look into: "
                + "it is not trained, saved or guarded. Store it as a Module or Tensor property, in an array "
                + "([Module], [Tensor]) or a dictionary ([String: Module], [String: Tensor]), or override namedChildren()"
        case .lazy:
            return "\(type).\(property) is a lazy var: modules and tensors created on first use are not trained, saved or guarded. "
                + "Create it in init as a plain let or var"
        case .constantTensor:
            return "\(type).\(property) is a Tensor that does not require gradients, so it looks like a constant, but every "
                + "stored Tensor is a parameter (saved and guarded). Declare it @Constant (neither trained nor saved) or "
                + "@Buffer (saved, not trained); to stop a parameter from training, call freeze() on its module"
        }
    }
}

/// The reflection behind `Module.undiscoveredProperties()`.
enum Discovery {
    /// Whether `value` holds a module or tensor anywhere discovery does not look: in a
    /// tuple, a struct or enum payload, a set, nested arrays or dictionaries of other keys.
    /// Classes other than modules are not entered (they may be large or cyclic).
    static func holdsState(_ value: Any, depth: Int) -> Bool {
        if depth > 0 && (value is Module || value is Tensor) { return true }
        guard depth < 4 else { return false }
        let mirror = Mirror(reflecting: value)
        switch mirror.displayStyle {
        case .class?: return false
        case .optional?:
            return mirror.children.first.map { holdsState($0.value, depth: depth) } ?? false
        default:
            // Large arrays of numbers are common state and hold nothing: look at a few elements.
            return mirror.children.prefix(16).contains { holdsState($0.value, depth: depth + 1) }
        }
    }

    /// Whether a lazy property's storage (an `Optional`, empty until first use) holds or
    /// will hold a module or tensor.
    static func lazyHoldsState(_ storage: Any) -> Bool {
        if let wrapped = Mirror(reflecting: storage).children.first?.value {
            return wrapped is Module || wrapped is Tensor || holdsState(wrapped, depth: 1)
        }
        return (type(of: storage) as? any OptionalType.Type)?.wrapsState ?? false
    }

    /// A name for the container that hides the state (`tuple`, `struct Pair`, …).
    static func shape(of value: Any) -> String {
        let mirror = Mirror(reflecting: value)
        switch mirror.displayStyle {
        case .tuple?: return "tuple"
        case .struct?: return "struct \(mirror.subjectType)"
        case .enum?: return "enum \(mirror.subjectType)"
        case .set?: return "set"
        case .collection?: return "\(mirror.subjectType)"
        case .dictionary?: return "\(mirror.subjectType)"
        case .optional?: return mirror.children.first.map { shape(of: $0.value) } ?? "optional"
        default: return "\(mirror.subjectType)"
        }
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var reported: Set<String> = []

    /// True the first time a class and property are reported in this process.
    static func firstTime(_ w: DiscoveryWarning) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return reported.insert(w.type + "." + w.property).inserted
    }

    static func printToStandardError(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}

/// `Optional` seen through its wrapped type (for the type of a lazy property's empty storage).
protocol OptionalType {
    static var wrapsState: Bool { get }
}

extension Optional: OptionalType {
    static var wrapsState: Bool {
        Wrapped.self is Module.Type || Wrapped.self is Tensor.Type || Wrapped.self is [Module].Type || Wrapped.self is [Tensor].Type
    }
}
