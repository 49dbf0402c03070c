import CGradGuardKernels
import Dispatch
import Foundation
import GradGuard
import Synchronization
import XCTest
import _TestSupport

@testable import GradGuardTensor

final class TensorTests: XCTestCase {
    func testCreation() {
        XCTAssertEqual(Tensor.zeros([2, 3]).scalars, [Float](repeating: 0, count: 6))
        XCTAssertEqual(Tensor.ones([2]).scalars, [1, 1])
        XCTAssertEqual(Tensor.full([1, 2], 7).scalars, [7, 7])
        XCTAssertEqual(Tensor.arange(0, 5).scalars, [0, 1, 2, 3, 4])
        XCTAssertEqual(Tensor.arange(1, 2, step: 0.25).scalars, [1, 1.25, 1.5, 1.75])
        let t = Tensor([[1, 2, 3], [4, 5, 6]])
        XCTAssertEqual(t.shape, [2, 3])
        XCTAssertEqual(t.strides, [3, 1])
        XCTAssertEqual(Tensor(3).shape, [])
    }

    func testSeededGeneratorIsReproducibleAcrossMachines() {
        // First outputs of xoshiro256** seeded by SplitMix64(42), from an independent
        // Python implementation of the published algorithms.
        var g = RandomGenerator(seed: 42)
        XCTAssertEqual([g.next(), g.next(), g.next()], [1_546_998_764_402_558_742, 6_990_951_692_964_543_102, 12_544_586_762_248_559_009])
        var g1 = RandomGenerator(seed: 7), g2 = RandomGenerator(seed: 7)
        XCTAssertEqual(Tensor.randn([10], generator: &g1).scalars, Tensor.randn([10], generator: &g2).scalars)
        let r = Tensor.randint([1000], low: 3, high: 9, generator: &g1)
        XCTAssertTrue(r.scalars.allSatisfy { $0 >= 3 && $0 < 9 && $0 == $0.rounded() })
        XCTAssertEqual(Set(r.scalars).count, 6)
        let u = Tensor.rand([1000], low: -2, high: 2, generator: &g1)
        XCTAssertTrue(u.scalars.allSatisfy { $0 >= -2 && $0 < 2 })
        // Restoring a saved state continues the same stream.
        var g3 = RandomGenerator(seed: 5)
        _ = g3.nextNormal()
        var g4 = RandomGenerator(state: g3.state)!
        XCTAssertEqual(g3.nextNormal(), g4.nextNormal())
    }

    func testNormalSamplesHaveTheRightMoments() {
        var g = RandomGenerator(seed: 3)
        let x = Tensor.randn([100_000], mean: 2, std: 3, generator: &g)
        XCTAssertEqual(x.mean().item, 2, accuracy: 0.05)  // 4σ of the mean estimate is 0.038
        XCTAssertEqual(x.variance().item.squareRoot(), 3, accuracy: 0.05)
    }

    func testBroadcastingValues() {
        let x = Tensor([[1, 2, 3], [4, 5, 6]])
        XCTAssertEqual((x + Tensor([10, 20, 30])).scalars, [11, 22, 33, 14, 25, 36])
        XCTAssertEqual((x * Tensor(shape: [2, 1], scalars: [2, 3])).scalars, [2, 4, 6, 12, 15, 18])
        let y = Tensor(shape: [2, 1, 3], scalars: [1, 2, 3, 4, 5, 6]) + Tensor(shape: [2, 1], scalars: [10, 20])
        XCTAssertEqual(y.shape, [2, 2, 3])
        XCTAssertEqual(y.scalars, [11, 12, 13, 21, 22, 23, 14, 15, 16, 24, 25, 26])
        XCTAssertEqual((1 - x).scalars, [0, -1, -2, -3, -4, -5])
    }

    func testReductionValues() {
        let x = Tensor(shape: [2, 3], scalars: [1, 5, 3, 4, 2, 6])
        XCTAssertEqual(x.sum().item, 21)
        XCTAssertEqual(x.sum(axis: 0).scalars, [5, 7, 9])
        XCTAssertEqual(x.sum(axis: 1, keepDims: true).shape, [2, 1])
        XCTAssertEqual(x.mean(axis: 1).scalars, [3, 4])
        let (v, i) = x.max(axis: 1)
        XCTAssertEqual(v.scalars, [5, 6])
        XCTAssertEqual(i.scalars, [1, 2])
        XCTAssertEqual(x.min(axis: 0).values.scalars, [1, 2, 3])
        XCTAssertEqual(x.variance(axes: [1]).scalars, [4, 4])
        XCTAssertEqual(x.variance(axes: [1], correction: 0).scalars[0], 8.0 / 3, accuracy: 1e-6)
        XCTAssertEqual(x.argmax(axis: 0).scalars, [1, 0, 1])
    }

