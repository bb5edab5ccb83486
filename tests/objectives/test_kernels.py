"""Closed-form population kernels and Gauss quadrature rules (docs/theory.md section 3).

    relu: K(u, v) = |u| |v| / (2 pi) (sin t + (pi - t) cos t),   t = angle(u, v),
    erf:  K(u, v) = (2 / pi) arcsin(2 u.v / sqrt((1 + 2|u|^2)(1 + 2|v|^2))),

for x ~ N(0, I_d), checked against quadrature (d = 2) and Monte Carlo (d = 5); gradients
against finite differences and against autodiff through quadrature, at t = 0 and t = pi
included. References are built here from the integrand sigma(u.x) sigma(v.x) alone.

A tensor-product Gauss-Hermite rule converges only algebraically on the relu integrand
(it has kinks along the lines u.x = 0 and v.x = 0: ~1e-4 relative error at 80 nodes per
dimension), so the tight relu reference is a polar rule in d = 2 whose angular pieces are
split at the kinks (Gauss-Legendre on each smooth sector, Gauss-Laguerre in r^2 / 2).
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import erf

from mfnn.errors import ConfigError
from mfnn.objectives.kernels import (
    KERNELS,
    erf_kernel,
    gauss_hermite,
    gauss_legendre,
    get_kernel,
    quadrature_rule,
    relu_kernel,
)

F64 = jnp.float64
ACTIVATION = {"relu": jax.nn.relu, "erf": erf}
ANGLES = [0.0, np.pi / 3, np.pi / 2, 2 * np.pi / 3, np.pi, 1.0]
NORMS = [(1.0, 1.0), (2.0, 0.5), (0.3, 1.7)]


def polar(t: float, r: float = 1.0, phase: float = 0.4) -> jax.Array:
    """The (1, 2) row r (cos(phase + t), sin(phase + t)): angle t from `polar(0)`."""
    return jnp.array([[r * np.cos(phase + t), r * np.sin(phase + t)]], F64)


@partial(jax.jit, static_argnums=0)
def quad_kernel(activation, u, v, x, w):
    """sum_a w_a sigma(u . x_a) sigma(v . x_a): (k, l), the quadrature version of K."""
    s = ACTIVATION[activation]
    return (w[:, None] * s(x @ u.T)).T @ s(x @ v.T)


# Jitted once at import: eager autodiff dispatches op by op and dominates the run time.
def _kernel(activation, u, v):
    return KERNELS[activation](u, v)


def _total(activation, u, v):
    return jnp.sum(KERNELS[activation](u, v))


def _quad_total(activation, u, v, x, w):
    return jnp.sum(quad_kernel(activation, u, v, x, w))


kernel = jax.jit(_kernel, static_argnums=0)
total = jax.jit(_total, static_argnums=0)
grad_u = jax.jit(jax.grad(_total, argnums=1), static_argnums=0)
grad_v = jax.jit(jax.grad(_total, argnums=2), static_argnums=0)
quad_grad_u = jax.jit(jax.grad(_quad_total, argnums=1), static_argnums=0)
grad_trace = jax.jit(jax.grad(lambda u: jnp.trace(relu_kernel(u, u))))


def sector_rule(rows, angular_nodes=24, radial_nodes=4):
    """Quadrature for E h(x), x ~ N(0, I_2), exact to rounding when h(r e_phi) is a
    low-degree polynomial in r^2 / 2 times a function of phi smooth between the kinks
    phi = angle(w) +- pi/2 of the given rows w (as relu(u.x) relu(v.x) is).

    Polar coordinates: E h = (1/(2 pi)) int_0^{2 pi} dphi int_0^inf e^{-s} h(sqrt(2 s) e_phi) ds.
    The kinks are fixed numbers (no gradient flows through them): the Leibniz boundary
    terms vanish because the integrand is continuous across a kink, so autodiff through
    this rule gives the exact gradient.
    """
    rows = np.asarray(rows).reshape(-1, 2)
    base = np.arctan2(rows[:, 1], rows[:, 0])
    kinks = np.mod(np.concatenate([base + np.pi / 2, base - np.pi / 2]), 2 * np.pi)
    edges = np.sort(np.concatenate([[0.0, 2 * np.pi], kinks]))  # fixed count: one compile
    z, wz = np.polynomial.legendre.leggauss(angular_nodes)
    a, b = edges[:-1, None], edges[1:, None]
    phi = (a + (b - a) * (z + 1) / 2).ravel()
    wphi = ((b - a) / 2 * wz / (2 * np.pi)).ravel()
    s, ws = np.polynomial.laguerre.laggauss(radial_nodes)
    r = np.sqrt(2 * s)
    x = (r[:, None, None] * np.stack([np.cos(phi), np.sin(phi)], -1)[None]).reshape(-1, 2)
    w = (ws[:, None] * wphi[None, :]).ravel()
    return jnp.asarray(x, F64), jnp.asarray(w, F64)


@partial(jax.jit, static_argnums=0)
def monte_carlo(activation, u, v, x):
    """Sample mean of sigma(u.x_a) sigma(v.x_a) over the rows x_a, and its standard error."""
    n = x.shape[0]
    a, b = ACTIVATION[activation](x @ u.T), ACTIVATION[activation](x @ v.T)  # (n, k), (n, l)
    mean = a.T @ b / n
    var = (a**2).T @ (b**2) / n - mean**2  # E[(ab)^2] - (E ab)^2, per (k, l) entry
    return mean, jnp.sqrt(var * n / (n - 1) / n)


def central_difference(f, u, h=1e-6):
    """(f(u + h e_i) - f(u - h e_i)) / (2 h) for every entry i of u."""
    flat = np.asarray(u, np.float64).ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        e = np.zeros_like(flat)
        e[i] = h
        plus = float(f(jnp.asarray((flat + e).reshape(u.shape), F64)))
        minus = float(f(jnp.asarray((flat - e).reshape(u.shape), F64)))
        out[i] = (plus - minus) / (2 * h)
    return out.reshape(u.shape)


# ------------------------------------------------------------------ kernel values


@pytest.mark.parametrize("norms", NORMS)
@pytest.mark.parametrize("t", ANGLES)
def test_relu_kernel_against_sector_quadrature(t, norms):
    """relu closed form = kink-split polar quadrature in d = 2, to 1e-12 relative."""
    u, v = polar(t, norms[0]), polar(0.0, norms[1])
    x, w = sector_rule(jnp.concatenate([u, v]))
    exact = kernel("relu", u, v)
    scale = norms[0] * norms[1] / 2  # K(u, v) <= |u||v|/2
    np.testing.assert_allclose(exact, quad_kernel("relu", u, v, x, w), rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("activation", ["relu", "erf"])
@pytest.mark.parametrize("norms", NORMS)
@pytest.mark.parametrize("t", ANGLES)
def test_kernels_against_gauss_hermite(activation, t, norms):
    """Closed form = tensor Gauss-Hermite (80 x 80 nodes) in d = 2.

    erf is entire, so the rule converges spectrally: 1e-8 relative. The relu integrand
    has kinks, the rule converges algebraically (~1e-4 at 80 nodes): 1e-3 relative,
    loosened on purpose; `test_relu_kernel_against_sector_quadrature` is the tight check.
    """
    u, v = polar(t, norms[0]), polar(0.0, norms[1])
    x, w = gauss_hermite(2, 80, F64)
    scale = float(jnp.sqrt(kernel(activation, u, u) * kernel(activation, v, v))[0, 0])
    atol = {"relu": 1e-3, "erf": 1e-8}[activation] * scale
    np.testing.assert_allclose(
        kernel(activation, u, v), quad_kernel(activation, u, v, x, w), rtol=0, atol=atol
    )


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_kernels_against_monte_carlo(key, activation):
    """Closed form within 5 standard errors of a 2e5-sample Monte Carlo mean, d = 5.

    Rows: random directions and norms, plus u parallel to v (t = 0); the standard error
    of each entry is the sample standard deviation of sigma(u.x) sigma(v.x) / sqrt(n).
    """
    n, d = 200_000, 5
    ku, kv, kx = jax.random.split(key, 3)
    u = jax.random.normal(ku, (4, d), F64) * jnp.array([[0.5], [1.0], [1.5], [2.0]], F64)
    v = jax.random.normal(kv, (3, d), F64)
    v = jnp.concatenate([v, 0.7 * u[:1]])  # angle 0 with u[0]
    x = jax.random.normal(kx, (n, d), F64)
    mean, stderr = monte_carlo(activation, u, v, x)
    exact = kernel(activation, u, v)
    assert exact.shape == (4, 4)
    assert bool(jnp.all(stderr > 0))
    z = jnp.abs(mean - exact) / stderr
    assert float(jnp.max(z)) < 5.0, np.asarray(z)


def test_relu_kernel_special_angles():
    """K(u, u) = |u|^2 / 2, K(u, -u) = 0, K(u, v) = |u||v| / (2 pi) for u orthogonal to v,
    and K(u, v) = K(v, u)."""
    rng = np.random.default_rng(0)
    u = jnp.asarray(rng.normal(size=(5, 4)), F64)
    v = jnp.asarray(rng.normal(size=(3, 4)), F64)
    sq = jnp.sum(u**2, axis=-1)
    np.testing.assert_allclose(jnp.diag(kernel("relu", u, u)), sq / 2, rtol=1e-14)
    np.testing.assert_allclose(jnp.diag(kernel("relu", u, -u)), 0.0, atol=1e-14)
    np.testing.assert_allclose(jnp.diag(kernel("relu", u, 3.0 * u)), 1.5 * sq, rtol=1e-14)
    a, b = polar(0.0, 2.0), polar(np.pi / 2, 3.0)
    np.testing.assert_allclose(kernel("relu", a, b), 6.0 / (2 * np.pi), rtol=1e-14)
    np.testing.assert_allclose(kernel("relu", u, v), kernel("relu", v, u).T, rtol=1e-14)


def test_erf_kernel_symmetric_and_odd():
    """K(u, v) = K(v, u), K(u, -v) = -K(u, v), K(u, u) = (2/pi) arcsin(2|u|^2/(1 + 2|u|^2))."""
    rng = np.random.default_rng(1)
    u = jnp.asarray(rng.normal(size=(5, 4)), F64)
    v = jnp.asarray(rng.normal(size=(3, 4)), F64)
    np.testing.assert_allclose(kernel("erf", u, v), kernel("erf", v, u).T, rtol=1e-14)
    np.testing.assert_allclose(kernel("erf", u, -v), -kernel("erf", u, v), rtol=1e-14)
    sq = jnp.sum(u**2, axis=-1)
    diag = 2 / np.pi * jnp.arcsin(2 * sq / (1 + 2 * sq))
    np.testing.assert_allclose(jnp.diag(kernel("erf", u, u)), diag, rtol=1e-14)


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_kernel_gram_is_positive_semidefinite(activation):
    """K(U, U) is a covariance matrix: symmetric with eigenvalues >= 0 (to rounding)."""
    rng = np.random.default_rng(2)
    u = jnp.asarray(rng.normal(size=(12, 3)), F64)
    u = jnp.concatenate([u, 2.0 * u[:2], -u[:2]])  # parallel and antiparallel rows
    gram = kernel(activation, u, u)
    np.testing.assert_allclose(gram, gram.T, rtol=1e-14)
    assert float(jnp.min(jnp.linalg.eigvalsh(gram))) > -1e-12


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_kernel_keeps_dtype(activation, dtype):
    """Values and gradients stay in the input dtype (strict promotion: no float64 leaks)."""
    u = jnp.asarray([[1.0, 2.0], [0.0, 0.0]], dtype)
    v = jnp.asarray([[0.5, -1.0], [2.0, 4.0], [-1.0, -2.0]], dtype)
    value = kernel(activation, u, v)
    assert value.dtype == dtype
    assert value.shape == (2, 3)
    g = grad_u(activation, u, v)
    assert g.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(g)))


# ------------------------------------------------------------------ gradients

GRAD_CASES = {
    "t=0, u=2v": (polar(0.0, 2.0), polar(0.0, 1.0)),
    "t=0, u=v": (polar(0.0, 1.3), polar(0.0, 1.3)),
    "t=pi": (polar(np.pi, 0.7), polar(0.0, 1.0)),
    "t=pi/3": (polar(np.pi / 3, 2.0), polar(0.0, 0.5)),
    "t=2pi/3": (polar(2 * np.pi / 3, 1.0), polar(0.0, 1.5)),
    "t=1": (polar(1.0, 0.8), polar(0.0, 1.1)),
}


@pytest.mark.parametrize("case", list(GRAD_CASES))
def test_relu_kernel_gradient_matches_finite_differences(case):
    """jax.grad of K in u and in v is finite and equals a central difference (h = 1e-6).

    At t = 0 the difference straddles the kink of arccos, which is fine: K is C^1 there
    (g(cos t) = pi cos t + t^3 / 3 + O(t^4)).
    """
    u, v = GRAD_CASES[case]
    for grad, fd in [
        (grad_u("relu", u, v), central_difference(lambda a: total("relu", a, v), u)),
        (grad_v("relu", u, v), central_difference(lambda b: total("relu", u, b), v)),
    ]:
        assert bool(jnp.all(jnp.isfinite(grad)))
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-8)


def test_relu_kernel_gradient_exact_values_at_zero_and_pi():
    """Parallel u = a v (a > 0): grad_u K(u, v) = v / 2 = grad_b K(v, b) at b = a v;
    antiparallel: grad_u K(-a v, v) = 0; diagonal: grad of trace K(U, U) = U
    (from K(u, u) = |u|^2 / 2)."""
    v = jnp.asarray([[0.6, -1.2, 0.4]], F64)
    for a in [0.5, 1.0, 3.0]:
        np.testing.assert_allclose(grad_u("relu", a * v, v), v / 2, rtol=1e-12)
        np.testing.assert_allclose(grad_u("relu", -a * v, v), 0.0, atol=1e-12)
        np.testing.assert_allclose(grad_v("relu", v, a * v), v / 2, rtol=1e-12)
    u = jnp.asarray(np.random.default_rng(3).normal(size=(4, 3)), F64)
    np.testing.assert_allclose(grad_trace(u), u, rtol=1e-12)


def test_relu_kernel_zero_vector():
    """K(0, v) = 0 with a finite gradient (the double-where norm)."""
    v = jnp.asarray([[1.0, 2.0], [-3.0, 0.5]], F64)
    z = jnp.zeros((1, 2), F64)
    np.testing.assert_array_equal(kernel("relu", z, v), 0.0)
    np.testing.assert_array_equal(kernel("relu", z, z), 0.0)
    assert bool(jnp.all(jnp.isfinite(grad_u("relu", z, v))))
    assert bool(jnp.all(jnp.isfinite(grad_trace(z))))


@pytest.mark.parametrize("case", ["t=pi/3", "t=2pi/3", "t=1"])
def test_relu_kernel_gradient_matches_quadrature_gradient(case):
    """grad_u K = autodiff through the quadrature sum of relu(u.x) relu(v.x), d = 2.

    Sector rule: 1e-11 relative. Tensor Gauss-Hermite (160 x 160 nodes): the
    differentiated integrand is discontinuous, so only ~1e-3 accuracy (loosened on purpose).
    """
    u, v = GRAD_CASES[case]
    grad = grad_u("relu", u, v)
    scale = float(jnp.linalg.norm(v))
    x, w = sector_rule(jnp.concatenate([u, v]))
    np.testing.assert_allclose(grad, quad_grad_u("relu", u, v, x, w), rtol=0, atol=1e-11 * scale)
    x, w = gauss_hermite(2, 160, F64)
    np.testing.assert_allclose(grad, quad_grad_u("relu", u, v, x, w), rtol=0, atol=1e-2 * scale)


@pytest.mark.parametrize("t", [0.0, np.pi / 3, np.pi])
def test_erf_kernel_gradient(t):
    """grad of the erf kernel = central difference = autodiff through Gauss-Hermite."""
    u, v = polar(t, 1.2), polar(0.0, 0.8)
    grad = grad_u("erf", u, v)
    fd = central_difference(lambda a: total("erf", a, v), u)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-9)
    x, w = gauss_hermite(2, 80, F64)
    np.testing.assert_allclose(grad, quad_grad_u("erf", u, v, x, w), rtol=0, atol=1e-8)


def test_get_kernel():
    assert get_kernel("relu") is relu_kernel
    assert get_kernel("erf") is erf_kernel
    for bad in ["tanh", "softplus", None]:
        with pytest.raises(ConfigError, match=r"`data\.population\.method") as err:
            get_kernel(bad)
        message = str(err.value)
        for word in ["relu", "erf", "bias", "quadrature", "monte_carlo", repr(bad)]:
            assert word in message, message


# ------------------------------------------------------------------ quadrature rules


def moment(x, w, powers):
    """sum_a w_a prod_i x_{a,i}^{p_i} (in numpy: no per-shape compiles)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    return float(np.sum(w * np.prod(x ** np.asarray(powers, np.float64), axis=-1)))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_gauss_hermite_moments(dim):
    """Gaussian moments: E x1^2 = 1, E x1^4 = 3, E x1^6 = 15, E x1^2 x2^2 = 1, odd ones 0;
    exact with 4 nodes (degree <= 7 per axis), and not with 2 (degree <= 3)."""
    nodes = 4
    x, w = gauss_hermite(dim, nodes, F64)
    assert x.shape == (nodes**dim, dim) and w.shape == (nodes**dim,)
    assert x.dtype == w.dtype == F64
    assert bool(np.all(np.asarray(w) > 0))
    np.testing.assert_allclose(np.sum(np.asarray(w)), 1.0, rtol=1e-14)

    def e(*p):
        return moment(x, w, list(p) + [0] * (dim - len(p)))

    np.testing.assert_allclose([e(1), e(2), e(3), e(4), e(6)], [0, 1, 0, 3, 15], atol=1e-12)
    np.testing.assert_allclose(e(0), 1.0, rtol=1e-14)
    if dim >= 2:
        np.testing.assert_allclose([e(2, 2), e(1, 1), e(4, 2)], [1, 0, 3], atol=1e-12)
    if dim == 3:
        np.testing.assert_allclose([e(2, 2, 2), e(2, 0, 4)], [1, 3], atol=1e-12)
    x2, w2 = gauss_hermite(dim, 2, F64)  # nodes +-1: E x^4 = 1, not 3
    np.testing.assert_allclose(moment(x2, w2, [4] + [0] * (dim - 1)), 1.0, rtol=1e-14)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_gauss_legendre_moments(dim):
    """Uniform moments on [low, high]^dim: E x_i^k = (high^(k+1) - low^(k+1)) / ((k+1)(high-low)),
    products of independent coordinates; exact with 3 nodes for k <= 5."""
    low, high, nodes = -0.5, 2.0, 3
    x, w = gauss_legendre(dim, nodes, low, high, F64)
    assert x.shape == (nodes**dim, dim) and w.shape == (nodes**dim,)
    assert bool(np.all(np.asarray(w) > 0))
    assert bool(np.all((np.asarray(x) > low) & (np.asarray(x) < high)))
    np.testing.assert_allclose(np.sum(np.asarray(w)), 1.0, rtol=1e-14)

    def uniform(k):
        return (high ** (k + 1) - low ** (k + 1)) / ((k + 1) * (high - low))

    for axis in range(dim):
        for k in range(1, 6):
            powers = [0] * dim
            powers[axis] = k
            np.testing.assert_allclose(moment(x, w, powers), uniform(k), rtol=1e-13)
    if dim >= 2:
        powers = [2, 3] + [1] * (dim - 2)
        expected = uniform(2) * uniform(3) * uniform(1) ** (dim - 2)
        np.testing.assert_allclose(moment(x, w, powers), expected, rtol=1e-13)


