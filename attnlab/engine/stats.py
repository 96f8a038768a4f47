"""Interval estimates for the few seeds of a cell: a mean's Student-t interval, a share's Wilson.

Pure numpy/scipy (no TensorFlow, no Hydra), so the report, the figures and the findings page
draw every interval from here, and the simulation that checks their coverage runs in a second.

Why Student-t and not a bootstrap: a cell has 5-10 seeds. The percentile bootstrap of a mean
at n = 5 covers the true mean of normal data only ~83% of the time (its resamples never spread
wider than the sample itself); the t interval is exact for normal data and covers 95%
(`coverage` below measures both, and the tests hold the t interval to [0.93, 0.97]).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy import stats

LEVEL = 0.95  # every interval attnlab reports


def t_interval(
    values: np.ndarray, level: float = LEVEL, bounds: tuple[float, float] = (-math.inf, math.inf)
) -> tuple[float, float]:
    """Student-t interval of the mean of the finite values, cut to `bounds`, the range the
    metric can take (an accuracy's [0, 1]): the true mean lies in that range, so the cut
    never changes whether the interval holds it (its coverage), it only drops impossible
    values such as an accuracy of 1.02.

    NaN below two values (one seed has no spread); a sample with no spread gives the point.
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean = float(values.mean())
    if np.all(values == values[0]):
        return mean, mean
    return t_interval_from_moments(mean, float(values.std(ddof=1)), n, level, bounds)


def t_interval_from_moments(
    mean: float,
    sd: float,
    n: int,
    level: float = LEVEL,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> tuple[float, float]:
    """t_interval from a summary's mean, sd (ddof 1) and count: mean ± t sd / sqrt(n), cut to
    bounds; NaN below two values or for a sd that is not finite."""
    if n < 2 or not math.isfinite(sd):
        return math.nan, math.nan
    half = t_quantile(level, n - 1) * sd / math.sqrt(n)
    return max(mean - half, bounds[0]), min(mean + half, bounds[1])


@lru_cache(maxsize=256)
def t_quantile(level: float, df: float) -> float:
    """The two-sided Student-t quantile for `level` (scipy's ppf is ~0.3 ms a call)."""
    return float(stats.t.ppf(0.5 + level / 2, df=df))


def wilson_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a share k/n (e.g. of seeds whose attention focused); NaN for n = 0.

    Wilson rather than k/n +- a normal half-width: at 10 seeds a share of 10/10 would get the
    width-zero interval [1, 1]; Wilson gives [0.72, 1].
    """
    if n == 0:
        return math.nan, math.nan
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def coverage(
    interval: Callable[[np.ndarray], tuple[float, float]],
    n: int,
    trials: int,
    seed: int = 0,
) -> float:
    """Share of `trials` samples of n standard-normal values whose interval holds the mean, 0."""
    rng = np.random.default_rng(seed)
    samples = rng.standard_normal((trials, n))
    hits = 0
    for sample in samples:
        low, high = interval(sample)
        hits += low <= 0.0 <= high
    return hits / trials


def percentile_bootstrap(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile bootstrap attnlab used before the t interval, kept to measure its
    coverage beside it (README: Sweeps): not used for any reported number."""
    values = np.asarray(values, dtype=float)
    res = stats.bootstrap(
        (values,), np.mean, confidence_level=level, method="percentile", n_resamples=999, rng=0
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
