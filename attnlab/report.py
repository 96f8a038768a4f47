"""The sweep report: every job dir's metrics.json -> report.csv, summary.csv, report.md, figures/.

One aggregator serves both the end-of-sweep callback and the command

    python -m attnlab.report <sweep dir>

which rebuilds the report from disk at any time, also for a sweep killed half way: a job
dir whose metrics.json is missing or unreadable becomes a `failed` row that says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from attnlab.config import dotted
from attnlab.experiment import ATTENTION_CSV, METRICS_FILE
from attnlab.files import write_csv, write_figure, write_text
from attnlab.metrics import RUN_METRICS
from attnlab.stats import t_interval, wilson_interval

log = logging.getLogger(__name__)

SUMMARY_METRICS = (
    "val_accuracy",
    "probe_accuracy",
    "attn_key_weight",
    "attn_hit_rate",
    "attn_entropy",
    "key_ablation_drop",
    "peak_ablation_drop",
)
USABLE = ("completed", "cached")  # statuses whose numbers enter the summary
# Files other layers write that the report reads. Named here, not imported: the report sits
# below the sweep layer (which owns .sweep.json), and history.csv comes from the training side.
SWEEP_STATE = ".sweep.json"
HISTORY_CSV = "history.csv"


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Sub-directories that Hydra made for a job (they hold .hydra/) or hold a metrics.json."""
    dirs = [p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(p for p in dirs if (p / ".hydra").is_dir() or (p / METRICS_FILE).exists())


def read_job(job_dir: Path) -> dict[str, Any]:
    """The job's metrics.json, or a `failed` stand-in saying why there is none."""
    path = job_dir / METRICS_FILE
    if not path.exists():
        reason = "metrics.json is missing (the job was killed, is still running, or crashed)"
        return _stand_in(job_dir, reason)
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
            raise ValueError("no 'runs' list")
    except (OSError, ValueError) as err:
        return _stand_in(job_dir, f"metrics.json is corrupt ({err})")
    return doc


def _stand_in(job_dir: Path, error: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    hydra_cfg = job_dir / ".hydra" / "config.yaml"
    if hydra_cfg.exists():
        try:
            container = OmegaConf.to_container(OmegaConf.load(hydra_cfg), resolve=True)
            assert isinstance(container, dict)
            config = dotted(container)
        except Exception as err:  # an unreadable config must not crash the report
            error += f"; .hydra/config.yaml unreadable ({err})"
    return {"config": config, "runs": [], "status": "failed", "error": error}


def collect_runs(sweep_dir: Path) -> pd.DataFrame:
    """The tidy table: one row per (job, seed), columns job, config..., seed, status, error,
    metrics...; a failed job gets one row per seed it was asked to train."""
    rows, config_keys, extra_keys = [], {}, {}
    for job_dir in job_dirs(sweep_dir):
        doc = read_job(job_dir)
        config = {k: _cell(v) for k, v in doc.get("config", {}).items()}
        config_keys.update(dict.fromkeys(config))
        if doc.get("status") == "failed":
            seeds = doc.get("config", {}).get("seeds") or [math.nan]
            runs = [{"seed": s, "status": "failed", "error": doc.get("error", "")} for s in seeds]
        else:
            runs = doc["runs"]
        rows += [{"job": job_dir.name, **config, **run} for run in runs]
        extra_keys.update(dict.fromkeys(k for run in runs for k in run))
    # Fields a record has beyond RUN_METRICS (still_improving, from run histories) follow them.
    known = {"seed", "status", "error", *RUN_METRICS}
    extras = [k for k in extra_keys if k not in known]
    columns = ["job", *config_keys, "seed", "status", "error", *RUN_METRICS, *extras]
    frame = pd.DataFrame(rows, columns=columns)
    frame["error"] = [e if isinstance(e, str) else "" for e in frame["error"]]
    return frame.sort_values(["job", "seed"], kind="stable", ignore_index=True)


def _cell(value: Any) -> Any:
    """Lists (seeds) become their JSON text, so every config column is a scalar."""
    return json.dumps(value) if isinstance(value, list | dict) else value


def config_columns(report: pd.DataFrame) -> list[str]:
    """The columns between `job` and `seed`."""
    names = [str(c) for c in report.columns]
    return names[names.index("job") + 1 : names.index("seed")]


def swept_columns(report: pd.DataFrame) -> list[str]:
    """Config columns with more than one value, most values first (ties: config order)."""
    cols = [c for c in config_columns(report) if report[c].nunique(dropna=True) > 1]
    return sorted(cols, key=lambda c: -report[c].nunique(dropna=True))


def summarize(report: pd.DataFrame) -> pd.DataFrame:
    """One row per job: config, n_seeds (usable), focus_rate with its Wilson interval, the
    accuracy of focused and of unfocused seeds, still_improving_rate, and for each summary
    metric its mean, sd (ddof=1) and 95% Student-t interval of the mean across seeds."""
    config = config_columns(report)
    rows = []
    for job, group in report.groupby("job", sort=True):
        usable = group[group["status"].isin(USABLE)]
        row: dict[str, Any] = {"job": job}
        row.update({c: group.iloc[0][c] for c in config})
        row["n_seeds"] = len(usable)
        row["n_diverged"] = int((group["status"] == "diverged").sum())
        row["n_failed"] = int((group["status"] == "failed").sum())
        row.update(focus_columns(usable))
        row["still_improving_rate"] = still_improving_rate(usable)
        for metric in SUMMARY_METRICS:
            values = usable[metric].astype(float).to_numpy()
            values = values[np.isfinite(values)]  # mean, sd and CI over the same seeds
            row[f"{metric}_mean"] = _finite_mean(values)
            row[f"{metric}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = t_interval(values)
        rows.append(row)
    # Cells in the order of their config values (2, 5, 20, ... not the job names' 100, 2, 20).
    return pd.DataFrame(rows).sort_values([*config, "job"], kind="stable", ignore_index=True)


def focus_columns(usable: pd.DataFrame) -> dict[str, float]:
    """focus_rate, its Wilson interval, and mean val_accuracy of the focused and the
    unfocused seeds (NaN for an empty group): a cell's mean hides that the two can differ."""
    focused = _flags(usable["attn_focused"])
    known = focused.notna()
    k, n = int(focused[known].sum()), int(known.sum())
    low, high = wilson_interval(k, n)
    accuracy = usable["val_accuracy"].astype(float).to_numpy()
    flags = focused.to_numpy()
    return {
        "focus_rate": k / n if n else math.nan,
        "focus_rate_ci_low": low,
        "focus_rate_ci_high": high,
        "val_accuracy_focused_mean": _finite_mean(accuracy[flags == 1.0]),
        "val_accuracy_unfocused_mean": _finite_mean(accuracy[flags == 0.0]),
    }


def still_improving_rate(usable: pd.DataFrame) -> float:
    """Share of usable seeds whose record says still_improving; NaN when no record has the
    field (sweeps run before attnlab recorded histories)."""
    if "still_improving" not in usable:
        return math.nan
    flags = _flags(usable["still_improving"]).dropna()
    return float(flags.mean()) if len(flags) else math.nan


def _flags(column: pd.Series) -> pd.Series:
    """A boolean column as floats 1/0, NaN where unknown (JSON null, a missing field)."""
    return column.map(lambda v: float(v) if isinstance(v, bool | np.bool_) else math.nan)


def _finite_mean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else math.nan


VERSIONED = ("attnlab", "tensorflow", "keras", "hydra-core", "numpy", "pandas", "scipy")
IMPROVING = 0.5  # still_improving_rate above this: most seeds had not converged


class Provenance(NamedTuple):
    """What report.md says about how its numbers were made, beside the numbers."""

    command: str
    date: str
    versions: dict[str, str]
    figures: list[tuple[str, str]]  # (path relative to the sweep dir, what it shows)


def markdown(summary: pd.DataFrame, report: pd.DataFrame, made: Provenance) -> str:
    """report.md: how the sweep was run, the summary table, the figures, the failed cells."""
    swept = [c for c in swept_columns(report) if c in summary] or ["job"]
    lines = [
        "# Sweep report",
        "",
        f"{len(summary)} cells, {len(report)} runs; report written {made.date}.",
        "",
        "## How it was run",
        "",
        f"- Command: `{made.command}`"
        if made.command != NOT_RECORDED
        else f"- Command: {NOT_RECORDED}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in made.versions.items()),
        "- Swept: " + (", ".join(f"`{c}`" for c in swept_columns(report)) or "nothing"),
        "- Fixed in every cell: "
        + (", ".join(f"`{k}={v}`" for k, v in fixed_settings(report).items()) or "nothing"),
        "",
        "## Cells",
        "",
        "Intervals are 95%: Student-t intervals of the mean over seeds, and for the focus rate "
        "(seeds whose mean attention peaks on the key) a Wilson interval. `acc focused / "
        "unfocused` is the mean val_accuracy of the seeds that focused and of those that did "
        "not. `still improving` counts seeds whose val_accuracy rose by more than 0.01 over "
        "their last quarter of epochs; **yes** when most did: more epochs would change that "
        "cell's numbers.",
        "",
        *summary_table(summary, swept),
    ]
    if made.figures:
        lines += ["", "## Figures", ""]
        lines += [f"- [{Path(path).name}]({path}): {what}" for path, what in made.figures]
    failed = report[report["status"] == "failed"].drop_duplicates("job")
    if len(failed):
        lines += ["", "## Failed cells", ""]
        lines += [f"- `{r.job}`: {r.error}" for r in failed.itertuples()]
    return "\n".join(lines) + "\n"


def summary_table(summary: pd.DataFrame, swept: list[str]) -> list[str]:
    head = [
        *swept,
        "n_seeds",
        "focus rate [95% Wilson]",
        "val_accuracy [95% CI]",
        "acc focused / unfocused",
        "attn_key_weight [95% CI]",
        "key_ablation_drop",
        "still improving",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in summary.iterrows():
        cells = [str(row[c]) for c in swept] + [
            f"{row['n_seeds']}" + (f" ({row['n_diverged']} diverged)" if row["n_diverged"] else ""),
            focus(row),
            interval(row, "val_accuracy"),
            " / ".join(_fmt(row[f"val_accuracy_{g}_mean"]) for g in ("focused", "unfocused")),
            interval(row, "attn_key_weight"),
            _fmt(row["key_ablation_drop_mean"]),
            improving(row),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def fixed_settings(report: pd.DataFrame) -> dict[str, Any]:
    """Config values every cell shares (features, samples, epochs, seeds, ...)."""
    return {
        c: report[c].dropna().iloc[0]
        for c in config_columns(report)
        if report[c].nunique(dropna=True) == 1
    }


def _fmt(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.3f}"


def interval(row: pd.Series, metric: str) -> str:
    """`mean [ci_low, ci_high]` of a summary row's metric, to 3 decimals."""
    mean, low, high = (row[f"{metric}_{k}"] for k in ("mean", "ci_low", "ci_high"))
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.3f} [{_fmt(low)}, {_fmt(high)}]"


def focus(row: pd.Series) -> str:
    """`k/n [low, high]`: focused seeds out of usable ones, with the Wilson interval."""
    rate, n = row["focus_rate"], int(row["n_seeds"])
    if not np.isfinite(rate):
        return "–"
    low, high = row["focus_rate_ci_low"], row["focus_rate_ci_high"]
    return f"{round(rate * n)}/{n} [{low:.2f}, {high:.2f}]"


def improving(row: pd.Series) -> str:
    """`yes (4/5)` when most seeds were still improving, `no (1/5)`, `–` if not recorded."""
    rate, n = row.get("still_improving_rate", math.nan), int(row["n_seeds"])
    if not np.isfinite(rate):
        return "–"
    flag = "**yes**" if rate > IMPROVING else "no"
    return f"{flag} ({round(rate * n)}/{n})"


NOT_RECORDED = "not recorded"


def sweep_command(sweep_dir: Path) -> str:
    """The command that ran the sweep, as the sweep layer stored it in .sweep.json."""
    try:
        state = json.loads((sweep_dir / SWEEP_STATE).read_text())
    except (OSError, ValueError):
        return NOT_RECORDED
    command = state.get("command") if isinstance(state, dict) else None
    return command if isinstance(command, str) and command else NOT_RECORDED


def package_versions() -> dict[str, str]:
    """Installed versions, read from package metadata (importing TensorFlow takes seconds)."""
    out = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_report(sweep_dir: Path, command: str | None = None) -> pd.DataFrame:
    """Write report.csv, summary.csv, figures/ and report.md into sweep_dir; return the report.

    command: the command line that ran the sweep, for report.md; None reads the one stored in
    the sweep dir's .sweep.json, if any.
    """
    report = collect_runs(sweep_dir)
    summary = summarize(report)
    write_csv(sweep_dir / "report.csv", report)
    write_csv(sweep_dir / "summary.csv", summary)
    figures = write_figures(sweep_dir, report, summary)
    made = Provenance(
        command=command or sweep_command(sweep_dir),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        versions=package_versions(),
        figures=figures,
    )
    write_text(sweep_dir / "report.md", markdown(summary, report, made))
    return report


def figure_axes(report: pd.DataFrame) -> list[str]:
    """The swept axes figures show, most values first; the seeds list is not an axis."""
    return [c for c in swept_columns(report) if c != "seeds"]


def write_figures(
    sweep_dir: Path, report: pd.DataFrame, summary: pd.DataFrame
) -> list[tuple[str, str]]:
    """Heatmaps, metric lines, learning curves and the attention grid; every swept axis is
    on an axis, a line colour or a panel. A figure with nothing to show is skipped. Returns
    (path relative to sweep_dir, what it shows) of each figure written."""
    from attnlab import plots

    written: list[tuple[str, str]] = []

    def save(name: str, figure: Any, what: str) -> None:
        write_figure(sweep_dir / "figures" / name, figure)
        written.append((f"figures/{name}", what))

    axes = figure_axes(report)
    if axes and (summary["n_seeds"] > 0).any():
        for name, figure, what in summary_figures(summary, axes):
            save(name, figure, what)
    histories = cell_histories(sweep_dir, report, summary)
    if histories:
        for name, figure, what in learning_curve_figures(histories, axes):
            save(name, figure, what)
    cells = attention_cells(sweep_dir, summary, axes)
    if cells:
        combos = summary[axes[1:]].drop_duplicates() if len(axes) > 1 else summary.iloc[:1]
        ncols = len(combos) if len(combos) <= 6 else 4
        what = "every seed's attention per column, each cell a panel (one colour scale)"
        save("attention_grid.png", plots.attention_grid_figure(cells, ncols), what)
    return written


def summary_figures(summary: pd.DataFrame, axes: list[str]) -> list[tuple[str, Any, str]]:
    """Heatmaps of val_accuracy and focus_rate (cols: the first axis, rows: the second,
    panels: the rest) and metric lines (x: classes or the first axis, lines: the next one,
    panels: the rest), all drawn from the summary's means and intervals."""
    from attnlab import plots
    from attnlab.plots import short

    out = []
    cols, rows, facets = axes[0], (axes[1] if len(axes) > 1 else None), axes[2:]
    roles = f"rows: {short(rows)}, columns: {short(cols)}" if rows else f"columns: {short(cols)}"
    for value, what in (
        ("val_accuracy_mean", "mean val_accuracy [95% t interval over seeds]"),
        ("focus_rate", "focus rate: seeds whose attention peaks on the key [95% Wilson]"),
    ):
        data = plots.heatmap_data(summary, value, rows, cols, facets)
        title = plots.layout_title(what, facets, roles)
        out.append((f"heatmap_{value}.png", plots.heatmap_figure(data, title), what))
    x = "data.classes" if "data.classes" in axes else axes[0]
    rest = [c for c in axes if c != x]
    hue, facets = (rest[0], rest[1:]) if rest else (None, [])
    for metric in ("val_accuracy", "attn_key_weight"):
        lines = plots.metric_lines_data(summary, metric, x, hue, facets)
        what = f"{metric} vs {short(x)}: mean and 95% t interval over seeds"
        title = plots.layout_title(what, facets, f"lines: {short(hue)}" if hue else "")
        ref = plots.reference_level(summary, metric)
        figure = plots.lines_figure(
            lines, title, short(x), metric, hue, ref[0] if ref is not None else None
        )
        out.append((f"{metric}_vs_{x}.png", figure, what))
    return out


def learning_curve_figures(
    histories: list[tuple[pd.Series, pd.DataFrame]], axes: list[str]
) -> list[tuple[str, Any, str]]:
    """val_accuracy and train_loss over epochs, one line per cell: coloured by classes (or
    the first axis), one panel per value of the other axes."""
    from attnlab import plots
    from attnlab.plots import short

    hue = ("data.classes" if "data.classes" in axes else axes[0]) if axes else None
    facets = [c for c in axes if c != hue]
    out = []
    for metric in HISTORY_METRICS:
        data = plots.learning_curve_data(histories, metric, hue, facets)
        what = f"learning curves: {metric} per epoch, mean and 95% t interval over seeds"
        title = plots.layout_title(what, facets, f"lines: {short(hue)}" if hue else "")
        ref = plots.reference_level(histories[0][0].to_frame().T, metric)
        figure = plots.lines_figure(
            data, title, "epoch", metric, hue, ref[0] if ref is not None else None, False
        )
        out.append((f"learning_curve_{metric}.png", figure, what))
    return out


HISTORY_METRICS = ("val_accuracy", "train_loss")


def cell_histories(
    sweep_dir: Path, report: pd.DataFrame, summary: pd.DataFrame
) -> list[tuple[pd.Series, pd.DataFrame]]:
    """(summary row, history.csv rows of its usable seeds) of each cell that has a
    readable history.csv; cells without one (older sweeps) are skipped."""
    out = []
    for _, row in summary.iterrows():
        path = sweep_dir / str(row["job"]) / HISTORY_CSV
        if row["n_seeds"] == 0 or not path.exists():
            continue
        try:
            history = pd.read_csv(path)
        except (OSError, ValueError):
            continue
        runs = report[(report["job"] == row["job"]) & report["status"].isin(USABLE)]
        history = history[history["seed"].isin(runs["seed"])]
        if len(history) and set(HISTORY_METRICS) <= set(history.columns):
            out.append((row, history))
    return out


def attention_cells(
    sweep_dir: Path, summary: pd.DataFrame, swept: list[str]
) -> list[tuple[str, pd.DataFrame, int]]:
    """(title, attention.csv frame, key column) for each cell that has an attention.csv,
    ordered by the swept axes (the first varies slowest); titles name every swept value."""
    cells = []
    ordered = summary.sort_values(swept, kind="stable") if swept else summary
    for _, row in ordered.iterrows():
        path = sweep_dir / str(row["job"]) / ATTENTION_CSV
        if not path.exists() or row["n_seeds"] == 0:
            continue
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError):
            continue
        title = " ".join(f"{c.split('.')[-1]}={row[c]}" for c in swept) or str(row["job"])
        cells.append((title, frame, int(row.get("data.attention_column", 1))))
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m attnlab.report",
        description="Rebuild report.csv, summary.csv, report.md and figures/ of a sweep dir.",
    )
    parser.add_argument("sweep_dir", type=Path)
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(
            f"attnlab.report: error: sweep_dir={args.sweep_dir} is not a directory", file=sys.stderr
        )
        return 2
    if not job_dirs(args.sweep_dir):
        print(
            f"attnlab.report: error: sweep_dir={args.sweep_dir} holds no job dirs "
            "(sub-directories with .hydra/ or metrics.json)",
            file=sys.stderr,
        )
        return 2
    report = write_report(args.sweep_dir)
    counts = report.drop_duplicates("job")["status"].value_counts().to_dict()
    jobs, md = report["job"].nunique(), args.sweep_dir / "report.md"
    print(f"{jobs} jobs, {len(report)} rows, job status {counts}: {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
