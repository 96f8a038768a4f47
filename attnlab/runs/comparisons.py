"""comparisons.csv: each swept value against its axis' baseline, per metric, seed-paired.

For every swept axis with >= 2 values, each non-baseline value is compared with the baseline
value within each combination of the other swept axes (so `model.attn_layers=2` vs `=1` is
tested separately at `data.classes=2` and at `data.classes=20`). Pure over DataFrames: the
report's tidy table in, one row per (axis, other axes' values, value, metric) out.

Pairing: seed s draws the same streams (data noise, initialisation, shuffles) in every cell,
so two cells' runs at the same seed form a pair. Rows are paired over the seeds both cells
have whenever there are >= 2 of them, for every axis; Welch's unpaired test only when fewer
than 2 seeds are shared. An axis that changes the data (any `data.*` key, or `model.variant`
to or from the sequence model) still pairs: the pairs remain independent across seeds, which
is all the paired test needs, while Welch would wrongly assume the two cells independent;
there the pairing may just not reduce the variance. The `same_data` column says which.

Multiplicity: Holm's correction over the family of all comparisons of one metric in the
sweep; `verdict` is higher / lower when the Holm-adjusted p < 0.05, else indistinguishable.
See docs/comparisons.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from attnlab.engine import paired
from attnlab.engine.config import ConfigError
from attnlab.engine.metrics import metric_bounds
from attnlab.engine.stats import LEVEL

if TYPE_CHECKING:
    from matplotlib.figure import Figure

USABLE = ("completed", "cached")  # as attnlab.runs.report: statuses whose numbers count
DEFAULT_METRICS = ("val_accuracy", "attn_key_weight", "focus_rate")
RATE_METRICS = {"focus_rate": "attn_focused"}  # a rate of seeds -> its per-seed flag column
LOWER_IS_BETTER = frozenset({"attn_entropy", "attn_key_rank"})  # for prob_improvement
ALPHA = 1 - LEVEL
NOT_AXES = ("seeds",)  # config columns that differ between cells but are not a swept axis
MIN_PAIRS = 2  # a paired t interval needs two differences


def compare_cells(
    report: pd.DataFrame,
    axes_order: dict[str, list[Any]] | None = None,
    baselines: dict[str, Any] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> pd.DataFrame:
    """Each swept value against its axis' baseline, per metric (see the module docstring).

    Args:
        report: report.csv's tidy table (attnlab.runs.report.collect_runs).
        axes_order: each swept axis' values in command-line order; the first is the
            default baseline. Axes or values it leaves out come in sorted order after it.
        baselines: per-axis override of the baseline (`+hydra.sweeper.baseline.<key>=<value>`).
        metrics: run metrics (report.csv columns) and rates of seeds (`focus_rate`).

    Returns:
        One row per comparison, columns COLUMNS plus the other axes' keys after `baseline`;
        empty (with those columns) when nothing is swept.

    Raises:
        ConfigError: a baseline that is not one of its axis' values, or of an unswept key.
    """
    axes = swept_axes(report)
    report = whole_numbers(report, axes)
    order = {axis: axis_values(report, axis, (axes_order or {}).get(axis)) for axis in axes}
    chosen = choose_baselines(order, baselines or {})
    usable = report[report["status"].isin(USABLE)]
    rows = [
        row
        for axis in axes
        for row in _axis_rows(usable, axis, order, chosen[axis], [m for m in metrics])
    ]
    frame = pd.DataFrame(rows, columns=[*COLUMNS[:3], *axes, *COLUMNS[3:]])
    for axis in axes:  # as given (20, not 20.0 from a column of numbers and blanks)
        frame[axis] = pd.Series([row.get(axis) for row in rows], index=frame.index, dtype=object)
    frame = _adjust(frame)
    return _sorted(frame, axes, order, list(metrics))


COLUMNS = [
    "axis",
    "value",
    "baseline",
    # ... the other axes' values go here, one column per axis key
    "metric",
    "pairing",
    "test",
    "n_pairs",
    "n_value",
    "n_baseline",
    "value_mean",
    "baseline_mean",
    "diff_mean",
    "diff_ci_low",
    "diff_ci_high",
    "p_value",
    "p_adjusted",
    "prob_improvement",
    "prob_improvement_ci_low",
    "prob_improvement_ci_high",
    "verdict",
    "same_data",
]


def swept_axes(report: pd.DataFrame) -> list[str]:
    """Config columns with >= 2 values, in config order, except the seeds list and columns
    that only echo another axis (e.g. an interpolated `${...}` that moves with it: the same
    grouping of cells twice is one axis, named by the first)."""
    names = [str(c) for c in report.columns]
    config = names[names.index("job") + 1 : names.index("seed")]
    axes: list[str] = []
    partitions: list[np.ndarray] = []
    for column in config:
        if column in NOT_AXES or report[column].nunique(dropna=True) < 2:
            continue
        groups = report.groupby(column, dropna=False, sort=False).ngroup().to_numpy()
        if any(np.array_equal(groups, seen) for seen in partitions):
            continue
        axes.append(column)
        partitions.append(groups)
    return axes


def whole_numbers(report: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Axis columns of whole floats back to ints (a failed cell's blank config turns a column
    of 2 and 20 into 2.0 and 20.0), so comparisons.csv says `20` as the command line did."""
    report = report.copy()
    for axis in axes:
        column = report[axis]
        if pd.api.types.is_float_dtype(column):
            known = column.dropna()
            if len(known) and (known == known.round()).all():
                whole = [v if pd.isna(v) else int(v) for v in column]
                report[axis] = pd.Series(whole, index=report.index, dtype=object)
    return report


