"""Issue 20, item 20: planning progress for big grids, and a dry run that lists the cells,
packs and memory estimates without training or writing anything."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.types import HydraContext
from omegaconf import DictConfig

from attnlab.engine.metrics import RUN_METRICS
from attnlab.sweep import callback, planner
from attnlab.sweep.planner import SweepRequest, sweep

from .conftest import DEBUG_TINY


def compose_sweep(sweep_dir: Path) -> tuple[DictConfig, HydraContext]:
    """`attnlab -m hydra.sweeper.dry_run=true hydra.sweep.dir=...`'s config and context."""
    GlobalHydra.instance().clear()
    overrides = [f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.dry_run=true"]
    with initialize_config_module(config_module="attnlab.conf", version_base="1.3"):
        config = compose("config", overrides=overrides, return_hydra_config=True)
        loader = GlobalHydra.instance().config_loader()
    return config, HydraContext(config_loader=loader, callbacks=None)  # type: ignore[arg-type]


def test_composing_a_big_grid_says_how_far_it_is(monkeypatch, caplog):
    """Each cell takes 3 s of a fake clock: a line every 10 s with the count and the time
    left; none after the last cell (the plan's own line follows)."""
    ticks = iter(range(0, 1000, 3))
    monkeypatch.setattr(planner, "compose", lambda ctx, cfg, job, index: f"cell {index}")
    with caplog.at_level(logging.INFO, logger="attnlab.sweep.planner"):
        cells = planner.compose_all(None, None, [[]] * 12, clock=lambda: next(ticks))
    assert cells == [f"cell {i}" for i in range(12)]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "planning: composed 4 of 12 cells in 12 s, ~24 s left",
        "planning: composed 8 of 12 cells in 24 s, ~12 s left",
    ]


def test_a_small_grid_composes_without_progress_lines(monkeypatch, caplog):
    monkeypatch.setattr(planner, "compose", lambda ctx, cfg, job, index: index)
    with caplog.at_level(logging.INFO, logger="attnlab.sweep.planner"):
        planner.compose_all(None, None, [[]] * 3, clock=lambda: 0.0)
    assert caplog.records == []


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with its size and mtime: what a read-only run leaves alone."""
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


def finished_cell(context, config, overrides: list[str], sweep_dir: Path) -> str:
    """A finished cell as attnlab writes it, for the cell these overrides compose to."""
    cell = planner.compose(context, config, overrides)
    runs = [
        {"seed": s, "status": "completed", **dict.fromkeys(RUN_METRICS, 0.5), "attn_focused": True}
        for s in cell.config["seeds"]
    ]
    cell_dir = sweep_dir / cell.name
    cell_dir.mkdir(parents=True)
    (cell_dir / "cell.json").write_text(json.dumps({"config": cell.config}))
    (cell_dir / "metrics.json").write_text(json.dumps({"config": cell.config, "runs": runs}))
    return cell.name


@pytest.mark.slow  # composes 4 cells: over a second on a loaded 2-core machine
def test_a_dry_run_lists_cells_packs_and_memory_and_writes_nothing(tmp_path, monkeypatch, caplog):
    """hydra.sweeper.dry_run=true: a line per cell (cached, to train, invalid and why),
    per job (its cells, seeds, memory estimate); no launch, no file written or changed,
    and the sweep's end (the callback) leaves the dir alone too."""
    monkeypatch.setattr(callback, "outcome", callback.SweepOutcome())
    sweep_dir = tmp_path / "sweep"
    config, context = compose_sweep(sweep_dir)
    cached = finished_cell(context, config, [DEBUG_TINY, "data.classes=2"], sweep_dir)
    blocked = planner.compose(context, config, [DEBUG_TINY, "data.classes=5"]).name
    (sweep_dir / blocked).write_text("in the cell's place")
    before = snapshot(tmp_path)

    class NoLauncher:
        def launch(self, *args, **kwargs):
            raise AssertionError("a dry run launched a job")

    grid = [DEBUG_TINY, "data.classes=2,5,7,9", "seeds=[0,1]"]
    with caplog.at_level(logging.INFO, logger="attnlab.sweep.planner"):
        returns = sweep(config, context, NoLauncher(), SweepRequest(arguments=grid, dry_run=True))
        callback.SweepCallback().on_multirun_end(config)
    assert returns == []
    assert snapshot(tmp_path) == before
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith(f"dry run of 4 cells into {sweep_dir}")
    assert "2 to train in 1 job(s), 1 cached, 1 invalid" in lines[0]
    assert f"  cached    {cached}" in lines
    invalid = [line for line in lines if line.startswith(f"  invalid   {blocked}: ")]
    assert len(invalid) == 1 and "is a file" in invalid[0]
    to_train = [line.split()[-1] for line in lines if line.startswith("  to train  ")]
    assert len(to_train) == 2
    (job,) = [line for line in lines if line.startswith("  job ")]
    assert job.startswith("  job 1: 2 cell(s), 4 seed(s), ~") and " GiB: " in job
    assert all(name in job for name in to_train)

    # More seeds than recorded: the cell trains only the missing ones, as the real run would.
    caplog.clear()
    grown = SweepRequest(arguments=[DEBUG_TINY, "data.classes=2", "seeds=[0,1,2]"], dry_run=True)
    with caplog.at_level(logging.INFO, logger="attnlab.sweep.planner"):
        assert sweep(config, context, NoLauncher(), grown) == []
    lines = [r.getMessage() for r in caplog.records]
    assert "1 to train in 1 job(s), 0 cached, 0 invalid" in lines[0]
    assert f"  to train  {cached} (seeds [2]: the rest are recorded)" in lines
    assert [line for line in lines if line.startswith("  job ")][0].startswith(
        "  job 1: 1 cell(s), 1 seed(s), ~"
    )
    assert snapshot(tmp_path) == before


def test_a_dry_run_of_a_new_dir_makes_no_dir(tmp_path, monkeypatch):
    """A dry run into a dir that does not exist yet leaves no dir behind."""
    monkeypatch.setattr(callback, "outcome", callback.SweepOutcome())
    sweep_dir = tmp_path / "new" / "sweep"
    config, context = compose_sweep(sweep_dir)
    request = SweepRequest(arguments=[DEBUG_TINY, "seeds=[0]"], dry_run=True)
    assert sweep(config, context, None, request) == []
    callback.SweepCallback().on_multirun_end(config)
    assert list(tmp_path.iterdir()) == []
