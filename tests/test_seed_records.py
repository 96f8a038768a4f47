"""Seed-level records (issue 21), on synthetic sweep dirs written by hand (no TensorFlow):
a cell's identity without its seeds, seeds added later as records of their own, several
dirs of one cell read as one, and the seeds a run asked for."""

import json
from pathlib import Path

import pandas as pd

from attnlab.engine.config import flatten
from attnlab.runs import records
from attnlab.runs.report import collect_runs, seed_csv, seed_notes
from attnlab.sweep.cells import Cell, default_values
from attnlab.sweep.planner import merge_seed_lists, sort_cells

CONFIG = {"data.classes": 5, "model.attn_layers": 1, "trainer.verbose": 0, "seeds": [0, 1]}


def _run(seed, accuracy=0.5, status="completed"):
    return {"seed": seed, "status": status, "val_accuracy": accuracy, "attn_focused": True}


def _doc(seeds, run_id="run1", config=CONFIG, accuracy=0.5):
    runs = [_run(s, accuracy) for s in seeds]
    return {"config": {**config, "seeds": list(seeds)}, "runs": runs, "run_id": run_id}


def _csvs(place: Path, seeds, value=0.1):
    place.mkdir(parents=True, exist_ok=True)
    rows = [{"seed": s, "epoch": 1, "val_accuracy": value, "train_loss": 1.0} for s in seeds]
    pd.DataFrame(rows).to_csv(place / records.HISTORY_CSV, index=False)
    rows = [{"seed": s, "column": c, "weight": 0.5} for s in seeds for c in (0, 1)]
    pd.DataFrame(rows).to_csv(place / records.ATTENTION_CSV, index=False)


def _cell(cell_dir: Path, seeds=(0, 1), run_id="run1", config=CONFIG, accuracy=0.5) -> Path:
    """A finished cell as its first training writes it."""
    records.write_cell(cell_dir, {**config, "seeds": list(seeds)})
    _csvs(cell_dir, seeds)
    assert records.write_result(cell_dir, _doc(seeds, run_id, config, accuracy))
    records.write_attempt(cell_dir, "completed", run_id)
    return cell_dir


def _grow(cell_dir: Path, seeds, run_id="run2", accuracy=0.7):
    """Seeds added by a later run, as attnlab.runs.cell.write_seed_outputs writes them."""
    for seed in seeds:
        _csvs(records.seed_dir(cell_dir, seed), [seed], value=0.2)
        assert records.write_seed_result(cell_dir, seed, _doc([seed], run_id, accuracy=accuracy))
    records.write_attempt(cell_dir, "completed", run_id)


def _bytes(directory: Path) -> dict[str, bytes]:
    files = [p for p in directory.rglob("*") if p.is_file()]
    return {str(p.relative_to(directory)): p.read_bytes() for p in files}


def test_seeds_are_not_part_of_a_cells_identity():
    grown = {**CONFIG, "seeds": list(range(10))}
    assert records.identity_key(CONFIG) == records.identity_key(grown)
    assert records.cell_name(CONFIG, {}) == records.cell_name(grown, {})
    assert records.identity_key(CONFIG) != records.identity_key({**CONFIG, "data.classes": 6})


def test_seeds_added_later_are_read_with_the_first_ones_in_seed_order(tmp_path):
    cell = _cell(tmp_path / "cell", seeds=(0, 3))
    _grow(cell, [1, 2])
    record = records.read_cell(cell, tmp_path)
    assert record.finished and [r["seed"] for r in record.runs] == [0, 1, 2, 3]
    assert record.config["seeds"] == [0, 1, 2, 3]
    assert record.seed_run_ids == {0: "run1", 3: "run1", 1: "run2", 2: "run2"}
    report = collect_runs(tmp_path)
    assert list(report["seed"]) == [0, 1, 2, 3]
    # The latest run trained seeds 1 and 2: the others are reused, numbers unchanged.
    assert list(report["status"]) == ["cached", "completed", "completed", "cached"]
    assert list(report["val_accuracy"]) == [0.5, 0.7, 0.7, 0.5]
    history, why = seed_csv(tmp_path, record, records.HISTORY_CSV)
    assert why == "" and list(history["seed"]) == [0, 1, 2, 3]
    assert list(history["val_accuracy"]) == [0.1, 0.2, 0.2, 0.1]


def test_a_seed_record_is_written_once_and_holds_that_seed_alone(tmp_path):
    cell = _cell(tmp_path / "cell")
    assert records.write_seed_result(cell, 2, _doc([2], accuracy=0.9))
    first = (records.seed_dir(cell, 2) / records.METRICS_FILE).read_bytes()
    assert not records.write_seed_result(cell, 2, _doc([2], accuracy=0.1))
    assert (records.seed_dir(cell, 2) / records.METRICS_FILE).read_bytes() == first
    try:
        records.write_seed_result(cell, 3, _doc([2, 3]))
    except records.RecordError as err:
        assert "seeds" in str(err)
    else:
        raise AssertionError("a seed record of two seeds was written")


