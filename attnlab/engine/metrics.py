"""Pure functions from attention matrices and predictions to the numbers in metrics.json."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ATTENTION_METRICS = (
    "attn_key_weight",
    "attn_peak_column",
    "attn_peak_weight",
    "attn_focused",
    "attn_hit_rate",
    "attn_key_rank",
    "attn_entropy",
    "attn_margin",
    "attn_peak_column_name",
    "attn_relevant_weight",
    "attn_topk_precision",
)

# Every number of a run record after seed and status, in metrics.json and report.csv order.
# Run metrics the summary gives a mean, sd and interval (attnlab.runs.report), and that a job
# may return as its objective (attnlab.engine.config.OBJECTIVES).
SUMMARY_METRICS = (
    "val_accuracy",
    "probe_accuracy",
    "attn_key_weight",
    "attn_hit_rate",
    "attn_entropy",
    "key_ablation_drop",
    "peak_ablation_drop",
    "attn_relevant_weight",
    "attn_topk_precision",
)
RUN_METRICS = (
    "val_accuracy",
    "probe_accuracy",
    *ATTENTION_METRICS,
    "key_ablation_drop",
    "peak_ablation_drop",
    "train_seconds",
    "epochs_run",
    "still_improving",
)

# The range each summary metric (and history.csv curve) can take: intervals are cut to it
# (attnlab.engine.stats.t_interval) and adaptive seeds bet within it (engine/sequential.py). An
# accuracy and a weight lie in [0, 1]; an ablation drop is a difference of two accuracies;
# attn_entropy is normalised by its maximum, log(columns) (attention_metrics), so it lies in
# [0, 1] too; a loss is >= 0.
METRIC_BOUNDS: dict[str, tuple[float, float]] = {
    "val_accuracy": (0.0, 1.0),
    "probe_accuracy": (0.0, 1.0),
    "attn_key_weight": (0.0, 1.0),
    "attn_hit_rate": (0.0, 1.0),
    "attn_entropy": (0.0, 1.0),
    "key_ablation_drop": (-1.0, 1.0),
    "peak_ablation_drop": (-1.0, 1.0),
    "attn_relevant_weight": (0.0, 1.0),
    "attn_topk_precision": (0.0, 1.0),
    "train_loss": (0.0, math.inf),
}
UNBOUNDED = (-math.inf, math.inf)


def metric_bounds(metric: str) -> tuple[float, float]:
    """The range `metric` can take (METRIC_BOUNDS), unbounded for a metric not listed."""
    return METRIC_BOUNDS.get(metric, UNBOUNDED)


# A run "still improving" gained more than this much val_accuracy over its last quarter.
IMPROVING_RISE = 0.01


def attention_metrics(
    alpha: np.ndarray,
    key: int,
    relevant: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, float | int | bool | str]:
    """Focus metrics of one model's attention on a probe set.

    Args:
        alpha: (samples, columns) softmax attention, each row summing to 1.
        key: the column that carries the label.
        relevant: the columns known to matter (default: [key]), see identification_metrics.
        names: each column's name (default: x0, x1, ...), for attn_peak_column_name.
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    columns = alpha.shape[1]
    mean = alpha.mean(axis=0)  # (columns,)
    peak = int(mean.argmax())
    others = np.delete(mean, key)
    # Entropy normalised by its maximum, log(columns); 0 log 0 = 0.
    plogp = np.where(alpha > 0, alpha * np.log(np.where(alpha > 0, alpha, 1.0)), 0.0)
    entropy = -plogp.sum(axis=1) / math.log(columns)
    return {
        "attn_key_weight": float(mean[key]),
        "attn_peak_column": peak,
        "attn_peak_weight": float(mean[peak]),
        "attn_focused": peak == key,
        "attn_hit_rate": float((alpha.argmax(axis=1) == key).mean()),
        "attn_key_rank": int(1 + (mean > mean[key]).sum()),
        "attn_entropy": float(entropy.mean()),
        "attn_margin": float(mean[key] - others.max()),
        "attn_peak_column_name": names[peak] if names is not None else f"x{peak}",
        **identification_metrics(mean, [key] if relevant is None else relevant),
    }


def identification_metrics(mean: np.ndarray, relevant: Sequence[int]) -> dict[str, float]:
    """How well attention finds the columns known to matter.

    attn_relevant_weight: the mean attention mass on the relevant columns.
    attn_topk_precision: the share of the k most-attended columns (k = len(relevant)) that
    are relevant; ties go to the lower column index. With one relevant column (data=default)
    these are attn_key_weight and attn_focused as 0/1.

    Args:
        mean: (columns,) attention averaged over the probe samples.
        relevant: indices of the relevant columns; empty gives NaNs.
    """
    if len(relevant) == 0:
        return {"attn_relevant_weight": math.nan, "attn_topk_precision": math.nan}
    mean = np.asarray(mean, dtype=np.float64)
    top = np.argsort(-mean, kind="stable")[: len(relevant)]
    return {
        "attn_relevant_weight": float(mean[list(relevant)].sum()),
        "attn_topk_precision": float(np.isin(top, relevant).mean()),
    }


def still_improving(val_accuracy: np.ndarray) -> bool | None:
    """Whether a run's val_accuracy rose by more than IMPROVING_RISE (0.01) over the last
    quarter of its epochs: a hint that more epochs would have changed its numbers.

    Exactly: with E epochs (E >= 2), val_accuracy after epoch E minus val_accuracy after
    epoch floor(3E/4) > 0.01 (1-based epochs; so the span is the last ceil(E/4) epochs, at
    least a quarter of the run: epochs 15 to 20 of 20, 3 to 4 of 4, 1 to 2 of 2). A rise of
    exactly 0.01 does not count (1e-9 slack for float rounding: accuracies are counts over
    the validation split).

    Args:
        val_accuracy: (E,) one run's val_accuracy after each epoch it ran.

    Returns:
        None if it cannot tell: one epoch only, or a value there is NaN.
    """
    values = np.asarray(val_accuracy, dtype=np.float64)
    epochs = len(values)
    if epochs < 2:
        return None
    last, start = values[-1], values[(3 * epochs) // 4 - 1]
    if not (math.isfinite(last) and math.isfinite(start)):
        return None
    return bool(last - start > IMPROVING_RISE + 1e-9)


# Why a run with model.attention=none has NaN attention metrics (logs and report.md say it).
NO_ATTENTION = "model.attention=none has no attention layer, so its attention metrics are NaN"


def nan_attention_metrics() -> dict[str, float]:
    """The attention metrics of a diverged model, or of one without attention: all NaN."""
    return {name: math.nan for name in ATTENTION_METRICS}


def accuracy(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-replica accuracy from probabilities (n, replicas, classes) and labels (n, replicas)."""
    return (probs.argmax(axis=-1) == y).mean(axis=0)


def shuffle_column(
    x: np.ndarray, columns: np.ndarray, rngs: list[np.random.Generator]
) -> np.ndarray:
    """Copy of x (n, replicas, key_axis, ...) with, per replica r, column columns[r] (for
    sequences: that time step) permuted across samples by rngs[r]: the column's marginal is
    kept, its link to the label is cut."""
    out = x.copy()
    n = x.shape[0]
    for r, (column, rng) in enumerate(zip(columns, rngs, strict=True)):
        out[:, r, column] = x[rng.permutation(n), r, column]
    return out
