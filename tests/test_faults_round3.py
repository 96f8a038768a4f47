"""Faults of issue 20 that need a process: kills, launcher workers, the lock's own files,
odd files in finished cells, locales and pipes (tests/inject pins each fault's moment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from .conftest import DEBUG_TINY, run_cli, shown

pytestmark = pytest.mark.slow

INJECT = str(Path(__file__).parent / "inject")
GRID = ["data.classes=2,5", DEBUG_TINY]


def injected(**env: str) -> dict[str, str]:
    """The hooks of tests/inject ahead of this checkout's path."""
    path = os.pathsep.join(p for p in (INJECT, os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, **env}


def results(sweep_dir: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sweep_dir.glob("*/metrics.json")}


def test_a_single_run_without_hard_links_writes_its_result(tmp_path):
    """Item 3: link() fails with EPERM (vfat, some network mounts): the run's metrics.json
    is created all the same, not lost after training."""
    run_dir = tmp_path / "run"
    proc = run_cli(
        [DEBUG_TINY, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=injected(ATTNLAB_TEST_NO_LINK="1"),
    )
    assert proc.returncode == 0, shown(proc)
    assert json.loads((run_dir / "metrics.json").read_text())["runs"]
    assert not list(run_dir.glob(".~attnlab.*"))


def gone(pid: int) -> bool:
    """The process has ended (a zombie counts: it runs no more code)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def report_rows(sweep_dir: Path) -> pd.DataFrame:
    return pd.read_csv(sweep_dir / "report.csv").drop_duplicates("job")


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_workers_die_with_their_killed_sweep_and_a_resume_never_races_them(tmp_path, launcher):
    """Item 4: the sweep is SIGKILLed while a worker has a trained cell to write and more
    work after it (it lingers 5 s): the worker ends with its sweep, and a resume started at
    once completes every cell, each trained by one run, exit 0."""
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *GRID, "hydra.sweeper.pack=false", f"hydra/launcher={launcher}"]
    args += ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    args.append(f"hydra.sweep.dir={sweep_dir}")
    kill = injected(
        ATTNLAB_TEST_KILL="sweep",
        ATTNLAB_TEST_KILL_DIR=str(sweep_dir),
        ATTNLAB_TEST_KILL_CLASSES="5",
        ATTNLAB_TEST_KILL_LINGER="5",
    )
    # Not run_cli: a leftover worker would hold its output pipes open.
    with open(tmp_path / "killed.log", "w") as log:
        killed = subprocess.Popen(
            [sys.executable, "-m", "attnlab", *args],
            cwd=tmp_path,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **kill},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        assert killed.wait(timeout=600) == -9, (tmp_path / "killed.log").read_text()[-3000:]
    (worker,) = map(int, Path(f"{sweep_dir}.pids").read_text().split())
    deadline = time.monotonic() + 2
    while not gone(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not gone(worker):
        os.kill(worker, 9)  # leave no process behind
        raise AssertionError("the worker outlived its sweep")
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, shown(proc)
    rows = report_rows(sweep_dir)
    assert len(rows) == 2 and set(rows["status"]) == {"completed"}, rows


def test_one_joblib_worker_killed_loses_no_other_job(tmp_path):
    """Item 2: a joblib worker is SIGKILLed (as the OOM killer would) while the job beside
    it has a trained cell to write; loky then kills that healthy worker too. Every job
    without a record runs again alone: both cells complete, exit 0."""
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *GRID, "hydra.sweeper.pack=false", "hydra/launcher=joblib"]
    args += ["hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}"]
    kill = injected(
        ATTNLAB_TEST_KILL="sibling",
        ATTNLAB_TEST_KILL_DIR=str(sweep_dir),
        ATTNLAB_TEST_KILL_CLASSES="5",
        ATTNLAB_TEST_KILL_LINGER="3",
    )
    proc = run_cli(args, cwd=tmp_path, env=kill)
    assert Path(f"{sweep_dir}.pids").exists(), "the kill did not happen"
    assert proc.returncode == 0, shown(proc)
    rows = report_rows(sweep_dir)
    assert len(rows) == 2 and set(rows["status"]) == {"completed"}, rows
