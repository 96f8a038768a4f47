"""The sweep report: every job dir's metrics.json -> report.csv, summary.csv, report.md, figures/.

One aggregator serves both the end-of-sweep callback and the command

    python -m attnlab.report <sweep dir>

which rebuilds the report from disk at any time, also for a sweep killed half way: a job
dir whose metrics.json is missing or unreadable becomes a `failed` row that says so.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from attnlab.engine.metrics import NO_ATTENTION, RUN_METRICS, SUMMARY_METRICS, metric_bounds
from attnlab.engine.stats import LEVEL, t_interval, wilson_interval
from attnlab.runs import records
from attnlab.runs.files import os_error_text, signals_held, write_csv, write_figure, write_text
from attnlab.runs.provenance import source_line

if TYPE_CHECKING:
    from attnlab.engine.claims import Intervals

log = logging.getLogger(__name__)

USABLE = ("completed", "cached")  # statuses whose numbers enter the summary
# Config keys that are the sweep's question, not a cell's setting: no report.csv column
# (cells run with other claims must not look like a swept axis); claims.csv judges them.
NOT_COLUMNS = ("claims",)


def collect_runs(sweep_dir: Path, requested: dict[str, list[int]] | None = None) -> pd.DataFrame:
    """The tidy table: one row per (cell, seed), columns job, config..., seed, status, error,
    metrics...; a failed cell gets one row per seed it was asked to train (attnlab.runs.records
    reads every cell dir, and makes anything unexpected a failed record saying why).

    requested: each cell's seeds by dir name (None: the latest run's, from .sweep.json:
    records.requested_seeds); a cell with more seeds recorded shows only those asked for
    (the frame's attrs count what was left out), a cell not listed shows all it holds. A
    seed asked for and not recorded is a failed row saying why. `seeds` in the config
    columns is the cell's seeds shown.
    """
    if requested is None:
        requested = records.requested_seeds(records.read_state(sweep_dir))
    rows, config_keys = [], {}
    left_out: dict[str, int] = {}
    duplicates = 0
    # Why the latest run could not even start a cell (its dir a symlink, a file, read-only):
    # said in its row, not an older record's reason.
    blocked = records.read_state(sweep_dir).get("blocked")
    blocked = blocked if isinstance(blocked, dict) else {}
    for record in records.read_cells(sweep_dir):
        config = {k: _cell(v) for k, v in record.config.items() if k not in NOT_COLUMNS}
        config_keys.update(dict.fromkeys(config))
        asked = requested.get(record.name)
        if record.finished:
            runs = finished_rows(sweep_dir, record, asked)
            recorded = {run["seed"] for run in record.runs}
            if asked is not None and recorded - set(asked):
                left_out[record.name] = len(recorded - set(asked))
            duplicates += record.duplicates
        else:
            seeds = asked or record.config.get("seeds")
            if not isinstance(seeds, list) or not seeds:
                seeds = [math.nan]
            error = str(blocked.get(record.name) or record.error)
            runs = [{"seed": s, "status": "failed", "error": error} for s in seeds]
        if "seeds" in config:
            config["seeds"] = _cell([r["seed"] for r in runs if not _is_nan(r["seed"])])
        rows += [{"job": record.name, **config, **run} for run in runs]
    columns = ["job", *config_keys, "seed", "status", "error", *RUN_METRICS]
    extra = sorted({k for row in rows for k in row} - set(columns))
    frame = pd.DataFrame(rows, columns=[*columns, *extra])
    frame["error"] = [e if isinstance(e, str) else "" for e in frame["error"]]
    frame = frame.sort_values(["job", "seed"], kind="stable", ignore_index=True)
    frame.attrs["left_out"] = left_out
    frame.attrs["duplicates"] = duplicates
    return frame


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def finished_rows(
    sweep_dir: Path, record: records.CellRecord, asked: list[int] | None
) -> list[dict[str, Any]]:
    """A finished cell's rows: each seed asked for (None: every seed recorded) with its
    record, `cached` where the cell's latest run did not train it; a seed without a record
    is `failed` with the reason (its own record malformed, or the run that should have
    added it failed)."""
    problem = csv_problems(sweep_dir, record)  # said in the row; numbers kept
    by_seed = {run["seed"]: run for run in record.runs}
    seeds = sorted(set(asked)) if asked is not None else sorted({*by_seed, *record.seed_errors})
    rows = []
    for seed in seeds:
        run = by_seed.get(seed)
        if run is None:
            why = record.seed_errors.get(seed) or (
                f"seed {seed} has no record: "
                + (record.attempt_error or "the job was killed, is still running, or crashed")
            )
            rows.append({"seed": seed, "status": "failed", "error": why})
            continue
        status = run["status"] if run["status"] == "diverged" else seed_status(record, seed)
        rows.append({**run, "status": status, **({"error": problem} if problem else {})})
    return rows


def seed_status(record: records.CellRecord, seed: int) -> str:
    """`cached` for a seed the cell's latest run reused (the cell was cached, or that run
    completed the cell by training other seeds than this one), else `completed` (a failed
    attempt never changes how a finished seed reads)."""
    if record.status == "cached":
        return "cached"
    written_by = record.seed_run_ids.get(seed)
    if record.attempt == "completed" and record.run_id and written_by != record.run_id:
        return "cached"
    return "completed"


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
            bounds = metric_bounds(metric)
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = t_interval(values, LEVEL, bounds)
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


def objective_value(doc: dict[str, Any], objective: str) -> float:
    """A job's objective: the mean of `objective` over the cell's usable seeds (completed or
    cached), as summarize() computes it; focus_rate is the share of those seeds focused.
    NaN if no seed has a finite value (a failed cell, every seed diverged)."""
    usable = [run for run in doc.get("runs", []) if run.get("status") in USABLE]
    key = "attn_focused" if objective == "focus_rate" else objective
    values = np.array([_as_float(run.get(key)) for run in usable], dtype=float)
    return _finite_mean(values)


def _as_float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan  # bools included


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
    seeds: list[str] = []  # what report.md says of seeds left out or recorded twice


def seed_notes(report: pd.DataFrame) -> list[str]:
    """report.md's lines on the seeds the tables do not use: cells holding more seeds
    than the latest run asked for (collect_runs' attrs), and seed records ignored because
    the seed was recorded twice (dirs of one cell from older attnlab)."""
    notes = []
    left_out: dict[str, int] = report.attrs.get("left_out") or {}
    if left_out:
        notes.append(
            f"{len(left_out)} cell(s) hold more seeds than the latest run asked for: the "
            f"tables and figures use the seeds asked for, leaving out "
            f"{sum(left_out.values())} recorded seed(s) (rerun with more seeds to use them)."
        )
    duplicates = int(report.attrs.get("duplicates") or 0)
    if duplicates:
        notes.append(
            f"{duplicates} seed record(s) were ignored: the seed is recorded twice for its "
            "cell (dirs of one cell made by an older attnlab), and the cell's home dir's "
            "record is used."
        )
    return notes


def markdown(
    summary: pd.DataFrame, report: pd.DataFrame, made: Provenance, claims: Sequence[str] = ()
) -> str:
    """report.md: how the sweep was run, its claims' verdicts (the lines of claims_section),
    the summary table, the figures, the failed cells."""
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
        *claims,
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
        *(["", *made.seeds] if made.seeds else []),
    ]
    if "model.attention" in summary and (summary["model.attention"] == "none").any():
        lines += [
            "",
            f"Attention columns are empty (–) in the cells without attention: {NO_ATTENTION}.",
        ]
    if made.figures:
        lines += ["", "## Figures", ""]
        lines += [f"- [{Path(path).name}]({path}): {what}" for path, what in made.figures]
    failed = report[report["status"] == "failed"].drop_duplicates("job")
    if len(failed):
        lines += ["", "## Failed cells", ""]
        lines += [f"- `{r.job}`: {r.error}" for r in failed.itertuples()]
    odd = report[(report["status"] != "failed") & (report["error"] != "")].drop_duplicates("job")
    if len(odd):  # results kept, a file beside them not as attnlab wrote it
        lines += ["", "## Cells with an odd file (their results are used, not the file)", ""]
        lines += [f"- `{r.job}`: {r.error}" for r in odd.itertuples()]
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
    relevant = has_relevant_columns(summary)
    if relevant:  # data with named relevant columns: how much attention found them
        head[-1:-1] = ["attn_relevant_weight [95% CI]", "attn_topk_precision [95% CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in summary.iterrows():
        cells = [str(row[c]) for c in swept] + [
            f"{row['n_seeds']}" + (f" ({row['n_diverged']} diverged)" if row["n_diverged"] else ""),
            focus(row),
            interval(row, "val_accuracy"),
            " / ".join(_fmt(row[f"val_accuracy_{g}_mean"]) for g in ("focused", "unfocused")),
            interval(row, "attn_key_weight"),
            _fmt(row["key_ablation_drop_mean"]),
            *[interval(row, m) for m in IDENTIFICATION if relevant],
            improving(row),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


IDENTIFICATION = ("attn_relevant_weight", "attn_topk_precision")


def has_relevant_columns(summary: pd.DataFrame) -> bool:
    """Whether a cell's data names its relevant columns (data.kind other than default): the
    report then shows the identification metrics too (for data=default they repeat the
    key's)."""
    return "data.kind" in summary and bool((summary["data.kind"] != "default").any())


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
    command = records.read_state(sweep_dir).get("command")
    return command if isinstance(command, str) and command else NOT_RECORDED


def package_versions() -> dict[str, str]:
    """Installed versions, read from package metadata (importing TensorFlow takes seconds)."""
    out = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    source = source_line()  # run from a checkout: its commit, and whether it was dirty
    if source:
        out["attnlab"] += f" ({source})"
    return out


def write_report(sweep_dir: Path, command: str | None = None) -> pd.DataFrame:
    """Write report.csv, summary.csv, figures/ and report.md into sweep_dir; return the report.

    command: the command line that ran the sweep, for report.md; None reads the one stored in
    the sweep dir's .sweep.json, if any.
    """
    figures_dir = sweep_dir / records.FIGURES_DIR
    if figures_dir.is_symlink() or (figures_dir.exists() and not figures_dir.is_dir()):
        raise records.RecordError(
            f"{figures_dir} is not a directory of the sweep: not written through"
        )
    # The old report goes first, so a write that fails or is stopped half way leaves an
    # incomplete report, never an old file beside new ones; a Ctrl-C waits until all of
    # the old files are gone (else an old report.md could outlive its report.csv).
    with signals_held():
        for name in records.REPORT_FILES:
            path = sweep_dir / name
            if path.is_dir() and not path.is_symlink():
                raise records.RecordError(f"{path} is a directory, not a report file")
            path.unlink(missing_ok=True)
    report = collect_runs(sweep_dir)
    summary = summarize(report)
    summary, adaptive_md = adaptive_summary(sweep_dir, report, summary)
    comparisons, note = sweep_comparisons(sweep_dir, report)
    stated, disagree = sweep_claims(sweep_dir)
    rule, looks = adaptive_interval(sweep_dir)  # "" for a fixed-seed sweep
    intervals: Intervals = "looks" if rule == "looks" else "sequence" if rule else "fixed"
    judged = judge_claims(report, stated, intervals, len(looks))
    write_csv(sweep_dir / "report.csv", report)
    write_csv(sweep_dir / "summary.csv", summary)
    if not comparisons.empty:
        write_csv(sweep_dir / COMPARISONS_CSV, comparisons)
    if stated:
        write_csv(sweep_dir / CLAIMS_CSV, judged)
    figures = write_figures(sweep_dir, report, summary)
    figures += write_difference_figures(sweep_dir, comparisons)
    boundary_figures, boundary_md = write_boundary_outputs(sweep_dir)
    figures += boundary_figures
    made = Provenance(
        command=command or sweep_command(sweep_dir),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        versions=package_versions(),
        figures=figures,
        seeds=seed_notes(report),
    )
    claims_md = claims_section(judged, disagree, rule, len(looks)) if stated else []
    body = markdown(summary, report, made, claims_md) + adaptive_md + boundary_md
    write_text(sweep_dir / "report.md", body + comparisons_section(comparisons, note))
    return report


def adaptive_summary(
    sweep_dir: Path, report: pd.DataFrame, summary: pd.DataFrame
) -> tuple[pd.DataFrame, str]:
    """For a sweep run with hydra.sweeper.adaptive (its .sweep.json says so): summary.csv's
    `<metric>_cs_low` / `<metric>_cs_high`, the interval of each judged metric under the
    sweep's rule (`adaptive_interval`: the confidence sequence over the cell's seeds in the
    order they were taken, or the fixed-n interval at 1 - alpha/K), both valid however the
    rounds stopped, `adaptive_interval` naming the rule, and report.md's "Adaptive seeds"
    section. Any other sweep: unchanged, no section."""
    state = records.read_state(sweep_dir).get("adaptive")
    if not isinstance(state, dict) or summary.empty:
        return summary, ""
    rule: dict[str, Any] = _object(state.get("rule"))
    cells: dict[str, Any] = _object(state.get("cells"))
    metrics = adaptive_metrics(rule, state.get("metrics"))
    interval, looks = adaptive_interval(sweep_dir)
    summary = summary.copy()
    for metric in metrics:
        lows, highs = [], []
        for job in summary["job"]:
            values = adaptive_values(report, str(job), metric, cells.get(job))
            low, high = adaptive_bounds(metric, values, interval, len(looks))
            usable = np.isfinite(values).any()
            lows.append(low if usable else math.nan)
            highs.append(high if usable else math.nan)
        summary[f"{metric}_cs_low"], summary[f"{metric}_cs_high"] = lows, highs
    if metrics:
        summary["adaptive_interval"] = interval
    md = adaptive_markdown(summary, report, state, rule, cells, metrics, interval, looks)
    return summary, md


def adaptive_interval(sweep_dir: Path) -> tuple[str, list[int]]:
    """The interval rule an adaptive sweep ran with ("betting" or "looks"; "betting" for a
    .sweep.json written before the choice existed) and the seed counts a cell could stop
    at; ("", []) for a sweep without adaptive seeds."""
    state = records.read_state(sweep_dir).get("adaptive")
    if not isinstance(state, dict):
        return "", []
    rule = _object(state.get("rule")).get("interval")
    looks = state.get("looks")
    counts = [int(n) for n in looks] if isinstance(looks, list) else []
    if rule != "looks":
        return "betting", counts
    if not counts:  # no list: every count up to the cap (more looks: a wider, safe interval)
        counts = list(range(1, int(_object(state.get("rule")).get("max_seeds") or 40) + 1))
    return "looks", counts


def adaptive_bounds(
    metric: str, values: np.ndarray, interval: str, looks: int
) -> tuple[float, float]:
    """A cell's interval of metric under the sweep's rule, from its values in seed order."""
    from attnlab.engine.claims import fixed_interval
    from attnlab.engine.sequential import confidence_sequence, look_level

    bounds = (0.0, 1.0) if metric == "focus_rate" else metric_bounds(metric)
    if interval == "looks":
        finite = values[np.isfinite(values)]
        low, high, _ = fixed_interval(metric, finite, None, look_level(LEVEL, looks))
        return low, high
    return confidence_sequence(np.clip(values, *bounds), bounds, LEVEL)


def adaptive_metrics(rule: dict[str, Any], judged: Any) -> list[str]:
    """The metrics an adaptive sweep judged (.sweep.json's list: its half-width metric, then
    its claims'), those with a finite range only."""
    named = [rule["metric"]] if isinstance(rule.get("metric"), str) else []
    named += [str(m) for m in judged] if isinstance(judged, list) else []
    return [
        m
        for m in dict.fromkeys(named)
        if m == "focus_rate" or (m in SUMMARY_METRICS and math.isfinite(sum(metric_bounds(m))))
    ]


def adaptive_values(report: pd.DataFrame, job: str, metric: str, cell_state: Any) -> np.ndarray:
    """A cell's usable per-seed values of metric in the order the rounds took the seeds
    (.sweep.json's list; seed order for any seed it does not list); NaN for an unusable seed."""
    rows = report[report["job"] == job]
    column = "attn_focused" if metric == "focus_rate" else metric
    by_seed = {
        int(r.seed): (_seed_value(r.value) if r.status in USABLE else math.nan)
        for r in rows.assign(value=rows[column]).itertuples()
        if isinstance(r.seed, int | float) and np.isfinite(r.seed)
    }
    listed = cell_state.get("seeds") if isinstance(cell_state, dict) else None
    order = [int(s) for s in listed if int(s) in by_seed] if isinstance(listed, list) else []
    order += sorted(s for s in by_seed if s not in order)
    return np.array([by_seed[s] for s in order], dtype=float)


def _object(value: Any) -> dict[str, Any]:
    """A JSON object of .sweep.json, or {} for anything else."""
    return value if isinstance(value, dict) else {}


def _seed_value(value: Any) -> float:
    """A report cell's number (a flag as 1/0), NaN for anything else (None, text)."""
    if isinstance(value, bool | np.bool_ | int | float | np.number):
        return float(value)
    return math.nan


def adaptive_markdown(
    summary: pd.DataFrame,
    report: pd.DataFrame,
    state: dict[str, Any],
    rule: dict[str, Any],
    cells: dict[str, Any],
    metrics: list[str],
    interval: str = "betting",
    looks: Sequence[int] = (),
) -> str:
    """report.md's "Adaptive seeds" section: the rule, the rounds, each cell's seeds, its
    intervals (named by the rule used) and why it stopped, and the cells at the cap."""
    from attnlab.engine.sequential import look_level

    targets = [f"`{t}`" for t in state.get("targets") or []] if state.get("targets") else []
    swept = [c for c in swept_columns(report) if c in summary and c != "seeds"] or ["job"]
    at_cap = [job for job, c in cells.items() if isinstance(c, dict) and c.get("at_cap")]
    lines = [
        "",
        "## Adaptive seeds",
        "",
        "- Rule: more seeds per cell until "
        + (", ".join(dict.fromkeys(targets)) or "its targets are met")
        + f"; {rule.get('step')} seeds a round, at most {rule.get('max_seeds')} a cell"
        + (", until every claim is decided" if rule.get("until") == "claims" else "")
        + f" ({state.get('rounds', '?')} round(s)).",
        "- Intervals here, and `<metric>_cs_low` / `<metric>_cs_high` in summary.csv, are "
        + _adaptive_interval_text(interval, looks)
        + " The t and Wilson intervals of the Cells table are fixed-n intervals at "
        f"{LEVEL:.0%}: they do not account for the stopping rule.",
        f"- Cells at the cap ({rule.get('max_seeds')} seeds, a target unmet): "
        + (", ".join(f"`{job}`" for job in sorted(at_cap)) or "none"),
        "",
    ]
    tag = "95% CS" if interval == "betting" else f"{look_level(LEVEL, len(looks)):.2%} t/Wilson"
    head = [*swept, "seeds", *[f"{m} [{tag}]" for m in metrics], "stopped because"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in summary.iterrows():
        standing = _object(cells.get(row["job"]))
        why = str(standing.get("reason", "")).replace("|", "/") or "–"
        shown = [str(row[c]) for c in swept] + [str(row["n_seeds"])]
        for metric in metrics:
            mean = row["focus_rate"] if metric == "focus_rate" else row[f"{metric}_mean"]
            low, high = row[f"{metric}_cs_low"], row[f"{metric}_cs_high"]
            shown.append(
                "–" if not np.isfinite(mean) else f"{mean:.3f} [{_fmt(low)}, {_fmt(high)}]"
            )
        lines.append("| " + " | ".join([*shown, why]) + " |")
    return "\n".join(lines) + "\n"


def _adaptive_interval_text(interval: str, looks: Sequence[int]) -> str:
    """How the Adaptive seeds section names the rule its intervals come from."""
    from attnlab.engine.sequential import look_level

    if interval == "betting":
        return (
            f"{LEVEL:.0%} confidence sequences (`interval=betting`; anytime-valid), which "
            "stay valid when the seed count depends on the results."
        )
    many = len(looks) > 12
    shown = f"{looks[0]}, ..., {looks[-1]}" if many else ", ".join(str(n) for n in looks)
    return (
        f"fixed-n intervals at each look (`interval=looks`): Student t of a mean, Wilson of "
        f"focus_rate, at {look_level(LEVEL, len(looks)):.4g} = 1 − {1 - LEVEL:.2f}/"
        f"{len(looks)} for the {len(looks)} seed counts a cell could stop at ({shown}); "
        f"by the union bound all of them hold the mean together with probability "
        f"≥ {LEVEL:.0%}, so the one a cell stopped at does whatever the stopping rule."
    )


def adaptive_sweep(sweep_dir: Path) -> bool:
    """Whether the sweep ran with hydra.sweeper.adaptive (its .sweep.json records the rule)."""
    return isinstance(records.read_state(sweep_dir).get("adaptive"), dict)


def write_boundary_outputs(sweep_dir: Path) -> tuple[list[tuple[str, str]], str]:
    """A boundary search's boundary.csv and figure, and report.md's Boundary section (none
    for a sweep without one: attnlab/runs/boundary.py)."""
    from attnlab.runs.boundary import write_boundary

    return write_boundary(sweep_dir)


CLAIMS_CSV = "claims.csv"


def sweep_claims(sweep_dir: Path) -> tuple[list[str], int]:
    """The claims the sweep's cells state (config `claims`): every cell of one sweep states
    the same list; where they disagree (a rerun with other claims reuses cells recorded
    with the old ones) the union, in order of first appearance, and how many distinct
    lists there were (1 when they agree, 0 when no cell states a claim)."""
    union: dict[str, None] = {}
    lists: set[tuple[str, ...]] = set()
    for record in records.read_cells(sweep_dir):
        stated = record.config.get("claims", [])
        texts = tuple(str(t) for t in stated) if isinstance(stated, list) else ()
        if record.config:
            lists.add(texts)
        union.update(dict.fromkeys(texts))
    return list(union), len(lists) if union else 0


def judge_claims(
    report: pd.DataFrame, stated: Sequence[str], intervals: Intervals = "fixed", looks: int = 1
) -> pd.DataFrame:
    """claims.csv's rows (attnlab.engine.claims) from report.csv's per-seed rows: a cell is
    a combination of the config columns (the seeds list aside), claims.csv names it by the
    swept ones, as summary.csv's columns."""
    from attnlab.engine.claims import evaluate_claims

    keys = [c for c in config_columns(report) if c != "seeds"]
    shown = [c for c in keys if report[c].nunique(dropna=True) > 1]
    return evaluate_claims(list(stated), report, keys, shown, intervals, looks=max(looks, 1))


def claims_section(
    judged: pd.DataFrame, lists: int, adaptive: str = "", looks: int = 0
) -> list[str]:
    """report.md's "Claims" lines: each claim with its verdict per cell, compactly;
    adaptive: the interval rule of an adaptive sweep ("betting" or "looks" over `looks`
    seed counts), "" for fixed seeds."""
    from attnlab.engine.claims import claim_summary

    paired = (
        "a comparison `METRIC of KEY=A OP B` is judged on the per-seed differences A − B "
        "over the seeds both cells ran. "
    )
    if adaptive == "betting":
        intervals = (
            "seeds may decide it). Intervals: this sweep chose its seed counts from the "
            "results (adaptive seeds), so every interval is a confidence sequence (betting, "
            "`interval=betting`), valid however the rounds stopped; " + paired
        )
    elif adaptive == "looks":
        intervals = (
            "seeds may decide it). Intervals: this sweep chose its seed counts from the "
            f"results (adaptive seeds, `interval=looks`), so each interval is the fixed one "
            f"(Student-t, Wilson of focus_rate; paired t, Newcombe for focus_rate) at a level "
            f"further corrected by Bonferroni over the {looks} seed counts a cell could stop "
            "at, valid however the rounds stopped; " + paired
        )
    else:
        intervals = (
            "seeds may decide it). Intervals: Student-t of a mean, Wilson of focus_rate; a "
            "comparison `METRIC of KEY=A OP B` is the mean per-seed difference A − B over the "
            "seeds both cells ran (paired t; Newcombe's paired interval for focus_rate). "
        )
    lines = [
        "## Claims",
        "",
        "The config's `claims`, each judged at every cell it applies to "
        f"([{CLAIMS_CSV}]({CLAIMS_CSV})): **holds** when its whole interval lies on the "
        "claim's side, **fails** when wholly on the other side, else **unresolved** (more "
        + intervals
        + f"{LEVEL:.0%} per claim: a claim judged at k cells has each interval at "
        f"1 − {1 - LEVEL:.2f}/k (Bonferroni), so all of its verdicts are right together "
        f"with probability ≥ {LEVEL:.0%}; different claims are not corrected against each "
        "other.",
        "",
    ]
    if lists > 1:
        lines += [
            f"The cells state {lists} different lists of claims (cells reused from a run "
            "with other claims keep theirs): the union is judged.",
            "",
        ]
    keys = [c for c in judged.columns if c not in ("claim", "metric") and c not in _CLAIM_NUMBERS]
    for text, rows in judged.groupby("claim", sort=False):
        if len(rows) == 1:
            lines.append(f"- `{text}`: {_claim_row(rows.iloc[0], keys, alone=True)}")
            continue
        lines.append(f"- `{text}`: {claim_summary(rows)}")
        lines += [f"  - {_claim_row(row, keys)}" for _, row in rows.iterrows()]
    return [*lines, ""]


_CLAIM_NUMBERS = (
    "estimate",
    "ci_low",
    "ci_high",
    "n_seeds",
    "verdict",
    "interval",
    "level",
    "correction",
    "paired",
    "n_unpaired",
    "note",
)


def _claim_row(row: pd.Series, keys: list[str], alone: bool = False) -> str:
    """One row: its cell (unless alone), **verdict**, estimate [interval], seeds, note."""
    cell = ", ".join(f"{k}={row[k]}" for k in keys if not _blank(row[k]))
    comparison = row["paired"] == "by seed"
    numbers = ""
    if np.isfinite(row["estimate"]):
        sign = "+" if comparison else ""
        numbers = f" {row['estimate']:{sign}.3f} [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
        what = "pairs" if comparison else "seeds"
        numbers += f" ({row['n_seeds']} {what})"
    note = f"; {row['note']}" if isinstance(row["note"], str) and row["note"] else ""
    head = "" if alone or not cell else f"{cell}: "
    tail = f" at {cell}" if alone and cell else ""
    return f"{head}**{row['verdict']}**{numbers}{tail}{note}"


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


COMPARISONS_CSV = "comparisons.csv"
# The metrics whose differences get a figure per swept axis (every metric is in the CSV).
DIFFERENCE_FIGURE_METRICS = ("val_accuracy", "focus_rate")


def sweep_comparisons(sweep_dir: Path, report: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """comparisons.csv's rows (attnlab.runs.comparisons), with the sweep's launch order and
    baselines from its .sweep.json; a stored baseline that no longer fits (say, its cells
    all failed) falls back to the first value, and the note says so."""
    from attnlab.engine.config import ConfigError
    from attnlab.runs import comparisons as compare

    state = records.read_state(sweep_dir)
    order = compare.sweep_order(report, state)
    try:
        return compare.compare_cells(report, order, compare.sweep_baselines(state)), ""
    except ConfigError as err:
        note = f"The sweep's baseline was not used ({err}); each axis' first value is."
        return compare.compare_cells(report, order), note


def comparisons_section(comparisons: pd.DataFrame, note: str) -> str:
    """report.md's "Comparisons" section; nothing for a sweep without a swept axis."""
    from attnlab.runs.comparisons import comparisons_markdown

    if comparisons.empty:
        return ""
    return "\n" + comparisons_markdown(comparisons) + (f"\n{note}\n" if note else "")


def write_difference_figures(sweep_dir: Path, comparisons: pd.DataFrame) -> list[tuple[str, str]]:
    """figures/difference_<axis>_<metric>.png: each value minus its axis' baseline with its
    interval, zero marked; the numbers are comparisons.csv's."""
    from attnlab.runs.comparisons import difference_figure, difference_plot_data

    written = []
    for axis in pd.unique(comparisons["axis"]) if not comparisons.empty else []:
        for metric in DIFFERENCE_FIGURE_METRICS:
            data = difference_plot_data(comparisons, str(axis), metric)
            if data.empty:
                continue
            safe_axis = re.sub(r"[^A-Za-z0-9._-]+", "_", str(axis))  # keys are dotted names
            name = f"difference_{safe_axis}_{metric}.png"
            title = f"{metric}: each {axis} minus its baseline"
            write_figure(sweep_dir / records.FIGURES_DIR / name, difference_figure(data, title))
            what = f"{metric} of each {axis} minus its baseline, {LEVEL:.0%} interval"
            written.append((f"{records.FIGURES_DIR}/{name}", what))
    return written


def figure_axes(report: pd.DataFrame) -> list[str]:
    """The swept axes figures show, most values first; the seeds list is not an axis."""
    return [c for c in swept_columns(report) if c != "seeds"]


def write_figures(
    sweep_dir: Path, report: pd.DataFrame, summary: pd.DataFrame
) -> list[tuple[str, str]]:
    """Heatmaps, metric lines, learning curves and the attention grid; every swept axis is
    on an axis, a line colour or a panel. A figure with nothing to show is skipped. Returns
    (path relative to sweep_dir, what it shows) of each figure written."""
    from attnlab.runs import plots

    written: list[tuple[str, str]] = []

    def save(name: str, figure: Any, what: str) -> None:
        write_figure(sweep_dir / records.FIGURES_DIR / name, figure)
        written.append((f"{records.FIGURES_DIR}/{name}", what))

    axes = figure_axes(report)
    placed = placeable(summary, axes)
    if axes and (placed["n_seeds"] > 0).any():
        for name, figure, what in summary_figures(placed, axes):
            save(name, figure, what)
    cells_read = finished_records(sweep_dir)
    histories = cell_histories(sweep_dir, report, summary, cells_read)
    if histories:
        for name, figure, what in learning_curve_figures(histories, axes):
            save(name, figure, what)
    stale_grid_pages(sweep_dir / records.FIGURES_DIR)
    cells = attention_cells(sweep_dir, placed, axes, cells_read)
    if cells:
        combos = placed[axes[1:]].drop_duplicates() if len(axes) > 1 else placed.iloc[:1]
        ncols = len(combos) if len(combos) <= 6 else 4
        what = "every seed's attention per column, each cell a panel (one colour scale)"
        sequence = "model.variant" in placed and (placed["model.variant"] == "lstm").all()
        pages = plots.attention_grid_pages(
            cells, ncols, "time step" if sequence else "input column"
        )
        for number, page in enumerate(pages, 1):
            # One page keeps the name it always had; a grid of many cells is split into
            # attention_grid_1.png, _2, ... (plots.grid_pages: whole rows, one colour scale).
            name = "attention_grid.png" if len(pages) == 1 else f"attention_grid_{number}.png"
            of = f" (page {number} of {len(pages)})" if len(pages) > 1 else ""
            save(name, page, what + of)
    return written


def stale_grid_pages(figures_dir: Path) -> None:
    """Remove the attention grid's pages of an earlier report: a grid that now fits one
    page (or more pages than before) must not leave old pages beside the new ones."""
    import re

    if not figures_dir.is_dir():
        return
    for path in figures_dir.iterdir():
        if re.fullmatch(r"attention_grid(_\d+)?\.png", path.name):
            path.unlink(missing_ok=True)


def placeable(summary: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """The summary rows that have a place on every figure axis. A cell whose config is
    unknown (a broken record) has none, nor has a cell without results whose value is
    text on a numeric axis (an unresolvable `${...}`, kept as typed). report.md lists
    both among the failed cells."""
    placed = summary.dropna(subset=axes) if axes else summary
    for axis in axes:
        numeric = pd.to_numeric(placed[axis], errors="coerce").notna()
        has_results = placed["n_seeds"] > 0  # of the rows still placed
        if numeric[has_results].all():
            placed = placed[numeric | has_results]
    return placed


def summary_figures(summary: pd.DataFrame, axes: list[str]) -> list[tuple[str, Any, str]]:
    """Heatmaps of val_accuracy and focus_rate (cols: the first axis, rows: the second,
    panels: the rest) and metric lines (x: classes or the first axis, lines: the next one,
    panels: the rest), all drawn from the summary's means and intervals."""
    from attnlab.runs import plots
    from attnlab.runs.plots import short

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
    metrics = ["val_accuracy", "attn_key_weight"]
    if has_relevant_columns(summary):
        metrics += IDENTIFICATION
    for metric in metrics:
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
    from attnlab.runs import plots
    from attnlab.runs.plots import short

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
    sweep_dir: Path,
    report: pd.DataFrame,
    summary: pd.DataFrame,
    cells: dict[str, records.CellRecord] | None = None,
) -> list[tuple[pd.Series, pd.DataFrame]]:
    """(summary row, history.csv rows of its usable seeds) of each cell that has a
    readable history.csv; cells without one (older sweeps) are skipped."""
    out = []
    cells = cells if cells is not None else finished_records(sweep_dir)
    for _, row in summary.iterrows():
        history = cell_csv(sweep_dir, row, records.HISTORY_CSV, cells)
        if history is None:
            continue
        runs = report[(report["job"] == row["job"]) & report["status"].isin(USABLE)]
        history = history[history["seed"].isin(runs["seed"])]
        if len(history) and set(HISTORY_METRICS) <= set(history.columns):
            out.append((row, history))
    return out


def cell_csv(
    sweep_dir: Path,
    row: pd.Series,
    name: str,
    cells: dict[str, records.CellRecord] | None = None,
) -> pd.DataFrame | None:
    """A cell's CSV (history.csv, attention.csv) read through the strict reader, every
    recorded seed's rows merged (seed_csv); None for a cell without results, or whose file
    is missing or not what attnlab writes (the figure skips it; collect_runs puts the
    reason in the cell's rows). cells: the sweep's finished records by name
    (finished_records), read here if not given."""
    if row["n_seeds"] == 0:
        return None
    record = (cells if cells is not None else finished_records(sweep_dir)).get(str(row["job"]))
    if record is None:
        return read_cell_csv(sweep_dir / str(row["job"]), sweep_dir, name)[0]
    return seed_csv(sweep_dir, record, name)[0]


def finished_records(sweep_dir: Path) -> dict[str, records.CellRecord]:
    """The sweep's finished cells (records.read_cells: one per cell) by name."""
    return {r.name: r for r in records.read_cells(sweep_dir) if r.finished}


def seed_csv(
    sweep_dir: Path, record: records.CellRecord, name: str
) -> tuple[pd.DataFrame | None, str]:
    """A finished cell's CSV with the rows of every recorded seed, each from the dir that
    holds that seed's record (the cell dir, seeds/<seed>/, or another dir of the cell);
    (None, "") if none has one (older sweeps), (None, why) if one is not what attnlab
    writes."""
    by_place: dict[Path, list[int]] = {}
    for seed, place in record.seed_sources.items():
        by_place.setdefault(place, []).append(seed)
    frames = []
    for place, seeds in sorted(by_place.items()):
        frame, why = read_cell_csv(place, sweep_dir, name)
        if why:
            where = place.relative_to(sweep_dir) if place.is_relative_to(sweep_dir) else place
            prefix = "" if place == sweep_dir / record.name else f"{where}/"
            return None, f"{prefix}{why}"
        if frame is not None:
            frames.append(frame[frame["seed"].isin(seeds)])
    if not frames:
        return None, ""
    merged = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return merged.sort_values(list(CSV_COLUMNS[name][1]), kind="stable", ignore_index=True), ""


# The columns each of a cell's CSVs must hold (numbers), and the ones that identify a row.
CSV_COLUMNS = {
    records.ATTENTION_CSV: (("seed", "column", "weight"), ("seed", "column")),
    records.HISTORY_CSV: (("seed", "epoch", *HISTORY_METRICS), ("seed", "epoch")),
}


def read_cell_csv(cell_dir: Path, sweep_dir: Path, name: str) -> tuple[pd.DataFrame | None, str]:
    """(the CSV, "") if it is what attnlab writes; (None, "") if there is none (sweeps of
    older versions); (None, why) otherwise: the strict reader's rule for every file."""
    path = cell_dir / name
    try:
        if not path.exists() and not path.is_symlink():
            return None, ""
        frame = pd.read_csv(io.BytesIO(records.read_bytes(path, sweep_dir, records.MAX_CSV_BYTES)))
    except records.RecordError as err:
        return None, str(err)
    except OSError as err:
        return None, f"{name} cannot be read ({err.strerror})"
    except (ValueError, UnicodeDecodeError) as err:  # pandas' ParserError is a ValueError
        return None, f"{name} is not a CSV ({records.one_line(str(err), 120)})"
    needed, key = CSV_COLUMNS[name]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        return None, f"{name} has no column {', '.join(missing)}"
    odd = [c for c in needed if not pd.api.types.is_numeric_dtype(frame[c])]
    if odd:
        return None, f"{name}: column {odd[0]} holds something other than numbers"
    if frame.duplicated(list(key)).any():
        return None, f"{name} repeats a ({', '.join(key)}) row"
    return frame, ""


def csv_problems(sweep_dir: Path, record: records.CellRecord) -> str:
    """What is wrong with a finished cell's CSVs, or "" (every one is as attnlab writes)."""
    whys = [seed_csv(sweep_dir, record, name)[1] for name in CSV_COLUMNS]
    return "; ".join(why for why in whys if why)


def attention_cells(
    sweep_dir: Path,
    summary: pd.DataFrame,
    swept: list[str],
    records_read: dict[str, records.CellRecord] | None = None,
) -> list[tuple[str, pd.DataFrame, int]]:
    """(title, attention.csv frame, key column) for each cell that has an attention.csv,
    ordered by the swept axes (the first varies slowest); titles name every swept value."""
    cells = []
    ordered = summary.sort_values(swept, kind="stable") if swept else summary
    records_read = records_read if records_read is not None else finished_records(sweep_dir)
    for _, row in ordered.iterrows():
        frame = cell_csv(sweep_dir, row, records.ATTENTION_CSV, records_read)
        if frame is None:
            continue
        shown = row.get("seeds")  # the seeds the report uses (collect_runs)
        if isinstance(shown, str) and shown.startswith("["):
            frame = frame[frame["seed"].isin(json.loads(shown))]
        title = " ".join(f"{c.split('.')[-1]}={row[c]}" for c in swept) or str(row["job"])
        cells.append((title, frame, key_of(row, frame)))
    return cells


def key_of(row: pd.Series, frame: pd.DataFrame) -> int:
    """The column a cell's figure frames: data.attention_column, or for data with named
    relevant columns the first of them (attnlab.engine.data.key_column)."""
    key = int(row.get("data.attention_column", 1))
    relevant = row.get("data.relevant")
    if row.get("data.kind", "default") == "default" or not isinstance(relevant, str):
        return key
    names = json.loads(relevant) if relevant.startswith("[") else []
    if not names or "column_name" not in frame:
        return key
    match = frame.loc[frame["column_name"] == names[0], "column"]
    return int(match.iloc[0]) if len(match) else key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m attnlab.report",
        description="Rebuild report.csv, summary.csv, report.md and figures/ of a sweep dir.",
    )
    parser.add_argument("sweep_dir", type=Path)
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(
            f"attnlab.report: error: sweep_dir={args.sweep_dir} is not a directory",
            file=sys.stderr,
        )
        return 2
    if not records.cell_dirs(args.sweep_dir):
        print(
            f"attnlab.report: error: sweep_dir={args.sweep_dir} holds no cell dirs "
            "(sub-directories with cell.json, metrics.json or .hydra/)",
            file=sys.stderr,
        )
        return 2
    try:
        # The sweep running in the dir owns its files: rebuild the report once it is done.
        lock = records.lock_sweep_dir(
            args.sweep_dir, records.command_line("python -m attnlab.report")
        )
        with lock:
            report = write_report(args.sweep_dir)
    except KeyboardInterrupt:
        print(
            f"attnlab.report: stopped by SIGINT; the report in {args.sweep_dir} is incomplete "
            "(its old files were removed first): run the command again",
            file=sys.stderr,
        )
        return 130
    except (OSError, records.RecordError) as err:
        print(f"attnlab.report: error: {_os_error_line(err)}", file=sys.stderr)
        return 1
    counts = report.drop_duplicates("job")["status"].value_counts().to_dict()
    jobs, md = report["job"].nunique(), args.sweep_dir / "report.md"
    print(f"{jobs} jobs, {len(report)} rows, job status {counts}: {md}")
    return 0


def _os_error_line(err: Exception) -> str:
    return os_error_text(err) if isinstance(err, OSError) else str(err)


if __name__ == "__main__":
    sys.exit(main())