def axis_values(report: pd.DataFrame, axis: str, given: Iterable[Any] | None) -> list[Any]:
    """An axis' values: those `given` (command-line order) that occur, then the rest sorted
    (numbers before text, so 2, 5, 20 and not "20" < "5")."""
    present = list(pd.unique(report[axis].dropna()))
    ordered = [v for g in (given or []) for v in present if same_value(v, g)]
    rest = sorted((v for v in present if v not in ordered), key=_sort_key)
    return [*dict.fromkeys(ordered), *rest]


def _sort_key(value: Any) -> tuple[int, float, str]:
    number = _number(value)
    return (0, number, "") if number is not None else (1, 0.0, str(value))


def _number(value: Any) -> float | None:
    """value as a finite float (2, 2.0, "2"), else None (text, NaN); plain Python, as the
    comparisons match every run's value against every axis value."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def same_value(a: Any, b: Any) -> bool:
    """Config values equal across CSV round trips and typed overrides: 2 == 2.0 == "2"."""
    if a == b or str(a) == str(b):
        return True
    x, y = _number(a), _number(b)
    return x is not None and x == y


def choose_baselines(order: dict[str, list[Any]], overrides: dict[str, Any]) -> dict[str, Any]:
    """Each axis' baseline: its override if given (validated), else its first value."""
    chosen = {axis: values[0] for axis, values in order.items()}
    for key, wanted in overrides.items():
        allowed = order.get(key)
        if allowed is None:
            swept = ", ".join(order) or "none"
            raise ConfigError(
                f"hydra.sweeper.baseline.{key}={wanted!r} is not allowed: {key} is not a "
                f"swept axis (swept: {swept})"
            )
        match = [v for v in allowed if same_value(v, wanted)]
        if not match:
            values = ", ".join(str(v) for v in allowed)
            raise ConfigError(
                f"hydra.sweeper.baseline.{key}={wanted!r} is not allowed: one of {values}"
            )
        chosen[key] = match[0]
    return chosen


