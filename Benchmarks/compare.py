#!/usr/bin/env python3
"""Runs gradguard-bench and pytorch_reference.py alternately, ROUNDS times each, and prints
the median of every figure with the GradGuard/PyTorch ratio. The machine is shared and
noisy, so only figures taken side by side in one sitting are compared.

    swift build -c release --package-path Benchmarks
    python3 Benchmarks/compare.py [ROUNDS] [NAME=VALUE ...]

NAME=VALUE pairs are set in GradGuard's environment only, e.g. GRADGUARD_KERNELS=avx2 for
the figures an AVX2-only CPU gets, or GRADGUARD_GEMM=openblas.
"""
import json
import os
import statistics
import subprocess
import sys

from machine import cpu_model

HERE = os.path.dirname(os.path.abspath(__file__))
SWIFT = [os.path.join(HERE, ".build", "release", "gradguard-bench")]
TORCH = [sys.executable, os.path.join(HERE, "pytorch_reference.py")]
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
swift_env = dict(os.environ, **dict(a.split("=", 1) for a in sys.argv[2:]))


def run(cmd, env=None):
    """The figures a benchmark printed, and its own peak resident set in KiB."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} exited with {proc.returncode}")
    text = out[out.index("{"):out.rindex("}") + 1]
    return json.loads(text), usage.ru_maxrss


swift, torch = {}, {}
rss = {"swift": 0, "torch": 0}
labels = {}
for _ in range(rounds):
    for name, cmd, into in [("torch", TORCH, torch), ("swift", SWIFT, swift)]:
        values, peak = run(cmd, swift_env if name == "swift" else None)
        rss[name] = max(rss[name], peak)
        for k, v in values.items():
            if isinstance(v, str):
                labels[f"{name} {k}"] = v
                continue
            into.setdefault(k, []).append(v)

med = lambda xs: statistics.median(xs)
rows = [("char-LSTM step (ms)", "char_lstm_step_ms", "char_lstm_step_ms", False),
        ("tiny detector step (ms)", "tiny_det_step_ms", "tiny_det_step_ms", False),
        ("YOLO-style detector step (ms)", "yolo_step_ms", "yolo_step_ms", False),
        ("deep MLP step (ms)", "mlp20_step_ms", "mlp20_step_ms", False),
        ("clip_grad_norm 100 × 50k (ms)", "clip100x50k_ms", "clip100x50k_ms", False),
        ("sgemm 1024³ (GFLOP/s)", "sgemm1024_tensor_gflops", "sgemm1024_gflops", True)]
print(f"CPU: {cpu_model()}")
print(f"{rounds} alternating rounds, medians" + (f"; GradGuard with {' '.join(sys.argv[2:])}" if sys.argv[2:] else ""))
for k, v in labels.items():
    print(f"{k}: {v}")
# The machine's load drifts over minutes; each round's two runs are back to back, so the
# median of the per-round ratios is steadier than the ratio of the medians.
print("| workload | GradGuard | PyTorch | ratio of medians (GradGuard time / PyTorch time) | median of per-round ratios |")
print("|---|---|---|---|---|")
for label, sk, tk, is_rate in rows:
    s, t = med(swift[sk]), med(torch[tk])
    ratio = t / s if is_rate else s / t
    pairs = med([(b / a if is_rate else a / b) for a, b in zip(swift[sk], torch[tk])])
    print(f"| {label} | {s:.2f} | {t:.2f} | {ratio:.2f} | {pairs:.2f} |")
raw, via = med(swift["sgemm1024_openblas_gflops"]), med(swift["sgemm1024_tensor_gflops"])
print(f"| sgemm 1024³ through Tensor.matmul vs OpenBLAS (GFLOP/s) | {via:.1f} | OpenBLAS {raw:.1f} | {via / raw:.2f} of OpenBLAS's rate |")
for k in ["linear256_fwd_gflops", "linear256_dx_gflops", "linear256_dw_gflops"]:
    print(f"| {k} (GFLOP/s) | {med(swift[k]):.1f} | | |")
print(f"peak RSS: GradGuard {rss['swift'] / 1024:.0f} MiB, PyTorch {rss['torch'] / 1024:.0f} MiB")
for key in ["char_lstm_step_ms", "tiny_det_step_ms", "yolo_step_ms", "mlp20_step_ms"]:
    print(f"{key}: GradGuard {[round(v, 1) for v in swift[key]]}, PyTorch {[round(v, 1) for v in torch[key]]}")
