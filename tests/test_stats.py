"""Shared statistics (`mfnn.stats`): known answers, the slope's confidence interval, nan
where a statistic is not defined."""

import math

import numpy as np
import pytest

from mfnn.stats import (
    KOLMOGOROV_MEAN,
    hitting_time,
    ks_distance,
    loglog_fit,
    loglog_slope,
    tail_mean,
    window_slope,
)


@pytest.mark.parametrize("power", [-1.0, -0.5, 0.0, 1.7])
def test_a_power_law_gives_its_exponent_and_prefactor(power):
    x = np.array([10.0, 30.0, 100.0, 1000.0])
    fit = loglog_fit(x, 3.0 * x**power)
    assert fit.slope == pytest.approx(power, abs=1e-12)
    assert math.exp(fit.intercept) == pytest.approx(3.0, rel=1e-12)
    assert fit.stderr == pytest.approx(0.0, abs=1e-12)
    assert fit(x) == pytest.approx(3.0 * x**power, rel=1e-12)
    assert loglog_slope(list(x), list(3.0 * x**power)) == fit.slope


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1, 2, 4], [1.0, 0.0, 0.25]),  # a zero
        ([1, 2, 4], [1.0, -0.5, 0.25]),  # a negative value
        ([1, 2, 4], [1.0, math.nan, 0.25]),
        ([1, 2, 4], [1.0, math.inf, 0.25]),
        ([1], [1.0]),  # one point has no slope
        ([2, 2, 2], [1.0, 2.0, 3.0]),  # no spread in x
    ],
)
def test_nan_unless_the_fit_is_defined(x, y):
    fit = loglog_fit(x, y)
    assert math.isnan(fit.slope) and math.isnan(fit.ci[0])


def test_least_squares_and_its_interval_match_scipy():
    """slope and intercept = polyfit; the CI = slope -+ t_{0.975, n-2} stderr, the stderr
    of scipy.stats.linregress."""
    from scipy import stats

    rng = np.random.default_rng(0)
    x = np.geomspace(1, 1e3, 7)
    y = x**-0.8 * np.exp(0.1 * rng.standard_normal(7))
    fit = loglog_fit(x, y)
    ref = stats.linregress(np.log(x), np.log(y))
    assert fit.slope == pytest.approx(ref.slope, rel=1e-12)
    assert fit.intercept == pytest.approx(ref.intercept, rel=1e-12)
    assert fit.stderr == pytest.approx(ref.stderr, rel=1e-10)
    half = stats.t.ppf(0.975, 5) * ref.stderr
    assert fit.ci == pytest.approx((ref.slope - half, ref.slope + half), rel=1e-10)
    assert fit.n == 7 and fit.as_dict()["ci"] == list(fit.ci)
    two = loglog_fit([1, 2], [1.0, 0.5])  # an exact line through two points: no interval
    assert two.slope == pytest.approx(-1.0) and math.isnan(two.stderr)


def test_the_interval_covers_the_true_slope_at_its_level():
    """Over 2000 noisy power laws the 90 % interval holds the true exponent ~90 % of the
    time (binomial sd 0.7 %)."""
    rng = np.random.default_rng(1)
    x = np.geomspace(1, 100, 6)
    hits = [
        loglog_fit(x, x**-1.0 * np.exp(0.2 * rng.standard_normal(6)), level=0.9).ci
        for _ in range(2000)
    ]
    cover = np.mean([lo <= -1.0 <= hi for lo, hi in hits])
    assert abs(cover - 0.9) < 0.025


def test_hitting_time_interpolates_linearly_or_in_log():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.array([8.0, 4.0, 2.0, 1.0])
    assert hitting_time(t, y, 3.0) == pytest.approx(1.5)  # between 4 and 2, linear
    assert hitting_time(t, y, 2.0 * math.sqrt(2.0), scale="log") == pytest.approx(1.5)
    assert hitting_time(t, y, 2.0) == 2.0  # at a record: that record (<=)
    assert hitting_time(t, y, 9.0) == 0.0
    assert math.isnan(hitting_time(t, y, 0.5))
    with pytest.raises(ValueError, match="scale"):
        hitting_time(t, y, 1.0, scale="cubic")


def test_window_slope_and_tail_mean():
    t = np.linspace(0.0, 100.0, 101)
    y = np.where(t > 0, 5.0 / np.maximum(t, 1e-300) ** 2, 1.0)
    assert window_slope(t, y, 10.0, 100.0) == pytest.approx(-2.0, abs=1e-12)
    assert math.isnan(window_slope(t, y, 10.0, 200.0))  # the run ends before the window
    assert math.isnan(window_slope(t[:12], y[:12], 10.0, 11.0))  # 2 points < 3
    assert tail_mean(t, t, 0.5) == pytest.approx(75.0)
    with pytest.raises(ValueError, match="fraction"):
        tail_mean(t, y, 0.0)


def test_ks_distance_of_exact_draws_is_kolmogorov_sized():
    """sqrt(m) KS of m uniform draws against the uniform CDF has mean ~ 0.8687 (the
    Brownian bridge's sup), here estimated from 300 samples to within 5 sd."""
    rng = np.random.default_rng(2)
    grid = np.linspace(0.0, 1.0, 2001)
    m = 400
    stats = [math.sqrt(m) * ks_distance(rng.uniform(size=m), grid, grid) for _ in range(300)]
    assert abs(np.mean(stats) - KOLMOGOROV_MEAN) < 5 * np.std(stats) / math.sqrt(300)
    assert ks_distance(np.array([0.5]), grid, grid) == pytest.approx(0.5)
