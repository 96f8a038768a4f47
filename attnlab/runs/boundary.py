"""A boundary search's outputs, rebuilt from its cells and .sweep.json's state["boundary"]:
boundary.csv, figures/boundary_<metric>.png and report.md's "Boundary" section.

The search (attnlab.sweep.boundary_search) records which cells it probed for each group and
which of their seeds it asked for; the numbers come from the cells' own records, read here
the same way the search reads them (`probe_values`), and the curve is fitted again with
attnlab.engine.boundary, so the report never trusts a number stored by the search: a rebuilt
report (`python -m attnlab.report DIR`) gives the same table as the sweep's own.

A metric's mean with a range other than [0, 1] (key_ablation_drop's [-1, 1]) is fitted on
the range mapped onto [0, 1] (`to_unit`); everything shown is back in the metric's units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter
from scipy import special

from attnlab.engine.boundary import (
    BoundaryError,
    BoundaryEstimate,
    BoundaryRule,
    Probe,
    boundary_row,
    fit_boundary,
)
from attnlab.engine.metrics import metric_bounds
from attnlab.engine.stats import LEVEL, t_interval, wilson_interval
from attnlab.runs import records

RATE = "focus_rate"  # the share of seeds whose attention focused: attn_focused as 0/1
BOUNDARY_CSV = "boundary.csv"
STATE_KEY = "boundary"
USABLE = ("completed", "cached")
COLUMNS = (
    "metric",
    "level",
    "boundary",
    "boundary_ci_low",
    "boundary_ci_high",
    "cells_probed",
    "models_trained",
)


def metric_range(metric: str) -> tuple[float, float]:
    """The range a metric's per-seed values lie in (a rate's 0/1 values: [0, 1])."""
    return (0.0, 1.0) if metric == RATE else metric_bounds(metric)


def to_unit(value: float, metric: str) -> float:
    """A value of the metric mapped onto [0, 1], where the fit works."""
    low, high = metric_range(metric)
    return (value - low) / (high - low)


def from_unit(value: Any, metric: str) -> Any:
    """Back from [0, 1] to the metric's units (arrays too)."""
    low, high = metric_range(metric)
    return low + np.asarray(value, dtype=float) * (high - low)


def seed_values(record: records.CellRecord, seeds: Sequence[int], metric: str) -> list[float]:
    """The metric's values of the asked seeds that finished usable (a diverged or missing
    seed is left out, as the summary leaves it out); a rate's seeds give 0.0 or 1.0."""
    if not record.finished:
        return []
    runs = {run.get("seed"): run for run in record.runs}
    name = "attn_focused" if metric == RATE else metric
    values = []
    for seed in seeds:
        run = runs.get(seed)
        if run is None or run.get("status") not in USABLE:
            continue
        value = run.get(name)
        if isinstance(value, bool | int | float) and math.isfinite(float(value)):
            values.append(float(value))
    return values


def probe_values(sweep_dir: Path, cell: str, seeds: Sequence[int], metric: str) -> list[float]:
    """A probe's per-seed values, read from its cell dir's record."""
    return seed_values(records.read_cell(sweep_dir / cell, sweep_dir), seeds, metric)


def make_probe(x: int, values: Sequence[float], metric: str) -> Probe:
    """The engine's Probe: a rate's count of focused seeds, or a mean's values on [0, 1]."""
    if metric == RATE:
        return Probe(int(x), float(sum(values)), len(values))
    unit = np.clip([to_unit(v, metric) for v in values], 0.0, 1.0)
    return Probe.from_values(int(x), unit)


def rule_of(doc: dict[str, Any]) -> BoundaryRule:
    """The engine's rule as the search stored it (its level on [0, 1])."""
    known = {f.name for f in fields(BoundaryRule)}
    return BoundaryRule(**{k: v for k, v in doc["rule"].items() if k in known})


@dataclass
class ProbePoint:
    """One probe as the figure and report show it: its value with a 95% interval."""

    x: int
    n: int
    value: float
    ci_low: float
    ci_high: float


@dataclass
class GroupResult:
    """One group's search: its keys, probes, the fit (None with fewer than 3 usable probes)
    and how the search ended ("" while it had not ended)."""

    keys: dict[str, Any]
    points: list[ProbePoint] = field(default_factory=list)
    estimate: BoundaryEstimate | None = None
    stop: str = ""
    models: int = 0

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.keys.items()) or "all cells"


def point_of(x: int, values: list[float], metric: str) -> ProbePoint:
    n = len(values)
    if metric == RATE:
        low, high = wilson_interval(int(sum(values)), n) if n else (math.nan, math.nan)
        return ProbePoint(x, n, sum(values) / n if n else math.nan, low, high)
    array = np.asarray(values, dtype=float)
    mean = float(array.mean()) if n else math.nan
    low, high = t_interval(array, LEVEL, metric_range(metric)) if n > 1 else (math.nan, math.nan)
    return ProbePoint(x, n, mean, low, high)


