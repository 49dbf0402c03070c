import GradGuardNN
import GradGuardOptim
import GradGuardTensor

/// Measures the gradients (and weights) of a set of named parameters, every step.
///
/// ```swift
/// let health = GradientHealth(model: model)
/// loss.backward()
/// let stats = health.observe(step: step, loss: loss.item)
/// health.beforeUpdate(); optimizer.step(); health.recordUpdate(into: &stats)
/// ```
public final class GradientHealth {
    /// The parameters watched, by name.
    public let parameters: [NamedParameter]
    /// Order of the global norm (2, 1, ∞ or any p > 0).
    public var normType: Float
    /// Gradient histogram every this many steps (0: never).
    public var histogramEvery: Int
    /// Activation-gradient norms recorded through this probe are attached to each step.
    public let probe: ActivationGradientProbe
    private let groups: [(module: String, indices: [Int])]
    /// Per group: whether it holds a weight matrix or kernel (rank ≥ 2), fixed by the shapes.
    private let groupHoldsMatrix: [Bool]
    private var weightsBefore: [[Float]]? = nil
    private var undoable: [[Float]]? = nil

    /// Watches `parameters`; the global norm of order `normType`, a histogram every `histogramEvery` steps.
    public init(
        parameters: [NamedParameter], normType: Float = 2, histogramEvery: Int = 0,
        probe: ActivationGradientProbe = ActivationGradientProbe()
    ) {
        require(normType > 0, "GradientHealth: norm order must be positive, got \(normType)")
        self.parameters = parameters
        self.normType = normType
        self.histogramEvery = histogramEvery
        self.probe = probe
        groups = parameters.moduleGroups
        groupHoldsMatrix = groups.map { g in g.indices.contains { parameters[$0].tensor.rank >= 2 } }
    }

    /// Watches `model`'s parameters by their dotted names.
    public convenience init(
        model: Module, normType: Float = 2, histogramEvery: Int = 0,
        probe: ActivationGradientProbe = ActivationGradientProbe()
    ) {
        self.init(parameters: NamedParameter.of(model), normType: normType, histogramEvery: histogramEvery, probe: probe)
    }

    /// Statistics of the current gradients: one pass over every gradient and every weight.
    /// `activations`: activation-gradient norms collected elsewhere (a data-parallel step
    /// combines every rank's); by default those the probe recorded.
    public func observe(step: Int, loss: Float? = nil, activations: [ActivationGradient]? = nil) -> StepStatistics {
        let extra: Float = normType == 1 || normType == 2 || normType == .infinity ? 2 : normType
        let gradScans = scanAll(parameters, grads: true, p: extra)
        let weightScans = scanAll(parameters, grads: false)
        var tensors: [TensorStatistics] = []
        tensors.reserveCapacity(parameters.count)
        for (i, p) in parameters.enumerated() {
            let g = gradScans[i], w = weightScans[i]!
            tensors.append(
                TensorStatistics(
                    name: p.name, module: p.module, gradNorm: Float(g?.norm(2) ?? 0),
                    gradMaxAbs: g?.maxAbs ?? 0, nanCount: g?.nan ?? 0,
                    infCount: (g?.posInf ?? 0) + (g?.negInf ?? 0),
                    weightNorm: Float(w.norm(2)), weightsFinite: w.nonFinite == 0,
                    hasGradient: g != nil))
        }
        let modules = zip(groups, groupHoldsMatrix).map { group, holdsMatrix -> ModuleStatistics in
            let members = group.indices.map { tensors[$0] }
            var m = ModuleStatistics(
                name: group.module,
                gradNorm: Float(GradientClipping.combine(members.map { Double($0.gradNorm) }, order: 2)),
                weightNorm: Float(GradientClipping.combine(members.map { Double($0.weightNorm) }, order: 2)),
                gradMaxAbs: members.map(\.gradMaxAbs).max() ?? 0,
                nonFiniteCount: members.reduce(0) { $0 + $1.nanCount + $1.infCount },
                updateRatio: nil)
            m.holdsMatrix = holdsMatrix
            return m
        }
        let present = gradScans.compactMap { $0 }
        let global = Float(GradientClipping.combine(present.map { $0.norm(normType) }, order: normType))
        let l2 = normType == 2 ? global : Float(GradientClipping.combine(present.map { $0.norm(2) }, order: 2))
        let histogram = histogramEvery > 0 && step % histogramEvery == 0 ? MagnitudeHistogram.ofGradients(parameters) : nil
        return StepStatistics(
            step: step, loss: loss, globalNorm: global, normType: normType, globalL2: l2,
            maxAbs: tensors.map(\.gradMaxAbs).max() ?? 0, tensors: tensors, modules: modules,
            activations: activations ?? probe.collect(), histogram: histogram)
    }

