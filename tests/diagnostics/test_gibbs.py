"""`mfnn.diagnostics.gibbs`: the Gibbs law on a grid and the KS distance against known laws,
the Ornstein-Uhlenbeck closed forms (Euler-Maruyama variance, Gaussian free energy and its
minimum), standard errors of coordinate statistics, the kNN free energy's calibration,
window statistics, and the potential-is-the-drift bookkeeping on a built problem."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn.build import build
from mfnn.config import validate
from mfnn.diagnostics import (
    coordinate_stats,
    em_ou_variance,
    gaussian_free_energy,
    gibbs_ks,
    gibbs_on_grid,
    knn_free_energy_bias,
    ou_stationary_stats,
    potential_consistency,
    window_stats,
)
from mfnn.diagnostics.entropy import gaussian_entropy
from mfnn.stats import ks_distance


def test_gibbs_on_grid_and_ks_against_a_known_law():
    g = np.linspace(-8.0, 8.0, 4001)
    rho, cdf = gibbs_on_grid(2.0 * g**2, g, beta=1.0)  # exp(-2 w^2): N(0, 1/4)
    np.testing.assert_allclose(rho, np.exp(-2 * g**2) / math.sqrt(math.pi / 2), atol=1e-8)
    assert cdf[0] == 0.0 and cdf[-1] == pytest.approx(1.0)
    assert np.interp(0.5, g, cdf) == pytest.approx(0.841345, abs=1e-5)
    # quantiles of the law itself: KS = 1/(2m) exactly (the ECDF steps around the CDF)
    m = 200
    x = np.interp((np.arange(m) + 0.5) / m, cdf, g)
    assert ks_distance(x, g, cdf) == pytest.approx(0.5 / m, abs=1e-5)
    # i.i.d. draws: sqrt(m) KS is O(1); a shifted law is far
    d = np.random.default_rng(0).normal(0.0, 0.5, 4096)
    assert math.sqrt(4096) * ks_distance(d, g, cdf) < 1.95
    assert ks_distance(d + 0.3, g, cdf) > 0.2


def test_gibbs_on_grid_does_not_overflow_at_large_beta():
    g = np.linspace(-1.0, 1.0, 20001)
    rho, cdf = gibbs_on_grid(0.5 * g**2 + 1e3, g, beta=1e4)  # N(0, 1e-4), shifted potential
    assert np.all(np.isfinite(rho)) and np.interp(0.01, g, cdf) == pytest.approx(0.841345, 1e-4)


def test_em_ou_variance_is_the_fixed_point_of_the_chain():
    beta, l2, dt = 2.0, 0.7, 0.05
    v = 5.0  # the variance recursion of w' = (1 - l2 dt) w + sqrt(2 dt / beta) xi
    for _ in range(5000):
        v = (1 - l2 * dt) ** 2 * v + 2 * dt / beta
    assert em_ou_variance(beta, l2, dt) == pytest.approx(v, rel=1e-12)
    assert em_ou_variance(beta, l2, 1e-9) == pytest.approx(1 / (beta * l2), rel=1e-8)


def test_coordinate_stats_standard_errors():
    w = np.random.default_rng(1).normal(0.0, 2.0, (20000, 2))
    s = coordinate_stats(w, 4.0)
    # SE(var) = sqrt((m4 - s^4) / m) -> s^2 sqrt(2 / m) for a Gaussian
    np.testing.assert_allclose(s["se_var"], 4.0 * math.sqrt(2 / 20000), rtol=0.05)
    np.testing.assert_allclose(s["se_mean"], 2.0 / math.sqrt(20000), rtol=0.02)
    assert max(s["z_mean"] + s["z_var"]) < 4
    assert coordinate_stats(w, 4.4)["z_var"][0] > 5  # a 10 % wrong variance is seen


def test_ou_stationary_stats_against_the_chain_and_the_continuous_law():
    beta, l2, dt = 1.0, 1.0, 0.01
    v_em = em_ou_variance(beta, l2, dt)
    w = np.random.default_rng(2).normal(0.0, math.sqrt(v_em), (2048, 2))
    s = ou_stationary_stats(w, beta, l2, dt)
    assert s["v"] == 1.0 and s["v_em"] == v_em
    c = s["coordinates"]
    assert c["z_var"] == coordinate_stats(w, v_em)["z_var"]
    np.testing.assert_allclose(
        c["z_var_continuous"], np.abs(np.array(c["var"]) - 1.0) / c["se_var"]
    )
    assert s["em_bias_over_se"] == pytest.approx((v_em - 1.0) / max(c["se_var"]))
    # a far larger step: the chain's bias is many standard errors (the check's control)
    assert ou_stationary_stats(w, beta, l2, 0.5)["em_bias_over_se"] > 5


@pytest.mark.parametrize(("dim", "beta", "l2"), [(1, 2.0, 0.5), (2, 1.0, 1.0), (3, 4.0, 0.1)])
def test_gaussian_free_energy_is_the_minimum(dim, beta, l2):
    v = 1.0 / (beta * l2)
    h = float(gaussian_entropy(v * jnp.eye(dim)))
    f = gaussian_free_energy(dim, beta, l2, v)
    assert f == pytest.approx(0.5 * l2 * dim * v - h / beta, rel=1e-12)
    assert f == pytest.approx(-dim / (2 * beta) * math.log(2 * math.pi / (beta * l2)), rel=1e-12)
    for other in (0.8 * v, 1.25 * v):  # the Gibbs variance minimizes F over N(0, s I)
        assert gaussian_free_energy(dim, beta, l2, other) > f


def test_knn_free_energy_bias_is_small_and_reproducible():
    key = jax.random.key(7)
    f, bias, sd = knn_free_energy_bias(key, 0.5, (1024, 2), 2.0, 1.0, 1, 6, "float64")
    assert f == gaussian_free_energy(2, 2.0, 1.0, 0.5)
    assert abs(bias) < 0.05 and 0 < sd < 0.05
    assert knn_free_energy_bias(key, 0.5, (1024, 2), 2.0, 1.0, 1, 6, "float64") == (f, bias, sd)
    # fewer particles: the kNN entropy's spread grows
    assert knn_free_energy_bias(key, 0.5, (64, 2), 2.0, 1.0, 1, 6, "float64")[2] > sd


def test_window_stats_averages_the_last_part():
    t = np.linspace(0.0, 10.0, 11)
    y = np.where(t >= 5.0, 2.0, 100.0)
    s = window_stats(t, y, 0.5)
    assert s["mean"] == 2.0 and s["min"] == s["max"] == 2.0
    assert s["records"] == 6 and s["t_from"] == 5.0
    assert window_stats(t, y, 1.0)["mean"] == pytest.approx((5 * 100 + 6 * 2) / 11)
    drift = window_stats(t, t, 0.5)  # 5..10: halves 5, 6, 7 and 8, 9, 10
    assert (drift["early"], drift["late"]) == (6.0, 9.0)
    one = window_stats(t, t, 0.01)  # a single record: both halves are it
    assert (one["early"], one["late"], one["records"]) == (10.0, 10.0, 1)


def _flow(target, width=64, l2=0.05):
    raw = {
        "seed": 0,
        "dtype": "float64",
        "model": {"width": width, "activation": "gaussian", "bias": False, "train_output": False},
        "data": {"population": {"inputs": "gaussian", "dim": 1, "method": "quadrature"}},
        "objective": {"l2": l2},
        "dynamics": {"integrator": "euler_maruyama", "langevin": {"beta": 100.0}},
    }
    if target == "zero":
        raw["data"] = {"target": "zero", "inputs": {"dim": 1}}
    else:
        raw["data"]["teacher"] = {"w": [[1.0], [2.0]], "alpha": [0.6, 0.4]}
    return build(validate(raw)).dynamics.flow


@pytest.mark.slow  # builds and compiles a teacher objective (about 5 s of CPU)
def test_the_potential_is_the_drift_and_contains_the_l2_term():
    flow = _flow("teacher")
    theta = jax.random.uniform(jax.random.key(3), (64, 1), jnp.float64, -3.0, 3.0)
    l2_err, drift_err = potential_consistency(flow, theta, np.linspace(-4.0, 4.0, 101))
    assert l2_err < 1e-12 and drift_err < 1e-12
    # draws of N(0, 1/(beta lambda)): with R = 0 that is the Gibbs law, so both distances are
    # the same and small; with the teacher's risk the Gibbs law moves away from it
    theta = jnp.sqrt(1 / (100.0 * 0.05)) * jax.random.normal(jax.random.key(4), (256, 1))
    ks, ks_l2, grid, rho = gibbs_ks(_flow("zero"), theta, 100.0, 4001)
    assert ks == pytest.approx(ks_l2, abs=1e-6) and ks < 1.95 / 16
    assert np.trapezoid(rho, grid) == pytest.approx(1.0)
    ks, ks_l2_teacher, _, _ = gibbs_ks(flow, theta, 100.0, 4001)
    assert ks_l2_teacher == ks_l2 and ks > 2 * 1.95 / 16