def _axis_rows(
    usable: pd.DataFrame,
    axis: str,
    order: dict[str, list[Any]],
    baseline: Any,
    metrics: list[str],
) -> list[dict[str, Any]]:
    """The rows of one axis: each value vs the baseline within each combination of the
    other axes, for each metric."""
    others = [a for a in order if a != axis]
    rows = []
    for context, group in _contexts(usable, others):
        at_baseline = group[group[axis].map(lambda v: same_value(v, baseline))]
        for value in order[axis]:
            if same_value(value, baseline):
                continue
            at_value = group[group[axis].map(lambda v, value=value: same_value(v, value))]
            head = {"axis": axis, "value": value, "baseline": baseline, **context}
            for metric in metrics:
                row = compare_pair(at_value, at_baseline, metric)
                if row is not None:
                    rows.append({**head, "metric": metric, **row, "same_data": _same_data(axis)})
    return rows


def _contexts(usable: pd.DataFrame, others: list[str]) -> list[tuple[dict[str, Any], Any]]:
    """(other axes' values, rows) of each combination of the other axes present."""
    if not others:
        return [({}, usable)]
    groups = usable.groupby(others, dropna=False, sort=False)
    out = []
    for key, group in groups:
        values = key if isinstance(key, tuple) else (key,)
        out.append((dict(zip(others, values, strict=True)), group))
    return out


def _same_data(axis: str) -> bool:
    """Whether cells that differ only in `axis` train on identical data at a seed: not for a
    data key (features, classes, samples ... change what the seed's streams draw), nor for
    the model variant (the sequence model draws (samples, time_steps, features))."""
    return not (axis.startswith("data.") or axis == "model.variant")


def seed_values(cell: pd.DataFrame, metric: str) -> pd.Series:
    """A cell's finite values of `metric` by seed (a rate metric: its flags as 1.0/0.0); a seed
    listed twice (two jobs of one config) counts once, its first row."""
    column = RATE_METRICS.get(metric, metric)
    if column not in cell:
        return pd.Series(dtype=float)
    raw = cell[column]
    values = raw.map(_flag) if metric in RATE_METRICS else pd.to_numeric(raw, errors="coerce")
    series = pd.Series(values.to_numpy(dtype=float), index=cell["seed"].to_numpy())
    series = series[np.isfinite(series.to_numpy()) & series.index.notna()]
    return series[~series.index.duplicated()]


def _flag(value: Any) -> float:
    """attn_focused as 1.0 / 0.0, NaN when unknown (bools, CSV text, 0/1 numbers)."""
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return float(value.strip().lower() == "true")
    if isinstance(value, int | float) and value in (0, 1):
        return float(value)
    return math.nan


def compare_pair(at_value: pd.DataFrame, at_baseline: pd.DataFrame, metric: str) -> dict | None:
    """The statistics of one comparison; None when either cell has no value for the metric
    (a cell without attention has no attention metrics, a failed cell no runs)."""
    x, y = seed_values(at_value, metric), seed_values(at_baseline, metric)
    if not len(x) or not len(y):
        return None
    shared = x.index.intersection(y.index)
    paired_ = len(shared) >= MIN_PAIRS
    if metric in RATE_METRICS:
        result = _rate_test(x, y, shared if paired_ else None)
    else:
        result = _mean_test(x, y, shared if paired_ else None, metric)
    rate = metric in RATE_METRICS
    stats = {
        "pairing": "paired" if paired_ else UNPAIRED[rate],
        "test": TESTS[(rate, paired_)],
        "n_pairs": len(shared) if paired_ else 0,
        "n_value": len(shared) if paired_ else len(x),
        "n_baseline": len(shared) if paired_ else len(y),
        "value_mean": float(x[shared].mean() if paired_ else x.mean()),
        "baseline_mean": float(y[shared].mean() if paired_ else y.mean()),
        **result,
    }
    return stats


UNPAIRED = {False: "unpaired (Welch)", True: "unpaired (Fisher)"}  # by: is it a rate?
TESTS = {  # (rate?, paired?) -> the method of the row's interval and p-value
    (False, True): "paired t",
    (False, False): "Welch t",
    (True, True): "Newcombe paired score interval, exact McNemar",
    (True, False): "Newcombe hybrid score interval, Fisher exact",
}


