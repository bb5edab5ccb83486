"""The deep models (ensemble ResNet, wide ResNet, multilayer) against hand-written NumPy.

`numpy_deep` is an independent reference: explicit forward passes and manual
backpropagation, no JAX. Its gradients are checked by central differences here; mfnn's
predictions, velocities, risks and the wide ResNet's expansions are then checked against it.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_deep import (
    central_difference,
    ensemble_resnet_grad,
    ensemble_resnet_predict,
    ensemble_resnet_risk,
    ensemble_resnet_velocity,
    multilayer_grad,
    multilayer_predict,
    multilayer_risk,
    multilayer_velocity,
    wide_resnet_expansion,
    wide_resnet_grad,
    wide_resnet_predict,
    wide_resnet_risk,
    wide_resnet_velocity,
)

jax.config.update("jax_enable_x64", True)  # also done by conftest; float64 is required here

try:  # the NumPy checks run even without the mfnn models
    from mfnn.models import EnsembleResNet, Multilayer, WideResNet
except ImportError:
    EnsembleResNet = Multilayer = WideResNet = None

ACTS = ["tanh", "softplus_shifted"]
SCALINGS = ["mean_field", "ntk"]
SMALL = np.array([0.2, 0.1, 0.05, 0.025])  # theta scale factors for the expansion slopes


def _data(seed, n, d, vector=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(n, d) if vector else (n,))
    return rng, x, y


def _rel_err(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


def _close(got, want, rtol=1e-10):
    """Elementwise rtol, with an absolute floor at rtol * max|want| for entries near 0."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.max(np.abs(want)))


def _slope(scales, errors):
    return float(np.polyfit(np.log(scales), np.log(errors), 1)[0])


# ------------------------------------------------------- NumPy gradients by finite differences
@pytest.mark.parametrize("act", ACTS)
def test_ensemble_resnet_gradient_matches_finite_differences(act):
    d, L, N, n = 2, 3, 4, 5
    rng, x, y = _data(0, n, d)
    theta = rng.normal(size=(N, L * d * d))
    R, grad = ensemble_resnet_grad(theta, x, y, L, act)
    assert R == ensemble_resnet_risk(theta, x, y, L, act)
    fd = central_difference(lambda t: ensemble_resnet_risk(t, x, y, L, act), theta)
    assert _rel_err(grad, fd) < 1e-6


@pytest.mark.parametrize("act", ACTS)
def test_wide_resnet_gradient_matches_finite_differences(act):
    d, L, N, n = 2, 3, 4, 5
    rng, x, y = _data(1, n, d)
    theta = rng.normal(size=(L * N, d * d))
    R, grad = wide_resnet_grad(theta, x, y, L, act)
    assert R == wide_resnet_risk(theta, x, y, L, act)
    fd = central_difference(lambda t: wide_resnet_risk(t, x, y, L, act), theta)
    assert _rel_err(grad, fd) < 1e-6


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("hidden", [2, 3])
def test_multilayer_gradient_matches_finite_differences(act, scaling, hidden):
    d, N, n = 2, 4, 5
    rng, x, y = _data(2, n, d, vector=False)
    theta = rng.normal(size=(N, d + (hidden - 1) * N + 1))
    R, grad = multilayer_grad(theta, x, y, hidden, act, scaling)
    assert R == multilayer_risk(theta, x, y, hidden, act, scaling)
    fd = central_difference(lambda t: multilayer_risk(t, x, y, hidden, act, scaling), theta)
    assert _rel_err(grad, fd) < 1e-6


def test_one_particle_ensemble_is_the_one_neuron_wide_resnet():
    """With N = 1 both ResNets are X^{l+1} = X^l + sigma(theta^l X^l)/L (same rows too)."""
    d, L, n = 3, 4, 6
    rng, x, y = _data(3, n, d)
    theta = rng.normal(size=(L, d * d))
    np.testing.assert_allclose(
        ensemble_resnet_predict(theta.reshape(1, -1), x, L), wide_resnet_predict(theta, x, L)
    )
    v_e, R_e = ensemble_resnet_velocity(theta.reshape(1, -1), x, y, L)
    v_w, R_w = wide_resnet_velocity(theta, x, y, L)
    assert np.isclose(R_e, R_w)
    # velocities scale by N = 1 and L N = L: v_w = L v_e
    np.testing.assert_allclose(v_w, L * v_e.reshape(L, d * d))


# ------------------------------------------------------------------ wide ResNet expansions
@pytest.mark.parametrize("act", ACTS)
def test_wide_resnet_expansion_orders(act):
    """|X^L - X_(1)| = O(s^2), |X^L - X_(2)| = O(s^3) for theta scaled by s -> 0."""
    d, L, N, n = 2, 3, 4, 5
    rng, x, _ = _data(4, n, d)
    theta = rng.normal(size=(L * N, d * d))
    e1, e2 = [], []
    for s in SMALL:
        XL = wide_resnet_predict(s * theta, x, L, act)
        e1.append(np.linalg.norm(XL - wide_resnet_expansion(s * theta, x, L, 1, act)))
        e2.append(np.linalg.norm(XL - wide_resnet_expansion(s * theta, x, L, 2, act)))
    assert abs(_slope(SMALL, e1) - 2.0) < 0.25, e1
    assert abs(_slope(SMALL, e2) - 3.0) < 0.25, e2


