"""The report from job dirs on disk: statistics by hand, corrupt and missing job dirs."""

import json
import math

import pandas as pd
import pytest

from attnlab.engine.metrics import RUN_METRICS
from attnlab.runs.report import collect_runs, main, summarize, write_report


def _run(seed, acc, key_weight, focused, status="completed"):
    record = dict.fromkeys(RUN_METRICS, 0.5)
    record.update(val_accuracy=acc, attn_key_weight=key_weight, attn_focused=focused)
    return {"seed": seed, "status": status, **record}


def _write_job(sweep, name, classes, runs, seeds):
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(
        f"data:\n  classes: {classes}\nmodel:\n  attn_layers: 1\nseeds: {seeds}\n"
    )
    config = {"data.classes": classes, "model.attn_layers": 1, "seeds": seeds}
    (job / "metrics.json").write_text(json.dumps({"config": config, "runs": runs}))
    return job


@pytest.fixture
def sweep(tmp_path):
    """Two finished cells, one with a diverged seed, plus a corrupt and an unfinished job."""
    _write_job(
        tmp_path,
        "a",
        5,
        [
            _run(0, 0.9, 0.3, True),
            _run(1, 0.7, 0.1, False),
            _run(2, 0.8, 0.2, True, status="cached"),
        ],
        [0, 1, 2],
    )
    diverged = {**_run(1, math.nan, math.nan, None), "status": "diverged"}
    _write_job(tmp_path, "b", 20, [_run(0, 1.0, 0.4, True), diverged], [0, 1])
    corrupt = _write_job(tmp_path, "c", 50, [], [0, 1])
    (corrupt / "metrics.json").write_text('{"config": {"data.cla')  # killed mid-write
    killed = tmp_path / "d"
    (killed / ".hydra").mkdir(parents=True)
    (killed / ".hydra" / "config.yaml").write_text(
        "data:\n  classes: 100\nmodel:\n  attn_layers: 1\nseeds: [0, 1, 2]\n"
    )
    (tmp_path / "figures").mkdir()  # not a job dir
    return tmp_path


def test_report_has_one_row_per_job_and_seed(sweep):
    report = collect_runs(sweep)
    assert list(report.columns[:4]) == ["job", "data.classes", "model.attn_layers", "seeds"]
    assert list(report.columns[4:7]) == ["seed", "status", "error"]
    assert list(report.columns[7:]) == list(RUN_METRICS)
    assert report.groupby("job").size().to_dict() == {"a": 3, "b": 2, "c": 2, "d": 3}
    assert report.set_index(["job", "seed"]).loc[("b", 1), "status"] == "diverged"
    failed = report[report["status"] == "failed"]
    assert set(failed["job"]) == {"c", "d"}
    assert failed[failed["job"] == "c"]["error"].str.contains("corrupt").all()
    assert failed[failed["job"] == "d"]["error"].str.contains("missing").all()
    assert (failed[failed["job"] == "d"]["data.classes"] == 100).all()  # from .hydra/config.yaml


def test_summary_matches_hand_computation(sweep):
    summary = summarize(collect_runs(sweep)).set_index("job")
    a = summary.loc["a"]
    assert a["n_seeds"] == 3 and a["n_diverged"] == 0
    assert a["focus_rate"] == pytest.approx(2 / 3)
    assert a["val_accuracy_mean"] == pytest.approx(0.8)
    assert a["val_accuracy_std"] == pytest.approx(0.1)  # sqrt(((.1)^2 + (.1)^2 + 0) / 2)
    assert a["attn_key_weight_mean"] == pytest.approx(0.2)
    assert a["val_accuracy_ci_low"] <= 0.8 <= a["val_accuracy_ci_high"]
    b = summary.loc["b"]  # the diverged seed does not count
    assert b["n_seeds"] == 1 and b["n_diverged"] == 1 and b["focus_rate"] == 1.0
    assert b["val_accuracy_mean"] == 1.0 and math.isnan(b["val_accuracy_std"])
    assert math.isnan(b["val_accuracy_ci_low"])
    for job in ("c", "d"):
        assert summary.loc[job, "n_seeds"] == 0 and summary.loc[job, "n_failed"] > 0


