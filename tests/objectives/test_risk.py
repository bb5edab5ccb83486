"""EmpiricalRisk: risk, first variation and velocity (docs/theory.md sections 3-4); samplers.

The velocity of particle j must be

    v_j = -m^(2 gamma - 1) dE/dtheta_j,   E = R + (lambda/2) mean_j |theta_j|^2,

(mean_field: -m dE/dtheta_j, ntk: -dE/dtheta_j), and also -grad Phi(theta_j) with mu held
fixed, Phi the (rescaled) first variation. Gradients here come from `jax.grad` of the
scalar energy over the whole (m, D) array, independently of the library's pullback.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import (
    ConfigError,
    DataSet,
    EmpiricalRisk,
    FullBatch,
    GaussianInputs,
    GradientFlow,
    Minibatch,
    Online,
    Teacher,
    TwoLayer,
)
from tiers import covering

ACTIVATIONS = ["relu", "softplus", "tanh", "sigmoid", "arctan", "erf", "gaussian", "quadratic"]
SMOOTH = [a for a in ACTIVATIONS if a != "relu"]
SCALINGS = ["mean_field", "ntk", 0.75]
M = 7


def vscale(scaling, m):
    """m^(2 gamma - 1), written out per regime (docs/theory.md section 2 table)."""
    return {"mean_field": float(m), "ntk": 1.0, 0.75: m**0.5}[scaling]


def energy_grad(obj, net, theta):
    """dE/dtheta, the full (m, D) gradient of the scalar E = R + penalty."""
    return jax.grad(lambda th: obj.energy(net, th))(theta)


def grad_first_variation(obj, net, theta):
    """grad_theta' Phi(theta') at theta' = theta_j for every j, with mu = mu_m(theta) fixed."""

    def phi(point):
        return obj.first_variation(net, theta, point[None, :])[0]

    return jax.vmap(jax.grad(phi))(theta)


