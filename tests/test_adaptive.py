"""Adaptive seeds (hydra.sweeper.adaptive): the options' checks, the round rule
(attnlab.engine.rounds), its coverage by simulation, the recorded seeds a round reads, and the
report's adaptive columns and section.

Quick tier: pure functions and synthetic sweep dirs (JSON written by hand, no TensorFlow). Slow
tier: real tiny adaptive sweeps through the CLI (rounds, a rerun, Ctrl-C and SIGKILL mid-round
then a resume, the joblib launcher).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnlab.engine.config import ConfigError
from attnlab.engine.metrics import METRIC_BOUNDS, RUN_METRICS, attention_metrics, metric_bounds
from attnlab.engine.rounds import Schedule, Target, plan_cells, simulate_rounds
from attnlab.engine.sequential import Claim, bernoulli, beta, clipped_normal
from attnlab.sweep.adaptive import (
    AdaptiveCell,
    AdaptiveOptions,
    recorded_cells,
    recorded_values,
    seed_order,
    with_seeds,
)
from tests.conftest import DEBUG_TINY, one_line_error, run_cli, shown

ACC = "val_accuracy"
BOUNDS = {ACC: (0.0, 1.0), "focus_rate": (0.0, 1.0)}


# --- the options ------------------------------------------------------------------------------


def test_adaptive_is_off_until_an_option_is_set():
    assert not AdaptiveOptions().on
    assert AdaptiveOptions(step=2).on
    assert AdaptiveOptions.from_config({"metric": ACC, "half_width": 0.1}).half_width == 0.1


@pytest.mark.parametrize(
    ("options", "claims", "words"),
    [
        (AdaptiveOptions("accuracy", 0.1), [], ["metric=accuracy", "one of", "focus_rate"]),
        (AdaptiveOptions(ACC, 0.0), [], ["half_width=0.0", "> 0"]),
        (AdaptiveOptions(ACC, -0.1), [], ["half_width=-0.1", "> 0"]),
        (AdaptiveOptions(None, 0.1), [], ["half_width=0.1", "needs", ".metric"]),
        (AdaptiveOptions(ACC, 0.1, max_seeds=3), [], ["max_seeds=3", "5 seeds"]),
        (AdaptiveOptions(ACC, 0.1, step=0), [], ["step=0", ">= 1"]),
        (AdaptiveOptions(until="always"), [], ["until=always", "null or claims"]),
        (AdaptiveOptions(until="claims"), [], ["until=claims", "without claims"]),
        (AdaptiveOptions(metric=ACC), [], ["metric=val_accuracy", "alone", "until=claims"]),
        (AdaptiveOptions(max_seeds=20), [], ["max_seeds=20", "alone", "half_width"]),
        (AdaptiveOptions(ACC, 0.1, interval="t"), [], ["interval=t", "betting, looks"]),
        (AdaptiveOptions(interval="looks"), [], ["interval=looks", "alone", "half_width"]),
    ],
)
def test_each_bad_option_is_refused_in_one_line_naming_key_and_value(options, claims, words):
    with pytest.raises(ConfigError) as caught:
        options.check(5, claims)
    line = str(caught.value)
    assert "\n" not in line and "hydra.sweeper.adaptive." in line
    for word in words:
        assert word in line, line


def test_a_metric_without_finite_bounds_is_refused(monkeypatch):
    monkeypatch.setitem(METRIC_BOUNDS, "attn_entropy", (0.0, math.inf))
    with pytest.raises(ConfigError, match=r"metric=attn_entropy .*range \[0.0, inf\]"):
        AdaptiveOptions("attn_entropy", 0.05).check(5, [])


def test_good_options_pass_and_give_the_schedule():
    AdaptiveOptions(ACC, 0.1, max_seeds=5).check(5, [])
    AdaptiveOptions(until="claims").check(2, ["focus_rate > 0.5"])
    schedule = AdaptiveOptions(ACC, 0.1, max_seeds=6, step=2).schedule(2)
    assert (schedule.min_seeds, schedule.step, schedule.max_seeds) == (2, 2, 6)
    assert AdaptiveOptions(ACC, 0.1).schedule(5).max_seeds == 40  # defaults: 40, step 5


def test_the_interval_rule_is_betting_unless_looks_is_chosen():
    assert AdaptiveOptions(ACC, 0.1).schedule(5).interval == "betting"
    AdaptiveOptions(ACC, 0.1, interval="looks").check(5, [])
    looks = AdaptiveOptions(ACC, 0.1, interval="looks").schedule(5)
    assert looks.interval == "looks" and looks.looks() == [5, 10, 15, 20, 25, 30, 35, 40]
    with pytest.raises(ValueError, match="interval"):
        Schedule(5, 5, 40, interval="t")


def test_attn_entropy_is_bounded_by_one_as_attention_metrics_computes_it():
    """attn_entropy is normalised by log(columns): [0, 1], so adaptive mode takes it (the
    bounds table said [0, inf))."""
    assert metric_bounds("attn_entropy") == (0.0, 1.0)
    AdaptiveOptions("attn_entropy", 0.05).check(5, [])
    rng = np.random.default_rng(0)
    for columns in (2, 3, 8, 50):
        for concentration in (0.01, 1.0, 100.0):
            alpha = rng.dirichlet(np.full(columns, concentration), size=64)
            entropy = attention_metrics(alpha, key=0)["attn_entropy"]
            assert 0.0 <= entropy <= 1.0 + 1e-12
    uniform = attention_metrics(np.full((4, 7), 1 / 7), key=0)["attn_entropy"]
    assert uniform == pytest.approx(1.0)


# --- seeds and overrides ---------------------------------------------------------------------


def test_seeds_are_taken_in_one_fixed_order():
    assert seed_order([0, 1], 6) == [0, 1, 2, 3, 4, 5]
    assert seed_order([3, 7], 5) == [3, 7, 8, 9, 10]
    assert seed_order([0, 1, 2], 3) == [0, 1, 2]


def test_a_cells_seed_override_is_replaced_not_repeated():
    job = ["data.classes=2", "seeds=[0,1]", "model.attn_layers=1"]
    assert with_seeds(job, [0, 1, 2, 3]) == [
        "data.classes=2",
        "model.attn_layers=1",
        "seeds=[0,1,2,3]",
    ]
    assert with_seeds(["+seeds=[5]"], [5, 6]) == ["seeds=[5,6]"]


# --- the round rule ----------------------------------------------------------------------------


def cells_of(**values: list[float]) -> dict[str, dict[int, dict[str, float]]]:
    return {c: {s: {ACC: v} for s, v in enumerate(vs)} for c, vs in values.items()}


SCHEDULE = Schedule(min_seeds=5, step=5, max_seeds=20)


def test_a_wide_cell_gets_a_step_a_narrow_one_nothing():
    tight = [0.80, 0.81, 0.80, 0.79, 0.80] * 4
    seen = cells_of(wide=[0.2, 0.9, 0.5, 0.7, 0.3], tight=tight)
    targets = [Target((c,), ACC, None, 0.15, f"{ACC} ±0.15") for c in seen]
    needs = {n.cell: n for n in plan_cells(seen, targets, SCHEDULE, BOUNDS)}
    assert needs["wide"].add == 5 and f"{ACC} ±" in needs["wide"].reason
    assert "> ±0.15" in needs["wide"].reason
    assert needs["tight"].add == 0 and "<= ±0.15" in needs["tight"].reason


def test_a_cell_at_max_seeds_stops_and_says_so():
    seen = cells_of(wide=[0.1, 0.9] * 10)
    targets = [Target(("wide",), ACC, None, 0.05, "")]
    (need,) = plan_cells(seen, targets, SCHEDULE, BOUNDS)
    assert need.add == 0 and need.at_cap
    assert need.reason.startswith("reached max_seeds=20: val_accuracy ±")


def test_a_cell_below_its_first_rounds_seeds_gets_them_first():
    (need,) = plan_cells(cells_of(a=[0.5, 0.6]), [], SCHEDULE, BOUNDS)
    assert need.add == 3 and "min_seeds=5" in need.reason


def test_a_threshold_claim_grows_its_cell_until_decided():
    claim = Claim.parse("focus_rate > 0.5")
    seen = {
        "decided": {s: {"focus_rate": 1.0} for s in range(15)},
        "open": {s: {"focus_rate": float(s % 2)} for s in range(10)},
    }
    targets = [Target((c,), "focus_rate", claim, None, str(claim)) for c in seen]
    needs = {n.cell: n for n in plan_cells(seen, targets, SCHEDULE, BOUNDS)}
    assert needs["decided"].add == 0 and "focus_rate > 0.5 holds" in needs["decided"].reason
    assert needs["open"].add == 5 and "focus_rate > 0.5 unresolved [" in needs["open"].reason


def test_an_unresolved_pair_grows_the_cell_with_fewer_seeds_or_both():
    claim = Claim(ACC, "<=", 0.0)
    pair = Target(("a", "b"), ACC, claim, None, "val_accuracy of k=a <= b")
    even = cells_of(a=[0.5, 0.6, 0.4, 0.5, 0.6], b=[0.5, 0.5, 0.5, 0.6, 0.5])
    assert [n.add for n in plan_cells(even, [pair], SCHEDULE, BOUNDS)] == [5, 5]
    uneven = cells_of(a=[0.5, 0.6, 0.4, 0.5, 0.6] * 2, b=[0.5, 0.5, 0.5, 0.6, 0.5])
    needs = plan_cells(uneven, [pair], SCHEDULE, BOUNDS)
    assert [n.add for n in needs] == [0, 5]  # only new common seeds make new pairs
    assert "unresolved" in needs[1].reason


def test_a_decided_pair_stops_both_cells():
    claim = Claim(ACC, "<=", 0.0)
    pair = Target(("a", "b"), ACC, claim, None, "val_accuracy of k=a <= b")
    seen = cells_of(a=[0.1] * 10, b=[0.9] * 10)
    needs = plan_cells(seen, [pair], SCHEDULE, BOUNDS)
    assert [n.add for n in needs] == [0, 0] and "holds" in needs[0].reason


def test_an_unbounded_metric_is_refused_by_the_rule():
    with pytest.raises(ValueError, match="finite range for train_loss"):
        plan_cells(cells_of(a=[0.5] * 5), [Target(("a",), "train_loss", None, 0.1)], SCHEDULE, {})


# --- coverage of the rule the sweeper runs -----------------------------------------------------


def test_the_sweepers_rule_keeps_coverage_on_known_distributions():
    """The sweeper's round rule (plan_cells, with a half-width target, a threshold claim and
    a paired comparison, cells growing unevenly) simulated on normal, Beta(20, 1) and
    Bernoulli cells: every final interval holds the truth in >= 93% of 500 studies at
    nominal 95%, and claims are decided wrongly in <= 5%."""
    normal, normal_mean = clipped_normal(0.75, 0.1)
    ceiling, ceiling_mean = beta(20.0, 1.0)
    schedule = Schedule(min_seeds=5, step=5, max_seeds=40)
    draws = {"normal": normal, "ceiling": ceiling}
    means = {"normal": normal_mean, "ceiling": ceiling_mean}
    targets = [
        Target(("normal",), ACC, None, 0.15, "normal ±0.15"),
        Target(("ceiling",), ACC, Claim(ACC, ">=", 0.9), None, "ceiling >= 0.9"),
        Target(("normal", "ceiling"), ACC, Claim(ACC, "<", 0.0), None, "normal - ceiling < 0"),
    ]
    result = simulate_rounds(draws, means, targets, schedule, BOUNDS, studies=500)
    assert min(result.coverage.values()) >= 0.93, result
    assert max(result.wrong_decisions.values()) <= 0.05, result
    assert 5 < result.mean_seeds["normal"] <= 40

    at_threshold, half = bernoulli(0.5)
    rate = Claim("focus_rate", ">", 0.5)
    rates = simulate_rounds(
        {"x": at_threshold, "y": bernoulli(0.8)[0]},
        {"x": half, "y": 0.8},
        [
            Target(("x",), "focus_rate", rate, None, "x focus_rate > 0.5"),
            Target(("y",), "focus_rate", rate, None, "y focus_rate > 0.5"),
        ],
        schedule,
        BOUNDS,
        studies=500,
    )
    assert min(rates.coverage.values()) >= 0.93, rates
    assert max(rates.wrong_decisions.values()) <= 0.05, rates
    assert rates.mean_seeds["y"] < rates.mean_seeds["x"]  # seeds go where it is undecided


def test_the_looks_rule_decides_where_t_at_one_minus_alpha_over_k_does():
    """Under looks a cell is judged by the fixed report's t interval at 1 - 0.05/K (K = 4
    looks of SCHEDULE): a tight cell far above the threshold is decided at 5 seeds, where
    the betting sequence is still too wide."""
    from attnlab.engine.claims import fixed_interval

    tight = [0.80, 0.81, 0.80, 0.79, 0.80]
    target = Target(("a",), ACC, Claim(ACC, ">", 0.75), None, "a > 0.75")
    looks = Schedule(min_seeds=5, step=5, max_seeds=20, interval="looks")
    [betting] = plan_cells(cells_of(a=tight), [target], SCHEDULE, BOUNDS)
    [judged] = plan_cells(cells_of(a=tight), [target], looks, BOUNDS)
    assert betting.add == 5 and "unresolved" in betting.reason
    assert judged.add == 0 and "holds" in judged.reason
    low, high, _ = fixed_interval(ACC, np.array(tight), None, 1 - 0.05 / 4)
    assert f"[{low:.3g}, {high:.3g}]" in judged.reason


def test_the_looks_rule_keeps_coverage_on_known_distributions():
    """The same scenarios as the betting test, under interval=looks (t, Wilson, paired t at
    1 - alpha/K per look): coverage >= 0.93 of 500 studies, wrong decisions <= 0.05, and far
    fewer seeds for the means than betting needs."""
    normal, normal_mean = clipped_normal(0.75, 0.1)
    ceiling, ceiling_mean = beta(20.0, 1.0)
    schedule = Schedule(min_seeds=5, step=5, max_seeds=40, interval="looks")
    targets = [
        Target(("normal",), ACC, None, 0.15, "normal ±0.15"),
        Target(("ceiling",), ACC, Claim(ACC, ">=", 0.9), None, "ceiling >= 0.9"),
        Target(("normal", "ceiling"), ACC, Claim(ACC, "<", 0.0), None, "normal - ceiling < 0"),
    ]
    draws = {"normal": normal, "ceiling": ceiling}
    means = {"normal": normal_mean, "ceiling": ceiling_mean}
    result = simulate_rounds(draws, means, targets, schedule, BOUNDS, studies=500)
    assert min(result.coverage.values()) >= 0.93, result
    assert max(result.wrong_decisions.values()) <= 0.05, result
    assert result.mean_seeds["normal"] < 15 and result.mean_seeds["ceiling"] < 20  # betting: 30, 40

    same = [Target(("a", "b"), ACC, Claim(ACC, ">", 0.0), None, "a - b > 0")]
    equal = simulate_rounds(
        {"a": normal, "b": normal},
        {"a": normal_mean, "b": normal_mean},
        same,
        schedule,
        BOUNDS,
        studies=500,
    )  # the true difference at the threshold: every "holds" is wrong
    assert equal.coverage["a - b > 0"] >= 0.93 and equal.wrong_decisions["a - b > 0"] <= 0.05

    at_threshold, half = bernoulli(0.5)
    rate = Claim("focus_rate", ">", 0.5)
    rates = simulate_rounds(
        {"x": at_threshold},
        {"x": half},
        [Target(("x",), "focus_rate", rate, None, "x focus_rate > 0.5")],
        schedule,
        BOUNDS,
        studies=500,
    )
    assert rates.coverage["x focus_rate > 0.5"] >= 0.93, rates
    assert rates.wrong_decisions["x focus_rate > 0.5"] <= 0.05, rates


# --- what a round reads ------------------------------------------------------------------------


def _run(seed: int, acc: float, focused: bool | None = True, status: str = "completed") -> dict:
    record = dict.fromkeys(RUN_METRICS, 0.5)
    record.update(val_accuracy=acc, attn_focused=focused)
    return {"seed": seed, "status": status, **record}


def write_cell(sweep: Path, name: str, classes: int, runs: list[dict]) -> dict:
    config = {"data.classes": classes, "seeds": sorted(r["seed"] for r in runs)}
    (sweep / name).mkdir(parents=True)
    (sweep / name / "cell.json").write_text(json.dumps({"config": config}))
    (sweep / name / "metrics.json").write_text(json.dumps({"config": config, "runs": runs}))
    return config


def test_a_round_reads_the_longest_prefix_of_the_seed_order(tmp_path):
    from attnlab.sweep.cells import Cell

    runs = [_run(0, 0.5), _run(1, 0.6, False), _run(2, 0.7, status="diverged"), _run(4, 0.9)]
    config = write_cell(tmp_path, "c", 2, runs)
    item = AdaptiveCell(0, Cell([], config, "c"), seed_order([0, 1], 6), 2)
    values = recorded_values(recorded_cells(tmp_path), item)
    assert item.home == "c"
    assert list(values) == [0, 1, 2]  # seed 3 missing ends it: 4 waits
    assert values[1] == pytest.approx({**values[1], ACC: 0.6, "focus_rate": 0.0})
    assert math.isnan(values[2][ACC])  # diverged: taken, left out of the interval


# --- the report --------------------------------------------------------------------------------


def test_an_adaptive_sweeps_report_gives_sequences_and_a_section(tmp_path):
    from attnlab.engine.sequential import confidence_sequence
    from attnlab.runs.report import write_report

    accs = [0.9, 0.7, 0.8, 0.85]
    write_cell(tmp_path, "a", 2, [_run(s, v) for s, v in enumerate(accs)])
    write_cell(tmp_path, "b", 5, [_run(s, 0.3) for s in range(2)])
    state = {
        "command": "attnlab -m ...",
        "adaptive": {
            "rule": {"metric": ACC, "half_width": 0.2, "until": None, "max_seeds": 4, "step": 2},
            "targets": [f"{ACC} ±0.2"],
            "metrics": [ACC],
            "rounds": 2,
            "cells": {
                "a": {"seeds": [0, 1, 2, 3], "at_cap": True, "reason": "reached max_seeds=4: x"},
                "b": {"seeds": [0, 1], "at_cap": False, "reason": f"{ACC} ±0.1 <= ±0.2"},
            },
        },
    }
    (tmp_path / ".sweep.json").write_text(json.dumps(state))
    write_report(tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("job")
    assert (summary.loc["a", f"{ACC}_cs_low"], summary.loc["a", f"{ACC}_cs_high"]) == (
        pytest.approx(confidence_sequence(accs)[0]),
        pytest.approx(confidence_sequence(accs)[1]),
    )
    md = (tmp_path / "report.md").read_text()
    section = md.split("## Adaptive seeds", 1)[1]
    assert "2 seeds a round, at most 4 a cell (2 round(s))" in section
    assert "Cells at the cap (4 seeds, a target unmet): `a`" in section
    assert "confidence sequences" in section and "reached max_seeds=4" in section


def test_a_looks_sweeps_report_names_its_rule_in_every_output(tmp_path):
    """interval=looks: summary.csv's _cs_ columns are the t interval at 1 - 0.05/K (K = the
    recorded looks), summary and report.md name the rule, claims.csv's interval and level
    say the looks' Bonferroni; a .sweep.json without the field reads as betting."""
    from attnlab.engine.stats import t_interval
    from attnlab.runs.report import write_report

    accs = [0.9, 0.7, 0.8, 0.85]
    claims = [f"{ACC} > 0.5"]
    for name, classes, values in (("a", 2, accs), ("b", 5, [0.3, 0.32])):
        config = write_cell(tmp_path, name, classes, [_run(s, v) for s, v in enumerate(values)])
        for path in (tmp_path / name / "cell.json", tmp_path / name / "metrics.json"):
            data = json.loads(path.read_text())
            data["config"] = {**config, "claims": claims}
            path.write_text(json.dumps(data))
    rule = {"metric": None, "half_width": None, "until": "claims", "max_seeds": 6, "step": 2}
    state = {
        "command": "attnlab -m ...",
        "adaptive": {
            "rule": {**rule, "interval": "looks"},
            "looks": [2, 4, 6],
            "targets": claims,
            "metrics": [ACC],
            "rounds": 2,
            "cells": {
                "a": {"seeds": [0, 1, 2, 3], "at_cap": False, "reason": "x"},
                "b": {"seeds": [0, 1], "at_cap": False, "reason": "y"},
            },
        },
    }
    (tmp_path / ".sweep.json").write_text(json.dumps(state))
    write_report(tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("job")
    low, high = t_interval(np.array(accs), 1 - 0.05 / 3, (0.0, 1.0))
    assert summary.loc["a", f"{ACC}_cs_low"] == pytest.approx(low)
    assert summary.loc["a", f"{ACC}_cs_high"] == pytest.approx(high)
    assert set(summary["adaptive_interval"]) == {"looks"}
    section = (tmp_path / "report.md").read_text().split("## Adaptive seeds", 1)[1]
    assert "`interval=looks`" in section and "(2, 4, 6)" in section
    assert "confidence sequence" not in section
    judged = pd.read_csv(tmp_path / "claims.csv")
    assert set(judged["interval"]) == {"Student t, Bonferroni over 3 looks"}
    assert judged["level"].tolist() == pytest.approx([1 - 0.05 / 2 / 3] * 2)  # 2 cells, 3 looks
    assert "`interval=looks`" in (tmp_path / "report.md").read_text().split("## Claims")[1]

    del state["adaptive"]["rule"]["interval"]  # written before the choice: betting
    (tmp_path / ".sweep.json").write_text(json.dumps(state))
    write_report(tmp_path)
    assert set(pd.read_csv(tmp_path / "summary.csv")["adaptive_interval"]) == {"betting"}
    assert set(pd.read_csv(tmp_path / "claims.csv")["interval"]) == {
        "confidence sequence (betting)"
    }
    assert "`interval=betting`" in (tmp_path / "report.md").read_text()


def test_a_fixed_seed_sweeps_report_has_no_adaptive_columns_or_section(tmp_path):
    from attnlab.runs.report import write_report

    write_cell(tmp_path, "a", 2, [_run(s, 0.8) for s in range(3)])
    write_report(tmp_path)
    assert not [c for c in pd.read_csv(tmp_path / "summary.csv").columns if "_cs_" in c]
    assert "Adaptive" not in (tmp_path / "report.md").read_text()


# --- real adaptive sweeps (slow: subprocesses that train) ----------------------------------

ADAPTIVE = [
    "-m",
    DEBUG_TINY,
    "data.classes=2,5",
    "hydra.sweeper.adaptive.metric=val_accuracy",
    "hydra.sweeper.adaptive.half_width=0.2",
    "hydra.sweeper.adaptive.max_seeds=6",
    "hydra.sweeper.adaptive.step=2",
]
TRAINED = re.compile(r"training \d+ cells? as one model \((\d+) seeds")


def seeds_trained(text: str) -> int:
    """Seeds the run trained, from its packs' "training N cells as one model (K seeds" lines."""
    return sum(int(m) for m in TRAINED.findall(text))


def result_bytes(sweep_dir: Path) -> dict[str, bytes]:
    """Every finished result file of the sweep (metrics.json, seed records) by path."""
    return {
        str(p.relative_to(sweep_dir)): p.read_bytes()
        for p in sweep_dir.rglob("metrics.json")
        if not p.relative_to(sweep_dir).parts[0].startswith(".")
    }


def recorded_seeds(sweep_dir: Path) -> dict[str, list[int]]:
    from attnlab.runs import records

    return {
        r.name: sorted(run["seed"] for run in r.runs)
        for r in records.read_cells(sweep_dir)
        if r.finished
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("hydra.sweeper.adaptive.half_width=0", ["half_width=0", "> 0"]),
        ("hydra.sweeper.adaptive.until=claims", ["until=claims", "without claims"]),
        ("hydra.sweeper.adaptive.metric=accuracy", ["metric=accuracy", "one of"]),
        ("hydra.sweeper.adaptive.interval=wald", ["interval=wald", "betting, looks"]),
    ],
)
def test_a_bad_adaptive_option_exits_2_in_one_line_before_any_dir(tmp_path, option, words):
    sweep_dir = tmp_path / "sweep"
    args = [*ADAPTIVE[:3], "hydra.sweeper.adaptive.metric=val_accuracy", option]
    proc = run_cli([*args, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert proc.returncode == 2, shown(proc)
    one_line_error(proc, "hydra.sweeper.adaptive.", *words)
    assert not sweep_dir.exists()


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]])
def test_an_adaptive_sweep_grows_seeds_in_rounds_and_a_rerun_trains_nothing(tmp_path, launcher):
    """The tiny grid's cells cannot reach ±0.2 within 6 seeds: round 1 trains seeds 0-1,
    rounds 2 and 3 add 2 seeds each to both cells, and both stop at the cap saying so. One
    dir and one summary row per cell, with the confidence sequence. A rerun of the same
    command trains nothing and changes no result."""
    sweep_dir = tmp_path / "sweep"
    command = [*ADAPTIVE, *launcher, f"hydra.sweep.dir={sweep_dir}"]
    proc = run_cli(command, cwd=tmp_path)
    assert proc.returncode == 0, shown(proc)
    said = proc.stdout + proc.stderr
    assert re.search(r"round 2: data\.classes=5,\S*: \+2 seeds \(val_accuracy ±\S+ > ±0\.2\)", said)
    assert "round 3:" in said and "round 4:" not in said
    assert said.count("reached max_seeds=6: val_accuracy ±") == 2
    if not launcher:  # joblib's workers log to their own files
        assert seeds_trained(said) == 12  # 2 cells x 6 seeds, each trained once
    assert sorted(map(len, recorded_seeds(sweep_dir).values())) == [6, 6]
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert list(summary["n_seeds"]) == [6, 6]
    assert {"val_accuracy_cs_low", "val_accuracy_cs_high"} <= set(summary.columns)
    state = json.loads((sweep_dir / ".sweep.json").read_text())["adaptive"]
    assert state["rounds"] == 3 and all(c["at_cap"] for c in state["cells"].values())
    assert "## Adaptive seeds" in (sweep_dir / "report.md").read_text()

    before = result_bytes(sweep_dir)
    again = run_cli(command, cwd=tmp_path)
    assert again.returncode == 0, shown(again)
    assert seeds_trained(again.stdout + again.stderr) == 0
    assert "0 to train" in again.stdout + again.stderr
    assert result_bytes(sweep_dir) == before
    assert set(pd.read_csv(sweep_dir / "report.csv")["status"]) == {"cached"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stop", "moment"),
    [(signal.SIGINT, "within"), (signal.SIGKILL, "within"), (signal.SIGINT, "between")],
)
def test_a_stop_within_a_round_then_a_resume_trains_nothing_twice(tmp_path, stop, moment):
    """Ctrl-C (or SIGKILL) once round 2's pack has started training, or Ctrl-C between
    rounds 1 and 2 (as round 2's plan is logged); the resume (the same command) leaves every
    recorded result's bytes as they were, trains only the seeds not recorded, and ends as
    an undisturbed run: 6 seeds per cell."""
    sweep_dir = tmp_path / "sweep"
    command = [sys.executable, "-m", "attnlab", *ADAPTIVE, f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    in_round_2 = False
    for line in proc.stdout:
        if moment == "between" and re.search(r"round 2: \S+: \+2 seeds", line):
            in_round_2 = True
            os.killpg(proc.pid, stop)
            break
        in_round_2 = in_round_2 or "round 2: 2 cells into" in line
        if in_round_2 and TRAINED.search(line):
            os.killpg(proc.pid, stop)
            break
    rest = proc.stdout.read()
    status = proc.wait(timeout=300)
    assert in_round_2, rest[-3000:]
    if stop == signal.SIGINT:
        assert status == 130, rest[-3000:]
        assert "resume with: attnlab" in rest
    kept = result_bytes(sweep_dir)
    recorded = sum(map(len, recorded_seeds(sweep_dir).values()))
    assert 4 <= recorded < 12
    if moment == "between":
        assert recorded == 4  # round 1's seeds only

    resume = run_cli(ADAPTIVE + [f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path)
    assert resume.returncode == 0, shown(resume)
    assert seeds_trained(resume.stdout + resume.stderr) == 12 - recorded
    after = result_bytes(sweep_dir)
    assert {path: after.get(path) for path in kept} == kept
    assert sorted(map(len, recorded_seeds(sweep_dir).values())) == [6, 6]
    assert list(pd.read_csv(sweep_dir / "summary.csv")["n_seeds"]) == [6, 6]


# --- claims as targets (until=claims) ----------------------------------------------------------


def claim_cells(claims: list[str]) -> dict:
    """Cells of data.classes 2, 5 x model.attn_layers 1, 2 stating claims, by name."""
    import dataclasses

    from attnlab.engine.config import ExperimentConfig, flatten
    from attnlab.sweep.cells import Cell

    out = {}
    for classes in (2, 5):
        for layers in (1, 2):
            base = ExperimentConfig(claims=claims)
            exp = dataclasses.replace(
                base,
                data=dataclasses.replace(base.data, classes=classes),
                model=dataclasses.replace(base.model, attn_layers=layers),
            )
            out[f"c{classes}-l{layers}"] = Cell([], flatten(exp), f"c{classes}-l{layers}", exp)
    return out


def test_claims_become_targets_where_they_apply_at_the_reports_level():
    from attnlab.sweep.adaptive import targets_for

    cells = claim_cells(
        ["at data.classes=5: focus_rate > 0.5", "val_accuracy of model.attn_layers=1 <= 2"]
    )
    targets = targets_for(cells, AdaptiveOptions(until="claims"))
    threshold = [t for t in targets if not t.paired]
    assert [t.cells for t in threshold] == [("c5-l1",), ("c5-l2",)]
    # Bonferroni over the claim's 2 cells, as claims.csv judges it
    assert [t.level for t in threshold] == [pytest.approx(1 - 0.05 / 2)] * 2
    pairs = [t for t in targets if t.paired]
    assert sorted(t.cells for t in pairs) == [("c2-l1", "c2-l2"), ("c5-l1", "c5-l2")]
    assert pairs[0].claim == Claim("val_accuracy", "<=", 0.0)
    with_width = targets_for(cells, AdaptiveOptions(ACC, 0.1, until="claims"))
    assert len(with_width) == len(targets) + 4


def test_until_claims_refuses_a_claim_on_a_metric_without_a_range():
    with pytest.raises(ConfigError, match=r"until=claims .*'attn_key_rank < 2'.*not finite"):
        AdaptiveOptions(until="claims").check(5, ["attn_key_rank < 2"])


@pytest.mark.slow
def test_until_claims_grows_both_cells_of_an_undecided_comparison(tmp_path):
    """until=claims on a tiny grid: the comparison of 2 vs 5 classes is undecided at 2 and
    4 pairs (the betting interval of a difference spans [-1, 1]), so both cells get seeds in
    rounds 2 and 3; claims.csv judges it with the confidence
    sequence, over the seeds the rounds took, as the console's last word on it."""
    sweep_dir = tmp_path / "sweep"
    claim = "val_accuracy of data.classes=2 > 5"
    args = [
        *ADAPTIVE[:3],
        f"claims=[{claim!r}]".replace("'", '"'),
        "hydra.sweeper.adaptive.until=claims",
        "hydra.sweeper.adaptive.max_seeds=6",
        "hydra.sweeper.adaptive.step=2",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, shown(proc)
    said = proc.stdout + proc.stderr
    assert said.count(f"+2 seeds ({claim} unresolved [") == 4  # rounds 2 and 3, both cells
    rows = pd.read_csv(sweep_dir / "claims.csv")
    assert list(rows["interval"]) == ["confidence sequence (betting)"]
    (row,) = rows.itertuples()
    seeds = json.loads((sweep_dir / ".sweep.json").read_text())["seeds"]
    assert row.n_seeds == min(len(s) for s in seeds.values()) >= 4
    last = re.findall(rf"{re.escape(claim)} (\w+) \[([-\d.]+), ([-\d.]+)\]", said)[-1]
    assert row.verdict == last[0]
    assert row.ci_low == pytest.approx(float(last[1]), abs=1e-3)
    assert row.ci_high == pytest.approx(float(last[2]), abs=1e-3)
    assert "every interval is a confidence sequence" in (sweep_dir / "report.md").read_text()
