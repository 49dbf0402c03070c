#!/usr/bin/env python3
"""PyTorch twin of `gradguard train --set model.kind=detector --set data.kind=yolo` without
augmentation: the same YOLO-style detector, loss, parameter groups, SGD with Ultralytics'
warm-up, global-norm clipping, per-epoch shuffling and per-epoch mAP on the validation
images, so that wall time per epoch and mAP@0.5 can be compared on the same data.

    python3 Benchmarks/detector_twin.py --data DIR [--size 256] [--epochs 5] [--batch 16]
        [--lr 0.01] [--momentum 0.937] [--weight-decay 0.0005] [--warmup 100] [--max-norm 10]
        [--width 16] [--seed 0]

DIR is what `gradguard data shapes --out DIR --size S` writes (images/{train,val}/*.png,
labels/{train,val}/*.txt with class cx cy w h normalised), read at their own size S =
--size (no letterbox needed). What GradGuard does, mirrored here (see YOLODetector.swift,
YOLOLoss.swift, DetectionMetrics.swift, Workload.training):
- model: Conv-BN(eps 1e-3, momentum 0.03)-SiLU backbone to strides 8 and 16, a top-down and
  bottom-up neck, a 1×1 head per stride (4 box values, objectness, one logit per class),
  PyTorch's default initialisation and YOLOv5's prior biases;
- loss: YOLOv5's assignment (scale by the box's longer side, the centre cell and its two
  nearest neighbours, a cell claimed twice keeps the smaller box), 1 − GIoU, objectness BCE
  against the detached IoU weighted 4 : 1 over the scales, class BCE, Ultralytics' gains;
- optimizer: SGD(momentum, Nesterov off) in three groups — BatchNorm weights without weight
  decay, convolution weights with it, biases without; warm-up over --warmup steps from rate
  0 (biases from 0.1) and momentum 0.8, linearly; clip_grad_norm_(max_norm) every step;
- evaluation after every epoch: σ(objectness)·σ(class) ≥ 0.001, per-class NMS at IoU 0.6
  (at most 300), COCO's 101-point AP at IoU 0.5 and 0.5:0.95.
Prints one JSON object: per-epoch seconds, mAP@0.5 and mAP@0.5:0.95 after each epoch, wall.
"""
import argparse
import glob
import json
import math
import os
import time

T0 = time.time()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402


