"""Where focus breaks: an adaptive search for the axis value where a rate crosses a level.

Role: the pure core (numpy/scipy only) behind `hydra.sweeper.boundary`. Given the probes
trained so far along an integer config axis (e.g. `data.classes`), it fits one monotone
curve, reports the crossing point with a 95% interval, and says which cell to train next
(or why the search is done). The sweeper trains the cells; this module never trains.

The model. The rate (e.g. focus_rate, the share of seeds whose attention focused) is a
2-parameter logistic curve in t = log(x) (or in x), written around its crossing point:

    logit p(x) = logit(level) + slope * (t(x) - t(boundary))

so the boundary is a parameter of its own. All probes are fitted jointly by maximum
likelihood: binomial counts per cell. A metric's mean (per-seed values in [0, 1], e.g.
attn_key_weight) uses the same binomial likelihood on the per-seed sums as a
quasi-likelihood with dispersion 1: a value in [0, 1] with mean p has variance at most
p(1 - p), so that bounds its variance and the interval stays conservative.

Why the interval is valid. It is the profile-likelihood interval of the boundary: every b
whose profile deviance 2 * (max loglik - max over slope of loglik(b, slope)) is at most z^2.
With one fixed design, z = 1.96 (chi-square(1), Wilks' theorem) gives 95% as seeds grow; placing
probes from the data seen so far keeps that (the placement rule depends only on past
outcomes, so it factors out of the likelihood, and the likelihood-ratio statistic keeps its
chi-square limit). Stopping once the interval is narrow does not: a search looks at its
interval after every step and stops on a lucky narrow one (simulated: 84-87% coverage at z =
1.96). So the cut is Pocock's constant for the rule's number of looks (z = 2.69 for the
default 22): a repeated confidence interval (Jennison & Turnbull), which holds the boundary at
every look at once with 95% probability, hence at whichever look the search stops.
`simulate_search` runs the whole adaptive procedure (placement, stopping, cap) on known
curves, including misspecified ones, and docs/boundary.md tabulates the coverage it measures
(`python -m attnlab.engine.boundary` prints that table).

Design. The search opens with `initial_cells` probes spread evenly in t over [low, high],
then adds one probe of `seeds_per_probe` seeds per step at the integer x that most shrinks
the boundary's asymptotic variance (a c-optimal sequential design, evaluated at the current
fit): near the current boundary, at a spread that pins down the slope. A probe at an x
already probed adds seeds to that cell; no x is ever a second cell.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special, stats

from attnlab.engine.stats import LEVEL

KEY = "hydra.sweeper.boundary"
# The steepest curve the fit considers: the logit moves by at most this much over one class.
# A steeper curve is not identifiable on an integer axis, and the cap keeps the fit finite
# when the probes are perfectly separated (all focused below some x, none above).
MAX_LOGIT_PER_CLASS = 10.0
GRID_POINTS = 48  # coarse scan of the profile deviance before the interval ends are refined
NEWTON_STEPS = 40  # inner fit of the slope at a fixed boundary (safeguarded Newton)
REFINE_STEPS = 20  # golden-section / bisection steps: ~1e-4 of the grid spacing
MARGIN = 0.1  # the fit looks this share of the t-range beyond [low, high] on each side
POCOCK_PATHS = 200_000
RIDGE = 1e-8  # keeps the design's information matrix invertible before the slope is known

MetricKind = Literal["rate", "mean"]
Direction = Literal["falling", "rising"]


class BoundaryError(ValueError):
    """A bad `hydra.sweeper.boundary.*` value (the message names the key, value and what is
    allowed), or probes the fit cannot use."""


def _bad(field: str, value: object, allowed: str) -> BoundaryError:
    return BoundaryError(f"{KEY}.{field}={value!r}: {allowed}")


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclass(frozen=True)
class BoundaryRule:
    """What to search and when to stop.

    Attributes:
        low: Smallest axis value the search may probe (an integer; >= 1 on a log axis).
        high: Largest axis value the search may probe (an integer > low).
        level: The rate (or mean) whose crossing is the boundary, in (0, 1).
        width: Stop once the boundary's 95% interval is narrower than this, in axis units.
        seeds_per_probe: Seeds trained per probe step (a new cell or more seeds for a cell).
        max_models: Stop before training more than this many models in all.
        log_axis: Fit the curve in log(x) (class counts act multiplicatively) or in x.
        initial_cells: Cells probed first, spread evenly over [low, high] (in log(x) if
            log_axis); the first fit needs them.
        direction: "falling" (the rate drops as x grows, as focus does with more classes)
            or "rising". The fit keeps the slope's sign: without it, data that never cross
            fit a falling curve past high as well as a rising one before low.
    """

    low: int
    high: int
    level: float = 0.5
    width: float = 8.0
    seeds_per_probe: int = 8
    max_models: int = 200
    log_axis: bool = True
    initial_cells: int = 4
    direction: Direction = "falling"

    def __post_init__(self) -> None:
        self._check_range()
        if self.direction not in ("falling", "rising"):
            raise _bad("direction", self.direction, "'falling' or 'rising'")
        self._check_counts()
        if not 0.0 < float(self.level) < 1.0:
            raise _bad("level", self.level, "a rate or a [0, 1] metric's level, in (0, 1)")
        if not float(self.width) > 0.0 or not math.isfinite(self.width):
            raise _bad("width", self.width, "a positive interval width on the axis")

    def _check_range(self) -> None:
        if not _is_int(self.low):
            raise _bad("low", self.low, "an integer axis value")
        if not _is_int(self.high):
            raise _bad("high", self.high, "an integer axis value")
        if self.low >= self.high:
            raise _bad("high", self.high, f"empty range: must be > low={self.low}")
        if self.log_axis and self.low < 1:
            raise _bad("low", self.low, "must be >= 1 on a log axis (log_axis=true)")

    def _check_counts(self) -> None:
        if not _is_int(self.seeds_per_probe) or self.seeds_per_probe < 1:
            raise _bad("seeds_per_probe", self.seeds_per_probe, "an integer >= 1")
        span = self.high - self.low + 1
        if not _is_int(self.initial_cells) or not 3 <= self.initial_cells <= span:
            allowed = f"an integer from 3 (the fit has 2 parameters) to {span} (the range)"
            raise _bad("initial_cells", self.initial_cells, allowed)
        first = self.initial_cells * self.seeds_per_probe
        if not _is_int(self.max_models) or self.max_models < first:
            allowed = f"an integer >= initial_cells * seeds_per_probe = {first}"
            raise _bad("max_models", self.max_models, allowed)

    def to_t(self, x: ArrayLike) -> np.ndarray:
        """The fit's axis: log(x) on a log axis, else x."""
        values = np.asarray(x, dtype=float)
        return np.log(values) if self.log_axis else values

    def to_x(self, t: ArrayLike) -> np.ndarray:
        """Back from the fit's axis to the config's."""
        values = np.asarray(t, dtype=float)
        return np.exp(values) if self.log_axis else values

    def initial_xs(self) -> list[int]:
        """The opening cells: evenly spaced in t, rounded, distinct, ends included."""
        t_low, t_high = self.to_t([self.low, self.high])
        t_even = np.linspace(t_low, t_high, self.initial_cells)
        xs = np.clip(np.rint(self.to_x(t_even)), self.low, self.high).astype(int)
        unique = sorted(set(xs.tolist()))
        spare = (x for x in range(self.low, self.high + 1) if x not in unique)
        while len(unique) < self.initial_cells:  # rounding merged two cells: fill a gap
            unique = sorted([*unique, next(spare)])
        return unique


