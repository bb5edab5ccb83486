"""GradientFlow: its velocity is -m^(2 gamma - 1) times the energy's gradient, in rows and
in the model's block layout; simulate refuses what is not a dynamics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import (
    ConfigError,
    EmpiricalRisk,
    Euler,
    FullBatch,
    GradientFlow,
    Heun,
    Minibatch,
    TwoLayer,
    simulate,
)
from tiers import covering


@pytest.mark.parametrize(
    ("trainable", "fused"), covering([None, ("a",), ("w", "b")], [True, False])
)
def test_velocity_is_the_scaled_energy_gradient(key, make_problem, trainable, fused):
    """v_j = -m^(2 gamma - 1) dE/dtheta_j on the step's batch (autodiff of the energy on
    rows, an independent reference), zero on frozen blocks, the same in the block layout."""
    data, theta = make_problem(key, n=24, d=3, m=9)
    net = TwoLayer(d=3, activation="tanh", scaling="ntk", trainable=trainable)
    flow = GradientFlow(net, EmpiricalRisk(data, l2=0.3, fused=fused), Minibatch(data, 8))
    k = jax.random.fold_in(key, 5)
    x, y = flow.sampler(k, 3)
    grad = jax.grad(lambda t: flow.objective.energy(net, t, x, y))(theta)
    want = -(9.0 ** (2 * 0.5 - 1)) * grad * net.mask(theta.dtype)
    got, loss = flow.velocity(theta, 3, k)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(loss, flow.objective.risk(net, theta, x, y), rtol=1e-13)
    blocks, _ = flow.velocity_blocks(net.to_blocks(theta), 3, k)
    assert jax.tree.structure(blocks) == jax.tree.structure(net.to_blocks(theta))
    np.testing.assert_allclose(net.from_blocks(blocks), want, rtol=1e-12, atol=1e-14)


def test_simulate_refuses_what_is_not_a_dynamics(key, make_problem):
    data, theta = make_problem(key, m=5)
    flow = GradientFlow(TwoLayer(d=3), EmpiricalRisk(data), FullBatch(data))
    with pytest.raises(ConfigError, match="needs an `AbstractDynamics`; got dict"):
        simulate({"velocity": None}, Euler(), theta, dt=0.1, steps=2, key=key)
    with pytest.raises(ConfigError, match="needs an `AbstractIntegrator`; got str"):
        simulate(flow, "euler", theta, dt=0.1, steps=2, key=key)


def test_block_layout_of_two_layer(key):
    """a (m,), w^T (d, m), b (m,), absent blocks left out; rows come back exactly."""
    for kw, shapes in [
        (dict(), [(5,), (3, 5), (5,)]),
        (dict(bias=False), [(5,), (3, 5)]),
        (dict(train_output=False), [(3, 5), (5,)]),
    ]:
        net = TwoLayer(d=3, **kw)
        theta = jax.random.normal(key, (5, net.dim))
        blocks = net.to_blocks(theta)
        assert [b.shape for b in blocks] == shapes
        a, w_t, b = net.unpack_blocks(blocks)
        np.testing.assert_array_equal(w_t, net.split(theta)[1].T)
        np.testing.assert_array_equal(a, net.split(theta)[0])
        np.testing.assert_array_equal(b, net.split(theta)[2])
        np.testing.assert_array_equal(net.from_blocks(blocks), theta)


@pytest.mark.parametrize("integrator", [Euler(), Heun()])
def test_step_in_blocks_is_the_row_formula(key, make_problem, integrator):
    """One step taken in the block layout is Euler's / Heun's formula on rows."""
    data, theta = make_problem(key, m=11)
    net = TwoLayer(d=3)
    flow = GradientFlow(net, EmpiricalRisk(data), FullBatch(data))
    dt = 0.1
    k1, _ = flow.velocity(theta, 0, key)
    if isinstance(integrator, Euler):
        want = theta + dt * k1
    else:
        k2, _ = flow.velocity(theta + dt * k1, 0, key)
        want = theta + 0.5 * dt * (k1 + k2)
    got, _ = integrator.step(flow, net.to_blocks(theta), 0, jnp.asarray(dt), key)
    np.testing.assert_allclose(net.from_blocks(got), want, rtol=1e-13, atol=1e-15)
