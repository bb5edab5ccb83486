"""Euler and Heun: one step is the written formula; global errors are O(dt) and O(dt^2)."""

import numpy as np
import pytest

from mfnn import EmpiricalRisk, Euler, FullBatch, GradientFlow, Heun, Recorder, TwoLayer, simulate

T = 1.0
DTS = [0.1, 0.05, 0.025, 0.0125]
# every = chunk = 10 steps, so every dt runs the same compiled chunk (dt is traced).
RECORDER = Recorder(every=10)


def _flow(key, make_problem, scaling="mean_field"):
    data, theta = make_problem(key)
    net = TwoLayer(d=3, activation="tanh", scaling=scaling)
    return GradientFlow(net, EmpiricalRisk(data, l2=0.01), FullBatch(data)), theta


def _final(flow, integrator, theta, dt, key):
    steps = round(T / dt)
    traj = simulate(
        flow, integrator, theta, dt=dt, steps=steps, key=key, recorder=RECORDER, chunk=10
    )
    assert traj.status == "completed"
    assert traj.times[-1] == pytest.approx(T)
    return traj.final


def test_euler_step_is_the_formula(key, make_problem):
    flow, theta = _flow(key, make_problem)
    v, loss = flow.velocity(theta, 0, key)
    net = flow.model
    new, loss_step = Euler().step(flow, net.to_blocks(theta), 0, 0.3, key)
    np.testing.assert_allclose(net.from_blocks(new), theta + 0.3 * v, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(loss_step, loss, rtol=1e-15)


def test_heun_step_is_the_formula(key, make_problem):
    flow, theta = _flow(key, make_problem)
    dt = 0.3
    k1, _ = flow.velocity(theta, 0, key)
    k2, _ = flow.velocity(theta + dt * k1, 0, key)
    net = flow.model
    new, loss = Heun().step(flow, net.to_blocks(theta), 0, dt, key)
    new = net.from_blocks(new)
    np.testing.assert_allclose(new, theta + dt * (k1 + k2) / 2, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(loss, flow.objective.risk(flow.model, theta), rtol=1e-13)
    assert Euler.order == 1 and Heun.order == 2


@pytest.mark.parametrize(
    "integrator,lo,hi",
    [
        (Euler(), 0.8, 1.3),  # global error O(dt)
        (Heun(), 1.7, 2.4),  # global error O(dt^2)
    ],
)
def test_global_order(key, make_problem, slope, integrator, lo, hi):
    """Error at t = T against Heun with dt / 8 below the finest dt (its error is ~1/64 as big)."""
    flow, theta = _flow(key, make_problem)
    reference = _final(flow, Heun(), theta, DTS[-1] / 8, key)
    assert float(np.abs(reference - theta).max()) > 0.05  # the particles really moved
    errors = [
        float(np.abs(_final(flow, integrator, theta, dt, key) - reference).max()) for dt in DTS
    ]
    assert errors[-1] < errors[0]
    order = slope(DTS, errors)
    assert lo <= order <= hi, (order, errors)
