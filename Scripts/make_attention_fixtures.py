#!/usr/bin/env python3
"""PyTorch reference values for Conv1d, RMSNorm, MultiheadAttention (with QK-norm),
TransformerEncoderLayer (post- and pre-norm) and sinusoidal positions.

Run by hand (needs torch and safetensors from PyPI):
    python3 Scripts/make_attention_fixtures.py
writes Tests/Fixtures/attention.safetensors, read by Tests/GradGuardNNTests/AttentionFixtureTests.swift.
Every case stores its input(s), parameters, output, an upstream gradient and the gradients
of the input(s) and parameters for that upstream gradient.
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures")
torch.manual_seed(2812)
t = {}


def grads(prefix, y, inputs, module):
    """Stores y, an upstream gradient and the gradients of the named inputs and of every parameter."""
    up = torch.randn_like(y)
    params = list(module.named_parameters())
    g = torch.autograd.grad(y, [x for _, x in inputs] + [p for _, p in params], grad_outputs=up)
    t[f"{prefix}.out"] = y.detach()
    t[f"{prefix}.up"] = up
    for (name, x), gx in zip(inputs, g):
        t[f"{prefix}.{name}"] = x.detach()
        t[f"{prefix}.grad.{name}"] = gx
    for (name, p), gp in zip(params, g[len(inputs):]):
        t[f"{prefix}.param.{name}"] = p.detach()
        t[f"{prefix}.grad.param.{name}"] = gp


def randomise(module):
    """Every parameter random (LayerNorm's ones and zeros would hide their gradients' errors)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)


# ---------------------------------------------------------------- Conv1d
for name, kw in {
    "basic": dict(in_channels=2, out_channels=3, kernel_size=3, padding=1),
    "strided": dict(in_channels=4, out_channels=4, kernel_size=3, stride=2, padding=1, groups=2),
    "dilated": dict(in_channels=3, out_channels=2, kernel_size=3, dilation=2, bias=False),
}.items():
    conv = nn.Conv1d(**kw)
    x = torch.randn(2, kw["in_channels"], 9, requires_grad=True)
    grads(f"conv1d.{name}", conv(x), [("x", x)], conv)

# ---------------------------------------------------------------- RMSNorm
rms = nn.RMSNorm(6)
randomise(rms)
x = torch.randn(3, 4, 6, requires_grad=True)
grads("rmsnorm", rms(x), [("x", x)], rms)

# ---------------------------------------------------------------- MultiheadAttention
# Self-attention, sequence first ([T, B, E]), no mask; the averaged weights too.
mha = nn.MultiheadAttention(8, 2)
randomise(mha)
x = torch.randn(5, 2, 8, requires_grad=True)
y, w = mha(x, x, x)
t["mha.self.weights"] = w.detach()
grads("mha.self", y, [("x", x)], mha)

# Cross-attention, batch first, key padding, per-head weights.
mha = nn.MultiheadAttention(8, 4, batch_first=True)
randomise(mha)
q = torch.randn(2, 4, 8, requires_grad=True)
k = torch.randn(2, 6, 8, requires_grad=True)
v = torch.randn(2, 6, 8, requires_grad=True)
pad = torch.tensor([[False] * 6, [False, False, False, False, True, True]])
y, w = mha(q, k, v, key_padding_mask=pad, average_attn_weights=False)
t["mha.cross.pad"] = pad.float()
t["mha.cross.weights"] = w.detach()
grads("mha.cross", y, [("q", q), ("k", k), ("v", v)], mha)

# Causal self-attention, batch first, through the float mask nn.Transformer makes.
mha = nn.MultiheadAttention(8, 2, batch_first=True)
randomise(mha)
x = torch.randn(2, 5, 8, requires_grad=True)
mask = nn.Transformer.generate_square_subsequent_mask(5)
y, _ = mha(x, x, x, attn_mask=mask)
t["mha.causal.mask"] = mask
grads("mha.causal", y, [("x", x)], mha)


# QK-norm: PyTorch's MultiheadAttention has none, so the same computation written out, with
# nn.RMSNorm over each head's queries and keys (as OLMo 2 / Qwen 3 normalise them).
class QKNormAttention(nn.Module):
    def __init__(self, e, h):
        super().__init__()
        self.e, self.h = e, h
        self.in_proj_weight = nn.Parameter(torch.randn(3 * e, e) * 0.5)
        self.in_proj_bias = nn.Parameter(torch.randn(3 * e) * 0.5)
        self.out_proj = nn.Linear(e, e)
        self.q_norm = nn.RMSNorm(e // h)
        self.k_norm = nn.RMSNorm(e // h)

    def forward(self, x):  # [B, T, E], causal
        b, n, e = x.shape
        d = e // self.h
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).split(e, dim=-1)
        q, k, v = (z.reshape(b, n, self.h, d).transpose(1, 2) for z in (q, k, v))
        q, k = self.q_norm(q), self.k_norm(k)
        logits = (q / math.sqrt(d)) @ k.transpose(-2, -1) + nn.Transformer.generate_square_subsequent_mask(n)
        t["mha.qknorm.max_logit"] = ((q / math.sqrt(d)) @ k.transpose(-2, -1)).max().detach().reshape(1)
        out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, e)
        return self.out_proj(out)


qk = QKNormAttention(8, 2)
randomise(qk)
x = torch.randn(2, 5, 8, requires_grad=True)
grads("mha.qknorm", qk(x), [("x", x)], qk)

# ---------------------------------------------------------------- TransformerEncoderLayer
post = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0)
randomise(post)
x = torch.randn(5, 2, 8, requires_grad=True)
grads("encoder.post", post(x), [("x", x)], post)

pre = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
randomise(pre)
x = torch.randn(2, 5, 8, requires_grad=True)
pad = torch.tensor([[False] * 5, [False, False, False, False, True]])
mask = nn.Transformer.generate_square_subsequent_mask(5)
grads("encoder.pre", pre(x, src_mask=mask, src_key_padding_mask=pad, is_causal=True), [("x", x)], pre)
t["encoder.pre.pad"] = pad.float()

# ---------------------------------------------------------------- sinusoidal positions (the PyTorch tutorial's)
length, dim = 10, 6
position = torch.arange(length).unsqueeze(1)
div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
pe = torch.zeros(length, dim)
pe[:, 0::2] = torch.sin(position * div)
pe[:, 1::2] = torch.cos(position * div)
t["sinusoidal.table"] = pe

save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(OUT, "attention.safetensors"))
print(f"wrote {len(t)} tensors")
