"""Figures: pure functions compute each figure's data, thin renderers return a Figure.

The numbers a figure draws are the summary's (attnlab/runs/report.py summarize: means, Student-t
and Wilson intervals), never re-estimated here: a band in a figure is the interval in
summary.csv. Every swept axis is shown: the first axes on the x axis, as lines or as heatmap
rows, the rest as one panel each (the panel titles name their values), so nothing is
averaged over silently. Text is sized in pixels of the saved PNG (no label under MIN_FONT_PX),
legends sit outside the panels, and a grid of many cells is split into pages, so a figure
stays readable at the size a preset makes. Plain matplotlib throughout (no seaborn
estimators): drawing is deterministic, so re-rendering a report gives byte-identical PNGs.
No function here writes files.
"""

from __future__ import annotations

import logging
import math
from typing import Any, NamedTuple

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from attnlab.engine.metrics import metric_bounds
from attnlab.engine.stats import LEVEL, t_interval
from attnlab.runs.files import FIGURE_DPI

# Figures are built as matplotlib.figure.Figure objects, never through pyplot: no backend
# is chosen or switched (a notebook user's stays theirs), and Figure.savefig renders PNGs
# with Agg on any machine, headless ones included.
logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its INFO notes flood the run log

KEY_COLOR, REF_COLOR = "#d62728", "#7f7f7f"
MAX_PANEL_COLUMNS = 4
# The smallest text in a saved figure, in pixels (its em) at FIGURE_DPI: 6 pt labels were
# 9 px, their letters ~5 px, too small to read in a 24-panel grid.
MIN_FONT_PX = 12.0
SMALL = 8.0  # points: the smallest font any figure uses (12.2 px at 110 dpi)
TITLE = 9.0
PAGE_PANELS = 8  # an attention grid page holds at most this many panels (whole rows)
assert SMALL * FIGURE_DPI / 72 >= MIN_FONT_PX


def short(column: str) -> str:
    """`data.classes` -> `classes`: the name a reader knows from the blog."""
    return column.split(".")[-1]