    func testSoftmaxIsStableForLargeLogits() {
        let x = Tensor([[1000, 1001, 1002], [-1000, -1000, -1000]])
        let s = x.softmax(axis: 1)
        XCTAssertTrue(s.scalars.allSatisfy { $0.isFinite })
        XCTAssertEqual(s.scalars[2], 0.66524096, accuracy: 1e-6)
        XCTAssertEqual(s.scalars[3], 1.0 / 3, accuracy: 1e-6)
        let l = x.logSoftmax(axis: 1)
        XCTAssertEqual(l.scalars[0], -2.40760596, accuracy: 1e-5)
    }

    func testVectorisedFunctionsMatchLibm() {
        // Every code path the processor runs: portable SIMD8, AVX2/FMA, AVX-512.
        for level in Kernels.supportedLevels {
            Kernels.withMaxLevel(level) { checkVectorisedFunctionsAgainstLibm() }
        }
    }

    func checkVectorisedFunctionsAgainstLibm() {
        // exp, tanh and sigmoid kernels against Double references over a wide range,
        // including the range ends and non-finite inputs.
        var values: [Float] = stride(from: -100, through: 100, by: 0.037).map { Float($0) }
        values += [0, -0, 1e-8, -1e-8, 1e-4, 0.6249, 0.6251, 88.7, -87.3, 89, -90, .infinity, -.infinity]
        let x = Tensor(values)
        let e = x.exp(), t = x.tanh(), s = x.sigmoid()
        for (i, v) in values.enumerated() {
            let d = Double(v)
            let refs = [Foundation.exp(d), Foundation.tanh(d), 1 / (1 + Foundation.exp(-d))]
            for (got, ref) in zip([e.scalars[i], t.scalars[i], s.scalars[i]], refs) {
                if Float(ref).isInfinite { XCTAssertEqual(got, Float(ref), "at \(v)"); continue }
                if ref < 1.2e-38 && ref > -1.2e-38 { XCTAssertLessThan(Swift.abs(Double(got)), 1.2e-38); continue }
                XCTAssertEqual(Double(got), ref, accuracy: Swift.abs(ref) * 4e-7 + 1e-38, "at \(v)")
            }
        }
        XCTAssertTrue(Tensor([.nan]).exp().scalars[0].isNaN)
        XCTAssertTrue(Tensor([.nan]).tanh().scalars[0].isNaN)
    }

    func testShapeOpValues() {
        let x = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(x.transposed().scalars, [1, 4, 2, 5, 3, 6])
        XCTAssertEqual(x.reshaped([3, -1]).shape, [3, 2])
        XCTAssertEqual(x.slice(axis: 1, start: 0, end: 3, step: 2).scalars, [1, 3, 4, 6])
        XCTAssertEqual(x.slice(axis: 1, start: -2).scalars, [2, 3, 5, 6])
        XCTAssertEqual(Tensor.concatenate([x, x], axis: 1).scalars, [1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6])
        XCTAssertEqual(Tensor.stack([x, x]).shape, [2, 2, 3])
        XCTAssertEqual(x.split(sizes: [1, 2], axis: 1).map(\.scalars), [[1, 4], [2, 3, 5, 6]])
        XCTAssertEqual(x.chunked(2, axis: 1).map(\.shape), [[2, 2], [2, 1]])
        XCTAssertEqual(x.indexSelect(axis: 0, indices: Tensor(indices: [1, 1, 0])).scalars, [4, 5, 6, 4, 5, 6, 1, 2, 3])
        XCTAssertEqual(x.gather(axis: 1, index: Tensor(indices: [2, 0, 1, 1], shape: [2, 2])).scalars, [3, 1, 5, 5])
        XCTAssertEqual(Tensor([1, 2]).reshaped([2, 1]).expanded(to: [2, 3]).scalars, [1, 1, 1, 2, 2, 2])
        XCTAssertEqual(x.permuted([1, 0]).scalars, x.transposed().scalars)
    }