    /// Remembers the weights before an optimizer step (copy-on-write: the copy happens only
    /// as the optimizer writes each parameter).
    public func beforeUpdate() {
        undoable = nil
        weightsBefore = parameters.map { $0.tensor.scalars }
    }

    /// ‖Δw‖ / ‖w‖ per module for the step since `beforeUpdate()`, written into `stats`. With
    /// `keepForUndo` the weights before the step stay until the next `beforeUpdate()`, for
    /// `undoUpdate()`.
    public func recordUpdate(into stats: inout StepStatistics, keepForUndo: Bool = false) {
        let saved = weightsBefore
        let ratios = updateRatios()
        for i in stats.modules.indices { stats.modules[i].updateRatio = ratios[stats.modules[i].name] }
        undoable = keepForUndo ? saved : nil
    }

    /// Runs `body` with the weights of before the last step in place (kept by
    /// `recordUpdate(into:keepForUndo:)`), then puts the updated weights back; false when none
    /// are kept. For a caller that saves the weights a step's forward pass used.
    @discardableResult
    public func withWeightsBeforeUpdate(_ body: () -> Void) -> Bool {
        guard let saved = undoable else { return false }
        let after = parameters.map { $0.tensor.scalars }
        guard undoUpdate() else { return false }
        body()
        put(after)
        undoable = saved
        return true
    }

    /// Puts back the weights of before the last step (kept by `recordUpdate(into:keepForUndo:)`);
    /// false when none are kept. Optimizer state is not touched.
    @discardableResult
    public func undoUpdate() -> Bool {
        guard let saved = undoable, saved.count == parameters.count else { return false }
        undoable = nil
        put(saved)
        return true
    }

    /// Makes `values` (one array per parameter, as `tensor.scalars` gave them) the parameters'
    /// values, sharing their storage until the next write.
    private func put(_ values: [[Float]]) {
        for (p, v) in zip(parameters, values) { p.tensor.assign(Tensor(shape: p.tensor.shape, scalars: v)) }
    }

    /// ‖Δw‖ / ‖w_before‖ per module for the step since `beforeUpdate()`.
    public func updateRatios() -> [String: Float] {
        guard let before = weightsBefore else { return [:] }
        weightsBefore = nil
        var delta = [Double](repeating: 0, count: parameters.count), base = [Double](repeating: 0, count: parameters.count)
        delta.withUnsafeMutableBufferPointer { d in
            base.withUnsafeMutableBufferPointer { b in
                parallelFor(parameters.count, grain: 1) { range in
                    for i in range {
                        parameters[i].tensor.withUnsafeScalars { now in
                            before[i].withUnsafeBufferPointer { old in
                                var dd = 0.0, bb = 0.0
                                for k in 0..<Swift.min(now.count, old.count) {
                                    let diff = Double(now[k] - old[k])
                                    dd += diff * diff
                                    bb += Double(old[k]) * Double(old[k])
                                }
                                d[i] = dd
                                b[i] = bb
                            }
                        }
                    }
                }
            }
        }
        var out: [String: Float] = [:]
        for group in groups {
            let dd = group.indices.reduce(0) { $0 + delta[$1] }, bb = group.indices.reduce(0) { $0 + base[$1] }
            out[group.module] = bb > 0 ? Float((dd / bb).squareRoot()) : (dd > 0 ? .infinity : 0)
        }
        return out
    }
}
