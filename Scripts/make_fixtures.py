#!/usr/bin/env python3
"""Writes the PyTorch reference fixtures that the Swift tests compare against.

Run by hand (needs torch and safetensors from PyPI):
    python3 -m pip install torch safetensors
    python3 Scripts/make_fixtures.py
Every file lands in Tests/Fixtures/ and is small enough to commit. Each tensor name says
what it is; "up" is the upstream gradient used for backward (loss = sum(out * up)).
"""
import os
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures")
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(1234)


def save(name, tensors):
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    save_file(tensors, os.path.join(OUT, name))
    print(f"{name}: {len(tensors)} tensors")


def backward_with(out, up, *inputs):
    grads = torch.autograd.grad(out, inputs, grad_outputs=up)
    return grads


# ---------------------------------------------------------------- layers and activations
t = {}
lin = nn.Linear(5, 3)
x = torch.randn(4, 5, requires_grad=True)
y = lin(x)
up = torch.randn_like(y)
gx, gw, gb = backward_with(y, up, x, lin.weight, lin.bias)
t |= {"linear.x": x, "linear.weight": lin.weight, "linear.bias": lin.bias, "linear.out": y,
      "linear.up": up, "linear.grad_x": gx, "linear.grad_weight": gw, "linear.grad_bias": gb}

emb = nn.Embedding(10, 4, padding_idx=2)
ids = torch.tensor([[1, 2, 3], [3, 9, 2]])
y = emb(ids)
up = torch.randn_like(y)
(gw,) = backward_with(y, up, emb.weight)
t |= {"embedding.weight": emb.weight, "embedding.ids": ids.float(), "embedding.out": y,
      "embedding.up": up, "embedding.grad_weight": gw}

xa = torch.tensor([[-3.0, -1.5, -0.3, 0.0, 0.2, 1.0, 4.0],
                   [-20.0, -0.01, 0.5, 2.5, -7.0, 9.0, 0.7],
                   [30.0, -30.0, 0.05, -0.05, 1e-4, -2.0, 6.0]])
acts = {
    "relu": F.relu, "leaky_relu": lambda v: F.leaky_relu(v, 0.1), "tanh": torch.tanh,
    "sigmoid": torch.sigmoid, "silu": F.silu, "gelu": F.gelu,
    "gelu_tanh": lambda v: F.gelu(v, approximate="tanh"), "exp": lambda v: torch.exp(v / 4),
    "softmax1": lambda v: F.softmax(v, dim=1), "softmax0": lambda v: F.softmax(v, dim=0),
    "log_softmax1": lambda v: F.log_softmax(v, dim=1), "log_softmax0": lambda v: F.log_softmax(v, dim=0),
}
t["act.x"] = xa
up = torch.randn_like(xa)
t["act.up"] = up
for name, f in acts.items():
    xr = xa.clone().requires_grad_(True)
    y = f(xr)
    (g,) = backward_with(y, up, xr)
    t[f"act.{name}.out"] = y
    t[f"act.{name}.grad"] = g
save("layers.safetensors", t)

# ---------------------------------------------------------------- losses
t = {}
pred = torch.randn(4, 3, requires_grad=True)
target = torch.randn(4, 3)
t |= {"mse.pred": pred, "mse.target": target}
for red in ["mean", "sum"]:
    y = F.mse_loss(pred, target, reduction=red)
    (g,) = torch.autograd.grad(y, pred)
    t[f"mse.{red}.out"] = y
    t[f"mse.{red}.grad"] = g

logits = torch.randn(6, 5, requires_grad=True)
labels = torch.tensor([0, 4, 2, -100, 1, 4])
t |= {"ce.logits": logits, "ce.targets": labels.float()}
for red in ["mean", "sum", "none"]:
    y = F.cross_entropy(logits, labels, ignore_index=-100, reduction=red)
    up = torch.ones_like(y) if red != "none" else torch.randn_like(y)
    (g,) = backward_with(y, up, logits)
    t[f"ce.{red}.out"] = y
    t[f"ce.{red}.up"] = up
    t[f"ce.{red}.grad"] = g

bl = torch.tensor([[-3.0, 0.0, 0.5, 12.0], [40.0, -40.0, 1.5, -0.2]], requires_grad=True)
by = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.3, 1.0]])
pw = torch.tensor([1.0, 2.0, 0.5, 3.0])
t |= {"bce.logits": bl, "bce.targets": by, "bce.pos_weight": pw}
for red in ["mean", "sum"]:
    for tag, w in [("plain", None), ("pw", pw)]:
        y = F.binary_cross_entropy_with_logits(bl, by, pos_weight=w, reduction=red)
        (g,) = torch.autograd.grad(y, bl)
        t[f"bce.{tag}.{red}.out"] = y
        t[f"bce.{tag}.{red}.grad"] = g
save("losses.safetensors", t)

