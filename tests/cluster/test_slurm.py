"""Sweeps through hydra/launcher=attnlab_slurm against a real one-node SLURM (issue 15).

The tiny grid's report equals the default launcher's, with one SLURM job per pack (fewer
jobs than cells); a failing cell is reported (exit 1); a SLURM time limit fails the cell
inside its job; scancel of one array task mid-run leaves the report of every finished cell,
the cancelled cells failed with their SLURM state, no traceback, and a rerun completes the
grid. A job lost while SLURM's accounting is down is submitit's to see, and it cannot (the
xfail says why).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..conftest import run_cli, shown
from . import slurm
from .conftest import GRID, TINY, assert_same_report, read_report

pytestmark = pytest.mark.slow

SMALL = ["data.samples=600", "data.probe_samples=100", "data.classes=2", "seeds=[0]"]
# One core per job, so two jobs run at once on a 2-core node.
SLURM = ["hydra/launcher=attnlab_slurm", "hydra.launcher.cpus_per_task=1"]
# One seed at 600 samples trains ~2000 epochs in 5 s here: these run ~1 min and ~5 min.
MINUTE, LONG = 20000, 100000
TIMED_OUT = "UncompletedJobError: Job not requeued because: timed-out too many times."


def array_ids(sweep_dir: Path) -> list[str]:
    """SLURM job ids of the sweep, from submitit's log dirs (<sweep>/.submitit/<id>[_<task>])."""
    dirs = (sweep_dir / ".submitit").glob("[0-9]*")  # not submitit's .submission_file_*.sh
    return sorted({p.name.split("_")[0] for p in dirs})


def command(sweep_dir: Path, *overrides: str) -> list[str]:
    return ["-m", *overrides, f"hydra.sweep.dir={sweep_dir}"]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout:.0f} s")
        time.sleep(1)


@pytest.fixture
def sweep_dir(cluster: slurm.Cluster, tmp_path: Path) -> Iterator[Path]:
    """The test's sweep dir; its SLURM jobs are cancelled afterwards, whatever happened."""
    path = tmp_path / "sweep"
    yield path
    cluster.cancel(*array_ids(path))


@pytest.fixture(scope="module")
def tiny_grid(cluster: slurm.Cluster, default_grid: Path, tmp_path_factory: pytest.TempPathFactory):
    """(default launcher's sweep dir, SLURM's completed process and sweep dir) of the grid."""
    root = tmp_path_factory.mktemp("slurm_grid")
    proc = run_cli(command(root / "slurm", *GRID, *TINY, *SLURM), cwd=root, env=cluster.env)
    return default_grid, proc, root / "slurm"


def test_tiny_grid_report_equals_the_default_launchers(cluster, tiny_grid):
    ref_dir, proc, sweep_dir = tiny_grid
    assert proc.returncode == 0, shown(proc)
    assert_same_report(sweep_dir, ref_dir)
    # The jobs really went through SLURM: one array, every task COMPLETED in its accounting.
    (array,) = array_ids(sweep_dir)
    assert set(cluster.states([array]).values()) == {"COMPLETED"}


def test_packs_per_job_fewer_jobs_than_cells(cluster, tiny_grid):
    _, proc, sweep_dir = tiny_grid
    assert proc.returncode == 0, shown(proc)
    # classes 2, 5 x attn_layers 1, 2: the default launcher trains one pack per depth.
    assert len(cluster.states(array_ids(sweep_dir))) == 2


def test_failing_cell_is_reported_and_the_sweep_exits_1(cluster, sweep_dir):
    overrides = ["data.classes=2,30000000", "model.attn_layers=1", *TINY, *SLURM]
    proc = run_cli(command(sweep_dir, *overrides), cwd=sweep_dir.parent, env=cluster.env)
    assert proc.returncode == 1, proc.stderr
    assert "1 of 2 cell(s) of this run failed" in proc.stderr
    assert "Traceback" not in proc.stderr
    report = read_report(sweep_dir)
    cells = {c: list(g["status"]) for c, g in report.groupby("data.classes")}
    assert cells == {30000000: ["failed"] * 2, 2: ["completed"] * 2}
    failed = report[report["data.classes"] == 30000000]
    assert failed["error"].str.startswith("data.classes=30000000: the cell needs").all()
    # The bad cell was refused before any job started: one job, for the good cell.
    assert list(cluster.states(array_ids(sweep_dir)).values()) == ["COMPLETED"]