MALFORMED = {
    "corrupt": "{not json",
    "two seeds": json.dumps(_doc([2, 3])),
    "another seed": json.dumps(_doc([4])),
    "another cell": json.dumps(_doc([2], config={**CONFIG, "data.classes": 7})),
    "not finished": json.dumps({**_doc([2]), "runs": [_run(2, status="failed")]}),
}


def test_a_malformed_seed_record_fails_that_seed_only_and_is_set_aside(tmp_path):
    for case, text in MALFORMED.items():
        sweep = tmp_path / case.replace(" ", "_")
        cell = _cell(sweep / "cell")
        place = records.seed_dir(cell, 2)
        place.mkdir(parents=True)
        (place / records.METRICS_FILE).write_text(text)
        record = records.read_cell(cell, sweep)
        assert record.finished and [r["seed"] for r in record.runs] == [0, 1], case
        assert record.seed_errors[2].startswith("seeds/2/metrics.json"), (case, record.seed_errors)
        rows = collect_runs(sweep)
        (bad,) = rows[rows["seed"] == 2].itertuples()
        assert bad.status == "failed" and bad.error == record.seed_errors[2], case
        assert set(rows[rows["seed"] != 2]["status"]) == {"completed"}
        before = _bytes(cell)
        aside = records.set_aside_broken_seed(cell, 2, sweep)  # before seed 2 retrains
        assert aside is not None and (aside / records.METRICS_FILE).read_text() == text
        assert not place.exists()
        assert records.read_cell(cell, sweep).seed_errors == {}
        moved = {k.replace("seeds/2/", f"seeds/{aside.name}/"): v for k, v in before.items()}
        assert _bytes(cell) == moved  # renamed, never deleted
    # A finished seed record is never set aside.
    cell = _cell(tmp_path / "fine" / "cell")
    _grow(cell, [2])
    assert records.set_aside_broken_seed(cell, 2, tmp_path / "fine") is None


def test_a_seed_dir_a_kill_left_without_metrics_is_no_record_and_its_temp_files_go(tmp_path):
    cell = _cell(tmp_path / "cell")
    place = records.seed_dir(cell, 2)
    _csvs(place, [2])
    (place / ".~attnlab.metrics.json.x.json").write_text("half")
    assert [r["seed"] for r in records.read_cell(cell, tmp_path).runs] == [0, 1]
    assert records.read_cell(cell, tmp_path).seed_errors == {}
    assert records.remove_temp_files(tmp_path) == 1
    assert (place / records.HISTORY_CSV).exists()


def test_old_dirs_of_one_cell_are_read_as_one_home(tmp_path):
    """attnlab before seed records named dirs by a hash of the seeds too: seeds=[0,1] and
    then seeds=[0..3] made two dirs of one cell."""
    small = _cell(tmp_path / "cell-aaaa", seeds=(0, 1), accuracy=0.1)
    big = _cell(tmp_path / "cell-bbbb", seeds=(0, 1, 2, 3), run_id="run2", accuracy=0.9)
    _grow(small, [4], run_id="run3")
    failed = tmp_path / "cell-cccc"  # an old failure of the same cell
    records.write_cell(failed, {**CONFIG, "seeds": [7]})
    records.write_attempt(failed, "failed", "run0", "killed")
    before = _bytes(tmp_path)
    (home,) = records.read_cells(tmp_path)
    assert home.name == big.name  # the most finished seeds
    assert [r["seed"] for r in home.runs] == [0, 1, 2, 3, 4]
    assert [r["val_accuracy"] for r in home.runs] == [0.9, 0.9, 0.9, 0.9, 0.7]  # home wins
    assert home.duplicates == 2 and home.merged == [small.name]
    assert records.finished_cells(tmp_path) == {records.identity_key(CONFIG): big}
    report = collect_runs(tmp_path)
    assert set(report["job"]) == {big.name} and len(report) == 5
    assert "failed" not in set(report["status"])
    assert report.attrs["duplicates"] == 2
    assert any("2 seed record(s) were ignored" in line for line in seed_notes(report))
    history, why = seed_csv(tmp_path, home, records.HISTORY_CSV)
    assert why == "" and list(history["seed"]) == [0, 1, 2, 3, 4]
    assert _bytes(tmp_path) == before  # reading changes nothing
    # Tie on seeds: the first name is the home.
    (tie,) = records.read_cells(_tie(tmp_path / "tie"))
    assert tie.name == "cell-a"


def _tie(sweep: Path) -> Path:
    _cell(sweep / "cell-b", seeds=(0, 1))
    _cell(sweep / "cell-a", seeds=(2, 3))
    return sweep


