"""`mfnn.diagnostics.barron`: the Gaussian closed forms and the mixture measure against Monte
Carlo, the expected sampled error V(pi)/N and the inequality chain V <= B2^2 <= 3 P^2, the
blocked evaluation of f_N, the random-features least squares and the rate of gradient descent
on it (and its failure past dt L = 2)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from mfnn.diagnostics.barron import (
    CHUNK,
    GaussianMixtureMeasure,
    abs_gaussian_mean,
    barron_rate,
    convex_rate_ratio,
    random_features_solution,
    relu_gaussian_moments,
    sampled_error,
)
from mfnn.diagnostics.norms import path_norm
from mfnn.models import TwoLayer

PI = GaussianMixtureMeasure.of(  # barron_rate's default measure, d = 4
    [
        {"weight": 0.6, "a": 2.0, "mean": (1.0, 0.0, 0.0, 0.0, 0.25), "std": 0.5},
        {"weight": 0.4, "a": -1.5, "mean": (0.0, -1.0, 0.5, 0.0, 0.0), "std": 0.75},
    ]
)


def test_gaussian_moments_against_monte_carlo():
    rng = np.random.default_rng(0)
    for mean, std in ((0.7, 0.4), (-1.2, 2.0), (0.0, 0.1)):
        z = mean + std * rng.standard_normal(2_000_000)
        m1, m2 = relu_gaussian_moments(np.array(mean), np.array(std**2))
        r = np.maximum(z, 0)
        assert float(m1) == pytest.approx(r.mean(), abs=4 * r.std() / 1414)
        assert float(m2) == pytest.approx((r**2).mean(), abs=4 * (r**2).std() / 1414)
        assert float(abs_gaussian_mean(mean, std)) == pytest.approx(
            np.abs(z).mean(), abs=4 * np.abs(z).std() / 1414
        )


def test_measure_closed_forms_against_a_huge_sample():
    # f, E_pi[a^2 relu^2], P(pi) and B2(pi)^2 against 10^6 neurons drawn from pi
    x = np.random.default_rng(1).uniform(-1, 1, (5, 4))
    a, w, b = PI.sample(np.random.default_rng(2), 1_000_000)
    units = a[None, :] * np.maximum(x @ w.T + b, 0)  # (5, 10^6)
    np.testing.assert_array_less(np.abs(PI.f(x) - units.mean(axis=1)), 4 * units.std(axis=1) / 1000)
    sq = units**2
    np.testing.assert_array_less(
        np.abs(PI.second_moment(x) - sq.mean(axis=1)), 4 * sq.std(axis=1) / 1000
    )
    per = np.abs(a) * (np.abs(w).sum(axis=1) + np.abs(b))
    assert PI.path_norm() == pytest.approx(per.mean(), abs=4 * per.std() / 1000)
    assert PI.b2_squared() == pytest.approx((per**2).mean(), abs=4 * (per**2).std() / 1000)
    # the network path norm of the sample is the same statistic (`path_norm`)
    net = TwoLayer(d=4, activation="relu", scaling="mean_field", bias=True)
    theta = net.join(jnp.asarray(a), jnp.asarray(w), jnp.asarray(b))
    assert float(path_norm(net, theta)) == pytest.approx(per.mean(), rel=1e-10)


def test_mean_error_is_v_over_n_below_the_barron_rate():
    # E ||f - f_N||^2 = V(pi) / N, V = E_pi ||phi||^2 - ||f||^2, checked with 400 draws
    x = np.random.default_rng(3).uniform(-1, 1, (256, 4))
    fx, v, n = PI.f(x), PI.variance(x), 20
    errs = [sampled_error(x, fx, *PI.sample(np.random.default_rng([4, s]), n)) for s in range(400)]
    assert np.mean(errs) == pytest.approx(v / n, abs=4 * np.std(errs) / 20)
    # and the inequality chain of the theorem: V <= B2^2 <= 3 P^2, so V/N <= the Barron rate
    assert v <= PI.b2_squared() <= 3 * PI.path_norm() ** 2
    assert v / n <= barron_rate(PI.path_norm(), n) == 3 * PI.path_norm() ** 2 / n
    # a measure with scaled stds does not represent f: the error no longer sits on V/N
    far = [
        sampled_error(x, fx, *PI.sample(np.random.default_rng([5, s]), n, 4.0)) for s in range(50)
    ]
    assert np.mean(far) > 2 * v / n


def test_sampled_error_blocks_and_padding_agree_with_the_direct_formula():
    x = np.random.default_rng(5).uniform(-1, 1, (64, 4))
    fx = PI.f(x)
    for n in (1, 7, CHUNK, CHUNK + 1, 5000):
        a, w, b = PI.sample(np.random.default_rng(n), n)
        direct = np.mean((fx - np.maximum(x @ w.T + b, 0) @ a / n) ** 2)
        assert sampled_error(x, fx, a, w, b) == pytest.approx(direct, rel=1e-10)


def test_least_squares_is_the_projection_of_a0_on_the_minimizers():
    # n < m: many minimizers, all with R* = 0; the one returned is a_0 + a vector in the row
    # space of Phi (the limit of the flow) and is the closest to a_0
    rng = np.random.default_rng(0)
    n, m = 6, 15
    phi = rng.standard_normal((n, m))
    y, a0 = rng.standard_normal(n), rng.standard_normal(m)
    s = random_features_solution(phi, y, a0)
    assert s["r_star"] < 1e-25 and s["rel_gradient"] < 1e-12
    delta = s["a_star"] - a0
    proj = phi.T @ np.linalg.lstsq(phi.T, delta, rcond=None)[0]  # onto the row space
    np.testing.assert_allclose(delta, proj, atol=1e-12)
    null = np.linalg.svd(phi)[2][n:]  # another minimizer is farther from a_0
    other = s["a_star"] + null[0]
    assert np.mean((a0 - other) ** 2) > s["dist2"]
    # L is the top eigenvalue of the Hessian Phi^T Phi / (n m) in L2(rho_0)
    assert s["L"] == pytest.approx(np.linalg.norm(phi, 2) ** 2 / (n * m))


def test_least_squares_with_noise_is_the_normal_equation_solution():
    rng = np.random.default_rng(1)
    n, m = 40, 8
    phi = rng.standard_normal((n, m))
    y = rng.standard_normal(n)
    s = random_features_solution(phi, y, np.zeros(m))
    a_star = np.linalg.solve(phi.T @ phi / m, phi.T @ y)  # (Phi/m)^T (Phi a/m - y) = 0
    np.testing.assert_allclose(s["a_star"], a_star, rtol=1e-10)
    assert s["r_star"] == pytest.approx(0.5 * np.mean((phi @ a_star / m - y) ** 2))


def descend(dt_l: float, steps: int = 3000):
    """Gradient descent a <- a - dt (1/n) Phi^T r on a random convex quadratic in the
    L2(rho_0) geometry, with dt L = dt_l: (times, risks, least-squares reference)."""
    rng = np.random.default_rng(2)
    n, m = 30, 20
    phi = rng.standard_normal((n, m)) * np.geomspace(1, 1e-3, m)
    y = phi @ rng.standard_normal(m) / m
    a = rng.standard_normal(m)
    s = random_features_solution(phi, y, a)
    dt = dt_l / s["L"]
    risks = []
    for _ in range(steps):
        risks.append(0.5 * np.mean((phi @ a / m - y) ** 2))
        a = a - dt * phi.T @ (phi @ a / m - y) / n
    return dt * np.arange(steps), np.array(risks), s


def test_gradient_descent_obeys_the_rate_and_the_quadratic_constant():
    # the statement itself: dt L <= 1 gives t (R - R*) <= |a_0 - a*|^2 / (2 e)
    t, risks, s = descend(1.0)
    ratio = convex_rate_ratio(t, risks, s["r_star"], s["dist2"])
    assert 0.01 < ratio.max() <= 1 / (2 * math.e) + 1e-12  # not vacuous
    # dt L = 2.5 > 2: gradient descent diverges and the ratio explodes
    t, risks, s = descend(2.5, steps=200)
    assert convex_rate_ratio(t, risks, s["r_star"], s["dist2"]).max() > 1e3
