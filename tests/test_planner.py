"""The sweeper's planner and the sweep callback in process, on the real configs: no
subprocess, so the plan, the sweep dir's state and the report are checked directly.

The launcher is a stand-in that records the jobs it is given and runs each pack job in
this process (attnlab.sweep.jobs.run_pack_job), as Hydra's basic launcher would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext
from omegaconf import DictConfig

from attnlab.engine.config import ConfigError
from attnlab.runs import records
from attnlab.sweep import callback
from attnlab.sweep.jobs import run_pack_job
from attnlab.sweep.planner import SweepRequest, sweep

from .conftest import DEBUG_TINY


class InProcessLauncher:
    """Records each launch's jobs; runs every pack job of the sweep dir in this process."""

    def __init__(self, sweep_dir: Path) -> None:
        self.sweep_dir = sweep_dir
        self.batches: list[list[list[str]]] = []

    def launch(self, batch: list[list[str]], initial_job_idx: int) -> list[JobReturn]:
        self.batches.append(batch)
        specs = sorted((self.sweep_dir / records.JOBS_DIR).glob("*.json"))
        returns = []
        for spec in specs:
            run_pack_job(self.sweep_dir, spec.stem, None)
            returns.append(JobReturn(status=JobStatus.COMPLETED, _return_value=None))
        return returns


def compose_sweep(sweep_dir: Path, overrides: list[str]) -> tuple[DictConfig, HydraContext]:
    """The config `attnlab -m OVERRIDES hydra.sweep.dir=...` composes, with Hydra's context."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="attnlab.conf", version_base="1.3"):
        config = compose(
            "config", overrides=[f"hydra.sweep.dir={sweep_dir}"], return_hydra_config=True
        )
        loader = GlobalHydra.instance().config_loader()
    return config, HydraContext(config_loader=loader, callbacks=None)  # type: ignore[arg-type]


def run_sweep(tmp_path: Path, arguments: list[str], **options: Any) -> tuple[Path, Any]:
    sweep_dir = tmp_path / "sweep"
    config, context = compose_sweep(sweep_dir, [])
    launcher = InProcessLauncher(sweep_dir)
    owner = callback.SweepCallback()
    owner.on_multirun_start(config)
    try:
        sweep(config, context, launcher, SweepRequest(arguments=arguments, **options))
        owner.on_multirun_end(config)
    finally:
        callback.outcome.lock.release()
    return sweep_dir, launcher


@pytest.fixture
def fresh_outcome(monkeypatch):
    monkeypatch.setattr(callback, "outcome", callback.SweepOutcome())


def test_the_planner_packs_cells_of_one_shape_and_the_callback_reports(tmp_path, fresh_outcome):
    grid = ["data.classes=2,5", "model.attn_layers=1,2", DEBUG_TINY]
    sweep_dir, launcher = run_sweep(tmp_path, grid)
    # Two model shapes (depth 1, depth 2), each holding classes 2 and 5: two jobs, one launch.
    assert len(launcher.batches) == 1 and len(launcher.batches[0]) == 2
    state = json.loads((sweep_dir / records.SWEEP_STATE).read_text())
    assert len(state["cells"]) == 4 and set(state["work"].values()) == {2 * 1}  # seeds x epochs
    specs = [json.loads(p.read_text()) for p in sorted((sweep_dir / ".jobs").glob("*.json"))]
    assert [len(s["cells"]) for s in specs] == [2, 2]
    assert {e["config"]["data"]["classes"] for s in specs for e in s["cells"]} == {2, 5}
    report = pd.read_csv(sweep_dir / "report.csv")
    assert len(report) == 4 * 2 and set(report["status"]) == {"completed"}
    assert (sweep_dir / "report.md").exists() and (sweep_dir / "multirun.yaml").exists()
    assert callback.outcome.cells == 4 and callback.outcome.failed == []


@pytest.mark.slow
def test_a_rerun_reuses_every_finished_cell_and_launches_nothing(tmp_path, fresh_outcome):
    grid = ["data.classes=2,5", DEBUG_TINY]
    sweep_dir, _ = run_sweep(tmp_path, grid)
    before = {p: p.read_bytes() for p in sweep_dir.glob("*/metrics.json")}
    callback.outcome = callback.SweepOutcome()
    _, launcher = run_sweep(tmp_path, grid)
    assert launcher.batches == []  # nothing to train: no job at all
    assert {p: p.read_bytes() for p in before} == before
    report = pd.read_csv(sweep_dir / "report.csv")
    assert set(report["status"]) == {"cached"}


@pytest.mark.slow
def test_an_invalid_cell_is_recorded_and_the_valid_ones_still_run(tmp_path, fresh_outcome):
    sweep_dir, launcher = run_sweep(tmp_path, ["data.classes=1,2", DEBUG_TINY])
    assert len(launcher.batches[0]) == 1  # only the valid cell became a job
    report = pd.read_csv(sweep_dir / "report.csv", keep_default_na=False)
    by_classes = {int(c): list(g["status"]) for c, g in report.groupby("data.classes")}
    assert by_classes == {1: ["failed", "failed"], 2: ["completed", "completed"]}
    assert report[report["data.classes"] == 1]["error"].str.startswith("data.classes=1").all()
    assert len(callback.outcome.failed) == 1 and callback.outcome.cells == 2


def test_max_replicas_below_one_is_refused_before_anything_is_written(tmp_path):
    sweep_dir = tmp_path / "sweep"
    config, context = compose_sweep(sweep_dir, [])
    with pytest.raises(ConfigError, match=r"hydra.sweeper.max_replicas=0 is not allowed"):
        sweep(config, context, InProcessLauncher(sweep_dir), SweepRequest(max_replicas=0))
    assert not sweep_dir.exists()


@pytest.mark.parametrize(
    ("baseline", "message"),
    [
        (
            {"data": {"classes": 7}},
            r"hydra.sweeper.baseline.data.classes=7 is not allowed: one of 2, 5",
        ),
        (
            {"model": {"attn_layers": 2}},
            r"model.attn_layers is not a swept axis \(swept: data.classes\)",
        ),
    ],
)
def test_a_baseline_that_fits_no_axis_is_refused_before_any_cell_is_written(
    tmp_path, baseline, message
):
    sweep_dir = tmp_path / "sweep"
    config, context = compose_sweep(sweep_dir, [])
    sweep_dir.mkdir()
    request = SweepRequest(arguments=["data.classes=2,5", DEBUG_TINY], baseline=baseline)
    with pytest.raises(ConfigError, match=message):
        sweep(config, context, InProcessLauncher(sweep_dir), request)
    assert list(sweep_dir.iterdir()) == []
