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
