"""docs/findings.md verdicts from a hand-made summary."""

import itertools
import math

import pandas as pd
import pytest

from attnlab.engine.stats import wilson_interval
from studies.blog.findings import Controls, main, render, t_difference, t_interval

METRICS = ("val_accuracy", "attn_key_weight", "key_ablation_drop", "peak_ablation_drop")


def _summary():
    rows = []
    for classes, features, depth in itertools.product([2, 5, 20, 30, 50, 100], [32, 128], [1, 2]):
        focus = {2: 1.0, 5: 0.9, 20: 1.0, 30: 0.5, 50: 0.1, 100: 0.0}[classes]
        acc = 1.0 if classes <= 20 else 0.3
        if classes == 50 and (features == 128 or depth == 2):
            focus, acc = 0.9, (0.3 if features == 128 else 0.9)
        low, high = wilson_interval(round(focus * 10), 10)
        row = {
            "data.classes": classes,
            "data.features": features,
            "model.attn_layers": depth,
            "n_seeds": 10,
            "focus_rate": focus,
            "focus_rate_ci_low": low,
            "focus_rate_ci_high": high,
            "val_accuracy_focused_mean": acc + 0.05 if focus > 0 else math.nan,
            "val_accuracy_unfocused_mean": acc - 0.05 if focus < 1 else math.nan,
        }
        for metric, mean in zip(METRICS, (acc, 0.2 + classes / 1000, 0.4, 0.0), strict=True):
            row |= {
                f"{metric}_mean": mean,
                f"{metric}_std": 0.03,
                f"{metric}_ci_low": mean - 0.02,
                f"{metric}_ci_high": mean + 0.02,
            }
        rows.append(row)
    return pd.DataFrame(rows)


def test_verdicts_follow_focus_rates_and_intervals():
    page = render(_summary(), scaled=_summary())
    lines = {line.split(" | ")[0].lstrip("| "): line for line in page.splitlines()}
    assert lines["Binary: attention peaks on column 1"].endswith("| holds |")
    thirty = lines["30 classes: accuracy drops, attention 'disordered' (peak elsewhere)"]
    assert thirty.endswith("| the seeds cannot resolve it: focused in 5/10 [0.24, 0.76] |")
    # 9/10 focused: Wilson [0.60, 0.98] lies above one half
    assert lines["5 classes: still focused on column 1, by a smaller margin"].endswith("| holds |")
    assert "| 1.050 / – |" in lines["Binary: attention peaks on column 1"]  # no unfocused seed
    assert "2/10 to 8/10 focused" in page
    assert lines["50 classes: attention disordered"].endswith("| holds |")
    assert lines["100 classes: attention disordered, accuracy 16.9%"].endswith("| holds |")
    assert "- Key weight at 20 classes vs 5: indistinguishable" in page
    assert "- Depth 2 at 50 classes, accuracy vs depth 1: higher" in page
    assert "- 128 features at 50 classes, accuracy vs 32 features: indistinguishable" in page
    assert "## Raw vs scaled key" in page
    assert "attention peaks on the key in 1/10 [0.02, 0.40] seeds" in page  # 50 classes