def group_results(sweep_dir: Path, doc: dict[str, Any]) -> list[GroupResult]:
    """Every group of the recorded search, fitted from its probes' records."""
    rule, metric = rule_of(doc), str(doc["metric"])
    out = []
    for group in doc.get("groups", []):
        result = GroupResult(dict(group.get("keys", {})), stop=str(group.get("stop") or ""))
        probes = []
        for probe in group.get("probes", []):
            values = probe_values(sweep_dir, probe["cell"], probe["seeds"], metric)
            result.models += len(probe["seeds"])
            result.points.append(point_of(int(probe["x"]), values, metric))
            if values:
                probes.append(make_probe(int(probe["x"]), values, metric))
        result.points.sort(key=lambda p: p.x)
        try:
            result.estimate = fit_boundary(probes, rule)
        except BoundaryError:
            result.estimate = None  # too few probes yet: a search stopped in its opening
        out.append(result)
    return out


def boundary_table(results: list[GroupResult], doc: dict[str, Any]) -> pd.DataFrame:
    """boundary.csv: one row per group, its keys first, then COLUMNS. cells_probed counts
    the axis values probed; models_trained the seeds the search asked of its probes."""
    rule, metric, level = rule_of(doc), str(doc["metric"]), float(doc["level"])
    rows = []
    for result in results:
        if result.estimate is not None:
            row = boundary_row(result.keys, metric, rule, result.estimate)
        else:
            row = {**result.keys, "metric": metric, "boundary": math.nan}
            row |= {"boundary_ci_low": math.nan, "boundary_ci_high": math.nan}
        row["level"] = level  # in the metric's units (the rule holds it on [0, 1])
        row["cells_probed"] = len(result.points)
        row["models_trained"] = result.models
        rows.append(row)
    keys = list(dict.fromkeys(k for r in results for k in r.keys))
    return pd.DataFrame(rows, columns=[*keys, *COLUMNS])


@dataclass
class BoundaryPanel:
    """The numbers one panel of the boundary figure draws (pure data)."""

    title: str
    points: list[ProbePoint]
    curve_x: np.ndarray
    curve_y: np.ndarray  # empty when there is no fit
    boundary: float
    ci_low: float
    ci_high: float


def boundary_plot_data(results: list[GroupResult], doc: dict[str, Any]) -> list[BoundaryPanel]:
    """Each group's probes with their intervals, the fitted curve over [low, high] (in the
    metric's units) and the boundary with its interval (NaN where open or not crossed)."""
    rule, metric = rule_of(doc), str(doc["metric"])
    xs = np.linspace(rule.low, rule.high, 200)
    panels = []
    for result in results:
        est = result.estimate
        curve = np.array([])
        if est is not None and math.isfinite(est.boundary):
            eta = special.logit(rule.level) + est.slope * (rule.to_t(xs) - rule.to_t(est.boundary))
            curve = from_unit(special.expit(eta), metric)
        nan = math.nan
        bounds = (est.boundary, est.ci_low, est.ci_high) if est is not None else (nan, nan, nan)
        panels.append(BoundaryPanel(result.label, result.points, xs, curve, *bounds))
    return panels


def boundary_figure(
    panels: list[BoundaryPanel], axis: str, metric: str, level: float, log_axis: bool
) -> Figure:
    """One panel per group: probes (dots, 95% bars, seeds beside each), the fitted curve,
    the level, the boundary (solid line) and its 95% interval (shaded; an open end runs to
    the panel's edge)."""
    from attnlab.runs.plots import SMALL, TITLE, _grid, short

    ncols = min(len(panels), 2)
    fig, axes = _grid(len(panels), ncols, 4.6, 3.2, sharey=True)
    for ax, panel in zip(axes, panels, strict=False):
        xs = [p.x for p in panel.points]
        ys = [p.value for p in panel.points]
        err = [
            [max(p.value - p.ci_low, 0) if math.isfinite(p.ci_low) else 0 for p in panel.points],
            [max(p.ci_high - p.value, 0) if math.isfinite(p.ci_high) else 0 for p in panel.points],
        ]
        ax.errorbar(xs, ys, yerr=err, fmt="o", color="#1f77b4", capsize=3, label="probe, 95%")
        for p in panel.points:
            ax.annotate(
                f"{p.n}",
                (p.x, p.value),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=SMALL,
                color="#555555",
            )
        if len(panel.curve_y):
            ax.plot(panel.curve_x, panel.curve_y, color="#1f77b4", lw=1.2, label="fitted")
        ax.axhline(level, color="#7f7f7f", lw=0.8, ls=":", label=f"level {level:g}")
        left, right = panel.curve_x[0], panel.curve_x[-1]
        if any(math.isfinite(v) for v in (panel.ci_low, panel.ci_high)):
            lo = panel.ci_low if math.isfinite(panel.ci_low) else left
            hi = panel.ci_high if math.isfinite(panel.ci_high) else right
            ax.axvspan(lo, hi, color="#d62728", alpha=0.15, label="boundary, 95%")
        if math.isfinite(panel.boundary):
            ax.axvline(panel.boundary, color="#d62728", lw=1.4, label="boundary")
            shown = f"{panel.boundary:.1f}"
        else:
            shown = "not in range"
        interval = f"[{_fmt(panel.ci_low)}, {_fmt(panel.ci_high)}]"
        ax.set_title(f"{panel.title}\nboundary {shown}, 95% {interval}", fontsize=TITLE)
        if log_axis:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator(log_ticks(left, right)))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(left * (0.9 if log_axis else 1) - (0 if log_axis else 1), right * 1.05)
        ax.set_xlabel(short(axis), fontsize=SMALL)
        ax.set_ylabel(metric, fontsize=SMALL)
        ax.tick_params(labelsize=SMALL)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=5, fontsize=SMALL)
    fig.suptitle(
        f"where {metric} crosses {level:g} along {short(axis)}: probes (seeds beside each), "
        "fitted curve, boundary with its 95% interval",
        fontsize=TITLE,
    )
    return fig


