import Foundation
import GradGuard
import XCTest

/// Loads a fixture written by `Scripts/make_fixtures.py`.
public func fixture(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Tensor] {
    let dir = URL(fileURLWithPath: "\(#filePath)").deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    return try Safetensors.read(dir.appendingPathComponent(name).path)
}

/// Path of a fixture file.
public func fixturePath(_ name: String) -> String {
    URL(fileURLWithPath: "\(#filePath)").deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent(name).path
}

extension Dictionary where Key == String, Value == Tensor {
    /// The tensor named `key`, failing the test when absent.
    public func at(_ key: String, file: StaticString = #filePath, line: UInt = #line) throws -> Tensor {
        guard let t = self[key] else {
            // A missing key is a failure and an error, never a skip.
            XCTFail("fixture has no tensor '\(key)'", file: file, line: line)
            throw MissingFixtureKey(key: key)
        }
        return t
    }
}

/// Asserts equal shapes and |a − b| ≤ atol + rtol·|b| element-wise. The defaults suit
/// float32 results of a few dozen operations compared with PyTorch's float32 results.
public func assertClose(
    _ a: Tensor, _ b: Tensor, rtol: Float = 1e-4, atol: Float = 1e-5,
    _ message: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertEqual(a.shape, b.shape, "shape \(message())", file: file, line: line)
    guard a.shape == b.shape else { return }
    var worst = 0, worstErr: Float = 0
    for i in 0..<a.count {
        let x = a.scalars[i], y = b.scalars[i]
        if x.isNaN && y.isNaN { continue }
        if x == y { continue }
        let err = Swift.abs(x - y) - (atol + rtol * Swift.abs(y))
        if !(err <= 0) && (err > worstErr || worstErr == 0) { worst = i; worstErr = err.isNaN ? .infinity : err }
    }
    if worstErr > 0 {
        XCTFail(
            "\(message()): element \(worst) is \(a.scalars[worst]), expected \(b.scalars[worst]) (rtol \(rtol), atol \(atol))",
            file: file, line: line)
    }
}

/// Checks the gradients of `f` at `inputs` against central finite differences.
///
/// The scalar checked is Σ f(x)·w with fixed random weights w, so every output element
/// matters. Perturbations are ±`eps` on float32 inputs, the difference quotient is formed
/// in Double; with eps 1e-2 the truncation error is O(eps²·f''') and float32 rounding of
/// the sum is ~1e-6 relative, so |analytic − numeric| ≤ atol + rtol·|numeric| with
/// atol 2e-3, rtol 2e-2 separates a correct rule from a wrong one.
public func checkGradients(
    _ inputs: [Tensor], eps: Float = 1e-2, atol: Double = 2e-3, rtol: Double = 2e-2,
    file: StaticString = #filePath, line: UInt = #line,
    _ f: ([Tensor]) -> Tensor
) {
    for x in inputs { x.requiresGrad = true; x.grad = nil }
    let out = f(inputs)
    var gen = RandomGenerator(seed: 99)
    let w = Tensor.randn(out.shape, generator: &gen)
    out.backward(gradient: w)
    func objective() -> Double {
        let y = withoutGrad { f(inputs) }
        var s = 0.0
        for i in 0..<y.count { s += Double(y.scalars[i]) * Double(w.scalars[i]) }
        return s
    }
    for (k, x) in inputs.enumerated() {
        guard let g = x.grad else {
            XCTFail("input \(k) received no gradient", file: file, line: line)
            continue
        }
        XCTAssertEqual(g.shape, x.shape, "gradient shape of input \(k)", file: file, line: line)
        for i in 0..<x.count {
            let orig = x.scalars[i]
            x.withUnsafeMutableScalars { $0[i] = orig + eps }
            let up = objective()
            x.withUnsafeMutableScalars { $0[i] = orig - eps }
            let down = objective()
            x.withUnsafeMutableScalars { $0[i] = orig }
            let numeric = (up - down) / (2 * Double(eps))
            let analytic = Double(g.scalars[i])
            if Swift.abs(analytic - numeric) > atol + rtol * Swift.abs(numeric) {
                XCTFail("input \(k) element \(i): analytic \(analytic), finite difference \(numeric)", file: file, line: line)
                return
            }
        }
    }
}

/// A seeded random tensor for tests.
public func testTensor(_ shape: [Int], seed: UInt64, low: Float = -1, high: Float = 1) -> Tensor {
    var g = RandomGenerator(seed: seed)
    return Tensor.rand(shape, low: low, high: high, generator: &g)
}

/// Values pushed at least `margin` away from zero, for functions with a kink there.
public func awayFromZero(_ t: Tensor, margin: Float = 0.1) -> Tensor {
    Tensor(shape: t.shape, scalars: t.scalars.map { $0 >= 0 ? $0 + margin : $0 - margin })
}

