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


def register() -> None:
    ConfigStore.instance().store(
        group="hydra/sweeper", name="attnlab", node=AttnlabSweeperConf, provider="attnlab"
    )


register()
