"""Hydra settings and ways of running a sweep that Hydra's basic sweeper supports, under
attnlab's sweeper (issue 19): real multiruns in a subprocess."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hydra.test_utils.test_utils import SweepTaskFunction

from attnlab.engine.config import ConfigError

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


def in_process_multirun(
    sweep_dir: Path, overrides: list[str], task: Any, app: Path | None = None
) -> Any:
    """Hydra's Hydra.multirun() in this process, as Hydra's test suites and programmatic
    users call it (no CLI: hydra.mode stays unset); app: a dir holding another app's
    config.yaml instead of attnlab's."""
    sweep = SweepTaskFunction()
    if app is None:
        sweep.calling_module, sweep.config_path = "attnlab.__main__", "conf"
    else:
        sweep.calling_file, sweep.config_path = str(app / "app.py"), "."
    sweep.config_name, sweep.task_function = "config", task
    sweep.temp_dir, sweep.overrides = str(sweep_dir), overrides
    return sweep


def test_jobs_of_an_in_process_multirun_are_sweep_jobs(tmp_path):
    from attnlab.sweep.jobs import run_job

    sweep_dir = tmp_path / "sweep"
    with in_process_multirun(sweep_dir, ["data.classes=2,3", DEBUG_TINY], run_job):
        report = pd.read_csv(sweep_dir / "report.csv")
    assert set(report["status"]) == {"completed"} and report["data.classes"].nunique() == 2


def test_the_sweeper_makes_its_own_sweep_dir_without_attnlabs_callback(tmp_path):
    proc = run_cli(
        ["-m", "~hydra.callbacks.sweep", "data.classes=2,3", DEBUG_TINY, "hydra.sweep.dir=a/b"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, shown(proc)
    assert (tmp_path / "a" / "b" / "multirun.yaml").exists()
    assert len(list((tmp_path / "a" / "b").glob("*/metrics.json"))) == 2


def test_another_app_under_attnlabs_sweeper_is_refused_before_writing(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "config.yaml").write_text("defaults:\n  - override hydra/sweeper: attnlab\nfoo: 10\n")
    sweep_dir = tmp_path / "sweep"
    calls: list[Any] = []
    with (
        pytest.raises(ConfigError, match=r"attnlab's sweeper runs attnlab's task only"),
        in_process_multirun(sweep_dir, ["foo=1,2"], calls.append, app=app),
    ):
        pass
    assert calls == [] and not any(sweep_dir.iterdir())
