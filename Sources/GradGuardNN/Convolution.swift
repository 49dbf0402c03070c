import GradGuardTensor

/// 2-D convolution over NCHW input, as `torch.nn.Conv2d`: `weight` is
/// `[outChannels, inChannels/groups, kh, kw]`, `bias` `[outChannels]`.
///
/// Default initialisation (PyTorch's): weight and bias from U(−1/√fan-in, 1/√fan-in),
/// fan-in = inChannels/groups · kh · kw. `weightInit`/`biasInit` override them.
public final class Conv2d: Module, UnaryLayer {
    /// The kernels, `[outChannels, inChannels/groups, kh, kw]`.
    public var weight: Tensor
    /// One bias per output channel; nil when built with `bias: false`.
    public var bias: Tensor?
    /// The step between kernel positions (rows, columns).
    public let stride: (Int, Int)
    /// Zeros added on each side (rows, columns).
    public let padding: (Int, Int)
    /// The spacing between kernel taps (rows, columns).
    public let dilation: (Int, Int)
    /// Input and output channels split into this many independent groups.
    public let groups: Int

    /// A convolution with a kernel of `kernelSize` (rows, columns) and PyTorch's default initialisation unless overridden.
    public init(
        inChannels: Int, outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
        padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1, bias: Bool = true,
        weightInit: Initializer? = nil, biasInit: Initializer? = nil
    ) {
        require(
            inChannels % groups == 0 && outChannels % groups == 0,
            "Conv2d: channels \(inChannels)→\(outChannels) do not divide into \(groups) groups")
        let shape = [outChannels, inChannels / groups, kernelSize.0, kernelSize.1]
        let bound = 1 / Float(Init.fanIn(shape)).squareRoot()
        let fallback = Initializer.uniform(low: -bound, high: bound)
        weight = (weightInit ?? fallback).make(shape)
        self.bias = bias ? (biasInit ?? fallback).make([outChannels]) : nil
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        super.init()
    }

    /// Square kernel, stride, padding and dilation.
    public convenience init(
        _ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
        dilation: Int = 1, groups: Int = 1, bias: Bool = true,
        weightInit: Initializer? = nil, biasInit: Initializer? = nil
    ) {
        self.init(
            inChannels: inChannels, outChannels: outChannels, kernelSize: (kernelSize, kernelSize),
            stride: (stride, stride), padding: (padding, padding), dilation: (dilation, dilation),
            groups: groups, bias: bias, weightInit: weightInit, biasInit: biasInit)
    }

    /// Convolves `[N, inChannels, H, W]` into `[N, outChannels, H′, W′]`.
    public func forward(_ x: Tensor) -> Tensor {
        x.conv2d(weight: weight, bias: bias, stride: stride, padding: padding, dilation: dilation, groups: groups)
    }
}

/// 1-D convolution over `[batch, channels, length]` input, as `torch.nn.Conv1d`: `weight`
/// is `[outChannels, inChannels/groups, kernelSize]`, `bias` `[outChannels]`, the output
/// length `(length + 2·padding − dilation·(kernelSize − 1) − 1) / stride + 1`.
///
/// Default initialisation (PyTorch's): weight and bias from U(−1/√fan-in, 1/√fan-in),
/// fan-in = inChannels/groups · kernelSize. Runs as a 2-D convolution of height 1.
public final class Conv1d: Module, UnaryLayer {
    /// The kernels, `[outChannels, inChannels/groups, kernelSize]`.
    public var weight: Tensor
    /// One bias per output channel; nil when built with `bias: false`.
    public var bias: Tensor?
    /// The step between kernel positions, zeros added on each side, the spacing between taps, and the channel groups.
    public let stride: Int, padding: Int, dilation: Int, groups: Int

    /// A convolution with a kernel of `kernelSize` taps and PyTorch's default initialisation unless overridden.
    public init(
        inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0, dilation: Int = 1,
        groups: Int = 1, bias: Bool = true, weightInit: Initializer? = nil, biasInit: Initializer? = nil
    ) {
        require(
            inChannels % groups == 0 && outChannels % groups == 0,
            "Conv1d: channels \(inChannels)→\(outChannels) do not divide into \(groups) groups")
        let shape = [outChannels, inChannels / groups, kernelSize]
        let bound = 1 / Float(Init.fanIn(shape)).squareRoot()
        let fallback = Initializer.uniform(low: -bound, high: bound)
        weight = (weightInit ?? fallback).make(shape)
        self.bias = bias ? (biasInit ?? fallback).make([outChannels]) : nil
        (self.stride, self.padding, self.dilation, self.groups) = (stride, padding, dilation, groups)
        super.init()
    }