def panels(frame: pd.DataFrame, facets: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """One (title, rows) per combination of the facet axes' values, in their sorted order;
    the title names every facet value ("features=32, attn_layers=2")."""
    if not facets:
        return [("", frame)]
    out = []
    for key, rows in frame.groupby(facets, sort=True, dropna=False):
        values = key if isinstance(key, tuple) else (key,)
        title = ", ".join(f"{short(c)}={v}" for c, v in zip(facets, values, strict=True))
        out.append((title, rows))
    return out


def layout_title(what: str, facets: list[str], roles: str) -> str:
    """A figure's title: what it shows, which axis is where, and one panel per what."""
    per = f"; one panel per {' x '.join(short(c) for c in facets)}" if facets else ""
    return f"{what}\n{roles}{per}"


def _grid(
    n: int, ncols: int, width: float, height: float, sharey: bool = False
) -> tuple[Figure, list]:
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(
        nrows,
        ncols,
        squeeze=False,
        sharey=sharey,
    )  # constrained layout: room for the suptitle and a shared colour bar
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


# ---- heatmaps -------------------------------------------------------------------------------


class HeatmapPanel(NamedTuple):
    title: str
    values: pd.DataFrame  # rows x cols, the colour
    labels: pd.DataFrame  # rows x cols, the text drawn in each cell


def heatmap_data(
    summary: pd.DataFrame, value: str, rows: str | None, cols: str, facets: list[str]
) -> list[HeatmapPanel]:
    """`value` of each cell on a rows x cols grid, one panel per value of the facet axes.

    Labels carry the summary's interval: `0.73 [0.68, 0.80]` for a mean, `4/5 [0.38, 0.96]`
    (Wilson) for focus_rate. Every swept axis is rows, cols or a facet, so each grid cell is
    one summary row (cells that differ only in their seeds list would share one; the first
    is shown).
    """
    out = []
    for title, part in panels(summary, facets):
        part = part.assign(_label=[_label(r, value) for _, r in part.iterrows()])
        index = part[rows] if rows is not None else part[cols].map(lambda _: "")
        grid = part.assign(_row=index).drop_duplicates(["_row", cols])
        values = grid.pivot(index="_row", columns=cols, values=value).astype(float)
        labels = grid.pivot(index="_row", columns=cols, values="_label").fillna("")
        values.index.name = labels.index.name = rows
        out.append(HeatmapPanel(title, values, labels))
    return out


def _label(row: pd.Series, value: str) -> str:
    if value == "focus_rate":
        rate, n = row["focus_rate"], int(row["n_seeds"])
        if not math.isfinite(rate):
            return "–"
        low, high = row["focus_rate_ci_low"], row["focus_rate_ci_high"]
        return f"{round(rate * n)}/{n}\n[{low:.2f}, {high:.2f}]"
    metric = value.removesuffix("_mean")
    mean, low, high = (row.get(f"{metric}_{k}", math.nan) for k in ("mean", "ci_low", "ci_high"))
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(low):
        return f"{mean:.2f}"
    return f"{mean:.2f}\n[{low:.2f}, {high:.2f}]"


def heatmap_figure(data: list[HeatmapPanel], title: str) -> Figure:
    """One annotated heatmap per panel, one colour scale [0, 1] for all."""
    first = data[0].values
    ncols = min(MAX_PANEL_COLUMNS, len(data))
    fig, axes = _grid(len(data), ncols, 1.25 * first.shape[1] + 1.8, 0.75 * first.shape[0] + 1.6)
    image = None
    for ax, panel in zip(axes, data, strict=True):
        image = ax.imshow(panel.values.to_numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for (i, j), text in np.ndenumerate(panel.labels.to_numpy()):
            shade = panel.values.to_numpy()[i, j]
            color = "black" if np.isfinite(shade) and shade > 0.6 else "white"
            ax.text(j, i, text, ha="center", va="center", fontsize=SMALL, color=color)
        ax.set_xticks(range(panel.values.shape[1]), [str(c) for c in panel.values.columns])
        ax.set_yticks(range(panel.values.shape[0]), [str(r) for r in panel.values.index])
        ax.set_xlabel(short(str(panel.values.columns.name)))
        if panel.values.index.name:
            ax.set_ylabel(short(str(panel.values.index.name)))
        ax.set_title(panel.title, fontsize=TITLE)
    fig.suptitle(title, fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, aspect=15)
    return fig


# ---- metric against a swept axis -----------------------------------------------------------


REFERENCE_NAMES = {"chance": "chance (1/classes)", "uniform": "uniform attention (1/features)"}


def reference_level(frame: pd.DataFrame, metric: str) -> tuple[str, pd.Series] | None:
    """The level a metric means nothing at: chance 1/classes for an accuracy, uniform
    attention 1/(key axis length) for attn_key_weight; None for other metrics."""
    # A failed cell's axis value may be the text the user typed (an unresolvable
    # `${...}`), so values that are not numbers get no reference, not an exception.
    if metric in ("val_accuracy", "probe_accuracy") and "data.classes" in frame:
        return "chance", 1.0 / pd.to_numeric(frame["data.classes"], errors="coerce")
    if metric == "attn_key_weight" and "data.features" in frame:
        size = pd.to_numeric(frame["data.features"], errors="coerce")
        if "model.variant" in frame and "data.time_steps" in frame:  # lstm: over time steps
            steps = pd.to_numeric(frame["data.time_steps"], errors="coerce")
            size = size.where(frame["model.variant"] != "lstm", steps)
        return "uniform", 1.0 / size
    return None


class LinePanel(NamedTuple):
    title: str
    lines: pd.DataFrame  # columns x, hue, mean, low, high, reference; one row per cell


def metric_lines_data(
    summary: pd.DataFrame, metric: str, x: str, hue: str | None, facets: list[str]
) -> list[LinePanel]:
    """The summary's mean and 95% interval of metric per cell: x, hue, mean, low, high, and
    the reference level (chance or uniform; NaN if the metric has none)."""
    ref = reference_level(summary, metric)
    frame = pd.DataFrame(
        {
            "x": summary[x],
            "hue": summary[hue] if hue is not None else "",
            "mean": summary[f"{metric}_mean"].astype(float),
            "low": summary[f"{metric}_ci_low"].astype(float),
            "high": summary[f"{metric}_ci_high"].astype(float),
            "reference": ref[1] if ref is not None else math.nan,
            **{f: summary[f] for f in facets},
        }
    )
    return [
        LinePanel(title, part.sort_values(["hue", "x"], kind="stable")[list(frame.columns[:6])])
        for title, part in panels(frame, facets)
    ]


def lines_figure(
    data: list[LinePanel],
    title: str,
    xlabel: str,
    ylabel: str,
    hue: str | None,
    reference: str | None,
    categorical: bool = True,
) -> Figure:
    """One line per hue value with its interval as a band, a dashed reference level, one
    panel per facet; categorical x ticks at exactly the grid's values; one y scale."""
    xs = sorted({v for p in data for v in p.lines["x"]})
    pos = {v: i for i, v in enumerate(xs)} if categorical else {v: v for v in xs}
    hues = sorted({v for p in data for v in p.lines["hue"]})
    colors = {h: matplotlib.colormaps["tab10"](i % 10) for i, h in enumerate(hues)}
    fig, axes = _grid(len(data), MAX_PANEL_COLUMNS, 4.2, 3.4, sharey=True)
    for ax, panel in zip(axes, data, strict=True):
        shared_reference = _shared(panel.lines)
        for h, line in panel.lines.groupby("hue", sort=True):
            at = [pos[v] for v in line["x"]]
            label = f"{short(hue)}={h}" if hue else None
            ax.plot(at, line["mean"], marker="o", ms=3, color=colors[h], label=label)
            ax.fill_between(at, line["low"], line["high"], color=colors[h], alpha=0.2, lw=0)
            if shared_reference is None and line["reference"].notna().any():
                ax.plot(at, line["reference"], ls="--", lw=1, color=colors[h], alpha=0.7)
        if shared_reference is not None:
            at = [pos[v] for v in shared_reference["x"]]
            ax.plot(at, shared_reference["reference"], ls="--", lw=1, color=REF_COLOR)
        if categorical:
            ax.set_xticks(range(len(xs)), [str(v) for v in xs])
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
        ax.set_title(panel.title, fontsize=TITLE)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    if hue:
        # Outside the panels (constrained layout makes room at the right): a legend inside
        # an axes covers curves, whichever corner it picks.
        handles: dict[str, Any] = {}
        for ax in axes:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(label, handle)
        labels = [label for label in (f"{short(hue)}={h}" for h in hues) if label in handles]
        fig.legend(
            handles=[handles[label] for label in labels],
            labels=labels,
            loc="outside right upper",
            title=short(hue),
            fontsize=SMALL,
            title_fontsize=TITLE,
        )
    ref = f"; dashed: {REFERENCE_NAMES[reference]}" if reference else ""
    fig.suptitle(f"{title}{ref}", fontsize=10)
    return fig


def _shared(lines: pd.DataFrame) -> pd.DataFrame | None:
    """The reference level as one line when every hue shares it (e.g. chance when classes is
    on the x axis), else None: then each line gets its own, in its colour."""
    refs = lines[["x", "reference"]].dropna().drop_duplicates().sort_values("x")
    if refs.empty or refs["x"].duplicated().any():
        return None
    return refs


# ---- learning curves -----------------------------------------------------------------------


def curve_stats(history: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per epoch: mean of metric over seeds and its Student-t interval (as summary.csv's)."""
    rows = []
    for epoch, part in history.groupby("epoch", sort=True):
        values = part[metric].astype(float).to_numpy()
        values = values[np.isfinite(values)]
        low, high = t_interval(values, LEVEL, metric_bounds(metric))
        mean = float(values.mean()) if len(values) else math.nan
        rows.append({"epoch": epoch, "mean": mean, "low": low, "high": high, "n": len(values)})
    return pd.DataFrame(rows, columns=["epoch", "mean", "low", "high", "n"])


def learning_curve_data(
    histories: list[tuple[pd.Series, pd.DataFrame]],
    metric: str,
    hue: str | None,
    facets: list[str],
) -> list[LinePanel]:
    """Each cell's curve of metric over epochs, one line per cell (hue: its value of the hue
    axis), one panel per facet value. histories: (summary row, that cell's history.csv)."""
    frames = []
    for row, history in histories:
        curve = curve_stats(history, metric).rename(columns={"epoch": "x"})
        ref = reference_level(row.to_frame().T, metric)
        curve["hue"] = row[hue] if hue is not None else ""
        curve["reference"] = float(ref[1].iloc[0]) if ref is not None else math.nan
        frames.append(curve.assign(**{f: row[f] for f in facets}))
    frame = pd.concat(frames, ignore_index=True)
    columns = ["x", "hue", "mean", "low", "high", "reference"]
    return [
        LinePanel(title, part.sort_values(["hue", "x"], kind="stable")[columns])
        for title, part in panels(frame, facets)
    ]


# ---- attention: every seed -----------------------------------------------------------------


class AttentionMatrix(NamedTuple):
    weights: pd.DataFrame  # seeds x columns: each seed's mean attention on the probe set
    peaks: pd.Series  # per seed, the column its attention peaks on
    dropped: int  # seeds without attention (diverged)


def attention_matrix(attention: pd.DataFrame) -> AttentionMatrix:
    """attention.csv (tidy seed, column, weight) as a seeds x columns matrix, with each
    seed's peak column: the peak is what attn_focused tests, so the chart and focus_rate agree."""
    wide = attention.pivot(index="seed", columns="column", values="weight").sort_index()
    finite = wide.notna().all(axis=1)
    weights = wide[finite]
    return AttentionMatrix(weights, weights.idxmax(axis=1), int((~finite).sum()))


def draw_attention_matrix(
    ax: Axes, matrix: AttentionMatrix, key: int, title: str, vmax: float, axis: str
) -> object | None:
    """Seeds x columns heatmap: the key column marked in red above the matrix and on its
    tick, each seed's peak dotted (white: on the key, red: elsewhere). Returns the image,
    for a shared colour bar, or None for a cell without attention weights (its title says
    so instead)."""
    weights = matrix.weights.to_numpy()
    if not len(weights):  # model.attention=none, or every seed diverged
        # The NaN rows cannot tell the two apart; the title names model.attention.
        ax.set_axis_off()
        ax.set_title(f"{title}\nno seed has attention weights", fontsize=TITLE)
        return None
    image = ax.imshow(
        weights, vmin=0, vmax=vmax, cmap="viridis", aspect="auto", interpolation="nearest"
    )
    n_seeds, n_columns = weights.shape
    # The key is marked outside the data: a frame drawn on a column 3 px wide (128 columns
    # in a panel) covers the very colour it should point at.
    ax.annotate(
        KEY_MARK,
        xy=(key, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(0, 1),
        textcoords="offset points",
        ha="center",
        va="bottom",
        color=KEY_COLOR,
        fontsize=TITLE,
        annotation_clip=False,
    )
    for i, peak in enumerate(matrix.peaks):
        on_key = int(peak) == key
        ax.plot(
            int(peak),
            i,
            marker="o",
            ms=3.5,
            color="white" if on_key else KEY_COLOR,
            markeredgecolor="black",
            markeredgewidth=0.4,
        )
    focused = int((matrix.peaks == key).sum())
    dropped = f", {matrix.dropped} diverged" if matrix.dropped else ""
    ax.set_title(
        f"{title}\npeak on key in {focused}/{n_seeds} seeds{dropped}", fontsize=TITLE, pad=14
    )
    ax.set_yticks(range(n_seeds), [f"seed {s}" for s in matrix.weights.index], fontsize=SMALL)
    step = max(1, n_columns // 8)
    ticks = sorted({key, *(t for t in range(0, n_columns, step) if abs(t - key) >= step / 2)})
    ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=SMALL)
    for label in ax.get_xticklabels():
        if label.get_text() == str(key):
            label.set_color(KEY_COLOR)
    ax.set_xlabel(f"{axis} (key: red {KEY_MARK}; dot: each seed's peak)", fontsize=SMALL)
    return image


KEY_MARK = "\u25bc"  # ▼, in DejaVu Sans (matplotlib's default font)


def uniform_marks(levels: list[float], vmax: float, gap: float = 0.12) -> list[UniformMark]:
    """Where the colour bar marks uniform attention (1/columns): a line at each level, one
    label per group of levels closer than gap * vmax (1/32 and 1/128 on a 0-0.7 scale share
    one: two labels there would print over each other), at the group's top level. A level
    above vmax is drawn at the top and labelled as such."""
    out: list[UniformMark] = []
    for level in sorted(set(levels)):
        at = min(level, vmax)
        name = f"1/{round(1 / level)}" + (" (above the scale)" if level > vmax else "")
        if out and at - out[-1].levels[-1] < gap * vmax:
            last = out[-1]
            out[-1] = UniformMark((*last.levels, at), at, f"{last.text}, {name}")
        else:
            out.append(UniformMark((at,), at, f"uniform {name}"))
    return out


class UniformMark(NamedTuple):
    levels: tuple[float, ...]  # heights of the lines on the colour bar
    at: float  # height of the label
    text: str


def _colorbar(fig: Figure, image: object, axes: list, uniforms: list[float]) -> None:
    """The shared colour bar, with uniform attention (1/columns) marked on it: white lines
    on the bar, labelled on its left (its ticks and title are on the right)."""
    bar = fig.colorbar(image, ax=axes, shrink=0.8, aspect=30)  # type: ignore[arg-type]
    bar.set_label("attention weight")
    vmax = float(bar.mappable.get_clim()[1])
    marks = uniform_marks(uniforms, vmax)
    for mark in marks:
        for level in mark.levels:
            bar.ax.axhline(level, color="white", lw=1.2)
    if marks:
        left = bar.ax.secondary_yaxis("left")
        left.set_yticks([m.at for m in marks], [m.text for m in marks], fontsize=SMALL)


def attention_figure(
    attention: pd.DataFrame, key: int, title: str, axis: str = "input column"
) -> Figure:
    """One run's attention, every seed a row: where each seed's attention peaks is visible,
    so the chart cannot contradict focus_rate as a mean over seeds could."""
    matrix = attention_matrix(attention)
    n_seeds, n_columns = matrix.weights.shape
    size = (min(12.0, 4.5 + 0.12 * n_columns), 2.0 + 0.28 * n_seeds)
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.subplots()
    vmax = float(np.nanmax(matrix.weights.to_numpy())) if n_seeds else 1.0
    image = draw_attention_matrix(ax, matrix, key, title, vmax, axis)
    if image is not None:
        _colorbar(fig, image, [ax], [1.0 / n_columns] if n_columns else [])
    return fig


def grid_pages(n: int, ncols: int, per_page: int = PAGE_PANELS) -> list[range]:
    """The panels of each page of a grid: whole rows of ncols, at most per_page panels a
    page (one row at least), in order."""
    step = max(1, per_page // max(1, ncols)) * max(1, ncols)
    return [range(start, min(start + step, n)) for start in range(0, n, step)]


def attention_grid_pages(
    cells: list[tuple[str, pd.DataFrame, int]], ncols: int = 3, axis: str = "input column"
) -> list[Figure]:
    """The attention grid, split into pages of whole rows (grid_pages), one colour scale
    across all pages: one figure of 24 panels would print its labels at a few pixels."""
    vmax = _attention_vmax([attention_matrix(frame) for _, frame, _ in cells])
    pages = grid_pages(len(cells), ncols)
    page = "" if len(pages) == 1 else "; page {} of {}"
    return [
        attention_grid_figure(
            [cells[i] for i in panels], ncols, axis, vmax, page.format(number, len(pages))
        )
        for number, panels in enumerate(pages, 1)
    ]


def _attention_vmax(matrices: list[AttentionMatrix]) -> float:
    return max(
        (float(np.nanmax(m.weights.to_numpy())) for m in matrices if len(m.weights)), default=1.0
    )


def attention_grid_figure(
    cells: list[tuple[str, pd.DataFrame, int]],
    ncols: int = 3,
    axis: str = "input column",
    vmax: float | None = None,
    page: str = "",
) -> Figure:
    """Each cell's seeds x columns attention, one panel per cell, one colour scale for all
    (vmax: its top, shared with the grid's other pages; None: these cells' largest weight)."""
    matrices = [attention_matrix(frame) for _, frame, _ in cells]
    top = _attention_vmax(matrices) if vmax is None else vmax
    rows = max(len(m.weights) for m in matrices)
    fig, axes = _grid(len(cells), ncols, 4.6, 1.6 + 0.2 * rows)
    image = None
    for ax, (title, _, key), matrix in zip(axes, cells, matrices, strict=True):
        image = draw_attention_matrix(ax, matrix, key, title, top, axis) or image
    fig.suptitle(
        f"attention per seed and column (mean over the probe set), one colour scale{page}",
        fontsize=10,
    )
    uniforms = [1.0 / m.weights.shape[1] for m in matrices if len(m.weights)]
    if image is not None:
        _colorbar(fig, image, axes, uniforms)
    return fig
