"""Adaptive seeds (`hydra.sweeper.adaptive.*`): rounds of training, each giving more seeds
only to the cells whose answer is not decided yet.

Round 1 is the grid with the config's seeds. After each round the cells' per-seed values
are read from their records, attnlab.engine.rounds.plan_cells says which cells need more
seeds and why, and those cells run again with their seed list extended by `step` (seeds are
taken in one fixed order: the config's list, then the next integers), through the planner's
`run_round` like any grid: packs, any launcher, cached seeds reused. It stops when no cell
needs more; a cell at max_seeds says so. The intervals judged are anytime-valid confidence
sequences (attnlab.engine.sequential), so stopping on them keeps their coverage; or with
`interval=looks` the fixed-n interval at 1 - alpha/K for the K seed counts a cell can stop
at (valid by the union bound where t is valid at each count).

Resuming is rerunning the command: round 1 reuses every recorded seed, the plan is made from
every seed recorded in the fixed order, and only missing seeds are trained. Ctrl-C between
rounds stops here (raise_if_stopped) and within a round in the launcher, as in a grid.

The round loop takes its two Hydra-side verbs (train a round, compose a cell with a seed
list) from the planner, which imports this module: no import cycle.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from attnlab.engine.config import ConfigError
from attnlab.engine.metrics import SUMMARY_METRICS, metric_bounds
from attnlab.engine.rounds import Schedule, Target, plan_cells
from attnlab.engine.sequential import INTERVAL_RULES, LEVEL, CellNeed
from attnlab.runs import records
from attnlab.runs.files import write_json
from attnlab.sweep.cells import Cell
from attnlab.sweep.options import OptionsNode
from attnlab.sweep.signals import raise_if_stopped

log = logging.getLogger(__name__)

KEY = "hydra.sweeper.adaptive"
DEFAULT_MAX_SEEDS = 40
DEFAULT_STEP = 5
# The interval rule when hydra.sweeper.adaptive.interval is null. betting assumes only the
# metric's range; looks (fixed-n t/Wilson at 1 - alpha/K per look) needs 2-5x fewer seeds
# for means in docs/statistics-adaptive.md's simulation but inherits the t interval's
# assumption: a metric with rare far-off seeds drops its coverage to 0.41 there.
DEFAULT_INTERVAL = "betting"
INTERVAL_NAMES = {
    "betting": "confidence sequence (betting; Waudby-Smith & Ramdas 2023)",
    "looks": "fixed-n interval at each look, Bonferroni over the looks",
}
RATE = "focus_rate"  # the share of seeds focused: attn_focused as 0/1 values
METRICS = (*SUMMARY_METRICS, RATE)


def bounds_of(metric: str) -> tuple[float, float]:
    """The range a metric's per-seed values lie in (a rate's 0/1 values: [0, 1])."""
    return (0.0, 1.0) if metric == RATE else metric_bounds(metric)


@dataclass
class AdaptiveOptions(OptionsNode):
    """hydra.sweeper.adaptive, typed (hydra_plugins/attnlab_sweeper/config.py documents each)."""

    metric: str | None = None
    half_width: float | None = None
    until: str | None = None
    max_seeds: int | None = None
    step: int | None = None
    interval: str | None = None

    def check(self, seed_count: int, claims: Sequence[str]) -> None:
        """ConfigError (one line: the key, the value, what is allowed) for an option out of
        range, before any dir is made.

        Args:
            seed_count: seeds of the first round (the config's `seeds`, the longest if swept).
            claims: the config's claims (`until=claims` needs some).
        """
        if self.metric is not None:
            if self.metric not in METRICS:
                raise ConfigError(
                    f"{KEY}.metric={self.metric} is not allowed: one of {', '.join(METRICS)}"
                )
            low, high = bounds_of(self.metric)
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ConfigError(
                    f"{KEY}.metric={self.metric} is not allowed: its range [{low}, {high}] is "
                    "not finite, and the anytime-valid interval bets within known bounds; use "
                    "a bounded metric or fixed seeds"
                )
        if self.half_width is not None:
            if not self.half_width > 0:
                raise ConfigError(
                    f"{KEY}.half_width={self.half_width} is not allowed: a number > 0, in the "
                    "metric's units (e.g. 0.05)"
                )
            if self.metric is None:
                raise ConfigError(
                    f"{KEY}.half_width={self.half_width} needs {KEY}.metric: the metric whose "
                    f"interval it bounds (one of {', '.join(METRICS)})"
                )
        if self.until not in (None, "claims"):
            raise ConfigError(f"{KEY}.until={self.until} is not allowed: null or claims")
        if self.interval is not None and self.interval not in INTERVAL_RULES:
            raise ConfigError(
                f"{KEY}.interval={self.interval} is not allowed: one of "
                f"{', '.join(INTERVAL_RULES)} (null: {DEFAULT_INTERVAL})"
            )
        if self.until == "claims" and not claims:
            raise ConfigError(
                f"{KEY}.until=claims is not allowed without claims: the config's `claims` is "
                "empty (e.g. 'claims=[\"focus_rate > 0.5\"]', or a preset that carries claims)"
            )
        if self.until == "claims":
            check_claim_ranges(claims)
        if self.half_width is None and self.until is None:
            given = ", ".join(f"{KEY}.{k}={v}" for k, v in asdict(self).items() if v is not None)
            raise ConfigError(
                f"{given} is not allowed alone: adaptive seeds need a target, "
                f"{KEY}.metric with {KEY}.half_width, or {KEY}.until=claims"
            )
        if self.step is not None and self.step < 1:
            raise ConfigError(f"{KEY}.step={self.step} is not allowed: an integer >= 1")
        cap = self.cap()
        if cap < seed_count:
            raise ConfigError(
                f"{KEY}.max_seeds={cap} is not allowed: at least the config's {seed_count} "
                f"seeds (the first round trains them all)"
            )

    def cap(self) -> int:
        return DEFAULT_MAX_SEEDS if self.max_seeds is None else int(self.max_seeds)

    def rule(self) -> str:
        """The interval rule: betting or looks (null: DEFAULT_INTERVAL)."""
        return DEFAULT_INTERVAL if self.interval is None else str(self.interval)

    def schedule(self, seed_count: int) -> Schedule:
        """The round schedule: the config's seeds first, then `step` more per round."""
        step = DEFAULT_STEP if self.step is None else int(self.step)
        return Schedule(seed_count, step, self.cap(), LEVEL, self.rule())


@dataclass
class AdaptiveCell:
    """One cell of an adaptive sweep across its rounds.

    Attributes:
        position: its index in the grid (Hydra's job number when composed again).
        cell: the cell as composed for the latest round that asked it for seeds.
        order: every seed it may take, in the fixed order: the config's, then the next ints.
        asked: seeds the latest round asked it to have; a round that left some missing
            failed for this cell, and it gets no more (failed says why).
        seeds: its seeds recorded so far, in order (what the report's intervals use).
        reason: the plan's latest word on it; at_cap: it stopped at max_seeds unmet.
        home: the dir its seeds are recorded in (the report's name for it).
    """

    position: int
    cell: Cell
    order: list[int]
    asked: int
    seeds: list[int] = field(default_factory=list)
    failed: str = ""
    reason: str = ""
    at_cap: bool = False
    home: str = ""


def adaptive_cells(cells: list[Cell], cap: int) -> dict[str, AdaptiveCell]:
    """The grid's valid cells, each once, by their first round's dir name."""
    out: dict[str, AdaptiveCell] = {}
    seen: set[str] = set()
    for position, cell in enumerate(cells):
        identity = records.identity_key(cell.config)
        if cell.exp is None or identity in seen:
            continue  # an invalid cell is recorded failed by its round; a duplicate runs once
        seen.add(identity)
        seeds = list(cell.exp.seeds)
        out[cell.name] = AdaptiveCell(position, cell, seed_order(seeds, cap), len(seeds))
    return out


def seed_order(seeds: Sequence[int], max_seeds: int) -> list[int]:
    """The fixed order seeds are taken in: the config's seeds (ascending, as the report's
    intervals read them), then the next integers after the largest, up to max_seeds seeds."""
    order = sorted(seeds)
    nxt = max(order) + 1
    while len(order) < max_seeds:
        order.append(nxt)
        nxt += 1
    return order[: max(max_seeds, len(seeds))]


def seeds_override(seeds: Sequence[int]) -> str:
    return "seeds=[" + ",".join(str(s) for s in seeds) + "]"


def with_seeds(overrides: Sequence[str], seeds: Sequence[int]) -> list[str]:
    """A cell's overrides with its seed list replaced by `seeds`."""
    kept = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != "seeds"]
    return [*kept, seeds_override(seeds)]


