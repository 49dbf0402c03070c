#!/usr/bin/env python3
"""Trains Ultralytics' YOLOv8n from scratch on a data.yaml (as `gradguard data shapes` writes)
and prints its wall time and validation mAP as JSON: the other side of the detector
comparison in BENCHMARKS.md.

    python3 -m pip install ultralytics
    YOLO_OFFLINE=1 python3 Benchmarks/ultralytics_detector.py DATA.yaml [EPOCHS] [IMGSZ] [BATCH]

Settings as the comparison states them: SGD lr 0.01, momentum 0.937, weight decay 5e-4,
batch 16, 2 threads, no data-loader workers, no plots; everything else Ultralytics' defaults
(warm-up 3 epochs, linear decay to 1 %, EMA, mosaic closed for the last 10 epochs, HSV,
flips, translate 0.1, scale 0.5). Wall time is process start to the end of training (which ends with a validation of the
best epoch's weights); the mAP printed is that of a second validation of those weights.
"""
import json
import os
import sys
import tempfile
import time

START = time.time()
os.environ.setdefault("YOLO_OFFLINE", "1")
import torch  # noqa: E402

torch.set_num_threads(2)
from ultralytics import YOLO, __version__  # noqa: E402

data = os.path.abspath(sys.argv[1])
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 30
imgsz = int(sys.argv[3]) if len(sys.argv) > 3 else 128
batch = int(sys.argv[4]) if len(sys.argv) > 4 else 16
# Ultralytics resolves `path: .` against its datasets folder; give it the file's own folder.
with open(data) as f:
    text = f.read().replace("path: .", "path: " + os.path.dirname(data))
resolved = os.path.join(tempfile.mkdtemp(), "data.yaml")
with open(resolved, "w") as f:
    f.write(text)

model = YOLO("yolov8n.yaml")
project = tempfile.mkdtemp()
model.train(data=resolved, epochs=epochs, imgsz=imgsz, batch=batch, optimizer="SGD", lr0=0.01, momentum=0.937,
            weight_decay=0.0005, workers=0, plots=False, device="cpu", project=project, name="run", verbose=False,
            amp=False, seed=0, deterministic=False)
wall = time.time() - START  # training ends with a validation of its best weights
metrics = model.val(data=resolved, imgsz=imgsz, batch=batch, device="cpu", plots=False, verbose=False)
print(json.dumps({
    "ultralytics": __version__, "torch": torch.__version__, "epochs": epochs, "imgsz": imgsz,
    "wall_s": round(wall, 1), "map50": round(float(metrics.box.map50), 4),
    "map50_95": round(float(metrics.box.map), 4),
    "parameters": sum(p.numel() for p in model.model.parameters())}))
