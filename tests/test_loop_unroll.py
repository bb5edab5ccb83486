"""A tiny problem takes several steps per iteration of the compiled loop
(`mfnn.loop.unroll_factor`): the same steps in the same order as one per iteration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfnn
from mfnn import loop
from mfnn.objectives import Online
from mfnn.targets import GaussianInputs, Teacher


def _run(dynamics, integrator, theta, steps, every):
    return mfnn.simulate(
        dynamics, integrator, theta, dt=0.05, steps=steps, key=jax.random.key(3),
        recorder=mfnn.Recorder(every=every),
    )  # fmt: skip


def _cases():
    x = jax.random.normal(jax.random.key(0), (23, 3))
    data = mfnn.DataSet(x, jnp.tanh(x[:, 0]))
    model = mfnn.TwoLayer(d=3, activation="tanh")
    full = mfnn.GradientFlow(model, mfnn.EmpiricalRisk(data, l2=0.01), mfnn.FullBatch(data))
    teacher = Teacher(w=jnp.array([[1.0, 0.0, 0.0]]), activation="tanh")
    online = mfnn.GradientFlow(
        model, mfnn.EmpiricalRisk(data), Online(GaussianInputs(dim=3), teacher, batch_size=2)
    )
    return {"full_batch_heun": (full, mfnn.Heun()), "online_euler": (online, mfnn.Euler())}


@pytest.mark.parametrize("case", ["full_batch_heun", "online_euler"])
def test_unrolled_steps_equal_one_step_per_iteration(case, monkeypatch):
    dynamics, integrator = _cases()[case]
    theta = jax.random.normal(jax.random.key(1), (7, 5))
    assert loop.unroll_factor(dynamics.model, theta) == loop.UNROLL > 1
    # 47 steps, records every 10: intervals of 10 (9 after a reused velocity) and a last
    # of 7, none a multiple of the unroll factor: blocks and a remainder loop
    unrolled = _run(dynamics, integrator, theta, 47, 10)
    monkeypatch.setattr(loop, "UNROLL", 1)
    jax.clear_caches()
    single = _run(dynamics, integrator, theta, 47, 10)
    assert single.status == unrolled.status == "completed"
    np.testing.assert_allclose(unrolled.state.theta, single.state.theta, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(unrolled["loss"], single["loss"], rtol=1e-13, atol=1e-15)
    # the run moved: the comparison is not between two copies of theta0
    assert float(jnp.max(jnp.abs(single.state.theta - theta))) > 1e-3


def test_large_or_deep_models_take_one_step_per_iteration():
    big = jnp.zeros((2048, 5))
    assert loop.unroll_factor(mfnn.TwoLayer(d=3), big) == 1