def _mean_test(x: pd.Series, y: pd.Series, shared: pd.Index | None, metric: str) -> dict:
    """Paired t on the shared seeds' differences, else Welch; the interval is cut to the range
    a difference of the metric can take (e.g. [-1, 1] for an accuracy)."""
    if shared is not None:
        diffs = x[shared].to_numpy() - y[shared].to_numpy()
        result = paired.paired_t(diffs)
        better = -diffs if metric in LOWER_IS_BETTER else diffs
        share = paired.prob_improvement(better)
        improvement = (float(share.estimate), float(share.ci_low), float(share.ci_high))
    else:
        result = paired.welch_t(x.to_numpy(), y.to_numpy())
        improvement = (math.nan, math.nan, math.nan)  # defined for paired seeds only
    low, high = metric_bounds(metric)
    return {
        "diff_mean": float(result.estimate),
        "diff_ci_low": max(float(result.ci_low), low - high),
        "diff_ci_high": min(float(result.ci_high), high - low),
        "p_value": float(result.p_value),
        **dict(zip(IMPROVEMENT, improvement, strict=True)),
    }


IMPROVEMENT = ("prob_improvement", "prob_improvement_ci_low", "prob_improvement_ci_high")


def _rate_test(x: pd.Series, y: pd.Series, shared: pd.Index | None) -> dict:
    """Difference of two rates of seeds: Newcombe's paired method 10 with exact McNemar on the
    shared seeds, else Newcombe's independent method 10 with Fisher's exact test."""
    if shared is not None:
        value, base = x[shared].to_numpy(), y[shared].to_numpy()
        result = paired.paired_rate_difference(*paired.paired_counts(value, base))
        share = paired.prob_improvement(value - base)
        improvement = (float(share.estimate), float(share.ci_low), float(share.ci_high))
    else:
        result = paired.unpaired_rate_difference(x.sum(), len(x), y.sum(), len(y))
        improvement = (math.nan, math.nan, math.nan)
    return {
        "diff_mean": float(result.estimate),
        "diff_ci_low": float(result.ci_low),
        "diff_ci_high": float(result.ci_high),
        "p_value": float(result.p_value),
        **dict(zip(IMPROVEMENT, improvement, strict=True)),
    }


def _adjust(frame: pd.DataFrame) -> pd.DataFrame:
    """Holm over each metric's comparisons (the family), then the verdicts."""
    frame = frame.copy()
    frame["p_adjusted"] = np.nan
    for _, rows in frame.groupby("metric", sort=False):
        frame.loc[rows.index, "p_adjusted"] = paired.holm(rows["p_value"].to_numpy(dtype=float))
    frame["verdict"] = [
        verdict(p, d) for p, d in zip(frame["p_adjusted"], frame["diff_mean"], strict=True)
    ]
    return frame


def verdict(p_adjusted: float, diff_mean: float) -> str:
    """higher / lower (value vs baseline) when Holm-adjusted p < 0.05; else indistinguishable
    (also when the comparison could not be tested: p is NaN)."""
    if not (np.isfinite(p_adjusted) and p_adjusted < ALPHA) or diff_mean == 0:
        return "indistinguishable"
    return "higher" if diff_mean > 0 else "lower"


def _sorted(
    frame: pd.DataFrame, axes: list[str], order: dict[str, list[Any]], metrics: list[str]
) -> pd.DataFrame:
    """Axis by axis (config order); within it the other axes' values, then the value, in
    command-line order; then the metrics in the order asked."""
    if frame.empty:
        return frame.reset_index(drop=True)

    def rank(column: str, values: list[Any]) -> pd.Series:
        return frame[column].map(
            lambda v: next((i for i, o in enumerate(values) if same_value(v, o)), len(values))
        )

    keys = pd.DataFrame(index=frame.index)
    keys["axis"] = rank("axis", axes)
    for axis in axes:
        keys[axis] = rank(axis, order[axis]) if axis in frame else 0
    keys["value"] = [
        next(i for i, o in enumerate(order[a]) if same_value(v, o))
        for a, v in zip(frame["axis"], frame["value"], strict=True)
    ]
    keys["metric"] = rank("metric", metrics)
    ordered = keys.sort_values([*keys.columns[:1], *keys.columns[1:]], kind="stable").index
    return frame.loc[ordered].reset_index(drop=True)


