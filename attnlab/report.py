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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from attnlab.config import dotted
from attnlab.experiment import ATTENTION_CSV, METRICS_FILE
from attnlab.files import write_csv, write_figure, write_text
from attnlab.metrics import NO_ATTENTION, RUN_METRICS

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
    rows, config_keys = [], {}
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
    columns = ["job", *config_keys, "seed", "status", "error", *RUN_METRICS]
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


def bootstrap_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (scipy; fixed seed, so reports are stable).

    NaN for fewer than two values: one seed has no spread to resample.
    """
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return math.nan, math.nan
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    res = bootstrap(
        (values,),
        np.mean,
        confidence_level=level,
        method="percentile",
        n_resamples=9999,
        random_state=0,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarize(report: pd.DataFrame) -> pd.DataFrame:
    """One row per job: config, n_seeds (usable), focus_rate, and for each summary metric
    its mean, sd (ddof=1), and 95% bootstrap interval across seeds."""
    config = config_columns(report)
    rows = []
    for job, group in report.groupby("job", sort=True):
        usable = group[group["status"].isin(USABLE)]
        row: dict[str, Any] = {"job": job}
        row.update({c: group.iloc[0][c] for c in config})
        row["n_seeds"] = len(usable)
        row["n_diverged"] = int((group["status"] == "diverged").sum())
        row["n_failed"] = int((group["status"] == "failed").sum())
        row["focus_rate"] = _finite_mean(usable["attn_focused"].astype(float).to_numpy())
        for metric in SUMMARY_METRICS:
            values = usable[metric].astype(float).to_numpy()
            values = values[np.isfinite(values)]  # mean, sd and CI over the same seeds
            row[f"{metric}_mean"] = _finite_mean(values)
            row[f"{metric}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = bootstrap_ci(values)
        rows.append(row)
    # Cells in the order of their config values (2, 5, 20, ... not the job names' 100, 2, 20).
    return pd.DataFrame(rows).sort_values([*config, "job"], kind="stable", ignore_index=True)


def _finite_mean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else math.nan


def markdown(summary: pd.DataFrame, report: pd.DataFrame) -> str:
    """The summary as a readable markdown table, then the failed cells with their errors."""
    swept = [c for c in swept_columns(report) if c in summary] or ["job"]
    lines = ["# Sweep report", "", f"{len(summary)} cells, {len(report)} runs.", ""]
    head = [
        *swept,
        "n_seeds",
        "focus rate",
        "val_accuracy [95% CI]",
        "attn_key_weight [95% CI]",
        "key_ablation_drop",
    ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in summary.iterrows():
        cells = [str(row[c]) for c in swept] + [
            f"{row['n_seeds']}" + (f" ({row['n_diverged']} diverged)" if row["n_diverged"] else ""),
            _fmt(row["focus_rate"]),
            interval(row, "val_accuracy"),
            interval(row, "attn_key_weight"),
            _fmt(row["key_ablation_drop_mean"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if "model.attention" in summary and (summary["model.attention"] == "none").any():
        lines += [
            "",
            f"Attention columns are empty (–) in the cells without attention: {NO_ATTENTION}.",
        ]
    failed = report[report["status"] == "failed"].drop_duplicates("job")
    if len(failed):
        lines += ["", "## Failed cells", ""]
        lines += [f"- `{r.job}`: {r.error}" for r in failed.itertuples()]
    return "\n".join(lines) + "\n"


def _fmt(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.3f}"


def interval(row: pd.Series, metric: str) -> str:
    """`mean [ci_low, ci_high]` of a summary row's metric, to 3 decimals."""
    mean, low, high = (row[f"{metric}_{k}"] for k in ("mean", "ci_low", "ci_high"))
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.3f} [{_fmt(low)}, {_fmt(high)}]"


def write_report(sweep_dir: Path) -> pd.DataFrame:
    """Write report.csv, summary.csv, report.md and figures/ into sweep_dir; return the report."""
    report = collect_runs(sweep_dir)
    summary = summarize(report)
    write_csv(sweep_dir / "report.csv", report)
    write_csv(sweep_dir / "summary.csv", summary)
    write_text(sweep_dir / "report.md", markdown(summary, report))
    write_figures(sweep_dir, report, summary)
    return report


def write_figures(sweep_dir: Path, report: pd.DataFrame, summary: pd.DataFrame) -> None:
    """Heatmaps, lines with CI bands and the attention grid; a figure that has nothing to
    show (say, no swept axis) is skipped."""
    from attnlab import plots

    figures = sweep_dir / "figures"
    usable = report[report["status"].isin(USABLE)]
    swept = [c for c in swept_columns(report) if c != "seeds"]
    if swept and len(usable):
        rows, cols = (swept[1], swept[0]) if len(swept) > 1 else (None, swept[0])
        for value, title in (
            ("val_accuracy_mean", "mean val_accuracy"),
            ("focus_rate", "focus rate"),
        ):
            grid = plots.heatmap_data(summary, value, rows, cols)
            write_figure(figures / f"heatmap_{value}.png", plots.heatmap_figure(grid, title))
        x = "data.classes" if "data.classes" in swept else swept[0]
        hue = next((c for c in swept if c != x), None)
        for metric in ("val_accuracy", "attn_key_weight"):
            fig = plots.metric_lines_figure(usable, x, metric, hue)
            write_figure(figures / f"{metric}_vs_{x}.png", fig)
    cells = attention_cells(sweep_dir, summary, swept)
    if cells:
        write_figure(figures / "attention_grid.png", plots.attention_grid_figure(cells))


def attention_cells(
    sweep_dir: Path, summary: pd.DataFrame, swept: list[str]
) -> list[tuple[str, pd.DataFrame, int]]:
    """(title, attention.csv frame, key column) for each cell that has an attention.csv."""
    cells = []
    for _, row in summary.iterrows():
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
