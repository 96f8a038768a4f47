"""The boundary search (`hydra.sweeper.boundary.*`): where a rate crosses a level along an
integer config key, found in rounds of probe cells instead of a guessed grid.

The command's other swept keys make groups (`model.attn_layers=1,2 data.features=32,128`:
four groups, four boundaries). Each round asks attnlab.engine.boundary, for every group not
done, where to probe next (the opening cells, then one axis value a round, new or already
probed), composes those cells (the group's overrides, the axis value and `seeds=[...]`) and
trains all of them in ONE run_round of the planner, so packs span groups. A probe is an
ordinary cell: it is in report.csv and summary.csv, and a rerun reuses it. After the round
the probes' per-seed values are read back from their records (attnlab.runs.boundary) and
the loop goes on until every group is done: its interval narrower than `width`, the level
not crossed in the range, or its `max_models` reached.

Seeds are taken in one fixed order per group (the config's list, then the next integers):
a probe asked for 8 more seeds at a value it has probed has its seed list extended, and
under seed-level records only the missing seeds train, into the same cell dir.

Resuming is rerunning the command: the search is replayed from the start, every probe it
asks for is found finished in its records (cached), and the engine, given the same values,
asks for the same next probes, so nothing is trained twice; training starts at the first
probe with no record. .sweep.json's state["boundary"] records the rule and every group's
probes (cell dir and seeds); the report rebuilds boundary.csv, the figure and its section
from that and the cells' records.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.override_parser.types import Override

from attnlab.engine.boundary import (
    BoundaryError,
    BoundaryEstimate,
    BoundaryRule,
    Probe,
    ProbePlan,
    next_probes,
)
from attnlab.engine.config import ConfigError, ExperimentConfig
from attnlab.engine.metrics import SUMMARY_METRICS
from attnlab.runs import records
from attnlab.runs.boundary import (
    RATE,
    STATE_KEY,
    make_probe,
    metric_range,
    probe_values,
    to_unit,
)
from attnlab.runs.files import write_json
from attnlab.sweep.cells import Cell
from attnlab.sweep.options import OptionsNode
from attnlab.sweep.signals import raise_if_stopped

log = logging.getLogger(__name__)

KEY = "hydra.sweeper.boundary"
METRICS = (RATE, *SUMMARY_METRICS)
DEFAULT_METRIC = RATE
DEFAULT_LEVEL = 0.5


def integer_keys() -> list[str]:
    """The config's integer keys (the schema's int fields, bools excluded), dotted."""
    out = []
    hints = typing.get_type_hints(ExperimentConfig)
    for group in dataclasses.fields(ExperimentConfig):
        kind = hints[group.name]
        if not dataclasses.is_dataclass(kind):
            continue
        for name, hint in typing.get_type_hints(kind).items():
            if hint is int:
                out.append(f"{group.name}.{name}")
    return [k for k in out if k not in records.NOT_IDENTITY]


@dataclass
class BoundaryOptions(OptionsNode):
    """hydra.sweeper.boundary, typed (hydra_plugins/attnlab_sweeper/config.py documents each;
    unset fields take attnlab.engine.boundary.BoundaryRule's defaults)."""

    axis: str | None = None
    low: int | None = None
    high: int | None = None
    metric: str | None = None
    level: float | None = None
    width: float | None = None
    max_models: int | None = None
    seeds_per_probe: int | None = None
    initial_cells: int | None = None
    log_axis: bool | None = None
    direction: str | None = None

    @property
    def metric_name(self) -> str:
        name = self.metric if self.metric is not None else DEFAULT_METRIC
        return name.removesuffix("_mean") if name != RATE else name

    @property
    def level_value(self) -> float:
        return float(self.level if self.level is not None else DEFAULT_LEVEL)

    def check(self, overrides: Sequence[Override]) -> BoundaryRule:
        """The engine's rule, or ConfigError (one line: key, value, what is allowed) for a
        bad option, before any dir is made."""
        self._check_axis(overrides)
        self._check_metric()
        if self.low is None or self.high is None:
            missing = "low" if self.low is None else "high"
            raise ConfigError(
                f"{KEY}.{missing} is not set: a boundary search needs its range on "
                f"{self.axis}, e.g. {KEY}.low=2 {KEY}.high=64"
            )
        try:
            return self.rule()
        except BoundaryError as err:
            raise ConfigError(f"{err}") from None

    def _check_axis(self, overrides: Sequence[Override]) -> None:
        given = ", ".join(f"{KEY}.{k}={v}" for k, v in asdict(self).items() if v is not None)
        if self.axis is None:
            raise ConfigError(
                f"{given} needs {KEY}.axis: the integer config key searched along "
                "(e.g. data.classes)"
            )
        allowed = integer_keys()
        if self.axis not in allowed:
            raise ConfigError(
                f"{KEY}.axis={self.axis} is not allowed: an integer config key, one of "
                f"{', '.join(allowed)}"
            )
        for override in overrides:
            key = override.get_key_element().lstrip("+~")
            if key == self.axis:
                raise ConfigError(
                    f"{override.input_line or key} is not allowed with {KEY}.axis={self.axis}:"
                    " the search chooses the axis' values (its range is "
                    f"{KEY}.low/high); remove it, and sweep the other keys to get groups"
                )
            if key == "seeds" and override.is_sweep_override():
                raise ConfigError(
                    f"{override.input_line or key} is not allowed with {KEY}.axis: the search "
                    f"chooses each probe's seeds ({KEY}.seeds_per_probe at a time); set one "
                    "list, whose seeds come first"
                )

    def _check_metric(self) -> None:
        metric = self.metric_name
        if metric not in METRICS:
            raise ConfigError(
                f"{KEY}.metric={self.metric} is not allowed: a rate or a per-seed metric's "
                f"mean, one of {', '.join(METRICS)}"
            )
        low, high = metric_range(metric)
        if not (low > -float("inf") and high < float("inf")):
            raise ConfigError(
                f"{KEY}.metric={self.metric} is not allowed: its range [{low:g}, {high:g}] is "
                "not bounded, and the fit's interval needs a bounded metric"
            )
        if not low < self.level_value < high:
            raise ConfigError(
                f"{KEY}.level={self.level} is not allowed: strictly inside {metric}'s range "
                f"({low:g}, {high:g})"
            )

    def rule(self) -> BoundaryRule:
        """The engine's rule; its level is on [0, 1] (the metric's range mapped onto it)."""
        given = {
            k: v
            for k, v in asdict(self).items()
            if v is not None and k not in ("axis", "metric", "level")
        }
        return BoundaryRule(level=to_unit(self.level_value, self.metric_name), **given)


def seed_order(seeds: Sequence[int], count: int) -> list[int]:
    """The fixed order a group's seeds are taken in: the config's list, then the next
    integers after its largest, `count` in all (at least the list)."""
    order = list(dict.fromkeys(seeds)) or [0]
    nxt = max(order) + 1
    while len(order) < count:
        order.append(nxt)
        nxt += 1
    return order


def with_axis(job: Sequence[str], axis: str, x: int, seeds: Sequence[int]) -> list[str]:
    """A group's overrides with the axis value and the seed list of one probe."""
    kept = [o for o in job if o.lstrip("+~").split("=", 1)[0] != "seeds"]
    return [*kept, f"{axis}={x}", "seeds=[" + ",".join(str(s) for s in seeds) + "]"]


@dataclass
class ProbeCell:
    """A probe as the search holds it: its axis value, its cell dir and the seeds asked."""

    x: int
    cell: str
    seeds: list[int]


@dataclass
class Group:
    """One boundary: the grid's job (overrides) without the axis, and its probes so far."""

    index: int
    job: list[str]
    keys: dict[str, Any]
    order: list[int]
    probes: dict[int, ProbeCell] = field(default_factory=dict)
    stop: str = ""
    asked: dict[int, int] = field(default_factory=dict)  # this round: x -> usable seeds before

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.keys.items()) or "all cells"

    def doc(self) -> dict[str, Any]:
        probes = [asdict(p) for p in self.probes.values()]
        return {"keys": self.keys, "probes": probes, "stop": self.stop}


