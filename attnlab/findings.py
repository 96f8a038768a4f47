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
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from attnlab.files import write_text
from attnlab.report import focus, interval
from attnlab.stats import wilson_interval

DOCS = Path("docs")
RAW, SCALED = "blog_all_summary.csv", "blog_all_scaled_summary.csv"


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


def most_focus(row: pd.Series) -> bool | None:
    """True when the Wilson interval of focus_rate lies above one half (most seeds focus),
    False when below, None when it spans one half: the seeds cannot tell."""
    low, high = row["focus_rate_ci_low"], row["focus_rate_ci_high"]
    if _spans_half(low, high) or not math.isfinite(low):
        return None
    return bool(low > 0.5)


def unresolved(n: int) -> str:
    """Which counts of focused seeds out of n leave the Wilson interval spanning one half."""
    ks = [k for k in range(n + 1) if _spans_half(*wilson_interval(k, n))]
    return f"with {n} seeds: {ks[0]}/{n} to {ks[-1]}/{n} focused" if ks else f"never at {n} seeds"


def _spans_half(low: float, high: float) -> bool:
    return low <= 0.5 <= high


def focus_verdict(row: pd.Series, claimed_focused: bool) -> str:
    if not math.isfinite(row["focus_rate"]):
        return "no usable seeds"
    most = most_focus(row)
    if most is None:
        return f"the seeds cannot resolve it: focused in {focus(row)}"
    return "holds" if most == claimed_focused else f"fails: focused in {focus(row)}"


def above(a: pd.Series, b: pd.Series, metric: str) -> str:
    """'higher' / 'lower' when the 95% intervals do not overlap, else 'indistinguishable'."""
    if a[f"{metric}_ci_low"] > b[f"{metric}_ci_high"]:
        return "higher"
    if a[f"{metric}_ci_high"] < b[f"{metric}_ci_low"]:
        return "lower"
    return "indistinguishable"


