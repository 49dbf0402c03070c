#!/usr/bin/env python3
"""Writes the reference fixtures of the 2023-2026 stabilizers (Tests/Fixtures/stabilizers.safetensors),
each computed here from the authors' published algorithm:

- AdaGC (Wang et al. 2025, arXiv 2502.11034, Algorithm 1) on a recorded sequence of two
  tensors' gradients; cross-checked, when the package is installed, against pytorch_optimizer's
  AdaGC (an independent implementation of the same algorithm: Adam after the clipping).
- StableAdamW's update clipping (Wortsman et al. 2023, arXiv 2304.13013), as the authors'
  reference StableAdamWUnfused (bias corrections folded into beta-hat, RMS of g^2/max(u, eps^2)).
- The rolling z-score skip rule (OLMo-core SkipStepOptimizer.get_step_factor: history of at
  least max(20, N/2) earlier values, unbiased std), one-sided and with non-finite values kept
  out of the history, as GradGuard documents.
- PaLM's z-loss (Chowdhery et al. 2022): weight * mean(logsumexp(logits)^2), value and gradient.
- SPAM (Huang et al. 2025, arXiv 2501.06842), dense, as the step() of the authors' AdamW in the
  SPAM-Optimizer repository: momentum reset when (T+1) % DeltaT == 0, spike clipping of
  g^2 > threshold*v to sign(g)*sqrt(threshold*v) after grad_accu_steps, the cosine warm-up
  (CosineDecay: torch's CosineAnnealingLR over warmup+1 steps from 0.99) after each reset.

Run by hand: python3 -m pip install torch safetensors pytorch_optimizer; python3 Scripts/make_stabilizer_fixtures.py
"""
import math
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures")
torch.manual_seed(2025)
t = {}

# ---------------------------------------------------------------- AdaGC
STEPS = 30
g_a = torch.randn(STEPS, 4, 3) * 0.8
g_b = torch.randn(STEPS, 5) * 0.5
for s_, f in [(12, 40.0), (13, 8.0), (22, 25.0)]:
    g_a[s_] *= f
g_b[18] *= 30.0
t["adagc.grads_a"], t["adagc.grads_b"] = g_a, g_b
LAMBDA_ABS, LAMBDA_REL, BETA, WARMUP, EPS = 1.0, 1.05, 0.98, 5, 1e-8


def adagc_clip(grads, gamma, step):
    """One step of Algorithm 1 on a list of gradient tensors; returns clipped grads."""
    out = []
    if step < WARMUP or gamma[0] is None:
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
        h = min(LAMBDA_ABS / (norm + EPS), 1.0)
        for i, g in enumerate(grads):
            c = g * h
            n = c.double().norm().item()
            gamma[i] = n if gamma[i] is None else min(gamma[i], n)
            out.append(c)
    else:
        for i, g in enumerate(grads):
            h = min(LAMBDA_REL * max(gamma[i], EPS) / max(g.double().norm().item(), EPS), 1.0)
            c = g * h
            gamma[i] = BETA * gamma[i] + (1 - BETA) * c.double().norm().item()
            out.append(c)
    return out


gamma = [None, None]
ca, cb = [], []
for s_ in range(STEPS):
    a, b = adagc_clip([g_a[s_], g_b[s_]], gamma, s_ + 1)
    ca.append(a)
    cb.append(b)
t["adagc.clipped_a"], t["adagc.clipped_b"] = torch.stack(ca), torch.stack(cb)
t["adagc.final_gamma"] = torch.tensor(gamma, dtype=torch.float64)

