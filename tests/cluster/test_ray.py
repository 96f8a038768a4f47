"""Sweeps through hydra/launcher=ray on a local Ray instance (issue 15), where the ray extra
is installed (`pip install -e ".[ray]"`); they skip elsewhere. The dev extra leaves it out.

Each sweep starts its own local instance (~13 s here) with two CPUs, one per job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import run_cli, shown
from .conftest import GRID, TINY, assert_same_report, read_report

pytest.importorskip(
    "hydra_plugins.hydra_ray_launcher",
    reason='the ray extra is not installed (pip install ".[ray]")',
)
pytestmark = pytest.mark.slow

RAY = ["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2"]
SMALL = ["data.samples=600", "data.probe_samples=100", "data.classes=2", "seeds=[0]"]


def command(sweep_dir: Path, *overrides: str) -> list[str]:
    return ["-m", *overrides, *RAY, f"hydra.sweep.dir={sweep_dir}"]


def test_tiny_grid_report_equals_the_default_launchers(default_grid, tmp_path):
    proc = run_cli(command(tmp_path / "sweep", *GRID, *TINY), cwd=tmp_path)
    assert proc.returncode == 0, shown(proc)
    assert_same_report(tmp_path / "sweep", default_grid)


def test_failing_cell_is_reported_and_the_sweep_exits_1(tmp_path):
    overrides = ["data.classes=2,30000000", "model.attn_layers=1", *TINY]
    proc = run_cli(command(tmp_path / "sweep", *overrides), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "1 of 2 cell(s) of this run failed" in proc.stderr
    report = read_report(tmp_path / "sweep")
    cells = {c: list(g["status"]) for c, g in report.groupby("data.classes")}
    assert cells == {30000000: ["failed"] * 2, 2: ["completed"] * 2}


def descendants(pid: int) -> dict[int, str]:
    """{pid: command line} of every process under pid (Ray's raylet and its workers)."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)], commands[int(stat.parent.name)] = int(fields[1]), cmdline
    found, frontier = {}, {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found.keys()
        found.update({p: commands[p] for p in frontier})
    return found


def test_a_killed_worker_is_retried_and_its_cell_completes(tmp_path):
    # Ray retries a task whose worker process died (max_retries=3 by default), so SIGKILL
    # of the worker mid-cell costs a restart of that cell, not the sweep.
    sweep_dir = tmp_path / "sweep"
    args = [sys.executable, "-m", "attnlab", *command(sweep_dir, *SMALL, "trainer.epochs=4000")]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    parent = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (workers := [p for p, c in descendants(parent.pid).items() if "_run_job" in c]):
            assert time.monotonic() < deadline, "no Ray worker ran the cell"
            time.sleep(0.5)
        time.sleep(5)  # into TensorFlow's start-up or training: either way mid-cell
        os.kill(workers[0], signal.SIGKILL)
        out, err = parent.communicate(timeout=300)
    finally:
        parent.kill()
    assert parent.returncode == 0, err
    assert "the task will be retried" in out + err
    (row,) = read_report(sweep_dir).to_dict("records")
    assert row["status"] == "completed" and row["epochs_run"] == 4000
