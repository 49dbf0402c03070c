#!/usr/bin/env python3
"""Writes the PyTorch reference fixtures that the Swift tests compare against.

Run by hand (needs torch and safetensors from PyPI; the health section also jax and optax):
    python3 -m pip install torch safetensors jax optax
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
    "rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=0.01),
    "rmsprop_centered_momentum": lambda ps: torch.optim.RMSprop(ps, lr=0.005, alpha=0.9, eps=1e-6, weight_decay=0.1,
                                                                momentum=0.8, centered=True),
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


# ---------------------------------------------------------------- recurrent layers
torch.manual_seed(2024)
t = {}
nets = {
    "rnn_tanh": nn.RNN(3, 5, num_layers=2, batch_first=True),
    "rnn_relu": nn.RNN(3, 5, num_layers=1, nonlinearity="relu"),
    "lstm": nn.LSTM(3, 5, num_layers=2, batch_first=True),
    "gru": nn.GRU(3, 5, num_layers=2),
}
for name, net in nets.items():
    for k, v in net.state_dict().items():
        t[f"{name}.param.{k}"] = v
    x = torch.randn(2, 4, 3) if net.batch_first else torch.randn(4, 2, 3)
    x.requires_grad_(True)
    h0 = torch.randn(net.num_layers, 2, 5, requires_grad=True)
    t[f"{name}.x"] = x
    t[f"{name}.h0"] = h0
    if name == "lstm":
        c0 = torch.randn(net.num_layers, 2, 5, requires_grad=True)
        t[f"{name}.c0"] = c0
        out, (hn, cn) = net(x, (h0, c0))
        outs, leaves = [out, hn, cn], [x, h0, c0]
        t[f"{name}.cn"] = cn
    else:
        out, hn = net(x, h0)
        outs, leaves = [out, hn], [x, h0]
    t[f"{name}.out"] = out
    t[f"{name}.hn"] = hn
    ups = [torch.randn_like(o) for o in outs]
    for i, u in enumerate(ups):
        t[f"{name}.up{i}"] = u
    params = list(net.parameters())
    grads = torch.autograd.grad(outs, leaves + params, grad_outputs=ups)
    for leaf_name, g in zip(["x", "h0", "c0"][:len(leaves)], grads[:len(leaves)]):
        t[f"{name}.grad.{leaf_name}"] = g
    for (k, _), g in zip(net.named_parameters(), grads[len(leaves):]):
        t[f"{name}.grad.{k}"] = g
cells = {"rnn_cell": nn.RNNCell(3, 4), "lstm_cell": nn.LSTMCell(3, 4), "gru_cell": nn.GRUCell(3, 4)}
for name, cell in cells.items():
    for k, v in cell.state_dict().items():
        t[f"{name}.param.{k}"] = v
    x = torch.randn(2, 3, requires_grad=True)
    h = torch.randn(2, 4, requires_grad=True)
    t[f"{name}.x"] = x
    t[f"{name}.h"] = h
    if name == "lstm_cell":
        c = torch.randn(2, 4, requires_grad=True)
        t[f"{name}.c"] = c
        h1, c1 = cell(x, (h, c))
        outs, leaves = [h1, c1], [x, h, c]
        t[f"{name}.c1"] = c1
    else:
        h1 = cell(x, h)
        outs, leaves = [h1], [x, h]
    t[f"{name}.h1"] = h1
    ups = [torch.randn_like(o) for o in outs]
    for i, u in enumerate(ups):
        t[f"{name}.up{i}"] = u
    grads = torch.autograd.grad(outs, leaves + list(cell.parameters()), grad_outputs=ups)
    for leaf_name, g in zip(["x", "h", "c"][:len(leaves)], grads[:len(leaves)]):
        t[f"{name}.grad.{leaf_name}"] = g
    for (k, _), g in zip(cell.named_parameters(), grads[len(leaves):]):
        t[f"{name}.grad.{k}"] = g
save("recurrent.safetensors", t)

# ---------------------------------------------------------------- convolutions, pools, resampling
torch.manual_seed(2025)
t = {}
conv_cases = {
    "basic": dict(cin=2, cout=3, k=3, stride=1, padding=1, dilation=1, groups=1, bias=True),
    "strided": dict(cin=2, cout=4, k=3, stride=2, padding=1, dilation=1, groups=2, bias=True),
    "dilated": dict(cin=3, cout=2, k=3, stride=1, padding=2, dilation=2, groups=1, bias=False),
    "pointwise": dict(cin=4, cout=3, k=1, stride=1, padding=0, dilation=1, groups=1, bias=True),
    "depthwise": dict(cin=4, cout=4, k=3, stride=2, padding=1, dilation=1, groups=4, bias=True),
}
for name, c in conv_cases.items():
    conv = nn.Conv2d(c["cin"], c["cout"], c["k"], c["stride"], c["padding"], c["dilation"], c["groups"], c["bias"])
    x = torch.randn(2, c["cin"], 7, 6, requires_grad=True)
    y = conv(x)
    up = torch.randn_like(y)
    params = list(conv.parameters())
    grads = torch.autograd.grad(y, [x] + params, grad_outputs=up)
    t |= {f"conv.{name}.x": x, f"conv.{name}.out": y, f"conv.{name}.up": up, f"conv.{name}.grad.x": grads[0]}
    for (k, v), g in zip(conv.named_parameters(), grads[1:]):
        t[f"conv.{name}.param.{k}"] = v
        t[f"conv.{name}.grad.{k}"] = g
xp = torch.randn(2, 3, 7, 9, requires_grad=True)
t["pool.x"] = xp
pools = {
    "max": nn.MaxPool2d(3, 2, 1), "max2": nn.MaxPool2d(2), "avg": nn.AvgPool2d(3, 2, 1),
    "avg_exclude_pad": nn.AvgPool2d(3, 2, 1, count_include_pad=False), "adaptive": nn.AdaptiveAvgPool2d((3, 5)),
    "upsample": nn.Upsample(scale_factor=2, mode="nearest"),
}
for name, m in pools.items():
    y = m(xp)
    up = torch.randn_like(y)
    (g,) = torch.autograd.grad(y, xp, grad_outputs=up)
    t |= {f"pool.{name}.out": y, f"pool.{name}.up": up, f"pool.{name}.grad": g}
save("conv.safetensors", t)

# ---------------------------------------------------------------- normalisation
torch.manual_seed(2026)
t = {}
for name, bn, shape in [("bn2d", nn.BatchNorm2d(3), (4, 3, 5, 2)), ("bn1d", nn.BatchNorm1d(3), (6, 3)),
                        ("bn1d_seq", nn.BatchNorm1d(3, momentum=0.3), (4, 3, 5))]:
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    t[f"{name}.weight"] = bn.weight
    t[f"{name}.bias"] = bn.bias
    x1 = torch.randn(*shape) * 2 + 1
    bn.train()
    y1 = bn(x1)
    x2 = (torch.randn(*shape) * 0.5 - 1).requires_grad_(True)
    y2 = bn(x2)
    up = torch.randn_like(y2)
    gx, gw, gb = torch.autograd.grad(y2, [x2, bn.weight, bn.bias], grad_outputs=up)
    t |= {f"{name}.x1": x1, f"{name}.y1": y1, f"{name}.x2": x2, f"{name}.y2": y2, f"{name}.up": up,
          f"{name}.grad.x": gx, f"{name}.grad.weight": gw, f"{name}.grad.bias": gb,
          f"{name}.running_mean": bn.running_mean, f"{name}.running_var": bn.running_var,
          f"{name}.num_batches_tracked": bn.num_batches_tracked}
    bn.eval()
    x3 = torch.randn(*shape, requires_grad=True)
    y3 = bn(x3)
    (g3,) = torch.autograd.grad(y3, x3, grad_outputs=up)
    t |= {f"{name}.x3": x3, f"{name}.eval_out": y3, f"{name}.eval_grad.x": g3}
ln = nn.LayerNorm([4, 5])
gn = nn.GroupNorm(2, 6)
for name, m, shape in [("layernorm", ln, (3, 4, 5)), ("groupnorm", gn, (2, 6, 3, 2))]:
    with torch.no_grad():
        m.weight.normal_()
        m.bias.normal_()
    x = torch.randn(*shape, requires_grad=True)
    y = m(x)
    up = torch.randn_like(y)
    gx, gw, gb = torch.autograd.grad(y, [x, m.weight, m.bias], grad_outputs=up)
    t |= {f"{name}.weight": m.weight, f"{name}.bias": m.bias, f"{name}.x": x, f"{name}.out": y, f"{name}.up": up,
          f"{name}.grad.x": gx, f"{name}.grad.weight": gw, f"{name}.grad.bias": gb}
save("norm.safetensors", t)

# A small detector-style backbone trained for a few steps in PyTorch, its state_dict
# (with BatchNorm buffers) saved as PyTorch saves it, and its evaluation output.
torch.manual_seed(2027)
cnn = nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1, bias=False), nn.BatchNorm2d(4), nn.SiLU(), nn.MaxPool2d(2),
                    nn.Conv2d(4, 6, 3, 2, 1), nn.BatchNorm2d(6), nn.SiLU(), nn.Upsample(scale_factor=2),
                    nn.Conv2d(6, 2, 1), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
opt = torch.optim.SGD(cnn.parameters(), lr=0.05, momentum=0.9)
for _ in range(3):
    opt.zero_grad()
    (cnn(torch.randn(5, 3, 8, 8)) ** 2).mean().backward()
    opt.step()
cnn.eval()
save_file({k: v.contiguous() for k, v in cnn.state_dict().items()}, os.path.join(OUT, "cnn_state.safetensors"))
xc = torch.randn(2, 3, 8, 8)
save("cnn_eval.safetensors", {"x": xc, "out": cnn(xc)})

# ---------------------------------------------------------------- learning-rate schedules
t = {}
STEPS = 120


def trace(make, groups=((0.1, 0.9), (0.05, 0.8)), metrics=None, optim="sgd"):
    ps = [nn.Parameter(torch.zeros(1)) for _ in groups]
    if optim == "sgd":
        opt = torch.optim.SGD([{"params": [p], "lr": lr, "momentum": m} for p, (lr, m) in zip(ps, groups)], lr=0.1)
    else:
        opt = torch.optim.Adam([{"params": [p], "lr": lr, "betas": (m, 0.999)} for p, (lr, m) in zip(ps, groups)], lr=0.1)
    sched = make(opt)
    lrs, moms = [], []
    for step in range(STEPS):
        lrs.append([g["lr"] for g in opt.param_groups])
        moms.append([g["momentum"] if optim == "sgd" else g["betas"][0] for g in opt.param_groups])
        opt.step()
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[step])
    return torch.tensor(lrs, dtype=torch.float64), torch.tensor(moms, dtype=torch.float64)


S = torch.optim.lr_scheduler
schedules = {
    "constant": lambda o: S.ConstantLR(o, factor=0.25, total_iters=7),
    "step": lambda o: S.StepLR(o, step_size=15, gamma=0.5),
    "multistep": lambda o: S.MultiStepLR(o, milestones=[10, 35, 80], gamma=0.3),
    "exponential": lambda o: S.ExponentialLR(o, gamma=0.97),
    "cosine": lambda o: S.CosineAnnealingLR(o, T_max=50, eta_min=0.001),
    "warm_restarts": lambda o: S.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2, eta_min=0.002),
    "linear": lambda o: S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=25),
    "polynomial": lambda o: S.PolynomialLR(o, total_iters=100, power=2.0),
    "onecycle": lambda o: S.OneCycleLR(o, max_lr=[0.5, 0.2], total_steps=STEPS, pct_start=0.25),
    "onecycle_linear": lambda o: S.OneCycleLR(o, max_lr=0.3, total_steps=STEPS, anneal_strategy="linear"),
    "warmup_cosine": lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, total_iters=10),
                                                  S.CosineAnnealingLR(o, T_max=110)], milestones=[10]),
}
for name, make in schedules.items():
    lrs, moms = trace(make)
    t[f"sched.{name}.lr"] = lrs
    t[f"sched.{name}.momentum"] = moms
lrs, moms = trace(lambda o: S.OneCycleLR(o, max_lr=0.4, total_steps=STEPS), optim="adam")
t["sched.onecycle_adam.lr"] = lrs
t["sched.onecycle_adam.momentum"] = moms
metrics = [1.0 / (1 + s) if s < 30 else 0.033 + 0.001 * ((s * 7) % 5) for s in range(STEPS)]
t["plateau.metrics"] = torch.tensor(metrics, dtype=torch.float64)
for name, make in {
    "plateau": lambda o: S.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=5, threshold=1e-3, cooldown=3,
                                             min_lr=[0.002, 0.001]),
    "plateau_abs_max": lambda o: S.ReduceLROnPlateau(o, mode="max", factor=0.7, patience=2, threshold=0.01,
                                                     threshold_mode="abs"),
}.items():
    seq = metrics if name == "plateau" else [-m for m in metrics]
    lrs, _ = trace(make, metrics=seq)
    t[f"{name}.lr"] = lrs
save("schedules.safetensors", t)

# ---------------------------------------------------------------- gradient health (clippers)
# Everything below has its own seed so that the sections above stay unchanged.
import numpy as np
import jax.numpy as jnp
import optax

torch.manual_seed(4321)
t = {}
# clip_grad_norm_ and clip_grad_value_ with infinite and NaN gradients.
for tag, bad in [("inf", float("inf")), ("nan", float("nan"))]:
    gs = [torch.randn(4), torch.randn(3)]
    gs[1][1] = bad
    for i, g in enumerate(gs):
        t[f"nonfinite.{tag}.grad.{i}"] = g
    ps = [nn.Parameter(torch.zeros_like(g)) for g in gs]
    for q, g in zip(ps, gs):
        q.grad = g.clone()
    t[f"nonfinite.{tag}.total"] = nn.utils.clip_grad_norm_(ps, max_norm=1.0)
    for i, q in enumerate(ps):
        t[f"nonfinite.{tag}.norm_clipped.{i}"] = q.grad
    for q, g in zip(ps, gs):
        q.grad = g.clone()
    nn.utils.clip_grad_value_(ps, 0.5)
    for i, q in enumerate(ps):
        t[f"nonfinite.{tag}.value_clipped.{i}"] = q.grad

# AGC and block RMS (optax) on PyTorch-layout weights: Linear [out, in], its bias, Conv2d
# [out, in, kh, kw], Embedding [num, dim] and a recurrent weight_hh [4H, H]. optax's default
# unit axes assume JAX layouts, so each weight goes to optax transposed into the layout whose
# default units are the same output units (Linear/recurrent/embedding: [in, out]; conv: HWIO).
shapes = {"fc.weight": (6, 5), "fc.bias": (6,), "conv.weight": (4, 3, 3, 3), "emb.weight": (7, 4), "rnn.weight_hh_l0": (8, 2)}
params = {k: torch.randn(*v) * 0.5 for k, v in shapes.items()}
grads = {k: torch.randn(*v) * (0.02 if k != "fc.weight" else 0.5) for k, v in shapes.items()}
grads["emb.weight"][2] *= 40   # one token's row far above the others
def to_jax(k, x):
    x = x.numpy()
    if x.ndim == 2: return x.T
    if x.ndim == 4: return x.transpose(2, 3, 1, 0)
    return x
def from_jax(k, x):
    x = np.asarray(x)
    if x.ndim == 2: return torch.tensor(x.T.copy())
    if x.ndim == 4: return torch.tensor(x.transpose(3, 2, 0, 1).copy())
    return torch.tensor(x)
for k in shapes:
    t[f"agc.param.{k}"] = params[k]
    t[f"agc.grad.{k}"] = grads[k]
for tag, clip in [("0.01", 0.01), ("0.1", 0.1)]:
    tx = optax.adaptive_grad_clip(clip, eps=1e-3)
    jp = {k: jnp.asarray(to_jax(k, params[k])) for k in shapes}
    jg = {k: jnp.asarray(to_jax(k, grads[k])) for k in shapes}
    out, _ = tx.update(jg, tx.init(jp), jp)
    for k in shapes:
        t[f"agc.{tag}.clipped.{k}"] = from_jax(k, out[k])
for tag, thr in [("0.05", 0.05), ("0.3", 0.3)]:
    tx = optax.clip_by_block_rms(thr)
    out, _ = tx.update({k: jnp.asarray(grads[k].numpy()) for k in shapes}, tx.init(None))
    for k in shapes:
        t[f"blockrms.{tag}.clipped.{k}"] = torch.tensor(np.asarray(out[k]).copy())

# AutoClip and ZClip on a recorded sequence of gradients with spikes, following the
# published algorithms: AutoClip (Seetharaman et al. 2020) clips at np.percentile of the
# norm history; ZClip (Kumar et al. 2025, reference zclip.py, z-score mode, adaptive
# scaling, max_grad_norm None) as written in its step().
STEPS_C = 60
seq = torch.randn(STEPS_C, 10) * (1 + 0.3 * torch.rand(STEPS_C, 1))
for s_, f in [(35, 12.0), (36, 9.0), (50, 30.0), (51, 4.0)]:
    seq[s_] *= f
t["seq.grads"] = seq
history, auto_out = [], []
for g in seq:
    n = float(g.double().norm())
    history.append(n)
    thr = np.percentile(history, 10)
    coef = min(thr / (n + 1e-6), 1.0)
    auto_out.append(g * coef)
t["autoclip.clipped"] = torch.stack(auto_out)
buf, mean, var, z_out = [], None, None, []
alpha, z_t, eps = 0.97, 2.5, 1e-6
for g in seq:
    n = float(g.double().norm())
    if mean is None:
        buf.append(n)
        if len(buf) >= 25:
            mean = sum(buf) / len(buf)
            var = sum((x - mean) ** 2 for x in buf) / len(buf)
        z_out.append(g.clone())
        continue
    std = var ** 0.5
    z = (n - mean) / (std + eps)
    clip_val = None
    if z > z_t:
        clip_val = mean + z_t * std / (z / z_t)
    eff = clip_val if clip_val is not None else n
    coef = eff / (n + 1e-6) if n > eff else 1.0
    z_out.append(g * coef)
    x = clip_val if clip_val is not None else n
    mean = alpha * mean + (1 - alpha) * x
    var = alpha * var + (1 - alpha) * (x - mean) ** 2
t["zclip.clipped"] = torch.stack(z_out)
t["zclip.final_mean"] = torch.tensor(mean, dtype=torch.float64)
t["zclip.final_var"] = torch.tensor(var, dtype=torch.float64)
save("health.safetensors", t)
print("torch", torch.__version__, "optax", optax.__version__)
