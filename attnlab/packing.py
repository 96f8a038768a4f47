"""Cells of a sweep that share a model shape, trained together as replicas of one model.

A cell of 5 seeds costs mostly fixed time: tracing its training step and TensorFlow's
graph optimisation (~0.5 s), and a step too small to use the cores well (5 replicas:
~0.48 ms a step; 64: ~2.5 ms, 40% of the time per replica; benchmarks/train_step.py).
Cells that differ only in their data's class count, key column or key encoding (and their
seeds) therefore train faster as one model: every (cell, seed) is a replica, each with its
own data, initialisation and class count (a narrower cell's extra logits are masked out,
see attnlab.layers.ReplicaDense), so each replica trains as it would alone.

attnlab's default launcher (hydra_plugins/attnlab_launcher) plans the packs, trains each
(train_pack) and then runs its cells' jobs, which take their results from here (take) and
write their files.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pandas as pd

from attnlab.config import ExperimentConfig, as_json, cell_identity, flatten

log = logging.getLogger(__name__)

# What cells of one pack may differ in: all else (the model, the trainer, the data's shape)
# is shared by the one model that trains them (model.attention: per replica, see
# attnlab.layers.ReplicaGate).
PACK_FREE = frozenset(
    {
        "seeds",
        "data.classes",
        "data.attention_column",
        "data.key_encoding",
        "model.attention",
        "trainer.verbose",
        "trainer.threads",
    }
)

Results = tuple[list[dict[str, Any]], pd.DataFrame]

# Results of cells trained in a pack, by cell identity, until their jobs take them.
_trained: dict[str, Results] = {}


def pack_key(cfg: ExperimentConfig) -> str:
    """Cells with the same key can train as one model."""
    return json.dumps({k: v for k, v in flatten(cfg).items() if k not in PACK_FREE})


def plan_packs(cfgs: list[ExperimentConfig], max_replicas: int) -> list[list[ExperimentConfig]]:
    """Group cells by pack_key, in order of first appearance; split a group so that no pack
    has more than max_replicas seeds (a larger cell is a pack of its own).

    Within a group cells go by class count, so a split keeps similar head widths together
    (a pack's head is as wide as its widest cell).
    """
    groups: dict[str, list[ExperimentConfig]] = {}
    for cfg in cfgs:
        groups.setdefault(pack_key(cfg), []).append(cfg)
    packs: list[list[ExperimentConfig]] = []
    for group in groups.values():
        pack: list[ExperimentConfig] = []
        for cfg in sorted(group, key=lambda c: c.data.classes):
            if pack and sum(len(c.seeds) for c in pack) + len(cfg.seeds) > max_replicas:
                packs.append(pack)
                pack = []
            pack.append(cfg)
        packs.append(pack)
    return packs


def train_pack(pack: list[ExperimentConfig]) -> None:
    """Train these cells as one model; keep each cell's results for its job (see take).

    A pack that fails is logged and left to its jobs: each of its cells then trains alone
    in its own job, and fails or succeeds on its own.
    """
    from attnlab.experiment import train_cells

    seeds = sum(len(c.seeds) for c in pack)
    classes = ", ".join(str(c.data.classes) for c in pack)
    log.info("training %d cells as one model (%d seeds; classes %s)", len(pack), seeds, classes)
    start = time.perf_counter()
    try:
        results = train_cells(pack)
    except Exception:
        log.exception("training the pack failed; its cells will train one by one")
        return
    for cfg, result in zip(pack, results, strict=True):
        _trained[identity(cfg)] = result
    log.info("trained %d cells in %.1f s", len(pack), time.perf_counter() - start)


def unique(cfgs: list[ExperimentConfig]) -> list[ExperimentConfig]:
    """The cells, each identity once (a sweep over trainer.verbose repeats a cell)."""
    first: dict[str, ExperimentConfig] = {}
    for cfg in cfgs:
        first.setdefault(identity(cfg), cfg)
    return list(first.values())


def take(cfg: ExperimentConfig) -> Results | None:
    """This cell's results if a pack trained it, else None (the job trains it)."""
    return _trained.get(identity(cfg))


def forget() -> None:
    """Drop every kept result (at the end of a sweep)."""
    _trained.clear()


def identity(cfg: ExperimentConfig) -> str:
    """The cell's identity (attnlab.config.cell_identity) as a string key."""
    return json.dumps(cell_identity(as_json(flatten(cfg))), sort_keys=True)
