"""GradientFlow and its block layout: the same vector field whichever way it is stored."""

import equinox as eqx
import jax
import numpy as np
import pytest

from mfnn import EmpiricalRisk, Euler, FullBatch, GradientFlow, Heun, Minibatch, TwoLayer
from mfnn.dynamics import Blocks


class RowsOnly(eqx.Module):
    """A dynamics with only the row API (no ``velocity_blocks``), as a plug-in would be."""

    stochastic = True

    flow: GradientFlow

    def velocity(self, theta, step, key):
        return self.flow.velocity(theta, step, key)


@pytest.mark.parametrize("trainable", [None, ("a",), ("w", "b")])
@pytest.mark.parametrize("fused", [True, False])
def test_blocks_carry_the_same_field(key, make_problem, trainable, fused):
    data, theta = make_problem(key, n=24, d=3, m=9)
    net = TwoLayer(d=3, activation="tanh", scaling="ntk", trainable=trainable)
    flow = GradientFlow(net, EmpiricalRisk(data, l2=0.3, fused=fused), Minibatch(data, 8))
    k = jax.random.fold_in(key, 5)
    want, want_loss = flow.velocity(theta, 3, k)
    for dyn, native in ((flow, True), (RowsOnly(flow), False)):
        blocks = Blocks(dyn)
        assert blocks.native == native
        state = blocks.encode(theta)
        np.testing.assert_array_equal(blocks.decode(state), theta)
        got, loss = blocks.velocity(state, 3, k)
        assert jax.tree.structure(got) == jax.tree.structure(state)
        np.testing.assert_allclose(blocks.decode(got), want, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(loss, want_loss, rtol=1e-14)


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
def test_step_in_blocks_matches_rows(key, make_problem, integrator):
    """One step taken in the block layout is the row step."""
    data, theta = make_problem(key, m=11)
    flow = GradientFlow(TwoLayer(d=3), EmpiricalRisk(data), FullBatch(data))
    rows, _ = integrator.step(flow, theta, 0, 0.1, key)
    blocks = Blocks(flow)
    got, _ = integrator.step(blocks, blocks.encode(theta), 0, 0.1, key)
    np.testing.assert_allclose(blocks.decode(got), rows, rtol=1e-13, atol=1e-15)
