"""W2 tools (docs/theory.md section 14): closed forms, agreement where they overlap, geodesics.

Known answers: Bures-Wasserstein between Gaussians (through a Brenier map, so the sample
value is exact and its sampling error known), translations (W2 = |v|, S_eps = |v|^2 at
every eps, SW2 = |v| / sqrt(D)), 1-D quantiles, POT's network simplex and an independent LP.
"""

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest
from scipy.linalg import sqrtm
from scipy.optimize import linprog

from mfnn import ConfigError, MfnnError
from mfnn.diagnostics import transport
from mfnn.diagnostics.transport import (
    SinkhornResult,
    displacement_interpolation,
    optimal_map,
    w2_1d,
    w2_exact,
    w2_sinkhorn,
    w2_sliced,
    wasserstein2,
)
from mfnn.plots_transport import geodesic_animation


def _weights(rng, n):
    w = rng.random(n) + 0.05
    return w / w.sum()


def _bures_sq(a, A, b, B):
    """W2^2(N(a, A), N(b, B)) = |a - b|^2 + tr(A + B - 2 (A^1/2 B A^1/2)^1/2)."""
    ra = np.real(sqrtm(A))
    return float(np.sum((a - b) ** 2) + np.trace(A + B - 2 * np.real(sqrtm(ra @ B @ ra))))


def _brenier_pair(rng, n, d):
    """x ~ N(a, A) and y = T(x), T(x) = b + M (x - a) the optimal Gaussian map.

    M = A^-1/2 (A^1/2 B A^1/2)^1/2 A^-1/2 is symmetric positive definite, so T is the
    gradient of a convex function and the pairing x_i -> T(x_i) is optimal between the
    two EMPIRICAL measures too (cyclical monotonicity): W2^2(mu_n, T#mu_n) =
    (1/n) sum |x_i - T x_i|^2 exactly, a Monte Carlo estimate of the Bures W2^2 with
    standard error std(|x - T x|^2) / sqrt(n). Rows of y are shuffled.
    """
    g = rng.standard_normal((d, d))
    A = g @ g.T / d + 0.5 * np.eye(d)
    h = rng.standard_normal((d, d))
    B = h @ h.T / d + 0.3 * np.eye(d)
    a, b = rng.standard_normal(d), rng.standard_normal(d)
    ra = np.real(sqrtm(A))
    ria = np.linalg.inv(ra)
    M = ria @ np.real(sqrtm(ra @ B @ ra)) @ ria
    x = rng.multivariate_normal(a, A, n)
    tx = b + (x - a) @ M.T
    sq = np.sum((x - tx) ** 2, axis=1)
    return x, rng.permutation(tx), sq, _bures_sq(a, A, b, B)


# ------------------------------------------------------------------ docstrings


# ------------------------------------------------------------------ Gaussians


def test_exact_recovers_the_brenier_map_and_the_bures_distance():
    rng = np.random.default_rng(0)
    x, y, sq, bures = _brenier_pair(rng, 800, 3)
    w2sq = w2_exact(x, y, squared=True)
    # the assignment finds the Brenier pairing: the sample value, to rounding
    np.testing.assert_allclose(w2sq, sq.mean(), rtol=1e-10)
    # ... which estimates the closed form within its sampling error (4 standard errors)
    assert abs(w2sq - bures) <= 4 * sq.std() / np.sqrt(len(sq))
    # the network simplex agrees
    simplex = w2_exact(x, y, squared=True, method="network_simplex")
    np.testing.assert_allclose(simplex, w2sq, rtol=1e-10)


def test_sinkhorn_divergence_on_gaussians_matches_exact_and_bures():
    rng = np.random.default_rng(1)
    x, y, sq, bures = _brenier_pair(rng, 400, 2)
    w2sq = w2_exact(x, y, squared=True)
    # eps = 0.03 is 1.6 % of the clouds' spread (1.87): measured S_eps / W2^2 - 1 = 1.0e-4
    res = w2_sinkhorn(x, y, epsilon=0.03, tol=1e-3, squared=True)
    assert res.converged
    assert abs(res.value - w2sq) <= 1e-3 * w2sq
    assert abs(res.value - bures) <= 4 * sq.std() / np.sqrt(len(sq)) + 1e-3 * w2sq