def recorded_cells(sweep_dir: Path) -> dict[str, records.CellRecord]:
    """identity_key -> each finished cell's record, every seed recorded for it (all its
    dirs merged: records.read_cells)."""
    return {
        records.identity_key(record.config): record
        for record in records.read_cells(sweep_dir)
        if record.finished
    }


def recorded_values(
    found: dict[str, records.CellRecord], item: AdaptiveCell
) -> dict[int, dict[str, float]]:
    """seed -> metric -> value of the cell's recorded seeds: the longest prefix of its seed
    order (a missing seed ends it: the intervals are valid in that order only). A diverged
    seed counts as taken, its values NaN (left out of the interval, as the summary leaves
    it out). Sets item.home, the dir the report knows the cell by."""
    record = found.get(records.identity_key(item.cell.config))
    if record is None:
        return {}
    item.home = record.name
    runs = {run["seed"]: run for run in record.runs}
    out: dict[int, dict[str, float]] = {}
    for seed in item.order:
        run = runs.get(seed)
        if run is None:
            break
        usable = run.get("status") in ("completed", "cached")
        out[seed] = {metric: _number(run, metric) if usable else math.nan for metric in METRICS}
    return out


def _number(run: dict[str, Any], metric: str) -> float:
    value = run.get("attn_focused" if metric == RATE else metric)
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, int | float) else math.nan


