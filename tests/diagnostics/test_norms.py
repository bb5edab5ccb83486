"""`path_norm`: the formula of docs/theory.md section 16, its invariances, the bound it gives on
|f| for ReLU units, the scalings, and absent blocks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn.diagnostics.norms import path_norm
from mfnn.models import TwoLayer


def _net(d=3, **kw):
    return TwoLayer(d=d, activation="relu", **({"scaling": "mean_field"} | kw))


def test_formula_against_a_loop(key):
    net = _net(d=3)
    theta = jax.random.normal(key, (11, 5), jnp.float64)
    t = np.asarray(theta)
    expected = np.mean([abs(r[0]) * (np.abs(r[1:4]).sum() + abs(r[4])) for r in t])
    assert float(path_norm(net, theta)) == pytest.approx(expected, rel=1e-14)


def test_permutation_and_relu_rescaling_invariance(key):
    net = _net(d=4)
    theta = jax.random.normal(key, (20, 6), jnp.float64)
    c = jnp.exp(jax.random.normal(jax.random.fold_in(key, 1), (20,), jnp.float64))
    a, w, b = net.split(theta)
    rescaled = net.join(a * c, w / c[:, None], b / c)
    x = jax.random.uniform(jax.random.fold_in(key, 2), (7, 4), jnp.float64, -1.0, 1.0)
    # the rescaling leaves f (ReLU is 1-homogeneous) and the path norm unchanged
    np.testing.assert_allclose(net.predict(rescaled, x), net.predict(theta, x), rtol=1e-12)
    assert float(path_norm(net, rescaled)) == pytest.approx(float(path_norm(net, theta)))
    perm = jax.random.permutation(jax.random.fold_in(key, 3), 20)
    assert float(path_norm(net, theta[perm])) == pytest.approx(float(path_norm(net, theta)))


def test_bounds_relu_network_on_the_cube_and_outside(key):
    # |f(x)| <= ||Theta||_P max(1, ||x||_inf): |relu(z)| <= |z| <= (||w||_1 + |b|) ||x||...
    net = _net(d=5)
    theta = jax.random.normal(key, (64, 7), jnp.float64)
    p = float(path_norm(net, theta))
    for scale in (1.0, 3.0):
        x = jax.random.uniform(jax.random.fold_in(key, 5), (500, 5), jnp.float64, -scale, scale)
        f = np.abs(np.asarray(net.predict(theta, x)))
        bound = p * np.maximum(1.0, np.abs(np.asarray(x)).max(axis=1))
        assert np.all(f <= bound * (1 + 1e-12))


def test_scalings_and_absent_blocks():
    theta = jnp.array([[1.0, 2.0], [3.0, -1.0], [-2.0, 0.5], [0.5, 0.5]])  # (w, b), d = 1
    no_a = TwoLayer(d=1, activation="relu", train_output=False, bias=True)
    # a == 1: mean of |w| + |b|
    assert float(path_norm(no_a, theta)) == pytest.approx((3 + 4 + 2.5 + 1) / 4)
    ntk = TwoLayer(d=1, activation="relu", scaling="ntk", train_output=False, bias=True)
    # m^(-1/2) sum_j: the path norm of f = m^(-1/2) sum_j sigma(.)
    assert float(path_norm(ntk, theta)) == pytest.approx((3 + 4 + 2.5 + 1) / 2)
    no_b = TwoLayer(d=2, activation="relu", bias=False)
    rows = jnp.array([[2.0, 1.0, -1.0], [-1.0, 0.5, 0.5]])  # (a, w)
    assert float(path_norm(no_b, rows)) == pytest.approx((2 * 2 + 1 * 1) / 2)


def test_dtype_and_jit(key):
    net = _net(d=2)
    theta = jax.random.normal(key, (9, 4), jnp.float32)
    out = jax.jit(lambda t: path_norm(net, t))(theta)
    assert out.dtype == jnp.float32 and out.shape == ()
    assert float(out) == pytest.approx(float(path_norm(net, np.asarray(theta))), rel=1e-6)