def test_time_limit_fails_the_cell_inside_its_job(cluster, sweep_dir):
    # timeout_min=1 is under submitit's signal_delay_s (120 s): SLURM sends USR2 at a
    # time-limit check (~30 s in), submitit's handler finds the job timed out and, as the
    # job may not be requeued (max_num_timeout=0), raises inside the cell.
    overrides = [*SMALL, f"trainer.epochs={LONG}", *SLURM]
    overrides.append("hydra.launcher.timeout_min=1")
    proc = run_cli(command(sweep_dir, *overrides), cwd=sweep_dir.parent, env=cluster.env)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    (row,) = read_report(sweep_dir).to_dict("records")
    assert row["status"] == "failed"
    assert (
        row["error"] == "UncompletedJobError: Job not requeued because: timed-out too many times."
    )

    # Mostly the job then ends COMPLETED, before its limit; when the warning comes late (a
    # loaded slurmctld sent it with the kill at the limit, seen once), sacct says TIMEOUT,
    # but the cell is failed the same way within KillWait.
    # sacct can still say RUNNING for a moment after the parent has the job's result.
    def ended() -> bool:
        states = set(cluster.states(array_ids(sweep_dir)).values())
        return len(states) == 1 and states <= {"COMPLETED", "TIMEOUT"}

    wait_until(ended, 60, "the job COMPLETED or TIMEOUT in sacct")


def start_sweep(sweep_dir: Path, cluster: slurm.Cluster, *overrides: str) -> subprocess.Popen:
    sweep_dir.parent.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "attnlab", *command(sweep_dir, *overrides)]
    env = {**os.environ, **cluster.env, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        args, cwd=sweep_dir.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def test_scancel_of_one_array_task_keeps_the_report(cluster, sweep_dir):
    # Three cells, two cores: the short one and a minute-long one start at once, the other
    # minute-long one when the short one is done; then the first minute-long one is cancelled.
    overrides = [*SMALL, f"trainer.epochs=1,{MINUTE},{MINUTE + 1}"]
    parent = start_sweep(sweep_dir, cluster, *overrides, *SLURM)
    try:

        def states() -> dict[str, str]:
            return cluster.states(array_ids(sweep_dir)) if array_ids(sweep_dir) else {}

        wait_until(
            lambda: sorted(states().values()) == ["COMPLETED", "RUNNING", "RUNNING"],
            180,
            "one task completed and two running",
        )
        victim = min(j for j, s in states().items() if s == "RUNNING")
        cluster.cancel(victim)
        out, err = parent.communicate(timeout=180)
    finally:
        parent.kill()
    assert parent.returncode not in (0, None)
    assert "Traceback" not in err
    assert "resume" in err.lower()  # one line saying how
    report = read_report(sweep_dir)
    status = dict(zip(report["trainer.epochs"], report["status"], strict=True))
    assert status[1] == "completed" and status[MINUTE] == "failed"
    cancelled = report[report["trainer.epochs"] == MINUTE]["error"].iloc[0]
    assert "CANCELLED" in cancelled
    # The rest of the array is cancelled or reported, not left running.
    assert not {s for s in states().values()} & {"RUNNING", "PENDING"}
    rerun = run_cli(command(sweep_dir, *overrides, *SLURM), cwd=sweep_dir.parent, env=cluster.env)
    assert rerun.returncode == 0, shown(rerun)
    again = read_report(sweep_dir)
    assert len(again) == 3 and set(again["status"]) <= {"completed", "cached"}


@pytest.mark.xfail(
    run=False,
    reason="without accounting the parent polls forever: sacct fails (exit 1), submitit logs "
    "'Bypassing sacct error ..., status may be inaccurate' and takes the job's state as "
    "UNKNOWN, which it counts as not done (measured: still polling 75 s after the job left "
    "squeue); not run, as it would hang until the timeout",
)
def test_job_lost_without_accounting_is_reported(cluster, sweep_dir):
    cluster.stop("slurmdbd")
    try:
        overrides = [*SMALL, f"trainer.epochs={LONG}"]
        parent = start_sweep(sweep_dir, cluster, *overrides, *SLURM)
        try:
            wait_until(lambda: "RUNNING" in cluster.queued().values(), 120, "the job running")
            (job,) = cluster.queued()
            cluster.cancel(job)
            wait_until(lambda: not cluster.queued(), 60, "the job leaving the queue")
            out, err = parent.communicate(timeout=120)
        finally:
            parent.kill()
        assert parent.returncode not in (0, None)
        assert "Traceback" not in err
        (row,) = read_report(sweep_dir).to_dict("records")
        assert row["status"] == "failed"
    finally:
        slurm.up(cluster.root)  # restarts every daemon, slurmdbd included
