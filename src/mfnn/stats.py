"""Statistics the experiments share: log-log fits with confidence intervals, hitting times,
window slopes and means, the Kolmogorov-Smirnov distance.

All functions take and return NumPy values (they run on recorded metrics and snapshots,
after the compiled loop) and return ``nan`` rather than raise when the data cannot give
the statistic (too few points, a non-positive value on a log scale, a level never hit):
a check on a ``nan`` fails, which is what a missing statistic should do.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

KOLMOGOROV_MEAN = math.sqrt(math.pi / 2) * math.log(2)
"""E sup_t |B(t)| of a Brownian bridge on [0, 1] = sqrt(pi/2) log 2 = 0.8687: the mean of
sqrt(m) KS(empirical, true) for m i.i.d. samples as m -> infinity (Kolmogorov 1933)."""

_NAN = float("nan")


@dataclasses.dataclass(frozen=True)
class LogLogFit:
    """The least-squares line log y = slope log x + intercept, with its uncertainty.

    Attributes:
        slope: the fitted exponent (nan when the fit is not defined).
        intercept: log of the prefactor.
        stderr: the standard error of the slope (nan with two points: no residual).
        ci: the two-sided confidence interval of the slope at ``level``, from Student's t
            with n - 2 degrees of freedom ((nan, nan) with two points).
        level: the confidence level of ``ci``.
        n: the number of points fitted.
    """

    slope: float
    intercept: float
    stderr: float
    ci: tuple[float, float]
    level: float
    n: int

    def __call__(self, x) -> np.ndarray:
        """The fitted power law exp(intercept) x^slope (for figures)."""
        return np.exp(self.intercept) * np.asarray(x, float) ** self.slope

    def as_dict(self) -> dict[str, float | int | list[float]]:
        """JSON-ready fields (for summaries)."""
        return {
            "slope": self.slope,
            "intercept": self.intercept,
            "stderr": self.stderr,
            "ci": list(self.ci),
            "level": self.level,
            "n": self.n,
        }


def loglog_fit(x, y, level: float = 0.95) -> LogLogFit:
    r"""Fit log y = s log x + c by least squares, with the slope's confidence interval.

        s_hat = cov(log x, log y) / var(log x),
        se(s_hat) = sqrt( sum_i r_i^2 / (n - 2) / sum_i (log x_i - mean log x)^2 ),
        CI = s_hat -+ t_{(1 + level)/2, n - 2} se(s_hat).

    The fit is undefined (slope nan) with fewer than two points or when a y is not finite
    and > 0; its interval is undefined with two points.

    Args:
        x: (n,) positive abscissae (widths, times, step sizes).
        y: (n,) the statistic at each x.
        level: confidence level of the interval, in (0, 1).

    Example:
        >>> fit = loglog_fit([1, 2, 4], [3.0, 1.5, 0.75])
        >>> round(fit.slope, 12), round(math.exp(fit.intercept), 12), round(fit.stderr, 12)
        (-1.0, 3.0, 0.0)
        >>> bool(np.isnan(loglog_fit([1, 2], [1.0, -1.0]).slope))
        True
    """
    if not 0 < level < 1:
        raise ValueError(f"`level` must be in (0, 1); got {level!r}.")
    x, y = np.asarray(x, float).reshape(-1), np.asarray(y, float).reshape(-1)
    n = int(x.size)
    undefined = LogLogFit(_NAN, _NAN, _NAN, (_NAN, _NAN), level, n)
    if n < 2 or y.size != n or not np.all(np.isfinite(y) & (y > 0)) or not np.all(x > 0):
        return undefined
    lx, ly = np.log(x), np.log(y)
    sxx = float(np.sum((lx - lx.mean()) ** 2))
    if sxx == 0:
        return undefined
    slope, intercept = (float(v) for v in np.polyfit(lx, ly, 1))
    if n == 2:
        return LogLogFit(slope, intercept, _NAN, (_NAN, _NAN), level, n)
    resid = ly - (slope * lx + intercept)
    stderr = math.sqrt(float(np.sum(resid**2)) / (n - 2) / sxx)
    from scipy import stats as scipy_stats  # 0.5 s to import: only when a fit is made

    half = float(scipy_stats.t.ppf(0.5 + level / 2, n - 2)) * stderr
    return LogLogFit(slope, intercept, stderr, (slope - half, slope + half), level, n)


def loglog_slope(x, y) -> float:
    """The slope of `loglog_fit` (nan unless every y is finite and > 0).

    Example:
        >>> round(loglog_slope([1, 10, 100], [2.0, 0.2, 0.02]), 12)
        -1.0
    """
    return loglog_fit(x, y).slope


def hitting_time(t, y, level: float, *, scale: str = "linear") -> float:
    """The first time the series y(t) reaches ``level`` from above: y <= level.

    Between the last record above the level and the first at or below it the time is
    interpolated linearly in y (``scale="linear"``) or in log y (``scale="log"``, for a
    loss that decays exponentially). The first record's time if it is already at or below
    the level; nan if the level is never reached.

    Example:
        >>> hitting_time([0.0, 1.0, 2.0], [4.0, 2.0, 0.0], 1.0)
        1.5
        >>> round(hitting_time([0.0, 1.0], [1.0, 0.01], 0.1, scale="log"), 12)
        0.5
        >>> bool(np.isnan(hitting_time([0.0, 1.0], [3.0, 2.0], 1.0)))
        True
    """
    if scale not in ("linear", "log"):
        raise ValueError(f"`scale` must be 'linear' or 'log'; got {scale!r}.")
    t, y = np.asarray(t, float), np.asarray(y, float)
    below = np.nonzero(y <= level)[0]
    if below.size == 0:
        return _NAN
    k = int(below[0])
    if k == 0:
        return float(t[0])
    f = np.log if scale == "log" else (lambda v: v)
    y0, y1, lv = f(y[k - 1]), f(y[k]), f(level)
    frac = (y0 - lv) / (y0 - y1) if y0 != y1 else 1.0
    return float(t[k - 1] + frac * (t[k] - t[k - 1]))


def window(t, start: float, stop: float) -> np.ndarray:
    """The indices of the records with start <= t <= stop (a boolean mask)."""
    t = np.asarray(t, float)
    return (t >= start) & (t <= stop)


def window_slope(t, y, start: float, stop: float, *, min_points: int = 3) -> float:
    """The log-log slope of y against t over the records with t in [start, stop].

    nan if the series ends before ``stop`` (the window is not covered) or fewer than
    ``min_points`` positive records fall in it.

    Example:
        >>> t = np.arange(1.0, 11.0)
        >>> round(window_slope(t, 1.0 / t, 2.0, 8.0), 12)
        -1.0
        >>> bool(np.isnan(window_slope(t, 1.0 / t, 2.0, 20.0)))
        True
    """
    t, y = np.asarray(t, float), np.asarray(y, float)
    if t.size == 0 or t[-1] < stop * (1 - 1e-12):
        return _NAN
    sel = window(t, start, stop) & (y > 0)
    if sel.sum() < min_points:
        return _NAN
    return loglog_slope(t[sel], y[sel])


def tail_mean(t, y, fraction: float) -> float:
    """The mean of y over the records with t >= (1 - fraction) t_end: a time average over
    the last ``fraction`` of a run (a plateau estimate).

    Example:
        >>> tail_mean(np.arange(5.0), np.array([9.0, 9.0, 1.0, 2.0, 3.0]), 0.5)
        2.0
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"`fraction` must be in (0, 1]; got {fraction!r}.")
    t, y = np.asarray(t, float), np.asarray(y, float)
    return float(np.mean(y[t >= (1.0 - fraction) * t[-1]]))


def ks_distance(samples, grid, cdf) -> float:
    """sup_w |ECDF(w) - CDF(w)| of 1-D ``samples`` (m,) against a CDF given on ``grid``
    (k,) (increasing, covering the samples) and linearly interpolated between its points.

    Example:
        >>> grid = np.linspace(0.0, 1.0, 101)   # uniform on [0, 1]
        >>> round(ks_distance(np.array([0.25, 0.75]), grid, grid), 6)
        0.25
    """
    x = np.sort(np.asarray(samples, float).reshape(-1))
    m = x.shape[0]
    f = np.interp(x, grid, cdf)
    i = np.arange(1, m + 1)
    return float(max(np.max(i / m - f), np.max(f - (i - 1) / m)))


__all__ = [
    "KOLMOGOROV_MEAN",
    "LogLogFit",
    "hitting_time",
    "ks_distance",
    "loglog_fit",
    "loglog_slope",
    "tail_mean",
    "window",
    "window_slope",
]
