"""One experiment: train every seed of one or more cells together as replicas, and measure.

Pure of files: it returns each cell's records, attention and learning curves
(CellResult); attnlab.runs.cell writes them.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from attnlab.engine.config import ExperimentConfig
from attnlab.engine.metrics import (
    accuracy,
    attention_metrics,
    nan_attention_metrics,
    shuffle_column,
    still_improving,
)

if TYPE_CHECKING:  # train.py loads TensorFlow: only when a job really trains
    from attnlab.engine.train import History

log = logging.getLogger(__name__)
# Per-seed lines and other detail: the job's log file only (conf/hydra/job_logging),
# unless trainer.verbose.
seed_log = logging.getLogger("attnlab.detail")

HISTORY_COLUMNS = ["seed", "epoch", "train_loss", "val_accuracy", "attn_key_weight"]


def freeze_imported_heap() -> None:
    """Exclude every object alive now from Python's cyclic garbage collection, once a
    process (gc.freeze): what TensorFlow and Keras imported stays alive for the process
    anyway, and each full collection walked all of it, 0.18-0.25 s (measured on the 2-core
    machine: one gen-2 collection in every 20-class call, clear_session's or, without it,
    one while tracing; ~8% of the call at 32 seeds). Objects freed later by reference
    counting are freed as before; only cycles already garbage at this moment are kept
    (in a single run, ~1,600 of the ~400,000 objects then alive).
    """
    if gc.get_freeze_count() == 0:
        gc.freeze()


class CellResult(NamedTuple):
    """One cell's results, as train_cells returns them and run_experiment writes them."""

    records: list[dict[str, Any]]  # one per seed: metrics.json's runs
    attention: pd.DataFrame  # attention.csv: seed, column, weight
    history: pd.DataFrame  # history.csv: HISTORY_COLUMNS, one row per seed and epoch run


def train_and_measure(
    cfg: ExperimentConfig,
    on_epoch: Callable[[int], None] | None = None,
    cores: int | None = None,
) -> CellResult:
    """Train one replica per seed; return one record per seed, the tidy mean attention and
    the tidy learning curves."""
    return train_cells([cfg], on_epoch=on_epoch, cores=cores)[0]


def train_cells(
    cfgs: list[ExperimentConfig],
    on_epoch: Callable[[int], None] | None = None,
    cores: int | None = None,
) -> list[CellResult]:
    """Train several cells as replicas of one model, one replica per (cell, seed); return
    each cell's records, tidy mean attention and tidy learning curves, in order.

    The cells may differ only in seeds, data.classes, data.attention_column,
    data.key_encoding and model.attention (attnlab.sweep.packing.pack_key): each replica has its
    own data, key, class count and attention mode, so it trains as it would alone.
    cores: the cores the job resolved for training (attnlab.sweep.launchers.apply_threads);
    None: the first cell's trainer.threads (0: all this process may use).
    """
    import keras  # deferred: TensorFlow loads only when a job really trains

    from attnlab.engine.data import feature_names, key_column, make_replica_data, relevant_columns
    from attnlab.engine.models import ShardedModel, build_model
    from attnlab.engine.train import configure_tensorflow, fit, predict, shard_slices

    first = cfgs[0]
    cores = configure_tensorflow(first.trainer.threads if cores is None else cores)
    freeze_imported_heap()
    keras.backend.clear_session()  # jobs of a sweep share this process
    seeds = [seed for cfg in cfgs for seed in cfg.seeds]
    data_cfgs = [cfg.data for cfg in cfgs for _ in cfg.seeds]  # replica r's own
    classes = np.array([d.classes for d in data_cfgs])
    keys = np.array([key_column(d) for d in data_cfgs])
    modes = [cfg.model.attention for cfg in cfgs for _ in cfg.seeds]
    sequence = first.model.sequence
    data = make_replica_data(data_cfgs, seeds, first.trainer.validation_split, sequence)
    model = ShardedModel(
        [
            build_model(
                first.model,
                first.data,
                seeds[part],
                classes=classes[part].tolist(),
                attention=modes[part],
                keys=keys[part].tolist(),
            )
            for part in shard_slices(len(seeds), cores)
        ]
    )

    start = time.perf_counter()
    history = fit(model, data, seeds, first.trainer, classes, keys, on_epoch=on_epoch)
    train_seconds = (time.perf_counter() - start) / len(seeds)

    # The last epoch's, so history.csv's last row and metrics.json agree by construction.
    val_acc = history.last("val_accuracy")
    probe_acc = accuracy(predict(model, data.x_probe), data.y_probe)
    alpha = predict(model.attention(), data.x_probe)  # (probe, replicas, key_axis)
    if first.model.variant == "custom":  # a gate need not sum to 1: read as its shares
        alpha = alpha / np.maximum(alpha.sum(axis=-1, keepdims=True), 1e-12)
    ablation = ablation_drops(model, data.x_probe, data.y_probe, alpha, keys, seeds, probe_acc)

    results, first_replica = [], 0
    for cfg in cfgs:
        records, frames = [], []
        names = column_names(cfg, alpha.shape[2], feature_names)
        relevant = relevant_columns(cfg.data)
        for r, seed in enumerate(cfg.seeds, start=first_replica):
            record = measure_replica(alpha[:, r], int(keys[r]), modes[r], relevant, names)
            record = {
                "seed": seed,
                "status": "diverged" if history.diverged[r] else "completed",
                "val_accuracy": val_acc[r],
                "probe_accuracy": probe_acc[r],
                **record,
                "key_ablation_drop": ablation["key"][r],
                "peak_ablation_drop": ablation["peak"][r],
                "train_seconds": train_seconds,
                "epochs_run": int(history.epochs_run[r]),
                "still_improving": still_improving(_curve(history, "val_accuracy", r)),
            }
            if modes[r] == "none":  # no attention: no most-attended column to shuffle
                record["peak_ablation_drop"] = math.nan
            records.append(_nan_if_diverged(record))
            # A diverged seed's attention means nothing, as its metrics, and a seed without
            # attention has none: NaN, left out of plots.
            blank = history.diverged[r] or modes[r] == "none"
            weight = np.full(alpha.shape[2], np.nan) if blank else alpha[:, r].mean(0)
            frames.append(
                pd.DataFrame(
                    {
                        "seed": seed,
                        "column": range(alpha.shape[2]),
                        "weight": weight,
                        "column_name": names,
                    }
                )
            )
        replicas = range(first_replica, first_replica + len(cfg.seeds))
        curves = history_frame(history, cfg.seeds, replicas)
        if cfg.model.attention == "none":  # the curve read ones, not an attention
            curves["attn_key_weight"] = math.nan
        first_replica += len(cfg.seeds)
        results.append(CellResult(records, pd.concat(frames, ignore_index=True), curves))
    return results


