#!/usr/bin/env python3
"""Writes Tests/Fixtures/detector_loss.safetensors: Ultralytics' own YOLOv8 loss
(`ultralytics.utils.loss.v8DetectionLoss`, with its TaskAlignedAssigner, CIoU box loss and DFL)
on fixed head outputs and targets, with the gradient of its total with respect to every output,
for the Swift test of `YOLOLoss` with the decoupled head.

Run by hand (torch, ultralytics and safetensors from PyPI):
    python3 -m pip install ultralytics safetensors
    YOLO_OFFLINE=1 python3 Scripts/make_detector_loss_fixture.py
"""
import os
from types import SimpleNamespace

import torch
from safetensors.torch import save_file
from ultralytics.utils.loss import v8DetectionLoss

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "detector_loss.safetensors")
torch.manual_seed(2024)

NC, REG_MAX, IMGSZ, STRIDES = 3, 16, 64, (8, 16, 32)
B = 2


class Stub(torch.nn.Module):
    """What v8DetectionLoss reads of a model: its hyper-parameters and its Detect layer."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.args = SimpleNamespace(box=7.5, cls=0.5, dfl=1.5)
        detect = SimpleNamespace(stride=torch.tensor(STRIDES, dtype=torch.float32), nc=NC, reg_max=REG_MAX)
        self.model = [detect]


# Head outputs as the Detect layer gives them in training: per scale [B, 4·16 + nc, H, W], the
# box-distribution logits first. Class logits near the head's initial bias (log(5/nc/(640/s)²)
# is about −9 at 640; here a little above, so the assigner sees varied scores).
feats = []
for s in STRIDES:
    n = IMGSZ // s
    box = torch.randn(B, 4 * REG_MAX, n, n) * 1.5
    cls = torch.randn(B, NC, n, n) - 3
    feats.append(torch.cat([box, cls], 1).requires_grad_(True))

# Targets: image 0 has three boxes (a small one, a mid one, a large one), image 1 one box.
# Pixels, centre x, centre y, width, height.
boxes = [
    (0, 0, 14.0, 18.0, 10.0, 12.0),
    (0, 2, 40.0, 36.0, 22.0, 26.0),
    (0, 1, 30.0, 34.0, 50.0, 44.0),
    (1, 1, 24.0, 40.0, 30.0, 20.0),
]
batch = {
    "batch_idx": torch.tensor([b[0] for b in boxes], dtype=torch.float32),
    "cls": torch.tensor([[b[1]] for b in boxes], dtype=torch.float32),
    "bboxes": torch.tensor([[b[2] / IMGSZ, b[3] / IMGSZ, b[4] / IMGSZ, b[5] / IMGSZ] for b in boxes]),
}
no = 4 * REG_MAX + NC
flat = torch.cat([f.view(B, no, -1) for f in feats], 2)
preds = {"boxes": flat[:, : 4 * REG_MAX], "scores": flat[:, 4 * REG_MAX :], "feats": feats}
loss, _ = v8DetectionLoss(Stub())(preds, batch)  # [box, cls, dfl], each × batch size
loss.sum().backward()

# The Swift side's targets: [B, M, 5] (class, cx, cy, w, h in pixels; class −1 pads).
m = max(sum(1 for b in boxes if b[0] == i) for i in range(B))
targets = torch.full((B, m, 5), -1.0)
for i in range(B):
    for j, b in enumerate([b for b in boxes if b[0] == i]):
        targets[i, j] = torch.tensor(b[1:])
t = {"targets": targets, "box": loss[0:1], "cls": loss[1:2], "dfl": loss[2:3]}
for k, f in enumerate(feats):
    t[f"out{k}"] = f.detach()
    t[f"grad{k}"] = f.grad
save_file({k: v.detach().contiguous() for k, v in t.items()}, OUT)
print(f"detector_loss.safetensors: box {loss[0]:.6f} cls {loss[1]:.6f} dfl {loss[2]:.6f}")
