import Synchronization

/// One recorded operation on the tape: its label, the module that ran it, its position
/// in creation order, its inputs and the rule that maps the output's gradient to the
/// inputs' gradients.
final class TapeNode {
    let op: String
    let module: String?
    let index: Int
    var inputs: [Tensor]
    var rule: ((Tensor) -> [Tensor?])?

    init(op: String, module: String?, index: Int, inputs: [Tensor], rule: @escaping (Tensor) -> [Tensor?]) {
        self.op = op
        self.module = module
        self.index = index
        self.inputs = inputs
        self.rule = rule
    }

    func release() {
        inputs = []
        rule = nil
    }
}

/// The per-task state of the autodiff engine: whether recording is on, the anomaly
/// recorder if anomaly mode is on, and the dotted name of the module being run.
public struct AutogradContext: Sendable {
    /// Whether ops record their backward rules (false inside `withoutGrad`).
    public var gradEnabled = true
    var anomaly: AnomalyRecorder? = nil
    /// The dotted name of the module running (ops record it on their tape nodes).
    public var modulePath: String? = nil
}

/// Entry points that change how operations are recorded.
public enum Autograd {
    /// The context of the current task (task-local: each thread or task has its own).
    @TaskLocal public static var context = AutogradContext()
    static let counter = Atomic<Int>(0)

    static func nextIndex() -> Int { counter.add(1, ordering: .relaxed).newValue }

    /// Whether operations are being recorded on the tape here.
    public static var isGradEnabled: Bool { context.gradEnabled }

    /// Runs `body` with `modulePath` as the name attached to every node it records.
    public static func withModule<R>(_ path: String, _ body: () throws -> R) rethrows -> R {
        var ctx = context
        ctx.modulePath = path
        return try $context.withValue(ctx, operation: body)
    }
}

/// Runs `body` without recording any operation (PyTorch's `torch.no_grad()`).
public func withoutGrad<R>(_ body: () throws -> R) rethrows -> R {
    var ctx = Autograd.context
    ctx.gradEnabled = false
    return try Autograd.$context.withValue(ctx, operation: body)
}

extension Tensor {
    /// Records `out` as the result of `op` on `inputs` when any input requires gradients
    /// and recording is on; `rule` maps the gradient of `out` to one gradient (or `nil`)
    /// per input, each already in that input's shape.
    @inline(__always)
    static func record(
        _ op: String, _ out: Tensor, _ inputs: [Tensor],
        _ rule: @escaping (Tensor) -> [Tensor?]
    ) -> Tensor {
        let ctx = Autograd.context
        let recording = ctx.gradEnabled && inputs.contains(where: { $0.requiresGrad })
        guard recording || ctx.anomaly != nil else { return out }
        let index = Autograd.nextIndex()
        ctx.anomaly?.checkForward(out, op: op, module: ctx.modulePath, index: index)
        guard recording else { return out }
        out.requiresGrad = true
        out.gradFn = TapeNode(op: op, module: ctx.modulePath, index: index, inputs: inputs, rule: rule)
        return out
    }

    /// Registers a hook called with this tensor's gradient when it has been computed during
    /// `backward()`. A hook may return a replacement gradient, or `nil` to keep it.
    public func registerHook(_ hook: @escaping (Tensor) -> Tensor?) {
        hooks.append(hook)
    }

    /// Removes all hooks of this tensor.
    public func removeHooks() {
        hooks.removeAll()
        postAccumulateHooks.removeAll()
    }

    /// Registers a hook called on this leaf after backward has added its whole gradient for
    /// this pass into `.grad` (PyTorch's `register_post_accumulate_grad_hook`): a backward
    /// reaches every leaf once, with every contribution summed, so `.grad` is final for the
    /// pass when the hook runs. Data-parallel training starts averaging a bucket of gradients
    /// from here while backward goes on.
    public func registerPostAccumulateGradHook(_ hook: @escaping (Tensor) -> Void) {
        postAccumulateHooks.append(hook)
    }

    /// Back-propagates from a one-element tensor (gradient 1).
    public func backward(retainGraph: Bool = false) {
        require(count == 1, "backward() needs a one-element tensor; pass a gradient for shape \(shape)")
        backward(gradient: Tensor(shape: shape, scalars: [1]), retainGraph: retainGraph)
    }

    /// Back-propagates `gradient` (same shape as this tensor) through the recorded graph,
    /// accumulating into `.grad` of every leaf that requires gradients. Unless
    /// `retainGraph`, the graph's saved values are released afterwards.
    public func backward(gradient: Tensor, retainGraph: Bool = false) {
        require(gradient.shape == shape, "gradient shape \(gradient.shape) does not match \(shape)")
        guard requiresGrad else { return }
        let order = topologicalOrder()
        var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(self): gradient]
        let anomaly = Autograd.context.anomaly
        withoutGrad {
            for (step, t) in order.reversed().enumerated() {
                guard var g = grads.removeValue(forKey: ObjectIdentifier(t)) else { continue }
                for hook in t.hooks {
                    if let replaced = hook(g) { g = replaced }
                }
                guard let node = t.gradFn else {
                    t.accumulateGrad(g)
                    for hook in t.postAccumulateHooks { hook(t) }
                    continue
                }
                guard let rule = node.rule else {
                    preconditionFailure(
                        "backward through the graph of '\(node.op)' a second time: its values were released; pass retainGraph: true to the first backward")
                }
                let inputGrads = rule(g)
                for (input, ig) in zip(node.inputs, inputGrads) {
                    guard input.requiresGrad, let ig else { continue }
                    anomaly?.checkBackward(ig, node: node, step: step)
                    let key = ObjectIdentifier(input)
                    if let existing = grads[key] { grads[key] = existing + ig } else { grads[key] = ig }
                }
                if !retainGraph { node.release() }
            }
        }
    }

    private func accumulateGrad(_ g: Tensor) {
        guard requiresGrad else { return }
        if let existing = grad {
            existing.withUnsafeMutableScalars { dst in
                g.withUnsafeScalars { src in
                    for i in 0..<dst.count { dst[i] += src[i] }
                }
            }
        } else {
            // A fresh object: storage is shared copy-on-write, so scaling this gradient in
            // place never touches another tensor's.
            grad = Tensor(shape: shape, scalars: g.scalars)
        }
    }

    /// Tensors reachable from this one through recorded nodes, inputs before outputs.
    private func topologicalOrder() -> [Tensor] {
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Bool)] = [(self, false)]
        while let (t, expanded) = stack.popLast() {
            if expanded { order.append(t); continue }
            guard visited.insert(ObjectIdentifier(t)).inserted else { continue }
            stack.append((t, true))
            for input in t.gradFn?.inputs ?? [] where input.requiresGrad && !visited.contains(ObjectIdentifier(input)) {
                stack.append((input, false))
            }
        }
        return order
    }
}

extension Tensor {
    /// Records a custom differentiable op (like `torch.autograd.Function`): `out` was
    /// computed from `inputs` outside the tape, and `rule` maps the gradient of `out` to one
    /// gradient (or `nil`) per input, each in that input's shape.
    public static func recordOp(
        _ op: String, _ out: Tensor, _ inputs: [Tensor],
        _ rule: @escaping (Tensor) -> [Tensor?]
    ) -> Tensor {
        record(op, out, inputs, rule)
    }
}