# ------------------------------------------------------------------ translations


def test_translation_is_exact_for_every_exact_method():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((60, 3))
    v = np.array([0.3, -1.2, 0.4])  # |v| = 1.3
    p = _weights(rng, 60)
    assert w2_exact(x, x, p, p) < 1e-7 and w2_exact(x, x) == 0.0
    assert w2_exact(x, x + v) == pytest.approx(1.3, rel=1e-12)  # assignment
    assert w2_exact(x, x + v, p, p) == pytest.approx(1.3, rel=1e-9)  # network simplex
    # 1-D, weighted, unequal "shapes" of the same measure
    u = rng.standard_normal(50)
    pu = _weights(rng, 50)
    assert float(w2_1d(u, u + 0.7, pu, pu)) == pytest.approx(0.7, rel=1e-12)
    assert float(w2_1d(u[:, None], u[:, None] - 0.7)) == pytest.approx(0.7, rel=1e-12)


@pytest.mark.parametrize("eps", [0.05, 0.5, 5.0])
def test_sinkhorn_divergence_of_a_translation_is_exact_at_every_epsilon(eps):
    """OT_eps(mu, mu(. - v)) = OT_eps(mu, mu) + |v|^2 (the cross term -2 v.(x - y) is
    separable), so S_eps = |v|^2 for every eps: no entropic bias at all."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((150, 2))
    p = _weights(rng, 150)
    v = np.array([0.6, 0.8])
    res = w2_sinkhorn(x, x + v, p, p, epsilon=eps, tol=1e-4, max_iter=5000, squared=True)
    assert res.converged and res.epsilon == eps
    assert res.value == pytest.approx(1.0, rel=1e-5)  # measured error 4e-7 at eps = 0.05
    # not debiased: OT_eps carries the entropic bias OT_eps(mu, mu) > 0
    biased = w2_sinkhorn(x, x + v, p, p, epsilon=eps, tol=1e-4, squared=True, debiased=False)
    assert biased.value > 1.0 + 1e-4


@pytest.mark.slow  # four epsilons
def test_sinkhorn_divergence_tends_to_the_mean_gap_as_epsilon_grows():
    """Feydy et al. Thm. 1: S_eps -> |mean(mu) - mean(nu)|^2 as eps -> infinity."""
    rng = np.random.default_rng(13)
    x, y = rng.standard_normal((50, 2)), 0.3 * rng.standard_normal((40, 2)) + 0.5
    gap = float(np.sum((x.mean(0) - y.mean(0)) ** 2))
    big = w2_sinkhorn(x, y, epsilon=1e4, tol=1e-8, squared=True)
    assert big.converged
    np.testing.assert_allclose(big.value, gap, rtol=1e-3)
    assert big.value < w2_exact(x, y, squared=True)


def test_sliced_translation_with_full_orthonormal_blocks():
    """With n_projections a multiple of D every block is an orthonormal basis and
    sum_k (theta_k . v)^2 = |v|^2: the estimate is exactly |v| / sqrt(D) (SW2 < W2)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 5))
    v = np.array([1.0, 2.0, 0.0, -2.0, 0.0])  # |v| = 3
    for key in range(3):
        sw = float(w2_sliced(x, x + v, jax.random.key(key), n_projections=10))
        assert sw == pytest.approx(3.0 / np.sqrt(5.0), rel=1e-10)


# ------------------------------------------------------------------ 1-D and references


@pytest.mark.parametrize("n, m, weighted", [(40, 40, False), (30, 45, False), (25, 17, True)])
def test_quantile_formula_against_exact(n, m, weighted):
    rng = np.random.default_rng(n + m)
    x, y = rng.standard_normal(n), 0.5 + 2.0 * rng.random(m)
    p, q = (_weights(rng, n), _weights(rng, m)) if weighted else (None, None)
    want = w2_exact(x[:, None], y[:, None], p, q, squared=True)
    got = float(w2_1d(x, y, p, q, squared=True))
    np.testing.assert_allclose(got, want, rtol=1e-9)
    if not weighted and n == m:  # the sorted matching
        np.testing.assert_allclose(got, np.mean((np.sort(x) - np.sort(y)) ** 2), rtol=1e-12)


