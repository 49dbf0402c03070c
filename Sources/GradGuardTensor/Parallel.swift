import CGradGuardKernels
import Synchronization

/// Runtime knobs of the kernels.
public enum Kernels {
    /// Number of worker threads used for element-wise and reduction work: the
    /// `GRADGUARD_NUM_THREADS` environment variable when set, else the online cores (at most 8).
    /// Matrix products use OpenBLAS's own threads (`OPENBLAS_NUM_THREADS`).
    public static var threadCount: Int {
        get { settings.threadCount.load(ordering: .relaxed) }
        set { settings.threadCount.store(newValue, ordering: .relaxed) }
    }

    /// The highest instruction set GradGuard's own vector kernels may use (GEMM micro-kernel,
    /// exp/sigmoid/tanh, LSTM cells, im2col/col2im, optimizer updates, sums): the
    /// `GRADGUARD_KERNELS` environment variable (`portable`, `avx2` or `avx512`) when set,
    /// `portable` when `GRADGUARD_NO_AVX2` is set, else `avx512`. Lower it to force a path,
    /// for tests or to see what an older CPU gets; the processor caps it (`level`).
    public static var maxLevel: KernelLevel {
        get { KernelLevel(rawValue: settings.maxLevel.load(ordering: .relaxed)) ?? .portable }
        set { settings.maxLevel.store(newValue.rawValue, ordering: .relaxed) }
    }

    /// The highest level this processor runs: AVX-512 needs F, DQ, BW and VL, AVX2 needs FMA.
    public static let supportedLevel: KernelLevel = KernelLevel(rawValue: Int(gg_kernel_level_supported())) ?? .portable

    /// The level the kernels run at: `maxLevel`, capped by what the processor supports.
    @inline(__always) public static var level: KernelLevel { Swift.min(maxLevel, supportedLevel) }

    /// Who computes matrix products at the vector levels: GradGuard's own kernels (default) or
    /// OpenBLAS (`GRADGUARD_GEMM=openblas`). At the portable level OpenBLAS always does.
    public static var gemm: GEMMBackend {
        get { settings.openBLAS.load(ordering: .relaxed) ? .openBLAS : .own }
        set { settings.openBLAS.store(newValue == .openBLAS, ordering: .relaxed) }
    }

    /// The knobs' storage: atomics, so that a setting changed on one thread is seen whole on
    /// every other (the kernels read them on the workers).
    private final class Settings: Sendable {
        let threadCount: Atomic<Int>
        let maxLevel: Atomic<Int>
        let openBLAS: Atomic<Bool>

        init() {
            var threads = Swift.max(1, Swift.min(System.activeProcessorCount, 8))
            if let v = getenv("GRADGUARD_NUM_THREADS"), let n = Int(String(cString: v)), n > 0 { threads = n }
            threadCount = Atomic(threads)
            maxLevel = Atomic(KernelLevel.fromEnvironment().rawValue)
            openBLAS = Atomic(getenv("GRADGUARD_GEMM").map { String(cString: $0).lowercased() == "openblas" } == true)
        }
    }
    private static let settings = Settings()

    /// Every level this processor runs, lowest first (for tests that compare paths).
    public static var supportedLevels: [KernelLevel] { KernelLevel.allCases.filter { $0 <= supportedLevel } }

    /// Runs `body` with `maxLevel` set to `level`, restoring it afterwards.
    public static func withMaxLevel<R>(_ level: KernelLevel, _ body: () throws -> R) rethrows -> R {
        let saved = maxLevel
        maxLevel = level
        defer { maxLevel = saved }
        return try body()
    }
}

/// Who computes the matrix products (`Kernels.gemm`).
public enum GEMMBackend: String, Sendable, CaseIterable {
    /// GradGuard's register-blocked kernels at the vector level in use.
    case own
    /// OpenBLAS, loaded at first use.
    case openBLAS = "openblas"
}

/// The instruction sets GradGuard's own vector kernels are compiled for, lowest first.
public enum KernelLevel: Int, Comparable, CaseIterable, Sendable, CustomStringConvertible {
    /// Swift SIMD code the compiler maps to the baseline instruction set (SSE2 on x86-64, NEON on ARM).
    case portable = 0
    /// 8-lane kernels with AVX2 and FMA (Haswell, Zen and later).
    case avx2 = 1
    /// 16-lane kernels with AVX-512 F/DQ/BW/VL (Skylake-SP, Ice Lake, Sapphire Rapids, Zen 4 and later).
    case avx512 = 2