    func testMatmulValues() {
        let a = Tensor([[1, 2], [3, 4]]), b = Tensor([[5, 6], [7, 8]])
        XCTAssertEqual(a.matmul(b).scalars, [19, 22, 43, 50])
        let batched = Tensor.stack([a, b]).matmul(Tensor.stack([b, a]))
        XCTAssertEqual(batched.scalars, [19, 22, 43, 50, 23, 34, 31, 46])
        XCTAssertEqual(Tensor.linear(a, weight: b, bias: Tensor([1, -1])).scalars, [18, 22, 40, 52])
    }

    func testComparisonsAndWhere() {
        let x = Tensor([-1, 0, 2])
        XCTAssertEqual(x.gt(0).scalars, [0, 0, 1])
        XCTAssertEqual(x.le(0).scalars, [1, 1, 0])
        XCTAssertEqual(x.eq(Tensor([-1, 1, 2])).scalars, [1, 0, 1])
        XCTAssertEqual(Tensor.where(x.gt(0), x, Tensor(9)).scalars, [9, 9, 2])
        XCTAssertEqual(x.clamp(min: -0.5, max: 1).scalars, [-0.5, 0, 1])
        XCTAssertTrue(Tensor([.nan]).clamp(min: 0, max: 1).scalars[0].isNaN)
    }

    func testLargeElementwiseWorkSplitAcrossThreadsGivesSameResult() {
        let n = 300_001
        let x = Tensor(shape: [n], scalars: (0..<n).map { Float($0 % 97) / 10 - 4 })
        let y = (x * 2 + 1).relu()
        for i in stride(from: 0, to: n, by: 7919) {
            XCTAssertEqual(y.scalars[i], Swift.max(x.scalars[i] * 2 + 1, 0))
        }
        // float32 lane sums over ~37 000 values each: relative error well under 1e-5.
        let exact = x.scalars.reduce(0.0) { $0 + Double($1) }
        XCTAssertEqual(Double(x.sum().item), exact, accuracy: Swift.abs(exact) * 1e-5)
    }
}

/// The BLAS runs vector kernels wherever the CPU has them (Debian's OpenBLAS falls back to
/// SSE3 "Prescott" kernels on CPUs newer than its model list).
final class BLASSelectionTests: XCTestCase {
    func testGEMMDoesNotRunAGenericKernelOnAVX2OrAVX512() {
        let generic: Set<String> = [
            "Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Katmai", "Coppermine",
            "Northwood", "Banias", "Opteron", "Opteron(SSE3)", "Barcelona", "Bobcat", "Sandybridge", "Bulldozer"
        ]
        let features = BLAS.cpuFeatures
        XCTAssertFalse(BLAS.core.isEmpty)
        if ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil, features.contains("AVX2+FMA") {
            XCTAssertFalse(generic.contains(BLAS.core), "a CPU with \(features) runs OpenBLAS's generic \(BLAS.core) kernels")
        }
        // The choice by features: Intel AVX-512 → SkylakeX, AVX2 → Haswell, AMD left to OpenBLAS.
        XCTAssertEqual(gg_blas_core_for_features(GG_CPU_AVX | GG_CPU_AVX2_FMA | GG_CPU_AVX512).map { String(cString: $0) }, "SkylakeX")
        XCTAssertEqual(gg_blas_core_for_features(GG_CPU_AVX | GG_CPU_AVX2_FMA).map { String(cString: $0) }, "Haswell")
        XCTAssertNil(gg_blas_core_for_features(GG_CPU_AVX | GG_CPU_AVX2_FMA | GG_CPU_AMD))
        XCTAssertNil(gg_blas_core_for_features(0))
        // GradGuard's own kernels: by default a CPU with AVX2 (AVX-512) runs them at that level,
        // products included, unless the environment asks otherwise.
        let env = ProcessInfo.processInfo.environment
        if env["GRADGUARD_KERNELS"] == nil, env["GRADGUARD_NO_AVX2"] == nil, env["GRADGUARD_GEMM"] == nil {
            if features.contains("AVX2+FMA") { XCTAssertGreaterThanOrEqual(KernelLevel.fromEnvironment(), .avx2) }
            if features.contains("AVX-512") && features.contains("AVX2+FMA") { XCTAssertEqual(Kernels.supportedLevel, .avx512) }
            XCTAssertEqual(Kernels.gemm, .own)
        }
    }
}

