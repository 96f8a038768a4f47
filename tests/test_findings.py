"""docs/findings.md verdicts from a hand-made summary."""

import itertools

import pandas as pd

from attnlab.findings import main, render

METRICS = ("val_accuracy", "attn_key_weight", "key_ablation_drop", "peak_ablation_drop")


def _summary():
    rows = []
    for classes, features, depth in itertools.product([2, 5, 20, 30, 50, 100], [32, 128], [1, 2]):
        focus = {2: 1.0, 5: 0.9, 20: 1.0, 30: 0.5, 50: 0.1, 100: 0.0}[classes]
        acc = 1.0 if classes <= 20 else 0.3
        if classes == 50 and (features == 128 or depth == 2):
            focus, acc = 0.9, (0.3 if features == 128 else 0.9)
        row = {
            "data.classes": classes,
            "data.features": features,
            "model.attn_layers": depth,
            "n_seeds": 10,
            "focus_rate": focus,
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
    assert (
        "depends on the seed: focused in 5/10"
        in lines["30 classes: accuracy drops, attention 'disordered' (peak elsewhere)"]
    )
    assert lines["50 classes: attention disordered"].endswith("| holds |")
    assert lines["100 classes: attention disordered, accuracy 16.9%"].endswith("| holds |")
    assert "- Key weight at 20 classes vs 5: indistinguishable" in page
    assert "- Depth 2 at 50 classes, accuracy vs depth 1: higher" in page
    assert "- 128 features at 50 classes, accuracy vs 32 features: indistinguishable" in page
    assert "## Raw vs scaled key" in page
    assert "attention peaks on the key in 1/10 seeds" in page  # 50 classes: focus_rate 0.1


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
