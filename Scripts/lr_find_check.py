#!/usr/bin/env python3
"""lr-find against a grid of rates on the workloads of `gradguard train` (issue 27's check).

For each workload: `gradguard lr-find --json` gives the suggestion; the run is then trained at
that rate and at the workload's default rate × 2^k, k = -4..4, and scored on its final
validation metric (the last evaluation in metrics.jsonl). Prints a Markdown table: the
suggestion, its score, the default rate's, the grid's best, and whether the suggestion is
within 5 % of the best. Usage: python3 Scripts/lr_find_check.py [BIN] [OUT_DIR] [WORKLOAD ...]
"""
import json, os, subprocess, sys, tempfile

BIN = sys.argv[1] if len(sys.argv) > 1 else ".build/release/gradguard"
OUT = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="lr-find-check-")
ONLY = sys.argv[3:]

# name, settings, metric, higher is better, default rate
WORKLOADS = [
    ("mlp", ["model.kind=mlp", "training.max_steps=300"], "accuracy", True, 0.05),
    ("charlm", ["model.kind=charlm", "data.kind=text", "training.max_steps=300"], "loss", False, 0.05),
    ("detector", ["model.kind=detector", "training.max_steps=240", "data.train=128", "data.validation=32",
                  "data.image_size=64"], "map50", True, 0.01),
]


def sets(settings):
    out = []
    for s in settings:
        out += ["--set", s]
    return out


def train(name, settings, rate, metric):
    runs = os.path.join(OUT, "runs")
    cmd = [BIN, "train", "--name", name, "--overwrite", "--quiet"] + sets(settings + [f"runs_directory={runs}", f"optimizer.lr={rate!r}"])
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = None
    try:
        with open(os.path.join(runs, name, "metrics.jsonl")) as f:
            for line in f:
                r = json.loads(line)
                if r.get("kind") == "eval":
                    last = r["metrics"].get(metric)
    except FileNotFoundError:
        pass
    try:
        return float(last)
    except (TypeError, ValueError):
        return float("nan")


def main():
    rows = ["| workload | metric | lr-find's suggestion | its score | default rate: score | grid's best rate: score | within 5 % |",
            "|---|---|---|---|---|---|---|"]
    for name, settings, metric, higher, default in WORKLOADS:
        if ONLY and name not in ONLY:
            continue
        found = subprocess.run([BIN, "lr-find", "--json"] + sets(settings), check=True, capture_output=True, text=True)
        result = json.loads(found.stdout.strip().splitlines()[-1])
        suggestion = float(result["suggestion"])
        print(f"{name}: {result['explanation']}", flush=True)
        worst = float("-inf") if higher else float("inf")

        def key(score):
            return score if score == score else worst

        grid = []
        for k in range(-4, 5):
            rate = default * 2 ** k
            grid.append((rate, train(f"{name}-grid{k}", settings, rate, metric)))
            print(f"  {name} lr {rate:.4g}: {metric} {grid[-1][1]:.4f}", flush=True)
        mine = train(f"{name}-lr-find", settings, suggestion, metric)
        print(f"  {name} lr-find {suggestion:.4g}: {metric} {mine:.4f}", flush=True)
        best = max(grid, key=lambda g: key(g[1])) if higher else min(grid, key=lambda g: key(g[1]))
        default_score = grid[4][1]
        ok = mine == mine and (mine >= best[1] - 0.05 * abs(best[1]) if higher else mine <= best[1] + 0.05 * abs(best[1]))
        rows.append(f"| {name} | {metric} ({'higher' if higher else 'lower'} is better) | {suggestion:.4g} | {mine:.4f} | "
                    f"{default:g}: {default_score:.4f} | {best[0]:.4g}: {best[1]:.4f} | {'yes' if ok else 'no'} |")
    print("\n".join(rows))
    with open(os.path.join(OUT, "lr-find-check.md"), "w") as f:
        f.write("\n".join(rows) + "\n")


main()
