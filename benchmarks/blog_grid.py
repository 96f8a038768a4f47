"""The blog's whole grid through the CLI, one cell per job vs packs of cells per job.

The grid: classes 2, 5, 20, 30, 50, 100 x attn_layers 1, 2 (32 features), plus the
128-feature cell at 50 classes; 5 seeds a cell, 13 cells. Hydra's sweeper makes only
products, so it is two commands into one sweep dir (the second grows the sweep, and its
report covers all 13 cells), timed wall-clock as a user waits for them, imports included:

- unpacked: `hydra.sweeper.pack=false`: every cell is a job and trains as its own model;
- attnlab: the default, one job per pack of cells that share a model shape, trained as one
  model (attnlab/sweep/packing.py), jobs run one after another in this process;
- joblib_unpacked, joblib: the same two under joblib with n_jobs=2 (two jobs at a time).

Both ways run side by side in one invocation, alternating, `--repeats` times; the script
prints each wall time, the medians and their ratio, and checks that each report holds 13
completed cells of 5 seeds.

Run: .venv/bin/python benchmarks/blog_grid.py [--repeats 1] [--launchers unpacked attnlab ...]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

GRID = [
    ["-m", "data.classes=2,5,20,30,50,100", "model.attn_layers=1,2"],
    ["-m", "data.classes=50", "data.features=128"],
]
SEEDS = "seeds=[0,1,2,3,4]"
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
LAUNCHERS = {
    "unpacked": ["hydra.sweeper.pack=false"],
    "attnlab": [],
    "joblib_unpacked": [*JOBLIB, "hydra.sweeper.pack=false"],
    "joblib": JOBLIB,
}


def run_grid(launcher: str, root: Path) -> float:
    """Wall seconds of the two commands into one fresh sweep dir; checks the report."""
    sweep_dir = root / f"{launcher}-{time.time_ns()}"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    total = 0.0
    for part in GRID:
        command = [
            sys.executable,
            "-m",
            "attnlab",
            *part,
            SEEDS,
            *LAUNCHERS[launcher],
            f"hydra.sweep.dir={sweep_dir}",
        ]
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        total += time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"{shlex.join(command)} failed:\n{proc.stderr[-2000:]}")
    report = pd.read_csv(sweep_dir / "report.csv")
    cells, statuses = report["job"].nunique(), set(report["status"])
    assert cells == 13 and len(report) == 65 and statuses == {"completed"}, (cells, statuses)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--launchers", nargs="+", default=["unpacked", "attnlab"], choices=LAUNCHERS
    )
    args = parser.parse_args()
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"cores: {os.cpu_count()}; grid: 13 cells x 5 seeds, as two commands into one sweep:")
    for part in GRID:
        print(f"  python -m attnlab {shlex.join(part)} {SEEDS} [launcher] hydra.sweep.dir=D")
    times: dict[str, list[float]] = {name: [] for name in args.launchers}
    with tempfile.TemporaryDirectory(prefix="attnlab-grid-") as tmp:
        for repeat in range(args.repeats):
            for name in args.launchers:
                seconds = run_grid(name, Path(tmp))
                times[name].append(seconds)
                print(f"run {repeat + 1}: {name:<15} {seconds:6.1f} s wall (13 cells completed)")
    print()
    reference = statistics.median(times[args.launchers[0]])
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:<15} median {median:6.1f} s over {len(values)} run(s); "
            f"{reference / median:4.2f}x the speed of {args.launchers[0]}"
        )


if __name__ == "__main__":
    main()
