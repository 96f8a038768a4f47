"""The sweeper's config, registered in Hydra's ConfigStore as hydra/sweeper=attnlab."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class AdaptiveConf:
    """hydra.sweeper.adaptive: add seeds in rounds where the answer is not decided yet
    (attnlab/sweep/adaptive.py; docs/statistics-adaptive.md). Off while every field is null."""

    # The metric whose interval must reach +-half_width in every cell (a summary metric or
    # focus_rate); with until=claims alone it names the metric the report gives sequences for.
    metric: str | None = None
    # Target half-width of that metric's anytime-valid interval, in the metric's units (> 0).
    half_width: float | None = None
    # null, or claims: add seeds to the cells of unresolved claims (the config's `claims`).
    until: str | None = None
    # Cap on a cell's seeds (>= the config's seed count); null: 40.
    max_seeds: int | None = None
    # Seeds a cell that needs more gets per round (>= 1); null: 5.
    step: int | None = None
    # The interval judged: betting (the anytime-valid confidence sequence: needs only the
    # metric's range) or looks (t / Wilson / paired t at 1 - alpha/K for the K seed counts a
    # cell can stop at: far fewer seeds, assumes near-normal seed values as t does); null:
    # betting.
    interval: str | None = None


@dataclass
class BoundaryConf:
    """hydra.sweeper.boundary: search where a rate crosses a level along an integer config
    key (attnlab/sweep/boundary_search.py; docs/boundary.md). Off while every field is null;
    a null field takes the default named beside it."""

    # The integer config key searched along, e.g. data.classes (not swept on the command
    # line: the command's other swept keys make one boundary each).
    axis: str | None = None
    # The search range on the axis: integers, low < high (>= 1 on a log axis).
    low: int | None = None
    high: int | None = None
    # focus_rate (share of seeds focused) or a per-seed metric's mean with a bounded range
    # (attn_key_weight, val_accuracy, ...); null: focus_rate.
    metric: str | None = None
    # The boundary is where the metric crosses this level, strictly inside its range; null: 0.5.
    level: float | None = None
    # Stop once the boundary's 95% interval is narrower than this, in axis units; null: 8.
    width: float | None = None
    # Stop before a group's search trains more models than this; null: 200.
    max_models: int | None = None
    # Seeds per probe step (a new cell, or more seeds for a probed one); null: 8.
    seeds_per_probe: int | None = None
    # Cells probed first, evenly over [low, high] (>= 3); null: 4.
    initial_cells: int | None = None
    # Fit the curve in log(axis) (class counts act multiplicatively) or in axis; null: true.
    log_axis: bool | None = None
    # falling (the metric drops as the axis grows, as focus with classes) or rising; null:
    # falling.
    direction: str | None = None


@dataclass
class AttnlabSweeperConf:
    _target_: str = "hydra_plugins.attnlab_sweeper.attnlab_sweeper.AttnlabSweeper"
    # Swept keys and their comma-separated values, as Hydra's basic sweeper takes them
    # (presets in conf/experiment/ set these); the command line's lists are added to them.
    params: Any = None
    # Train the cells that share a model shape as one model, one job per pack
    # (attnlab/sweep/packing.py); false: every cell is a job of its own.
    pack: bool = True
    # Seeds one job trains at most (a pack is split to stay under it, and under the job's
    # memory): keep a job within a node's memory and time limit.
    max_replicas: int = 128
    # Each swept axis' baseline for comparisons.csv, by key (default: the axis' first value
    # as given), e.g. hydra.sweeper.baseline.model.attn_layers=2 (attnlab/runs/comparisons.py).
    baseline: Any = field(default_factory=dict)
    # List the cells (cached, to train, invalid and why), the packs and each job's memory
    # estimate, then exit 0: nothing trained, no sweep dir made, no file written.
    dry_run: bool = False
    # Adaptive seeds: rounds of training until each cell's interval is narrow enough or its
    # claims are decided (AdaptiveConf); off by default.
    adaptive: AdaptiveConf = field(default_factory=AdaptiveConf)
    # A boundary search instead of a grid (BoundaryConf); off by default.
    boundary: BoundaryConf = field(default_factory=BoundaryConf)


def register() -> None:
    ConfigStore.instance().store(
        group="hydra/sweeper", name="attnlab", node=AttnlabSweeperConf, provider="attnlab"
    )


register()
