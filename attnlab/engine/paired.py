"""Two-cell comparisons at a few seeds: differences of means and of rates, and Holm's correction.

Pure numpy/scipy, vectorised over leading axes: every function takes arrays whose last axis
holds the seeds (or counts of any shape), so the report compares a handful of cells with the
same code that the coverage simulations run on 20,000 samples at once.

Why these methods (attnlab cells have 5-10 seeds):

- Means: Student-t. Paired on the per-seed differences when two cells share seeds (seed s
  draws the same streams in both cells, so the pairs are independent across seeds and the
  paired interval is exact for normal differences whatever the correlation within a pair);
  Welch's unequal-variance t when there are no pairs (two cells need not share a variance).
- Rates (a share of seeds, e.g. that focused): Newcombe's hybrid score intervals (method 10
  of Newcombe 1998, paired and independent versions), built from Wilson intervals of each
  rate, which keep near-nominal coverage at n = 5-10 where the Wald interval collapses to a
  point at 0/n or n/n. P-values are exact (McNemar's binomial test on the discordant seeds;
  Fisher's test for independent cells), as normal approximations are poor at n < 20.
- Multiplicity: Holm's step-down adjustment, valid under any dependence between the tests
  (comparisons against one baseline share it, so they are correlated) and uniformly more
  powerful than Bonferroni.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import stats

from attnlab.engine.stats import LEVEL

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike


class Difference(NamedTuple):
    """A difference (value minus baseline) with its two-sided interval and p-value.

    Every field has the shape of the inputs without their seed axis (0-d for one comparison).
    """

    estimate: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    p_value: FloatArray


class Share(NamedTuple):
    """A share of seeds with its Wilson interval (same shapes as Difference)."""

    estimate: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray


def _z(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2))


def _no_spread(estimate: FloatArray, se: FloatArray, p_value: FloatArray) -> FloatArray:
    """A sample without spread (se = 0) has the point as interval; its p-value is the limit of
    the t test: 1 for a zero difference, 0 for any other (the differences are all identical)."""
    flat = se == 0
    return np.where(flat, np.where(estimate == 0, 1.0, 0.0), p_value)


def paired_t(differences: ArrayLike, level: float = LEVEL) -> Difference:
    """Paired t: mean of per-seed differences (value - baseline), its t interval and p-value.

    Args:
        differences: (..., n) finite per-seed differences, n >= 2 (NaN results below 2).
        level: two-sided confidence level of the interval.

    Why paired: a seed's data, initialisation and shuffles are shared by both cells, so much
    of a seed's luck cancels in the difference; the test needs only that the n differences
    are independent (they are: one per seed) and roughly normal.
    """
    d = np.asarray(differences, dtype=float)
    n = d.shape[-1]
    mean = d.mean(axis=-1)
    if n < 2:
        nan = np.full_like(mean, math.nan)
        return Difference(mean, nan, nan, nan)
    se = d.std(axis=-1, ddof=1) / math.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_value = 2 * stats.t.sf(np.abs(mean / se), df=n - 1)
    half = stats.t.ppf(0.5 + level / 2, df=n - 1) * se
    return Difference(mean, mean - half, mean + half, _no_spread(mean, se, p_value))


def welch_t(value: ArrayLike, baseline: ArrayLike, level: float = LEVEL) -> Difference:
    """Welch's t: difference of two independent means, interval and p-value.

    Args:
        value, baseline: (..., n1) and (..., n2) finite per-seed values, n1, n2 >= 2.
        level: two-sided confidence level.

    Why Welch rather than Student's pooled t: two cells of a sweep need not have the same
    spread across seeds (a deeper model can be less stable), and Welch costs little power
    when they do. Used only where no seeds pair up.
    """
    x, y = np.asarray(value, dtype=float), np.asarray(baseline, dtype=float)
    n1, n2 = x.shape[-1], y.shape[-1]
    estimate = x.mean(axis=-1) - y.mean(axis=-1)
    if n1 < 2 or n2 < 2:
        nan = np.full_like(estimate, math.nan)
        return Difference(estimate, nan, nan, nan)
    v1, v2 = x.var(axis=-1, ddof=1) / n1, y.var(axis=-1, ddof=1) / n2
    se = np.sqrt(v1 + v2)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
        df = np.where(se == 0, n1 + n2 - 2, df)  # no spread: any df gives the point
        p_value = 2 * stats.t.sf(np.abs(estimate / se), df=df)
    half = stats.t.ppf(0.5 + level / 2, df=df) * se
    return Difference(estimate, estimate - half, estimate + half, _no_spread(estimate, se, p_value))


def holm(p_values: ArrayLike) -> FloatArray:
    """Holm's step-down adjusted p-values, in the input order, along the last axis.

    NaN p-values (comparisons that could not be tested) stay NaN and do not count in the
    family size m. The i-th smallest of m p-values becomes max over j <= i of
    min(1, (m - j + 1) p_(j)), so `adjusted < alpha` rejects exactly Holm's hypotheses and
    the family-wise error rate stays <= alpha under any dependence.
    """
    p = np.asarray(p_values, dtype=float)
    m = np.sum(np.isfinite(p), axis=-1, keepdims=True)
    order = np.argsort(p, axis=-1, kind="stable")  # NaN sort last
    ranked = np.take_along_axis(p, order, axis=-1)
    multiplier = m - np.arange(p.shape[-1])  # m, m-1, ... for the finite ones
    with np.errstate(invalid="ignore"):
        stepped = np.minimum(np.maximum.accumulate(np.fmax(ranked * multiplier, 0), axis=-1), 1)
    stepped = np.where(np.isfinite(ranked), stepped, math.nan)
    adjusted = np.empty_like(stepped)
    np.put_along_axis(adjusted, order, stepped, axis=-1)
    return adjusted


def wilson_bounds(
    k: ArrayLike, n: ArrayLike, level: float = LEVEL
) -> tuple[FloatArray, FloatArray]:
    """Wilson score interval of k/n in closed form (vectorised; k may be fractional, e.g. a
    count of wins with ties as halves). Agrees with attnlab.engine.stats.wilson_interval for
    integer k; NaN where n = 0."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    z2 = _z(level) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        centre = (k + z2 / 2) / (n + z2)
        half = math.sqrt(z2) * np.sqrt(n * p * (1 - p) + z2 / 4) / (n + z2)
    low = np.where(n > 0, np.clip(centre - half, 0, 1), math.nan)
    high = np.where(n > 0, np.clip(centre + half, 0, 1), math.nan)
    return low, high


