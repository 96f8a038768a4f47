"""The Python API, for notebooks: read a sweep's tables, run one cell as the CLI would.

    import attnlab
    report, summary = attnlab.load_report("outputs/sweeps/2026-12-01_10-00-00")
    rows = attnlab.compare("outputs/sweeps/2026-12-01_10-00-00", axis="model.attn_layers")
    doc = attnlab.run_cell(["data.classes=20", "seeds=[0,1,2]"], "outputs/nb/classes20")

Exposed lazily by attnlab/__init__.py, so `import attnlab` loads neither TensorFlow nor
pandas; TensorFlow loads when run_cell trains.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import pandas as pd

from attnlab.engine.config import ConfigError, ExperimentConfig, flatten

log = logging.getLogger(__name__)

# Dtypes of the metrics that are not floats (report.csv); seeds and counts are ints too.
INT_COLUMNS = ("seed", "attn_peak_column", "attn_key_rank", "epochs_run")
COUNT_COLUMNS = ("n_seeds", "n_diverged", "n_failed")
BOOL_COLUMNS = ("attn_focused",)
REPORT_FILES = ("report.csv", "summary.csv")


def load_report(sweep_dir: str | PathLike[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A sweep's report and summary as DataFrames, rebuilt first if missing or stale.

    Stale: report.csv or summary.csv is older than some cell's record (metrics.json,
    run.json or cell.json: a resumed or grown sweep, a sweep killed before its report).
    Columns get the types of their values: config ints and counts as ints, `attn_focused`
    as bools, `seed` as int (pandas' nullable Int64/boolean where a failed or diverged row
    has no value).

    Raises:
        ConfigError: sweep_dir is not a directory or holds no cell dirs (one-line message).
    """
    from attnlab.runs.records import cell_dirs
    from attnlab.runs.report import write_report

    root = Path(sweep_dir)
    if not root.is_dir():
        raise ConfigError(f"sweep_dir={str(root)!r} is not allowed: an existing sweep directory")
    if not cell_dirs(root):
        raise ConfigError(
            f"sweep_dir={str(root)!r} is not allowed: a sweep directory with cell dirs "
            "(sub-directories with cell.json, metrics.json or .hydra/)"
        )
    if report_is_stale(root) and not _rebuilt(root, write_report):
        return _computed(root)  # another process rebuilds it, or the dir is read-only
    try:
        report = pd.read_csv(root / "report.csv", keep_default_na=False, na_values=[""])
        summary = pd.read_csv(root / "summary.csv", keep_default_na=False, na_values=[""])
    except FileNotFoundError:  # a rebuild by another process began after the check
        return _computed(root)
    return typed(report), typed(summary)


def _rebuilt(root: Path, write_report: Any) -> bool:
    """Rebuild the report under the sweep dir's lock; False if another process holds it
    (a sweep, a rebuild) or the dir cannot be written."""
    from attnlab.runs import records

    try:
        with records.lock_sweep_dir(root, records.command_line("attnlab.load_report")):
            write_report(root)
    except (records.RecordError, OSError):
        return False
    return True