/// Runs `forward` on a copy of `input` that requires gradients, compares the output with
/// `output`, back-propagates `upstream` and compares the input's gradient with `inputGrad`
/// (the fixture pattern of every layer test; parameters' gradients are left for the caller).
public func checkForwardBackward(
    input: Tensor, output: Tensor, upstream: Tensor, inputGrad: Tensor, _ label: String,
    file: StaticString = #filePath, line: UInt = #line, _ forward: (Tensor) -> Tensor
) {
    let x = input.copy(requiresGrad: true)
    let y = forward(x)
    assertClose(y, output, label, file: file, line: line)
    y.backward(gradient: upstream)
    guard let g = x.grad else { return XCTFail("\(label): the input received no gradient", file: file, line: line) }
    assertClose(g, inputGrad, "\(label) input gradient", file: file, line: line)
}

/// A test case with a fresh temporary directory `tmp` for each test, removed afterwards.
open class TemporaryDirectoryTestCase: XCTestCase {
    public var tmp: String = ""

    open override func setUp() {
        super.setUp()
        tmp = NSTemporaryDirectory() + "gradguard-test-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
    }

    open override func tearDown() {
        try? FileManager.default.removeItem(atPath: tmp)
        super.tearDown()
    }
}

/// Runs a program to completion and returns its exit code, standard output and standard error.
@discardableResult
public func runProcess(
    _ executable: String, _ arguments: [String], in directory: String? = nil, environment: [String: String] = [:]
) throws -> (code: Int32, out: String, err: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
    if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    // Read both pipes to the end before waiting, so a chatty child never blocks on a full pipe.
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// Trainer settings for a test: `epochs`, `batchSize` and `seed`, no per-module norms in
/// the records (they cost time and no test of a workload reads them).
public func testTrainerConfig(epochs: Int, batchSize: Int, seed: UInt64, maxSteps: Int? = nil, evalEvery: Int = 0) -> TrainerConfig {
    var c = TrainerConfig()
    c.epochs = epochs
    c.batchSize = batchSize
    c.seed = seed
    c.maxSteps = maxSteps
    c.evalEvery = evalEvery
    c.moduleNormsEvery = 0
    return c
}

/// A fixture without the tensor a test needs: the test fails (it is not skipped).
public struct MissingFixtureKey: Error, CustomStringConvertible {
    public let key: String
    public var description: String { "fixture has no tensor '\(key)': run Scripts/make_fixtures.py" }
}

/// The vector levels this processor has by its own word (`/proc/cpuinfo`'s flags), read
/// apart from the kernels' own detection: AVX2 with FMA, and AVX-512 F/DQ/BW/VL.
public var processorVectorLevels: [KernelLevel] {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
        let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
    else { return [] }
    let flags = Set(line.split(separator: " ").map(String.init))
    var levels: [KernelLevel] = []
    if flags.isSuperset(of: ["avx2", "fma"]) { levels.append(.avx2) }
    if flags.isSuperset(of: ["avx512f", "avx512dq", "avx512bw", "avx512vl"]) { levels.append(.avx512) }
    return levels
}

/// Runs `body` at every vector level above the portable one that this processor supports,
/// prints which ran, and fails when the processor has a level the loop did not exercise (a
/// loop over the kernels' own list would run zero times, silently, if their detection broke).
public func forEachVectorLevel(_ what: String, file: StaticString = #filePath, line: UInt = #line, _ body: (KernelLevel) throws -> Void) rethrows {
    let levels = Kernels.supportedLevels.filter { $0 > .portable }
    for level in levels { try body(level) }
    print("\(what): vector levels exercised: \(levels.isEmpty ? "none" : levels.map(\.name).joined(separator: ", "))")
    for missing in processorVectorLevels where !levels.contains(missing) {
        XCTFail("\(what): this processor has \(missing) but its kernels were not exercised", file: file, line: line)
    }
}

/// A seeded generator for test inputs (SplitMix64): the same values on every run, so a
/// failure can be reproduced.
public struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Runs `body` with writes limited to files of `bytes` (RLIMIT_FSIZE, SIGXFSZ ignored): a
/// write past the limit fails with EFBIG, as one on a full disk fails with ENOSPC.
public func withFileSizeLimit<R>(_ bytes: Int, _ body: () throws -> R) rethrows -> R {
    let previous = signal(SIGXFSZ, SIG_IGN)
    var saved = rlimit()
    getrlimit(Int32(RLIMIT_FSIZE.rawValue), &saved)
    var small = saved
    small.rlim_cur = rlim_t(bytes)
    setrlimit(Int32(RLIMIT_FSIZE.rawValue), &small)
    defer {
        setrlimit(Int32(RLIMIT_FSIZE.rawValue), &saved)
        signal(SIGXFSZ, previous)
    }
    return try body()
}
