"""The boundary search's pure core: the fit, the next probe, the stops, the rule's errors, and
(slow tier) the coverage of the whole adaptive search simulated on known curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from attnlab.engine.boundary import (
    BoundaryError,
    BoundaryRule,
    Probe,
    boundary_row,
    fit_boundary,
    grid_cost,
    next_probes,
    pocock_z,
    simulate_search,
)

RULE = BoundaryRule(low=2, high=128, level=0.5)


def focus_rate(x: np.ndarray) -> np.ndarray:
    """The issue's curve: focus rate 1 / (1 + exp((x - 25) / 4)), boundary 25 at level 0.5."""
    return 1.0 / (1.0 + np.exp((np.asarray(x, dtype=float) - 25.0) / 4.0))


def expected_probe(x: int, seeds: int) -> Probe:
    """A probe whose successes are the curve's expectation (noiseless, for deterministic tests)."""
    return Probe(x, float(focus_rate(np.array([x]))[0] * seeds), seeds)


def run_search(rule: BoundaryRule, outcome, limit: int = 60):
    """Follow next_probes until done; outcome(x, seeds) -> Probe. Returns (probes, plans)."""
    probes: list[Probe] = []
    plans = []
    for _ in range(limit):
        plan = next_probes(probes, rule)
        plans.append(plan)
        if plan.done:
            return probes, plans
        probes += [outcome(r.x, r.add_seeds) for r in plan.requests]
    raise AssertionError("the search did not stop")


# ---------------------------------------------------------------- quick tier


def test_fit_recovers_a_known_boundary_from_large_noiseless_probes() -> None:
    rule = BoundaryRule(2, 128, log_axis=False)  # the curve is logistic in x: the model holds
    probes = [expected_probe(x, 10_000) for x in (10, 18, 22, 25, 28, 32, 40)]
    estimate = fit_boundary(probes, rule)
    assert estimate.boundary == pytest.approx(25.0, abs=0.05)
    assert estimate.ci_low < 25.0 < estimate.ci_high
    assert estimate.width < 1.0
    assert estimate.slope == pytest.approx(-0.25, rel=0.02)  # logit per class: -1 / 4
    assert (estimate.cells_probed, estimate.models_trained) == (7, 70_000)


def test_probes_at_one_x_are_one_cell() -> None:
    split = [Probe(10, 9, 10), Probe(10, 8, 10), Probe(30, 2, 10), Probe(60, 0, 10)]
    merged = [Probe(10, 17, 20), Probe(30, 2, 10), Probe(60, 0, 10)]
    assert fit_boundary(split, RULE) == fit_boundary(merged, RULE)


def test_fit_needs_three_axis_values_inside_the_range() -> None:
    with pytest.raises(BoundaryError, match="3 or more axis values"):
        fit_boundary([Probe(10, 5, 10), Probe(10, 5, 10), Probe(20, 1, 10)], RULE)
    with pytest.raises(BoundaryError, match="outside"):
        fit_boundary([Probe(1, 5, 10), Probe(10, 5, 10), Probe(20, 1, 10)], RULE)


def test_search_opens_then_brackets_then_narrows_and_stops_at_the_width() -> None:
    probes, plans = run_search(RULE, expected_probe)
    opening = plans[0].requests
    assert [r.x for r in opening] == [2, 8, 32, 128]  # evenly spread in log(x), ends included
    assert all(r.new_cell and r.add_seeds == 8 for r in opening)
    widths = [p.estimate.width for p in plans[1:]]
    assert widths[-1] <= 8.0 < widths[0]
    assert plans[-1].done_reason == f"width {widths[-1]:.3g} <= 8"
    final = plans[-1].estimate
    assert final.ci_low <= 25.0 <= final.ci_high
    later = [r.x for p in plans[1:-1] for r in p.requests]
    assert later and all(8 < x < 32 for x in later)  # inside the opening bracket


def test_search_stops_at_the_model_cap() -> None:
    rule = BoundaryRule(2, 128, max_models=48, seeds_per_probe=8)
    probes, plans = run_search(rule, expected_probe)
    assert plans[-1].done_reason == "reached max_models=48"
    assert sum(p.trials for p in probes) == 48


@pytest.mark.parametrize(
    ("successes", "direction", "words"),
    [
        (8, "falling", "the rate stays above 0.5 (boundary > 128"),
        (0, "falling", "the rate stays below 0.5 (boundary < 1."),
        (0, "rising", "the rate stays below 0.5 (boundary > 128"),
    ],
)
def test_level_not_crossed_stops_after_the_opening(
    successes: int, direction: str, words: str
) -> None:
    rule = BoundaryRule(2, 128, direction=direction)  # type: ignore[arg-type]
    probes, plans = run_search(rule, lambda x, seeds: Probe(x, successes, seeds))
    assert len(plans) == 2 and len(probes) == 4
    reason = plans[-1].done_reason
    assert reason is not None and reason.startswith("level not crossed in [2, 128]: ")
    assert words in reason
    assert math.isnan(plans[-1].estimate.boundary)