def test_summary_intervals_coupling_and_still_improving(sweep):
    summary = summarize(collect_runs(sweep)).set_index("job")
    a = summary.loc["a"]  # accuracies 0.9, 0.7, 0.8: mean 0.8, sd 0.1
    half = 4.302653 * 0.1 / math.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n)
    assert a["val_accuracy_ci_low"] == pytest.approx(0.8 - half)
    assert 0.8 + half > 1.0 and a["val_accuracy_ci_high"] == 1.0  # an accuracy's range
    # 2 of 3 focused: Wilson [0.2077, 0.9385] (by hand: centre 0.5731, half-width 0.3654)
    assert (a["focus_rate_ci_low"], a["focus_rate_ci_high"]) == pytest.approx(
        (0.2077, 0.9385), abs=1e-4
    )
    assert a["val_accuracy_focused_mean"] == pytest.approx(0.85)  # seeds 0 and 2
    assert a["val_accuracy_unfocused_mean"] == pytest.approx(0.7)  # seed 1
    assert math.isnan(a["still_improving_rate"])  # no record has the field: an older sweep
    b = summary.loc["b"]
    assert math.isnan(b["val_accuracy_unfocused_mean"])  # its one usable seed focused
    assert (b["focus_rate_ci_low"], b["focus_rate_ci_high"]) == pytest.approx(
        (0.2065, 1.0), abs=1e-4
    )
    assert math.isnan(summary.loc["c", "focus_rate_ci_low"])  # no usable seed


def test_still_improving_rate_counts_usable_seeds(tmp_path):
    runs = [
        {**_run(0, 0.9, 0.3, True), "still_improving": True},
        {**_run(1, 0.7, 0.1, False), "still_improving": True},
        {**_run(2, 0.8, 0.2, True), "still_improving": False},
        {**_run(3, math.nan, math.nan, None, status="diverged"), "still_improving": None},
    ]
    _write_job(tmp_path, "a", 5, runs, [0, 1, 2, 3])
    report = collect_runs(tmp_path)
    assert "still_improving" in report.columns
    assert summarize(report).loc[0, "still_improving_rate"] == pytest.approx(2 / 3)


def test_report_command_rebuilds_files(sweep, capsys):
    assert main([str(sweep)]) == 0
    report = pd.read_csv(sweep / "report.csv")
    assert len(report) == 10
    summary = pd.read_csv(sweep / "summary.csv")
    for metric in (
        "val_accuracy",
        "probe_accuracy",
        "attn_key_weight",
        "attn_hit_rate",
        "attn_entropy",
    ):
        for stat in ("mean", "std", "ci_low", "ci_high"):
            assert f"{metric}_{stat}" in summary.columns
    md = (sweep / "report.md").read_text()
    assert "## Failed cells" in md and "`c`" in md and "corrupt" in md
    assert (sweep / "figures" / "heatmap_val_accuracy_mean.png").exists()
    assert (sweep / "figures" / "attn_key_weight_vs_data.classes.png").exists()
    assert "4 jobs" in capsys.readouterr().out


