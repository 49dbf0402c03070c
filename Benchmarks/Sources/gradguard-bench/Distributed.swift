// Data-parallel figures (`--only distributed`), run under mpirun or alone:
//
//     mpirun -np 2 -x GRADGUARD_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1 gradguard-bench --only distributed
//     GRADGUARD_NUM_THREADS=2 gradguard-bench --only distributed
//
// The gradient average (reduce-scatter + all-gather) against message size, and the
// char-LSTM and tiny-detector steps under the guard at the same global batch (32 sequences,
// 16 images) split over the ranks, with the time the step spends exchanging statistics and
// averaging gradients. Rank 0 prints.
import Foundation
import GradGuard

func distributedBenchmark() -> (rank: Int, results: [(String, Double)]) {
    func orDie<T>(_ what: String, _ body: () throws -> T) -> T {
        do { return try body() } catch {
            FileHandle.standardError.write(Data("gradguard-bench: \(what): \(error)\n".utf8))
            exit(1)
        }
    }
    let world = orDie("joining the job") { try MPICommunicator.launchedOrSingle() }
    let n = world.size
    var out: [(String, Double)] = [("ranks", Double(n)), ("threads_per_rank", Double(Kernels.threadCount))]

    // Averaging a message of S bytes: ring algorithms move 2(N−1)/N·S per rank ("bus
    // bandwidth", as NCCL's tests report it).
    if n > 1 {
        for floats in [256, 4096, 65_536, 1 << 20, 1 << 22] {
            var buffer = [Float](repeating: 1, count: floats)
            orDie("barrier") { try world.barrier() }
            let t = bench(floats >= 1 << 20 ? 10 : 50, warm: 3) {
                orDie("average") { try buffer.withUnsafeMutableBufferPointer { try world.sumIdentically($0, scale: 0.5) } }
            }
            out.append(("average_\(floats * 4)B_us", t * 1e6))
            out.append(("average_\(floats * 4)B_busbw_GBps", 2 * Double(n - 1) / Double(n) * Double(floats * 4) / t / 1e9))
        }
    }

    // One guarded step of `model` on this rank's share of the global batch, 25 timed steps
    // after 5 warm-up ones; the communication the guard did, from its outcome.
    func steps(_ label: String, model: Module, optimizer: any Optimizer, maxNorm: Float, bucketBytes: Int, loss: () -> Tensor) {
        let guardian = GradientGuard(
            model: model, optimizer: optimizer, policy: GuardPolicy(clipper: ClipByGlobalNorm(maxNorm: maxNorm)), communicator: world,
            bucketBytes: bucketBytes)
        guardian.judge.updateRatioEvery = 0
        var times: [Double] = [], comm: [Double] = [], wait: [Double] = []
        orDie("broadcast") { try guardian.broadcastParameters() }
        for i in 0..<30 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            optimizer.zeroGrad()
            guardian.prepareGradientSync()
            let l = loss()
            l.backward()
            let o = orDie("step") { try guardian.step(loss: l.item) }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if i >= 5 {
                times.append(dt)
                if let r = o.stats.ranks?[world.rank] {
                    comm.append(r.communicationSeconds)
                    wait.append(r.waitSeconds)
                }
            }
        }
        let step = median(times)
        out.append(("\(label)_step_ms", step * 1e3))
        if n > 1 {
            out.append(("\(label)_average_ms", median(comm) * 1e3))
            out.append(("\(label)_exchange_ms", median(wait) * 1e3))
            out.append(("\(label)_communication_pct", (median(comm) + median(wait)) / step * 100))
            if let sync = guardian.gradientSync {
                out.append(("\(label)_buckets", Double(sync.buckets.count)))
                out.append(("\(label)_buckets_started_in_backward", Double(sync.startedDuringBackward)))
            }
        }
    }
    DefaultGenerator.seed(0)
    do {
        let m = BenchCharLSTM()
        let b = 32 / n
        let x = Tensor.randint([b, 64], high: 65), y = Tensor.randint([b * 64], high: 65)
        for (tag, bytes) in [("", 25 << 20), ("_1MB_buckets", 1 << 20)] where n > 1 || tag.isEmpty {
            steps("char_lstm" + tag, model: m, optimizer: Adam(m.parameters(), lr: 1e-3), maxNorm: 1, bucketBytes: bytes) {
                m.loss(x, y)
            }
        }
    }
    do {
        let det = benchTinyDetector()
        let x = Tensor.randn([16 / n, 3, 128, 128])
        steps("tiny_det", model: det, optimizer: SGD(det.parameters(), lr: 0.01, momentum: 0.9), maxNorm: 10, bucketBytes: 25 << 20) {
            let o = det(x)
            return (o * o).mean()
        }
    }
    return (world.rank, out)
}
