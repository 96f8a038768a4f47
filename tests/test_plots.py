"""Figures: their data by hand, every swept axis named, one source of intervals, byte-identical
re-renders, learning curves from history.csv, every seed's attention."""

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from attnlab.engine.metrics import RUN_METRICS
from attnlab.runs import plots
from attnlab.runs.report import collect_runs, summarize, summary_figures, write_report

CLASSES, DEPTHS, FEATURES, SEEDS = (2, 5), (1, 2), (4, 8), (0, 1, 2)


def _write_cell(sweep, classes, depth, features, history=True):
    """A finished job dir: metrics.json, attention.csv, and (optionally) history.csv."""
    name = f"data.classes={classes},data.features={features},model.attn_layers={depth}"
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    config = {
        "data.classes": classes,
        "data.features": features,
        "model.attn_layers": depth,
        "trainer.epochs": 3,
        "seeds": list(SEEDS),
    }
    runs, attention, rows = [], [], []
    for seed in SEEDS:
        peak = 1 if seed < 2 else 3  # seeds 0, 1 peak on the key (column 1), seed 2 on 3
        weights = np.full(features, 0.5 / (features - 1))
        weights[peak] = 0.5
        attention += [{"seed": seed, "column": c, "weight": w} for c, w in enumerate(weights)]
        acc = 0.5 + 0.1 * seed + 0.01 * classes + 0.001 * depth * features
        record = dict.fromkeys(RUN_METRICS, 0.1)
        record.update(val_accuracy=acc, attn_key_weight=weights[1], attn_focused=peak == 1)
        runs.append({"seed": seed, "status": "completed", **record})
        for epoch in (1, 2, 3):
            rows.append(
                {
                    "seed": seed,
                    "epoch": epoch,
                    "train_loss": 1.0 / epoch + seed,
                    "val_accuracy": acc - 0.1 * (3 - epoch),
                    "attn_key_weight": weights[1],
                }
            )
    (job / "metrics.json").write_text(json.dumps({"config": config, "runs": runs}))
    pd.DataFrame(attention).to_csv(job / "attention.csv", index=False)
    if history:
        pd.DataFrame(rows).to_csv(job / "history.csv", index=False)


@pytest.fixture
def sweep(tmp_path):
    """A three-axis sweep: classes x attn_layers x features, 3 seeds a cell; one cell has no
    history.csv (a cell from before histories were recorded)."""
    for classes, depth, features in itertools.product(CLASSES, DEPTHS, FEATURES):
        _write_cell(tmp_path, classes, depth, features, history=(classes, depth) != (5, 2))
    return tmp_path


def _texts(fig):
    """Every title, axis label, tick label and legend title of a Figure."""
    out = [fig._suptitle.get_text() if fig._suptitle else ""]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        out += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        if ax.get_legend():
            out.append(ax.get_legend().get_title().get_text())
    return " ".join(out)


def test_three_axis_figures_name_every_axis(sweep):
    summary = summarize(collect_runs(sweep))
    axes = ["data.classes", "data.features", "model.attn_layers"]
    figures = summary_figures(summary, axes)
    assert [name for name, _, _ in figures] == [
        "heatmap_val_accuracy_mean.png",
        "heatmap_focus_rate.png",
        "val_accuracy_vs_data.classes.png",
        "attn_key_weight_vs_data.classes.png",
    ]
    for _, fig, _ in figures:
        text = _texts(fig)
        for axis in ("classes", "features", "attn_layers"):
            assert axis in text
        # one panel per depth: no averaging over the third axis
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        assert titles == ["attn_layers=1", "attn_layers=2"]


def test_heatmap_data_is_the_summary_with_its_intervals(sweep):
    summary = summarize(collect_runs(sweep))
    panels = plots.heatmap_data(
        summary, "focus_rate", "data.features", "data.classes", ["model.attn_layers"]
    )
    assert [p.title for p in panels] == ["attn_layers=1", "attn_layers=2"]
    first = panels[0]
    assert list(first.values.columns) == [2, 5] and list(first.values.index) == [4, 8]
    np.testing.assert_allclose(first.values.to_numpy(), 2 / 3)
    assert first.labels.loc[4, 2] == "2/3\n[0.21, 0.94]"  # Wilson of 2/3
    acc = plots.heatmap_data(
        summary, "val_accuracy_mean", "data.features", "data.classes", ["model.attn_layers"]
    )
    # classes 5, features 8, depth 2: seeds 0.5, 0.6, 0.7 + 0.05 + 0.016; t half 0.2484
    assert acc[1].values.loc[8, 5] == pytest.approx(0.666)
    assert acc[1].labels.loc[8, 5] == "0.67\n[0.42, 0.91]"