@dataclass(frozen=True)
class Probe:
    """One cell's outcome: `successes` of `trials` seeds (a rate), or a metric's per-seed sum.

    Attributes:
        x: The axis value (an integer).
        successes: Focused seeds for a rate; the sum of the per-seed values for a mean.
        trials: Seeds trained in the cell.
        sum_squares: For a metric's mean only, the sum of the squared per-seed values (the
            fit reports the dispersion from them); None for a rate.
    """

    x: int
    successes: float
    trials: int
    sum_squares: float | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.x):
            raise BoundaryError(f"probe x={self.x!r}: an integer axis value")
        if self.trials < 0 or not 0.0 <= self.successes <= self.trials:
            raise BoundaryError(f"probe x={self.x}: {self.successes} of {self.trials} seeds")

    @classmethod
    def from_values(cls, x: int, values: Sequence[float] | np.ndarray) -> Probe:
        """A metric's cell (e.g. attn_key_weight) from its per-seed values in [0, 1]."""
        array = np.asarray(values, dtype=float)
        array = array[np.isfinite(array)]
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise BoundaryError(f"probe x={x}: per-seed values must lie in [0, 1]")
        return cls(x, float(array.sum()), int(array.size), float((array**2).sum()))


@dataclass(frozen=True)
class BoundaryEstimate:
    """The fitted crossing and its 95% profile-likelihood interval, on the config's axis.

    Attributes:
        boundary: Where the fitted curve crosses the level; NaN when that lies outside
            [low, high] (the level is not crossed in the range).
        ci_low: Lower end of the interval; NaN when open (the data allow a boundary below
            the range, down to where the fit stops looking, MARGIN beyond low).
        ci_high: Upper end; NaN when open beyond high.
        slope: The fitted logit slope per unit of t (log(x) or x); negative for a rate that
            falls with x. Capped at MAX_LOGIT_PER_CLASS per class when the probes separate.
        dispersion: 1 for a rate; for a metric's mean the Pearson estimate of its
            quasi-binomial dispersion (reported only: the interval uses the bound 1).
        cells_probed: Distinct axis values in the fit.
        models_trained: Seeds summed over the cells.
    """

    boundary: float
    ci_low: float
    ci_high: float
    slope: float
    dispersion: float
    cells_probed: int
    models_trained: int

    @property
    def width(self) -> float:
        """ci_high - ci_low; inf when either end is open."""
        if math.isnan(self.ci_low) or math.isnan(self.ci_high):
            return math.inf
        return self.ci_high - self.ci_low