def test_findings_command_copies_summaries_and_regenerates(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    _summary().to_csv(sweep / "summary.csv", index=False)
    docs = tmp_path / "docs"
    assert main([str(sweep), "--docs", str(docs)]) == 0
    assert (docs / "data" / "blog_all_summary.csv").exists()
    first = (docs / "findings.md").read_text()
    assert main(["--docs", str(docs)]) == 0  # from the committed copy alone
    assert (docs / "findings.md").read_text() == first


def test_findings_command_checks_inputs_before_writing(tmp_path, capsys):
    good = tmp_path / "sweep"
    good.mkdir()
    _summary().to_csv(good / "summary.csv", index=False)
    docs = tmp_path / "docs"
    assert main([str(good), "--docs", str(docs)]) == 0
    before = {p: p.read_bytes() for p in docs.rglob("*") if p.is_file()}

    old = tmp_path / "old"  # a summary from before focus_rate had an interval
    old.mkdir()
    _summary().drop(columns=["focus_rate_ci_low"]).to_csv(old / "summary.csv", index=False)
    partial = tmp_path / "partial"  # a sweep without the 100-class cells
    partial.mkdir()
    summary = _summary()
    summary[summary["data.classes"] != 100].to_csv(partial / "summary.csv", index=False)
    for args, message in (
        ([str(tmp_path / "nope")], "raw_sweep: " + str(tmp_path / "nope" / "summary.csv")),
        ([str(old)], "lacks column(s) focus_rate_ci_low"),
        ([str(partial)], "summary has 0 rows for classes=100"),
        ([str(good), str(partial)], "scaled_sweep: summary has 0 rows for classes=100"),
    ):
        assert main([*args, "--docs", str(docs)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("studies.blog.findings: error: ") and message in err
        assert len(err.strip().splitlines()) == 1
        assert {p: p.read_bytes() for p in docs.rglob("*") if p.is_file()} == before


def _control_rows(acc, **config):
    """Summary rows of 10 seeds with val_accuracy mean acc(classes, ...) and sd 0.1."""
    rows = []
    for classes in (2, 20, 50, 100):
        row = {"data.classes": classes, **config, "n_seeds": 10, "focus_rate": 0.1}
        row |= {"val_accuracy_mean": acc(classes), "val_accuracy_std": 0.1}
        rows.append(row)
    return rows


def _controls(oracle_falls):
    learned = {2: 1.0, 20: 0.8, 50: 0.4, 100: 0.2}
    modes = {
        "learned": learned.get,
        "uniform": lambda k: learned[k] - 0.2,  # well below learned
        "none": lambda k: learned[k] - 0.05,  # within the interval
        "oracle": (lambda k: learned[k] - 0.3) if oracle_falls else (lambda k: 1.0),
    }
    rows = [r for m, acc in modes.items() for r in _control_rows(acc, **{"model.attention": m})]
    budget = [
        r
        for m in ("learned", "oracle")
        for e, gain in ((20, 0.0), (80, 0.1), (320, 0.3))
        for r in _control_rows(
            lambda k, g=gain: learned[k] + g, **{"model.attention": m, "trainer.epochs": e}
        )
    ]
    nonlinear = [
        r
        for a, gain in (("linear", 0.0), ("relu", 0.3), ("tanh", -0.3))
        for r in _control_rows(lambda k, g=gain: learned[k] + g, **{"model.hidden_activation": a})
    ]
    return Controls(pd.DataFrame(rows), pd.DataFrame(budget), pd.DataFrame(nonlinear))


def test_student_t_interval_and_welch_difference_by_hand():
    row = pd.Series({"val_accuracy_mean": 0.5, "val_accuracy_std": 0.1, "n_seeds": 10})
    est = t_interval(row, "val_accuracy")
    half = 2.2621571627 * 0.1 / math.sqrt(10)  # t_{0.975, 9}
    assert (est.low, est.high) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-9)
    near_one = pd.Series({"val_accuracy_mean": 0.99, "val_accuracy_std": 0.1, "n_seeds": 10})
    assert t_interval(near_one, "val_accuracy").high == 1.0  # an accuracy's range
    other = pd.Series({"val_accuracy_mean": 0.3, "val_accuracy_std": 0.1, "n_seeds": 10})
    diff = t_difference(row, other, "val_accuracy")
    half = 2.1009220402 * math.sqrt(2 * 0.01 / 10)  # Welch: df = 18 for equal sd and n
    assert (diff.mean, diff.low, diff.high) == pytest.approx((0.2, 0.2 - half, 0.2 + half))


@pytest.mark.parametrize("oracle_falls", [True, False])
def test_why_accuracy_falls_reads_the_controls(oracle_falls):
    page = render(_summary(), scaled=None, controls=_controls(oracle_falls))
    section = page[page.index("## Why accuracy falls") :]
    assert "- **Learned vs uniform:** higher at 2, 20, 50, 100 classes, lower at no" in section
    assert "- **Learned attention vs none:** higher at no class count" in section
    if oracle_falls:
        assert "**Perfect attention falls too.**" in section
        assert "the bottleneck is not the attention" in section
        assert "Learned attention beats perfect attention at 2, 20, 50, 100 classes" in section
        assert "- **Not supported: 'more capacity in the attention'.**" in section
    else:
        assert "**Perfect attention holds.** " in section
    assert "- **Learned attention, 20 → 320 epochs:** 2 classes gains" in section
    assert "- **relu hidden layer vs linear:** 2 classes higher" in section
    assert "- **tanh hidden layer vs linear:** 2 classes lower" in section
    # Table rows carry the Student-t interval: 1.0 ± 2.262 * 0.1 / sqrt(10).
    assert "| 2 | 1.000 [0.928, 1.000] |" in section


def test_differences_pair_by_seed_and_are_holm_adjusted_over_the_page():
    """With per-seed values (the sweeps' report.csv) a difference is paired t over the shared
    seeds (scipy's ttest_rel), and within a page's Family its verdict uses Holm's p."""
    from scipy import stats

    from studies.blog.findings import FAMILY, SEED_VALUES, Family, t_difference

    def row(job, values):
        return pd.Series({"job": job, SEED_VALUES: {"val_accuracy": dict(enumerate(values))}})

    a, b = row("a", [0.90, 0.80, 0.85, 0.70]), row("b", [0.60, 0.65, 0.50, 0.55])
    c, d = row("c", [0.50, 0.52, 0.49, 0.51]), row("d", [0.49, 0.50, 0.50, 0.49])
    test = stats.ttest_rel([0.90, 0.80, 0.85, 0.70], [0.60, 0.65, 0.50, 0.55])
    alone = t_difference(a, b, "val_accuracy")
    ci = test.confidence_interval(0.95)
    assert (alone.low, alone.high) == pytest.approx((ci.low, ci.high)) and alone.paired
    family = Family()
    token = FAMILY.set(family)
    try:
        t_difference(a, b, "val_accuracy"), t_difference(c, d, "val_accuracy")
        t_difference(a, b, "val_accuracy")  # stated twice: counted once
        family.close()
        first, second = t_difference(a, b, "val_accuracy"), t_difference(c, d, "val_accuracy")
    finally:
        FAMILY.reset(token)
    raw = sorted(
        [test.pvalue, stats.ttest_rel([0.5, 0.52, 0.49, 0.51], [0.49, 0.5, 0.5, 0.49]).pvalue]
    )
    assert family.size == 2
    assert min(first.p_adjusted, second.p_adjusted) == pytest.approx(2 * raw[0])
    assert first.above_zero and not second.above_zero


def _boundary_csv():
    rows = [  # features, depth, boundary, ci_low, ci_high
        (32, 1, 22.0, 18.0, 26.0),
        (32, 2, 24.0, 20.0, 28.5),
        (128, 1, 45.0, 38.0, 52.0),
        (128, 2, 30.0, 25.0, math.nan),
    ]
    return pd.DataFrame(
        [
            {
                "model.attn_layers": d,
                "data.features": f,
                "metric": "focus_rate",
                "level": 0.5,
                "boundary": b,
                "boundary_ci_low": lo,
                "boundary_ci_high": hi,
                "cells_probed": 9,
                "models_trained": 96,
            }
            for f, d, b, lo, hi in rows
        ]
    )


def test_where_focus_breaks_reads_boundary_csv_and_says_what_moves_the_break(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    _summary().to_csv(sweep / "summary.csv", index=False)
    search = tmp_path / "search"
    search.mkdir()
    _boundary_csv().to_csv(search / "boundary.csv", index=False)
    docs = tmp_path / "docs"
    assert main([str(sweep), "--docs", str(docs), "--boundary", str(search)]) == 0
    page = (docs / "findings.md").read_text()
    assert (docs / "data" / "blog_boundary.csv").exists()
    assert "## Where focus breaks" in page
    assert "| 32 | 1 | 22.0 | [18.0, 26.0] | 9 | 96 |" in page
    assert "| 128 | 2 | 30.0 | [25.0, open] | 9 | 96 |" in page
    assert "**Depth 2 vs 1, 32 features:** 24.0 vs 22.0 classes: not resolved" in page
    assert "**128 vs 32 features, depth 1:** 45.0 vs 22.0 classes: focus breaks **later**" in page
    assert "**128 vs 32 features, depth 2:** 30.0 vs 24.0 classes: not resolved" in page
    assert "**128 features, depth 1** stopped at its cap (96 models)" in page
    assert "**32 features, depth 1** stopped" not in page
    assert main(["--docs", str(docs)]) == 0  # from the committed copy alone
    assert (docs / "findings.md").read_text() == page
    assert main([str(sweep), "--docs", str(docs), "--boundary", str(tmp_path / "none")]) == 2