/// Every kernel level the processor runs against the portable one, so that the AVX2 paths
/// stay tested on an AVX-512 machine (the levels are forced with `Kernels.withMaxLevel`).
final class KernelLevelTests: XCTestCase {
    func testLevelsAreNamedAndCappedByTheProcessor() {
        XCTAssertEqual(KernelLevel(name: "AVX512"), .avx512)
        XCTAssertEqual(KernelLevel(name: "avx2"), .avx2)
        XCTAssertEqual(KernelLevel(name: "portable"), .portable)
        XCTAssertNil(KernelLevel(name: "sse9"))
        XCTAssertEqual(Kernels.supportedLevels.first, .portable)
        XCTAssertEqual(Kernels.supportedLevels.last, Kernels.supportedLevel)
        Kernels.withMaxLevel(.avx512) { XCTAssertEqual(Kernels.level, Kernels.supportedLevel) }
        Kernels.withMaxLevel(.portable) { XCTAssertEqual(Kernels.level, .portable) }
        // The features the C side reads agree with the level it reports.
        let features = gg_cpu_features()
        if features & GG_CPU_AVX512 != 0 && features & GG_CPU_AVX2_FMA != 0 {
            XCTAssertEqual(Kernels.supportedLevel, .avx512)
        } else if features & GG_CPU_AVX2_FMA != 0 {
            XCTAssertEqual(Kernels.supportedLevel, .avx2)
        }
    }