@dataclass(frozen=True)
class ProbeRequest:
    """Train `add_seeds` more seeds at x: a new cell, or more seeds for the cell already there."""

    x: int
    add_seeds: int
    new_cell: bool
    reason: str


@dataclass(frozen=True)
class ProbePlan:
    """The next step: requests to train, or none and why the search is done."""

    requests: tuple[ProbeRequest, ...]
    done_reason: str | None
    estimate: BoundaryEstimate | None

    @property
    def done(self) -> bool:
        return self.done_reason is not None


# ---------------------------------------------------------------- batched fit (internal)
# Every array below has a leading "study" axis so that one code path fits a single search
# (a batch of one) and the 1000 simulated searches of simulate_search at once.


@dataclass
class _Cells:
    """Probes of a batch of studies: (studies, cells) arrays; unused cells have n = 0."""

    t: np.ndarray
    k: np.ndarray
    n: np.ndarray
    sum_squares: np.ndarray | None  # None: rates (binomial); else a metric's mean

    def take(self, rows: np.ndarray) -> _Cells:
        squares = None if self.sum_squares is None else self.sum_squares[rows]
        return _Cells(self.t[rows], self.k[rows], self.n[rows], squares)


def _max_slope(rule: BoundaryRule, theta: np.ndarray) -> np.ndarray:
    """The slope cap at boundary theta: MAX_LOGIT_PER_CLASS over the t-length of one class."""
    if rule.log_axis:
        return MAX_LOGIT_PER_CLASS * np.exp(theta)  # one class spans ~1/x in log(x)
    return np.full_like(theta, MAX_LOGIT_PER_CLASS)


