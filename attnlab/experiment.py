"""One experiment: train every seed of a config together, measure, and write the run's files.

`run_experiment(cfg, out_dir)` is what the CLI calls; it never relies on the current
directory. Files in out_dir: attention.csv, attention.png, then metrics.json last, so a
metrics.json on disk means the whole experiment finished.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from attnlab.config import ExperimentConfig, flatten
from attnlab.files import write_csv, write_figure, write_json
from attnlab.metrics import accuracy, attention_metrics, nan_attention_metrics, shuffle_column

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
ATTENTION_CSV = "attention.csv"
ATTENTION_PNG = "attention.png"


def run_experiment(cfg: ExperimentConfig, out_dir: Path) -> dict[str, Any]:
    """Validate, train all seeds as replicas, measure, write the files; return metrics.json."""
    cfg.validate()
    records, attention = train_and_measure(cfg)
    doc = {"config": flatten(cfg), "runs": records}
    write_outputs(out_dir, doc, attention, cfg)
    return doc


def train_and_measure(cfg: ExperimentConfig) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Train one replica per seed; return one record per seed and the tidy mean attention."""
    import keras  # deferred: TensorFlow loads only when a job really trains

    from attnlab.data import make_replica_data
    from attnlab.models import attention_model, build_model
    from attnlab.train import configure_tensorflow, fit, predict

    configure_tensorflow(cfg.trainer.threads)
    keras.backend.clear_session()  # jobs of a sweep share this process
    seeds, sequence = list(cfg.seeds), cfg.model.sequence
    data = make_replica_data(cfg.data, seeds, cfg.trainer.validation_split, sequence)
    model = build_model(cfg.model, cfg.data, seeds)

    start = time.perf_counter()
    history = fit(model, data, seeds, cfg.trainer)
    train_seconds = (time.perf_counter() - start) / len(seeds)

    val_acc = accuracy(predict(model, data.x_val), data.y_val)
    probe_acc = accuracy(predict(model, data.x_probe), data.y_probe)
    alpha = predict(attention_model(model), data.x_probe)  # (probe, replicas, key_axis)
    ablation = ablation_drops(model, data.x_probe, data.y_probe, alpha, cfg, probe_acc)

    records, frames = [], []
    for r, seed in enumerate(seeds):
        record = measure_replica(alpha[:, r], cfg.data.attention_column)
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
        }
        records.append(_nan_if_diverged(record))
        # A diverged seed's attention means nothing, as its metrics: NaN, left out of plots.
        weight = np.full(alpha.shape[2], np.nan) if history.diverged[r] else alpha[:, r].mean(0)
        frames.append(
            pd.DataFrame({"seed": seed, "column": range(alpha.shape[2]), "weight": weight})
        )
        _log_record(record, cfg.data.attention_column)
    return records, pd.concat(frames, ignore_index=True)


def measure_replica(alpha: np.ndarray, key: int) -> dict[str, Any]:
    """Attention metrics of one replica; NaNs if its attention is not finite (a diverged
    replica's whole record is NaN-ed by _nan_if_diverged)."""
    if not np.isfinite(alpha).all():
        return dict(nan_attention_metrics())
    return dict(attention_metrics(alpha, key))


def ablation_drops(
    model: Any,
    x_probe: np.ndarray,
    y_probe: np.ndarray,
    alpha: np.ndarray,
    cfg: ExperimentConfig,
    probe_acc: np.ndarray,
) -> dict[str, np.ndarray]:
    """Probe accuracy lost when the key column, or the most-attended other column, is
    shuffled across probe samples (per replica, with that seed's own stream)."""
    from attnlab.data import ABLATION_STREAM, rng_for
    from attnlab.train import predict

    key = cfg.data.attention_column
    mean = np.nan_to_num(alpha.mean(axis=0), nan=-1.0)  # (replicas, columns)
    mean[:, key] = -np.inf
    columns = {"key": np.full(len(cfg.seeds), key), "peak": mean.argmax(axis=1)}
    drops = {}
    for name, cols in columns.items():
        rngs = [rng_for(s, ABLATION_STREAM, 0 if name == "key" else 1) for s in cfg.seeds]
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


def _log_record(record: dict[str, Any], key: int) -> None:
    if record["status"] == "diverged":
        log.info(
            "seed %d: diverged in epoch %d (loss NaN/inf or > 10 log(classes))",
            record["seed"],
            record["epochs_run"],
        )
        return
    focus = "focused on" if record["attn_focused"] else "NOT focused on"
    log.info(
        "seed %d: val_accuracy %.3f, probe_accuracy %.3f, attention %s column %d "
        "(key weight %.3f, peak column %d)",
        record["seed"],
        record["val_accuracy"],
        record["probe_accuracy"],
        focus,
        key,
        record["attn_key_weight"],
        record["attn_peak_column"],
    )


def write_outputs(
    out_dir: Path, doc: dict[str, Any], attention: pd.DataFrame, cfg: ExperimentConfig
) -> None:
    """attention.csv, attention.png, then metrics.json (last: its presence means done)."""
    from attnlab.plots import attention_figure

    write_csv(out_dir / ATTENTION_CSV, attention)
    d, m = cfg.data, cfg.model
    if m.sequence:
        title = f"lstm, attention {m.attention_position}: {d.classes} classes, {d.time_steps} steps"
        axis = "time step"
    else:
        title = f"{m.variant}: {d.classes} classes, {d.features} features, depth {m.attn_layers}"
        axis = "input column"
    figure = attention_figure(attention, d.attention_column, title, axis)
    write_figure(out_dir / ATTENTION_PNG, figure)
    write_json(out_dir / METRICS_FILE, doc)
