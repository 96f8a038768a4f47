"""What "unchanged" means for a seed trained in another pack (issue 21's seed records).

A sweep that grows a cell's seeds trains only the new ones, beside other seeds than the
first run had (more seeds, other cells of a pack). Each seed is its own replica, with its
own data and initialisation, so its numbers are the same up to float32 rounding, where the
matmul library may sum in another order for another replica count. This script trains
seed s alone and among seeds 0..n-1, in one process, and prints each metric's largest
absolute difference over the seeds compared (records and learning curves).

Run: .venv/bin/python benchmarks/seed_alone_vs_among.py [--among 8] [--seeds 0 3 7]
     [overrides ...]   (default: data.classes=20 at its defaults: 10000 samples, 20 epochs)
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import math

from attnlab.api import compose_cell
from attnlab.engine.experiment import train_and_measure


def differences(alone: dict, among: dict) -> dict[str, float]:
    """Per numeric field of two records of one seed: |alone - among| (bools as 0/1)."""
    out = {}
    for key, value in alone.items():
        other = among.get(key)
        if key in ("seed", "train_seconds") or not isinstance(value, int | float):
            continue
        if isinstance(other, int | float) and math.isfinite(value) and math.isfinite(other):
            out[key] = abs(float(value) - float(other))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--among", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 3, 7])
    parser.add_argument("overrides", nargs="*", default=["data.classes=20"])
    args = parser.parse_args()
    among_seeds = ",".join(str(s) for s in range(args.among))
    together = train_and_measure(compose_cell([*args.overrides, f"seeds=[{among_seeds}]"]))
    by_seed = {r["seed"]: r for r in together.records}
    worst: dict[str, float] = {}
    curve = 0.0
    for seed in args.seeds:
        alone = train_and_measure(compose_cell([*args.overrides, f"seeds=[{seed}]"]))
        for key, diff in differences(alone.records[0], by_seed[seed]).items():
            worst[key] = max(worst.get(key, 0.0), diff)
        mine = together.history[together.history["seed"] == seed].reset_index(drop=True)
        theirs = alone.history.reset_index(drop=True)
        for column in ("train_loss", "val_accuracy", "attn_key_weight"):
            gap = (mine[column] - theirs[column]).abs().max()
            curve = max(curve, float(gap) if math.isfinite(gap) else 0.0)
    print(f"{' '.join(args.overrides)}: seeds {args.seeds} alone vs among 0..{args.among - 1}")
    for key, diff in sorted(worst.items()):
        print(f"  {key:24s} max |diff| {diff:.3g}")
    print(f"  {'history.csv (any column)':24s} max |diff| {curve:.3g}")
    print(f"  largest of all: {max([*worst.values(), curve]):.3g}")


if __name__ == "__main__":
    main()
