"""GradientFlow and its column layout: the same vector field whichever way it is stored."""

import equinox as eqx
import jax
import numpy as np
import pytest

from mfnn import EmpiricalRisk, Euler, FullBatch, GradientFlow, Minibatch, TwoLayer
from mfnn.dynamics import Columns


class RowsOnly(eqx.Module):
    """A dynamics with only the row API (no ``velocity_columns``), as a plug-in would be."""

    flow: GradientFlow

    def velocity(self, theta, step, key):
        return self.flow.velocity(theta, step, key)


@pytest.mark.parametrize("trainable", [None, ("a",), ("w", "b")])
@pytest.mark.parametrize("fused", [True, False])
def test_columns_is_the_transposed_field(key, make_problem, trainable, fused):
    data, theta = make_problem(key, n=24, d=3, m=9)
    net = TwoLayer(d=3, activation="tanh", scaling="ntk", trainable=trainable)
    flow = GradientFlow(net, EmpiricalRisk(data, l2=0.3, fused=fused), Minibatch(data, 8))
    k = jax.random.fold_in(key, 5)
    want, want_loss = flow.velocity(theta, 3, k)
    for dyn in (flow, RowsOnly(flow)):
        got, loss = Columns(dyn).velocity(theta.T, 3, k)
        assert got.shape == (theta.shape[1], theta.shape[0])
        np.testing.assert_allclose(got.T, want, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(loss, want_loss, rtol=1e-14)


def test_euler_step_in_columns_matches_rows(key, make_problem):
    """One Euler step taken in the column layout is the row step, transposed."""
    data, theta = make_problem(key, m=11)
    flow = GradientFlow(TwoLayer(d=3), EmpiricalRisk(data), FullBatch(data))
    rows, _ = Euler().step(flow, theta, 0, 0.1, key)
    cols, _ = Euler().step(Columns(flow), theta.T, 0, 0.1, key)
    np.testing.assert_allclose(cols.T, rows, rtol=1e-13, atol=1e-15)
