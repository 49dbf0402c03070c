#!/usr/bin/env python3
"""PyTorch twin of `gradguard train --set model.kind=charlm --set data.kind=text`: the same
split, windows, model, optimizer, global-norm clipping, shuffling and final validation
pass, so that wall time and validation bits/char can be compared on the same text.

    python3 Benchmarks/charlm_twin.py --text FILE [--steps 300] [--width 256] [--embedding 64]
        [--length 64] [--batch 64] [--lr 0.002] [--max-norm 5] [--seed 0]

What GradGuard does, mirrored here:
- vocabulary: the distinct characters, sorted; ids of the whole text;
- split: the first 90 % of the ids for training, the rest for validation;
- windows: `length` characters from every `length`-th position, targets shifted by one
  (CharCorpus.datasets / CharWindows: (n − length − 2) // length + 1 windows per part);
- model: Embedding(V, embedding) → LSTM(embedding, width, batch_first) → Linear(width, V),
  PyTorch's default initialisation, forget-gate bias b_ih + b_hh = 1 split evenly;
- loss: mean cross-entropy over every position; Adam(lr); clip_grad_norm_(max_norm);
- batches: a new permutation of the training windows every epoch, the last batch kept;
- at the step limit: one pass over every validation window (batches of `batch`, mean loss
  weighted by batch size), reported in bits per character.
Prints one JSON object: steps, train_seconds, validation bits_per_char, wall seconds.
"""
import argparse
import json
import math
import time

T0 = time.time()
import torch  # noqa: E402  (imported after the clock starts: its import is part of the run)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--text", required=True)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--embedding", type=int, default=64)
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--max-norm", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)

    with open(a.text, encoding="utf-8") as f:
        text = f.read()
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    cut = int(len(ids) * 0.9)

    def windows(lo, hi):
        count = (hi - lo - a.length - 2) // a.length + 1
        starts = lo + torch.arange(count) * a.length
        offsets = torch.arange(a.length)
        return ids[starts[:, None] + offsets], ids[starts[:, None] + offsets + 1]

    train_x, train_y = windows(0, cut)
    valid_x, valid_y = windows(cut, len(ids))

    class CharLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(len(vocab), a.embedding)
            self.lstm = torch.nn.LSTM(a.embedding, a.width, batch_first=True)
            self.head = torch.nn.Linear(a.width, len(vocab))
            with torch.no_grad():
                for b in (self.lstm.bias_ih_l0, self.lstm.bias_hh_l0):
                    b[a.width:2 * a.width] = 0.5

        def forward(self, x):
            return self.head(self.lstm(self.embedding(x))[0])

    model = CharLM()
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(a.seed)
    step = 0
    t_train = time.time()
    while step < a.steps:
        order = torch.randperm(len(train_x), generator=g)
        for start in range(0, len(order), a.batch):
            if step >= a.steps:
                break
            rows = order[start:start + a.batch]
            opt.zero_grad()
            logits = model(train_x[rows])
            loss = loss_fn(logits.reshape(-1, len(vocab)), train_y[rows].reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.max_norm)
            opt.step()
            step += 1
    train_seconds = time.time() - t_train

    model.eval()
    total, seen = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(valid_x), a.batch):
            x, y = valid_x[start:start + a.batch], valid_y[start:start + a.batch]
            total += loss_fn(model(x).reshape(-1, len(vocab)), y.reshape(-1)).item() * len(x)
            seen += len(x)
    bits = total / seen / math.log(2)
    print(json.dumps({"steps": step, "train_seconds": round(train_seconds, 3), "bits_per_char": round(bits, 4),
                      "wall_seconds": round(time.time() - T0, 3), "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