Compose = Callable[[list[str], int], Cell]
TrainRound = Callable[[list[Cell], int], list[Any]]


def swept_keys(overrides: Sequence[Override]) -> list[str]:
    """The command's swept keys (the groups' keys), in the command's order."""
    return [o.get_key_element().lstrip("+~") for o in overrides if o.is_sweep_override()]


def make_groups(
    jobs: list[list[str]], keys: Sequence[str], compose: Compose, cap: int
) -> list[Group]:
    """One group per job of the grid of the other swept keys; each job composed once (its
    seed list and its keys' values as the config holds them)."""
    groups = []
    for index, job in enumerate(jobs):
        cell = compose(job, index)
        given = {line.lstrip("+~").split("=", 1)[0]: line.split("=", 1)[1] for line in job}
        values = {k: cell.config.get(k, given.get(k)) for k in keys}
        seeds = cell.config.get("seeds")
        order = seed_order(seeds if isinstance(seeds, list) else [0], cap)
        groups.append(Group(index, job, values, order))
    return groups


class BoundarySearch:
    """The search over every group, round by round (the planner supplies the Hydra-side
    verbs: compose a cell from overrides, train a round of cells)."""

    def __init__(
        self,
        options: BoundaryOptions,
        rule: BoundaryRule,
        groups: list[Group],
        compose: Compose,
    ) -> None:
        self.options, self.rule, self.groups, self.compose = options, rule, groups, compose
        self.axis = str(options.axis)
        self.metric = options.metric_name

    def opening_cells(self) -> tuple[list[list[str]], list[Cell]]:
        """Every group's opening cells, composed (for the checks before any dir is made):
        their overrides and cells, as refuse_hopeless takes them."""
        jobs, cells = [], []
        for group in self.groups:
            for x in self.rule.initial_xs():
                lines = with_axis(group.job, self.axis, x, group.order[: self.rule.seeds_per_probe])
                jobs.append(lines)
                cells.append(self.compose(lines, group.index))
        return jobs, cells

    def probes(self, sweep_dir: Path, group: Group) -> tuple[list[Probe], dict[int, int]]:
        """The group's probes for the engine (a probe without usable seeds is left out) and
        each probe's usable seed count."""
        probes, counts = [], {}
        for x, probe in group.probes.items():
            values = probe_values(sweep_dir, probe.cell, probe.seeds, self.metric)
            counts[x] = len(values)
            if values:
                probes.append(make_probe(x, values, self.metric))
        return probes, counts

    def run(self, sweep_dir: Path, state: dict[str, Any], train_round: TrainRound) -> list[Any]:
        """Round after round until every group is done; return every round's returns."""
        doc: dict[str, Any] = {
            "axis": self.axis,
            "metric": self.metric,
            "level": self.options.level_value,
            "rule": asdict(self.rule),
            "rounds": 0,
            "groups": [],
        }
        state[STATE_KEY] = doc
        returns: list[Any] = []
        for round_index in range(max_rounds(self.rule)):
            raise_if_stopped()  # Ctrl-C between rounds stops here, as within one
            batch = []
            for group in self.groups:
                if not group.stop:
                    batch += self.plan_group(sweep_dir, group, round_index)
            doc["groups"] = [g.doc() for g in self.groups]
            doc["rounds"] = round_index + (1 if batch else 0)
            write_json(sweep_dir / records.SWEEP_STATE, state)
            if not batch:
                return returns
            returns += train_round(batch, round_index)
            self.settle(sweep_dir, batch)
        for group in self.groups:
            group.stop = group.stop or f"stopped after {max_rounds(self.rule)} rounds"
        doc["groups"] = [g.doc() for g in self.groups]
        write_json(sweep_dir / records.SWEEP_STATE, state)
        return returns

    def plan_group(self, sweep_dir: Path, group: Group, round_index: int) -> list[Cell]:
        """The group's cells for this round (none when it is done: its stop says why)."""
        probes, counts = self.probes(sweep_dir, group)
        stalled = [x for x, before in group.asked.items() if counts.get(x, 0) <= before]
        if stalled:
            x = stalled[0]
            record = records.read_cell(sweep_dir / group.probes[x].cell, sweep_dir)
            why = record.error or "no usable seed (diverged)"
            group.stop = f"probe {self.axis}={x} gave no new usable seed: {why}"
            log.error("boundary, %s: %s", group.label, group.stop)
            return []
        group.asked = {}
        try:
            plan = next_probes(probes, self.rule)
        except BoundaryError as err:  # a probe the fit cannot use
            group.stop = f"the fit failed: {err}"
            log.error("boundary, %s: %s", group.label, group.stop)
            return []
        if plan.done:
            group.stop = str(plan.done_reason)
            log.info(
                "boundary, %s: done after %d round(s), %s: %s",
                group.label,
                round_index,
                group.stop,
                describe(plan.estimate, self.rule),
            )
            return []
        cells = []
        for request in plan.requests:
            have = group.probes.get(request.x)
            count = (len(have.seeds) if have else 0) + request.add_seeds
            # The order holds max_models seeds: no probe asks more (the engine stops first).
            seeds = seed_order(group.order, count)[:count]
            cell = self.compose(with_axis(group.job, self.axis, request.x, seeds), group.index)
            group.probes[request.x] = ProbeCell(request.x, cell.name, list(seeds))
            group.asked[request.x] = counts.get(request.x, 0)
            cells.append(cell)
        log.info("%s", progress_line(round_index, group, plan, self.axis, self.rule))
        return cells

    def settle(self, sweep_dir: Path, batch: list[Cell]) -> None:
        """Point each probe at the dir its cell's record is in (a finished cell found under
        another dir name is reused there)."""
        finished = records.finished_cells(sweep_dir)
        where = {
            c.name: finished[key].name
            for c in batch
            if (key := records.identity_key(c.config)) in finished
        }
        for group in self.groups:
            for probe in group.probes.values():
                probe.cell = where.get(probe.cell, probe.cell)