# ---------------------------------------------------------------- optimizers
t = {}
p0 = torch.randn(6)
p1 = torch.randn(3, 2)
steps = 6
grads0 = [torch.randn(6) for _ in range(steps)]
grads1 = [torch.randn(3, 2) for _ in range(steps)]
t["optim.p0"] = p0
t["optim.p1"] = p1
for s in range(steps):
    t[f"optim.grad0.{s}"] = grads0[s]
    t[f"optim.grad1.{s}"] = grads1[s]
configs = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01),
    "sgd_nesterov": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.02),
    "adam": lambda ps: torch.optim.Adam(ps, lr=0.01),
    "adam_wd_amsgrad": lambda ps: torch.optim.Adam(ps, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=True),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.05),
    "adamw_amsgrad": lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.05, amsgrad=True),
    # Two groups: per-group learning rate and weight decay.
    "sgd_groups": lambda ps: torch.optim.SGD([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.01, "weight_decay": 0.5}],
                                             lr=0.1, momentum=0.9),
    "adamw_groups": lambda ps: torch.optim.AdamW([{"params": [ps[0]], "weight_decay": 0.0}, {"params": [ps[1]], "lr": 0.003}],
                                                 lr=0.01, weight_decay=0.1),
}
for name, make in configs.items():
    a = p0.clone().requires_grad_(True)
    b = p1.clone().requires_grad_(True)
    opt = make([a, b])
    for s in range(steps):
        a.grad = grads0[s].clone()
        b.grad = grads1[s].clone()
        opt.step()
        t[f"{name}.p0.{s}"] = a.detach().clone()
        t[f"{name}.p1.{s}"] = b.detach().clone()
save("optim.safetensors", t)

# ---------------------------------------------------------------- clipping
t = {}
gs = [torch.randn(5) * 3, torch.randn(2, 3), torch.randn(4) * 0.1]
for i, g in enumerate(gs):
    t[f"clip.grad.{i}"] = g
for tag, p in [("2", 2.0), ("1", 1.0), ("inf", float("inf")), ("3", 3.0)]:
    ps = [nn.Parameter(torch.zeros_like(g)) for g in gs]
    for q, g in zip(ps, gs):
        q.grad = g.clone()
    total = nn.utils.clip_grad_norm_(ps, max_norm=1.0, norm_type=p)
    t[f"clip.norm{tag}.total"] = total
    for i, q in enumerate(ps):
        t[f"clip.norm{tag}.clipped.{i}"] = q.grad
# A max norm above the total: coefficient clamps to 1, gradients unchanged.
ps = [nn.Parameter(torch.zeros_like(g)) for g in gs]
for q, g in zip(ps, gs):
    q.grad = g.clone()
t["clip.large.total"] = nn.utils.clip_grad_norm_(ps, max_norm=1e4)
for i, q in enumerate(ps):
    t[f"clip.large.clipped.{i}"] = q.grad
ps = [nn.Parameter(torch.zeros_like(g)) for g in gs]
for q, g in zip(ps, gs):
    q.grad = g.clone()
nn.utils.clip_grad_value_(ps, 0.5)
for i, q in enumerate(ps):
    t[f"clip.value.clipped.{i}"] = q.grad
save("clip.safetensors", t)

# ---------------------------------------------------------------- a small MLP end to end
mlp = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
save_file({k: v.contiguous() for k, v in mlp.state_dict().items()}, os.path.join(OUT, "mlp_state.safetensors"))
print("mlp_state.safetensors: PyTorch state_dict")
t = {}
xb = torch.randn(10, 6)
yb = torch.randint(0, 3, (10,))
t |= {"mlp.x": xb, "mlp.y": yb.float()}
opt = torch.optim.SGD(mlp.parameters(), lr=0.1, momentum=0.9)
for s in range(3):
    opt.zero_grad()
    logits = mlp(xb)
    loss = F.cross_entropy(logits, yb)
    loss.backward()
    total = nn.utils.clip_grad_norm_(mlp.parameters(), 0.5)
    t[f"mlp.step{s}.logits"] = logits
    t[f"mlp.step{s}.loss"] = loss
    t[f"mlp.step{s}.total_norm"] = total
    for k, p in mlp.named_parameters():
        t[f"mlp.step{s}.grad.{k}"] = p.grad  # after clipping
    opt.step()
for k, v in mlp.state_dict().items():
    t[f"mlp.final.{k}"] = v
save("mlp_train.safetensors", t)

# ---------------------------------------------------------------- dtypes written by PyTorch
vals = torch.tensor([[0.5, -1.25, 3.0], [1e-3, 65504.0, -2.0]])
save_file({"f16": vals.half(), "bf16": vals.bfloat16(), "f64": vals.double(), "f32": vals,
           "i64": torch.tensor([1, -2, 300000]), "scalar": torch.tensor(7.5)},
          os.path.join(OUT, "dtypes.safetensors"), metadata={"source": "make_fixtures.py"})
print("dtypes.safetensors: F16/BF16/F64/F32/I64")
print("torch", torch.__version__)