def test_quantile_formula_jits_with_weights():
    rng = np.random.default_rng(5)
    x, y = jnp.asarray(rng.standard_normal(20)), jnp.asarray(rng.standard_normal(13))
    p, q = jnp.asarray(_weights(rng, 20)), jnp.asarray(_weights(rng, 13))
    jitted = jax.jit(lambda a, b, c, d: w2_1d(a, b, c, d))
    np.testing.assert_allclose(float(jitted(x, y, p, q)), float(w2_1d(x, y, p, q)), rtol=1e-12)


def test_quantile_formula_is_differentiable():
    """d/dx_i (1/n) sum_k (x_(k) - y_(k))^2 = (2/n) (x_i - y_(rank of x_i))."""
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal(30), rng.standard_normal(30)
    grad = jax.grad(lambda a: w2_1d(a, jnp.asarray(y), squared=True))(jnp.asarray(x))
    want = 2 / 30 * (x - np.sort(y)[np.argsort(np.argsort(x))])
    np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-12)
    # sliced: the gradient of SW2^2 against centred finite differences
    xs, ys = rng.standard_normal((40, 3)), rng.standard_normal((40, 3)) + 1.0
    f = lambda a: w2_sliced(a, ys, jax.random.key(0), 6, squared=True)  # noqa: E731
    g = np.asarray(jax.grad(f)(jnp.asarray(xs)))
    h, e = 1e-6, np.zeros_like(xs)
    e[3, 1] = h
    fd = (float(f(xs + e)) - float(f(xs - e))) / (2 * h)
    np.testing.assert_allclose(g[3, 1], fd, rtol=1e-6)


def _lp_w2_sq(x, y, p, q):
    """An independent reference: the transport LP by HiGHS (scipy)."""
    n, m = len(p), len(q)
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1).ravel()
    a_eq = np.vstack([np.kron(np.eye(n), np.ones((1, m))), np.kron(np.ones((1, n)), np.eye(m))])
    res = linprog(cost, A_eq=a_eq[:-1], b_eq=np.concatenate([p, q])[:-1], method="highs")
    assert res.status == 0
    return res.fun


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_against_pot_and_an_lp_on_small_weighted_clouds(seed):
    rng = np.random.default_rng(10 + seed)
    n, m, d = 9 + seed, 7, 3
    x, y = rng.standard_normal((n, d)), rng.standard_normal((m, d)) + 0.5
    p, q = _weights(rng, n), _weights(rng, m)
    got = w2_exact(x, y, p, q, squared=True)
    np.testing.assert_allclose(got, ot.emd2(p, q, ot.dist(x, y)), rtol=1e-10)
    np.testing.assert_allclose(got, _lp_w2_sq(x, y, p, q), rtol=1e-7)
    # equal sizes, uniform: the assignment path against POT
    x2, y2 = rng.standard_normal((12, d)), rng.standard_normal((12, d))
    u = np.full(12, 1 / 12)
    np.testing.assert_allclose(
        w2_exact(x2, y2, squared=True), ot.emd2(u, u, ot.dist(x2, y2)), rtol=1e-10
    )


def test_auto_takes_the_assignment_below_the_threshold_and_the_simplex_from_it(monkeypatch):
    """The rule of `w2_exact(method="auto")` (timings in its docstring), the threshold
    lowered to 10 so that both sides are cheap; the value is the same either way."""
    rng = np.random.default_rng(5)
    calls, real = [], transport.linear_sum_assignment

    def spy(cost):
        calls.append(len(cost))
        return real(cost)

    monkeypatch.setattr(transport, "AUTO_ASSIGNMENT_MAX_N", 10)
    monkeypatch.setattr(transport, "linear_sum_assignment", spy)
    small = rng.standard_normal((9, 2)), rng.standard_normal((9, 2))
    large = rng.standard_normal((10, 2)), rng.standard_normal((10, 2))
    for x, y in (small, large):
        want = w2_exact(x, y, squared=True, method="network_simplex")
        np.testing.assert_allclose(w2_exact(x, y, squared=True), want, rtol=1e-10)
    assert calls == [9]  # the assignment for n = 9 only; n = 10 went to the simplex


