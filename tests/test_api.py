"""The Python API: attnlab.run_cell and attnlab.load_report, as a notebook uses them."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pandas as pd
import pytest

import attnlab
from attnlab.engine.config import ConfigError

from .conftest import TINY, run_cli, shown


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A sweep dir made with run_cell: two cells, and a failed job's metrics.json."""
    root = tmp_path_factory.mktemp("api") / "sweep"
    attnlab.run_cell([*TINY, "data.classes=2"], root / "classes2")
    attnlab.run_cell([*TINY, "data.classes=3"], root / "classes3")
    failed = {
        "config": {"data.classes": 1, "seeds": [0, 1]},
        "runs": [],
        "status": "failed",
        "error": "data.classes=1 is not allowed: an integer >= 2",
    }
    (root / "failed").mkdir()
    (root / "failed" / "metrics.json").write_text(json.dumps(failed))
    return root


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_run_cell_trains_writes_files_and_returns_metrics(tmp_path):
    # A short run at a learning rate that converges in it (as test_experiment's binary case).
    fast = ["data.samples=4000", "trainer.epochs=3", "trainer.learning_rate=0.01"]
    doc = attnlab.run_cell([*TINY, *fast], tmp_path / "run")
    assert [r["seed"] for r in doc["runs"]] == [0, 1]
    assert doc["config"]["data.samples"] == 4000 and doc["config"]["trainer.epochs"] == 3
    assert all(r["val_accuracy"] > 0.99 and r["attn_focused"] for r in doc["runs"])
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["runs"][0]["val_accuracy"] == doc["runs"][0]["val_accuracy"]
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"attention.csv", "attention.png"}


def test_run_cell_again_into_its_dir_reuses_the_finished_result(tmp_path, caplog):
    """A notebook cell run twice: the second call returns the stored result, untouched."""
    overrides = [*TINY, "trainer.epochs=1", "data.samples=600"]
    first = attnlab.run_cell(overrides, tmp_path / "run")
    stored = (tmp_path / "run" / "metrics.json").read_bytes()
    with caplog.at_level("INFO", logger="attnlab.api"):
        again = attnlab.run_cell(overrides, tmp_path / "run")
    assert again["runs"] == first["runs"] and again["config"] == first["config"]
    assert (tmp_path / "run" / "metrics.json").read_bytes() == stored
    assert "reused, not trained again" in caplog.text
    with pytest.raises(ConfigError, match=r"holds another cell's finished result"):
        attnlab.run_cell([*overrides, "data.classes=3"], tmp_path / "run")
    # Other seeds (not part of a sweep cell's identity, issue 21): run_cell stays as it was.
    with pytest.raises(ConfigError, match=r"holds another cell's finished result"):
        attnlab.run_cell([*overrides, "seeds=[0,1,2]"], tmp_path / "run")
    assert (tmp_path / "run" / "metrics.json").read_bytes() == stored


@pytest.mark.parametrize(
    ("overrides", "start"),
    [
        (["data.classes=1"], "data.classes=1 is not allowed"),
        (["data.classez=3"], "data.classez=3: "),
        (["objective=loss"], "objective='loss' is not allowed"),
        (["+experiment=capacity"], "hydra.sweeper.params={data.classes=2,5,20,30,50,100, "),
    ],
)
def test_run_cell_bad_input_raises_one_line_before_training(tmp_path, overrides, start):
    with pytest.raises(ConfigError) as err:
        attnlab.run_cell(overrides, tmp_path / "run")
    assert str(err.value).startswith(start) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_run_cell_gives_the_cli_numbers(tmp_path):
    overrides = [*TINY, "data.classes=5", "model.attn_layers=2"]
    doc = attnlab.run_cell(overrides, tmp_path / "api")
    proc = run_cli([*overrides, f"hydra.run.dir={tmp_path}/cli"], cwd=tmp_path)
    assert proc.returncode == 0, shown(proc)
    cli_doc = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert cli_doc["config"] == doc["config"]
    for ours, theirs in zip(doc["runs"], cli_doc["runs"], strict=True):
        assert ours.keys() == theirs.keys()
        for key in ours:
            if key != "train_seconds":
                assert ours[key] == theirs[key], key


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_load_report_types_columns_and_rebuilds_when_missing(sweep_dir):
    report, summary = attnlab.load_report(sweep_dir)
    assert len(report) == 2 + 2 + 2 and len(summary) == 3
    assert report["data.classes"].dtype == np.int64
    assert report["seed"].dtype == np.int64 and pd.api.types.is_string_dtype(report["seeds"])
    assert report["epochs_run"].dtype == "Int64"  # the failed job's rows have none
    assert report["attn_focused"].dtype == "boolean"
    done = report[report["status"] == "completed"]
    assert done["attn_focused"].notna().all() and done["epochs_run"].eq(4).all()
    assert report["val_accuracy"].dtype == float and report["objective"].iloc[0] == "val_accuracy"
    counts = summary.set_index("job")["n_seeds"].to_dict()
    assert counts == {"classes2": 2, "classes3": 2, "failed": 0}
    assert summary["n_seeds"].dtype == np.int64 and summary["data.classes"].dtype == np.int64
    means = done.groupby("data.classes")["val_accuracy"].mean()
    ok = summary[summary["n_seeds"] > 0].set_index("data.classes")["val_accuracy_mean"]
    assert ok.to_dict() == pytest.approx(means.to_dict())


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_load_report_rebuilds_only_when_a_job_is_newer(sweep_dir):
    attnlab.load_report(sweep_dir)
    csv = sweep_dir / "report.csv"
    before = csv.stat().st_mtime_ns
    attnlab.load_report(sweep_dir)
    assert csv.stat().st_mtime_ns == before  # fresh: read as is
    later = time.time() + 5
    metrics = sweep_dir / "classes3" / "metrics.json"
    doc = json.loads(metrics.read_text())
    doc["runs"] = doc["runs"][:1]  # a re-run of the cell with one seed
    doc["config"]["seeds"] = [doc["runs"][0]["seed"]]
    metrics.write_text(json.dumps(doc))
    os.utime(metrics, (later, later))
    report, _ = attnlab.load_report(sweep_dir)
    assert csv.stat().st_mtime_ns != before
    assert (report["job"] == "classes3").sum() == 1


def test_load_report_refuses_what_is_not_a_sweep(tmp_path):
    with pytest.raises(ConfigError, match="is not allowed: an existing sweep directory"):
        attnlab.load_report(tmp_path / "nope")
    with pytest.raises(ConfigError, match="with cell dirs"):
        attnlab.load_report(tmp_path)


@pytest.mark.slow  # over 1 s on a quiet 2-core machine (docs/development.md)
def test_report_frame_round_trips_through_csv(sweep_dir):
    report, _ = attnlab.load_report(sweep_dir)
    again = pd.read_csv(sweep_dir / "report.csv")
    assert list(again.columns) == list(report.columns)