def history_frame(history: History, seeds: list[int], replicas: range) -> pd.DataFrame:
    """The tidy learning curves of these replicas (seed i is replica replicas[i]): one row
    per seed and epoch it ran (epoch from 1; a diverged seed's rows end where it blew up)."""
    frames = [
        pd.DataFrame(
            {
                "seed": seed,
                "epoch": np.arange(1, history.epochs_run[r] + 1),
                **{c: _curve(history, c, r) for c in HISTORY_COLUMNS[2:]},
            }
        )
        for seed, r in zip(seeds, replicas, strict=True)
    ]
    return pd.concat(frames, ignore_index=True)[HISTORY_COLUMNS]


def _curve(history: History, name: str, replica: int) -> np.ndarray:
    """One replica's curve over the epochs it ran."""
    return getattr(history, name)[: history.epochs_run[replica], replica]


def column_names(
    cfg: ExperimentConfig, size: int, feature_names: Callable[[Any], list[str]]
) -> list[str]:
    """The key axis's names: the data's columns (a table's by name), or t0, t1, ... for the
    time steps of a sequence."""
    if cfg.model.sequence:
        return [f"t{i}" for i in range(size)]
    return feature_names(cfg.data)


def measure_replica(
    alpha: np.ndarray,
    key: int,
    mode: str = "learned",
    relevant: list[int] | None = None,
    names: list[str] | None = None,
) -> dict[str, Any]:
    """Attention metrics of one replica; NaNs if it has no attention (model.attention=none,
    see NO_ATTENTION) or its attention is not finite (a diverged replica's whole record is
    NaN-ed by _nan_if_diverged). A fixed mode's are those of its fixed vector.

    relevant: the columns known to matter (None: [key]; empty: a table without
    data.relevant, whose identification metrics are NaN)."""
    if mode == "none" or not np.isfinite(alpha).all():
        return dict(nan_attention_metrics())
    return dict(attention_metrics(alpha, key, relevant, names))


def ablation_drops(
    model: Any,
    x_probe: np.ndarray,
    y_probe: np.ndarray,
    alpha: np.ndarray,
    keys: np.ndarray,
    seeds: list[int],
    probe_acc: np.ndarray,
) -> dict[str, np.ndarray]:
    """Probe accuracy lost when the key column, or the most-attended other column, is
    shuffled across probe samples (per replica, with that seed's own stream).

    keys: (replicas,) each replica's key column (or time step).
    """
    from attnlab.engine.data import ABLATION_STREAM, rng_for
    from attnlab.engine.train import predict

    replicas = np.arange(len(seeds))
    mean = np.nan_to_num(alpha.mean(axis=0), nan=-1.0)  # (replicas, columns)
    mean[replicas, keys] = -np.inf
    columns = {"key": np.asarray(keys), "peak": mean.argmax(axis=1)}
    drops = {}
    for name, cols in columns.items():
        rngs = [rng_for(s, ABLATION_STREAM, 0 if name == "key" else 1) for s in seeds]
        shuffled = shuffle_column(x_probe, cols, rngs)
        drops[name] = probe_acc - accuracy(predict(model, shuffled), y_probe)
    return drops


def _nan_if_diverged(record: dict[str, Any]) -> dict[str, Any]:
    """A diverged replica's numbers mean nothing: every metric becomes NaN."""
    out = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in record.items()}
    if record["status"] == "diverged":
        keep = {"seed", "status", "train_seconds", "epochs_run"}
        out = {k: (v if k in keep else math.nan) for k, v in out.items()}
    return out