def test_lines_draw_the_summary_interval_and_chance(sweep):
    summary = summarize(collect_runs(sweep))
    panels = plots.metric_lines_data(
        summary, "val_accuracy", "data.classes", "data.features", ["model.attn_layers"]
    )
    line = panels[0].lines
    row = summary[(summary["data.features"] == 4) & (summary["model.attn_layers"] == 1)]
    mine = line[line["hue"] == 4]
    np.testing.assert_allclose(mine["low"], row["val_accuracy_ci_low"])
    np.testing.assert_allclose(mine["high"], row["val_accuracy_ci_high"])
    np.testing.assert_allclose(mine["reference"], [1 / 2, 1 / 5])  # chance
    weight = plots.metric_lines_data(
        summary, "attn_key_weight", "data.classes", "data.features", ["model.attn_layers"]
    )
    assert sorted(set(weight[0].lines["reference"])) == [1 / 8, 1 / 4]  # uniform attention
    fig = plots.lines_figure(panels, "t", "classes", "val_accuracy", "data.features", "chance")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["2", "5"]  # categorical
    assert "chance (1/classes)" in fig._suptitle.get_text()


def test_rerendered_report_is_byte_identical(sweep):
    write_report(sweep)
    first = {p.name: p.read_bytes() for p in (sweep / "figures").glob("*.png")}
    write_report(sweep)
    second = {p.name: p.read_bytes() for p in (sweep / "figures").glob("*.png")}
    # 7 summary figures, and a difference figure per swept axis (3) for val_accuracy and
    # focus_rate (comparisons.csv).
    differences = [n for n in first if n.startswith("difference_")]
    assert len(first) == 7 + 3 * 2 and len(differences) == 3 * 2 and first == second
    md = (sweep / "report.md").read_text()
    for name in first:
        assert f"(figures/{name})" in md


def test_learning_curves_from_history_with_t_intervals(sweep):
    history = pd.read_csv(
        sweep / "data.classes=2,data.features=4,model.attn_layers=1" / "history.csv"
    )
    stats = plots.curve_stats(history, "train_loss")
    assert list(stats["epoch"]) == [1, 2, 3] and list(stats["n"]) == [3, 3, 3]
    # epoch 2: losses 0.5, 1.5, 2.5: mean 1.5, sd 1, t(0.975, 2) / sqrt(3) = 2.484138
    assert stats.loc[1, "mean"] == pytest.approx(1.5)
    assert stats.loc[1, "high"] == pytest.approx(1.5 + 2.484138, abs=1e-6)
    assert stats.loc[1, "low"] == 0.0  # 1.5 - 2.484138 < 0: cut to a loss's range
    from attnlab.runs.report import cell_histories, learning_curve_figures

    summary = summarize(collect_runs(sweep))
    histories = cell_histories(sweep, collect_runs(sweep), summary)
    assert len(histories) == 6  # two of the 8 cells have no history.csv: skipped
    (_, fig, _), _ = learning_curve_figures(
        histories, ["data.classes", "data.features", "model.attn_layers"]
    )
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [
        "features=4, attn_layers=1",
        "features=4, attn_layers=2",
        "features=8, attn_layers=1",
        "features=8, attn_layers=2",
    ]
    assert "classes" in _texts(fig)


def test_attention_matrix_shows_every_seed_and_its_peak():
    attention = pd.DataFrame(
        {
            "seed": [0, 0, 0, 1, 1, 1, 2, 2, 2],
            "column": [0, 1, 2] * 3,
            "weight": [0.1, 0.8, 0.1, 0.6, 0.3, 0.1, *[math.nan] * 3],
        }
    )
    matrix = plots.attention_matrix(attention)
    assert matrix.weights.shape == (2, 3) and matrix.dropped == 1  # seed 2 diverged
    assert list(matrix.peaks) == [1, 0]
    fig = plots.attention_figure(attention, key=1, title="cell")
    text = _texts(fig)
    assert "peak on key in 1/2 seeds, 1 diverged" in text
    assert "seed 0" in text and "seed 1" in text


