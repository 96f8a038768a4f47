"""docs/findings.md verdicts from a hand-made summary."""

import itertools
import math

import pandas as pd

from attnlab.findings import main, render
from attnlab.stats import wilson_interval

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
        assert err.startswith("attnlab.findings: error: ") and message in err
        assert len(err.strip().splitlines()) == 1
        assert {p: p.read_bytes() for p in docs.rglob("*") if p.is_file()} == before
