"""TensorBoard event files of one run (logger=tensorboard): per-seed curves and the run's
hyperparameters, viewable with `tensorboard --logdir <sweep dir>`.

Layout: <run dir>/<logger.subdir>/seed_<s>/events.out.tfevents.*, one TensorBoard run per
seed, so the Scalars dashboard overlays a cell's seeds and the HParams dashboard lists every
(cell, seed) of a sweep as a session with its config and final metrics. TensorFlow writes
the files (tf.summary); the `tensorboard` extra (the viewer and its HParams plugin) is
needed to view them, and to write the HParams summary: without it the hyperparameters are
written as a text summary instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

# The per-epoch history this module reads: one row per (seed, epoch).
HISTORY_COLUMNS = ("seed", "epoch", "train_loss", "val_accuracy", "attn_key_weight")
SCALARS = HISTORY_COLUMNS[2:]


def write_events(
    run_dir: Path, history: pd.DataFrame, hparams: Mapping[str, Any], subdir: str = "tensorboard"
) -> list[Path]:
    """Write each seed's per-epoch scalars and the run's hyperparameters; return the seed dirs.

    Args:
        run_dir: the run's (job's) directory.
        history: columns HISTORY_COLUMNS; epoch is the step (NaN values are skipped:
            a diverged seed's curve stops where its numbers do).
        hparams: the run's config as dotted keys (e.g. config.flatten()); values that are not
            bool, int, float or str (seeds) are written as JSON text.
    """
    import tensorflow as tf  # deferred: only a run that logs to TensorBoard needs it

    missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
    if missing:
        raise ValueError(f"history lacks columns {missing} (needs {', '.join(HISTORY_COLUMNS)})")
    values = hparam_values(hparams)
    dirs = []
    for seed in sorted(int(s) for s in history["seed"].unique()):
        rows = history[history["seed"] == seed].sort_values("epoch")
        seed_dir = Path(run_dir) / subdir / f"seed_{seed}"
        writer = tf.summary.create_file_writer(str(seed_dir))
        with writer.as_default():
            _write_hparams({**values, "seed": seed}, f"{run_dir.name}/seed_{seed}")
            for name in SCALARS:
                for epoch, value in zip(rows["epoch"], rows[name].astype(float), strict=True):
                    if value == value:  # not NaN
                        tf.summary.scalar(name, value, step=int(epoch))
        writer.close()
        dirs.append(seed_dir)
    return dirs


def hparam_values(hparams: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    """The values the HParams plugin accepts: scalars as they are, the rest as JSON text."""
    return {
        key: value if isinstance(value, bool | int | float | str) else json.dumps(value)
        for key, value in hparams.items()
    }


def _write_hparams(values: dict[str, bool | int | float | str], trial_id: str) -> None:
    import tensorflow as tf

    try:
        from tensorboard.plugins.hparams import api as hp
    except ImportError:
        table = "\n".join(f"| {k} | {v} |" for k, v in values.items())
        tf.summary.text("hparams", f"| key | value |\n|---|---|\n{table}", step=0)
        log.warning(
            "tensorboard is not installed: hyperparameters written as text "
            "(pip install -e '.[tensorboard]')"
        )
        return
    hp.hparams(values, trial_id=trial_id)