@pytest.mark.parametrize(("activation", "scaling"), covering(ACTIVATIONS, SCALINGS))
def test_velocity_identities(key, make_problem, activation, scaling):
    """v = -m^(2 gamma - 1) dE/dtheta = -grad Phi (mu fixed), for every activation.

    relu is differentiated away from its kink: no preactivation of the random data is 0.
    """
    data, theta = make_problem(key, m=M)
    net = TwoLayer(d=3, activation=activation, scaling=scaling)
    obj = EmpiricalRisk(data, l2=0.3 if activation in ("tanh", "relu") else 0.0)
    v, risk = obj.velocity(net, theta)
    want = -vscale(scaling, M) * energy_grad(obj, net, theta)
    assert float(jnp.abs(want).max()) > 1e-3  # the check is not vacuous
    np.testing.assert_allclose(v, want, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(v, -grad_first_variation(obj, net, theta), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(risk, obj.risk(net, theta), rtol=1e-13)


@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("l2", [0.1, 2.0])
def test_velocity_with_l2_weight(key, make_problem, scaling, l2):
    """v_j = -m^(2 gamma - 1) d(R + l2/2 mean_j |theta_j|^2)/dtheta_j."""
    data, theta = make_problem(key, m=M)
    net = TwoLayer(d=3, activation="tanh", scaling=scaling)
    obj = EmpiricalRisk(data, l2=l2)

    def energy(th):  # written out, not through obj.energy
        f = net.predict(th, data.x)
        return 0.5 * jnp.mean((f - data.y) ** 2) + 0.5 * l2 * jnp.mean(jnp.sum(th**2, axis=1))

    v, _ = obj.velocity(net, theta)
    want = -vscale(scaling, M) * jax.grad(energy)(theta)
    np.testing.assert_allclose(v, want, rtol=1e-10, atol=1e-13)
    # the weight changes the velocity (so the check above sees it)
    v0, _ = EmpiricalRisk(data).velocity(net, theta)
    assert float(jnp.abs(v - v0).max()) > 1e-2


@pytest.mark.parametrize(
    "activation,scaling", [(a, "mean_field") for a in SMOOTH] + [("tanh", 0.75), ("erf", "ntk")]
)
def test_first_variation_gradient_against_finite_differences(
    key, make_problem, activation, scaling
):
    data, theta = make_problem(key, m=M)
    net = TwoLayer(d=3, activation=activation, scaling=scaling)
    obj = EmpiricalRisk(data, l2=0.1)
    # query points off the particles (same shape as theta, to reuse compiled kernels)
    points = jax.random.normal(jax.random.fold_in(key, 7), theta.shape, jnp.float64)
    h = 1e-5
    eye = jnp.eye(net.dim, dtype=jnp.float64)
    fd = jnp.stack(
        [
            (
                obj.first_variation(net, theta, points + h * eye[k])
                - obj.first_variation(net, theta, points - h * eye[k])
            )
            / (2 * h)
            for k in range(net.dim)
        ],
        axis=1,
    )
    ad = jax.vmap(jax.grad(lambda p: obj.first_variation(net, theta, p[None])[0]))(points)
    # central differences: truncation O(h^2) ~ 1e-10, rounding ~ 1e-16 / h ~ 1e-11
    np.testing.assert_allclose(ad, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("l2", [0.0, 0.5])
def test_first_variation_is_the_gateaux_derivative(key, make_problem, l2):
    """d/deps E((1 - eps) mu + eps delta_p) at eps = 0 equals Phi(p) - int Phi dmu (mean_field)."""
    data, theta = make_problem(key, m=M)
    net = TwoLayer(d=3, activation="softplus", scaling="mean_field")
    obj = EmpiricalRisk(data, l2=l2)
    points = jax.random.normal(jax.random.fold_in(key, 3), theta.shape, jnp.float64)

    def mixed_energy(eps, p):
        f = (1 - eps) * net.predict(theta, data.x) + eps * net.features(p[None], data.x)[:, 0]
        second = (1 - eps) * jnp.mean(jnp.sum(theta**2, axis=1)) + eps * jnp.sum(p**2)
        return 0.5 * jnp.mean((f - data.y) ** 2) + 0.5 * l2 * second

    eps0 = jnp.zeros((), jnp.float64)
    derivative = jax.jit(jax.vmap(jax.grad(mixed_energy), in_axes=(None, 0)))(eps0, points)
    phi = obj.first_variation(net, theta, points)
    mean_phi = jnp.mean(obj.first_variation(net, theta, theta))
    np.testing.assert_allclose(derivative, phi - mean_phi, rtol=1e-10, atol=1e-13)


def test_first_variation_formula(key, make_problem):
    """Phi(p) = E_x[(f(x) - y) phi(x; p)] on the data, in mean_field."""
    data, theta = make_problem(key, m=M)
    net = TwoLayer(d=3, activation="tanh", scaling="mean_field")
    obj = EmpiricalRisk(data)
    x, y, th = (np.asarray(a) for a in (data.x, data.y, theta))
    f = np.tanh(x @ th[:, 1:4].T + th[:, 4]) @ th[:, 0] / M
    phi_p = np.tanh(x @ th[:, 1:4].T + th[:, 4]) * th[:, 0]  # (n, m): phi(x_i; theta_j)
    want = (f - y) @ phi_p / len(y)
    np.testing.assert_allclose(obj.first_variation(net, theta, theta), want, rtol=1e-12)


def test_general_gamma_endpoints_coincide_with_named_scalings(key, make_problem):
    data, theta = make_problem(key, m=M)
    obj = EmpiricalRisk(data, l2=0.2)
    for gamma, name in ((1.0, "mean_field"), (0.5, "ntk")):
        general = TwoLayer(d=3, activation="erf", scaling="general", gamma=gamma)
        named = TwoLayer(d=3, activation="erf", scaling=name)
        np.testing.assert_allclose(
            obj.velocity(general, theta)[0], obj.velocity(named, theta)[0], rtol=1e-14
        )
        np.testing.assert_allclose(
            obj.first_variation(general, theta, theta),
            obj.first_variation(named, theta, theta),
            rtol=1e-14,
        )
    # and the three regimes differ by the factors m^(2 gamma - 1)
    v = {s: obj.velocity(TwoLayer(d=3, activation="erf", scaling=s), theta)[0] for s in SCALINGS}
    g = {s: -v[s] / vscale(s, M) for s in SCALINGS}  # dE/dtheta in each parametrization
    assert float(jnp.abs(g["mean_field"] - g["ntk"]).max()) > 1e-3


@pytest.mark.parametrize(
    "kwargs,frozen",
    [
        ({"trainable": ("a",)}, slice(1, 5)),  # random features: w, b frozen
        ({"trainable": ("w",)}, np.array([0, 4])),
        ({"trainable": ("a", "w")}, slice(4, 5)),
    ],
)
@pytest.mark.parametrize("scaling", ["mean_field", "ntk"])
def test_frozen_blocks_do_not_move(key, make_problem, kwargs, frozen, scaling):
    data, theta = make_problem(key, m=M)
    net = TwoLayer(d=3, activation="tanh", scaling=scaling, **kwargs)
    obj = EmpiricalRisk(data, l2=0.1)
    v, _ = obj.velocity(net, theta)
    np.testing.assert_array_equal(v[:, frozen], 0.0)
    want = -vscale(scaling, M) * energy_grad(obj, net, theta) * net.mask(jnp.float64)
    np.testing.assert_allclose(v, want, rtol=1e-10, atol=1e-13)
    assert float(jnp.abs(v).max()) > 1e-3


@pytest.mark.parametrize(
    ("kwargs", "scaling"),
    covering([{"train_output": False}, {"bias": False}], ["mean_field", "ntk"]),
)
def test_velocity_identity_for_other_layouts(key, make_problem, kwargs, scaling):
    data, _ = make_problem(key, m=M)
    net = TwoLayer(d=3, activation="sigmoid", scaling=scaling, **kwargs)
    theta = jax.random.normal(jax.random.fold_in(key, 5), (M, net.dim), jnp.float64)
    obj = EmpiricalRisk(data, l2=0.05)
    v, _ = obj.velocity(net, theta)
    want = -vscale(scaling, M) * energy_grad(obj, net, theta)
    np.testing.assert_allclose(v, want, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(v, -grad_first_variation(obj, net, theta), rtol=1e-10, atol=1e-13)


def test_velocity_on_a_batch_is_the_velocity_of_that_data(key, make_problem):
    data, theta = make_problem(key, m=M)
    net = TwoLayer(d=3, activation="tanh", scaling="mean_field")
    x, y = data.x[:6], data.y[:6]
    v_batch, r_batch = EmpiricalRisk(data).velocity(net, theta, x, y)
    v_sub, r_sub = EmpiricalRisk(DataSet(x, y)).velocity(net, theta)
    np.testing.assert_allclose(v_batch, v_sub, rtol=1e-14)
    np.testing.assert_allclose(r_batch, r_sub, rtol=1e-14)


@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("kwargs", [{}, {"trainable": ("w", "b")}])
def test_dissipation_is_minus_energy_derivative_along_the_flow(key, make_problem, scaling, kwargs):
    """dE/dt = grad E . v = -m^(1 - 2 gamma) sum_j |v_j|^2 = -GradientFlow.dissipation(v)."""
    data, theta = make_problem(key, m=M)
    net = TwoLayer(d=3, activation="arctan", scaling=scaling, **kwargs)
    obj = EmpiricalRisk(data, l2=0.1)
    flow = GradientFlow(net, obj, FullBatch(data))
    v, _ = flow.velocity(theta, 0, key)
    de_dt = jnp.sum(energy_grad(obj, net, theta) * v)
    np.testing.assert_allclose(flow.dissipation(v), -de_dt, rtol=1e-10)
    if scaling == "mean_field":  # = int |grad dE/dmu|^2 dmu = mean_j |v_j|^2
        np.testing.assert_allclose(flow.dissipation(v), jnp.mean(jnp.sum(v**2, 1)), rtol=1e-12)


def test_l2_must_be_nonnegative(make_problem, key):
    data, _ = make_problem(key)
    with pytest.raises(ConfigError, match="l2"):
        EmpiricalRisk(data, l2=-1.0)


# ------------------------------------------------------------------------- samplers


def _index_data(n):
    """x_i = i, so a batch tells which indices it holds."""
    x = jnp.arange(n, dtype=jnp.float64)[:, None]
    return DataSet(x, 2.0 * x[:, 0])


def test_full_batch_is_the_data(key):
    data = _index_data(5)
    x, y = FullBatch(data)(key, 3)
    np.testing.assert_array_equal(x, data.x)
    np.testing.assert_array_equal(y, data.y)


@pytest.mark.parametrize("n,batch", [(12, 4), (10, 3)])
def test_minibatch_epoch_visits_each_index_once(key, n, batch):
    data = _index_data(n)
    minibatch = Minibatch(data, batch)
    sampler = jax.jit(lambda k, s: minibatch(k, s))
    per_epoch = n // batch
    epochs = []
    for e in range(3):
        seen = []
        for k in range(e * per_epoch, (e + 1) * per_epoch):
            x, y = sampler(key, k)
            assert x.shape == (batch, 1)
            np.testing.assert_array_equal(y, 2.0 * x[:, 0])  # pairs stay together
            seen.extend(int(v) for v in np.asarray(x[:, 0]))
        # without replacement: no index twice; all n when batch divides n
        assert len(set(seen)) == len(seen) == per_epoch * batch
        assert set(seen) <= set(range(n))
        if n % batch == 0:
            assert sorted(seen) == list(range(n))
        epochs.append(seen)
    if n > 2:  # fresh permutations across epochs
        assert epochs[0] != epochs[1] or epochs[1] != epochs[2]


def test_minibatch_depends_only_on_key_and_step(key):
    sampler = Minibatch(_index_data(12), 4)
    np.testing.assert_array_equal(sampler(key, 5)[0], sampler(key, 5)[0])
    other = jax.random.fold_in(key, 1)
    assert not np.array_equal(
        np.concatenate([sampler(key, k)[0] for k in range(3)]),
        np.concatenate([sampler(other, k)[0] for k in range(3)]),
    )


def test_minibatch_batch_size_checked():
    with pytest.raises(ConfigError, match="batch_size"):
        Minibatch(_index_data(5), 6)


def test_online_fresh_samples_per_step_and_reproducible(key):
    target = Teacher(w=[[1.0, -0.5]], activation="tanh")
    sampler = Online(GaussianInputs(dim=2), target, batch_size=16)
    x0, y0 = sampler(key, 0)
    x1, y1 = sampler(key, 1)
    assert x0.shape == (16, 2) and x0.dtype == jnp.float64
    assert float(jnp.abs(x0 - x1).min()) > 0  # every coordinate fresh
    x0b, y0b = sampler(key, 0)
    np.testing.assert_array_equal(x0, x0b)
    np.testing.assert_array_equal(y0, y0b)
    np.testing.assert_allclose(y0, np.tanh(np.asarray(x0) @ np.array([1.0, -0.5])), rtol=1e-13)
    x_other, _ = sampler(jax.random.fold_in(key, 9), 0)
    assert not np.array_equal(x0, x_other)
    # the samples look like N(0, I): a loose moment check over many steps
    xs = np.concatenate([np.asarray(sampler(key, k)[0]) for k in range(50)])
    assert abs(xs.mean()) < 0.1 and abs(xs.var() - 1) < 0.15


LAYOUTS = [
    {"bias": True, "train_output": True},
    {"bias": False, "train_output": True},
    {"bias": True, "train_output": False},
    {"bias": True, "train_output": True, "trainable": ("a",), "scaling": "ntk"},
]


@pytest.mark.parametrize(("layout", "activation"), covering(LAYOUTS, sorted(ACTIVATIONS)))
def test_fused_velocity_equals_autodiff_pullback(key, make_problem, activation, layout):
    """The hand-fused fast path (two GEMMs) is the jax.vjp path, to rounding."""
    data, _ = make_problem(key, n=33, d=4, m=9)
    layout = {"scaling": "mean_field", **layout}
    net = TwoLayer(d=4, activation=activation, **layout)
    theta = jax.random.normal(jax.random.fold_in(key, 7), (9, net.dim), jnp.float64)
    fast = EmpiricalRisk(data, l2=0.1)
    slow = EmpiricalRisk(data, l2=0.1, fused=False)
    v_fast, loss_fast = fast.velocity(net, theta)
    v_slow, loss_slow = slow.velocity(net, theta)
    np.testing.assert_allclose(v_fast, v_slow, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(loss_fast, loss_slow, rtol=1e-13)
    assert float(jnp.abs(v_fast).max()) > 1e-3  # not trivially zero
