"""Hydra settings and ways of running a sweep that Hydra's basic sweeper supports, under
attnlab's sweeper (issue 19): real multiruns in a subprocess."""

from __future__ import annotations

import pandas as pd
import pytest

from .conftest import DEBUG_TINY, run_cli, shown

pytestmark = pytest.mark.slow


def test_job_chdir_with_the_default_relative_sweep_dir_runs_every_cell(tmp_path):
    """hydra.job.chdir=True moves each job into its own dir: the pack job still finds its
    spec under the sweep dir, given relative to where the command ran."""
    proc = run_cli(
        ["-m", "data.classes=2,3", DEBUG_TINY, "hydra.job.chdir=True", "hydra.sweep.dir=sweep"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, shown(proc)
    report = pd.read_csv(tmp_path / "sweep" / "report.csv")
    assert set(report["status"]) == {"completed"} and report["data.classes"].nunique() == 2
