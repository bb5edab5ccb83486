"""`mfnn.kernels`: NNGP and NTK against Monte Carlo over the initial law and against the
empirical tangent kernel of a wide network; kernel gradient flow against its ODE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import TwoLayer
from mfnn.diagnostics.kernel import tangent_kernel
from mfnn.errors import ConfigError
from mfnn.kernels import kernel_flow, kernel_ridge, nngp, ntk

X = jnp.array([[0.3, -1.2, 0.5], [1.0, 0.4, -0.7], [-0.6, 0.2, 0.9], [0.0, 0.0, 0.0]])


def monte_carlo(activation, a_std, w_std, b_std, n=400_000, seed=0):
    """Sample means (and standard errors) of phi phi' and grad phi . grad phi'."""
    k = jax.random.split(jax.random.key(seed), 3)
    a = a_std * jax.random.normal(k[0], (n,))
    w = w_std * jax.random.normal(k[1], (n, X.shape[1]))
    b = b_std * jax.random.normal(k[2], (n,))
    net = TwoLayer(d=3, activation=activation, bias=True)
    theta = jnp.column_stack([a, w, b])
    phi = net.features(theta, X)  # (4, n)
    # gradient of a sigma(w.x + b) w.r.t. (a, w, b): (sigma, a sigma' x, a sigma')
    act = {"relu": jax.nn.relu, "erf": jax.scipy.special.erf, "tanh": jnp.tanh}[activation]
    dact = jax.vmap(jax.grad(act))
    u = X @ w.T + b[None, :]
    s, ds = act(u), dact(u.reshape(-1)).reshape(u.shape)
    gram = X @ X.T + 1.0
    nngp_mc = (phi[:, None, :] * phi[None, :, :]).mean(-1)
    ntk_samples = s[:, None] * s[None] + (a**2) * ds[:, None] * ds[None] * gram[:, :, None]
    return nngp_mc, ntk_samples.mean(-1), ntk_samples.std(-1) / np.sqrt(n)


@pytest.mark.parametrize("activation", ["relu", "erf", "tanh"])
def test_kernels_are_the_expectations_over_the_initial_law(activation):
    """Within 5 standard errors of 4e5 samples; tanh by the Gauss-Hermite path."""
    a_std, w_std, b_std = 0.8, 1.3, 0.5
    mc_nngp, mc_ntk, se = monte_carlo(activation, a_std, w_std, b_std)
    k = ntk(X, activation=activation, a_std=a_std, w_std=w_std, b_std=b_std)
    g = nngp(X, activation=activation, a_std=a_std, w_std=w_std, b_std=b_std)
    assert np.all(np.abs(k - mc_ntk) <= 5 * se + 1e-9), (k - mc_ntk) / se
    np.testing.assert_allclose(g, mc_nngp, atol=0.01 * float(jnp.max(g)))
    wrong = ntk(X, activation=activation, a_std=a_std, w_std=w_std, b_std=0.0)  # control
    assert np.max(np.abs(wrong - mc_ntk) / se) > 10


@pytest.mark.parametrize("activation", ["erf"])  # smooth: the rule converges spectrally
def test_closed_forms_match_the_quadrature_path(activation):
    from mfnn import kernels

    x = X[:3]
    closed = kernels._expectations(x, x, activation, 1.1, 0.4, 48)
    quad = kernels._quadrature_pair(activation, *kernels._sigma(x, x, 1.1, 0.4), 96)
    # (relu's kink makes Gauss-Hermite converge algebraically, 2 % at 96 nodes: its closed
    # forms are checked against Monte Carlo above)
    np.testing.assert_allclose(closed[0], quad[0], rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(closed[1], quad[1], rtol=1e-7, atol=1e-10)


def test_empirical_tangent_kernel_converges_to_the_ntk_at_rate_m_to_the_minus_half():
    """|Theta_m - Theta| at m = 10^3, 10^4, 10^5 (ntk scaling, erf, no bias): log-log
    slope -1/2 within 0.15 (a fluctuation of independent units)."""
    net = TwoLayer(d=3, activation="erf", scaling="ntk", bias=False)
    target = ntk(X, activation="erf", trainable=("a", "w"))
    errs = []
    for m in (1_000, 10_000, 100_000):
        reps = []
        for seed in range(4):
            theta = jax.random.normal(jax.random.key(seed), (m, net.dim))
            emp = tangent_kernel(net, theta, X) * net.scaling.velocity(m)
            reps.append(float(jnp.sqrt(jnp.mean((emp - target) ** 2))))
        errs.append(np.sqrt(np.mean(np.square(reps))))
    slope = np.polyfit(np.log([1e3, 1e4, 1e5]), np.log(errs), 1)[0]
    assert abs(slope + 0.5) < 0.15, (errs, slope)


def test_kernel_flow_solves_its_ode_and_tends_to_interpolation():
    x = jax.random.normal(jax.random.key(1), (12, 2))
    xs = jax.random.normal(jax.random.key(2), (5, 2))
    y = jnp.sin(x[:, 0])
    k, ks = ntk(x, activation="relu", b_std=0.3), ntk(xs, x, activation="relu", b_std=0.3)
    f0 = 0.1 * jnp.cos(x[:, 1])
    h, t = 1e-4, 0.7
    fp, sp = kernel_flow(k, y, t + h, k_test=ks, f0_train=f0)
    fm, sm = kernel_flow(k, y, t - h, k_test=ks, f0_train=f0)
    f, _ = kernel_flow(k, y, t, k_test=ks, f0_train=f0)
    n = len(y)
    np.testing.assert_allclose((fp - fm) / (2 * h), -(k @ (f - y)) / n, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose((sp - sm) / (2 * h), -(ks @ (f - y)) / n, rtol=1e-6, atol=1e-9)
    f_inf, s_inf = kernel_flow(k, y, jnp.inf, k_test=ks)
    np.testing.assert_allclose(f_inf, y, atol=1e-8)  # interpolation
    np.testing.assert_allclose(s_inf, kernel_ridge(k, y, ks, 0.0), rtol=1e-6, atol=1e-8)
    f_zero, s_zero = kernel_flow(k, y, 0.0, k_test=ks)
    assert float(jnp.max(jnp.abs(f_zero))) < 1e-13 and float(jnp.max(jnp.abs(s_zero))) == 0


def test_ridge_is_the_regularised_solve():
    x = jax.random.normal(jax.random.key(3), (10, 2))
    y = x[:, 0] ** 2
    k = nngp(x, activation="erf", b_std=1.0)
    pred = kernel_ridge(k, y, k, 0.1)
    want = k @ jnp.linalg.solve(k + 10 * 0.1 * jnp.eye(10), y)
    np.testing.assert_allclose(pred, want, rtol=1e-10)


def test_bad_input_is_refused():
    with pytest.raises(ConfigError, match="activation"):
        ntk(X, activation="nope")
    with pytest.raises(ConfigError, match="w_std"):
        nngp(X, w_std=-1.0)
    with pytest.raises(ConfigError, match="trainable"):
        ntk(X, trainable=("c",))
    with pytest.raises(ConfigError, match="ridge"):
        kernel_ridge(jnp.eye(2), jnp.ones(2), jnp.eye(2), -1.0)


def test_discrete_flow_is_the_euler_iteration():
    x = jax.random.normal(jax.random.key(4), (9, 2))
    y = jnp.tanh(x[:, 1])
    k = ntk(x, activation="erf", b_std=0.5)
    f, dt = jnp.zeros(9), 0.05
    for _ in range(40):
        f = f - dt / 9 * (k @ (f - y))
    got, _ = kernel_flow(k, y, 40 * dt, dt=dt)
    np.testing.assert_allclose(got, f, rtol=1e-12, atol=1e-13)
    exact, _ = kernel_flow(k, y, 40 * dt)
    assert float(jnp.max(jnp.abs(exact - f))) > 1e-6  # the continuous flow differs by O(dt)