def max_rounds(rule: BoundaryRule) -> int:
    """A bound on rounds: the opening, one round per step the cap allows, the final look."""
    from attnlab.engine.boundary import max_looks

    return max_looks(rule) + 2


def describe(estimate: BoundaryEstimate | None, rule: BoundaryRule) -> str:
    """`boundary 24.1, 95% [19.0, 30.2] (width 11.2), 8 cells, 64 models`."""
    if estimate is None:
        return "no fit yet"

    def end(v: float) -> str:
        return "open" if v != v else f"{v:.1f}"

    where = "not in range" if estimate.boundary != estimate.boundary else f"{estimate.boundary:.1f}"
    return (
        f"boundary {where}, 95% [{end(estimate.ci_low)}, {end(estimate.ci_high)}] "
        f"(width {estimate.width:.3g}, asked <= {rule.width:g}), {estimate.cells_probed} cells, "
        f"{estimate.models_trained} models"
    )


def progress_line(
    round_index: int, group: Group, plan: ProbePlan, axis: str, rule: BoundaryRule
) -> str:
    """One round's line for one group: where it probes and the interval it has now."""
    where = ", ".join(
        f"{axis}={r.x} (+{r.add_seeds} seeds{'' if r.new_cell else ', probed before'})"
        for r in plan.requests
    )
    return f"boundary round {round_index + 1}, {group.label}: probe {where}; now " + describe(
        plan.estimate, rule
    )
