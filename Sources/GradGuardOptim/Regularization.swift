import GradGuardNN
import GradGuardTensor

/// Σ|θ| over `parameters`, a differentiable L1 penalty to add to a loss (times a strength).
public func l1Penalty(_ parameters: [Tensor]) -> Tensor {
    parameters.map { $0.abs().sum() }.reduce(Tensor(0), +)
}

/// Σθ² over `parameters`, a differentiable L2 penalty to add to a loss (times a strength).
/// Adding `λ/2 · l2Penalty` matches coupled weight decay `λ` in SGD.
public func l2Penalty(_ parameters: [Tensor]) -> Tensor {
    parameters.map { ($0 * $0).sum() }.reduce(Tensor(0), +)
}

extension ParamGroup {
    /// Splits a model's parameters into `[decayed, not decayed]` groups, the usual recipe:
    /// biases, the parameters of normalisation layers (`BatchNorm`, `LayerNorm`,
    /// `GroupNorm`) and every parameter whose dotted name matches one of `excluding` (globs
    /// with `*` and `?`, e.g. `"*.embedding.*"`) get no weight decay.
    public static func decayGroups(_ model: Module, weightDecay: Double, excluding patterns: [String] = []) -> [ParamGroup] {
        var decay: [Tensor] = [], noDecay: [Tensor] = []
        for (prefix, module) in model.namedModules() {
            let isNorm = module is BatchNorm || module is LayerNorm || module is GroupNorm
            for (local, t) in module.localParameters() {
                let name = prefix.isEmpty ? local : "\(prefix).\(local)"
                let excluded = isNorm || local.hasPrefix("bias") || patterns.contains { globMatch($0, name) }
                if excluded { noDecay.append(t) } else { decay.append(t) }
            }
        }
        return [ParamGroup(params: decay, weightDecay: weightDecay), ParamGroup(params: noDecay, weightDecay: 0)]
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters and `?` for one.
public func globMatch(_ pattern: String, _ text: String) -> Bool {
    let p = Array(pattern), t = Array(text)
    var pi = 0, ti = 0, star = -1, mark = 0
    while ti < t.count {
        if pi < p.count && (p[pi] == "?" || p[pi] == t[ti]) {
            pi += 1; ti += 1
        } else if pi < p.count && p[pi] == "*" {
            star = pi; mark = ti; pi += 1
        } else if star >= 0 {
            pi = star + 1; mark += 1; ti = mark
        } else {
            return false
        }
    }
    while pi < p.count && p[pi] == "*" { pi += 1 }
    return pi == p.count
}
