"""Figure renderers. Each takes a ready DataFrame and returns a Figure; none writes files.

The per-run attention chart is plain matplotlib (Keras has already loaded it); seaborn,
which takes ~0.8 s to import, loads only for a sweep's report figures.
"""

from __future__ import annotations

import logging

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI or cluster nodes
logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its INFO notes flood the run log

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

KEY_COLOR, OTHER_COLOR = "#d62728", "#4c72b0"


def attention_bars(attention: pd.DataFrame) -> pd.DataFrame:
    """Per column: the mean attention over seeds and its sd across seeds (0 for one seed).

    attention: tidy columns seed, column, weight (one mean vector per seed).
    """
    stats = attention.dropna().groupby("column")["weight"].agg(["mean", "std"]).fillna(0.0)
    return stats.rename(columns={"std": "sd"}).reset_index()


def draw_attention_bars(
    ax: Axes, attention: pd.DataFrame, key: int, title: str, axis: str = "input column"
) -> None:
    """The blog's bar chart: mean attention per column, sd across seeds as error bars.

    Statistics computed once here and drawn with matplotlib: this chart is drawn by every
    run, and seaborn's import and per-bar re-aggregation cost more than the chart.
    """
    bars = attention_bars(attention)
    colors = [KEY_COLOR if c == key else OTHER_COLOR for c in bars["column"]]
    ax.bar(bars["column"], bars["mean"], color=colors, width=0.8)
    ax.errorbar(
        bars["column"], bars["mean"], yerr=bars["sd"], fmt="none", ecolor="#333333", elinewidth=1
    )
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(f"{axis} (key in red)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("attention weight")
    ax.set_xlim(-0.6, len(bars) - 0.4)
    ax.set_ylim(bottom=0)


def attention_figure(
    attention: pd.DataFrame, key: int, title: str, axis: str = "input column"
) -> Figure:
    """The blog's bar chart of attention per input column (or time step), over all seeds of
    one experiment."""
    n_seeds = attention.dropna()["seed"].nunique()  # diverged seeds have NaN weights
    fig, ax = plt.subplots(figsize=(8, 3.5))
    draw_attention_bars(ax, attention, key, f"{title} (mean ± sd over {n_seeds} seeds)", axis)
    fig.tight_layout()
    return fig


def heatmap_data(summary: pd.DataFrame, value: str, rows: str | None, cols: str) -> pd.DataFrame:
    """Mean of `value` per (rows, cols) cell, averaged over any other swept axis."""
    if rows is None:
        return summary.groupby(cols)[value].mean().to_frame().T.rename(index={value: ""})
    return summary.pivot_table(index=rows, columns=cols, values=value, aggfunc="mean")


def heatmap_figure(grid: pd.DataFrame, title: str) -> Figure:
    import seaborn as sns  # deferred: see the module docstring

    fig, ax = plt.subplots(figsize=(1.1 * grid.shape[1] + 2.5, 0.6 * grid.shape[0] + 2))
    sns.heatmap(grid, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=ax)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def metric_lines_figure(runs: pd.DataFrame, x: str, metric: str, hue: str | None) -> Figure:
    """Metric against x, one line per value of hue, mean with a 95% bootstrap band over seeds."""
    import seaborn as sns  # deferred: see the module docstring

    fig, ax = plt.subplots(figsize=(6, 4))
    data = runs.assign(**{metric: runs[metric].astype(float)})
    hue_order = None
    if hue is not None:  # categorical lines, in the values' own (numeric) order
        hue_order = [str(v) for v in sorted(data[hue].unique())]
        data[hue] = data[hue].astype(str)
    sns.lineplot(
        data=data,
        x=x,
        y=metric,
        hue=hue,
        hue_order=hue_order,
        marker="o",
        errorbar=("ci", 95),
        ax=ax,
        err_kws={"alpha": 0.2},
    )
    if (
        pd.api.types.is_numeric_dtype(data[x])
        and data[x].min() > 0
        and data[x].max() / data[x].min() >= 20
    ):
        ax.set_xscale("log")
    ax.set_title(f"{metric} vs {x} (mean, 95% CI over seeds)")
    fig.tight_layout()
    return fig


def attention_grid_figure(cells: list[tuple[str, pd.DataFrame, int]]) -> Figure:
    """Each cell's attention bar chart, in a grid."""
    ncols = min(3, len(cells))
    nrows = -(-len(cells) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 2.8 * nrows), squeeze=False)
    for ax, (title, attention, key) in zip(axes.flat, cells, strict=False):
        draw_attention_bars(ax, attention, key, title)
    for ax in axes.flat[len(cells) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