def claims_table(summary: pd.DataFrame) -> list[str]:
    lines = [
        "| blog claim | cell | focused seeds [95% Wilson] | attn_key_weight [95% CI] | "
        "val_accuracy [95% CI] | acc focused / unfocused | key_ablation_drop | verdict on focus |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for claim in CLAIMS:
        row = cell(summary, claim.classes, claim.features, claim.attn_layers)
        name = f"{claim.classes} cl, {claim.features} feat, depth {claim.attn_layers}"
        lines.append(
            f"| {claim.text} | {name} | {focus(row)} | "
            f"{interval(row, 'attn_key_weight')} | {interval(row, 'val_accuracy')} | "
            f"{coupling(row)} | "
            f"{row['key_ablation_drop_mean']:.3f} | {focus_verdict(row, claim.focused)} |"
        )
    return lines


def coupling(row: pd.Series) -> str:
    """Mean val_accuracy of the seeds that focused / of those that did not."""
    means = (row[f"val_accuracy_{g}_mean"] for g in ("focused", "unfocused"))
    return " / ".join("–" if not math.isfinite(m) else f"{m:.3f}" for m in means)


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
    seen = most_focus(c50) is False and used >= 0.5  # the model uses what it hardly attends
    head = "Peak attention is not what the model uses." if seen else "Focus and key use."
    lines = [
        f"- **{head}** At 50 classes (32 features) attention peaks on the key in "
        f"{focus(c50)} seeds, while "
        f"shuffling the key costs {c50['key_ablation_drop_mean']:.3f} of its "
        f"{c50['val_accuracy_mean']:.3f} accuracy ({used:.0%} of it), and shuffling the "
        f"most-attended other column costs {c50['peak_ablation_drop_mean']:.3f}.",
    ]
    lines.append(split_reading(raw))
    if scaled is None:
        return lines
    many = [c for c in sorted(raw["data.classes"].unique()) if c >= 30]
    focus_raw = max(cell(raw, int(c))["focus_rate"] for c in many)
    focus_scaled = min(cell(scaled, int(c))["focus_rate"] for c in many)
    resolved_raw = all(most_focus(cell(raw, int(c))) is False for c in many)
    resolved_scaled = all(most_focus(cell(scaled, int(c))) is True for c in many)
    worse = [
        int(c)
        for c in many
        if above(cell(scaled, int(c)), cell(raw, int(c)), "val_accuracy") == "lower"
    ]
    magnitude = resolved_scaled and resolved_raw  # both resolved by the Wilson intervals
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


def split_reading(raw: pd.DataFrame) -> str:
    """Accuracy of focused vs unfocused seeds in the two mixed cells the blog discusses."""
    mixed = [("20 classes", cell(raw, 20)), ("50 classes x 128 features", cell(raw, 50, 128))]
    higher = all(
        r["val_accuracy_unfocused_mean"] > r["val_accuracy_focused_mean"] for _, r in mixed
    )
    head = "Unfocused seeds score higher." if higher else "Focused and unfocused seeds."
    parts = [
        f"at {name} the focused seeds reach {r['val_accuracy_focused_mean']:.3f} and the "
        f"unfocused {r['val_accuracy_unfocused_mean']:.3f}"
        for name, r in mixed
    ]
    return (
        f"- **{head}** Within a cell, {'; '.join(parts)}: the cell's mean accuracy hides "
        "the split: peak attention on the key does not go with higher accuracy."
        if higher
        else f"- **{head}** Within a cell, {'; '.join(parts)}."
    )


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
        "| classes | focused raw | focused scaled | val_accuracy raw | val_accuracy scaled |",
        "|---|---|---|---|---|",
    ]
    for classes in sorted(raw["data.classes"].unique()):
        r, s = cell(raw, int(classes)), cell(scaled, int(classes))
        lines.append(
            f"| {classes} | {focus(r)} | {focus(s)} | "
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
        f"[`data/{RAW}`](data/{RAW}). The blog ran one seed per cell. A seed focuses when "
        "its mean attention peaks on the key column. A focus claim **holds** when the 95% "
        "Wilson interval of the share of focused seeds lies wholly on the claim's side of "
        "one half (most seeds agree with it), **fails** when it lies wholly on the other "
        f"side, and otherwise the seeds cannot resolve it ({unresolved(n)}). The other "
        "intervals are 95% Student-t intervals of the mean across seeds. "
        "`acc focused / unfocused` is the mean val_accuracy of the focused and of the "
        "unfocused seeds. `key_ablation_drop` is the accuracy lost when the key column is "
        "shuffled: attention on a column whose removal costs nothing explains nothing.",
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


REQUIRED = (
    "data.classes",
    "data.features",
    "model.attn_layers",
    "n_seeds",
    "focus_rate",
    "focus_rate_ci_low",
    "focus_rate_ci_high",
    "val_accuracy_focused_mean",
    "val_accuracy_unfocused_mean",
    *(
        f"{m}_{k}"
        for m in ("val_accuracy", "attn_key_weight")
        for k in ("mean", "ci_low", "ci_high")
    ),
    "key_ablation_drop_mean",
    "peak_ablation_drop_mean",
)


class InputError(ValueError):
    """A sweep dir or summary findings cannot use; its message is the one-line error."""


def load_summary(path: Path, key: str) -> pd.DataFrame:
    """summary.csv at path with every column findings reads, or InputError naming key."""
    if not path.exists():
        raise InputError(f"{key}: {path} does not exist")
    try:
        summary = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise InputError(f"{key}: {path} is not a readable CSV ({err})") from err
    missing = [c for c in REQUIRED if c not in summary]
    if missing:
        raise InputError(
            f"{key}: {path} lacks column(s) {', '.join(missing)} "
            "(rebuild it with python -m attnlab.report <sweep dir>)"
        )
    return summary


def check_cells(summary: pd.DataFrame, key: str, cells: list[tuple[int, int, int]]) -> None:
    """Each (classes, features, attn_layers) the page reads is exactly one row."""
    for classes, features, depth in cells:
        try:
            cell(summary, classes, features, depth)
        except ValueError as err:
            raise InputError(f"{key}: {err}") from err


def read_inputs(
    raw_path: Path, scaled_path: Path | None, keys: tuple[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Both summaries, checked for every column and cell the page needs."""
    raw = load_summary(raw_path, keys[0])
    check_cells(raw, keys[0], [(c.classes, c.features, c.attn_layers) for c in CLAIMS])
    scaled = None
    if scaled_path is not None:
        scaled = load_summary(scaled_path, keys[1])
        check_cells(scaled, keys[1], [(int(c), 32, 1) for c in raw["data.classes"].unique()])
    return raw, scaled


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
    # Every input is read and checked, and the page rendered, before anything is written:
    # a wrong sweep dir must not overwrite the committed copies in docs/data/.
    if args.raw_sweep is not None:
        raw_path, keys = args.raw_sweep / "summary.csv", ("raw_sweep", "scaled_sweep")
        scaled_path = args.scaled_sweep / "summary.csv" if args.scaled_sweep else None
    else:
        raw_path, keys = data / RAW, (f"raw_sweep (not given; {data / RAW})", "scaled copy")
        scaled_path = data / SCALED if (data / SCALED).exists() else None
    try:
        raw, scaled = read_inputs(raw_path, scaled_path, keys)
        page = render(raw, scaled)
    except ValueError as err:  # InputError, or a cell the page's grid tables lack
        print(f"attnlab.findings: error: {err}", file=sys.stderr)
        return 2
    if args.raw_sweep is not None:
        data.mkdir(parents=True, exist_ok=True)
        write_text(data / RAW, raw_path.read_text())
        if scaled_path is not None:
            write_text(data / SCALED, scaled_path.read_text())
    write_text(args.docs / "findings.md", page)
    print(args.docs / "findings.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
