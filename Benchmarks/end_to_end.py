#!/usr/bin/env python3
"""End to end against PyTorch: `gradguard train` of a character LSTM on a real text and its
PyTorch twin (charlm_twin.py), alternately, ROUNDS times each. Wall time is process start to
exit (gradguard has then written its checkpoint, records and HTML report); the validation
bits/char are those of the final validation pass after the same number of steps.

    swift build -c release --product gradguard
    python3 Benchmarks/end_to_end.py --text FILE [--rounds 3] [--steps 300] [--width 256]

FILE must be UTF-8 text of at least 2 MB for the figures in BENCHMARKS.md (the King James
Bible as Debian's bible-kjv prints it: `bible "gen1:1-rev22:21" > kjv.txt`, 4.3 MB).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from machine import cpu_model
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
GRADGUARD = os.path.join(HERE, "..", ".build", "release", "gradguard")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--text", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.002)
    a = p.parse_args()
    size = os.path.getsize(a.text)
    if not os.path.exists(GRADGUARD):
        sys.exit(f"{GRADGUARD} is missing: swift build -c release --product gradguard")
    runs = tempfile.mkdtemp(prefix="gradguard-e2e-")
    settings = {"model.kind": "charlm", "data.kind": "text", "data.path": os.path.abspath(a.text), "model.width": a.width,
                "model.embedding": 64, "data.sequence_length": 64, "training.batch_size": 64, "optimizer.kind": "adam",
                "optimizer.lr": a.lr, "guard.clipper": "global-norm", "guard.max_norm": 5, "training.max_steps": a.steps,
                "runs_directory": runs, "seed": 0}
    gg_cmd = [GRADGUARD, "train", "--name", "e2e", "--overwrite", "--quiet"]
    for k, v in settings.items():
        gg_cmd += ["--set", f"{k}={v}"]
    twin_cmd = [sys.executable, os.path.join(HERE, "charlm_twin.py"), "--text", a.text, "--steps", str(a.steps),
                "--width", str(a.width), "--embedding", "64", "--length", "64", "--batch", "64", "--lr", str(a.lr),
                "--max-norm", "5", "--seed", "0"]
    gg_wall, gg_bits, pt_wall, pt_bits = [], [], [], []
    for _ in range(a.rounds):
        t = time.time()
        twin = json.loads(subprocess.run(twin_cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)
        pt_wall.append(time.time() - t)
        pt_bits.append(twin["bits_per_char"])
        t = time.time()
        subprocess.run(gg_cmd, check=True, stdout=subprocess.DEVNULL)
        gg_wall.append(time.time() - t)
        evals = [json.loads(l) for l in open(os.path.join(runs, "e2e", "metrics.jsonl")) if '"kind":"eval"' in l]
        if not evals or evals[-1]["step"] != a.steps:
            sys.exit(f"gradguard's run has no validation pass at step {a.steps}")
        gg_bits.append(evals[-1]["metrics"]["bits_per_char"])
    med = statistics.median
    print(f"CPU: {cpu_model()}")
    print(f"text: {a.text} ({size / 1e6:.1f} MB); {a.steps} steps of 64 windows × 64 characters; LSTM width {a.width}, "
          f"Adam lr {a.lr}, global-norm clip 5; {a.rounds} alternating rounds, medians; torch {twin['torch']}, {twin['threads']} threads")
    print("| figure | GradGuard | PyTorch | ratio |")
    print("|---|---|---|---|")
    print(f"| wall time, process start to exit (s) | {med(gg_wall):.2f} | {med(pt_wall):.2f} | {med(gg_wall) / med(pt_wall):.2f} |")
    print(f"| validation bits/char after {a.steps} steps | {med(gg_bits):.4f} | {med(pt_bits):.4f} | "
          f"{med(gg_bits) / med(pt_bits):.3f} |")
    print(f"GradGuard wall {[round(x, 2) for x in gg_wall]}, bits {[round(x, 4) for x in gg_bits]}; "
          f"PyTorch wall {[round(x, 2) for x in pt_wall]}, bits {[round(x, 4) for x in pt_bits]}")


if __name__ == "__main__":
    main()