    /// The packed GEMM at every vector level against a double-precision product, over row
    /// counts that hit every block size and tail (1…27), column counts with partial panels,
    /// odd panel ranges (AVX-512 takes panels in pairs) and both store modes.
    func testPackedGEMMMatchesNaiveProduct() {
        var rng = SeededGenerator(seed: 213)
        forEachVectorLevel("packed GEMM") { level in
            for (k, n, transB) in [(1, 16, false), (7, 40, true), (33, 80, false), (64, 48, true), (5, 5, false)] {
                let b = (0..<(k * n)).map { _ in Float.random(in: -1...1, using: &rng) }
                let packedCount = gg_packed_size(k, n)
                var packed = [Float](repeating: .nan, count: packedCount)
                let panels = (n + 15) / 16
                b.withUnsafeBufferPointer { bp in
                    // transB: B is n × k row-major; else k × n.
                    gg_pack_b_panels(bp.baseAddress!, transB ? k : n, transB ? 1 : 0, k, n, 0, panels, &packed)
                }
                func bAt(_ kk: Int, _ j: Int) -> Double { Double(transB ? b[j * k + kk] : b[kk * n + j]) }
                for m in 1...27 {
                    let a = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &rng) }
                    for (p0, p1) in [(0, panels), (panels > 1 ? 1 : 0, panels)] {
                        for accumulate in [false, true] {
                            let initial = (0..<(m * n)).map { _ in Float.random(in: -1...1, using: &rng) }
                            var c = initial
                            gg_gemm_packed(level.cValue, m, k, a, k, packed, p0, p1, n, &c, n, accumulate ? 1 : 0)
                            for i in 0..<m {
                                for j in 0..<n {
                                    let inside = j >= p0 * 16 && j < p1 * 16
                                    var ref = Double(initial[i * n + j])
                                    if inside {
                                        var s = 0.0
                                        for kk in 0..<k { s += Double(a[i * k + kk]) * bAt(kk, j) }
                                        ref = accumulate ? ref + s : s
                                    }
                                    XCTAssertEqual(
                                        Double(c[i * n + j]), ref, accuracy: 1e-4,
                                        "\(level) m \(m) k \(k) n \(n) panels \(p0)..<\(p1) acc \(accumulate) at \(i),\(j)")
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    func testSumsMatchAtEveryLevel() {
        for n in [0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 1000, 200_003] {
            let values = (0..<n).map { Float(($0 * 7919) % 1013) / 1013 - 0.5 }
            let exactSum = values.reduce(0.0) { $0 + Double($1) }
            let exactSquares = values.reduce(0.0) { $0 + Double($1) * Double($1) }
            let x = Tensor(values)
            for level in Kernels.supportedLevels {
                Kernels.withMaxLevel(level) {
                    XCTAssertEqual(Double(x.sum().item), exactSum, accuracy: 1e-5 * Double(n) + 1e-6, "\(level) n \(n)")
                    if level > .portable {
                        XCTAssertEqual(gg_sum(level.cValue, values, n, 1), exactSquares, accuracy: 1e-6 * exactSquares + 1e-6, "\(level) n \(n)")
                        XCTAssertEqual(gg_sum(level.cValue, values, n, 0), exactSum, accuracy: 1e-6 * Double(n) + 1e-6, "\(level) n \(n)")
                    }
                }
            }
        }
    }

    /// exp, sigmoid and tanh over every tail length, in place and out of place.
    func testVectorFunctionsAtEveryLevelMatchPortable() {
        let values = (0..<203).map { Float($0) * 0.173 - 17 }
        for count in [1, 5, 8, 13, 16, 31, 203] {
            let x = Tensor(Array(values.prefix(count)))
            let reference = Kernels.withMaxLevel(.portable) { [x.exp(), x.sigmoid(), x.tanh()] }
            forEachVectorLevel("exp, sigmoid, tanh") { level in
                let got = Kernels.withMaxLevel(level) { [x.exp(), x.sigmoid(), x.tanh()] }
                for (g, r) in zip(got, reference) { assertClose(g, r, rtol: 2e-6, atol: 1e-7, "\(level) count \(count)") }
            }
        }
    }
}

/// GradGuard's own GEMM (`Kernels.gemm == .own`) against OpenBLAS, at every vector level,
/// for every transpose combination, both store modes and the worker splits (by panels, by
/// rows, none).
final class OwnGEMMTests: XCTestCase {
    func testOwnGEMMMatchesOpenBLAS() {
        var rng = SeededGenerator(seed: 290)
        let shapes = [(1, 1, 1), (5, 3, 7), (13, 40, 9), (128, 64, 96), (30, 17, 600), (7, 300, 129), (200, 16, 64), (64, 40, 700)]
        forEachVectorLevel("own GEMM") { level in
            for (m, n, k) in shapes {
                let a = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &rng) }
                let b = (0..<(k * n)).map { _ in Float.random(in: -1...1, using: &rng) }
                let c0 = (0..<(m * n)).map { _ in Float.random(in: -1...1, using: &rng) }
                for transA in [false, true] {
                    for transB in [false, true] {
                        for beta: Float in [0, 1] {
                            for threads in [1, 2, 3] {
                                func product(_ backend: GEMMBackend) -> [Float] {
                                    let saved = (Kernels.gemm, Kernels.maxLevel, Kernels.threadCount)
                                    defer { (Kernels.gemm, Kernels.maxLevel, Kernels.threadCount) = saved }
                                    (Kernels.gemm, Kernels.maxLevel, Kernels.threadCount) = (backend, level, threads)
                                    var c = c0
                                    sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, b: b, beta: beta, c: &c)
                                    return c
                                }
                                let own = product(.own), blas = product(.openBLAS)
                                let label = "\(level) \(m)×\(n)×\(k) tA \(transA) tB \(transB) β \(beta) threads \(threads)"
                                // Rounding differs with the order of the k terms: a tolerance growing with k.
                                assertClose(Tensor(own), Tensor(blas), rtol: 1e-5, atol: 3e-7 * Float(k) + 1e-6, label)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The persistent workers behind `parallelFor`.
final class WorkerPoolTests: XCTestCase {
    func testEveryIndexRunsOnceAcrossManyJobs() {
        let saved = Kernels.threadCount
        defer { Kernels.threadCount = saved }
        for threads in [2, 3, 5] {
            Kernels.threadCount = threads
            for job in 0..<2000 {
                let count = 1 + job % 37
                let hits = UnsafeMutableBufferPointer<Int>.allocate(capacity: count)
                hits.initialize(repeating: 0)
                defer { hits.deallocate() }
                parallelFor(count, grain: 1) { range in for i in range { hits[i] += 1 } }
                XCTAssertEqual(Array(hits), [Int](repeating: 1, count: count), "threads \(threads) job \(job)")
            }
        }
    }

    func testNestedAndConcurrentCallersRunEverything() {
        // A parallelFor inside a parallelFor body, and parallelFor from several user threads at once.
        let total = Atomic<Int>(0)
        parallelFor(8, grain: 1) { outer in
            for _ in outer { parallelFor(100, grain: 1) { inner in total.add(inner.count, ordering: .relaxed) } }
        }
        XCTAssertEqual(total.load(ordering: .relaxed), 800)
        let concurrent = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<200 { parallelFor(64, grain: 1) { r in concurrent.add(r.count, ordering: .relaxed) } }
        }
        XCTAssertEqual(concurrent.load(ordering: .relaxed), 4 * 200 * 64)
    }
}
