import GradGuardNN
import GradGuardTensor
import Synchronization

/// Records the norm of the gradient that flows back into chosen activations.
///
/// Weight-gradient norms of a deep ReLU stack can look balanced while the signal reaching
/// the early layers has shrunk a thousand-fold; vanishing is judged on what actually flows
/// backwards. Tap an activation in a forward pass and its gradient norm is recorded when
/// backward reaches it:
///
/// ```swift
/// let probe = ActivationGradientProbe()
/// let h = probe.tap(layer1(x), as: "layer2.input")
/// ```
public final class ActivationGradientProbe: Sendable {
    private let recorded = Mutex<[ActivationGradient]>([])

    /// A probe with nothing recorded.
    public init() {}

    /// Returns `x` unchanged, with a hook that records ‖∂L/∂x‖ under `name` during backward.
    /// Tensors that need no gradient are passed through unrecorded.
    @discardableResult
    public func tap(_ x: Tensor, as name: String) -> Tensor {
        guard x.requiresGrad, Autograd.isGradEnabled else { return x }
        x.registerHook { [self] g in
            let norm = g.withUnsafeScalars { Float(TensorScan($0).norm(2)) }
            recorded.withLock { $0.append(ActivationGradient(name: name, norm: norm)) }
            return nil
        }
        return x
    }

    /// Runs `model` layer by layer, tapping the input of every layer that receives a tensor
    /// needing a gradient, named after the layer (`"3"` for the fourth layer of the root).
    public func run(_ model: Sequential, _ input: Tensor) -> Tensor {
        if model.path == nil { model.assignNames() }
        var x = input
        for (i, layer) in model.layers.enumerated() {
            let name = layer.path ?? "\(i)"
            x = layer(tap(x, as: name.isEmpty ? "\(i)" : name))
        }
        return x
    }

    /// The norms recorded since the last call, in the order backward reached them.
    public func collect() -> [ActivationGradient] {
        recorded.withLock { r in
            defer { r.removeAll() }
            return r
        }
    }
}