def context_label(row: pd.Series, axes: Iterable[str]) -> str:
    """`data.classes=20, model.hidden=64`: the other axes' values of a comparison row."""
    parts = [f"{a}={row[a]}" for a in axes if a in row and a != row["axis"] and pd.notna(row[a])]
    return ", ".join(parts)


def _other_axes(comparisons: pd.DataFrame) -> list[str]:
    columns = list(comparisons.columns)
    return columns[columns.index("baseline") + 1 : columns.index("metric")]


def difference_plot_data(comparisons: pd.DataFrame, axis: str, metric: str) -> pd.DataFrame:
    """What a difference figure of `axis` and `metric` shows: one row per comparison, in the
    table's order, with a label (value vs baseline, at the other axes' values), the difference
    and its interval, the verdict and the pairing. Empty if the sweep has no such rows."""
    rows = comparisons[(comparisons["axis"] == axis) & (comparisons["metric"] == metric)]
    others = _other_axes(comparisons)
    labels = [
        f"{r['value']} vs {r['baseline']}" + (f" ({c})" if (c := context_label(r, others)) else "")
        for _, r in rows.iterrows()
    ]
    keep = ["value", "baseline", "diff_mean", "diff_ci_low", "diff_ci_high", "verdict", "pairing"]
    data = rows[keep].reset_index(drop=True)
    data.insert(0, "label", labels)
    return data


