"""Remote launchers for real: the session's SLURM cluster and the shared reference sweep.

The cluster is up once for every SLURM test and down at the end. Its tests skip with one
line saying why where the machine cannot run it (not root, no Debian packages to be had);
under CI (`CI` set, as root) that is a failure instead, so CI never passes by skipping them.
The reference is the tiny grid under attnlab's default launcher, which every launcher's
report must equal.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from filelock import FileLock

from attnlab.engine.metrics import RUN_METRICS

from ..conftest import DEBUG_TINY, run_cli, shown
from . import slurm

TINY = [DEBUG_TINY]
GRID = ["data.classes=2,5", "model.attn_layers=1,2"]
# Wall-clock time differs by launcher and load; every other metric must match.
COMPARED = [m for m in RUN_METRICS if m != "train_seconds"]


def read_report(sweep_dir: Path) -> pd.DataFrame:
    report = pd.read_csv(sweep_dir / "report.csv")
    return report.sort_values(["job", "seed"], ignore_index=True)


def assert_same_report(sweep_dir: Path, ref_dir: Path) -> None:
    """report.csv and summary.csv equal the reference's, up to row order and 1e-6."""
    ref, report = read_report(ref_dir), read_report(sweep_dir)
    assert len(report) == 4 * 2 and set(report["status"]) == {"completed"}
    exact = [c for c in ref.columns if c not in RUN_METRICS]
    pd.testing.assert_frame_equal(report[exact], ref[exact])
    pd.testing.assert_frame_equal(
        report[COMPARED], ref[COMPARED], check_exact=False, rtol=0, atol=1e-6
    )
    summary, ref_summary = (pd.read_csv(d / "summary.csv") for d in (sweep_dir, ref_dir))
    pd.testing.assert_frame_equal(summary, ref_summary, check_exact=False, rtol=0, atol=1e-6)


@pytest.fixture(scope="session")
def cluster() -> Iterator[slurm.Cluster]:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the slurm extra")
    # One cluster per machine (its dir and ports are fixed): a second test run at the same
    # time (another checkout) waits its turn instead of restarting the daemons under the first.
    with FileLock(f"{slurm.DEFAULT_DIR}.lock", timeout=1800):
        was_up = slurm.is_up()
        try:
            running = slurm.up()
        except slurm.ClusterUnavailable as err:
            if os.environ.get("CI") and os.geteuid() == 0:
                pytest.fail(f"CI runs the SLURM tests, but: {err}")
            pytest.skip(f"no SLURM cluster on this machine: {err}")
        yield running
        if not was_up:  # a cluster someone started by hand stays up
            slurm.down(running.root)


@pytest.fixture(scope="session")
def default_grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep dir of GRID x TINY under attnlab's default launcher: the reference report."""
    sweep_dir = tmp_path_factory.mktemp("default_grid") / "sweep"
    proc = run_cli(["-m", *GRID, *TINY, f"hydra.sweep.dir={sweep_dir}"], cwd=sweep_dir.parent)
    assert proc.returncode == 0, shown(proc)
    return sweep_dir
