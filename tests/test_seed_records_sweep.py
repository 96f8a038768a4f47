"""Growing a sweep's seeds end to end (issue 21): a rerun with more seeds trains only the
missing ones, into the cells' own dirs (old ones included), every byte on disk kept; a
rerun with fewer seeds trains nothing and the report says which seeds it used."""

import json
from pathlib import Path

import pandas as pd
import pytest

from attnlab.runs import records

from .conftest import DEBUG_TINY, run_cli, shown

pytestmark = pytest.mark.slow

GRID = ["data.classes=2,5", DEBUG_TINY]


def sweep(tmp_path: Path, sweep_dir: Path, seeds: str):
    proc = run_cli(["-m", *GRID, f"seeds={seeds}", f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, shown(proc)
    return proc


def cell_bytes(sweep_dir: Path) -> dict[str, bytes]:
    """Every file of every cell dir but run.json (each run's own account of the cell)."""
    return {
        str(p.relative_to(sweep_dir)): p.read_bytes()
        for d in records.cell_dirs(sweep_dir)
        for p in d.rglob("*")
        if p.is_file() and p.name != records.RUN_FILE
    }


def test_more_seeds_train_only_the_missing_ones_and_fewer_train_nothing(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep(tmp_path, sweep_dir, "[0,1]")
    # Old dirs (attnlab before seed records hashed the seeds into the name): found by their
    # cell.json, they stay the cells' homes.
    for cell in records.cell_dirs(sweep_dir):
        cell.rename(cell.with_name(cell.name + "-old"))
    homes = sorted(p.name for p in records.cell_dirs(sweep_dir))
    first_run = json.loads((sweep_dir / records.SWEEP_STATE).read_text())["run_id"]
    before = cell_bytes(sweep_dir)

    proc = sweep(tmp_path, sweep_dir, "[0,1,2,3]")
    assert "2 to train in 1 job(s) (2 of them only their missing seeds)" in proc.stdout
    grow_run = json.loads((sweep_dir / records.SWEEP_STATE).read_text())["run_id"]
    assert sorted(p.name for p in records.cell_dirs(sweep_dir)) == homes  # one dir per cell
    after = cell_bytes(sweep_dir)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing rewritten
    for home in homes:
        added = sorted(p.parent.name for p in (sweep_dir / home).glob("seeds/*/metrics.json"))
        assert added == ["2", "3"]
        record = records.read_cell(sweep_dir / home, sweep_dir)
        assert record.seed_run_ids == {0: first_run, 1: first_run, 2: grow_run, 3: grow_run}
    report = pd.read_csv(sweep_dir / "report.csv")
    assert len(report) == 8 and report["job"].nunique() == 2
    by_seed = report.groupby("seed")["status"].agg(set).to_dict()
    assert by_seed == {0: {"cached"}, 1: {"cached"}, 2: {"completed"}, 3: {"completed"}}
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert list(summary["n_seeds"]) == [4, 4]
    assert learning_curve_lines(sweep_dir) == {2: [0, 1, 2, 3], 5: [0, 1, 2, 3]}

    proc = sweep(tmp_path, sweep_dir, "[0,1]")
    assert "0 to train in 0 job(s), 2 reused" in proc.stdout
    assert cell_bytes(sweep_dir) == after
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert list(summary["n_seeds"]) == [2, 2]
    text = (sweep_dir / "report.md").read_text()
    assert "2 cell(s) hold more seeds than the latest run asked for" in text
    assert "leaving out 4 recorded seed(s)" in text
    assert set(pd.read_csv(sweep_dir / "report.csv")["status"]) == {"cached"}
    assert learning_curve_lines(sweep_dir) == {2: [0, 1], 5: [0, 1]}


def learning_curve_lines(sweep_dir: Path) -> dict[int, list[int]]:
    """The learning-curve figure's lines (one per cell, by class count) and the seeds each
    is computed from, as the report computes them."""
    from attnlab.runs.report import cell_histories, collect_runs, summarize

    report = collect_runs(sweep_dir)
    histories = cell_histories(sweep_dir, report, summarize(report))
    return {
        int(row["data.classes"]): sorted(int(s) for s in history["seed"].unique())
        for row, history in histories
    }


def test_a_seed_trained_among_others_keeps_its_numbers(make_config):
    """What "unchanged" means for a seed a later run adds beside other seeds (documented in
    docs/sweeps-and-files.md, measured by benchmarks/seed_alone_vs_among.py): its numbers
    alone and among seeds 0..7 agree to float32 rounding (measured ~2e-8), asserted to 1e-5
    in every metric and every point of its learning curves."""
    import math

    from attnlab.engine.experiment import train_and_measure

    together = train_and_measure(make_config("data.classes=5", "seeds=[0,1,2,3,4,5,6,7]"))
    for seed in (0, 5):
        alone = train_and_measure(make_config("data.classes=5", f"seeds=[{seed}]"))
        (among,) = [r for r in together.records if r["seed"] == seed]
        (mine,) = alone.records
        for key, value in mine.items():
            if key in ("seed", "train_seconds") or isinstance(value, str) or value is None:
                assert key in ("seed", "train_seconds") or among[key] == value, key
                continue
            other = among[key]
            if isinstance(value, float) and math.isnan(value):
                assert isinstance(other, float) and math.isnan(other), key
            else:
                assert abs(float(value) - float(other)) <= 1e-5, (seed, key, value, other)
        curves = together.history[together.history["seed"] == seed].reset_index(drop=True)
        own = alone.history.reset_index(drop=True)
        gaps = (curves[own.columns] - own).abs().fillna(0.0)
        assert float(gaps.to_numpy().max()) <= 1e-5, gaps.max()


def test_two_jobs_of_one_cell_under_a_parallel_launcher_run_one_after_the_other(tmp_path):
    """Seeds are not part of a cell, so `seeds=[0,1],[2,3]` under the basic sweeper is two
    jobs of one cell dir: with two joblib workers they would both write the first training's
    files. The cell's lock runs them in turn: one writes metrics.json with its seeds, the other
    adds its seeds as seed records, and the cell's history.csv holds the seeds of its
    metrics.json only."""
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "data.classes=2", DEBUG_TINY, "seeds=[0,1],[2,3]", "hydra/sweeper=basic"]
    args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}"]
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, shown(proc)
    (home,) = records.cell_dirs(sweep_dir)
    first = json.loads((home / records.METRICS_FILE).read_text())
    first_seeds = sorted(run["seed"] for run in first["runs"])
    assert first_seeds in ([0, 1], [2, 3])
    added = sorted(int(p.parent.name) for p in home.glob("seeds/*/metrics.json"))
    assert sorted(first_seeds + added) == [0, 1, 2, 3]
    assert sorted(pd.read_csv(home / "history.csv")["seed"].unique()) == first_seeds
    assert sorted(pd.read_csv(home / "attention.csv")["seed"].unique()) == first_seeds
    assert sorted(r["seed"] for r in records.read_cell(home, sweep_dir).runs) == [0, 1, 2, 3]
