"""Real multiruns in a subprocess: the report, failure isolation, resume, SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from attnlab.engine.metrics import RUN_METRICS

from .conftest import DEBUG_TINY, run_cli, shown

pytestmark = pytest.mark.slow

TINY = [DEBUG_TINY]


def sweep(tmp_path, *overrides):
    sweep_dir = tmp_path / "sweep"
    proc = run_cli(["-m", *overrides, *TINY, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    report = pd.read_csv(sweep_dir / "report.csv") if (sweep_dir / "report.csv").exists() else None
    return proc, report, sweep_dir


def by_cell(report, key="data.classes"):
    return {c: g.sort_values("seed") for c, g in report.groupby(key)}


def test_grid_writes_tidy_report_summary_and_figures(tmp_path):
    proc, report, sweep_dir = sweep(tmp_path, "data.classes=2,5", "model.attn_layers=1,2")
    assert proc.returncode == 0, shown(proc)
    assert len(report) == 4 * 2 and report["job"].nunique() == 4
    assert list(report.columns[:3]) == ["job", "data.features", "data.classes"]
    tail = ["seeds", "seed", "status", "error", *RUN_METRICS]
    assert list(report.columns[-len(tail) :]) == tail
    assert set(report["status"]) == {"completed"}
    assert sorted(report.groupby(["data.classes", "model.attn_layers"]).size()) == [2, 2, 2, 2]
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert len(summary) == 4 and (summary["n_seeds"] == 2).all()
    assert {"focus_rate", "val_accuracy_ci_low", "attn_entropy_ci_high"} <= set(summary.columns)
    assert "| data.classes | model.attn_layers |" in (sweep_dir / "report.md").read_text()
    figures = {p.name for p in (sweep_dir / "figures").iterdir()}
    assert {
        "heatmap_val_accuracy_mean.png",
        "heatmap_focus_rate.png",
        "attention_grid.png",
        "val_accuracy_vs_data.classes.png",
        "attn_key_weight_vs_data.classes.png",
    } <= figures
    log = proc.stdout + proc.stderr
    assert "[4/4] " in log and "focused" in log and "s left" in log


def test_failed_job_is_isolated_then_resume_reuses_finished_cells(tmp_path):
    # 30000000 classes need ~200 GiB: the cell fails alone, before training (a value out of
    # range in every cell, as data.classes=1, is refused before anything runs instead).
    proc, report, sweep_dir = sweep(tmp_path, "data.classes=5,30000000")
    assert proc.returncode == 1
    assert "1 of 2 cell(s) of this run failed" in proc.stderr
    cells = by_cell(report)
    assert list(cells[30000000]["status"]) == ["failed", "failed"]
    assert cells[30000000]["error"].str.startswith("data.classes=30000000: the cell needs").all()
    assert list(cells[5]["status"]) == ["completed", "completed"]
    first = cells[5][list(RUN_METRICS)].reset_index(drop=True)

    # The same command again: the finished cell is reused, the failed one is retried.
    proc, report, _ = sweep(tmp_path, "data.classes=5,30000000")
    assert proc.returncode == 1
    cells = by_cell(report)
    assert list(cells[5]["status"]) == ["cached", "cached"]
    pd.testing.assert_frame_equal(cells[5][list(RUN_METRICS)].reset_index(drop=True), first)

    # A grown grid runs only the new cell.
    proc, report, _ = sweep(tmp_path, "data.classes=5,2")
    assert proc.returncode == 0, shown(proc)
    cells = by_cell(report)
    assert list(cells[5]["status"]) == ["cached", "cached"]
    assert list(cells[2]["status"]) == ["completed", "completed"]
    assert len(report) == 3 * 2  # the old failed cell keeps its own dir and rows


def test_cache_key_is_the_whole_config_but_the_seeds(tmp_path):
    sweep(tmp_path, "data.classes=3")
    sweep_dir = tmp_path / "sweep"
    (cell,) = list(sweep_dir.glob("*/metrics.json"))
    first = {p: p.read_bytes() for p in cell.parent.iterdir() if p.is_file()}
    first.pop(cell.parent / "run.json")  # each run's own account of the cell
    before = pd.read_csv(sweep_dir / "report.csv")
    proc = run_cli(
        ["-m", "data.classes=3", DEBUG_TINY, "seeds=[0,1,2]", f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, shown(proc)
    report = pd.read_csv(sweep_dir / "report.csv")
    # Seeds are not part of a cell (issue 21): the same cell grows by seed 2 alone, in its
    # one dir; seeds 0 and 1 are reused with their numbers, their files untouched.
    assert report["job"].nunique() == 1 and list(report["seed"]) == [0, 1, 2]
    assert list(report["status"]) == ["cached", "cached", "completed"]
    pd.testing.assert_frame_equal(
        report[list(RUN_METRICS)].iloc[:2], before[list(RUN_METRICS)], check_dtype=False
    )
    assert {p: p.read_bytes() for p in first} == first  # the earlier files, as they were
    # Any other value is another cell, in its own dir.
    proc = run_cli(
        ["-m", "data.classes=3", DEBUG_TINY, "data.features=16", f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, shown(proc)
    report = pd.read_csv(sweep_dir / "report.csv")
    assert report["job"].nunique() == 2


def test_log_settings_do_not_make_a_new_cell(tmp_path):
    sweep(tmp_path, "data.classes=3")
    proc, report, _ = sweep(tmp_path, "data.classes=3", "trainer.verbose=1")
    assert proc.returncode == 0, shown(proc)
    assert list(report["status"]) == ["cached", "cached"]


def test_sigkill_mid_sweep_then_rerun_gives_each_cell_once(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = [
        sys.executable,
        "-m",
        "attnlab",
        "-m",
        "data.classes=2,3,4",
        # One cell per job, so the kill lands between cells (packed, all three would
        # train as one model before any is written).
        "hydra.sweeper.pack=false",
        DEBUG_TINY,
        "trainer.epochs=3",
        "seeds=[0,1]",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        args,
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not list(sweep_dir.glob("*/metrics.json")) and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = list(sweep_dir.glob("*/metrics.json"))
    assert 1 <= len(finished) < 3
    for path in finished:
        json.loads(path.read_text())  # whole, never half-written

    rerun = run_cli(args[3:], cwd=tmp_path)
    assert rerun.returncode == 0, shown(rerun)
    report = pd.read_csv(sweep_dir / "report.csv")
    assert sorted(report["data.classes"]) == [2, 2, 3, 3, 4, 4]
    assert report["job"].nunique() == 3
    assert (report["status"] == "cached").sum() >= 2
    assert set(report["status"]) <= {"cached", "completed"}


def test_a_baseline_on_the_command_line_decides_the_comparisons_and_a_bad_one_is_refused(
    tmp_path,
):
    from .conftest import one_line_error

    proc, _, sweep_dir = sweep(
        tmp_path, "data.classes=2,5", "+hydra.sweeper.baseline.data.classes=9"
    )
    assert proc.returncode == 2, shown(proc)
    one_line_error(proc, "hydra.sweeper.baseline.data.classes=9 is not allowed", "one of 2, 5")
    assert not list(sweep_dir.glob("*/metrics.json"))  # refused before any training
    proc, _, sweep_dir = sweep(
        tmp_path, "data.classes=2,5", "+hydra.sweeper.baseline.data.classes=5"
    )
    assert proc.returncode == 0, shown(proc)
    rows = pd.read_csv(sweep_dir / "comparisons.csv")
    assert set(rows["value"]) == {2} and set(rows["baseline"]) == {5}
