#!/usr/bin/env python3
"""Data-parallel figures in one sitting: runs `gradguard-bench --only distributed` on two
ranks of one thread (mpirun) and on one process of two threads, alternately, ROUNDS times
each, and prints the medians; then the model of docs/SCALING.md (ring all-reduce cost
2(N-1)/N*S/bandwidth + latency terms) at 8, 64 and 512 ranks on 10 and 100 Gb/s links from
the measured compute times.

    swift build -c release --package-path Benchmarks
    python3 Benchmarks/distributed.py [ROUNDS]
"""
import json
import math
import os
import statistics
import subprocess
import sys

from machine import cpu_model

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(HERE, ".build", "release", "gradguard-bench")
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
# As root, Open MPI wants both variables to launch at all.
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def run(cmd, extra):
    out = subprocess.run(cmd, env=dict(env, **extra), check=True, capture_output=True, text=True).stdout
    return json.loads(out[out.index("{"):out.rindex("}") + 1])


two, one = {}, {}
for _ in range(rounds):
    r = run(["mpirun", "-np", "2", "--oversubscribe", "-x", "GRADGUARD_NUM_THREADS=1", "-x", "OPENBLAS_NUM_THREADS=1",
             BENCH, "--only", "distributed"], {})
    for k, v in r.items():
        if k != "kernels":
            two.setdefault(k, []).append(v)
    r = run([BENCH, "--only", "distributed"], {"GRADGUARD_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"})
    for k, v in r.items():
        if k != "kernels":
            one.setdefault(k, []).append(v)
med2 = {k: statistics.median(v) for k, v in two.items()}
med1 = {k: statistics.median(v) for k, v in one.items()}

print(f"CPU: {cpu_model()}; {rounds} rounds, medians")
print("\nAveraging a gradient over 2 ranks on this machine (reduce-scatter + all-gather, shared memory):")
print("| message | time (µs) | bus bandwidth (GB/s) |\n|---|---|---|")
for size in [1024, 16384, 262144, 4194304, 16777216]:
    print(f"| {size // 1024} KiB | {med2[f'average_{size}B_us']:.1f} | {med2[f'average_{size}B_busbw_GBps']:.2f} |")

print("\nSteps at the same global batch: 2 processes × 1 thread against 1 process × 2 threads:")
print("| workload | 1 × 2 threads (ms) | 2 × 1 thread (ms) | ratio | averaging (ms) | statistics exchange (ms) | communication share |")
print("|---|---|---|---|---|---|---|")
for name, label in [("char_lstm", "char-LSTM, 32 × 64 chars"), ("char_lstm_1MB_buckets", "char-LSTM, 1 MiB buckets"),
                    ("tiny_det", "tiny detector, 16 × 128² images")]:
    base = med1.get(f"{name}_step_ms", med1.get("char_lstm_step_ms"))
    s = med2[f"{name}_step_ms"]
    print(f"| {label} | {base:.2f} | {s:.2f} | {s / base:.2f} | {med2[f'{name}_average_ms']:.3f} | "
          f"{med2[f'{name}_exchange_ms']:.3f} | {med2[f'{name}_communication_pct']:.1f} % |")

# The model: per-rank compute at this per-rank batch (one thread: the 2 × 1 run's step less
# its communication), and a ring all-reduce of the gradient plus the statistics exchange.
gradient_bytes = {"char_lstm": 4 * 420_289, "tiny_det": 4 * 284_904}
tensors = {"char_lstm": 7, "tiny_det": 20}
latency = {10: 20e-6, 100: 5e-6}  # seconds per message: TCP on 10 Gb/s, RDMA-class on 100 Gb/s
print("\nModel (docs/SCALING.md): step = compute + exposed communication, per-rank batch as measured")
print("| workload | link | N | all-reduce (ms) | statistics exchange (ms) | step (ms) | efficiency |")
print("|---|---|---|---|---|---|---|")
for name in ["char_lstm", "tiny_det"]:
    compute = med2[f"{name}_step_ms"] - med2[f"{name}_average_ms"] - med2[f"{name}_exchange_ms"]
    for gbps in [10, 100]:
        bw = gbps / 8 * 1e9
        for n in [8, 64, 512]:
            s = gradient_bytes[name]
            ring = 2 * (n - 1) / n * s / bw + 2 * (n - 1) * latency[gbps]
            # Two all-gathers of (3 + 3·tensors) doubles per rank, recursive doubling: log2 N messages each.
            stats = 2 * (math.log2(n) * latency[gbps] + (n - 1) * 8 * (3 + 3 * tensors[name]) / bw)
            step = compute + 1e3 * (ring + stats)
            print(f"| {name} | {gbps} Gb/s | {n} | {1e3 * ring:.2f} | {1e3 * stats:.3f} | {step:.1f} | {compute / step:.0%} |")
