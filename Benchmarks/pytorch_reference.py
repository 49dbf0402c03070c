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
