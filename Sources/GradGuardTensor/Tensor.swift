/// A dense, row-major, Float32 n-dimensional array that can take part in
/// reverse-mode automatic differentiation.
///
/// Results of operations are new tensors: a tensor's shape never changes and its
/// values change only through the explicit in-place entry points that optimizers
/// and clippers use (`withUnsafeMutableScalars`, `assign(_:)`), the way
/// `p.data.add_()` is used in PyTorch. Storage is a copy-on-write array, so a
/// reshape or a gradient handed to two tensors shares memory until one of them
/// is written.
///
/// ```swift
/// let x = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
/// let w = Tensor.randn([3, 4], requiresGrad: true)
/// let loss = x.matmul(w).relu().sum()
/// loss.backward()
/// print(w.grad!.shape)   // [3, 4]
/// ```
public final class Tensor {
    /// The size of each dimension; `[]` for a scalar.
    public let shape: [Int]
    /// The values in row-major order.
    public internal(set) var scalars: [Float]
    /// Whether gradients flow to this tensor. Leaves with `requiresGrad` receive `.grad`.
    public var requiresGrad: Bool
    /// The accumulated gradient of a leaf after `backward()`, or `nil`.
    public var grad: Tensor?
    /// An optional human-readable name (parameters carry their dotted names here).
    public var name: String?

    /// The tape node that produced this tensor, `nil` for leaves.
    internal var gradFn: TapeNode?
    internal var hooks: [(Tensor) -> Tensor?] = []
    internal var postAccumulateHooks: [(Tensor) -> Void] = []
    /// Set on the result of a lookup in a small table (see `RowSource`).
    internal var rowSource: RowSource?

    // MARK: Initialisers

    /// Creates a tensor from row-major values. The count must equal the product of `shape`.
    public init(shape: [Int], scalars: [Float], requiresGrad: Bool = false) {
        require(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        require(
            shape.reduce(1, *) == scalars.count,
            "shape \(shape) needs \(shape.reduce(1, *)) values, got \(scalars.count)")
        self.shape = shape
        self.scalars = scalars
        self.requiresGrad = requiresGrad
    }

    /// A scalar (rank-0) tensor.
    public convenience init(_ value: Float, requiresGrad: Bool = false) {
        self.init(shape: [], scalars: [value], requiresGrad: requiresGrad)
    }

    /// A rank-1 tensor from an array of values.
    public convenience init(_ values: [Float], requiresGrad: Bool = false) {
        self.init(shape: [values.count], scalars: values, requiresGrad: requiresGrad)
    }

    /// A rank-2 tensor from nested rows, which must all have the same length.
    public convenience init(_ rows: [[Float]], requiresGrad: Bool = false) {
        let cols = rows.first?.count ?? 0
        require(rows.allSatisfy { $0.count == cols }, "ragged rows")
        self.init(shape: [rows.count, cols], scalars: rows.flatMap { $0 }, requiresGrad: requiresGrad)
    }

    /// Creates a tensor of the given shape whose storage is filled by `body`, for kernels.
    /// Every one of the `count` values must be written.
    public init(shape: [Int], uninitialized body: (UnsafeMutableBufferPointer<Float>) throws -> Void) rethrows {
        let n = shape.reduce(1, *)
        AllocatorTuning.ensure()
        self.shape = shape
        self.scalars = try [Float](unsafeUninitializedCapacity: n) { buf, count in
            try body(buf)
            count = n
        }
        self.requiresGrad = false
    }

    // MARK: Basic properties

    /// Number of dimensions.
    public var rank: Int { shape.count }
    /// Total number of values.
    public var count: Int { scalars.count }
    /// Whether this tensor was created by the user rather than by a recorded op.
    public var isLeaf: Bool { gradFn == nil }
    /// Row-major strides, in elements.
    public var strides: [Int] { Shape.strides(shape) }

    /// The single value of a one-element tensor.
    public var item: Float {
        require(count == 1, "item needs a one-element tensor, shape is \(shape)")
        return scalars[0]
    }

    /// Size of dimension `dim`; negative values count from the end.
    public func size(_ dim: Int) -> Int { shape[Shape.normalize(dim, rank: rank)] }

    /// The op label and module of the node that created this tensor, if any.
    public var creator: (op: String, module: String?, index: Int)? {
        gradFn.map { ($0.op, $0.module, $0.index) }
    }

    // MARK: In-place access for optimizers and clippers

    /// Gives mutable access to the values, bypassing the tape (like `p.data` in PyTorch).
    /// Intended for optimizers, clippers and initialisers.
    public func withUnsafeMutableScalars<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try scalars.withUnsafeMutableBufferPointer { try body($0) }
    }

    /// Read-only access to the values without copying.
    public func withUnsafeScalars<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try scalars.withUnsafeBufferPointer { try body($0) }
    }

    /// Replaces the values with those of `other`, which must have the same shape.
    /// Not recorded on the tape.
    public func assign(_ other: Tensor) {
        require(other.shape == shape, "assign: shape \(other.shape) does not match \(shape)")
        scalars = other.scalars
    }

    /// A new leaf with the same values that does not require gradients.
    public func detach() -> Tensor { Tensor(shape: shape, scalars: scalars) }

    /// A new leaf with the same values (storage shared until written).
    public func copy(requiresGrad: Bool = false) -> Tensor {
        Tensor(shape: shape, scalars: scalars, requiresGrad: requiresGrad)
    }

    /// Sets `.grad` to `nil`.
    public func zeroGrad() { grad = nil }
}

/// Where the rows of a lookup result came from: `table`'s rows `indices`, the leading
/// dimensions of the result being `indexShape`. A recurrent layer whose input is such a
/// result projects the table once — `table · W_ihᵀ`, V rows — and gathers the projected
/// rows, instead of projecting every gathered row; in backward it sums the gate gradients
/// per table row and sends the table its gradient directly. The same values, with a
/// V / (T·B) share of the input-side products (a character model's 65 rows against 2048).
/// Only recorded when the table has at most half as many rows as were looked up.
final class RowSource {
    let table: Tensor
    /// The table's values at lookup time (shared storage: the table may change later).
    let values: [Float]
    let rows: Int
    let indexShape: [Int]
    let indices: [Int]

    init(table: Tensor, indexShape: [Int], indices: [Int]) {
        self.table = table
        self.values = table.scalars
        self.rows = table.shape[0]
        self.indexShape = indexShape
        self.indices = indices
    }

    /// The same rows with the first two index dimensions swapped (a batch-first sequence
    /// made time-major), or nil when the index is not two-dimensional.
    func swappingLeadingAxes() -> RowSource? {
        guard indexShape.count == 2 else { return nil }
        let (a, b) = (indexShape[0], indexShape[1])
        var swapped = [Int](repeating: 0, count: indices.count)
        for i in 0..<a { for j in 0..<b { swapped[j * a + i] = indices[i * b + j] } }
        let out = RowSource(table: table, values: values, rows: rows, indexShape: [b, a], indices: swapped)
        return out
    }

    private init(table: Tensor, values: [Float], rows: Int, indexShape: [Int], indices: [Int]) {
        (self.table, self.values, self.rows, self.indexShape, self.indices) = (table, values, rows, indexShape, indices)
    }
}

extension Tensor: CustomStringConvertible {
    /// The shape and the first values.
    public var description: String {
        let shown = scalars.prefix(8).map { String($0) }.joined(separator: ", ")
        let more = count > 8 ? ", …" : ""
        return "Tensor(shape: \(shape), [\(shown)\(more)]\(requiresGrad ? ", requiresGrad" : ""))"
    }
}