def test_attention_grid_has_one_colour_scale(sweep):
    from attnlab.runs.report import attention_cells

    summary = summarize(collect_runs(sweep))
    cells = attention_cells(sweep, summary, ["data.classes", "data.features", "model.attn_layers"])
    fig = plots.attention_grid_figure(cells, ncols=4)
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 8 and {im.get_clim() for im in images} == {(0.0, 0.5)}
    assert fig.axes[0].get_title().startswith("classes=2 features=4 attn_layers=1")


def test_a_cell_without_attention_weights_gets_a_note_not_an_empty_image():
    """model.attention=none writes NaN weights: its panel says so, the others keep their
    colour scale, and matplotlib has nothing to warn about."""
    import warnings

    none = pd.DataFrame({"seed": [0, 0, 1, 1], "column": [0, 1] * 2, "weight": [math.nan] * 4})
    learned = none.assign(weight=[0.2, 0.8, 0.4, 0.6])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plots.attention_grid_figure([("none", none, 1), ("learned", learned, 1)], ncols=2)
        alone = plots.attention_figure(none, key=1, title="none")
    assert [len(ax.get_images()) for ax in fig.axes[:2]] == [0, 1]
    assert fig.axes[0].get_title() == "none\nno seed has attention weights"
    assert fig.axes[1].get_images()[0].get_clim() == (0.0, 0.8)
    assert "no seed has attention weights" in _texts(alone) and not alone.axes[0].get_images()


# ---- layout at the saved size (issue 19, item 14) -------------------------------------------


def _drawn(fig):
    """Lay the figure out and draw it at the dpi it is saved with; return it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from attnlab.runs.files import FIGURE_DPI

    fig.set_dpi(FIGURE_DPI)
    FigureCanvasAgg(fig).draw()
    return fig


def _shown_texts(fig):
    from matplotlib.text import Text

    return [
        t
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and t.get_window_extent().width > 0
    ]


def _smallest_font_px(fig):
    return min(t.get_fontsize() * fig.dpi / 72 for t in _shown_texts(_drawn(fig)))


def _overlap(a, b):
    """Pixels two window extents share (0 when they only touch)."""
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(0.0, width) * max(0.0, height)


def _blog_all_cells():
    """blog_all's grid as attention_cells gives it: classes x attn_layers x features, 10 seeds
    a cell, 32 or 128 columns, the key in column 1."""
    rng = np.random.default_rng(0)
    cells = []
    for classes, depth, features in itertools.product((2, 5, 20, 30, 50, 100), (1, 2), (32, 128)):
        weights = rng.dirichlet(np.ones(features), size=10)  # (seeds, columns)
        frame = pd.DataFrame(
            [
                {"seed": s, "column": c, "weight": w}
                for s, row in enumerate(weights)
                for c, w in enumerate(row)
            ]
        )
        title = f"classes={classes} features={features} attn_layers={depth}"
        cells.append((title, frame, 1))
    return cells


def test_grid_pages_hold_whole_rows():
    assert plots.grid_pages(24, 4) == [range(0, 8), range(8, 16), range(16, 24)]
    assert plots.grid_pages(4, 4) == [range(0, 4)]
    assert plots.grid_pages(7, 6) == [range(0, 6), range(6, 7)]  # a row of 6 is one page
    assert plots.grid_pages(3, 12) == [range(0, 3)]


def test_blog_all_attention_grid_is_paged_with_readable_labels():
    """blog_all's 24 panels in one PNG printed their labels at 9 px (letters ~5 px): pages of
    whole rows, no text under MIN_FONT_PX at the saved dpi, one colour scale on every page."""
    pages = plots.attention_grid_pages(_blog_all_cells(), ncols=4)
    assert len(pages) == 3
    tops = set()
    for page in pages:
        assert _smallest_font_px(page) >= plots.MIN_FONT_PX
        panels = [ax for ax in page.axes if ax.get_images()]
        assert len(panels) == 8
        tops |= {ax.get_images()[0].get_clim() for ax in panels}
    assert len(tops) == 1
    assert pages[1]._suptitle.get_text().endswith("page 2 of 3")


def test_key_mark_is_outside_the_data_and_clear_of_the_title():
    """A red frame around a 128-feature panel's key column covered the column's colour: the
    mark sits above the matrix, touching neither the data nor the panel title."""
    page = _drawn(plots.attention_grid_pages(_blog_all_cells(), ncols=4)[0])
    for ax in (ax for ax in page.axes if ax.get_images()):
        assert not ax.patches  # nothing drawn over the matrix but the peak dots
        (mark,) = [t for t in ax.texts if t.get_text() == plots.KEY_MARK]
        box, data = mark.get_window_extent(), ax.get_window_extent()
        assert box.y0 >= data.y1 - 0.5 and _overlap(box, data) == 0
        assert _overlap(box, ax.title.get_window_extent()) == 0
        key_x = ax.transData.transform((1, 0))[0]
        assert box.x0 < key_x < box.x1  # above the key column


def test_uniform_label_clears_the_colour_bar_ticks_and_title():
    """ "uniform 1/N" printed over the colour bar's title or its 0.0 tick in every
    attention.png; now it is on the bar's other side, nearby levels share one label."""
    cells = _blog_all_cells()
    figures = [
        plots.attention_figure(cells[i][1], 1, cells[i][0]) for i in (0, 1)
    ]  # 32 and 128 columns
    figures.append(plots.attention_figure(cells[0][1].query("seed < 2"), 1, "two seeds"))
    figures.append(plots.attention_grid_pages(cells, ncols=4)[0])
    for fig in figures:
        _drawn(fig)
        bar = fig.axes[-1]  # the colour bar
        (left,) = bar.child_axes  # the uniform labels
        labels = [t for t in left.get_yticklabels() if t.get_text()]
        assert labels and all(t.get_text().startswith("uniform 1/") for t in labels)
        taken = [t.get_window_extent() for t in bar.get_yticklabels() if t.get_text()]
        taken.append(bar.yaxis.label.get_window_extent())
        for label in labels:
            box = label.get_window_extent()
            assert all(_overlap(box, other) == 0 for other in taken), label.get_text()
            assert box.x1 <= bar.get_window_extent().x0  # left of the bar
        assert _smallest_font_px(fig) >= plots.MIN_FONT_PX