try:
    from pytorch_optimizer import AdaGC

    pa = torch.zeros(4, 3, requires_grad=True)
    pb = torch.zeros(5, requires_grad=True)
    qa = pa.detach().clone().requires_grad_(True)
    qb = pb.detach().clone().requires_grad_(True)
    theirs = AdaGC([qa, qb], lr=0.01, lambda_abs=LAMBDA_ABS, lambda_rel=LAMBDA_REL, beta=BETA, warmup_steps=WARMUP,
                   weight_decay=0.0, eps=EPS, foreach=False)
    ours = torch.optim.Adam([pa, pb], lr=0.01, eps=EPS)
    for s_ in range(STEPS):
        pa.grad, pb.grad = ca[s_].clone(), cb[s_].clone()
        ours.step()
        qa.grad, qb.grad = g_a[s_].clone(), g_b[s_].clone()
        theirs.step()
    diff = max((pa - qa).abs().max().item(), (pb - qb).abs().max().item())
    assert diff < 1e-5, f"AdaGC reference and pytorch_optimizer differ by {diff}"
    print(f"AdaGC: matches pytorch_optimizer's AdaGC + Adam to {diff:.2e}")
except ImportError:
    print("AdaGC: pytorch_optimizer not installed, cross-check skipped")

# ---------------------------------------------------------------- StableAdamW update clipping
LR, WD, B1, B2, SEPS, D = 0.01, 0.1, 0.9, 0.99, 1e-8, 1.0
p0 = torch.randn(6)
grads = torch.randn(25, 6) * 0.1
for s_, f in [(8, 60.0), (9, 5.0), (17, 200.0)]:
    grads[s_] *= f
t["stable.p0"], t["stable.grads"] = p0, grads
theta = p0.clone().double()
v = torch.zeros(6, dtype=torch.float64)
u = torch.zeros(6, dtype=torch.float64)
trace, scales = [], []
for step in range(1, 26):
    g = grads[step - 1].double()
    b1hat = B1 * (1 - B1 ** (step - 1)) / (1 - B1 ** step)
    b2hat = B2 * (1 - B2 ** (step - 1)) / (1 - B2 ** step)
    v = v * b1hat + (1 - b1hat) * g
    u = u * b2hat + (1 - b2hat) * g * g
    denominator = u.sqrt() + SEPS
    rms = torch.div(g.pow(2), torch.maximum(u, torch.full_like(u, SEPS ** 2))).mean().sqrt().item()
    scale = 1.0 / max(1.0, rms / D)
    theta = theta * (1 - LR * WD) - LR * scale * v / denominator
    trace.append(theta.clone())
    scales.append(scale)
t["stable.params"] = torch.stack(trace).float()
t["stable.scales"] = torch.tensor(scales, dtype=torch.float64)

# ---------------------------------------------------------------- rolling z-score skipping
N, SIGMA = 40, 4.0
losses = 2.0 + 0.05 * torch.randn(90, dtype=torch.float64) - torch.linspace(0, 0.5, 90, dtype=torch.float64)
norms = 1.0 + 0.1 * torch.randn(90, dtype=torch.float64)
losses[30] = 5.0
norms[45] = 9.0
losses[60] = float("nan")
norms[61] = float("inf")
losses[75] = 1.0  # far *below* the mean: OLMo-core's |z| would skip; the one-sided rule does not
t["zscore.losses"], t["zscore.norms"] = losses, norms


