"""Claims: what a researcher expects of a sweep's cells, stated in the config (`claims`) and
judged on the seeds (claims.csv, report.md's "Claims" section; docs/claims.md).

Pure (pandas, numpy, scipy; no Hydra, no TensorFlow): `parse_claim` reads one claim's text,
`evaluate_claims` judges parsed claims on a tidy per-seed table, one row per cell and seed
(report.csv's rows: config columns, `seed`, `status`, metrics), so it works the same
whatever stores the seeds.

The grammar, kept small on purpose (anything else is refused in one line):

    [at KEY=VALUE[, KEY=VALUE ...]:] METRIC OP NUMBER          threshold claim
    [at KEY=VALUE[, KEY=VALUE ...]:] METRIC of KEY=A OP B      comparison claim

OP is one of > >= < <= (or ≥ ≤). A threshold claim is judged at every cell whose config
has each `at` value (every cell without `at`): "the mean of METRIC over seeds OP NUMBER". A
comparison claim is judged for every pair of cells that differ only in KEY, one at A and
one at B: "mean METRIC at A OP mean METRIC at B", estimated by the mean of the per-seed
differences A - B over the seeds both cells ran (a seed draws the same streams in both
cells: the pairs are independent across seeds); seeds without a partner are dropped and
counted. METRIC is a number of a seed's record (val_accuracy, attn_key_weight, ...) or
focus_rate, the share of seeds whose attention focused (attn_focused).

Verdict (attnlab.engine.sequential.claim_verdict): holds when the whole interval lies on
the claim's side, fails when it lies wholly on the other side, unresolved otherwise. The
interval rule is a parameter: "fixed" gives summary.csv's intervals (Student-t of a mean,
Wilson of focus_rate) and for comparisons paired t (Newcombe's paired score interval for
focus_rate, as comparisons.csv); "sequence" gives the anytime-valid confidence sequence of
attnlab.engine.sequential, valid however the seed count was chosen (adaptive seeds);
"looks" gives the fixed intervals at 1 - alpha/K for an adaptive sweep that could stop at K
seed counts (`hydra.sweeper.adaptive.interval=looks`: Bonferroni over the looks, on top of
the family correction below).

Multiplicity: a claim judged at k cells is a family of k statements. Each of its intervals
is made at level 1 - alpha/k (Bonferroni), so with probability >= 1 - alpha every one of
them holds its true mean, and then no verdict of the claim is wrong: the chance of any
wrong "holds" (or "fails") among the claim's rows is <= alpha. Bonferroni rather than Holm
because a verdict is read off an interval, and Holm has no simultaneous intervals to give.
A claim at one cell is not corrected (its interval is summary.csv's). Different claims are
not corrected against each other: each claim is its own statement, as on the findings page.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from attnlab.engine import paired
from attnlab.engine.metrics import RUN_METRICS, metric_bounds
from attnlab.engine.sequential import (
    Claim,
    ascii_ops,
    claim_verdict,
    confidence_sequence,
    look_level,
    snap_to_bounds,
)
from attnlab.engine.stats import LEVEL, t_interval

RATE = "focus_rate"  # a share of seeds: the mean of their attn_focused flags
RATE_COLUMN = "attn_focused"
# Per-seed record fields that are not numbers to average (a flag, a column's name).
NOT_METRICS = frozenset({"attn_focused", "attn_peak_column_name", "still_improving"})
CLAIM_METRICS = (RATE, *[m for m in RUN_METRICS if m not in NOT_METRICS])
USABLE = ("completed", "cached")  # as the summary: a diverged or failed seed does not count
FORMS = (
    "a claim reads '[at KEY=VALUE, ...:] METRIC OP NUMBER' or "
    "'[at KEY=VALUE, ...:] METRIC of KEY=A OP B', OP one of > >= < <= ≥ ≤"
)
Intervals = Literal["fixed", "sequence", "looks"]
INTERVALS: tuple[Intervals, ...] = ("fixed", "sequence", "looks")
Verdict = Literal["holds", "fails", "unresolved"]

_KEY = r"[A-Za-z_][\w.]*"
_WORD = r"[^\s,:=<>≤≥]+"
_AT = re.compile(r"^at\s+(?P<conds>[^:]*):(?P<body>.*)$", re.DOTALL)
_COND = re.compile(rf"^\s*(?P<key>{_KEY})\s*=\s*(?P<value>{_WORD})\s*$")
_COMPARISON = re.compile(
    rf"^\s*(?P<metric>\w+)\s+of\s+(?P<key>{_KEY})\s*=\s*(?P<a>{_WORD})\s*"
    rf"(?P<op>>=|<=|>|<)\s*(?P<b>{_WORD})\s*$"
)


class ClaimError(ValueError):
    """A claim outside the grammar; the message is one line (the config check raises it as
    attnlab.engine.config.ConfigError)."""


@dataclass(frozen=True)
class StatedClaim:
    """One parsed claim.

    Attributes:
        text: the claim as written (claims.csv's `claim` column).
        at: (key, value) conditions a cell's config must meet, value as written.
        claim: metric, op and threshold; for a comparison the threshold is 0 and the claim
            is about the per-seed difference A - B.
        key, a, b: a comparison's key and its two values (None for a threshold claim).
    """

    text: str
    at: tuple[tuple[str, str], ...]
    claim: Claim
    key: str | None = None
    a: str | None = None
    b: str | None = None

    @property
    def comparison(self) -> bool:
        return self.key is not None


def _refuse(text: str, why: str) -> ClaimError:
    return ClaimError(f"claims={text!r} is not allowed: {why}; {FORMS}")


def parse_claim(
    text: str, keys: Iterable[str] | None = None, metrics: Sequence[str] = CLAIM_METRICS
) -> StatedClaim:
    """Parse one claim (module docstring: the grammar).

    Args:
        text: the claim, e.g. "at data.classes=20, model.attn_layers=1: focus_rate > 0.5".
        keys: the config keys an `at` condition or a comparison may name; None: any.
        metrics: the metrics a claim may name.

    Raises:
        ClaimError: one line naming the claim, what is wrong and the forms allowed.
    """
    if not isinstance(text, str) or not text.strip():
        raise _refuse(str(text), "a claim is a non-empty text")
    known = None if keys is None else list(keys)
    body, at = ascii_ops(text).strip(), []
    match = _AT.match(body)
    if match:
        for part in match["conds"].split(","):
            cond = _COND.match(part)
            if cond is None:
                raise _refuse(text, f"{part.strip()!r} is not a KEY=VALUE condition")
            at.append((cond["key"], cond["value"]))
        body = match["body"]
    elif body.startswith("at ") or ":" in body:
        raise _refuse(text, "'at' conditions end with a colon before the claim")
    comparison = _COMPARISON.match(body)
    if comparison:
        metric, key = comparison["metric"], comparison["key"]
        claim = Claim(metric, comparison["op"], 0.0)
        if comparison["a"] == comparison["b"]:
            raise _refuse(text, f"a comparison needs two different values of {key}")
    else:
        try:
            claim = Claim.parse(body)
        except ValueError:
            raise _refuse(text, f"{body.strip()!r} is neither form") from None
        key = None
    if claim.metric not in metrics:
        raise _refuse(text, f"unknown metric {claim.metric!r} (metrics: {', '.join(metrics)})")
    named = [k for k, _ in at] + ([key] if key else [])
    if len(set(k for k, _ in at)) < len(at) or (key is not None and key in dict(at)):
        raise _refuse(text, "a key is named twice")
    for name in named:
        if known is not None and name not in known:
            raise _refuse(text, f"unknown key {name!r} ({_suggest(name, known)})")
    if comparison:
        return StatedClaim(text, tuple(at), claim, key, comparison["a"], comparison["b"])
    return StatedClaim(text, tuple(at), claim)


def _suggest(name: str, known: list[str]) -> str:
    """ "did you mean data.classes?" for a near miss, else the keys a claim may name."""
    close = difflib.get_close_matches(name, known, n=1)
    return f"did you mean {close[0]}?" if close else f"keys: {', '.join(known)}"


def parse_claims(texts: Iterable[str], keys: Iterable[str] | None = None) -> list[StatedClaim]:
    """Every claim parsed, or the first refusal (ClaimError, one line)."""
    known = None if keys is None else list(keys)
    return [parse_claim(text, known) for text in texts]


# --- judging: intervals, verdicts and the family correction ------------------------------


@dataclass(frozen=True)
class Judged:
    """One row's numbers: estimate, interval, seeds (or pairs) and verdict."""

    estimate: float
    ci_low: float
    ci_high: float
    n_seeds: int
    verdict: Verdict
    interval: str
    level: float


def judge_values(
    claim: Claim,
    values: np.ndarray,
    intervals: Intervals = "fixed",
    level: float = LEVEL,
    differences: bool = False,
) -> Judged:
    """One cell's (or pair's) verdict from its per-seed values in seed order.

    Args:
        claim: metric, op and threshold (a comparison's: threshold 0 on the differences).
        values: finite per-seed values (focus_rate: 0/1 flags), or per-seed differences
            A - B when `differences`.
        intervals: "fixed" (summary.csv's intervals, paired t for differences) or
            "sequence" (the anytime-valid confidence sequence); "looks" is "fixed" at the
            level given (the caller has corrected it for the looks: `evaluate_claims`).
        level: the interval's level (already corrected for the claim's family).
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    estimate = float(values.mean()) if n else math.nan
    low, high, name = _interval(claim.metric, values, intervals, level, differences)
    verdict = claim_verdict(low, high, claim.op, claim.threshold)
    return Judged(estimate, low, high, n, verdict, name, level)


def _interval(
    metric: str, values: np.ndarray, intervals: Intervals, level: float, differences: bool
) -> tuple[float, float, str]:
    """(low, high, the interval's name) of the mean of values; NaN where none can be made."""
    rate = metric == RATE
    if intervals == "sequence":
        lo, hi = (0.0, 1.0) if rate else metric_bounds(metric)
        bounds = (lo - hi, hi - lo) if differences else (lo, hi)
        if not (math.isfinite(bounds[0]) and math.isfinite(bounds[1])):
            return math.nan, math.nan, f"confidence sequence: {metric} has no finite range"
        low, high = confidence_sequence(snap_to_bounds(values, bounds), bounds, level)
        return low, high, "confidence sequence (betting)"
    if intervals not in ("fixed", "looks"):
        raise ValueError(f"intervals must be one of {INTERVALS}, got {intervals!r}")
    if differences:  # of focus_rate flags: judge_rate_pairs (Newcombe) instead
        result = paired.paired_t(values, level)
        return float(result.ci_low), float(result.ci_high), "paired t"
    return fixed_interval(metric, values, None, level)


def fixed_interval(
    metric: str, x: np.ndarray, y: np.ndarray | None = None, level: float = LEVEL
) -> tuple[float, float, str]:
    """The fixed report's interval of a cell's mean, or with y of the mean difference x - y
    over paired seeds: Student t (Wilson for focus_rate), paired t (Newcombe's paired score
    interval for focus_rate). (low, high, its name); NaN where none can be made. The
    adaptive `looks` rule (attnlab.engine.rounds) judges with this at 1 - alpha/K."""
    x = np.asarray(x, dtype=float)
    rate = metric == RATE
    if y is not None:
        if rate:
            if len(x) == 0:
                return math.nan, math.nan, "Newcombe paired"
            result = paired.paired_rate_difference(*paired.paired_counts(x, y), level=level)
            return float(result.ci_low), float(result.ci_high), "Newcombe paired"
        result = paired.paired_t(x - np.asarray(y, dtype=float), level)
        return float(result.ci_low), float(result.ci_high), "paired t"
    if rate:  # the closed form of stats.wilson_interval (summary.csv's), ~100x faster
        wilson = paired.wilson_bounds(x.sum(), len(x), level)
        return float(wilson[0]), float(wilson[1]), "Wilson"
    low, high = t_interval(x, level, metric_bounds(metric))
    return low, high, "Student t"


def judge_rate_pairs(
    claim: Claim, x: np.ndarray, y: np.ndarray, intervals: Intervals, level: float
) -> Judged:
    """A focus_rate comparison from the paired 0/1 flags of A (x) and B (y), seed order:
    Newcombe's paired score interval of the difference of rates (as comparisons.csv), or
    the confidence sequence of the per-seed differences."""
    if intervals == "sequence":
        return judge_values(claim, x - y, "sequence", level, differences=True)
    n = len(x)
    if n == 0:
        return Judged(math.nan, math.nan, math.nan, 0, "unresolved", "Newcombe paired", level)
    result = paired.paired_rate_difference(*paired.paired_counts(x, y), level=level)
    low, high = float(result.ci_low), float(result.ci_high)
    verdict = claim_verdict(low, high, claim.op, claim.threshold)
    return Judged(float(result.estimate), low, high, n, verdict, "Newcombe paired", level)


def family_level(level: float, members: int) -> float:
    """Each interval's level when a claim is judged at `members` cells: 1 - alpha/members
    (Bonferroni), the level itself for one member."""
    return 1.0 - (1.0 - level) / max(members, 1)


def correction_text(members: int) -> str:
    """claims.csv's `correction` column."""
    return "none (1 cell)" if members <= 1 else f"Bonferroni over {members} cells"


# --- the table: which cells a claim applies to -------------------------------------------


def same_value(cell: Any, wanted: str) -> bool:
    """A config value (int, float, bool, text, as read back from a CSV) equals a claim's
    VALUE as written: 20 == "20" == 20.0, True == "true"."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return False
    if isinstance(cell, bool | np.bool_):
        return str(bool(cell)).lower() == wanted.lower()
    if str(cell) == wanted:
        return True
    try:
        return float(cell) == float(wanted)
    except (TypeError, ValueError):
        return str(cell).lower() == wanted.lower() and wanted.lower() in ("true", "false")


def seed_values(rows: pd.DataFrame, metric: str) -> pd.Series:
    """A cell's usable, finite values of metric by seed, in seed order (focus_rate: the
    attn_focused flags as 1.0/0.0); a seed listed twice counts once (its first row)."""
    rows = rows[rows["status"].isin(USABLE)]
    column = RATE_COLUMN if metric == RATE else metric
    if column not in rows:
        return pd.Series(dtype=float)
    raw = rows[column]
    values = raw.map(_flag) if metric == RATE else pd.to_numeric(raw, errors="coerce")
    series = pd.Series(values.to_numpy(dtype=float), index=rows["seed"].to_numpy())
    series = series[np.isfinite(series.to_numpy()) & pd.notna(series.index)]
    series = series[~series.index.duplicated()]
    return series.sort_index()


def _flag(value: Any) -> float:
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return float(value.strip().lower() == "true")
    if isinstance(value, int | float) and value in (0, 1):
        return float(value)
    return math.nan


def _cells(runs: pd.DataFrame, keys: list[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """(config, rows) of each cell: the distinct combinations of the keys, in order of
    their values (numbers before text, unknown last), whatever the table's row order."""
    if not keys:
        return [({}, runs)]
    out = []
    for values, rows in runs.groupby(keys, dropna=False, sort=False):
        combo = values if isinstance(values, tuple) else (values,)
        out.append((dict(zip(keys, combo, strict=True)), rows))
    return sorted(out, key=lambda cell: [_sort_key(cell[0][k]) for k in keys])


def _sort_key(value: Any) -> tuple[int, float, str]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return (1, 0.0, str(value))
    return (0, number, "") if math.isfinite(number) else (2, 0.0, "")


def _applies(config: Mapping[str, Any], at: Sequence[tuple[str, str]]) -> bool:
    return all(key in config and same_value(config[key], value) for key, value in at)


FIXED_COLUMNS = ["metric", "estimate", "ci_low", "ci_high", "n_seeds", "verdict"]
EXTRA_COLUMNS = ["interval", "level", "correction", "paired", "n_unpaired", "note"]


def evaluate_claims(
    claims: Sequence[StatedClaim | str],
    runs: pd.DataFrame,
    keys: Sequence[str],
    shown: Sequence[str] | None = None,
    intervals: Intervals = "fixed",
    level: float = LEVEL,
    looks: int = 1,
) -> pd.DataFrame:
    """claims.csv: one row per claim and cell (comparison: pair of cells) it applies to.

    Args:
        claims: parsed claims, or texts (a text that does not parse gets one unresolved row
            whose note says why, so a report never fails on an old record's claim).
        runs: the tidy per-seed table: the config columns `keys`, `seed`, `status` and the
            metric columns (report.csv's rows; a failed cell's rows have status failed).
        keys: the config columns that make a cell (not `seeds`).
        shown: the config columns claims.csv names a cell by (the swept ones); default:
            the keys with more than one value.
        intervals: "fixed", "sequence" or "looks" (module docstring).
        level: the family-wise level of each claim's verdicts.
        looks: with "looks", K, the seed counts an adaptive cell could stop at: each
            interval is at 1 - alpha/(members K).

    Returns:
        Columns `claim`, the shown config columns, FIXED_COLUMNS, EXTRA_COLUMNS. A claim
        that applies to no cell keeps one row: verdict unresolved, a note saying why.
    """
    keys = list(keys)
    if shown is None:
        shown = [k for k in keys if runs[k].nunique(dropna=True) > 1]
    shown = list(shown)
    cells = _cells(runs, keys)
    rows: list[dict[str, Any]] = []
    for given in claims:
        if isinstance(given, str):
            try:
                stated = parse_claim(given, keys)
            except ClaimError as err:
                rows.append(_empty_row(given, str(err)))
                continue
        else:
            stated = given
        rows += _claim_rows(stated, cells, keys, shown, intervals, level, looks)
    columns = ["claim", *shown, *FIXED_COLUMNS, *EXTRA_COLUMNS]
    frame = pd.DataFrame(rows, columns=columns)
    for key in shown:  # as given (20, not 20.0 from a column with blanks)
        frame[key] = pd.Series([row.get(key) for row in rows], index=frame.index, dtype=object)
    frame["n_unpaired"] = frame["n_unpaired"].astype("Int64")  # blank for threshold claims
    return frame


def _empty_row(text: str, note: str, metric: str = "") -> dict[str, Any]:
    return {
        "claim": text,
        "metric": metric,
        "estimate": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "n_seeds": 0,
        "verdict": "unresolved",
        "note": note,
    }


def _claim_rows(
    stated: StatedClaim,
    cells: list[tuple[dict[str, Any], pd.DataFrame]],
    keys: list[str],
    shown: list[str],
    intervals: Intervals,
    level: float,
    looks: int = 1,
) -> list[dict[str, Any]]:
    """The rows of one claim, its intervals corrected for the family of its rows (and for
    the looks under "looks")."""
    missing = [k for k, _ in stated.at if k not in keys] + (
        [stated.key] if stated.key and stated.key not in keys else []
    )
    if missing:
        return [_empty_row(stated.text, f"unknown key {missing[0]!r}", stated.claim.metric)]
    matching = [(config, rows) for config, rows in cells if _applies(config, stated.at)]
    members = (
        _comparison_members(stated, matching, keys)
        if stated.comparison
        else [(config, rows, None) for config, rows in matching]
    )
    if not members:
        where = ", ".join(f"{k}={v}" for k, v in stated.at) or "any cell"
        what = (
            f"no pair of cells at {where} differs only in {stated.key} "
            f"({stated.key}={stated.a} vs {stated.b})"
            if stated.comparison
            else f"no cell has {where}"
        )
        return [_empty_row(stated.text, f"applies to no cell: {what}", stated.claim.metric)]
    samples = [_sample(stated, rows, other) for _, rows, other in members]
    with_values = sum(1 for x, _y, _u in samples if len(x))
    each = family_level(level, with_values)
    if intervals == "looks":
        each = look_level(each, looks)
    out = []
    for (config, _, _), (x, y, unpaired) in zip(members, samples, strict=True):
        judged = _judge(stated, x, y, intervals, each)
        note = "" if len(x) else "no usable seed" + (" pairs" if stated.comparison else "s")
        if stated.comparison and len(x) == 1 and intervals != "sequence":
            note = "one pair: no interval"
        out.append(
            {
                "claim": stated.text,
                **{k: config.get(k) for k in shown if k != stated.key},
                "metric": stated.claim.metric,
                "estimate": judged.estimate,
                "ci_low": judged.ci_low,
                "ci_high": judged.ci_high,
                "n_seeds": judged.n_seeds,
                "verdict": judged.verdict,
                "interval": judged.interval
                + (f", Bonferroni over {looks} looks" if intervals == "looks" else ""),
                "level": round(judged.level, 6),
                "correction": correction_text(with_values),
                "paired": "by seed" if stated.comparison else "",
                "n_unpaired": unpaired if stated.comparison else None,
                "note": note,
            }
        )
    return out


def _comparison_members(
    stated: StatedClaim, matching: list[tuple[dict[str, Any], pd.DataFrame]], keys: list[str]
) -> list[tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]]:
    """(config, rows at A, rows at B) of each pair of matching cells that differ only in
    the comparison's key."""
    assert stated.key is not None and stated.a is not None and stated.b is not None
    others = [k for k in keys if k != stated.key]
    at_a: dict[str, tuple[dict[str, Any], pd.DataFrame]] = {}
    at_b: dict[str, pd.DataFrame] = {}
    for config, rows in matching:
        context = repr([config.get(k) for k in others])
        if same_value(config[stated.key], stated.a):
            at_a.setdefault(context, (config, rows))
        elif same_value(config[stated.key], stated.b):
            at_b.setdefault(context, rows)
    return [(config, rows, at_b[ctx]) for ctx, (config, rows) in at_a.items() if ctx in at_b]


