import CGradGuardKernels
import Glibc
import Synchronization

/// The persistent worker threads behind `parallelFor`.
///
/// A training step hands the workers hundreds of short jobs (a 128 × 256 × 256 product is
/// 40 µs per core). Waking a parked thread through the kernel costs 5–50 µs each time, so
/// the workers spin on the job word for a while after each job (`spinNanoseconds`, default
/// 200 µs — 50 µs to 1 ms measured the same on the reference workloads; `GRADGUARD_SPIN_US`
/// sets it in microseconds, 0 parks at once) and only then park on a condition variable — the policy of OpenMP runtimes (`OMP_WAIT_POLICY`, `KMP_BLOCKTIME`).
/// The calling thread takes tasks too. A job started while another runs (a nested
/// `parallelFor`, or a second user thread) runs on its caller alone.
// @unchecked: every mutable field is an Atomic, or the mutex-guarded parking state; the job's
// closure pointer is published through `context` before the job word that lets workers read it.
@usableFromInline
final class WorkerPool: @unchecked Sendable {
    @usableFromInline static let shared = WorkerPool()

    /// Job word: generation (bits 40…63), task count (20…39), next task to claim (0…19).
    private let word = Atomic<UInt64>(0)
    private let context = Atomic<UInt>(0)
    private let done = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    private let sleepers = Atomic<Int>(0)
    private let started = Mutex<Int>(0)
    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    private let wake: UnsafeMutablePointer<pthread_cond_t>
    let spinNanoseconds: UInt64

    private init() {
        lock = .allocate(capacity: 1)
        wake = .allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
        pthread_cond_init(wake, nil)
        if let v = getenv("GRADGUARD_SPIN_US"), let us = UInt64(String(cString: v)) {
            spinNanoseconds = Swift.min(us, 1_000_000) * 1_000
        } else {
            spinNanoseconds = 200_000
        }
    }

    private static func generation(_ w: UInt64) -> UInt64 { w >> 40 }
    private static func count(_ w: UInt64) -> Int { Int((w >> 20) & 0xFFFFF) }
    private static func index(_ w: UInt64) -> Int { Int(w & 0xFFFFF) }

    private final class Job {
        let body: (Int) -> Void
        init(_ body: @escaping (Int) -> Void) { self.body = body }
    }

    /// Runs `body(0) … body(tasks − 1)`, spread over the workers and the calling thread, and
    /// returns when all have finished.
    @usableFromInline
    func run(tasks: Int, _ body: (Int) -> Void) {
        guard tasks > 1, tasks < 1 << 20, busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for t in 0..<Swift.max(tasks, 0) { body(t) }
            return
        }
        defer { busy.store(false, ordering: .releasing) }
        ensureWorkers(tasks - 1)
        withoutActuallyEscaping(body) { escaping in
            let job = Job(escaping)
            withExtendedLifetime(job) {
                let generation = Self.generation(word.load(ordering: .relaxed)) &+ 1
                done.store(0, ordering: .relaxed)
                context.store(UInt(bitPattern: Unmanaged.passUnretained(job).toOpaque()), ordering: .relaxed)
                word.store(((generation & 0xFFFFFF) << 40) | UInt64(tasks) << 20, ordering: .sequentiallyConsistent)
                if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                    pthread_mutex_lock(lock)
                    pthread_cond_broadcast(wake)
                    pthread_mutex_unlock(lock)
                }
                work(generation & 0xFFFFFF)
                var spins = 0
                while done.load(ordering: .acquiring) < tasks {
                    spins += 1
                    if spins < 1 << 14 { gg_cpu_relax() } else { sched_yield() }
                }
            }
        }
    }

    /// Claims and runs tasks of job `generation` until none is left; returns whether it ran any.
    @discardableResult
    private func work(_ generation: UInt64) -> Bool {
        var ran = false
        while true {
            let w = word.load(ordering: .acquiring)
            guard Self.generation(w) == generation, Self.index(w) < Self.count(w) else { return ran }
            guard word.compareExchange(expected: w, desired: w + 1, ordering: .acquiringAndReleasing).exchanged else { continue }
            // The claimed task keeps the job alive: its caller waits for it, so the context is this job's.
            let raw = UnsafeRawPointer(bitPattern: context.load(ordering: .acquiring))!
            // No retain: the caller's reference must be the last one when its wait ends.
            Unmanaged<Job>.fromOpaque(raw)._withUnsafeGuaranteedRef { $0.body(Self.index(w)) }
            done.add(1, ordering: .releasing)
            ran = true
        }
    }

    private func ensureWorkers(_ n: Int) {
        started.withLock { count in
            while count < n {
                var thread = pthread_t()
                let box = Unmanaged.passRetained(self).toOpaque()
                var attr = pthread_attr_t()
                pthread_attr_init(&attr)
                pthread_attr_setstacksize(&attr, 8 << 20)
                let rc = pthread_create(
                    &thread, &attr,
                    { arg in
                        let pool = Unmanaged<WorkerPool>.fromOpaque(arg!).takeRetainedValue()
                        pool.loop()
                        return nil
                    }, box)
                pthread_attr_destroy(&attr)
                if rc != 0 {
                    Unmanaged<WorkerPool>.fromOpaque(box).release()
                    return  // fewer workers: the calling thread does the rest
                }
                pthread_detach(thread)
                count += 1
            }
        }
    }

    private func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    private func loop() {
        var seen = Self.generation(word.load(ordering: .acquiring))
        while true {
            // Spin for new work, then park.
            var spins = 0
            var deadline: UInt64 = 0
            while Self.generation(word.load(ordering: .acquiring)) == seen {
                spins += 1
                gg_cpu_relax()
                if spins & 255 == 0 {
                    let t = now()
                    if deadline == 0 { deadline = t &+ spinNanoseconds } else if t >= deadline { park(seen); break }
                }
            }
            let w = word.load(ordering: .acquiring)
            seen = Self.generation(w)
            work(seen)
        }
    }

    private func park(_ seen: UInt64) {
        pthread_mutex_lock(lock)
        sleepers.add(1, ordering: .sequentiallyConsistent)
        while Self.generation(word.load(ordering: .sequentiallyConsistent)) == seen {
            pthread_cond_wait(wake, lock)
        }
        sleepers.subtract(1, ordering: .sequentiallyConsistent)
        pthread_mutex_unlock(lock)
    }
}
