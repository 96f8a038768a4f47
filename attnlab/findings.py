"""docs/findings.md: the seed blog's claims beside attnlab's numbers, generated from summaries.

    python -m attnlab -m +experiment=blog_all hydra.sweep.dir=outputs/sweeps/blog_all
    python -m attnlab -m +experiment=blog_all data.key_encoding=scaled \
        hydra.sweep.dir=outputs/sweeps/blog_all_scaled
    python -m attnlab.findings outputs/sweeps/blog_all outputs/sweeps/blog_all_scaled

copies each sweep's summary.csv into docs/data/ and writes docs/findings.md from those
copies; with no sweep dirs it regenerates the page from the committed copies.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from attnlab.files import write_text
from attnlab.report import interval

DOCS = Path("docs")
RAW, SCALED = "blog_all_summary.csv", "blog_all_scaled_summary.csv"
FOCUSED, SCATTERED = 0.8, 0.2  # focus_rate at or above / at or below: a clear verdict


@dataclass(frozen=True)
class Claim:
    text: str
    classes: int
    features: int = 32
    attn_layers: int = 1
    focused: bool = True  # what the blog says attention does in this cell


CLAIMS = (
    Claim("Binary: attention peaks on column 1", 2),
    Claim("5 classes: still focused on column 1, by a smaller margin", 5),
    Claim("20 classes: still focused, key weight higher than at 5", 20),
    Claim("30 classes: accuracy drops, attention 'disordered' (peak elsewhere)", 30, focused=False),
    Claim("50 classes: attention disordered", 50, focused=False),
    Claim("100 classes: attention disordered, accuracy 16.9%", 100, focused=False),
    Claim("50 classes, 128 features: focus comes back, accuracy still poor", 50, features=128),
    Claim(
        "50 classes, one more Dense in the attention: focus and accuracy come back",
        50,
        attn_layers=2,
    ),
)


def cell(
    summary: pd.DataFrame, classes: int, features: int = 32, attn_layers: int = 1
) -> pd.Series:
    rows = summary[
        (summary["data.classes"] == classes)
        & (summary["data.features"] == features)
        & (summary["model.attn_layers"] == attn_layers)
    ]
    if len(rows) != 1:
        raise ValueError(
            f"summary has {len(rows)} rows for classes={classes} "
            f"features={features} attn_layers={attn_layers}; expected 1"
        )
    return rows.iloc[0]


def focus_verdict(row: pd.Series, claimed_focused: bool) -> str:
    rate, n = row["focus_rate"], int(row["n_seeds"])
    if not math.isfinite(rate):
        return "no usable seeds"
    k = round(rate * n)
    if rate >= FOCUSED:
        return "holds" if claimed_focused else f"fails: focused in {k}/{n} seeds"
    if rate <= SCATTERED:
        return f"fails: focused in {k}/{n} seeds" if claimed_focused else "holds"
    return f"depends on the seed: focused in {k}/{n}"


def above(a: pd.Series, b: pd.Series, metric: str) -> str:
    """'higher' / 'lower' when the 95% intervals do not overlap, else 'indistinguishable'."""
    if a[f"{metric}_ci_low"] > b[f"{metric}_ci_high"]:
        return "higher"
    if a[f"{metric}_ci_high"] < b[f"{metric}_ci_low"]:
        return "lower"
    return "indistinguishable"


def claims_table(summary: pd.DataFrame) -> list[str]:
    lines = [
        "| blog claim | cell | focus rate | attn_key_weight [95% CI] | val_accuracy [95% CI] | "
        "key_ablation_drop | verdict on focus |",
        "|---|---|---|---|---|---|---|",
    ]
    for claim in CLAIMS:
        row = cell(summary, claim.classes, claim.features, claim.attn_layers)
        name = f"{claim.classes} cl, {claim.features} feat, depth {claim.attn_layers}"
        lines.append(
            f"| {claim.text} | {name} | {row['focus_rate']:.2f} ({int(row['n_seeds'])} seeds) | "
            f"{interval(row, 'attn_key_weight')} | {interval(row, 'val_accuracy')} | "
            f"{row['key_ablation_drop_mean']:.3f} | {focus_verdict(row, claim.focused)} |"
        )
    return lines


def side_claims(summary: pd.DataFrame) -> list[str]:
    """The claims that compare cells, each with its verdict."""
    c5, c20 = cell(summary, 5), cell(summary, 20)
    c50, c100 = cell(summary, 50), cell(summary, 100)
    wide, deep = cell(summary, 50, features=128), cell(summary, 50, attn_layers=2)
    acc100 = c100["val_accuracy_mean"]
    return [
        f"- Key weight at 20 classes vs 5: {above(c20, c5, 'attn_key_weight')} "
        f"({c20['attn_key_weight_mean']:.3f} vs {c5['attn_key_weight_mean']:.3f}).",
        f"- 100 classes, 16.9% accuracy: attnlab measures {acc100:.3f} "
        f"({interval(c100, 'val_accuracy')}).",
        f"- 128 features at 50 classes, accuracy vs 32 features: "
        f"{above(wide, c50, 'val_accuracy')} ({interval(wide, 'val_accuracy')} vs "
        f"{interval(c50, 'val_accuracy')}).",
        f"- Depth 2 at 50 classes, accuracy vs depth 1: {above(deep, c50, 'val_accuracy')} "
        f"({interval(deep, 'val_accuracy')} vs {interval(c50, 'val_accuracy')}).",
    ]


def readings(raw: pd.DataFrame, scaled: pd.DataFrame | None) -> list[str]:
    """What the numbers say beyond the claims, each sentence computed from the summaries."""
    c50 = cell(raw, 50)
    used = c50["key_ablation_drop_mean"] / c50["val_accuracy_mean"]
    seen = c50["focus_rate"] <= SCATTERED and used >= 0.5  # the model uses what it hardly attends
    head = "Peak attention is not what the model uses." if seen else "Focus and key use."
    lines = [
        f"- **{head}** At 50 classes (32 features) attention peaks on the key in "
        f"{round(c50['focus_rate'] * c50['n_seeds'])}/{int(c50['n_seeds'])} seeds, while "
        f"shuffling the key costs {c50['key_ablation_drop_mean']:.3f} of its "
        f"{c50['val_accuracy_mean']:.3f} accuracy ({used:.0%} of it), and shuffling the "
        f"most-attended other column costs {c50['peak_ablation_drop_mean']:.3f}.",
    ]
    if scaled is None:
        return lines
    many = [c for c in sorted(raw["data.classes"].unique()) if c >= 30]
    focus_raw = max(cell(raw, int(c))["focus_rate"] for c in many)
    focus_scaled = min(cell(scaled, int(c))["focus_rate"] for c in many)
    worse = [
        int(c)
        for c in many
        if above(cell(scaled, int(c)), cell(raw, int(c)), "val_accuracy") == "lower"
    ]
    magnitude = focus_scaled >= FOCUSED and focus_raw <= SCATTERED
    head = "The 'disorder' is the raw key's magnitude." if magnitude else "Raw vs scaled key."
    share = "in every seed" if focus_scaled == 1 else f"in at least {focus_scaled:.0%} of seeds"
    accuracy = (
        f"Accuracy does not come back with it: scaled is lower than raw at "
        f"{', '.join(map(str, worse))} classes."
        if worse
        else "Scaled accuracy is nowhere lower than raw."
    )
    lines.append(
        f"- **{head}** With the key scaled onto [-1, 1], attention peaks on it {share} at "
        f"every class count from 30 up (raw: at most {focus_raw:.0%}). {accuracy}"
    )
    return lines


def grid_table(summary: pd.DataFrame, value: str, label: str) -> list[str]:
    """value by classes (rows) x (features, depth) (columns)."""
    combos = sorted(
        {
            (int(f), int(d))
            for f, d in zip(summary["data.features"], summary["model.attn_layers"], strict=True)
        }
    )
    head = ["classes"] + [f"{f} feat, depth {d}" for f, d in combos]
    lines = [f"{label}:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for classes in sorted(summary["data.classes"].unique()):
        cells = [f"{cell(summary, int(classes), f, d)[value]:.2f}" for f, d in combos]
        lines.append(f"| {classes} | " + " | ".join(cells) + " |")
    return lines + [""]


def encoding_table(raw: pd.DataFrame, scaled: pd.DataFrame) -> list[str]:
    lines = [
        "| classes | focus rate raw | focus rate scaled | val_accuracy raw | val_accuracy scaled |",
        "|---|---|---|---|---|",
    ]
    for classes in sorted(raw["data.classes"].unique()):
        r, s = cell(raw, int(classes)), cell(scaled, int(classes))
        lines.append(
            f"| {classes} | {r['focus_rate']:.2f} | {s['focus_rate']:.2f} | "
            f"{interval(r, 'val_accuracy')} | {interval(s, 'val_accuracy')} |"
        )
    return lines


def _setting(summary: pd.DataFrame, key: str) -> str:
    """The value every cell shares for a config key, or 'varied'."""
    if key not in summary:
        return "varied"
    values = summary[key].unique()
    return str(values[0]) if len(values) == 1 else "varied"


def render(raw: pd.DataFrame, scaled: pd.DataFrame | None) -> str:
    n = int(raw["n_seeds"].min())
    out = [
        "# What holds of the seed blog's attention study",
        "",
        "Generated by `python -m attnlab.findings` from the `blog_all` sweep "
        f"(`python -m attnlab -m +experiment=blog_all`: {n} seeds a cell, "
        f"{_setting(raw, 'data.samples')} samples, {_setting(raw, 'trainer.epochs')} epochs, "
        f"32 features unless said, key column {_setting(raw, 'data.attention_column')}) — "
        "the summary it read is "
        f"[`data/{RAW}`](data/{RAW}). The blog ran one seed per cell. A focus claim "
        f"**holds** when at least {FOCUSED:.0%} of seeds agree with it, **fails** when at most "
        f"{SCATTERED:.0%} do, and otherwise **depends on the seed**. Intervals are 95% "
        "bootstrap intervals of the mean across seeds. `key_ablation_drop` is the accuracy "
        "lost when the key column is shuffled: attention on a column whose removal costs "
        "nothing explains nothing.",
        "",
        *claims_table(raw),
        "",
        "Comparisons the blog makes:",
        "",
        *side_claims(raw),
        "",
        "## Reading",
        "",
        *readings(raw, scaled),
        "",
        "## Depth and width across the whole grid",
        "",
        *grid_table(
            raw, "focus_rate", "Focus rate (share of seeds whose mean attention peaks on the key)"
        ),
        *grid_table(raw, "val_accuracy_mean", "Mean val_accuracy"),
        *grid_table(raw, "attn_key_weight_mean", "Mean attn_key_weight"),
    ]
    if scaled is not None:
        out += [
            "## Raw vs scaled key",
            "",
            "The raw key holds the class index (up to 99 beside N(0, 1) noise); "
            "`data.key_encoding=scaled` maps it onto [-1, 1] (summary: "
            f"[`data/{SCALED}`](data/{SCALED})). 32 features, depth 1:",
            "",
            *encoding_table(raw, scaled),
            "",
        ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m attnlab.findings",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("raw_sweep", type=Path, nargs="?", help="the blog_all sweep dir")
    parser.add_argument("scaled_sweep", type=Path, nargs="?", help="the same, key_encoding=scaled")
    parser.add_argument("--docs", type=Path, default=DOCS)
    args = parser.parse_args(argv)
    data = args.docs / "data"
    data.mkdir(parents=True, exist_ok=True)
    for sweep, name in ((args.raw_sweep, RAW), (args.scaled_sweep, SCALED)):
        if sweep is not None:
            shutil.copyfile(sweep / "summary.csv", data / name)
    if not (data / RAW).exists():
        print(
            f"attnlab.findings: error: raw_sweep is required: {data / RAW} does not exist",
            file=sys.stderr,
        )
        return 2
    raw = pd.read_csv(data / RAW)
    scaled = pd.read_csv(data / SCALED) if (data / SCALED).exists() else None
    write_text(args.docs / "findings.md", render(raw, scaled))
    print(args.docs / "findings.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