def readable(name: str) -> str:
    """A cell dir's name without its hash (`data.classes=20,model.attn_layers=1`)."""
    text, _, digest = name.rpartition("-")
    return text if text and len(digest) == records.HASH_CHARS else name


def check_claim_ranges(claims: Sequence[str]) -> None:
    """ConfigError for a claim whose metric has no finite range: until=claims judges it by
    betting within the range (docs/statistics-adaptive.md)."""
    from attnlab.engine.claims import parse_claims

    for stated in parse_claims(claims):
        low, high = bounds_of(stated.claim.metric)
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ConfigError(
                f"{KEY}.until=claims is not allowed with the claim {stated.text!r}: "
                f"{stated.claim.metric}'s range [{low}, {high}] is not finite, and the "
                "anytime-valid interval bets within known bounds; drop the claim or use "
                "fixed seeds"
            )


def targets_for(cells: dict[str, Cell], options: AdaptiveOptions) -> list[Target]:
    """What each round judges: the half-width target in every cell, and with until=claims
    every claim in each cell (or pair of cells) it applies to."""
    targets = []
    if options.half_width is not None and options.metric is not None:
        for key in cells:
            label = f"{options.metric} ±{options.half_width:g}"
            targets.append(Target((key,), options.metric, None, options.half_width, label))
    if options.until == "claims":
        targets += claim_targets(cells)
    return targets


def claim_targets(cells: dict[str, Cell]) -> list[Target]:
    """Each claim of the cells' config (attnlab.engine.claims' grammar) in each cell it
    applies to (`at ...:`), a comparison in each pair of cells that differ only in its key
    (A, B); each at the level the report judges it (Bonferroni over the claim's cells)."""
    from attnlab.engine.claims import family_level, parse_claims

    texts = list(dict.fromkeys(text for cell in cells.values() for text in cell_claims(cell)))
    out = []
    for stated in parse_claims(texts):
        matching = [k for k, c in cells.items() if _applies(c.config, stated.at)]
        if stated.comparison:
            members = _pairs(stated, {k: cells[k] for k in matching})
        else:
            members = [(key,) for key in matching]
        level = family_level(LEVEL, len(members))
        claim = stated.claim
        out += [Target(m, claim.metric, claim, None, stated.text, level) for m in members]
    return out


def _applies(config: dict[str, Any], at: Sequence[tuple[str, str]]) -> bool:
    from attnlab.engine.claims import same_value

    return all(key in config and same_value(config[key], value) for key, value in at)


def _pairs(stated: Any, cells: dict[str, Cell]) -> list[tuple[str, ...]]:
    """(A, B) cell keys of each pair that differs only in the comparison's key."""
    from attnlab.engine.claims import same_value

    at_a: dict[str, str] = {}
    at_b: dict[str, str] = {}
    for key, cell in cells.items():
        value = cell.config.get(stated.key)
        rest = {k: v for k, v in cell.config.items() if k not in (stated.key, "seeds")}
        context = records.identity_key(rest)
        if value is not None and same_value(value, stated.a):
            at_a.setdefault(context, key)
        elif value is not None and same_value(value, stated.b):
            at_b.setdefault(context, key)
    return [(a, at_b[context]) for context, a in at_a.items() if context in at_b]


def cell_claims(cell: Cell) -> list[str]:
    """The claims of a cell's config (`claims`), [] where the config has none."""
    return list(getattr(cell.exp, "claims", None) or [])


TrainRound = Callable[[list[Cell], int], list[Any]]
ComposeSeeds = Callable[[int, list[int]], Cell]
TargetsOf = Callable[[dict[str, Cell]], list[Target]]