    /// Convolves `[N, inChannels, L]` into `[N, outChannels, L′]`.
    public func forward(_ x: Tensor) -> Tensor {
        x.conv1d(weight: weight, bias: bias, stride: stride, padding: padding, dilation: dilation, groups: groups)
    }
}

/// `torch.nn.MaxPool2d` (floor mode).
public final class MaxPool2d: Module, UnaryLayer {
    /// The window, its step, the padding (−∞ on each side) and the spacing between taps.
    public let kernelSize: (Int, Int), stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int)

    /// A square window; `stride` defaults to the window's size, as in PyTorch.
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0, dilation: Int = 1) {
        self.kernelSize = (kernelSize, kernelSize)
        self.stride = (stride ?? kernelSize, stride ?? kernelSize)
        self.padding = (padding, padding)
        self.dilation = (dilation, dilation)
        super.init()
    }

    /// The maximum of each window of `[N, C, H, W]`.
    public func forward(_ x: Tensor) -> Tensor {
        x.maxPool2d(kernel: kernelSize, stride: stride, padding: padding, dilation: dilation)
    }
}

/// `torch.nn.AvgPool2d` (floor mode).
public final class AvgPool2d: Module, UnaryLayer {
    /// The window, its step and the zero padding on each side.
    public let kernelSize: (Int, Int), stride: (Int, Int), padding: (Int, Int)
    /// Whether the padded zeros count in each window's mean.
    public let countIncludePad: Bool

    /// A square window; `stride` defaults to the window's size, as in PyTorch.
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0, countIncludePad: Bool = true) {
        self.kernelSize = (kernelSize, kernelSize)
        self.stride = (stride ?? kernelSize, stride ?? kernelSize)
        self.padding = (padding, padding)
        self.countIncludePad = countIncludePad
        super.init()
    }

    /// The mean of each window of `[N, C, H, W]`.
    public func forward(_ x: Tensor) -> Tensor {
        x.avgPool2d(kernel: kernelSize, stride: stride, padding: padding, countIncludePad: countIncludePad)
    }
}

/// `torch.nn.AdaptiveAvgPool2d`.
public final class AdaptiveAvgPool2d: Module, UnaryLayer {
    /// The output's height and width.
    public let outputSize: (Int, Int)
    /// Pools any input to `outputSize`.
    public init(outputSize: (Int, Int)) { self.outputSize = outputSize; super.init() }
    /// Pools any input to `size` × `size`.
    public convenience init(_ size: Int) { self.init(outputSize: (size, size)) }
    /// The mean over each of the output grid's cells (PyTorch's cell boundaries).
    public func forward(_ x: Tensor) -> Tensor { x.adaptiveAvgPool2d(outputSize: outputSize) }
}

/// Nearest-neighbour `torch.nn.Upsample(scale_factor=s, mode='nearest')` for integer factors.
public final class Upsample: Module, UnaryLayer {
    /// How many times each row and column is repeated.
    public let scaleFactor: (Int, Int)
    /// Nearest-neighbour upsampling by `scaleFactor` in both directions.
    public init(scaleFactor: Int) { self.scaleFactor = (scaleFactor, scaleFactor); super.init() }
    /// `[N, C, H, W]` → `[N, C, H·s, W·s]`, each value repeated.
    public func forward(_ x: Tensor) -> Tensor { x.upsampleNearest(scale: scaleFactor) }
}

/// Flattens dimensions `startDim...endDim` (`torch.nn.Flatten`, default from 1).
public final class Flatten: Module, UnaryLayer {
    /// The first and last dimensions joined (negative counts from the end).
    public let startDim: Int, endDim: Int
    /// Joins dimensions `startDim` … `endDim` into one (PyTorch's defaults: all but the batch).
    public init(startDim: Int = 1, endDim: Int = -1) { self.startDim = startDim; self.endDim = endDim; super.init() }
    /// The input with the dimensions joined.
    public func forward(_ x: Tensor) -> Tensor { x.flattened(from: startDim, to: endDim) }
}
