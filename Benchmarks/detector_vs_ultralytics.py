#!/usr/bin/env python3
"""GradGuard's detector with its defaults against Ultralytics' YOLOv8n from scratch, on the
same data, epochs and batch, in one sitting: the table of BENCHMARKS.md and the README.

    swift build -c release --product gradguard
    python3 -m pip install ultralytics
    python3 Benchmarks/detector_vs_ultralytics.py [EPOCHS] [--out DIR]

Writes two datasets with `gradguard data shapes` — the shapes data of the issue (256 + 64
images of 128 px, 1–4 objects of 12–40 % of the side, overlap ≤ 0.1) and a cluttered one
(1–8 objects of 6–30 %, overlap ≤ 0.3, another seed) — then trains each side on each,
alternating, and prints wall time (process start to the end of training), mAP@0.5 and
mAP@0.5:0.95 on the validation images. GradGuard runs `gradguard train --set
model.kind=detector --set data.path=… --set training.epochs=E` and nothing else;
Ultralytics runs Benchmarks/ultralytics_detector.py (SGD lr 0.01, momentum 0.937, weight
decay 5e-4, batch 16, 2 threads).
"""
import json
import os
import subprocess
import sys
import time

from machine import cpu_model

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GRADGUARD = os.path.join(ROOT, ".build", "release", "gradguard")
args = [a for a in sys.argv[1:] if not a.startswith("--")]
epochs = int(args[0]) if args else 30
out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else "/tmp/gradguard-detector-comparison"
os.makedirs(out, exist_ok=True)

DATASETS = {
    "shapes": [],
    "clutter": ["--seed", "1", "--max-objects", "8", "--max-overlap", "0.3", "--min-side", "0.06", "--max-side", "0.3"],
}


def gradguard(name, data):
    start = time.time()
    subprocess.run([GRADGUARD, "train", "--name", name, "--overwrite", "--quiet", "--set", "model.kind=detector",
                    "--set", f"data.path={data}", "--set", f"training.epochs={epochs}"], cwd=out, check=True)
    wall = time.time() - start
    rows = [json.loads(line) for line in open(os.path.join(out, "runs", name, "metrics.jsonl"))]
    last = [r for r in rows if r.get("kind") == "eval"][-1]["metrics"]
    return {"wall_s": round(wall, 1), "map50": round(last["map50"], 4), "map50_95": round(last["map50_95"], 4)}


def ultralytics(data):
    env = dict(os.environ, YOLO_OFFLINE="1")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "ultralytics_detector.py"), data, str(epochs)],
                          cwd=out, env=env, check=True, capture_output=True, text=True)
    line = [l for l in proc.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)


results = {}
for name, options in DATASETS.items():
    folder = os.path.join(out, name)
    subprocess.run([GRADGUARD, "data", "shapes", "--out", folder, "--overwrite", *options], check=True, capture_output=True)
    data = os.path.join(folder, "data.yaml")
    results[name] = {"ultralytics": ultralytics(data), "gradguard": gradguard(f"defaults-{name}", data)}
    print(name, json.dumps(results[name]), flush=True)

version = next(iter(results.values()))["ultralytics"]["ultralytics"]
print(f"\nCPU: {cpu_model()}; {epochs} epochs, batch 16, 2 threads; Ultralytics {version}")
print("| data | detector | wall time (s) | mAP@0.5 | mAP@0.5:0.95 |")
print("|---|---|---|---|---|")
for name, r in results.items():
    u, g = r["ultralytics"], r["gradguard"]
    print(f"| {name} | Ultralytics YOLOv8n from scratch | {u['wall_s']} | {u['map50']:.3f} | {u['map50_95']:.3f} |")
    print(f"| {name} | GradGuard detector, defaults | {g['wall_s']} | {g['map50']:.3f} | {g['map50_95']:.3f} |")