def run_adaptive(
    sweep_dir: Path,
    cells: list[Cell],
    state: dict[str, Any],
    options: AdaptiveOptions,
    targets_of: TargetsOf,
    train_round: TrainRound,
    compose_seeds: ComposeSeeds,
) -> list[Any]:
    """Train round after round until no cell needs more seeds; return every round's returns.

    Args:
        sweep_dir: the open (locked) sweep dir.
        cells: the grid's cells, as composed with the config's seeds (round 1).
        state: .sweep.json's content; state["adaptive"] records the rule and the rounds.
        options: the checked adaptive options.
        targets_of: the targets to judge, from the cells by key (`targets_for`).
        train_round: the planner's run_round for a list of cells and a round index (0: 1st).
        compose_seeds: the grid's cell at a position, composed with another seed list.
    """
    adaptive = adaptive_cells(cells, options.cap())
    if not adaptive:  # every cell invalid: round 1 records them, nothing to add to
        return list(train_round(cells, 0))
    schedule = options.schedule(max(len(a.cell.config["seeds"]) for a in adaptive.values()))
    targets = targets_of({key: a.cell for key, a in adaptive.items()})
    bounds = {t.metric: bounds_of(t.metric) for t in targets}
    state["adaptive"] = {
        "rule": {
            **asdict(options),
            "max_seeds": schedule.max_seeds,
            "step": schedule.step,
            "interval": schedule.interval,
        },
        "level": schedule.level,
        "interval": INTERVAL_NAMES[schedule.interval],
        # The seed counts a cell could stop at: the report's looks intervals use K = len.
        "looks": schedule.looks(),
        "targets": list(dict.fromkeys(t.label for t in targets)),
        "metrics": list(dict.fromkeys(t.metric for t in targets)),
        "rounds": 1,
        "cells": {},
    }
    returns = list(train_round(cells, 0))
    round_index = 0
    while True:
        raise_if_stopped()  # Ctrl-C between rounds stops here, as within one
        found = recorded_cells(sweep_dir)
        seen = {key: recorded_values(found, item) for key, item in adaptive.items()}
        note_failures(adaptive, seen, round_index + 1)
        live = {key: values for key, values in seen.items() if not adaptive[key].failed}
        needs = plan_cells(live, targets, schedule, bounds)
        grow = note_plan(adaptive, needs, round_index + 2)
        record_state(sweep_dir, state, adaptive)
        if not grow:
            return returns
        round_index += 1
        state["adaptive"]["rounds"] = round_index + 1
        batch = []
        for key, add in grow.items():
            item = adaptive[key]
            seeds = item.order[: len(seen[key]) + add]
            item.asked = len(seeds)
            item.cell = compose_seeds(item.position, seeds)
            batch.append(item.cell)
        returns += train_round(batch, round_index)


def note_failures(
    adaptive: dict[str, AdaptiveCell], seen: dict[str, dict[int, dict[str, float]]], done: int
) -> None:
    """Mark the cells whose latest round left seeds missing (its failure is in the cell's
    record and the report): they get no more rounds (a failing cell would fail again)."""
    for key, item in adaptive.items():
        item.seeds = list(seen[key])
        if not item.failed and len(item.seeds) < item.asked:
            item.failed = f"round {done} left {item.asked - len(item.seeds)} seed(s) missing"
            log.error("%s: %s: no more seeds for it", readable(key), item.failed)


def note_plan(
    adaptive: dict[str, AdaptiveCell], needs: list[CellNeed], next_round: int
) -> dict[str, int]:
    """Log the plan (one line per cell that gets seeds, one when a cell reaches its cap);
    return cell key -> seeds to add."""
    grow = {}
    for need in needs:
        item = adaptive[need.cell]
        if need.at_cap and not item.at_cap:
            log.info("%s %s", readable(need.cell), need.reason)
        item.reason, item.at_cap = need.reason, need.at_cap
        if need.add:
            grow[need.cell] = need.add
            log.info(
                "round %d: %s: +%d seeds (%s)",
                next_round,
                readable(need.cell),
                need.add,
                need.reason,
            )
    return grow


def record_state(sweep_dir: Path, state: dict[str, Any], adaptive: dict[str, AdaptiveCell]) -> None:
    """.sweep.json: each cell's seeds in use (the report summarises those) and its standing."""
    requested = state.setdefault("seeds", {})
    cells = state["adaptive"]["cells"]
    for item in adaptive.values():
        name = item.home or item.cell.name
        if item.seeds:
            requested[name] = item.seeds
        cells[name] = {
            "seeds": item.seeds,
            "at_cap": item.at_cap,
            "reason": item.failed or item.reason,
        }
    write_json(sweep_dir / records.SWEEP_STATE, state)