def prob_improvement(differences: ArrayLike, level: float = LEVEL) -> Share:
    """Share of paired seeds where value beats baseline (difference > 0), ties counted half.

    Why ties as halves: a tie (e.g. both cells at accuracy 1.0) is evidence for neither, and
    halving keeps the share at 0.5 when the cells are identical, as for a continuous metric
    under no effect. The interval is Wilson's on (wins + ties/2) of n: exact in meaning when
    there are no ties, an approximation with them (a tie is not a Bernoulli outcome).
    """
    d = np.asarray(differences, dtype=float)
    n = np.full(d.shape[:-1], d.shape[-1], dtype=float)
    wins = (d > 0).sum(axis=-1) + 0.5 * (d == 0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n > 0, wins / n, math.nan)
    low, high = wilson_bounds(wins, n, level)
    return Share(share, low, high)


def paired_counts(
    value: ArrayLike, baseline: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(a, b, c, d) of a paired 2x2 table from per-seed 0/1 flags along the last axis:
    a = both 1, b = value 1 and baseline 0, c = value 0 and baseline 1, d = both 0."""
    x, y = np.asarray(value, dtype=bool), np.asarray(baseline, dtype=bool)
    a, b, c, d = (cell.sum(axis=-1).astype(float) for cell in (x & y, x & ~y, ~x & y, ~x & ~y))
    return a, b, c, d


def paired_rate_difference(
    a: ArrayLike, b: ArrayLike, c: ArrayLike, d: ArrayLike, level: float = LEVEL
) -> Difference:
    """Difference of two paired rates, (a + b)/n - (a + c)/n, by Newcombe's method 10, with the
    exact McNemar p-value.

    Newcombe (1998), "Improved confidence intervals for the difference between binomial
    proportions based on paired data", Stat Med 17:2635, method 10: Wilson intervals
    (l1, u1), (l2, u2) of the two rates combined through phi, the phi coefficient of the
    table, its numerator a d - b c reduced by n/2 when positive (never below 0; as Newcombe
    specifies, and as Fagerland, Lydersen & Laake's and Altman et al.'s implementations do):
        low  = D - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2)
        high = D + sqrt((u1 - p1)^2 - 2 phi (u1 - p1)(p2 - l2) + (p2 - l2)^2).
    Chosen because it needs no continuity correction, never leaves [-1, 1], is not a point at
    0/n or n/n, and Newcombe's evaluation found coverage close to nominal at small n.

    p-value: exact McNemar, a two-sided binomial test of b out of the b + c discordant seeds
    at 1/2 (concordant seeds say nothing about the difference); 1 when b + c = 0.
    """
    a, b, c, d = (np.asarray(v, dtype=float) for v in (a, b, c, d))
    n = a + b + c + d
    with np.errstate(divide="ignore", invalid="ignore"):
        p1, p2 = (a + b) / n, (a + c) / n
        margins = (a + b) * (c + d) * (a + c) * (b + d)
        cross = a * d - b * c
        # Newcombe's phi: a positive cross-product shrunk by n/2 (never below 0), a negative one
        # kept; 0 when a margin is empty.
        cross = np.where(cross > 0, np.fmax(cross - n / 2, 0), cross)
        phi = np.where(margins > 0, cross / np.sqrt(margins), 0.0)
    l1, u1 = wilson_bounds(a + b, n, level)
    l2, u2 = wilson_bounds(a + c, n, level)
    low_half = np.sqrt(
        np.fmax((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0)
    )
    high_half = np.sqrt(
        np.fmax((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0)
    )
    discordant = b + c
    p_value = np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(b, c), discordant, 0.5))
    p_value = np.where(discordant > 0, p_value, 1.0)
    estimate = p1 - p2
    return Difference(estimate, estimate - low_half, estimate + high_half, p_value)


def unpaired_rate_difference(
    k1: ArrayLike, n1: ArrayLike, k2: ArrayLike, n2: ArrayLike, level: float = LEVEL
) -> Difference:
    """Difference of two independent rates k1/n1 - k2/n2 by Newcombe's method 10 (the hybrid
    score interval: method 10 of Newcombe 1998, Stat Med 17:873), with Fisher's exact
    two-sided p-value.

    The interval is the paired one with phi = 0:
        low  = D - sqrt((p1 - l1)^2 + (u2 - p2)^2),  high = D + sqrt((u1 - p1)^2 + (p2 - l2)^2).
    Fisher's test conditions on both margins: exact at any n, conservative at small n.
    """
    k1, n1, k2, n2 = (np.asarray(v, dtype=float) for v in (k1, n1, k2, n2))
    estimate, low, high = unpaired_rate_interval(k1, n1, k2, n2, level)
    return Difference(estimate, low, high, _fisher(k1, n1, k2, n2))


def unpaired_rate_interval(
    k1: ArrayLike, n1: ArrayLike, k2: ArrayLike, n2: ArrayLike, level: float = LEVEL
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(difference, low, high) of unpaired_rate_difference without Fisher's p-value, which
    scipy computes one table at a time (the coverage simulation needs only the interval)."""
    k1, n1, k2, n2 = (np.asarray(v, dtype=float) for v in (k1, n1, k2, n2))
    with np.errstate(divide="ignore", invalid="ignore"):
        p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_bounds(k1, n1, level)
    l2, u2 = wilson_bounds(k2, n2, level)
    estimate = p1 - p2
    low = estimate - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = estimate + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return estimate, low, high


def _fisher(k1: FloatArray, n1: FloatArray, k2: FloatArray, n2: FloatArray) -> FloatArray:
    """Fisher's exact two-sided p-value of each 2x2 table (scipy's test is one table a call;
    the report asks for few)."""

    def one(k1_: float, n1_: float, k2_: float, n2_: float) -> float:
        if n1_ == 0 or n2_ == 0:
            return math.nan
        table = [[k1_, n1_ - k1_], [k2_, n2_ - k2_]]
        return float(stats.fisher_exact(np.asarray(table, dtype=int)).pvalue)

    return np.asarray(np.vectorize(one, otypes=[float])(k1, n1, k2, n2), dtype=float)
