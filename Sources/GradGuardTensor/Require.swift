/// Checks a condition on a caller's arguments in every build and stops with `message`
/// (the op, the shapes or the index) when it fails. Swift's `precondition` prints its
/// message only in unoptimised builds; a release build would stop with none.
@inlinable @inline(__always)
public func require(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
    file: StaticString = #fileID, line: UInt = #line
) {
    if _slowPath(!condition()) { fatalError(message(), file: file, line: line) }
}

extension Int {
    /// A count or step saved as a `Double` (checkpoint state), or nil when it is not a whole
    /// number within ±2⁵³: a damaged or hand-edited file must not trap the conversion.
    public init?(savedValue v: Double) {
        guard v.isFinite, v == v.rounded(), Swift.abs(v) <= 9_007_199_254_740_992 else { return nil }
        self = Int(v)
    }
}