def difference_figure(data: pd.DataFrame, title: str = "") -> Figure:
    """Differences with their intervals as horizontal bars around a line at 0 (Agg-safe: a
    matplotlib Figure, no pyplot state), from difference_plot_data."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 0.45 * len(data) + 1.2), layout="constrained")
    ax = figure.add_subplot()
    y = np.arange(len(data))[::-1]
    colours = data["verdict"].map({"higher": "C2", "lower": "C3"}).fillna("0.4")
    errors = [data["diff_mean"] - data["diff_ci_low"], data["diff_ci_high"] - data["diff_mean"]]
    for i, colour in enumerate(colours):
        ax.errorbar(
            data["diff_mean"].iloc[i],
            y[i],
            xerr=[[errors[0].iloc[i]], [errors[1].iloc[i]]],
            fmt="o",
            color=colour,
            capsize=3,
        )
    ax.axvline(0, color="0.6", linewidth=1)
    ax.set_yticks(y, list(data["label"]))
    ax.set_xlabel(f"difference, value - baseline ({LEVEL:.0%} interval)")
    if title:
        ax.set_title(title)
    return figure


def comparisons_markdown(comparisons: pd.DataFrame) -> str:
    """The "Comparisons" section of report.md: the comparisons with a verdict (Holm-adjusted
    p < 0.05) first, each with its interval and test, then a count of the rest."""
    lines = ["## Comparisons", ""]
    if comparisons.empty:
        return "\n".join([*lines, "No swept axis has two values to compare.", ""])
    lines += [
        f"Each swept value against its axis' baseline, within each combination of the other "
        f"swept axes ([comparisons.csv](comparisons.csv)). Differences are value - baseline "
        f"with {LEVEL:.0%} intervals; paired by seed over the seeds both cells ran, Welch's "
        "(means) or Fisher's (rates) unpaired tests where fewer than two seeds are shared. "
        "p-values are Holm-adjusted over the family of all comparisons of one metric in the "
        f"sweep; a verdict needs an adjusted p < {ALPHA:.2f}.",
        "",
    ]
    decided = comparisons[comparisons["verdict"] != "indistinguishable"]
    others = _other_axes(comparisons)
    for _, row in decided.sort_values(["metric", "p_adjusted"], kind="stable").iterrows():
        lines.append(_finding_line(row, others))
    rest = len(comparisons) - len(decided)
    if len(decided):
        lines.append("")
    lines.append(
        f"{rest} other comparison{'s' if rest != 1 else ''} "
        f"{'were' if rest != 1 else 'was'} indistinguishable from the baseline."
        if len(decided)
        else f"All {rest} comparisons were indistinguishable from their baselines."
    )
    return "\n".join([*lines, ""])


def _finding_line(row: pd.Series, others: list[str]) -> str:
    context = context_label(row, others)
    where = f" at {context}" if context else ""
    if row["pairing"] == "paired":
        how = f"paired over {row['n_pairs']} seeds"
    else:
        how = f"{row['pairing']}, {row['n_value']} vs {row['n_baseline']} seeds"
    return (
        f"- `{row['axis']}={row['value']}` vs `{row['baseline']}`{where}: {row['metric']} "
        f"**{row['verdict']}** by {row['diff_mean']:+.3f} "
        f"[{row['diff_ci_low']:+.3f}, {row['diff_ci_high']:+.3f}] ({how}; "
        f"Holm p = {row['p_adjusted']:.3g})"
    )


def compare(
    sweep_dir: str | Path,
    axis: str | None = None,
    metric: str | None = "val_accuracy",
    baseline: Any = None,
) -> pd.DataFrame:
    """The comparisons of a finished sweep dir, read from its report.csv: every row, or those
    of one `axis` and `metric` (None: all). `baseline` overrides that axis' baseline.

    Holm's family stays the whole sweep (all comparisons of a metric), also when the result
    is filtered to one axis, so the p_adjusted of a row does not depend on what is asked.
    Values follow the launch order the sweep recorded (.sweep.json), else sorted order.
    """
    from attnlab.runs import records

    sweep_dir = Path(sweep_dir)
    report = pd.read_csv(sweep_dir / "report.csv", keep_default_na=True)
    state = records.read_state(sweep_dir)
    if baseline is not None and axis is None:
        raise ConfigError(f"baseline={baseline!r} is not allowed: name its axis too")
    baselines = sweep_baselines(state)
    if baseline is not None and axis is not None:
        baselines[axis] = baseline
    frame = compare_cells(report, sweep_order(report, state), baselines)
    if axis is not None:
        if axis not in swept_axes(report):
            swept = ", ".join(swept_axes(report)) or "none"
            raise ConfigError(f"axis={axis!r} is not allowed: one of the swept axes ({swept})")
        frame = frame[frame["axis"] == axis]
    if metric is not None:
        frame = frame[frame["metric"] == metric]
    return frame.reset_index(drop=True)


def sweep_order(report: pd.DataFrame, state: dict[str, Any]) -> dict[str, list[Any]]:
    """Each axis' values in the order the sweep's state (.sweep.json) launched them."""
    launched = state.get("cells")
    return launch_order(report, launched if isinstance(launched, list) else [])


def sweep_baselines(state: dict[str, Any]) -> dict[str, Any]:
    """The baselines the sweep was given (hydra.sweeper.baseline, kept in .sweep.json)."""
    given = state.get("baselines")
    return dict(given) if isinstance(given, dict) else {}


def launch_order(report: pd.DataFrame, cells: list[Any]) -> dict[str, list[Any]]:
    """Each axis' values in the order the sweep launched them (Hydra launches the product of
    the command line's values in their order, so a value's first cell gives its place)."""
    position = {str(name): i for i, name in enumerate(cells)}
    first = report.assign(_at=report["job"].map(position)).dropna(subset=["_at"])
    first = first.sort_values("_at", kind="stable")
    return {axis: list(pd.unique(first[axis].dropna())) for axis in swept_axes(report)}
