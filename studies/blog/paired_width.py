"""How much narrower the paired intervals of comparisons.csv are than unpaired ones.

    python -m studies.blog.paired_width outputs/sweeps/blog_controls \
        --axis model.attention --metric val_accuracy --min-classes 20

For every paired row of the sweep's comparisons (attnlab.runs.comparisons, read through
attnlab.compare), the same two cells' seeds are compared again as if they were independent
(Welch's t, attnlab.engine.paired.welch_t) and the two intervals' widths are set side by
side. Reads the product's outputs; computes no statistic of its own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import attnlab
from attnlab.engine.paired import welch_t


def width_table(sweep_dir: Path, axis: str, metric: str, min_classes: int = 0) -> pd.DataFrame:
    """One row per paired comparison of `axis` on `metric` (at data.classes >= min_classes):
    the paired interval's width, Welch's on the same seeds, and their ratio."""
    rows = attnlab.compare(sweep_dir, axis=axis, metric=metric)
    rows = rows[rows["pairing"] == "paired"]
    if "data.classes" in rows:
        rows = rows[pd.to_numeric(rows["data.classes"]) >= min_classes]
    report = pd.read_csv(sweep_dir / "report.csv")
    report = report[report["status"].isin(("completed", "cached"))]
    out = []
    for _, row in rows.iterrows():
        where = report["data.classes"] == row["data.classes"] if "data.classes" in row else True
        value = report[where & (report[axis].astype(str) == str(row["value"]))][metric]
        base = report[where & (report[axis].astype(str) == str(row["baseline"]))][metric]
        welch = welch_t(value.to_numpy(float), base.to_numpy(float))
        paired_width = row["diff_ci_high"] - row["diff_ci_low"]
        welch_width = float(welch.ci_high - welch.ci_low)
        out.append(
            {
                "classes": row.get("data.classes"),
                "value": row["value"],
                "baseline": row["baseline"],
                "n_pairs": row["n_pairs"],
                "paired_width": paired_width,
                "welch_width": welch_width,
                "ratio": paired_width / welch_width if welch_width > 0 else np.nan,
            }
        )
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.blog.paired_width")
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--axis", default="model.attention")
    parser.add_argument("--metric", default="val_accuracy")
    parser.add_argument("--min-classes", type=int, default=20)
    args = parser.parse_args(argv)
    table = width_table(args.sweep_dir, args.axis, args.metric, args.min_classes)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    finite = table["ratio"].dropna()
    print(
        f"paired / Welch width: median {finite.median():.2f}, "
        f"range {finite.min():.2f}-{finite.max():.2f} over {len(finite)} comparisons"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