def test_report_command_rejects_missing_or_empty_dir(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "sweep_dir=" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2
    assert "holds no cell dirs" in capsys.readouterr().err


def test_report_md_stands_alone(tmp_path):
    runs = [
        {**_run(0, 0.9, 0.3, True), "still_improving": True},
        {**_run(1, 0.7, 0.1, False), "still_improving": True},
        {**_run(2, 0.8, 0.2, True), "still_improving": False},
    ]
    _write_job(tmp_path, "a", 5, runs, [0, 1, 2])
    _write_job(tmp_path, "b", 20, [_run(0, 1.0, 0.4, True)], [0, 1, 2])
    write_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "- Command: not recorded" in md
    assert "tensorflow " in md and "hydra-core " in md and "scipy " in md
    assert "`model.attn_layers=1`" in md and "`seeds=[0, 1, 2]`" in md  # fixed settings
    assert "- Swept: `data.classes`" in md
    row = next(line for line in md.splitlines() if line.startswith("| 5 |"))
    assert "| 2/3 [0.21, 0.94] |" in row and "| 0.850 / 0.700 |" in row
    assert row.endswith("| **yes** (2/3) |")
    assert "(figures/heatmap_focus_rate.png)" in md
    (tmp_path / ".sweep.json").write_text(json.dumps({"command": "python -m attnlab -m x=1,2"}))
    write_report(tmp_path)
    assert "- Command: `python -m attnlab -m x=1,2`" in (tmp_path / "report.md").read_text()
    write_report(tmp_path, command="given")
    assert "- Command: `given`" in (tmp_path / "report.md").read_text()


def test_a_failed_cell_typed_as_text_on_a_numeric_axis_is_left_off_the_figures():
    """`data.classes=${nope},5`: the failed cell keeps the text it was given; figures
    place only what can share the axis with the cells that have results."""
    from attnlab.runs.report import placeable

    summary = pd.DataFrame(
        {
            "data.classes": [5, "${nope}", 20, "${nope}"],
            "model.variant": ["dense", "dense", "dense", "lstm"],
            "n_seeds": [3, 0, 3, 0],
        }
    )
    placed = placeable(summary, ["data.classes", "model.variant"])
    assert placed["data.classes"].tolist() == [5, 20]
    # A text axis keeps its cells without results: they are empty squares on a heatmap.
    text_axis = pd.DataFrame({"model.variant": ["dense", "bad"], "n_seeds": [3, 0]})
    assert len(placeable(text_axis, ["model.variant"])) == 2


def test_report_writes_paired_comparisons_and_their_figures(tmp_path):
    """Two cells of one axis over the same seeds: comparisons.csv holds the paired difference
    (checked by hand against scipy's paired t-test), report.md its section, figures/ its plot;
    the command-line order and a stored baseline decide which value is the baseline."""
    from scipy import stats

    accs = {5: [0.9, 0.8, 0.85, 0.7], 20: [0.6, 0.65, 0.5, 0.55]}
    for classes, values in accs.items():
        runs = [_run(s, a, 0.2, True) for s, a in enumerate(values)]
        _write_job(tmp_path, f"c{classes}", classes, runs, [0, 1, 2, 3])
    (tmp_path / ".sweep.json").write_text(json.dumps({"run_id": "r", "cells": ["c20", "c5"]}))
    write_report(tmp_path)
    rows = pd.read_csv(tmp_path / "comparisons.csv")
    acc = rows[rows["metric"] == "val_accuracy"].iloc[0]
    assert (acc["axis"], acc["value"], acc["baseline"]) == ("data.classes", 5, 20)  # launch order
    diff = [a - b for a, b in zip(accs[5], accs[20], strict=True)]
    test = stats.ttest_rel(accs[5], accs[20])
    ci = test.confidence_interval(0.95)
    assert acc["pairing"] == "paired" and acc["n_pairs"] == 4
    assert acc["diff_mean"] == pytest.approx(sum(diff) / 4)
    assert (acc["diff_ci_low"], acc["diff_ci_high"]) == pytest.approx((ci.low, ci.high))
    assert acc["p_value"] == pytest.approx(test.pvalue) and acc["verdict"] == "higher"
    text = (tmp_path / "report.md").read_text()
    assert "## Comparisons" in text and "`data.classes=5` vs `20`" in text
    assert (tmp_path / "figures" / "difference_data.classes_val_accuracy.png").exists()
    # A baseline given to the sweep (hydra.sweeper.baseline) is kept in .sweep.json.
    state = {"run_id": "r", "cells": ["c20", "c5"], "baselines": {"data.classes": 5}}
    (tmp_path / ".sweep.json").write_text(json.dumps(state))
    write_report(tmp_path)
    acc = pd.read_csv(tmp_path / "comparisons.csv").iloc[0]
    assert (acc["value"], acc["baseline"], acc["verdict"]) == (20, 5, "lower")


def test_a_sweep_without_two_values_on_an_axis_has_no_comparisons(tmp_path):
    """One cell: nothing is swept, so no comparisons.csv and no section in report.md."""
    single = tmp_path / "single"
    _write_job(single, "a", 5, [_run(0, 0.9, 0.3, True), _run(1, 0.8, 0.3, True)], [0, 1])
    write_report(single)
    assert not (single / "comparisons.csv").exists()
    assert "## Comparisons" not in (single / "report.md").read_text()