def test_never_a_second_cell_at_a_probed_x() -> None:
    rng = np.random.default_rng(3)

    def noisy(x: int, seeds: int) -> Probe:
        return Probe(x, float(rng.binomial(seeds, focus_rate(np.array([x]))[0])), seeds)

    more_seeds = 0
    for _ in range(2):  # width 3: long searches that come back to probed cells
        probes, plans = run_search(BoundaryRule(2, 128, width=3.0, max_models=120), noisy)
        seen: set[int] = set()
        for plan in plans:
            xs = [r.x for r in plan.requests]
            assert len(xs) == len(set(xs))
            for request in plan.requests:
                assert request.new_cell == (request.x not in seen), request
                more_seeds += not request.new_cell
            seen |= set(xs)
        assert len(seen) == plans[-1].estimate.cells_probed
    assert more_seeds > 0  # the searches did add seeds to probed cells


def test_a_metric_mean_from_per_seed_values() -> None:
    rng = np.random.default_rng(0)
    probes = []
    for x in (5, 12, 20, 25, 30, 40, 80):
        mean = float(focus_rate(np.array([x]))[0])
        probes.append(Probe.from_values(x, rng.beta(40 * mean + 0.01, 40 * (1 - mean) + 0.01, 64)))
    estimate = fit_boundary(probes, BoundaryRule(2, 128, log_axis=False))
    assert estimate.ci_low < 25.0 < estimate.ci_high
    assert estimate.width < 8.0
    assert 0.0 < estimate.dispersion < 0.2  # Beta(40p, 40(1-p)): variance p(1-p) / 41
    with pytest.raises(BoundaryError, match=r"\[0, 1\]"):
        Probe.from_values(3, [0.5, 1.5])
    with pytest.raises(BoundaryError, match="mix"):
        fit_boundary([*probes[:2], Probe(60, 0, 8)], RULE)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"low": 64, "high": 64}, "hydra.sweeper.boundary.high=64: empty range: must be > low=64"),
        ({"low": 0}, "hydra.sweeper.boundary.low=0: must be >= 1 on a log axis"),
        ({"low": 2.5}, "hydra.sweeper.boundary.low=2.5: an integer"),
        ({"level": 1.0}, "hydra.sweeper.boundary.level=1.0: a rate or a [0, 1] metric's level"),
        ({"level": 0}, "hydra.sweeper.boundary.level=0: "),
        ({"width": 0}, "hydra.sweeper.boundary.width=0: a positive interval width"),
        ({"seeds_per_probe": 0}, "hydra.sweeper.boundary.seeds_per_probe=0: an integer >= 1"),
        ({"max_models": 20}, "hydra.sweeper.boundary.max_models=20: an integer >= initial"),
        ({"initial_cells": 2}, "hydra.sweeper.boundary.initial_cells=2: an integer from 3"),
        ({"direction": "down"}, "hydra.sweeper.boundary.direction='down': 'falling' or"),
    ],
)
def test_bad_rules_name_the_key_the_value_and_what_is_allowed(
    fields: dict[str, object], words: str
) -> None:
    arguments: dict[str, object] = {"low": 2, "high": 128, **fields}
    with pytest.raises(BoundaryError) as caught:
        BoundaryRule(**arguments)  # type: ignore[arg-type]
    assert words in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert "\n" not in str(caught.value)


def test_boundary_row_has_the_fixed_columns_after_the_group_keys() -> None:
    estimate = fit_boundary([expected_probe(x, 10) for x in (10, 20, 30, 40)], RULE)
    row = boundary_row({"model.features": 32}, "focus_rate", RULE, estimate)
    assert list(row) == [
        "model.features",
        "metric",
        "level",
        "boundary",
        "boundary_ci_low",
        "boundary_ci_high",
        "cells_probed",
        "models_trained",
    ]
    assert row["models_trained"] == 40 and row["cells_probed"] == 4


def test_pocock_constant_matches_the_published_table() -> None:
    assert pocock_z(1) == pytest.approx(1.960, abs=0.015)
    assert pocock_z(5) == pytest.approx(2.413, abs=0.02)  # Jennison & Turnbull, Table 2.1
    assert pocock_z(10) == pytest.approx(2.555, abs=0.02)


# ---------------------------------------------------------------- slow tier: coverage

GRID_MODELS = 32 * 10  # today's practice: every 4 classes from 2 to 126, 10 seeds each


@pytest.mark.slow
def test_search_covers_the_logistic_boundary_with_far_fewer_models_than_the_grid() -> None:
    result = simulate_search(focus_rate, RULE, studies=1000, seed=0)
    assert result["true_boundary"] == pytest.approx(25.0)
    assert result["coverage"] >= 0.93, result
    assert result["mean_models"] <= GRID_MODELS / 2, result
    assert result["mean_width"] <= 8.0, result
    assert result["share_capped"] <= 0.05, result


@pytest.mark.slow
def test_search_covers_a_probit_shaped_boundary() -> None:
    """Misspecified: the truth is a normal CDF, the fit a logistic (in log x, by default)."""

    def probit(x: np.ndarray) -> np.ndarray:
        return stats.norm.sf((np.asarray(x, dtype=float) - 25.0) / 7.0)

    result = simulate_search(probit, RULE, studies=1000, seed=1)
    assert result["coverage"] >= 0.93, result
    assert result["mean_models"] <= GRID_MODELS / 2, result


@pytest.mark.slow
def test_search_lands_within_4_classes_as_often_as_the_grid_read_by_eye() -> None:
    search = simulate_search(focus_rate, RULE, studies=1000, seed=2)
    grid = grid_cost(focus_rate, RULE, studies=1000, seed=2)
    assert grid["grid_models"] == GRID_MODELS
    assert search["within_tol"] >= grid["eye_within_tol"] - 0.03, (search, grid)