def test_exact_equal_clouds_against_brute_force_over_permutations():
    """Birkhoff: for equal-size uniform clouds the optimum is a permutation (6! of them)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)) + 0.5
    best = min(
        np.mean(np.sum((x - y[list(s)]) ** 2, axis=1)) for s in itertools.permutations(range(6))
    )
    for method in ("auto", "assignment", "network_simplex"):
        assert w2_exact(x, y, squared=True, method=method) == pytest.approx(best, rel=1e-12)


def test_older_name_wasserstein2():
    x = np.array([[1.0], [1.0], [1.0], [-2.0]])
    got = wasserstein2(x, np.full(4, 0.25), np.array([[0.0], [0.5]]), np.array([0.75, 0.25]))
    np.testing.assert_allclose(got**2, 1.5625, rtol=1e-9)
    with pytest.raises(MfnnError, match="`p` must sum to 1"):
        wasserstein2(np.zeros((2, 1)), np.array([0.5, 0.6]), np.zeros((1, 1)), np.ones(1))


# ------------------------------------------------------------------ epsilon -> 0


def test_sinkhorn_divergence_tends_to_w2_squared_as_epsilon_decreases():
    """eps = 0.3 .. 0.01 (the clouds' spread is ~0.7): |S_eps - W2^2| decreases at every
    step (measured: 2.9e-2, 1.4e-2, 6.3e-3, 2.4e-3 of W2^2 = 2.66) and ends below 0.15 %;
    OT_eps decreases monotonically to W2^2 from above (a theorem: eps -> OT_eps is a
    minimum of functions nondecreasing in eps) and stays above S_eps."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 2))
    y = 0.5 * rng.standard_normal((200, 2)) + 1.0
    w2sq = w2_exact(x, y, squared=True)
    gaps, biased = [], []
    for eps in (0.3, 0.1, 0.03, 0.01):
        s = w2_sinkhorn(x, y, epsilon=eps, tol=1e-4, max_iter=5000, squared=True)
        o = w2_sinkhorn(x, y, epsilon=eps, tol=1e-4, max_iter=5000, squared=True, debiased=False)
        assert s.converged and o.converged
        assert s.value <= o.value
        gaps.append(abs(s.value - w2sq))
        biased.append(o.value)
    assert all(b < a for a, b in zip(gaps, gaps[1:], strict=False)), gaps
    assert gaps[-1] < 1.5e-3 * w2sq
    assert all(b < a for a, b in zip(biased, biased[1:], strict=False)), biased
    assert biased[-1] >= w2sq - 1e-6


# ------------------------------------------------------------------ Sinkhorn mechanics


@pytest.mark.slow  # a second compile of every Sinkhorn program, in blocks
def test_sinkhorn_blocks_agree_with_the_dense_cost(monkeypatch):
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((70, 3)), rng.standard_normal((50, 3)) + 1.0
    p, q = _weights(rng, 70), _weights(rng, 50)
    dense = w2_sinkhorn(x, y, p, q, epsilon=0.2, tol=1e-7)
    monkeypatch.setattr(transport, "_DENSE_MAX_ELEMENTS", 0)  # cost formed on the fly
    monkeypatch.setattr(transport, "_BLOCK_ELEMENTS", 7 * 50)  # 7 rows per block, ragged
    blocks = w2_sinkhorn(x, y, p, q, epsilon=0.2, tol=1e-7)
    assert dense.converged and blocks.converged
    np.testing.assert_allclose(blocks.value, dense.value, rtol=1e-9)
    # float32 runs in float32 and agrees to its precision
    single = w2_sinkhorn(x.astype(np.float32), y.astype(np.float32), p, q, epsilon=0.2, tol=1e-4)
    assert single.converged
    np.testing.assert_allclose(single.value, dense.value, rtol=1e-4)


def test_sinkhorn_non_convergence_is_reported_not_silent():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((80, 2)), rng.standard_normal((80, 2))
    with pytest.warns(RuntimeWarning, match="did not converge"):
        res = w2_sinkhorn(x, y, epsilon=1e-3, max_iter=5)
    assert isinstance(res, SinkhornResult)
    assert not res.converged and res.iterations == 5 and res.error > 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = w2_sinkhorn(x, y, epsilon=1e-3, max_iter=5, warn=False)
    assert not quiet.converged
    # default epsilon: 0.01 times the spread, reported
    spread = 0.5 * (np.mean(np.sum((x - (x.mean(0) + y.mean(0)) / 2) ** 2, 1)))
    spread += 0.5 * np.mean(np.sum((y - (x.mean(0) + y.mean(0)) / 2) ** 2, 1))
    assert w2_sinkhorn(x, y, tol=1e-3).epsilon == pytest.approx(0.01 * spread, rel=1e-9)


# ------------------------------------------------------------------ sliced


def test_sliced_is_a_lower_bound_of_exact():
    """Each projection is 1-Lipschitz, so SW2 <= W2 for any set of directions."""
    rng = np.random.default_rng(8)
    for k, (n, m, d) in enumerate([(100, 100, 2), (100, 100, 6), (60, 45, 4)]):
        x = rng.standard_normal((n, d))
        y = rng.standard_normal((m, d)) * rng.random(d) * 2 + rng.standard_normal(d)
        p, q = (None, None) if n == m else (_weights(rng, n), _weights(rng, m))
        exact = w2_exact(x, y, p, q)
        # each direction alone (the bound holds term by term), then a mean over 32
        for key in jax.random.split(jax.random.key(k), 8):
            assert 0 < float(w2_sliced(x, y, key, 1, p, q)) <= exact + 1e-12
        if k == 0:
            assert float(w2_sliced(x, y, jax.random.key(k), 32, p, q)) <= exact + 1e-12


def test_sliced_jits_and_runs_in_float32():
    x = jax.random.normal(jax.random.key(1), (1000, 10), jnp.float32)
    y = x * 0.5 + 1.0
    f = jax.jit(w2_sliced, static_argnames="n_projections")
    a = f(x, y, jax.random.key(0), n_projections=20)
    assert a.dtype == jnp.float32
    np.testing.assert_allclose(float(a), float(w2_sliced(x, y, jax.random.key(0), 20)), rtol=1e-6)


# ------------------------------------------------------------------ geodesics


def test_displacement_interpolation_is_a_constant_speed_geodesic():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((120, 2))
    y = np.concatenate([0.3 * rng.standard_normal((60, 2)) + 3, rng.random((60, 2)) - 2])
    sigma = optimal_map(x, y)
    assert np.array_equal(np.sort(sigma), np.arange(120))  # T # mu = nu
    w01 = w2_exact(x, y)
    np.testing.assert_allclose(np.sqrt(np.mean(np.sum((x - y[sigma]) ** 2, 1))), w01, rtol=1e-12)
    times = [0.0, 0.2, 0.5, 0.9, 1.0]
    clouds = displacement_interpolation(x, y, times, permutation=sigma)
    assert clouds.shape == (5, 120, 2)
    np.testing.assert_allclose(clouds[0], x)
    np.testing.assert_allclose(clouds[-1], y[sigma])
    for i, s in enumerate(times):
        for j, t in enumerate(times):
            if i < j:
                np.testing.assert_allclose(
                    w2_exact(clouds[i], clouds[j]), (t - s) * w01, rtol=1e-9, atol=1e-12
                )
    np.testing.assert_allclose(displacement_interpolation(x, y, 0.5), clouds[2])
    # the mixture (mu + nu) / 2 is not on a geodesic: it is off the straight path
    mix = np.concatenate([x, y])
    half = np.full(240, 1 / 240)
    detour = w2_exact(x, mix, q=half) + w2_exact(mix, y, p=half)
    assert detour > 1.2 * w01


@pytest.mark.slow  # renders a GIF
def test_geodesic_animation_gif_and_png_fallback(tmp_path, monkeypatch):
    from matplotlib import animation
    from PIL import Image

    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((40, 3)), rng.standard_normal((40, 3)) + 2  # D = 3: projected
    out = geodesic_animation(x, y, tmp_path / "geo", frames=6)
    assert out.suffix == ".gif" and out.exists()
    assert Image.open(out).n_frames == 6
    out1 = geodesic_animation(x[:, :1], y[:, :1], tmp_path / "geo1d.gif", frames=3)  # D = 1
    assert Image.open(out1).n_frames == 3
    monkeypatch.setattr(animation.writers, "is_available", lambda name: False)
    strip = geodesic_animation(x, y, tmp_path / "geo_strip.gif", frames=5)
    assert strip.suffix == ".png" and strip.exists()


# ------------------------------------------------------------------ bad input


def test_clouds_of_different_dimension_are_refused_everywhere():
    x, y = np.zeros((4, 2)), np.ones((4, 3))
    pattern = r"`y` must live in the same dimension D as `x`.*\(4, 2\).*\(4, 3\)"
    for call in (
        lambda: w2_exact(x, y),
        lambda: w2_sinkhorn(x, y),
        lambda: w2_sliced(x, y, jax.random.key(0)),
        lambda: optimal_map(x, y),
        lambda: displacement_interpolation(x, y, 0.5, permutation=[0, 1, 2, 3]),
        lambda: geodesic_animation(x, y, "unused.gif"),
    ):
        with pytest.raises(ConfigError, match=pattern):
            call()


@pytest.mark.parametrize(
    "p, q, match",
    [
        (np.array([0.5, 0.7, -0.2]), None, r"`p` must be nonnegative.*`p\[2\]` = -0.2"),
        (np.array([0.5, 0.6, 0.1]), None, r"`p` must sum to 1.*got sum 1.2"),
        (None, np.array([0.3, 0.3]), r"`q` must sum to 1"),
        (np.array([0.5, 0.5]), None, r"`p` must be a 1-D array of weights.*\(3,\).*\(2,\)"),
        (None, np.array([1.0, np.nan]), r"`q` must be finite"),
    ],
)
def test_bad_weights_are_refused_with_the_argument_named(p, q, match):
    x, y = np.zeros((3, 2)), np.ones((2, 2))
    for call in (
        lambda: w2_exact(x, y, p, q),
        lambda: w2_sinkhorn(x, y, p, q),
        lambda: w2_sliced(x, y, jax.random.key(0), 4, p, q),
        lambda: w2_1d(x[:, 0], y[:, 0], p, q),
    ):
        with pytest.raises(ConfigError, match=match):
            call()


def test_other_bad_input():
    x = np.zeros((3, 2))
    with pytest.raises(ConfigError, match=r"`x` must be a 2-D array"):
        w2_exact(np.zeros(3), x)
    with pytest.raises(ConfigError, match=r"`method` must be one of"):
        w2_exact(x, x, method="hungarian")
    with pytest.raises(ConfigError, match=r"`method` = 'assignment' needs two equal-size"):
        w2_exact(x, np.zeros((4, 2)), method="assignment")
    with pytest.raises(ConfigError, match=r"`y` must be finite"):
        w2_exact(x, np.full((3, 2), np.inf))
    with pytest.raises(ConfigError, match=r"`y` must be a 1-D sample"):
        w2_1d(np.zeros(3), x)
    with pytest.raises(ConfigError, match=r"`epsilon` must be a positive number"):
        w2_sinkhorn(x, x + 1, epsilon=0.0)
    with pytest.raises(ConfigError, match=r"`max_iter` must be a positive integer"):
        w2_sinkhorn(x, x + 1, max_iter=2.5)
    with pytest.raises(ConfigError, match=r"`n_projections` must be a positive integer"):
        w2_sliced(x, x, jax.random.key(0), 0)
    with pytest.raises(ConfigError, match=r"as many points as `x`"):
        optimal_map(x, np.zeros((4, 2)))
    with pytest.raises(ConfigError, match=r"`s` must be a time in \[0, 1\]"):
        displacement_interpolation(x, x, 1.5)
    with pytest.raises(ConfigError, match=r"`permutation` must be a permutation"):
        displacement_interpolation(x, x, 0.5, permutation=[0, 0, 1])
    with pytest.raises(ConfigError, match=r"`frames` must be an integer >= 2"):
        geodesic_animation(x, x, "unused.gif", frames=1)