    /// Levels in order: portable < AVX2 < AVX-512.
    public static func < (a: KernelLevel, b: KernelLevel) -> Bool { a.rawValue < b.rawValue }

    /// The name used by `GRADGUARD_KERNELS`.
    public var name: String { ["portable", "avx2", "avx512"][rawValue] }
    /// The level's name for messages ("AVX2+FMA").
    public var description: String { ["portable", "AVX2+FMA", "AVX-512"][rawValue] }

    /// The level named as `GRADGUARD_KERNELS` names it (`portable`, `avx2`, `avx512`), or nil.
    public init?(name: String) {
        guard let level = KernelLevel.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = level
    }

    /// The `level` argument of the C kernels (GG_LEVEL_*).
    @inline(__always) public var cValue: Int32 { Int32(rawValue) }

    static func fromEnvironment() -> KernelLevel {
        if let v = getenv("GRADGUARD_KERNELS") {
            let text = String(cString: v)
            if let level = KernelLevel(name: text) { return level }
            if !text.isEmpty {
                let message = "gradguard: GRADGUARD_KERNELS=\(text) is not one of portable, avx2, avx512; using the best the CPU runs\n"
                _ = message.withCString { write(2, $0, strlen($0)) }
            }
        }
        return getenv("GRADGUARD_NO_AVX2") != nil ? .portable : .avx512
    }
}

/// Keeps freed tensor memory in the process heap for reuse. A training step allocates and
/// frees the same large buffers every step; with glibc's defaults each one above the mmap
/// threshold is a fresh mapping whose pages the kernel faults in and zeroes again, which
/// measured 30 % of a convolutional step. Set `GRADGUARD_KEEP_MALLOC=1` to leave the C
/// allocator's settings alone.
enum AllocatorTuning {
    private static let done = Atomic<Bool>(false)

    /// Applies the settings once per process (cheap to call on every allocation).
    @inline(__always)
    static func ensure() {
        if !done.load(ordering: .relaxed) { apply() }
    }

    private static func apply() {
        guard done.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        if getenv("GRADGUARD_KEEP_MALLOC") == nil { _ = gg_keep_freed_memory() }
    }
}

enum System {
    static var activeProcessorCount: Int {
        let n = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        return n > 0 ? Int(n) : 1
    }
}

/// Splits `0..<count` into contiguous ranges and runs `body` on each, in parallel when the
/// work is large enough to pay for the threads (`grain` elements or more per worker).
@inlinable
public func parallelFor(_ count: Int, grain: Int = 32_768, _ body: (Range<Int>) -> Void) {
    let workers = Swift.min(Kernels.threadCount, count / Swift.max(grain, 1))
    if workers <= 1 {
        body(0..<count)
        return
    }
    WorkerPool.shared.run(tasks: workers) { w in body((count * w / workers)..<(count * (w + 1) / workers)) }
}

#if canImport(Glibc)
    import Glibc
#endif

/// Runs `phases × chunks` pieces of work phase by phase: no chunk of phase p starts before
/// every chunk of phase p − 1 has finished, and the chunks of one phase run at once on the
/// workers. Built for recurrences, where each time step is one phase split over hidden
/// units: the workers wait for each other with a short spin instead of a thread hand-off
/// per step.
///
/// Threads claim chunks in order from one shared counter and finish each claim before taking
/// the next, so the chunks a thread waits for are always held by a thread that is running:
/// if only one thread ever arrives, it does all the work alone.
func runPhases(_ phases: Int, chunks: Int, _ body: (_ phase: Int, _ chunk: Int) -> Void) {
    let total = phases * chunks
    guard total > 0 else { return }
    if chunks == 1 || Kernels.threadCount == 1 {
        for p in 0..<phases { for c in 0..<chunks { body(p, c) } }
        return
    }
    let progress = PhaseProgress()
    parallelFor(Swift.min(Kernels.threadCount, chunks), grain: 1) { _ in
        while true {
            let i = progress.claimed.add(1, ordering: .relaxed).oldValue
            if i >= total { break }
            let phase = i / chunks
            let needed = phase * chunks
            var spins = 0
            while progress.finished.load(ordering: .acquiring) < needed {
                spins += 1
                if spins < 4_000 { gg_cpu_relax() } else { sched_yield() }
            }
            body(phase, i - needed)
            progress.finished.add(1, ordering: .releasing)
        }
    }
}

private final class PhaseProgress: Sendable {
    let claimed = Atomic<Int>(0)
    let finished = Atomic<Int>(0)
}
