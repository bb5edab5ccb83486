"""The tangent kernel: against the Jacobian of `predict`, symmetric PSD, the time scaling
df/dt = -s K r / n of the gradient flow, frozen blocks, and the relative change."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import TwoLayer
from mfnn.diagnostics.kernel import feature_gradients, kernel_change, tangent_kernel
from mfnn.objectives import EmpiricalRisk
from tiers import covering

SCALINGS = [("mean_field", None), ("ntk", None), ("general", 0.7)]


def jacobian_kernel(model, theta, x, x2):
    """sum over trainable coordinates of d f(x)/d theta * d f(x2)/d theta, from
    ``jax.jacobian`` of ``predict`` (the reference)."""
    mask = model.mask(theta.dtype)
    j1 = jax.jacobian(lambda th: model.predict(th, x))(theta) * mask  # (n, m, D)
    j2 = jax.jacobian(lambda th: model.predict(th, x2))(theta) * mask
    return jnp.einsum("imc,kmc->ik", j1, j2)


@pytest.mark.parametrize(
    ("scaling", "gamma", "activation", "bias", "train_output", "trainable"),
    [
        ("mean_field", None, "tanh", True, True, None),
        ("general", 0.8, "softplus", True, True, ("a", "b")),  # w frozen
    ]
    + [
        pytest.param(*case, marks=pytest.mark.slow)
        for case in [
            ("ntk", None, "softplus", True, True, None),
            ("general", 0.7, "relu", True, True, None),
            ("ntk", None, "gaussian", False, True, None),
            ("mean_field", None, "tanh", True, False, None),  # a == 1, particles (w, b)
        ]
    ],
)
def test_matches_jacobian_of_predict(
    key, make_problem, scaling, gamma, activation, bias, train_output, trainable
):
    data, theta = make_problem(key, n=9, d=2, m=6, bias=bias)
    if not train_output:
        theta = theta[:, 1:]
    x2 = jax.random.normal(jax.random.fold_in(key, 5), (4, 2), jnp.float64)
    model = TwoLayer(
        d=2,
        activation=activation,
        scaling=scaling,
        gamma=gamma,
        bias=bias,
        train_output=train_output,
        trainable=trainable,
    )
    ref = np.asarray(jacobian_kernel(model, theta, data.x, x2))
    k = np.asarray(tangent_kernel(model, theta, data.x, x2))
    assert k.shape == (9, 4)
    np.testing.assert_allclose(k, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    kxx = np.asarray(tangent_kernel(model, theta, data.x))
    ref = np.asarray(jacobian_kernel(model, theta, data.x, data.x))
    np.testing.assert_allclose(kxx, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize(("scaling", "gamma"), SCALINGS)
def test_symmetric_positive_semidefinite(key, make_problem, scaling, gamma):
    data, theta = make_problem(key, n=30, d=3, m=8)
    model = TwoLayer(d=3, activation="tanh", scaling=scaling, gamma=gamma)
    k = np.asarray(tangent_kernel(model, theta, data.x))
    np.testing.assert_allclose(k, k.T, rtol=0, atol=1e-14 * np.abs(k).max())
    eig = np.linalg.eigvalsh(0.5 * (k + k.T))
    assert eig.min() >= -1e-12 * eig.max()
    # K = J J^T with J of rank <= m D = 40 > 30: full rank here; with m = 2 (rank <= 10) not
    few = np.asarray(tangent_kernel(model, theta[:2], data.x))
    assert np.linalg.matrix_rank(few, tol=1e-10 * np.abs(few).max()) <= 2 * 5
    # K(x, x2) = K(x2, x)^T
    x2 = data.x[:7] + 0.3
    np.testing.assert_allclose(
        tangent_kernel(model, theta, data.x, x2), tangent_kernel(model, theta, x2, data.x).T
    )


def test_time_scaled_kernel_is_the_same_in_every_scaling(key, make_problem):
    # s K = m^(2 gamma - 1) m^(-2 gamma) sum_j k_j = (1/m) sum_j k_j, whatever gamma
    data, theta = make_problem(key, n=12, d=2, m=16)
    ks = []
    for scaling, gamma in SCALINGS:
        model = TwoLayer(d=2, activation="softplus", scaling=scaling, gamma=gamma)
        ks.append(model.velocity_scale(16) * np.asarray(tangent_kernel(model, theta, data.x)))
    for k in ks[1:]:
        np.testing.assert_allclose(k, ks[0], rtol=1e-13)
    # and K itself scales like m^(1 - 2 gamma): ntk is m = 16 times mean_field
    mf = TwoLayer(d=2, activation="softplus", scaling="mean_field")
    ntk = TwoLayer(d=2, activation="softplus", scaling="ntk")
    np.testing.assert_allclose(
        tangent_kernel(ntk, theta, data.x), 16.0 * tangent_kernel(mf, theta, data.x), rtol=1e-13
    )


@pytest.mark.parametrize(
    ("scaling", "gamma", "trainable"),
    [
        pytest.param(*case.values[0], case.values[1], marks=case.marks)
        for case in covering(SCALINGS, [None, ("a",), ("w", "b")])
    ],
)
def test_function_moves_by_minus_s_k_residual(key, make_problem, scaling, gamma, trainable):
    # one tiny Euler step of the gradient flow: (f(theta + h v) - f(theta)) / h
    # -> df/dt = -velocity_scale * K r / n, the kernel over the trainable coordinates
    data, theta = make_problem(key, n=25, d=3, m=11)
    model = TwoLayer(d=3, activation="tanh", scaling=scaling, gamma=gamma, trainable=trainable)
    v, _ = EmpiricalRisk(data).velocity(model, theta)
    r = model.predict(theta, data.x) - data.y
    k = tangent_kernel(model, theta, data.x)
    expected = np.asarray(-model.velocity_scale(11) * (k @ r) / data.n)
    errors = []
    for h in (1e-5, 1e-6):
        fd = (model.predict(theta + h * v, data.x) - model.predict(theta, data.x)) / h
        errors.append(np.abs(np.asarray(fd) - expected).max() / np.abs(expected).max())
    assert errors[1] <= 1e-5
    if trainable != ("a",):  # f is linear in a: there the difference is exact
        assert errors[1] < 0.2 * errors[0]  # first order in h: the Euler step's O(h) error
    if trainable is not None:
        # the full kernel (frozen coordinates counted) gives the wrong rate
        full = TwoLayer(d=3, activation="tanh", scaling=scaling, gamma=gamma)
        wrong = np.asarray(-model.velocity_scale(11) * (tangent_kernel(full, theta, data.x) @ r))
        assert np.abs(wrong / data.n - expected).max() > 1e-3 * np.abs(expected).max()


def test_frozen_blocks(key, make_problem):
    data, theta = make_problem(key, n=10, d=2, m=5)
    blocks = {
        t: np.asarray(tangent_kernel(TwoLayer(d=2, activation="tanh", trainable=t), theta, data.x))
        for t in (None, ("a",), ("w",), ("b",), ())
    }
    # the kernel is a sum over coordinates: the blocks add up to the full kernel
    np.testing.assert_allclose(
        blocks[("a",)] + blocks[("w",)] + blocks[("b",)], blocks[None], rtol=1e-13
    )
    # random features (only a trains): K = m^(-2) sigma(X w^T + b) sigma(...)^T
    a, w, b = TwoLayer(d=2).split(theta)
    s = np.tanh(np.asarray(data.x @ w.T + b))
    np.testing.assert_allclose(blocks[("a",)], s @ s.T / 25.0, rtol=1e-13)
    assert not np.any(blocks[()])  # nothing trains: K = 0
    assert feature_gradients(TwoLayer(d=2, trainable=()), theta, data.x).shape == (0, 10, 5)


def test_kernel_change(key, make_problem):
    data, theta = make_problem(key, n=10, d=2, m=5)
    model = TwoLayer(d=2, activation="softplus", scaling="ntk")
    assert kernel_change(model, theta, theta, data.x) == 0.0
    other = theta + 0.1 * jax.random.normal(jax.random.fold_in(key, 9), theta.shape, theta.dtype)
    k0 = np.asarray(tangent_kernel(model, theta, data.x))
    k1 = np.asarray(tangent_kernel(model, other, data.x))
    expected = np.linalg.norm(k1 - k0) / np.linalg.norm(k0)
    assert kernel_change(model, theta, other, data.x) == pytest.approx(expected, rel=1e-12)
    # scale-free: the same in every scaling
    mf = TwoLayer(d=2, activation="softplus", scaling="mean_field")
    assert kernel_change(mf, theta, other, data.x) == pytest.approx(expected, rel=1e-12)


@pytest.mark.slow  # the float32 kernel against the float32 Jacobian (a second set of compiles)
def test_float32(key, make_problem):
    data, theta = make_problem(key, n=8, d=2, m=6, dtype=jnp.float32)
    model = TwoLayer(d=2, activation="tanh", scaling="ntk")
    k = tangent_kernel(model, theta, data.x)
    assert k.dtype == jnp.float32
    ref = jacobian_kernel(model, theta, data.x, data.x)
    np.testing.assert_allclose(k, ref, rtol=1e-5, atol=1e-5 * float(jnp.abs(ref).max()))
