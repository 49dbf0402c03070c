#!/usr/bin/env python3
"""Writes Tests/Fixtures/curvature.safetensors: the top Hessian eigenvalue of small models,
for the curvature probe's tests (run by hand: python3 -m pip install torch safetensors).

For each model the loss Hessian over all parameters is formed exactly (double backward via
torch.autograd.functional.hessian, in float64 from the float32 weights) and λ_max taken from
its eigendecomposition (torch.linalg.eigvalsh). Also written: one exact Hessian-vector
product, and for Adam the preconditioned λ_max of P^(-1/2) H P^(-1/2) with
P = (1 - β1^t)(sqrt(v_t / (1 - β2^t)) + eps), v_t = β2·v + (1 - β2)·g² the second moment the
coming step t uses (after three Adam steps at lr 1e-2).
"""
import os
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures")
torch.manual_seed(2027)
t = {}


def flat_hessian(model, loss_of):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().double().reshape(-1) for _, p in model.named_parameters()])

    def f(flat):
        params, offset = {}, 0
        for n, s in zip(names, shapes):
            k = s.numel()
            params[n] = flat[offset:offset + k].reshape(s)
            offset += k
        return loss_of(params)

    h = torch.autograd.functional.hessian(f, theta)
    g = torch.autograd.functional.jacobian(f, theta)
    return h, g


def record(prefix, model, h, g, extra):
    for n, p in model.named_parameters():
        t[f"{prefix}.param.{n}"] = p.detach().float().clone()
    for k, v in extra.items():
        t[f"{prefix}.{k}"] = v.float().clone()
    ev = torch.linalg.eigvalsh(h)
    v = torch.randn(h.shape[0], dtype=torch.float64)
    t[f"{prefix}.lambda_max"] = ev.max().reshape(1).float()
    t[f"{prefix}.lambda_min"] = ev.min().reshape(1).float()
    t[f"{prefix}.v"] = v.float()
    t[f"{prefix}.hv"] = (h @ v.float().double()).float()
    print(prefix, "n", h.shape[0], "λ_max", ev.max().item(), "λ_min", ev.min().item())
    return ev


# ---------------------------------------------------------------- MLP: Linear-tanh-Linear, cross-entropy
mlp = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
x = torch.randn(8, 4)
y = torch.randint(0, 3, (8,))
h, g = flat_hessian(mlp, lambda p: F.cross_entropy(functional_call(mlp, p, (x.double(),)), y))
record("mlp", mlp, h, g, {"x": x, "y": y.float()})

# Adam's preconditioned sharpness after three steps.
opt = torch.optim.Adam(mlp.parameters(), lr=1e-2)
for _ in range(3):
    opt.zero_grad()
    F.cross_entropy(mlp(x), y).backward()
    opt.step()
opt.zero_grad()
F.cross_entropy(mlp(x), y).backward()
for i, p in enumerate(mlp.parameters()):
    st = opt.state[p]
    t[f"adam.state.{i}.exp_avg"] = st["exp_avg"].float()
    t[f"adam.state.{i}.exp_avg_sq"] = st["exp_avg_sq"].float()
    t[f"adam.state.{i}.step"] = st["step"].float().reshape(())
h, g = flat_hessian(mlp, lambda p: F.cross_entropy(functional_call(mlp, p, (x.double(),)), y))
b1, b2, eps = 0.9, 0.999, 1e-8
step = opt.state[next(iter(mlp.parameters()))]["step"].item() + 1
v = torch.cat([opt.state[p]["exp_avg_sq"].double().reshape(-1) for p in mlp.parameters()])
grad = torch.cat([p.grad.double().reshape(-1) for p in mlp.parameters()])
v_next = b2 * v + (1 - b2) * grad * grad
P = (1 - b1 ** step) * ((v_next / (1 - b2 ** step)).sqrt() + eps)
s = P.rsqrt()
pre = s[:, None] * h * s[None, :]
for n, p in mlp.named_parameters():
    t[f"adam.param.{n}"] = p.detach().float().clone()
t["adam.lambda_max"] = torch.linalg.eigvalsh(pre).max().reshape(1).float()
t["adam.lambda_max_plain"] = torch.linalg.eigvalsh(h).max().reshape(1).float()
print("adam preconditioned λ_max", t["adam.lambda_max"].item(), "plain", t["adam.lambda_max_plain"].item())


# ---------------------------------------------------------------- 1-layer LSTM on the last step, cross-entropy
class LastStep(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(2, 3, batch_first=True)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


net = LastStep()
xs = torch.randn(4, 5, 2)
ys = torch.randint(0, 2, (4,))
h, g = flat_hessian(net, lambda p: F.cross_entropy(functional_call(net, p, (xs.double(),)), ys))
record("lstm", net, h, g, {"x": xs, "y": ys.float()})

save_file({k: v.detach().contiguous() for k, v in t.items()}, os.path.join(OUT, "curvature.safetensors"))
print("curvature.safetensors:", len(t), "tensors")