def test_uniform_marks_share_a_label_when_close():
    marks = plots.uniform_marks([1 / 32, 1 / 128, 1 / 32], vmax=0.7)
    assert marks == [plots.UniformMark((1 / 128, 1 / 32), 1 / 32, "uniform 1/128, 1/32")]
    marks = plots.uniform_marks([1 / 2, 1 / 32], vmax=0.6)
    assert [m.text for m in marks] == ["uniform 1/32", "uniform 1/2"]
    (mark,) = plots.uniform_marks([1 / 2], vmax=0.3)  # above the colour scale
    assert mark.at == 0.3 and mark.text == "uniform 1/2 (above the scale)"


def test_legend_is_outside_every_panel_and_fonts_are_readable(sweep):
    """The learning curves' legend sat inside the last panel, over its curves."""
    from attnlab.runs.report import cell_histories, learning_curve_figures

    report = collect_runs(sweep)
    summary = summarize(report)
    axes = ["data.classes", "data.features", "model.attn_layers"]
    figures = [
        f for _, f, _ in learning_curve_figures(cell_histories(sweep, report, summary), axes)
    ]
    figures += [f for _, f, _ in summary_figures(summary, axes)]
    for fig in figures:
        _drawn(fig)
        assert _smallest_font_px(fig) >= plots.MIN_FONT_PX
        for legend in fig.legends:
            box = legend.get_window_extent()
            assert all(_overlap(box, ax.get_window_extent()) == 0 for ax in fig.axes)
        assert not any(ax.get_legend() for ax in fig.axes)
    assert sum(len(fig.legends) for fig in figures) == 4  # 2 curves, 2 metric lines


def test_a_rebuilt_report_leaves_no_old_grid_pages(sweep):
    """8 cells fit one page: pages an earlier, larger grid left behind go, the rest stays."""
    figures = sweep / "figures"
    figures.mkdir()
    for name in ("attention_grid_1.png", "attention_grid_2.png", "notes.png"):
        (figures / name).write_bytes(b"old")
    write_report(sweep)
    names = {p.name for p in figures.iterdir()}
    assert "attention_grid.png" in names and "notes.png" in names
    assert not {"attention_grid_1.png", "attention_grid_2.png"} & names
