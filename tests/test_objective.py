"""The objective a job returns to Hydra, and an Optuna search whose trials land in the report."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from attnlab.engine.config import OBJECTIVES, ConfigError, flatten
from attnlab.runs.records import NOT_IDENTITY, NOT_IDENTITY_PREFIXES, cell_identity, cell_name
from attnlab.runs.report import SUMMARY_METRICS, objective_value
from attnlab.sweep.cells import default_values

from .conftest import DEBUG_TINY, run_cli, shown

CONF = Path(__file__).parents[1] / "conf"


def _run(seed, acc, focused, status="completed"):
    return {"seed": seed, "status": status, "val_accuracy": acc, "attn_focused": focused}


DOC = {
    "runs": [
        _run(0, 0.5, True),
        _run(1, 0.7, False, status="cached"),
        _run(2, math.nan, None, status="diverged"),  # not usable: left out
        _run(3, 0.9, True),
    ]
}


def test_objective_is_the_mean_over_usable_seeds():
    assert objective_value(DOC, "val_accuracy") == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    assert objective_value(DOC, "focus_rate") == pytest.approx(2 / 3)


def test_objective_skips_non_finite_values_and_is_nan_without_any():
    doc = {"runs": [_run(0, math.nan, True), _run(1, 0.4, None)]}
    assert objective_value(doc, "val_accuracy") == pytest.approx(0.4)
    assert objective_value(doc, "focus_rate") == 1.0
    failed = {"runs": [], "status": "failed", "error": "x"}
    assert math.isnan(objective_value(failed, "val_accuracy"))
    assert math.isnan(objective_value(failed, "focus_rate"))


def test_allowed_objectives_are_focus_rate_and_the_summary_metrics():
    assert set(OBJECTIVES) == {"focus_rate", *SUMMARY_METRICS}


def test_bad_objective_is_one_line_naming_the_allowed_values(make_config):
    with pytest.raises(ConfigError) as err:
        make_config("objective=accuracy").validate()
    message = str(err.value)
    assert message.startswith("objective='accuracy' is not allowed: one of focus_rate, ")
    assert "\n" not in message and "peak_ablation_drop" in message


def test_objective_and_logger_are_not_part_of_a_cell(make_config):
    a = flatten(make_config())
    b = flatten(make_config("objective=focus_rate", "logger=tensorboard"))
    assert a != b and cell_identity(a) == cell_identity(b)
    assert "objective" in NOT_IDENTITY and "logger." in NOT_IDENTITY_PREFIXES
    # Nor part of its dir's name: the same cell lands in the same dir.
    assert cell_name(a, default_values()) == cell_name(b, default_values())


@pytest.mark.slow
def test_optuna_search_of_three_trials_lands_in_the_report(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "+experiment=capacity_optuna", "hydra/sweeper=optuna"]
    args += ["hydra.sweeper.n_trials=3", DEBUG_TINY]
    proc = run_cli([*args, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, shown(proc)
    assert "Return value must be float-castable" not in proc.stderr
    summary = pd.read_csv(sweep_dir / "summary.csv")
    report = pd.read_csv(sweep_dir / "report.csv")
    # 3 trials; a trial that repeats an earlier one's params reuses its cell (same dir).
    # One progress line per trial: [done/?] (Optuna's trials have no total up front).
    launched = re.findall(r"\] \[\d+/\?\] ", proc.stdout + proc.stderr)
    assert len(launched) == 3
    assert 1 <= len(summary) <= 3 and len(report) == 2 * len(summary)
    assert (summary["data.classes"] == 50).all()
    assert (summary["objective"] == "attn_key_weight").all()
    assert set(summary["model.attn_layers"]) <= {1, 2, 3, 4}
    assert set(summary["model.attn_activation"]) <= {"linear", "relu", "tanh"}
    assert set(summary["model.hidden"]) <= {8, 16, 32, 64, 128}
    # What the sweeper saw as the best value is the best cell's mean key weight in the report.
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(summary["attn_key_weight_mean"].max())
    axes = ["model.attn_layers", "model.attn_activation", "model.hidden"]
    best = summary.set_index(axes)["attn_key_weight_mean"]
    params = tuple(results["best_params"][a] for a in axes)
    assert best[params] == pytest.approx(results["best_value"])


@pytest.mark.slow
def test_optuna_search_goes_on_past_a_failed_trial(tmp_path):
    """hydra-optuna-sweeper 1.3.0 crashed on a failed cell's NaN; None is a failed trial."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=4"]
    args += ["hydra.sweeper.direction=maximize", "hydra.sweeper.sampler.seed=1"]
    args += ["data.classes=choice(1,2)", DEBUG_TINY, f"hydra.sweep.dir={sweep_dir}"]
    proc = run_cli(args, cwd=tmp_path)
    assert "Traceback" not in proc.stderr, shown(proc)
    assert proc.returncode == 1, shown(proc)  # the failed cell's exit status, not a crash
    report = pd.read_csv(sweep_dir / "report.csv")
    assert set(report[report["data.classes"] == 1]["status"]) == {"failed"}
    assert set(report[report["data.classes"] == 2]["status"]) <= {"completed", "cached"}
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["best_params"]["data.classes"] == 2