def load_split(root, split, size):
    images, targets = [], []
    for path in sorted(glob.glob(os.path.join(root, "images", split, "*.png"))):
        img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
        assert img.shape[0] == size and img.shape[1] == size, f"{path} is not {size}×{size}"
        images.append(torch.from_numpy(img).permute(2, 0, 1).contiguous())
        stem = os.path.splitext(os.path.basename(path))[0]
        boxes = []
        label = os.path.join(root, "labels", split, stem + ".txt")
        if os.path.exists(label):
            for line in open(label):
                if line.strip():
                    c, cx, cy, w, h = map(float, line.split())
                    x0, y0 = max(0.0, (cx - w / 2) * size), max(0.0, (cy - h / 2) * size)
                    x1, y1 = min(float(size), (cx + w / 2) * size), min(float(size), (cy + h / 2) * size)
                    if x1 - x0 >= 2 and y1 - y0 >= 2:
                        boxes.append((int(c), (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0))
        targets.append(boxes)
    return torch.stack(images), targets


class ConvBNSiLU(torch.nn.Module):
    def __init__(self, i, o, k=3, s=1):
        super().__init__()
        self.conv = torch.nn.Conv2d(i, o, k, s, k // 2, bias=False)
        self.bn = torch.nn.BatchNorm2d(o, eps=1e-3, momentum=0.03)

    def forward(self, x):
        return F.silu(self.bn(self.conv(x)))


class Detector(torch.nn.Module):
    def __init__(self, classes, w, size):
        super().__init__()
        self.classes, self.strides = classes, [8, 16]
        self.backbone = torch.nn.ModuleList([ConvBNSiLU(3, w, s=2), ConvBNSiLU(w, 2 * w, s=2), ConvBNSiLU(2 * w, 2 * w),
                                             ConvBNSiLU(2 * w, 4 * w, s=2), ConvBNSiLU(4 * w, 4 * w),
                                             ConvBNSiLU(4 * w, 8 * w, s=2), ConvBNSiLU(8 * w, 8 * w)])
        self.lateral = ConvBNSiLU(8 * w, 4 * w, k=1)
        self.fuse3 = ConvBNSiLU(8 * w, 4 * w)
        self.down = ConvBNSiLU(4 * w, 4 * w, s=2)
        self.fuse4 = ConvBNSiLU(8 * w, 8 * w)
        self.heads = torch.nn.ModuleList([torch.nn.Conv2d(4 * w, 5 + classes, 1), torch.nn.Conv2d(8 * w, 5 + classes, 1)])
        with torch.no_grad():
            for head, s in zip(self.heads, self.strides):
                head.bias[4] = math.log(8 / (size / s) ** 2)
                head.bias[5:] = math.log(0.6 / (classes - 0.99))

    def forward(self, x):
        h = x
        for i, layer in enumerate(self.backbone):
            h = layer(h)
            if i == 4:
                p3 = h
        l4 = self.lateral(h)
        n3 = self.fuse3(torch.cat([F.interpolate(l4, scale_factor=2, mode="nearest"), p3], 1))
        n4 = self.fuse4(torch.cat([self.down(n3), l4], 1))
        return [self.heads[0](n3), self.heads[1](n4)]

    def groups(self, weight_decay):
        norms, decayed, biases = [], [], []
        for name, p in self.named_parameters():
            (biases if name.endswith(".bias") else norms if ".bn." in name else decayed).append(p)
        return [{"params": norms, "weight_decay": 0.0}, {"params": decayed, "weight_decay": weight_decay},
                {"params": biases, "weight_decay": 0.0}]


def giou(a, b):
    iw = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    ih = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    inter = iw * ih
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter + 1e-7
    enclosing = (torch.maximum(a[:, 2], b[:, 2]) - torch.minimum(a[:, 0], b[:, 0])) * \
        (torch.maximum(a[:, 3], b[:, 3]) - torch.minimum(a[:, 1], b[:, 1])) + 1e-7
    return inter / union - (enclosing - union) / enclosing


def yolo_loss(outputs, targets, classes, size, strides=(8, 16), balance=(4.0, 1.0)):
    batch = outputs[0].shape[0]
    layers = len(outputs)
    g_box, g_obj, g_cls = 0.05 * 3 / layers, 1.0 * (size / 640) ** 2 * 3 / layers, 0.5 * classes / 80 * 3 / layers
    box_loss = obj_loss = cls_loss = outputs[0].new_zeros(())
    for k, (out, s) in enumerate(zip(outputs, strides)):
        h, w = out.shape[2], out.shape[3]
        flat = out.permute(0, 2, 3, 1).reshape(batch * h * w, 5 + classes)
        owner = {}
        for b, boxes in enumerate(targets):
            for cls, cx, cy, bw, bh in boxes:
                side = max(bw, bh)
                wanted = side <= 64 if k == 0 else (side > 32 if k == layers - 1 else 32 < side <= 8 * s)
                if not wanted:
                    continue
                gx, gy = cx / s, cy / s
                ix, iy = min(w - 1, int(gx)), min(h - 1, int(gy))
                cells = [(ix, iy), (ix - 1 if gx - ix < 0.5 else ix + 1, iy), (ix, iy - 1 if gy - iy < 0.5 else iy + 1)]
                area = bw * bh
                corners = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
                for x, y in cells:
                    if 0 <= x < w and 0 <= y < h:
                        cell = (b * h + y) * w + x
                        if cell in owner and owner[cell][2] <= area:
                            continue
                        owner[cell] = (corners, cls, area)
        obj_target = torch.zeros(batch * h * w)
        if owner:
            cells = sorted(owner)
            idx = torch.tensor(cells)
            picked = flat[idx]
            grid = torch.tensor([[c % w, (c // w) % h] for c in cells], dtype=torch.float32)
            tbox = torch.tensor([owner[c][0] for c in cells], dtype=torch.float32)
            onehot = torch.zeros(len(cells), classes)
            onehot[torch.arange(len(cells)), torch.tensor([owner[c][1] for c in cells])] = 1
            xy = (picked[:, 0:2].sigmoid() * 2 - 0.5 + grid) * s
            wh = (picked[:, 2:4].sigmoid() * 2) ** 2 * (4 * s)
            overlap = giou(torch.cat([xy - wh * 0.5, xy + wh * 0.5], 1), tbox)
            box_loss = box_loss + (1 - overlap).mean()
            obj_target[idx] = overlap.detach().clamp(min=0)
            if classes > 1:
                cls_loss = cls_loss + F.binary_cross_entropy_with_logits(picked[:, 5:5 + classes], onehot)
        obj_loss = obj_loss + F.binary_cross_entropy_with_logits(flat[:, 4], obj_target) * balance[k]
    return (box_loss * g_box + obj_loss * g_obj + cls_loss * g_cls) * batch


def iou_matrix(a, b):
    iw = (torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    ih = (torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1])).clamp(min=0)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union, torch.zeros_like(union))


def decode(outputs, strides, classes, conf=0.001, iou=0.6, max_det=300):
    """Per image: (boxes [n, 4], scores [n], classes [n]) after per-class greedy NMS."""
    results = []
    for b in range(outputs[0].shape[0]):
        boxes, scores, labels = [], [], []
        for out, s in zip(outputs, strides):
            v = out[b].double()
            h, w = v.shape[1], v.shape[2]
            ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
            sig = v.sigmoid()
            obj = sig[4]
            cx, cy = (xs + 2 * sig[0] - 0.5) * s, (ys + 2 * sig[1] - 0.5) * s
            bw, bh = (2 * sig[2]) ** 2 * 4 * s, (2 * sig[3]) ** 2 * 4 * s
            corners = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1).reshape(-1, 4)
            keep_obj = (obj >= conf).reshape(-1)
            for c in range(classes):
                score = (obj * sig[5 + c]).reshape(-1)
                m = keep_obj & (score >= conf)
                boxes.append(corners[m]); scores.append(score[m]); labels.append(torch.full((int(m.sum()),), c))
        boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
        order = torch.argsort(-scores, stable=True)
        boxes, scores, labels = boxes[order], scores[order], labels[order]
        kept = []
        suppressed = torch.zeros(len(scores), dtype=torch.bool)
        i = 0
        while i < len(scores) and len(kept) < max_det:
            kept.append(i)
            suppressed |= (iou_matrix(boxes[i:i + 1], boxes)[0] > iou) & (labels == labels[i])
            suppressed[i] = True
            free = (~suppressed[i:]).nonzero()
            i = i + int(free[0]) if len(free) else len(scores)
        k = torch.tensor(kept, dtype=torch.long)
        results.append((boxes[k], scores[k], labels[k]))
    return results


def average_precision(preds, truths, c, threshold):
    total = sum(sum(1 for t in ts if t[0] == c) for ts in truths)
    if total == 0:
        return None
    scored = []
    for image, (boxes, scores, labels) in enumerate(preds):
        gts = [t for t in truths[image] if t[0] == c]
        gt = torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2] for _, cx, cy, w, h in gts], dtype=torch.float64)
        mine = (labels == c).nonzero().flatten().tolist()   # already by descending score
        ious = iou_matrix(boxes[mine], gt) if gts and mine else None
        matched = [False] * len(gts)
        for r, i in enumerate(mine):
            best, best_iou = -1, min(threshold, 1 - 1e-10)
            for j in range(len(gts)):
                if not matched[j] and ious[r, j] >= best_iou:
                    best, best_iou = j, float(ious[r, j])
            if best >= 0:
                matched[best] = True
            scored.append((float(scores[i]), best >= 0, len(scored)))
    scored.sort(key=lambda x: (-x[0], x[2]))
    tp = np.cumsum([1.0 if s[1] else 0.0 for s in scored])
    fp = np.cumsum([0.0 if s[1] else 1.0 for s in scored])
    recall = tp / total
    precision = tp / np.maximum(tp + fp, 1e-12)
    precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    total_p = 0.0
    for r in np.linspace(0, 1, 101):
        i = np.searchsorted(recall, r - 1e-12, side="left")
        if i < len(recall):
            total_p += precision[i]
    return total_p / 101