def test_quadrature_rule_dispatch_and_dtype():
    x, w = quadrature_rule("gaussian", 2, 5, F64)
    xr, wr = gauss_hermite(2, 5, F64)
    np.testing.assert_array_equal(x, xr)
    np.testing.assert_array_equal(w, wr)
    x, w = quadrature_rule("uniform", 3, 4, F64, low=0.0, high=3.0)
    xr, wr = gauss_legendre(3, 4, 0.0, 3.0, F64)
    np.testing.assert_array_equal(x, xr)
    np.testing.assert_array_equal(w, wr)
    x, w = quadrature_rule("uniform", 1, 6, F64)  # default box [-1, 1]
    np.testing.assert_allclose(moment(x, w, [2]), 1 / 3, rtol=1e-13)
    x, w = quadrature_rule("gaussian", 1, 1, jnp.float32)
    assert x.dtype == w.dtype == jnp.float32
    assert x.shape == (1, 1)
    np.testing.assert_array_equal(w, 1.0)


@pytest.mark.parametrize(
    "args, kwargs, field",
    [
        (("gaussian", 4, 5, F64), {}, "`data.population.method"),
        (("uniform", 7, 2, F64), {}, "`data.population.method"),
        (("gaussian", 2, 0, F64), {}, "`data.population.nodes`"),
        (("uniform", 1, -3, F64), {}, "`data.population.nodes`"),
        (("gaussian", 2, 2.5, F64), {}, "`data.population.nodes`"),
        (("laplace", 2, 5, F64), {}, "`data.population.inputs`"),
        (("gaussian", 0, 5, F64), {}, "`data.inputs.dim`"),
        (("uniform", 2, 5, F64), {"low": 1.0, "high": 1.0}, "`data.inputs`"),
    ],
)
def test_quadrature_rule_errors(args, kwargs, field):
    with pytest.raises(ConfigError) as err:
        quadrature_rule(*args, **kwargs)
    message = str(err.value)
    assert field in message, message
    if field == "`data.population.method":
        assert f"d = {args[1]}" in message and "monte_carlo" in message, message


def test_low_level_rules_validate():
    with pytest.raises(ConfigError, match="`data.population.nodes`"):
        gauss_hermite(1, 0, F64)
    with pytest.raises(ConfigError, match="`data.population.nodes`"):
        gauss_legendre(2, 0, -1.0, 1.0, F64)
    with pytest.raises(ConfigError, match="`data.inputs`"):
        gauss_legendre(1, 3, 2.0, -1.0, F64)
