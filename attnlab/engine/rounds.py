"""The adaptive sweeper's round rule, pure: which cells get more seeds next round, and why.

Role: after each round the sweeper (attnlab.sweep.adaptive) reads every cell's per-seed
values and asks `plan_cells`; the same function drives `simulate_rounds`, so the coverage the
tests measure is the coverage of the rule the sweeper runs. No Hydra, no TensorFlow.

It extends attnlab.engine.sequential's per-cell `plan_round` to the targets a sweep has:

- a half-width target (`hydra.sweeper.adaptive.half_width`) on one metric, in every cell;
- a threshold claim ("focus_rate > 0.5") in each cell it applies to;
- a comparison claim ("val_accuracy of model.attention=oracle <= learned"): the per-seed
  differences A - B of two cells, paired by seed (same seed, same data draw). A difference of
  a metric in [lo, hi] lies in [lo - hi, hi - lo]: those bounds go to the betting interval.
  An unresolved pair adds seeds to whichever of its two cells has fewer (both when equal):
  only new common seeds make new pairs.

Every interval is `confidence_sequence` over the values in seed order, so it stays valid at
whatever round the rule stops (docs/statistics-adaptive.md). A cell stops when no target it
takes part in asks for more seeds, or at max_seeds (it then says so).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np

from attnlab.engine.sequential import (
    INTERVAL_RULES,
    LEVEL,
    CellNeed,
    Claim,
    _betting_paths,
    _checked_bounds,
    claim_verdict,
    confidence_sequence,
    look_counts,
    look_level,
    snap_to_bounds,
    t_paths,
    wilson_paths,
)

# cell key -> seed -> metric -> value, seeds in the cell's seed order (dicts keep it).
CellSeeds = Mapping[str, Mapping[int, Mapping[str, float]]]


@dataclass(frozen=True)
class Schedule:
    """How seeds are added: the first round's seeds, the step, the cap, the level.

    Attributes:
        min_seeds: seeds of the first round (the config's seed list), before any judging.
        step: seeds a cell that needs more gets per round.
        max_seeds: cap on a cell's seeds.
        level: simultaneous coverage of each interval.
        interval: "betting" (the confidence sequence, valid at every seed count) or
            "looks" (the fixed-n interval at each of the K possible looks at level
            1 - alpha/K: valid at the looks only, which are the only counts a cell stops at).
    """

    min_seeds: int
    step: int
    max_seeds: int
    level: float = LEVEL
    interval: str = "betting"

    def __post_init__(self) -> None:
        if not 1 <= self.min_seeds <= self.max_seeds or self.step < 1:
            raise ValueError("need 1 <= min_seeds <= max_seeds and step >= 1")
        if self.interval not in INTERVAL_RULES:
            raise ValueError(f"interval must be one of {INTERVAL_RULES}, got {self.interval!r}")

    def looks(self) -> list[int]:
        """The seed counts a cell can stop at: min_seeds, + step, ..., max_seeds."""
        return look_counts(self.min_seeds, self.step, self.max_seeds)

    def seeds_to_add(self, seeds: int) -> int:
        """Up to min_seeds first, then a step, never past max_seeds."""
        wanted = self.min_seeds - seeds if seeds < self.min_seeds else self.step
        return max(0, min(wanted, self.max_seeds - seeds))


@dataclass(frozen=True)
class Target:
    """One thing a round judges: a metric's mean in one cell, or the mean per-seed
    difference cells[0] - cells[1] of two cells.

    Attributes:
        cells: one cell key, or two (A, B) for a paired difference A - B.
        metric: the metric judged (focus_rate: attn_focused as 0/1 values).
        claim: "mean OP threshold" to decide (a difference's threshold is 0), or None for a
            half-width target.
        half_width: the target half-width (None for a claim).
        label: how the console and report name it, e.g. "focus_rate > 0.5".
        level: this target's interval level; None: the schedule's. A claim judged at k
            cells (or pairs) uses the report's Bonferroni level 1 - alpha/k
            (attnlab.engine.claims.family_level), so the rounds stop exactly when the
            report's verdict is decided.
    """

    cells: tuple[str, ...]
    metric: str
    claim: Claim | None = None
    half_width: float | None = None
    label: str = ""
    level: float | None = None

    @property
    def paired(self) -> bool:
        return len(self.cells) == 2


def difference_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    """The range of a difference of two values in bounds: [lo - hi, hi - lo]."""
    lo, hi = bounds
    return lo - hi, hi - lo


@overload
def target_values(target: Target, cells: CellSeeds) -> np.ndarray: ...
@overload
def target_values(
    target: Target, cells: CellSeeds, split: Literal[True]
) -> tuple[np.ndarray, np.ndarray]: ...


def target_values(
    target: Target, cells: CellSeeds, split: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The values a target's interval is built from, in seed order: one cell's metric, or
    A - B over the seeds both cells have (in A's order); NaN where a seed has no value.
    split: (A's values, B's values) over the common seeds instead, both finite only (B's
    empty for one cell)."""
    first = cells.get(target.cells[0], {})
    if not target.paired:
        x = np.array([_value(first[s], target.metric) for s in first], dtype=float)
        return (x[np.isfinite(x)], np.empty(0)) if split else x
    second = cells.get(target.cells[1], {})
    common = [s for s in first if s in second]
    x = np.array([_value(first[s], target.metric) for s in common], dtype=float)
    y = np.array([_value(second[s], target.metric) for s in common], dtype=float)
    if split:
        both = np.isfinite(x) & np.isfinite(y)
        return x[both], y[both]
    return x - y


def _value(record: Mapping[str, float], metric: str) -> float:
    value = record.get(metric, math.nan)
    return float(value) if isinstance(value, int | float) else math.nan


def target_interval(
    target: Target,
    cells: CellSeeds,
    bounds: Mapping[str, tuple[float, float]],
    level: float,
    rule: Schedule | None = None,
) -> tuple[float, float]:
    """The target's interval after the seeds so far: the confidence sequence, or with a
    rule whose interval is "looks" the fixed-n interval (t, Wilson, paired t, Newcombe: the
    fixed report's, attnlab.engine.claims.fixed_interval) at 1 - alpha/K for its K looks."""
    if rule is not None and rule.interval == "looks":
        from attnlab.engine.claims import fixed_interval

        x, y = target_values(target, cells, split=True)
        each = look_level(target.level or level, len(rule.looks()))
        low, high, _ = fixed_interval(target.metric, x, y if target.paired else None, each)
        return low, high
    metric_range = _checked_bounds(bounds.get(target.metric, (-math.inf, math.inf)), target.metric)
    span = difference_bounds(metric_range) if target.paired else metric_range
    values = target_values(target, cells)
    # A value past its bound by float rounding (a uniform attention's entropy, 1 + 2e-8) is
    # the bound; anything further stays an error (confidence_sequence raises).
    return confidence_sequence(snap_to_bounds(values, span), span, target.level or level)


Interval = Callable[[Target, CellSeeds], tuple[float, float]]


def judge(target: Target, cells: CellSeeds, interval: Interval) -> tuple[bool, str]:
    """(met, reason): the half-width reached or the claim decided, and a short text."""
    low, high = interval(target, cells)
    if target.claim is None:
        assert target.half_width is not None
        half = (high - low) / 2
        met = half <= target.half_width + 1e-12
        sign = "<=" if met else ">"
        return met, f"{target.metric} ±{half:.3g} {sign} ±{target.half_width:g}"
    verdict = claim_verdict(low, high, target.claim.op, target.claim.threshold)
    return verdict != "unresolved", f"{target.label} {verdict} [{low:.3g}, {high:.3g}]"


def plan_cells(
    cells: CellSeeds,
    targets: Sequence[Target],
    rule: Schedule,
    bounds: Mapping[str, tuple[float, float]],
    interval: Interval | None = None,
) -> list[CellNeed]:
    """Which cells get seeds this round, how many, and why; one CellNeed per cell, in order.

    A cell below rule.min_seeds first gets up to it. Then each unmet target asks for seeds
    for its cell (a pair: for the cell with fewer seeds, or both when equal); a cell asked
    gets rule.step more, never past rule.max_seeds. A cell that an unmet target asked but
    that has max_seeds already stops with at_cap and the reason "reached max_seeds=...".

    Args:
        cells: cell key -> seed -> metric -> value, each cell's seeds in seed order.
        targets: what to judge (`targets_for`).
        rule: min_seeds, step, max_seeds and level.
        bounds: metric -> its finite range.
        interval: the target's interval after the seeds in `cells`; default
            `target_interval` (the simulation passes the same intervals, computed once).
    """
    if interval is None:

        def interval(target: Target, seen: CellSeeds) -> tuple[float, float]:
            return target_interval(target, seen, bounds, rule.level, rule)

    for target in targets:
        _checked_bounds(bounds.get(target.metric, (-math.inf, math.inf)), target.metric)
    count = {cell: len(seeds) for cell, seeds in cells.items()}
    unmet: dict[str, list[str]] = {cell: [] for cell in cells}
    met: dict[str, list[str]] = {cell: [] for cell in cells}
    for target in targets:
        if any(count.get(c, 0) < rule.min_seeds for c in target.cells):
            continue  # judged once the first round's seeds are in
        done, reason = judge(target, cells, interval)
        fewest = min(count[c] for c in target.cells)
        for cell in target.cells:
            grows = not done and count[cell] == fewest
            (unmet if grows else met)[cell].append(reason)
    needs = []
    for cell, seeds in count.items():
        if seeds < rule.min_seeds:
            reason = f"{seeds} seeds < min_seeds={rule.min_seeds}"
            needs.append(CellNeed(cell, rule.seeds_to_add(seeds), reason))
        elif not unmet[cell]:
            needs.append(CellNeed(cell, 0, "; ".join(met[cell])))
        elif seeds >= rule.max_seeds:
            reason = f"reached max_seeds={rule.max_seeds}: " + "; ".join(unmet[cell])
            needs.append(CellNeed(cell, 0, reason, True))
        else:
            needs.append(CellNeed(cell, rule.seeds_to_add(seeds), "; ".join(unmet[cell])))
    return needs


@dataclass(frozen=True)
class RoundsSimulation:
    """What `simulate_rounds` measured over its studies (one study = one sweep of cells).

    Attributes:
        coverage: per target label, the share of studies whose final interval holds the
            target's true mean (a difference's: A's mean minus B's).
        wrong_decisions: per claim label, the share of studies deciding it against the truth.
        mean_seeds: per cell, its expected seeds at stopping.
        studies: number of simulated studies.
    """

    coverage: dict[str, float]
    wrong_decisions: dict[str, float]
    mean_seeds: dict[str, float]
    studies: int


Draws = Mapping[str, Callable[[np.random.Generator, tuple[int, int]], np.ndarray]]


def simulate_rounds(
    draws: Draws,
    true_means: Mapping[str, float],
    targets: Sequence[Target],
    rule: Schedule,
    bounds: Mapping[str, tuple[float, float]],
    studies: int = 500,
    seed: int = 0,
) -> RoundsSimulation:
    """Run `plan_cells` round after round on simulated cells, exactly as the sweeper does.

    Each cell draws max_seeds values of one metric up front (a seed's value does not depend
    on when it is trained: draws[cell](rng, (studies, max_seeds))), trains rule.min_seeds,
    then whatever `plan_cells` asks, until it asks for nothing; the final interval of each
    target is then checked against the truth. Every target judges the one metric drawn.
    The intervals are `confidence_sequence`'s, computed once per study and seed count (its
    value after n seeds depends on the first n only), so thousands of rounds take seconds.
    """
    rng = np.random.default_rng(seed)
    metric = targets[0].metric
    values = {
        cell: np.asarray(draw(rng, (studies, rule.max_seeds))) for cell, draw in draws.items()
    }
    paths = {
        target: _paths(target, values, bounds[metric], target.level or rule.level, rule)
        for target in targets
    }
    covered = {t.label: 0 for t in targets}
    wrong = {t.label: 0 for t in targets if t.claim is not None}
    seeds_total = dict.fromkeys(draws, 0)
    for study in range(studies):

        def interval(target: Target, seen: CellSeeds, study: int = study) -> tuple[float, float]:
            n = min(len(seen[c]) for c in target.cells)
            low, high = paths[target]
            return float(low[study, n - 1]), float(high[study, n - 1])

        have = dict.fromkeys(draws, 0)
        while True:
            seen = {
                c: {s: {metric: float(values[c][study, s])} for s in range(n)}
                for c, n in have.items()
            }
            needs = plan_cells(seen, targets, rule, bounds, interval)
            if not any(need.add for need in needs):
                break
            for need in needs:
                have[need.cell] += need.add
        for target in targets:
            truth = _truth(target, true_means)
            low, high = interval(target, seen)
            covered[target.label] += int(low <= truth <= high)
            if target.claim is not None:
                verdict = claim_verdict(low, high, target.claim.op, target.claim.threshold)
                correct = "holds" if _holds(truth, target.claim) else "fails"
                wrong[target.label] += int(verdict not in ("unresolved", correct))
        for cell, n in have.items():
            seeds_total[cell] += n
    return RoundsSimulation(
        coverage={k: v / studies for k, v in covered.items()},
        wrong_decisions={k: v / studies for k, v in wrong.items()},
        mean_seeds={k: v / studies for k, v in seeds_total.items()},
        studies=studies,
    )


def _paths(
    target: Target,
    values: Mapping[str, np.ndarray],
    bounds: tuple[float, float],
    level: float,
    rule: Schedule,
) -> tuple[np.ndarray, np.ndarray]:
    """The target's interval after each seed count, every study at once: (low, high), each
    (studies, max_seeds); what `target_interval` gives after the first n seeds."""
    lo, hi = difference_bounds(bounds) if target.paired else bounds
    x = (
        values[target.cells[0]] - values[target.cells[1]]
        if target.paired
        else values[target.cells[0]]
    )
    if rule.interval == "looks":
        each = look_level(level, len(rule.looks()))
        if target.metric == "focus_rate":
            if target.paired:  # the sweeper's is Newcombe's paired interval: not vectorised
                raise ValueError("simulate_rounds: a focus_rate comparison under looks")
            return wilson_paths(x, each)
        return t_paths(x, (lo, hi), each)
    low01, high01 = _betting_paths((x - lo) / (hi - lo), level)
    return lo + (hi - lo) * low01, lo + (hi - lo) * high01


def _truth(target: Target, true_means: Mapping[str, float]) -> float:
    if target.paired:
        return true_means[target.cells[0]] - true_means[target.cells[1]]
    return true_means[target.cells[0]]


def _holds(mean: float, claim: Claim) -> bool:
    return {
        ">": mean > claim.threshold,
        ">=": mean >= claim.threshold,
        "<": mean < claim.threshold,
        "<=": mean <= claim.threshold,
    }[claim.op]
