import GradGuardNN
import GradGuardTensor

/// A parameter as the health layer sees it: its dotted name and the tensor, whose `grad`
/// holds the gradient. Nothing else about the model is needed, so a hand-written training
/// loop can hand over any list of named tensors.
// @unchecked: the tensor is a reference to a model's parameter; the health layer reads it (and
// clippers scale its gradient) on the training thread only, or split over the workers by range.
/// A parameter as the health layer sees it: its dotted name and the tensor.
public struct NamedParameter: @unchecked Sendable {
    /// The dotted name (`encoder.fc.weight`).
    public let name: String
    /// The tensor, whose `grad` holds the gradient.
    public let tensor: Tensor
    /// The module that owns the parameter: the name up to its last dot (`"encoder.fc"` for
    /// `"encoder.fc.weight"`, `""` for a parameter of the root).
    public let module: String

    /// A parameter named `name`.
    public init(name: String, tensor: Tensor) {
        self.name = name
        self.tensor = tensor
        module = name.lastIndex(of: ".").map { String(name[..<$0]) } ?? ""
    }

    /// The parameters of `model` with their PyTorch-style dotted names.
    public static func of(_ model: Module) -> [NamedParameter] {
        model.namedParameters().map { NamedParameter(name: $0.name, tensor: $0.tensor) }
    }

    /// Named tensors as returned by `Module.namedParameters()`.
    public static func list(_ named: [(name: String, tensor: Tensor)]) -> [NamedParameter] {
        named.map { NamedParameter(name: $0.name, tensor: $0.tensor) }
    }
}

extension Array where Element == NamedParameter {
    /// The modules in order of first appearance, each with the indices of its parameters.
    var moduleGroups: [(module: String, indices: [Int])] {
        var order: [String] = []
        var members: [String: [Int]] = [:]
        for (i, p) in enumerated() {
            if members[p.module] == nil { order.append(p.module) }
            members[p.module, default: []].append(i)
        }
        return order.map { ($0, members[$0]!) }
    }
}
