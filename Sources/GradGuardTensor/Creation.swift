// MARK: - Creating tensors

extension Tensor {
    /// A tensor filled with `value`.
    public static func full(_ shape: [Int], _ value: Float, requiresGrad: Bool = false) -> Tensor {
        Tensor(shape: shape, scalars: [Float](repeating: value, count: shape.reduce(1, *)), requiresGrad: requiresGrad)
    }

    /// A tensor of zeros.
    public static func zeros(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        full(shape, 0, requiresGrad: requiresGrad)
    }

    /// A tensor of ones.
    public static func ones(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        full(shape, 1, requiresGrad: requiresGrad)
    }

    /// A tensor of zeros with this tensor's shape.
    public func zerosLike() -> Tensor { Tensor.zeros(shape) }

    /// `start, start+step, …` below `end` (PyTorch `arange`).
    public static func arange(_ start: Float = 0, _ end: Float, step: Float = 1) -> Tensor {
        require(step != 0 && (end - start) / step >= 0, "arange: empty or infinite range")
        let n = Int(((end - start) / step).rounded(.up))
        return Tensor((0..<n).map { start + Float($0) * step })
    }

    /// A tensor from integer values (class indices, token ids).
    public convenience init(indices: [Int], shape: [Int]? = nil) {
        self.init(shape: shape ?? [indices.count], scalars: indices.map { Float($0) })
    }
}