# ----------------------------------------------------------------------- mfnn vs NumPy
def _velocity(model, theta, x, y):
    from mfnn.objectives import EmpiricalRisk
    from mfnn.targets import DataSet

    v, R = EmpiricalRisk(DataSet(jnp.asarray(x), jnp.asarray(y))).velocity(
        model, jnp.asarray(theta)
    )
    return np.asarray(v), float(R)


@pytest.mark.skipif(EnsembleResNet is None, reason="mfnn.models.EnsembleResNet not available")
@pytest.mark.parametrize(
    "d, dtype, rtol",
    [(3, "float64", 1e-10), (9, "float64", 1e-10), (3, "float32", 2e-5)],
    ids=["unrolled-f64", "batched-f64", "batched-f32"],
)
def test_mfnn_ensemble_resnet_matches_numpy(d, dtype, rtol):
    """Both layer products (float64 d <= 8 unrolled, otherwise a batched matrix product)."""
    L, N, n = 3, 5, 7
    rng, x, y = _data(10, n, d)
    theta = rng.normal(size=(N, L * d * d)) / np.sqrt(d)
    model = EnsembleResNet(d=d, depth=L, activation="tanh")
    t, xs = jnp.asarray(theta, dtype), jnp.asarray(x, dtype)
    got = model.predict(t, xs)
    assert got.dtype == jnp.dtype(dtype)
    _close(got, ensemble_resnet_predict(theta, x, L), rtol)
    if dtype == "float64":
        v, R = _velocity(model, theta, x, y)
        v_ref, R_ref = ensemble_resnet_velocity(theta, x, y, L)
        _close(R, R_ref)
        _close(v, v_ref)


@pytest.mark.skipif(WideResNet is None, reason="mfnn.models.WideResNet not available")
def test_mfnn_wide_resnet_matches_numpy():
    d, L, N, n = 3, 3, 5, 7
    rng, x, y = _data(11, n, d)
    theta = rng.normal(size=(L * N, d * d))
    model = WideResNet(d=d, depth=L, activation="tanh")
    _close(model.predict(jnp.asarray(theta), jnp.asarray(x)), wide_resnet_predict(theta, x, L))
    v, R = _velocity(model, theta, x, y)
    v_ref, R_ref = wide_resnet_velocity(theta, x, y, L)
    _close(R, R_ref)
    _close(v, v_ref)
    for order in (1, 2):
        _close(
            model.expansion(jnp.asarray(theta), jnp.asarray(x), order),
            wide_resnet_expansion(theta, x, L, order),
        )


@pytest.mark.skipif(WideResNet is None, reason="mfnn.models.WideResNet not available")
def test_mfnn_wide_resnet_expansion_orders():
    d, L, N, n = 2, 3, 4, 5
    rng, x, _ = _data(12, n, d)
    theta = rng.normal(size=(L * N, d * d))
    model = WideResNet(d=d, depth=L, activation="tanh")
    xj = jnp.asarray(x)
    # one compile for the four scales; equinox's filter_jit, as the model carries traced
    # scalars (its scaling's gamma and alpha) and is not hashable
    predict = eqx.filter_jit(model.predict)
    expansion = eqx.filter_jit(model.expansion)
    e1, e2 = [], []
    for s in SMALL:
        t = jnp.asarray(s * theta)
        XL = np.asarray(predict(t, xj))
        e1.append(np.linalg.norm(XL - np.asarray(expansion(t, xj, 1))))
        e2.append(np.linalg.norm(XL - np.asarray(expansion(t, xj, 2))))
    assert abs(_slope(SMALL, e1) - 2.0) < 0.25, e1
    assert abs(_slope(SMALL, e2) - 3.0) < 0.25, e2


@pytest.mark.skipif(Multilayer is None, reason="mfnn.models.Multilayer not available")
@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("hidden", [2, 3])
def test_mfnn_multilayer_matches_numpy(scaling, hidden):
    d, N, n = 3, 5, 7
    rng, x, y = _data(13, n, d, vector=False)
    theta = rng.normal(size=(N, d + (hidden - 1) * N + 1))
    model = Multilayer(d=d, width=N, hidden=hidden, activation="tanh", scaling=scaling)
    _close(
        model.predict(jnp.asarray(theta), jnp.asarray(x)),
        multilayer_predict(theta, x, hidden, "tanh", scaling),
    )
    v, R = _velocity(model, theta, x, y)
    v_ref, R_ref = multilayer_velocity(theta, x, y, hidden, "tanh", scaling)
    _close(R, R_ref)
    _close(v, v_ref)
