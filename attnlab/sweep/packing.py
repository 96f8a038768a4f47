"""Cells of a sweep that share a model shape, planned to train together as one model.

A cell of 5 seeds costs mostly fixed time: tracing its training step and TensorFlow's
graph optimisation (~0.5 s), and a step too small to use the cores well (5 replicas:
~0.48 ms a step; 64: ~2.5 ms, 40% of the time per replica; benchmarks/train_step.py).
Cells that differ only in their data's class count, key column or key encoding (and their
seeds) therefore train faster as one model: every (cell, seed) is a replica, each with its
own data, initialisation and class count (a narrower cell's extra logits are masked out,
see attnlab.engine.layers.ReplicaDense), so each replica trains as it would alone.

attnlab's sweeper (attnlab.sweep.planner) plans the packs here, before any job starts, and
launches one job per pack (attnlab.sweep.jobs.run_pack_job trains it and writes its cells).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from attnlab.engine.config import ExperimentConfig, flatten
from attnlab.runs.records import identity_key

# What cells of one pack may differ in: all else (the model, the trainer, the data's shape)
# is shared by the one model that trains them (model.attention: per replica, see
# attnlab.engine.layers.ReplicaGate).
PACK_FREE = frozenset(
    {
        "seeds",
        "data.classes",
        "data.attention_column",
        "data.key_encoding",
        "model.attention",
        "trainer.verbose",
        "trainer.threads",
        "objective",
        "claims",
        "logger.kind",
        "logger.subdir",
    }
)


def pack_key(cfg: ExperimentConfig) -> str:
    """Cells with the same key can train as one model."""
    return json.dumps({k: v for k, v in flatten(cfg).items() if k not in PACK_FREE})


def plan_packs(
    cfgs: list[ExperimentConfig],
    max_replicas: int,
    fits: Callable[[list[ExperimentConfig]], bool] = lambda pack: True,
) -> list[list[ExperimentConfig]]:
    """Group cells by pack_key, in order of first appearance; split a group so that no pack
    has more than max_replicas seeds and every pack fits (fits(pack): its memory; a cell
    that alone breaks either rule is a pack of its own).

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
            seeds = sum(len(c.seeds) for c in pack) + len(cfg.seeds)
            if pack and (seeds > max_replicas or not fits([*pack, cfg])):
                packs.append(pack)
                pack = []
            pack.append(cfg)
        packs.append(pack)
    return packs


def unique(cfgs: list[ExperimentConfig]) -> list[ExperimentConfig]:
    """The cells, each identity once (a sweep over trainer.verbose repeats a cell)."""
    first: dict[str, ExperimentConfig] = {}
    for cfg in cfgs:
        first.setdefault(identity(cfg), cfg)
    return list(first.values())


def identity(cfg: ExperimentConfig) -> str:
    """The cell's identity (attnlab.runs.records.identity_key) of a typed config."""
    return identity_key(flatten(cfg))