def log_ticks(low: float, high: float) -> list[float]:
    """Ticks of a log axis at the range's ends and the powers of two between them."""
    powers = [2.0**k for k in range(0, 31) if low < 2.0**k < high]
    inner = [p for p in powers if p / low > 1.3 and high / p > 1.3]  # no crowding at the ends
    return [low, *inner, high]


def _fmt(value: float) -> str:
    return "open" if not math.isfinite(value) else f"{value:.1f}"


def boundary_markdown(table: pd.DataFrame, results: list[GroupResult], doc: dict[str, Any]) -> str:
    """report.md's "Boundary" section: the rule, one line per group, how each search ended."""
    rule, metric, axis = rule_of(doc), str(doc["metric"]), str(doc["axis"])
    lines = [
        "",
        "## Boundary",
        "",
        f"Where `{metric}` crosses {float(doc['level']):g} along `{axis}` in [{rule.low}, "
        f"{rule.high}], per group: the crossing of a logistic curve in "
        f"{'log ' if rule.log_axis else ''}{axis} fitted to every probe, with its 95% "
        "profile-likelihood interval (Pocock's cut for repeated looks, so it holds at "
        "whichever round the search stopped; docs/boundary.md). The search stops once the "
        f"interval is narrower than {rule.width:g}, or at {rule.max_models} models. "
        f"Every probe is a cell of the tables above; `{BOUNDARY_CSV}` has these rows.",
        "",
        "| group | boundary | 95% interval | cells probed | models | stopped |",
        "|---|---|---|---|---|---|",
    ]
    for (_, row), result in zip(table.iterrows(), results, strict=True):
        interval = f"[{_fmt(row['boundary_ci_low'])}, {_fmt(row['boundary_ci_high'])}]"
        if result.estimate is None:
            interval = "(fewer than 3 probes)"
        boundary = _fmt(row["boundary"]) if math.isfinite(row["boundary"]) else "not in range"
        stop = result.stop or "not finished (rerun the command to resume)"
        lines.append(
            f"| {result.label} | {boundary} | {interval} | {row['cells_probed']} | "
            f"{row['models_trained']} | {stop} |"
        )
    return "\n".join(lines) + "\n"


def write_boundary(sweep_dir: Path) -> tuple[list[tuple[str, str]], str]:
    """boundary.csv and figures/boundary_<metric>.png of a sweep dir whose .sweep.json holds
    a boundary search; return the figure's (path, what) and the report.md section. Nothing
    (and "") for a sweep without one."""
    from attnlab.runs.files import write_csv, write_figure

    doc = records.read_state(sweep_dir).get(STATE_KEY)
    if not isinstance(doc, dict) or not doc.get("groups"):
        return [], ""
    results = group_results(sweep_dir, doc)
    table = boundary_table(results, doc)
    write_csv(sweep_dir / BOUNDARY_CSV, table)
    metric, rule = str(doc["metric"]), rule_of(doc)
    name = f"{records.FIGURES_DIR}/boundary_{metric}.png"
    panels = boundary_plot_data(results, doc)
    figure = boundary_figure(panels, str(doc["axis"]), metric, float(doc["level"]), rule.log_axis)
    write_figure(sweep_dir / name, figure)
    what = f"where {metric} crosses {float(doc['level']):g} along {doc['axis']}, per group"
    return [(name, what)], boundary_markdown(table, results, doc)