def evaluate(model, images, truths, classes, batch=32):
    model.eval()
    preds = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            preds += decode(model(images[s:s + batch]), model.strides, classes)
    model.train()
    thresholds = [0.5 + 0.05 * i for i in range(10)]
    ap50, ap_all = [], []
    for c in range(classes):
        aps = [average_precision(preds, truths, c, t) for t in thresholds]
        if aps[0] is not None:
            ap50.append(aps[0])
            ap_all.append(sum(aps) / len(aps))
    return (sum(ap50) / len(ap50) if ap50 else 0.0), (sum(ap_all) / len(ap_all) if ap_all else 0.0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.937)
    p.add_argument("--weight-decay", type=float, default=0.0005)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--max-norm", type=float, default=10.0)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    names = [l.split(":", 1)[1].strip() for l in open(os.path.join(a.data, "data.yaml")) if l.startswith("  ") and ":" in l]
    classes = len(names)
    train_x, train_t = load_split(a.data, "train", a.size)
    val_x, val_t = load_split(a.data, "val", a.size)
    model = Detector(classes, a.width, a.size)
    opt = torch.optim.SGD(model.groups(a.weight_decay), lr=a.lr, momentum=a.momentum)
    g = torch.Generator().manual_seed(a.seed)
    step, epoch_seconds, map50, map_all = 0, [], [], []
    for _ in range(a.epochs):
        t = time.time()
        order = torch.randperm(len(train_x), generator=g).tolist()
        for start in range(0, len(order), a.batch):
            rows = order[start:start + a.batch]
            # Ultralytics' warm-up: rates from 0 (biases from 0.1), momentum from 0.8, linearly.
            if step < a.warmup:
                f = step / a.warmup
                for i, group in enumerate(opt.param_groups):
                    group["lr"] = (0.1 if i == 2 else 0.0) + (a.lr - (0.1 if i == 2 else 0.0)) * f
                    group["momentum"] = 0.8 + (a.momentum - 0.8) * f
            elif step == a.warmup:
                for group in opt.param_groups:
                    group["lr"], group["momentum"] = a.lr, a.momentum
            opt.zero_grad()
            loss = yolo_loss(model(train_x[rows]), [train_t[r] for r in rows], classes, a.size)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.max_norm)
            opt.step()
            step += 1
        m50, mall = evaluate(model, val_x, val_t, classes)
        epoch_seconds.append(round(time.time() - t, 3))
        map50.append(round(m50, 4))
        map_all.append(round(mall, 4))
    print(json.dumps({"steps": step, "epoch_seconds": epoch_seconds, "map50": map50, "map50_95": map_all,
                      "wall_seconds": round(time.time() - T0, 3), "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
