"""Adaptive seeds against a fixed seed count, side by side on one grid through the CLI.

Issue 21 asks for `+experiment=blog_all` (24 cells) adaptive against fixed 10 seeds. On the
shared 2-core machine a subset of blog_all's cells runs instead (`--grid`, default: classes
5, 20, 50 at attn_layers 1 and 2, 32 features: 6 cells, the ones findings.md discusses most).

- fixed: the grid with `--fixed` seeds a cell (default 10, blog_all's), one command;
- adaptive: the grid with `--start` seeds (default 5) plus the adaptive options given
  (`--adaptive`, default `metric=val_accuracy half_width=0.1 step=5 max_seeds=40`).

Each command is timed wall-clock as a user waits for it, imports included, into a fresh
sweep dir. The script prints a Markdown table: seeds per cell, wall time, seeds trained, and
each cell's interval half-width of the judged metric (fixed: Student-t; adaptive: the
confidence sequence, the interval an adaptive sweep quotes; with `--claims` also the
claims' verdicts from claims.csv, if the report wrote one).

Run: .venv/bin/python benchmarks/adaptive_seeds.py [--grid ...] [--adaptive k=v ...]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

GRID = ["data.classes=5,20,50", "model.attn_layers=1,2", "data.features=32"]
ADAPTIVE = ["metric=val_accuracy", "half_width=0.1", "step=5", "max_seeds=40"]


def seeds(count: int) -> str:
    return "seeds=[" + ",".join(map(str, range(count))) + "]"


def run(args: list[str], sweep_dir: Path) -> float:
    """Wall seconds of one sweep into sweep_dir; stops the script if it fails."""
    command = [sys.executable, "-m", "attnlab", "-m", *args, f"hydra.sweep.dir={sweep_dir}"]
    print("$", shlex.join(command[2:]), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(
        command, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True
    )
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return took


def half_widths(sweep_dir: Path, metric: str, sequence: bool) -> pd.Series:
    summary = pd.read_csv(sweep_dir / "summary.csv")
    kind = "cs" if sequence else "ci"
    if metric == "focus_rate" and not sequence:
        low, high = summary["focus_rate_ci_low"], summary["focus_rate_ci_high"]
    else:
        low, high = summary[f"{metric}_{kind}_low"], summary[f"{metric}_{kind}_high"]
    return (high - low) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", nargs="+", default=GRID)
    parser.add_argument("--fixed", type=int, default=10)
    parser.add_argument("--start", type=int, default=5)
    parser.add_argument("--adaptive", nargs="+", default=ADAPTIVE)
    parser.add_argument("--metric", default="val_accuracy")
    args = parser.parse_args()
    adaptive = [f"hydra.sweeper.adaptive.{kv}" for kv in args.adaptive]
    root = Path(tempfile.mkdtemp(prefix="adaptive-bench-"))
    fixed_dir, adaptive_dir = root / "fixed", root / "adaptive"
    fixed_s = run([*args.grid, seeds(args.fixed)], fixed_dir)
    adaptive_s = run([*args.grid, seeds(args.start), *adaptive], adaptive_dir)

    fixed = pd.read_csv(fixed_dir / "summary.csv")
    grown = pd.read_csv(adaptive_dir / "summary.csv")
    keys = [c for c in ("data.classes", "model.attn_layers", "data.features") if c in fixed]
    fixed["half"] = half_widths(fixed_dir, args.metric, sequence=False)
    grown["half"] = half_widths(adaptive_dir, args.metric, sequence=True)
    table = fixed[[*keys, "n_seeds", "half"]].merge(
        grown[[*keys, "n_seeds", "half"]], on=keys, suffixes=("_fixed", "_adaptive")
    )
    print(f"\nwall: fixed {fixed_s:.1f} s, adaptive {adaptive_s:.1f} s")
    print(f"seeds: fixed {fixed['n_seeds'].sum()}, adaptive {grown['n_seeds'].sum()}\n")
    fixed_kind = "fixed ± (t; Wilson for rates)"
    head = [*keys, "fixed seeds", fixed_kind, "adaptive seeds", "adaptive ± (CS)"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for row in table.itertuples(index=False):
        values = list(row)
        print(
            "| "
            + " | ".join(
                [*(str(v) for v in values[: len(keys)])]
                + [f"{values[-4]}", f"±{values[-3]:.3f}", f"{values[-2]}", f"±{values[-1]:.3f}"]
            )
            + " |"
        )
    for name, where in (("fixed", fixed_dir), ("adaptive", adaptive_dir)):
        claims = where / "claims.csv"
        if claims.exists():
            rows = pd.read_csv(claims)
            notes = rows["note"].astype("string").fillna("")
            rows = rows[~notes.str.startswith("applies to no cell")]
            counts = rows["verdict"].value_counts().to_dict()
            print(f"claims.csv, {name}: {len(rows)} rows, verdicts {counts}")
    print(f"\nsweep dirs: {root}")


if __name__ == "__main__":
    main()
