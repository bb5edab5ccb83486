"""TwoLayer: f_m(x) = m^(-gamma) sum_j a_j sigma(w_j . x + b_j) (docs/theory.md sections 1-2)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf as np_erf

from mfnn import ConfigError, TwoLayer
from mfnn.models import ACTIVATIONS

# Independent NumPy activations (not the library's table).
NP_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0.0),
    "softplus": lambda z: np.log1p(np.exp(z)),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "arctan": np.arctan,
    "erf": np_erf,
    "gaussian": lambda z: np.exp(-0.5 * z**2),
    "quadratic": lambda z: z**2,
}


def test_activation_table_is_complete():
    assert set(ACTIVATIONS) == set(NP_ACTIVATIONS)


@pytest.mark.parametrize("activation", sorted(NP_ACTIVATIONS))
@pytest.mark.parametrize("scaling,gamma", [("mean_field", 1.0), ("ntk", 0.5), (0.75, 0.75)])
def test_predict_matches_hand_sum(key, activation, scaling, gamma):
    d, m, n = 3, 7, 20
    net = TwoLayer(d=d, activation=activation, scaling=scaling)
    assert net.gamma == gamma
    theta = np.asarray(jax.random.normal(key, (m, net.dim), jnp.float64))
    x = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (n, d), jnp.float64))
    a, w, b = theta[:, 0], theta[:, 1 : 1 + d], theta[:, 1 + d]
    want = m ** (-gamma) * NP_ACTIVATIONS[activation](x @ w.T + b) @ a
    got = np.asarray(net.predict(jnp.asarray(theta), jnp.asarray(x)))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_general_scaling_endpoints_are_the_named_ones():
    assert TwoLayer(d=1, scaling="general", gamma=1.0).gamma == 1.0
    assert TwoLayer(d=1, scaling="general", gamma=0.5).gamma == 0.5
    net = TwoLayer(d=1, scaling="general", gamma=0.75)
    m = 16
    assert math.isclose(net.output_scale(m), m**-0.75)
    assert math.isclose(net.velocity_scale(m), m**0.5)
    assert TwoLayer(d=1, scaling="mean_field").velocity_scale(m) == 1.0 * m
    assert TwoLayer(d=1, scaling="ntk").velocity_scale(m) == 1.0


@pytest.mark.parametrize("gamma", [0.4, 1.1, None])
def test_general_scaling_needs_gamma_in_range(gamma):
    with pytest.raises(ConfigError, match="gamma"):
        TwoLayer(d=1, scaling="general", gamma=gamma)


def test_named_scaling_rejects_contradicting_gamma():
    with pytest.raises(ConfigError, match="gamma"):
        TwoLayer(d=1, scaling="ntk", gamma=1.0)


def test_layout_split_join_roundtrip(key):
    d, m = 3, 7
    for train_output in (True, False):
        for bias in (True, False):
            net = TwoLayer(d=d, bias=bias, train_output=train_output)
            assert net.dim == int(train_output) + d + int(bias)
            theta = jax.random.normal(key, (m, net.dim), jnp.float64)
            a, w, b = net.split(theta)
            assert w.shape == (m, d)
            if not train_output:
                np.testing.assert_array_equal(a, np.ones(m))
            if not bias:
                np.testing.assert_array_equal(b, np.zeros(m))
            np.testing.assert_array_equal(net.join(a, w, b), theta)


def test_fixed_output_weights_mean_a_equals_one(key):
    """train_output=False: theta = (w, b) and f = m^-gamma sum_j sigma(w_j . x + b_j)."""
    d, m, n = 3, 7, 20
    net = TwoLayer(d=d, activation="tanh", train_output=False, scaling="ntk")
    full = TwoLayer(d=d, activation="tanh", train_output=True, scaling="ntk")
    wb = jax.random.normal(key, (m, d + 1), jnp.float64)
    x = jax.random.normal(jax.random.fold_in(key, 1), (n, d), jnp.float64)
    with_ones = jnp.concatenate([jnp.ones((m, 1)), wb], axis=1)
    np.testing.assert_allclose(net.predict(wb, x), full.predict(with_ones, x), rtol=1e-14)
    want = m**-0.5 * np.tanh(np.asarray(x) @ np.asarray(wb[:, :d]).T + np.asarray(wb[:, d])).sum(1)
    np.testing.assert_allclose(net.predict(wb, x), want, rtol=1e-12)


def test_no_bias_means_b_equals_zero(key):
    d, m, n = 3, 7, 20
    net = TwoLayer(d=d, activation="relu", bias=False)
    full = TwoLayer(d=d, activation="relu", bias=True)
    aw = jax.random.normal(key, (m, 1 + d), jnp.float64)
    x = jax.random.normal(jax.random.fold_in(key, 1), (n, d), jnp.float64)
    with_zero = jnp.concatenate([aw, jnp.zeros((m, 1))], axis=1)
    np.testing.assert_allclose(net.predict(aw, x), full.predict(with_zero, x), rtol=1e-14)


def test_mask_marks_trainable_columns():
    net = TwoLayer(d=3, trainable=("a", "b"))
    np.testing.assert_array_equal(net.mask(), [1, 0, 0, 0, 1])
    net = TwoLayer(d=2, train_output=False, trainable=("w",))
    np.testing.assert_array_equal(net.mask(), [1, 1, 0])


def test_trainable_must_name_present_blocks():
    with pytest.raises(ConfigError, match="trainable"):
        TwoLayer(d=2, bias=False, trainable=("b",))
    with pytest.raises(ConfigError, match="trainable"):
        TwoLayer(d=2, trainable=("c",))


def test_mean_field_predict_is_integral_against_empirical_measure(key):
    """mean_field f = int phi dmu: duplicating every particle leaves f unchanged."""
    net = TwoLayer(d=3, activation="softplus", scaling="mean_field")
    theta = jax.random.normal(key, (7, net.dim), jnp.float64)
    x = jax.random.normal(jax.random.fold_in(key, 1), (20, 3), jnp.float64)
    doubled = jnp.concatenate([theta, theta])
    np.testing.assert_allclose(net.predict(doubled, x), net.predict(theta, x), rtol=1e-13)
    # ntk is not a measure functional: duplicating multiplies f by 2^(1/2).
    ntk = TwoLayer(d=3, activation="softplus", scaling="ntk")
    np.testing.assert_allclose(
        ntk.predict(doubled, x), math.sqrt(2) * ntk.predict(theta, x), rtol=1e-13
    )


def test_predict_is_permutation_invariant(key):
    net = TwoLayer(d=3, activation="erf", scaling="ntk")
    theta = jax.random.normal(key, (7, net.dim), jnp.float64)
    x = jax.random.normal(jax.random.fold_in(key, 1), (20, 3), jnp.float64)
    perm = np.random.default_rng(0).permutation(7)
    assert not np.array_equal(perm, np.arange(7))
    np.testing.assert_allclose(net.predict(theta[perm], x), net.predict(theta, x), rtol=1e-13)
