"""The sweeper's config, registered in Hydra's ConfigStore as hydra/sweeper=attnlab."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


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


def register() -> None:
    ConfigStore.instance().store(
        group="hydra/sweeper", name="attnlab", node=AttnlabSweeperConf, provider="attnlab"
    )


register()
