#!/usr/bin/env python3
"""End to end against PyTorch, alternately, ROUNDS times each; wall time is process start to
exit (gradguard has then written its checkpoints, records and HTML report).

    swift build -c release --product gradguard
    python3 Benchmarks/end_to_end.py --text FILE [--rounds 3] [--steps 300] [--width 256]
    python3 Benchmarks/end_to_end.py --shapes DIR [--rounds 3] [--epochs 5] [--size 256]

--text: `gradguard train` of a character LSTM on a real text and its PyTorch twin
(charlm_twin.py); the validation bits/char are those of the final validation pass after the
same number of steps. FILE must be UTF-8 text of at least 2 MB for the figures in
BENCHMARKS.md (the King James Bible as Debian's bible-kjv prints it:
`bible "gen1:1-rev22:21" > kjv.txt`, 4.3 MB).

--shapes: the detector on `gradguard data shapes --out DIR --size 256` images, without
augmentation, and its twin (detector_twin.py): wall time per epoch (the whole run over its
epochs) and mAP@0.5 on the validation images after the last epoch.
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


def charlm(a, runs):
    settings = {"model.kind": "charlm", "data.kind": "text", "data.path": os.path.abspath(a.text), "model.width": a.width,
                "model.embedding": 64, "data.sequence_length": 64, "training.batch_size": 64, "optimizer.kind": "adam",
                "optimizer.lr": a.lr, "guard.clipper": "global-norm", "guard.max_norm": 5, "training.max_steps": a.steps,
                "runs_directory": runs, "seed": 0}
    twin = [sys.executable, os.path.join(HERE, "charlm_twin.py"), "--text", a.text, "--steps", str(a.steps),
            "--width", str(a.width), "--embedding", "64", "--length", "64", "--batch", "64", "--lr", str(a.lr),
            "--max-norm", "5", "--seed", "0"]

    def figures(evals, out):
        if not evals or evals[-1]["step"] != a.steps:
            sys.exit(f"gradguard's run has no validation pass at step {a.steps}")
        return evals[-1]["metrics"]["bits_per_char"], out["bits_per_char"]

    size = os.path.getsize(a.text)
    title = (f"text: {a.text} ({size / 1e6:.1f} MB); {a.steps} steps of 64 windows × 64 characters; LSTM width {a.width}, "
             f"Adam lr {a.lr}, global-norm clip 5")
    return settings, twin, figures, title, f"validation bits/char after {a.steps} steps", 1


def detector(a, runs):
    settings = {"model.kind": "detector", "data.kind": "yolo", "data.path": os.path.join(os.path.abspath(a.shapes), "data.yaml"),
                "data.image_size": a.size, "data.augment": "false", "schedule.kind": "warmup", "schedule.warmup_steps": 100,
                "optimizer.kind": "sgd", "optimizer.lr": 0.01, "optimizer.momentum": 0.937, "optimizer.weight_decay": 0.0005,
                "guard.clipper": "global-norm", "guard.max_norm": 10, "training.batch_size": 16, "training.epochs": a.epochs,
                "runs_directory": runs, "seed": 0}
    twin = [sys.executable, os.path.join(HERE, "detector_twin.py"), "--data", a.shapes, "--size", str(a.size),
            "--epochs", str(a.epochs), "--batch", "16", "--lr", "0.01", "--momentum", "0.937", "--weight-decay", "0.0005",
            "--warmup", "100", "--max-norm", "10", "--seed", "0"]

    def figures(evals, out):
        if len(evals) < a.epochs:
            sys.exit(f"gradguard's run evaluated {len(evals)} times in {a.epochs} epochs")
        return evals[-1]["metrics"]["map50"], out["map50"][-1]

    title = (f"detector on {a.shapes} ({a.size} px, no augmentation); {a.epochs} epochs, batch 16, SGD 0.01 momentum 0.937, "
             f"warm-up 100 steps, global-norm clip 10")
    return settings, twin, figures, title, f"validation mAP@0.5 after {a.epochs} epochs", a.epochs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--text")
    p.add_argument("--shapes")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--size", type=int, default=256)
    a = p.parse_args()
    if (a.text is None) == (a.shapes is None):
        sys.exit("give --text FILE or --shapes DIR")
    if not os.path.exists(GRADGUARD):
        sys.exit(f"{GRADGUARD} is missing: swift build -c release --product gradguard")
    runs = tempfile.mkdtemp(prefix="gradguard-e2e-")
    settings, twin_cmd, figures, title, metric, per = (charlm if a.text else detector)(a, runs)
    gg_cmd = [GRADGUARD, "train", "--name", "e2e", "--overwrite", "--quiet"]
    for k, v in settings.items():
        gg_cmd += ["--set", f"{k}={v}"]
    gg_wall, gg_metric, pt_wall, pt_metric = [], [], [], []
    for _ in range(a.rounds):
        t = time.time()
        out = json.loads(subprocess.run(twin_cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)
        pt_wall.append((time.time() - t) / per)
        t = time.time()
        subprocess.run(gg_cmd, check=True, stdout=subprocess.DEVNULL)
        gg_wall.append((time.time() - t) / per)
        evals = [json.loads(l) for l in open(os.path.join(runs, "e2e", "metrics.jsonl")) if '"kind":"eval"' in l]
        ours, theirs = figures(evals, out)
        gg_metric.append(ours)
        pt_metric.append(theirs)
    med = statistics.median
    print(f"CPU: {cpu_model()}")
    print(f"{title}; {a.rounds} alternating rounds, medians; torch {out['torch']}, {out['threads']} threads")
    print("| figure | GradGuard | PyTorch | ratio |")
    print("|---|---|---|---|")
    unit = "wall time, process start to exit (s)" if per == 1 else "wall time per epoch, process start to exit / epochs (s)"
    print(f"| {unit} | {med(gg_wall):.2f} | {med(pt_wall):.2f} | {med(gg_wall) / med(pt_wall):.2f} |")
    print(f"| {metric} | {med(gg_metric):.4f} | {med(pt_metric):.4f} | {med(gg_metric) / med(pt_metric):.3f} |")
    print(f"GradGuard wall {[round(x, 2) for x in gg_wall]}, {[round(x, 4) for x in gg_metric]}; "
          f"PyTorch wall {[round(x, 2) for x in pt_wall]}, {[round(x, 4) for x in pt_metric]}")


if __name__ == "__main__":
    main()
