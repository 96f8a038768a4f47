"""Seaborn renderers. Each takes a ready DataFrame and returns a Figure; none writes files."""

from __future__ import annotations

import logging

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI or cluster nodes
logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its INFO notes flood the run log

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

KEY_COLOR, OTHER_COLOR = "#d62728", "#4c72b0"


def draw_attention_bars(ax: Axes, attention: pd.DataFrame, key: int, title: str) -> None:
    """Mean attention per column over seeds, with the spread across seeds (sd) as error bars.

    attention: tidy columns seed, column, weight (one mean vector per seed).
    """
    columns = sorted(attention["column"].unique())
    palette = {c: KEY_COLOR if c == key else OTHER_COLOR for c in columns}
    sns.barplot(
        data=attention,
        x="column",
        y="weight",
        hue="column",
        palette=palette,
        legend=False,
        errorbar="sd",
        order=columns,
        ax=ax,
        err_kws={"linewidth": 1},
    )
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("input column (key in red)")
    ax.set_ylabel("attention weight")
    step = max(1, len(columns) // 16)
    ax.set_xticks(range(0, len(columns), step), [str(c) for c in columns[::step]])


def attention_figure(attention: pd.DataFrame, key: int, title: str) -> Figure:
    """The blog's bar chart of attention per input column, over all seeds of one experiment."""
    n_seeds = attention["seed"].nunique()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    draw_attention_bars(ax, attention, key, f"{title} (mean ± sd over {n_seeds} seeds)")
    fig.tight_layout()
    return fig
