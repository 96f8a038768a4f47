"""One cell's run into its dir: train (or take the pack's results), write the files.

`run_experiment(cfg, out_dir)` is what a job and the Python API call; it never relies on
the current directory. Files in out_dir: attention.csv, history.csv, attention.png, then
metrics.json last, so a metrics.json on disk means the whole experiment finished. A sweep
that adds seeds to a finished cell (grow=True) writes each new seed into
out_dir/seeds/<seed>/ instead: history.csv, attention.csv, then its own metrics.json; the
cell's first files are never touched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from attnlab.engine.config import ConfigError, ExperimentConfig, flatten
from attnlab.engine.data import key_column
from attnlab.engine.experiment import CellResult, train_and_measure
from attnlab.engine.metrics import NO_ATTENTION
from attnlab.engine.resources import check_fits
from attnlab.runs.files import write_csv, write_figure
from attnlab.runs.provenance import source_revision
from attnlab.runs.records import (
    ATTENTION_CSV,
    ATTENTION_PNG,
    HISTORY_CSV,
    METRICS_FILE,
    RecordError,
    seed_dir,
    set_aside_broken_seed,
    write_result,
    write_seed_result,
)

log = logging.getLogger(__name__)
# Per-seed lines and other detail: the job's log file only (conf/hydra/job_logging),
# unless trainer.verbose.
seed_log = logging.getLogger("attnlab.detail")


def run_experiment(
    cfg: ExperimentConfig,
    out_dir: Path,
    trained: CellResult | None = None,
    run_id: str | None = None,
    seed_lines: bool = False,
    on_epoch: Callable[[int], None] | None = None,
    cores: int | None = None,
    grow: bool = False,
) -> dict[str, Any]:
    """Validate, train all seeds as replicas, measure, write the files; return metrics.json.

    trained: this cell's results if it was already trained together with other cells
    (attnlab.sweep.packing); then only the files are written. run_id: the sweep run that trains
    it, recorded in metrics.json. seed_lines: log a line per seed on the console (a single
    run; in a sweep they go to the log file, unless trainer.verbose). on_epoch: fit's
    progress callback (attnlab.sweep.progress). cores: what the job resolved to train on
    (attnlab.sweep.launchers.apply_threads); None: the config's trainer.threads.
    grow: out_dir may hold the cell's finished metrics.json (a sweep adding seeds to it):
    then each seed goes into its own record (write_seed_outputs). Else a finished result
    there is an error, as for a single run.
    """
    cfg.validate()
    if trained is None:  # memory is checked before training only: trained work is written
        check_fits(cfg)
    if out_dir.exists() and not out_dir.is_dir():  # found now, not after training
        raise ConfigError(f"out_dir={out_dir} is a file, not a directory: choose another")
    adding = (out_dir / METRICS_FILE).exists()
    if adding and not grow:  # a finished result is never written over
        raise RecordError(f"{out_dir} already holds a finished {METRICS_FILE}")
    result = trained or train_and_measure(cfg, on_epoch, cores)
    for record in result.records:
        logger = log if cfg.trainer.verbose or seed_lines else seed_log
        _log_record(logger, record, key_column(cfg.data))
    doc = {"config": flatten(cfg), "runs": result.records, "run_id": run_id}
    revision = source_revision()  # run from a git checkout: which commit, dirty or not
    if revision is not None:
        doc["source"] = revision
    if adding:
        write_seed_outputs(out_dir, doc, result.attention, cfg, result.history)
    else:
        write_outputs(out_dir, doc, result.attention, cfg, result.history)
    return doc


def _log_record(logger: logging.Logger, record: dict[str, Any], key: int) -> None:
    if record["status"] == "diverged":
        logger.info(
            "seed %d: diverged in epoch %d (loss NaN/inf or > 10 log(classes))",
            record["seed"],
            record["epochs_run"],
        )
        return
    if not isinstance(record["attn_focused"], bool):  # NaN: model.attention=none
        logger.info(
            "seed %d: val_accuracy %.3f, probe_accuracy %.3f, %s",
            record["seed"],
            record["val_accuracy"],
            record["probe_accuracy"],
            NO_ATTENTION,
        )
        return
    focus = "focused on" if record["attn_focused"] else "NOT focused on"
    logger.info(
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
    out_dir: Path,
    doc: dict[str, Any],
    attention: pd.DataFrame,
    cfg: ExperimentConfig,
    history: pd.DataFrame,
) -> None:
    """attention.csv, history.csv (and TensorBoard's event files with logger=tensorboard),
    attention.png, then metrics.json (last: its presence means done; it is created, never
    replaced)."""
    from attnlab.runs.plots import attention_figure

    write_csv(out_dir / ATTENTION_CSV, attention)
    write_csv(out_dir / HISTORY_CSV, history)
    if cfg.logger.kind == "tensorboard":  # the same curves as event files, with the hparams
        from attnlab.runs.tensorboard import write_events

        write_events(out_dir, history, flatten(cfg), cfg.logger.subdir)
    d, m = cfg.data, cfg.model
    if m.sequence:
        title = f"lstm, attention {m.attention_position}: {d.classes} classes, {d.time_steps} steps"
        axis = "time step"
    else:
        title = f"{m.variant}: {d.classes} classes, {d.features} features, depth {m.attn_layers}"
        axis = "input column"
    if m.attention != "learned":
        title += f", attention {m.attention}"
    figure = attention_figure(attention, key_column(d), title, axis)
    write_figure(out_dir / ATTENTION_PNG, figure)
    if not write_result(out_dir, doc):
        raise RecordError(f"{out_dir} already holds a finished {METRICS_FILE}")


def write_seed_outputs(
    cell_dir: Path,
    doc: dict[str, Any],
    attention: pd.DataFrame,
    cfg: ExperimentConfig,
    history: pd.DataFrame,
) -> None:
    """Seeds added to a finished cell: each into seeds/<seed>/ (history.csv, attention.csv,
    then its own metrics.json, created once), so nothing already on disk changes. A broken
    record of that seed is set aside first (renamed); one already finished is kept and
    this training's numbers for it are dropped (RecordError after the other seeds)."""
    kept = []
    for record in doc["runs"]:
        seed = int(record["seed"])
        place = seed_dir(cell_dir, seed)
        set_aside_broken_seed(cell_dir, seed, cell_dir.parent)
        if (place / METRICS_FILE).exists():
            kept.append(seed)
            continue
        write_csv(place / ATTENTION_CSV, attention[attention["seed"] == seed])
        write_csv(place / HISTORY_CSV, history[history["seed"] == seed])
        if cfg.logger.kind == "tensorboard":  # new seed dirs beside the first training's
            from attnlab.runs.tensorboard import write_events

            rows = history[history["seed"] == seed]
            write_events(cell_dir, rows, doc["config"], cfg.logger.subdir)
        one = {**doc, "config": {**doc["config"], "seeds": [seed]}, "runs": [record]}
        if not write_seed_result(cell_dir, seed, one):
            kept.append(seed)
    if kept:
        raise RecordError(f"{cell_dir} already holds finished records of seeds {kept}: kept")