def test_a_cell_of_which_no_dir_finished_keeps_each_failure(tmp_path):
    for name in ("cell-a", "cell-b"):
        records.write_cell(tmp_path / name, CONFIG)
        records.write_attempt(tmp_path / name, "failed", "run1", f"{name} broke")
    report = collect_runs(tmp_path)
    assert set(report["job"]) == {"cell-a", "cell-b"} and set(report["status"]) == {"failed"}


def test_the_report_uses_the_seeds_the_latest_run_asked_for(tmp_path):
    big = _cell(tmp_path / "big", seeds=(0, 1, 2, 3))
    other = _cell(tmp_path / "other", seeds=(0, 1), config={**CONFIG, "data.classes": 9})
    state = {"run_id": "run3", "seeds": {big.name: [0, 1], other.name: [0, 1, 2]}}
    records.write_attempt(other, "failed", "run3", "no result: its job was lost")
    (tmp_path / records.SWEEP_STATE).write_text(json.dumps(state))
    report = collect_runs(tmp_path)
    rows = report[report["job"] == big.name]
    assert list(rows["seed"]) == [0, 1] and rows["seeds"].iloc[0] == "[0, 1]"
    assert report.attrs["left_out"] == {big.name: 2}
    (note,) = seed_notes(report)
    assert note.startswith("1 cell(s) hold more seeds than the latest run asked for")
    assert "leaving out 2 recorded seed(s)" in note
    missing = report[(report["job"] == other.name) & (report["seed"] == 2)].iloc[0]
    assert missing.status == "failed" and "its job was lost" in missing.error
    # No seeds in .sweep.json (an older dir, another sweeper): every recorded seed.
    (tmp_path / records.SWEEP_STATE).write_text(json.dumps({"run_id": "run3"}))
    assert len(collect_runs(tmp_path)[lambda r: r["job"] == big.name]) == 4


def _plan_cell(make_config, *overrides: str) -> Cell:
    exp = make_config(*overrides)
    config = flatten(exp)
    return Cell(list(overrides), config, records.cell_name(config, default_values()), exp)


def test_the_planner_trains_only_missing_seeds_into_the_home(tmp_path, make_config):
    cell = _plan_cell(make_config, "data.classes=5", "seeds=[0,1,2,3]")
    old = tmp_path / "data.classes=5-0123456789"  # an old dir of the cell: another name
    _cell(old, seeds=(0, 1), config={**cell.config, "seeds": [0, 1]})
    before = _bytes(old)
    plan = sort_cells(tmp_path, [cell], "run2")
    (pending,) = plan.pending
    assert pending.name == old.name and pending.exp is not None and pending.exp.seeds == [2, 3]
    assert plan.seeds == {old.name: [0, 1, 2, 3]} and plan.names == [old.name]
    assert plan.grown == 1 and _bytes(old) == before
    # Every seed recorded: reused; fewer seeds asked: reused too.
    for seeds in ("[0,1]", "[1]"):
        cell = _plan_cell(make_config, "data.classes=5", f"seeds={seeds}")
        plan = sort_cells(tmp_path, [cell], "run3")
        assert plan.pending == [] and plan.reused == 1 and plan.names == [old.name]


def test_a_cell_listed_with_several_seed_lists_asks_for_their_union(make_config):
    cells = [
        _plan_cell(make_config, "seeds=[0,1]"),
        _plan_cell(make_config, "seeds=[1,2]"),
        _plan_cell(make_config, "seeds=[5]", "trainer.verbose=1"),
    ]
    (cell,) = merge_seed_lists(cells)
    assert cell.exp is not None and cell.exp.seeds == [0, 1, 2, 5]
    assert cell.config["seeds"] == [0, 1, 2, 5] and cell.name == cells[0].name


def test_a_result_too_big_to_read_is_never_set_aside_nor_retrained(tmp_path, monkeypatch):
    """A metrics.json that cannot be read whole (over the reader's cap; or its permissions)
    may be a finished result: set_aside_broken refuses to move it (before, it was renamed
    and every seed retrained over the cell's CSVs), and the planner blocks its cell."""
    sweep_dir = tmp_path / "sweep"
    cell_dir = _cell(sweep_dir / "cell")
    before = _bytes(cell_dir)
    monkeypatch.setattr(records, "MAX_JSON_BYTES", 64)
    assert not records.read_cell(cell_dir, sweep_dir).finished
    try:
        records.set_aside_broken(cell_dir, sweep_dir)
    except records.RecordError as err:
        assert "over the 64 byte limit" in str(err)
    else:
        raise AssertionError("an unreadable result was set aside")
    assert _bytes(cell_dir) == before
    cell = Cell(name="cell", config={**CONFIG, "seeds": [0, 1]}, overrides=[], exp=None)
    plan = sort_cells(sweep_dir, [cell], "run2")
    assert plan.pending == [] and "over the 64 byte limit" in plan.blocked["cell"]
    assert _bytes(cell_dir) == before