def _loglik(eta: np.ndarray, k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Binomial log-likelihood (without the constant) summed over the last axis."""
    return np.sum(k * eta - n * np.logaddexp(0.0, eta), axis=-1)


def _profile(
    theta: np.ndarray, cells: _Cells, rule: BoundaryRule, start: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Max over the slope of the log-likelihood at each boundary theta (studies, points).

    The log-likelihood is concave in the slope, so a Newton step kept inside a shrinking
    bracket ([-cap, 0] for a falling rate) converges from any start, e.g. `start`, the slopes
    of a nearby theta; returns (loglik, slope).
    """
    offset = special.logit(rule.level)
    u = cells.t[:, None, :] - theta[..., None]
    k, n = cells.k[:, None, :], cells.n[:, None, :]
    cap = _max_slope(rule, theta)
    zero = np.zeros_like(theta)
    low, high = (-cap, zero) if rule.direction == "falling" else (zero, cap)
    slope = zero.copy() if start is None else np.clip(start, low, high)
    for _ in range(NEWTON_STEPS):
        p = special.expit(offset + slope[..., None] * u)
        grad = np.sum(u * (k - n * p), axis=-1)
        curvature = np.sum(u * u * n * p * (1.0 - p), axis=-1)
        low = np.where(grad > 0, slope, low)
        high = np.where(grad > 0, high, slope)
        step = slope + grad / np.maximum(curvature, 1e-300)
        inside = (step > low) & (step < high)
        previous, slope = slope, np.where(inside, step, 0.5 * (low + high))
        if np.all(np.abs(slope - previous) <= 1e-9 * (1.0 + np.abs(slope))):
            break
    return _loglik(offset + slope[..., None] * u, k, n), slope


def _golden_max(cells: _Cells, rule: BoundaryRule, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Golden-section search for the profile's maximum in [lo, hi] per study."""
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    slopes = None
    for _ in range(REFINE_STEPS):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        ll, slopes = _profile(np.stack([a, b], axis=1), cells, rule, slopes)
        left_better = ll[:, 0] >= ll[:, 1]
        hi, lo = np.where(left_better, b, hi), np.where(left_better, lo, a)
    return 0.5 * (lo + hi)


def _bisect_crit(
    cells: _Cells, rule: BoundaryRule, inside: np.ndarray, outside: np.ndarray, top: np.ndarray
) -> np.ndarray:
    """The point between `inside` (accepted) and `outside` (rejected) where the profile
    log-likelihood falls to `top` (max loglik - crit / 2); shape (studies, 2)."""
    slopes = None
    for _ in range(REFINE_STEPS):
        mid = 0.5 * (inside + outside)
        ll, slopes = _profile(mid, cells, rule, slopes)
        accepted = ll >= top[:, None]
        inside, outside = np.where(accepted, mid, inside), np.where(accepted, outside, mid)
    return 0.5 * (inside + outside)


def _dispersion(cells: _Cells, rate: np.ndarray) -> np.ndarray:
    """Pearson estimate of the quasi-binomial dispersion per study (1 for rates)."""
    if cells.sum_squares is None:
        return np.ones(len(cells.t))
    p = np.clip(rate, 1e-6, 1 - 1e-6)
    squares = cells.sum_squares - 2.0 * p * cells.k + cells.n * p * p  # sum of (y - p)^2
    seeds = cells.n.sum(axis=1)
    return np.sum(squares / (p * (1.0 - p)), axis=1) / np.maximum(seeds - 2.0, 1.0)


def max_looks(rule: BoundaryRule) -> int:
    """How many times a search can fit and decide to stop: after the opening cells, then
    after each further probe step the cap allows."""
    opening = rule.initial_cells * rule.seeds_per_probe
    return 1 + (rule.max_models - opening) // rule.seeds_per_probe


@lru_cache(maxsize=64)
def pocock_z(looks: int, level: float = LEVEL) -> float:
    """Pocock's constant: the z such that `looks` equally spaced looks at a normal statistic
    (a Brownian motion) all stay within +-z with probability `level` under the truth.

    Monte Carlo with a fixed seed (deterministic; +-0.01 in z): z = 1.96 for one look, 2.41
    for 5, 2.56 for 10, 2.69 for 22 (Jennison & Turnbull's table: 2.413, 2.555 for 5 and 10).
    """
    rng = np.random.default_rng(20240524)
    paths = np.cumsum(rng.standard_normal((POCOCK_PATHS, looks)), axis=1)
    z = np.abs(paths) / np.sqrt(np.arange(1, looks + 1))
    return float(np.quantile(z.max(axis=1), level))


@dataclass
class _Fit:
    """Batched fit in t units: the MLE, its slope and the interval ends (NaN = open)."""

    theta: np.ndarray
    slope: np.ndarray
    ci: np.ndarray  # (studies, 2)
    dispersion: np.ndarray


def _fit_batch(cells: _Cells, rule: BoundaryRule, looks: int | None = None) -> _Fit:
    """The MLE of the boundary and its profile-likelihood interval for every study; `looks`
    (default: the rule's max_looks) sets the repeated-interval cut, 1 for a fixed design."""
    t_low, t_high = rule.to_t([rule.low, rule.high])
    margin = MARGIN * (t_high - t_low)
    grid = np.linspace(t_low - margin, t_high + margin, GRID_POINTS)
    studies = len(cells.t)
    ll_grid = _profile(np.broadcast_to(grid, (studies, GRID_POINTS)).copy(), cells, rule)[0]
    best = np.argmax(ll_grid, axis=1)
    lo, hi = grid[np.maximum(best - 1, 0)], grid[np.minimum(best + 1, GRID_POINTS - 1)]
    theta = _golden_max(cells, rule, lo, hi)
    ll_theta, slope = (a[:, 0] for a in _profile(theta[:, None], cells, rule))
    ll_max = np.maximum(ll_theta, ll_grid.max(axis=1))
    offset = special.logit(rule.level)
    rate = special.expit(offset + slope[:, None] * (cells.t - theta[:, None]))
    dispersion = _dispersion(cells, rate)
    # The cut uses dispersion 1 even for a metric's mean: a per-seed value in [0, 1] with mean p
    # has variance at most p(1 - p) (a 0/1 value has the most), so the binomial bounds it.
    top = ll_max - 0.5 * pocock_z(looks or max_looks(rule)) ** 2
    ci = _interval_ends(cells, rule, grid, ll_grid >= top[:, None], theta, top)
    return _Fit(theta, slope, ci, dispersion)


def _interval_ends(
    cells: _Cells,
    rule: BoundaryRule,
    grid: np.ndarray,
    accepted: np.ndarray,
    theta: np.ndarray,
    top: np.ndarray,
) -> np.ndarray:
    """Hull of the accepted grid points and the MLE, its ends refined by bisection; an end
    that reaches the grid's edge is open (NaN)."""
    lowest_accepted = np.where(accepted, grid, np.inf).min(axis=1)
    inner_low = np.minimum(theta, lowest_accepted)
    inner_high = np.maximum(theta, np.where(accepted, grid, -np.inf).max(axis=1))
    below = np.searchsorted(grid, inner_low, side="left") - 1  # last grid point < inner_low
    above = np.searchsorted(grid, inner_high, side="right")  # first grid point > inner_high
    open_low, open_high = below < 0, above >= len(grid)
    outer = np.stack(
        [grid[np.clip(below, 0, None)], grid[np.clip(above, None, len(grid) - 1)]], axis=1
    )
    inner = np.stack([inner_low, inner_high], axis=1)
    ends = _bisect_crit(cells, rule, inner, outer, top)
    ends[open_low, 0] = np.nan
    ends[open_high, 1] = np.nan
    return ends


# ---------------------------------------------------------------- design (internal)


def _design_variance(fit: _Fit, cells: _Cells, rule: BoundaryRule) -> np.ndarray:
    """Asymptotic variance of the boundary (t units) if seeds_per_probe more seeds went to each
    candidate x in [low, high]: shape (studies, candidates)."""
    offset = special.logit(rule.level)
    theta, slope = fit.theta[:, None], fit.slope[:, None]

    def information(t: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, ...]:
        u = t - theta
        p = special.expit(offset + slope * u)
        w = n * p * (1.0 - p)
        return w * slope * slope, -w * slope * u, w * u * u

    now = [part.sum(axis=1, keepdims=True) for part in information(cells.t, cells.n)]
    candidates = rule.to_t(np.arange(rule.low, rule.high + 1))[None, :]
    extra = information(candidates, np.full_like(candidates, rule.seeds_per_probe))
    i11, i12, i22 = (now[j] + extra[j] for j in range(3))
    i11, i22 = i11 + RIDGE, i22 + RIDGE
    det = i11 * i22 - i12 * i12
    return np.where(det > 0, i22 / np.maximum(det, 1e-300), np.inf)


def _next_x(fit: _Fit, cells: _Cells, rule: BoundaryRule) -> np.ndarray:
    """Per study, the integer x whose extra seeds most shrink the boundary's variance."""
    variance = _design_variance(fit, cells, rule)
    return rule.low + np.argmin(variance, axis=1)


_DONE_WIDTH, _DONE_NOT_CROSSED, _DONE_CAP = 1, 2, 3


def _stop_codes(fit: _Fit, models: np.ndarray, rule: BoundaryRule) -> np.ndarray:
    """0 = go on; else why the search stops (width first, then not crossed, then the cap)."""
    low_x, high_x = (rule.to_x(fit.ci[:, j]) for j in (0, 1))
    width = high_x - low_x  # NaN when either end is open
    # "Not crossed": the interval lies beyond the range, but for half a width inside it (a
    # boundary just past the edge fits all-focused data as well as one past it, so the
    # interval's inner end never quite leaves the range).
    above_range = np.isfinite(low_x) & (low_x > rule.high - rule.width / 2) & ~(high_x <= rule.high)
    below_range = np.isfinite(high_x) & (high_x < rule.low + rule.width / 2) & ~(low_x >= rule.low)
    codes = np.zeros(len(models), dtype=int)
    codes[models + rule.seeds_per_probe > rule.max_models] = _DONE_CAP
    codes[above_range | below_range] = _DONE_NOT_CROSSED
    codes[width <= rule.width] = _DONE_WIDTH
    return codes


# ---------------------------------------------------------------- public API


def _cells_of(probes: Sequence[Probe], rule: BoundaryRule) -> tuple[_Cells, np.ndarray]:
    """One row of merged cells (probes at the same x are the same cell); also the xs."""
    kinds = {p.sum_squares is None for p in probes}
    if len(kinds) > 1:
        raise BoundaryError("probes mix a rate (no sum_squares) and a metric's per-seed values")
    xs = np.array(sorted({p.x for p in probes}), dtype=int)
    k, n, sq = (np.zeros(len(xs)) for _ in range(3))
    for probe in probes:
        j = int(np.searchsorted(xs, probe.x))
        k[j] += probe.successes
        n[j] += probe.trials
        sq[j] += probe.sum_squares or 0.0
    squares = None if kinds == {True} else sq[None, :]
    return _Cells(rule.to_t(xs)[None, :], k[None, :], n[None, :], squares), xs


def fit_boundary(probes: Sequence[Probe], rule: BoundaryRule) -> BoundaryEstimate:
    """Fit the logistic curve to all probes and return the crossing with its 95% interval.

    Args:
        probes: Every cell trained so far (several probes at one x are merged into one cell).
        rule: The search's range and level (only low, high, level and log_axis matter here).

    Returns:
        The estimate; ends of the interval are NaN where the data leave it open. The interval
        uses the search's cut (Pocock's z for the rule's max_looks), so it is valid at
        whichever step next_probes stopped; for a fixed design it is conservative.

    Raises:
        BoundaryError: Fewer than 3 distinct cells, or a probe outside [low, high].
    """
    cells, xs = _cells_of(probes, rule)
    if len(xs) < 3 or int((cells.n > 0).sum()) < 3:
        raise BoundaryError(f"the fit needs probes at 3 or more axis values, got {len(xs)}")
    if xs[0] < rule.low or xs[-1] > rule.high:
        raise BoundaryError(f"probes at x={xs.tolist()} lie outside [{rule.low}, {rule.high}]")
    fit = _fit_batch(cells, rule)
    return _estimate(fit, 0, rule, len(xs), int(cells.n.sum()))


def _estimate(fit: _Fit, row: int, rule: BoundaryRule, cells: int, models: int) -> BoundaryEstimate:
    boundary = float(rule.to_x(fit.theta[row]))
    if not rule.low <= boundary <= rule.high:
        boundary = math.nan
    low, high = (float(rule.to_x(fit.ci[row, j])) for j in (0, 1))
    slope, dispersion = float(fit.slope[row]), float(fit.dispersion[row])
    return BoundaryEstimate(boundary, low, high, slope, dispersion, cells, models)


def next_probes(probes: Sequence[Probe], rule: BoundaryRule) -> ProbePlan:
    """What to train next: the opening cells, then one probe per step, or why to stop.

    Args:
        probes: Every cell trained so far (empty at the start).
        rule: The search.

    Returns:
        A plan: the opening cells first (estimate None: nothing to fit yet), then one request
        a step with the estimate it was chosen from. Requests are empty exactly when
        done_reason says why the search stopped:
        "width 6.2 <= 8", "reached max_models=200" or "level not crossed in [2, 128]: the
        rate stays above 0.5".
    """
    probed = {p.x for p in probes}
    opening = [x for x in rule.initial_xs() if x not in probed]
    if opening:
        spp = rule.seeds_per_probe
        requests = tuple(ProbeRequest(x, spp, True, "opening cell") for x in opening)
        return ProbePlan(requests, None, None)
    cells, xs = _cells_of(probes, rule)
    models = int(cells.n.sum())
    fit = _fit_batch(cells, rule)
    estimate = _estimate(fit, 0, rule, len(xs), models)
    code = int(_stop_codes(fit, np.array([models]), rule)[0])
    if code:
        return ProbePlan((), _done_reason(code, estimate, rule), estimate)
    x = int(_next_x(fit, cells, rule)[0])
    new_cell = x not in probed
    now = "outside the range" if math.isnan(estimate.boundary) else f"{estimate.boundary:.1f}"
    reason = f"most informative x for the boundary (now {now})"
    request = ProbeRequest(x, rule.seeds_per_probe, new_cell, reason)
    return ProbePlan((request,), None, estimate)


def _done_reason(code: int, estimate: BoundaryEstimate, rule: BoundaryRule) -> str:
    if code == _DONE_WIDTH:
        return f"width {estimate.width:.3g} <= {rule.width:g}"
    if code == _DONE_CAP:
        return f"reached max_models={rule.max_models}"
    past_high = np.isfinite(estimate.ci_low) and estimate.ci_low > rule.low
    where = f"> {estimate.ci_low:.1f}" if past_high else f"< {estimate.ci_high:.1f}"
    # A falling rate with its boundary past high stays above the level in the range.
    side = "above" if past_high == (rule.direction == "falling") else "below"
    return (
        f"level not crossed in [{rule.low}, {rule.high}]: the rate stays {side} {rule.level:g}"
        f" (boundary {where})"
    )


def boundary_row(
    group: dict[str, object], metric: str, rule: BoundaryRule, estimate: BoundaryEstimate
) -> dict[str, object]:
    """One row of boundary.csv: the group's keys, then the fixed columns."""
    return {
        **group,
        "metric": metric,
        "level": rule.level,
        "boundary": estimate.boundary,
        "boundary_ci_low": estimate.ci_low,
        "boundary_ci_high": estimate.ci_high,
        "cells_probed": estimate.cells_probed,
        "models_trained": estimate.models_trained,
    }


# ---------------------------------------------------------------- simulation


Truth = Callable[[np.ndarray], np.ndarray]
BETA_CONCENTRATION = 4.0  # a simulated metric's per-seed values: Beta(4p, 4(1-p)), mean p


def true_boundary(truth: Truth, rule: BoundaryRule) -> float:
    """Where a known curve crosses the level in [low, high] (NaN if it does not)."""
    xs = np.linspace(rule.low, rule.high, 4097)
    gap = truth(xs) - rule.level
    change = np.nonzero(np.sign(gap[:-1]) != np.sign(gap[1:]))[0]
    if not len(change):
        return math.nan
    a, b = xs[change[0]], xs[change[0] + 1]
    return float(optimize.brentq(lambda x: float(truth(np.array([x]))[0]) - rule.level, a, b))


@dataclass
class _Searches:
    """The state of many simulated searches: their cells (studies, max cells)."""

    xs: np.ndarray
    k: np.ndarray
    n: np.ndarray
    sum_squares: np.ndarray
    count: np.ndarray  # cells used per study
    kind: MetricKind

    @classmethod
    def empty(cls, studies: int, max_cells: int, kind: MetricKind) -> _Searches:
        zeros = np.zeros((studies, max_cells))
        xs = np.full((studies, max_cells), -1, dtype=int)
        return cls(xs, zeros.copy(), zeros.copy(), zeros.copy(), np.zeros(studies, int), kind)

    def cells(self, rows: np.ndarray, rule: BoundaryRule) -> _Cells:
        used = int(self.count[rows].max())
        xs = self.xs[rows, :used]
        t = np.where(xs > 0, rule.to_t(np.maximum(xs, 1)), 0.0)  # unused cells have n = 0
        squares = self.sum_squares[rows, :used] if self.kind == "mean" else None
        return _Cells(t, self.k[rows, :used], self.n[rows, :used], squares)

    def observe(self, rows: np.ndarray, x: np.ndarray, seeds: int, truth: Truth, rng) -> None:
        """Train `seeds` simulated seeds at x for each row: into its cell at x, or a new one."""
        rate = np.clip(truth(x.astype(float)), 0.0, 1.0)
        match = self.xs[rows] == x[:, None]
        col = np.where(match.any(axis=1), np.argmax(match, axis=1), self.count[rows])
        self.count[rows] = np.maximum(self.count[rows], col + 1)
        self.xs[rows, col] = x
        if self.kind == "rate":
            hits = rng.binomial(seeds, rate).astype(float)
            self.k[rows, col] += hits
            self.sum_squares[rows, col] += hits
        else:
            a = np.clip(BETA_CONCENTRATION * rate, 1e-3, None)[:, None]
            b = np.clip(BETA_CONCENTRATION * (1.0 - rate), 1e-3, None)[:, None]
            values = rng.beta(a, b, size=(len(rows), seeds))
            self.k[rows, col] += values.sum(axis=1)
            self.sum_squares[rows, col] += (values**2).sum(axis=1)
        self.n[rows, col] += seeds


def _run_searches(
    truth: Truth, rule: BoundaryRule, studies: int, rng: np.random.Generator, kind: MetricKind
) -> dict[str, np.ndarray]:
    """Every study's whole adaptive search, in lockstep: final x-unit estimates and stops."""
    max_cells = rule.initial_cells + rule.max_models // rule.seeds_per_probe
    state = _Searches.empty(studies, max_cells, kind)
    everyone = np.arange(studies)
    for x in rule.initial_xs():
        state.observe(everyone, np.full(studies, x), rule.seeds_per_probe, truth, rng)
    out = {name: np.full(studies, np.nan) for name in ("boundary", "low", "high", "code")}
    active = everyone
    while len(active):
        cells = state.cells(active, rule)
        fit = _fit_batch(cells, rule)
        codes = _stop_codes(fit, cells.n.sum(axis=1), rule)
        stop = codes > 0
        rows = active[stop]
        out["boundary"][rows] = rule.to_x(fit.theta[stop])
        out["low"][rows], out["high"][rows] = (rule.to_x(fit.ci[stop, j]) for j in (0, 1))
        out["code"][rows] = codes[stop]
        go = ~stop
        if go.any():
            go_cells = cells.take(np.nonzero(go)[0])
            go_fit = _Fit(fit.theta[go], fit.slope[go], fit.ci[go], fit.dispersion[go])
            x_next = _next_x(go_fit, go_cells, rule)
            state.observe(active[go], x_next, rule.seeds_per_probe, truth, rng)
        active = active[go]
    out["models"] = state.n.sum(axis=1)
    out["cells"] = state.count.astype(float)
    return out


def simulate_search(
    truth: Truth, rule: BoundaryRule, studies: int = 1000, seed: int = 0, kind: MetricKind = "rate"
) -> dict[str, float]:
    """Run the whole adaptive search `studies` times on a known curve and score it.

    Args:
        truth: The true rate (or mean) as a function of x (vectorised over an array of x).
        rule: The search.
        studies: Independent searches, run in lockstep (vectorised).
        seed: Seed of the simulated seeds' outcomes.
        kind: "rate": each seed focuses with probability truth(x) (binomial counts);
            "mean": each seed's metric is Beta-distributed with mean truth(x).

    Returns:
        true_boundary; coverage (share of intervals holding it; an open end holds
        everything on its side; NaN if the truth does not cross the level); mean_models,
        mean_cells; mean_width (finite intervals); share_open (an open end); share_capped
        (stopped by max_models); share_not_crossed (stopped as "level not crossed");
        within_tol (share of point estimates within width / 2 of the truth).
    """
    truth_x = true_boundary(truth, rule)
    out = _run_searches(truth, rule, studies, np.random.default_rng(seed), kind)
    low, high = out["low"], out["high"]
    covered = (np.isnan(low) | (low <= truth_x)) & (np.isnan(high) | (truth_x <= high))
    if math.isnan(truth_x):  # nothing to cover: the level is not crossed in the range
        covered = np.full(studies, np.nan)
    finite = np.isfinite(low) & np.isfinite(high)
    return {
        "true_boundary": truth_x,
        "coverage": float(covered.mean()),
        "mean_models": float(out["models"].mean()),
        "mean_cells": float(out["cells"].mean()),
        "mean_width": float((high - low)[finite].mean()) if finite.any() else math.nan,
        "share_open": float(1.0 - finite.mean()),
        "share_capped": float((out["code"] == _DONE_CAP).mean()),
        "share_not_crossed": float((out["code"] == _DONE_NOT_CROSSED).mean()),
        "within_tol": float((np.abs(out["boundary"] - truth_x) <= rule.width / 2).mean()),
    }


def _read_by_eye(xs: np.ndarray, rates: np.ndarray, level: float) -> np.ndarray:
    """A grid's crossing as read by eye: linear interpolation between the last cell at or
    above the level and the first below it (NaN if no cell falls below)."""
    below = rates < level
    first = np.argmax(below, axis=1)
    before = np.maximum(first - 1, 0)
    rows = np.arange(len(rates))
    r0, r1 = rates[rows, before], rates[rows, first]
    share = np.where(r0 > r1, (r0 - level) / np.where(r0 > r1, r0 - r1, 1.0), 0.0)
    crossing = xs[before] + share * (xs[first] - xs[before])
    return np.where(below.any(axis=1), crossing, np.nan)


def grid_cost(
    truth: Truth,
    rule: BoundaryRule,
    studies: int = 1000,
    seed: int = 0,
    step: int = 4,
    seeds: int = 10,
) -> dict[str, float]:
    """Score today's practice on the same curve: a grid every `step` classes from low to high
    at `seeds` seeds a cell, read by eye and fitted with this module's logistic.

    Returns:
        grid_models; eye_within_tol and fit_within_tol (shares of crossings within
        rule.width / 2 of the truth); fit_coverage and fit_mean_width of the logistic fit's
        95% profile interval (one look: chi-square cut).
    """
    rng = np.random.default_rng(seed)
    truth_x = true_boundary(truth, rule)
    xs = np.arange(rule.low, rule.high + 1, step)
    counts = rng.binomial(seeds, np.clip(truth(xs.astype(float)), 0, 1), size=(studies, len(xs)))
    eye = _read_by_eye(xs, counts / seeds, rule.level)
    t = np.broadcast_to(rule.to_t(xs), counts.shape).copy()
    cells = _Cells(t, counts.astype(float), np.full(counts.shape, float(seeds)), None)
    fit = _fit_batch(cells, rule, looks=1)
    boundary = rule.to_x(fit.theta)
    low, high = (rule.to_x(fit.ci[:, j]) for j in (0, 1))
    covered = (np.isnan(low) | (low <= truth_x)) & (np.isnan(high) | (truth_x <= high))
    tolerance = rule.width / 2
    return {
        "grid_models": float(len(xs) * seeds),
        "eye_within_tol": float((np.abs(eye - truth_x) <= tolerance).mean()),
        "fit_within_tol": float((np.abs(boundary - truth_x) <= tolerance).mean()),
        "fit_coverage": float(covered.mean()),
        "fit_mean_width": float(np.nanmean(high - low)),
    }


# ---------------------------------------------------------------- the docs' table


def _logistic(center: float, scale: float) -> Truth:
    return lambda x: special.expit(-(np.asarray(x, dtype=float) - center) / scale)


TRUTHS: dict[str, tuple[Truth, MetricKind]] = {
    "logistic in x, 25, scale 4 (the tests' curve)": (_logistic(25.0, 4.0), "rate"),
    "probit in x, 25, sd 7": (lambda x: stats.norm.sf((np.asarray(x) - 25.0) / 7.0), "rate"),
    "logistic in log x, 25, slope 4": (
        lambda x: special.expit(-4.0 * (np.log(np.asarray(x, dtype=float)) - math.log(25.0))),
        "rate",
    ),
    "plateaus 0.9 -> 0.1, 25, scale 4": (lambda x: 0.1 + 0.8 * _logistic(25.0, 4.0)(x), "rate"),
    "steep: logistic in x, 60, scale 1": (_logistic(60.0, 1.0), "rate"),
    "not crossed: logistic in x, 200, scale 10": (_logistic(200.0, 10.0), "rate"),
    "mean metric, Beta seeds, logistic 25, 4": (_logistic(25.0, 4.0), "mean"),
}
RULES: dict[str, BoundaryRule] = {
    "log axis (default)": BoundaryRule(2, 128),
    "linear axis": BoundaryRule(2, 128, log_axis=False),
}


def coverage_table(studies: int = 1000, seed: int = 0) -> list[str]:
    """The markdown table of docs/boundary.md: every truth under every rule, then the grid."""
    head = "| truth | rule | coverage | models | cells | width | capped | not crossed | within ±4 |"
    lines = [head, "|" + "---|" * 9]
    for truth_name, (truth, kind) in TRUTHS.items():
        for rule_name, rule in RULES.items():
            r = simulate_search(truth, rule, studies, seed, kind)
            cells = [r["coverage"], r["mean_models"], r["mean_cells"], r["mean_width"]]
            cells += [r["share_capped"], r["share_not_crossed"], r["within_tol"]]
            text = " | ".join("-" if math.isnan(v) else f"{v:.3g}" for v in cells)
            lines.append(f"| {truth_name} | {rule_name} | {text} |")
    lines += [
        "",
        "| truth | grid, 10 seeds every 4 | models | by eye within ±4 | "
        "fit within ±4 | fit coverage | fit width |",
        "|" + "---|" * 7,
    ]
    for truth_name, (truth, kind) in TRUTHS.items():
        if kind != "rate" or "not crossed" in truth_name:
            continue
        for rule_name, rule in RULES.items():
            g = grid_cost(truth, rule, studies, seed)
            values = [g["grid_models"], g["eye_within_tol"], g["fit_within_tol"]]
            values += [g["fit_coverage"], g["fit_mean_width"]]
            text = " | ".join(f"{v:.3g}" for v in values)
            lines.append(f"| {truth_name} | fit on {rule_name} | {text} |")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m attnlab.engine.boundary [--studies N] [--seed S]`: print the coverage table."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for line in coverage_table(args.studies, args.seed):
        print(line, flush=True)


if __name__ == "__main__":
    main()