def _computed(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The report and summary computed from the cell dirs in memory (nothing written),
    typed as if read back from their CSVs."""
    import io

    from attnlab.runs.report import collect_runs, summarize

    report = collect_runs(root)
    frames = (report, summarize(report))
    return tuple(  # type: ignore[return-value]
        typed(
            pd.read_csv(io.StringIO(f.to_csv(index=False)), keep_default_na=False, na_values=[""])
        )
        for f in frames
    )


def compare(
    sweep_dir: str | PathLike[str],
    axis: str | None = None,
    metric: str | None = "val_accuracy",
    baseline: Any = None,
) -> pd.DataFrame:
    """comparisons.csv's rows for one axis and metric (None: all), the report rebuilt first
    if stale: each swept value minus its axis' baseline, paired by seed where both cells ran
    the same seeds, Holm-corrected over all comparisons of the metric in the sweep
    (docs/comparisons.md).

        attnlab.compare(sweep_dir, axis="model.attn_layers")   # is depth 2 better?

    Args:
        sweep_dir: a sweep dir.
        axis: a swept config key, e.g. "model.attn_layers"; None: every axis.
        metric: "val_accuracy", "attn_key_weight" or "focus_rate"; None: all three.
        baseline: this axis' baseline value instead of the sweep's (its first value).

    Raises:
        ConfigError: a bad sweep_dir, axis or baseline (one-line message).
    """
    from attnlab.runs.comparisons import compare as compare_sweep

    load_report(sweep_dir)
    return compare_sweep(Path(sweep_dir), axis, metric, baseline)


def report_is_stale(sweep_dir: Path) -> bool:
    """Whether report.csv or summary.csv is missing or older than a cell's record."""
    from attnlab.runs import records

    paths = [sweep_dir / name for name in REPORT_FILES]
    if not all(p.exists() for p in paths):
        return True
    written = min(p.stat().st_mtime for p in paths)
    names = (records.METRICS_FILE, records.RUN_FILE, records.CELL_FILE)
    files = [d / name for d in records.cell_dirs(sweep_dir) for name in names]
    files += [  # seeds added to a finished cell (records.seed_dir)
        path
        for d in records.cell_dirs(sweep_dir)
        for path in d.glob(f"{records.SEEDS_DIR}/*/{records.METRICS_FILE}")
    ]
    return any(p.exists() and p.stat().st_mtime > written for p in files)


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """frame with each known column cast to its type: config values as the schema types
    them, ints and bools of the metrics; nullable types only where a value is missing."""
    kinds = {key: type(value) for key, value in flatten(ExperimentConfig()).items()}
    kinds.update(dict.fromkeys((*INT_COLUMNS, *COUNT_COLUMNS), int))
    kinds.update(dict.fromkeys(BOOL_COLUMNS, bool))
    out = frame.copy()
    for column, kind in kinds.items():
        if column in out:
            out[column] = _cast(out[column], kind)
    return out


def _cast(values: pd.Series, kind: type) -> pd.Series:
    missing = values.isna().any()
    if kind is bool:
        words = {"True": True, "False": False, "true": True, "false": False}
        flags = values.map(lambda v: words.get(v, v) if isinstance(v, str) else v)
        return flags.astype("boolean" if missing else bool)
    if kind is int:
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.isna().sum() > values.isna().sum() or (numbers.dropna() % 1 != 0).any():
            return values  # not all ints (a hand-edited file): left as read
        return numbers.astype("Int64" if missing else "int64")
    if kind is float:
        return pd.to_numeric(values, errors="coerce").astype(float)
    return values


def run_cell(overrides: Sequence[str], out_dir: str | PathLike[str]) -> dict[str, Any]:
    """Compose the CLI's config with these overrides, train the cell, write its files into
    out_dir (metrics.json, attention.csv, attention.png), and return the metrics document.

    Args:
        overrides: Hydra overrides as on the command line, e.g. ["data.classes=20",
            "seeds=[0,1,2]", "+experiment=blog_wide"]; one string is one override. A
            preset that defines a sweep is refused, as by `attnlab` without -m.
        out_dir: the run's directory (created if missing).

    Returns:
        {"config": {dotted key: value}, "runs": [one record per seed]}, as in metrics.json.

    out_dir already holding this cell's finished result (a notebook cell run again): the
    result is returned as it is, untrained, and a log line says so (as a sweep reuses a
    finished cell); delete out_dir to train again.

    Raises:
        ConfigError: bad input, with the one-line message the CLI prints; before training;
            or out_dir holding another cell's result (a finished result is never replaced).
    """
    from attnlab.quiet import quiet_start
    from attnlab.runs.cell import run_experiment
    from attnlab.sweep.launchers import apply_threads

    quiet_start()
    # One string is one override ("data.classes=20"), not a sequence of characters.
    exp = compose_cell([overrides] if isinstance(overrides, str) else list(overrides))
    exp.validate()
    finished = finished_result(exp, Path(out_dir))
    if finished is not None:
        return finished
    cores = apply_threads(exp.trainer.threads, None)
    return run_experiment(exp, Path(out_dir), cores=cores)


def finished_result(exp: ExperimentConfig, out_dir: Path) -> dict[str, Any] | None:
    """out_dir's metrics document if it holds exp's finished result, None if it holds none;
    ConfigError if it holds another cell's."""
    from attnlab.runs import records

    if not (out_dir / records.METRICS_FILE).exists():
        return None
    record = records.read_cell(out_dir, out_dir.parent)
    if not record.finished:
        return None  # a failed or broken record: training writes over it as in a sweep
    if records.identity_key(record.config) != records.identity_key(flatten(exp)):
        raise ConfigError(
            f"out_dir={out_dir} holds another cell's finished result ({records.METRICS_FILE}), "
            "which is never replaced: choose another out_dir"
        )
    log.info("%s holds this cell's finished result: reused, not trained again", out_dir)
    return records.read_json(out_dir / records.METRICS_FILE, out_dir.parent)


def compose_cell(overrides: list[str]) -> ExperimentConfig:
    """The typed config that `attnlab OVERRIDES` would run (Hydra's compose API on the
    packaged attnlab.conf); bad input raises ConfigError with the CLI's one-line message."""
    from hydra import compose, initialize_config_module
    from omegaconf import open_dict

    from attnlab.engine.config import from_hydra
    from attnlab.hydra_setup import register
    from attnlab.sweep.cells import require_multirun
    from attnlab.sweep.errors import config_error_line, is_config_error

    register()
    try:
        with initialize_config_module(config_module="attnlab.conf", version_base="1.3"):
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
        require_multirun(False, cfg.hydra.sweeper.get("params"))
        with open_dict(cfg):
            del cfg["hydra"]
        return from_hydra(cfg)
    except ConfigError:
        raise
    except Exception as err:
        if not is_config_error(err):
            raise
        raise ConfigError(config_error_line(err, overrides)) from err