def _sample(
    stated: StatedClaim, rows: pd.DataFrame, other: pd.DataFrame | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """(values of A or of the cell, values of B (empty for a threshold claim), seeds
    dropped for want of a partner), each in seed order over the seeds both have."""
    metric = stated.claim.metric
    x = seed_values(rows, metric)
    if other is None:
        return x.to_numpy(), np.empty(0), 0
    y = seed_values(other, metric)
    shared = x.index.intersection(y.index).sort_values()
    unpaired = len(x) + len(y) - 2 * len(shared)
    return x[shared].to_numpy(), y[shared].to_numpy(), unpaired


def _judge(
    stated: StatedClaim, x: np.ndarray, y: np.ndarray, intervals: Intervals, level: float
) -> Judged:
    if not stated.comparison:
        return judge_values(stated.claim, x, intervals, level)
    if stated.claim.metric == RATE:
        return judge_rate_pairs(stated.claim, x, y, intervals, level)
    return judge_values(stated.claim, x - y, intervals, level, differences=True)


def claim_summary(rows: pd.DataFrame) -> str:
    """ "holds" / "fails" / "unresolved" if every row of a claim agrees, else the counts,
    e.g. "holds at 3, unresolved at 1 of 4 cells"."""
    counts = rows["verdict"].value_counts()
    if len(counts) == 1:
        return f"**{counts.index[0]}** at all {len(rows)}"
    parts = [f"**{v}** at {counts[v]}" for v in ("holds", "fails", "unresolved") if v in counts]
    return ", ".join(parts) + f" of {len(rows)}"
