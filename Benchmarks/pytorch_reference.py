#!/usr/bin/env python3
"""The PyTorch side of the GradGuard benchmarks (CPU, 2 threads), timed like
gradguard-bench: 3 warm-up steps, median of 20. Same workloads, same JSON keys.

    python3 -m pip install torch
    python3 Benchmarks/pytorch_reference.py
"""
import json
import time

import torch
import torch.nn as nn

torch.set_num_threads(2)
torch.manual_seed(0)


def bench(step, n=20, warm=3):
    for _ in range(warm):
        step()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


res = {}


class CharLSTM(nn.Module):
    def __init__(self, V=65, E=128, H=256):
        super().__init__()
        self.emb = nn.Embedding(V, E)
        self.lstm = nn.LSTM(E, H, batch_first=True)
        self.out = nn.Linear(H, V)

    def forward(self, x):
        h, _ = self.lstm(self.emb(x))
        return self.out(h)


m = CharLSTM()
opt_lstm = torch.optim.Adam(m.parameters(), 1e-3)
xl = torch.randint(0, 65, (32, 64))
yl = torch.randint(0, 65, (32, 64))


def lstm_step():
    opt_lstm.zero_grad()
    loss = nn.functional.cross_entropy(m(xl).reshape(-1, 65), yl.reshape(-1))
    loss.backward()
    nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt_lstm.step()


t = bench(lstm_step)
res["char_lstm_step_ms"] = t * 1e3
res["char_lstm_tokens_per_s"] = 32 * 64 / t


def cbs(i, o, s):
    return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.SiLU())


det = nn.Sequential(cbs(3, 16, 2), cbs(16, 32, 2), cbs(32, 64, 2), cbs(64, 64, 1), cbs(64, 128, 2), cbs(128, 128, 1),
                    nn.Conv2d(128, 3 * (5 + 3), 1))
opt_det = torch.optim.SGD(det.parameters(), 0.01, momentum=0.9)
xi = torch.randn(16, 3, 128, 128)


def det_step():
    opt_det.zero_grad()
    out = det(xi)
    loss = (out ** 2).mean()
    loss.backward()
    nn.utils.clip_grad_norm_(det.parameters(), 10.0)
    opt_det.step()


t = bench(det_step)
res["tiny_det_step_ms"] = t * 1e3
res["tiny_det_images_per_s"] = 16 / t

class YOLO(nn.Module):
    """GradGuard's YOLODetector (classes 3, width 16): backbone to strides 8 and 16, PANet neck, 1×1 heads."""

    def __init__(self, c=3, w=16):
        super().__init__()

        def block(i, o, k=3, s=1):
            return nn.Sequential(nn.Conv2d(i, o, k, s, k // 2, bias=False), nn.BatchNorm2d(o, eps=1e-3, momentum=0.03), nn.SiLU())

        self.backbone = nn.ModuleList([block(3, w, s=2), block(w, 2 * w, s=2), block(2 * w, 2 * w), block(2 * w, 4 * w, s=2),
                                       block(4 * w, 4 * w), block(4 * w, 8 * w, s=2), block(8 * w, 8 * w)])
        self.lateral, self.fuse3 = block(8 * w, 4 * w, k=1), block(8 * w, 4 * w)
        self.down, self.fuse4 = block(4 * w, 4 * w, s=2), block(8 * w, 8 * w)
        self.heads = nn.ModuleList([nn.Conv2d(4 * w, 5 + c, 1), nn.Conv2d(8 * w, 5 + c, 1)])

    def forward(self, x):
        for i, layer in enumerate(self.backbone):
            x = layer(x)
            if i == 4:
                p3 = x
        l4 = self.lateral(x)
        n3 = self.fuse3(torch.cat([nn.functional.interpolate(l4, scale_factor=2, mode="nearest"), p3], 1))
        n4 = self.fuse4(torch.cat([self.down(n3), l4], 1))
        return [self.heads[0](n3), self.heads[1](n4)]


yolo = YOLO()
opt_yolo = torch.optim.SGD(yolo.parameters(), 0.01, momentum=0.937, nesterov=True)


def yolo_step():
    opt_yolo.zero_grad()
    loss = sum((o ** 2).mean() for o in yolo(xi))
    loss.backward()
    nn.utils.clip_grad_norm_(yolo.parameters(), 10.0)
    opt_yolo.step()


res["yolo_step_ms"] = bench(yolo_step) * 1e3

mlp = nn.Sequential(*[l for _ in range(20) for l in (nn.Linear(256, 256), nn.ReLU())], nn.Linear(256, 10))
opt = torch.optim.SGD(mlp.parameters(), 0.01)
xm = torch.randn(128, 256)
ym = torch.randint(0, 10, (128,))


def mlp_step():
    opt.zero_grad()
    loss = nn.functional.cross_entropy(mlp(xm), ym)
    loss.backward()
    nn.utils.clip_grad_norm_(mlp.parameters(), 1.0)
    opt.step()


res["mlp20_step_ms"] = bench(mlp_step) * 1e3

ps = [nn.Parameter(torch.randn(50000)) for _ in range(100)]
for p in ps:
    p.grad = torch.randn_like(p)
res["clip100x50k_ms"] = bench(lambda: nn.utils.clip_grad_norm_(ps, 1.0), n=50) * 1e3

a = torch.randn(1024, 1024)
b = torch.randn(1024, 1024)
t = bench(lambda: torch.mm(a, b), n=10)
res["sgemm1024_gflops"] = 2 * 1024**3 / t / 1e9

print(json.dumps({k: round(v, 3) for k, v in res.items()}, indent=1))
print("torch", torch.__version__, "threads", torch.get_num_threads())