def z(x, hist):
    if len(hist) < max(20, N // 2) or not math.isfinite(x):
        return None
    h = torch.tensor(hist, dtype=torch.float64)
    std, mean = torch.std_mean(h)
    if std.item() == 0:
        return math.inf if x > mean.item() else 0.0
    return (x - mean.item()) / std.item()


hl, hn, skips = [], [], []
for i in range(90):
    zl, zn = z(losses[i].item(), hl), z(norms[i].item(), hn)
    skips.append(1.0 if (zl is not None and zl > SIGMA) or (zn is not None and zn > SIGMA) else 0.0)
    for hist, x in [(hl, losses[i].item()), (hn, norms[i].item())]:
        if math.isfinite(x):
            hist.append(x)
            if len(hist) > N:
                hist.pop(0)
t["zscore.skip"] = torch.tensor(skips, dtype=torch.float64)

# ---------------------------------------------------------------- z-loss
logits = (torch.randn(6, 7) * 3).requires_grad_(True)
targets = torch.tensor([1, 0, 3, 0, 6, 2])  # 0 is the padding index of the masked case
W = 1e-4
zl = W * torch.logsumexp(logits, dim=1).pow(2).mean()
(gz,) = torch.autograd.grad(zl, logits)
keep = (targets != 0).double()
zm = W * (torch.logsumexp(logits, dim=1).pow(2) * keep).sum() / keep.sum()
(gm,) = torch.autograd.grad(zm, logits)
t["zloss.logits"], t["zloss.targets"] = logits.detach(), targets.float()
t["zloss.value"], t["zloss.grad"] = zl.detach(), gz
t["zloss.masked_value"], t["zloss.masked_grad"] = zm.detach(), gm

# ---------------------------------------------------------------- SPAM
import warnings

warnings.filterwarnings("ignore")


class CosineDecay:
    """The authors' warm-up helper: torch's CosineAnnealingLR stepped to a given step."""

    def __init__(self, death_rate, t_max):
        self.sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=death_rate)
        self.stepper = torch.optim.lr_scheduler.CosineAnnealingLR(self.sgd, t_max + 1, 0, -1)
        self.t_max = t_max

    def get_dr(self, current_step):
        if current_step >= self.t_max:
            return 0.0
        self.stepper.step(current_step)
        return self.sgd.param_groups[0]["lr"]


S_LR, S_WD, S_B1, S_B2, S_EPS, THRES, DELTA_T, S_WARM, GAS = 0.01, 0.1, 0.9, 0.999, 1e-6, 50.0, 12, 5, 3
s_p0 = torch.randn(2, 5)
s_grads = torch.randn(40, 2, 5) * 0.2
for s_, f in [(6, 80.0), (15, 40.0), (27, 100.0), (28, 30.0)]:
    s_grads[s_, 0] *= f
t["spam.p0"], t["spam.grads"] = s_p0, s_grads
p = s_p0.clone()
exp_avg = torch.zeros_like(p)
exp_avg_sq = torch.zeros_like(p)
pstep, total_step, current_step = 0, 0, S_WARM + 1
warm = CosineDecay(0.99, S_WARM)
s_trace, s_scales = [], []
for i in range(40):
    scale_factor = 1 - warm.get_dr(current_step)
    grad = s_grads[i].clone()
    if (total_step + 1) % DELTA_T == 0:
        exp_avg = torch.zeros_like(grad)
        exp_avg_sq = torch.zeros_like(grad)
    pstep += 1
    cs = total_step + 1
    if cs >= GAS and cs % DELTA_T >= GAS:
        mask = grad ** 2 > THRES * exp_avg_sq
        grad[mask] = grad[mask].sign() * torch.sqrt(exp_avg_sq[mask] * THRES)
    exp_avg.mul_(S_B1).add_(grad, alpha=1.0 - S_B1)
    exp_avg_sq.mul_(S_B2).addcmul_(grad, grad, value=1.0 - S_B2)
    denom = exp_avg_sq.sqrt().add_(S_EPS)
    step_size = S_LR * math.sqrt(1.0 - S_B2 ** pstep) / (1.0 - S_B1 ** pstep)
    p.add_(exp_avg / denom, alpha=-step_size * scale_factor)
    p.add_(p, alpha=-S_LR * S_WD)
    total_step += 1
    current_step += 1
    if total_step != 0 and (total_step + 1) % DELTA_T == 0:
        current_step = 0
        warm = CosineDecay(0.99, S_WARM)
    s_trace.append(p.clone())
    s_scales.append(scale_factor)
t["spam.params"] = torch.stack(s_trace)
t["spam.scales"] = torch.tensor(s_scales, dtype=torch.float64)

save_file({k: v.detach().contiguous() for k, v in t.items()}, os.path.join(OUT, "stabilizers.safetensors"))
print(f"stabilizers.safetensors: {len(t)} tensors; torch {torch.__version__}")
