"""How the compiled loop takes its steps changes nothing but speed: a tiny deterministic
problem takes several steps per loop iteration (`mfnn.loop.unroll_factor`), a stochastic
sampler's steps run in blocks whose batches are drawn together (`mfnn.loop.prefetch_steps`,
`mfnn.objectives.sampling.prefetch`); both give the same steps in the same order as one
step per iteration, each drawing its own batch."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mfnn
from mfnn import loop
from mfnn.errors import ConfigError
from mfnn.objectives import Given, Minibatch, Online
from mfnn.objectives.sampling import draw_bytes, prefetch
from mfnn.targets import GaussianInputs, Teacher


def _run(dynamics, integrator, theta, steps, every):
    return mfnn.simulate(
        dynamics, integrator, theta, dt=0.05, steps=steps, key=jax.random.key(3),
        recorder=mfnn.Recorder(every=every),
    )  # fmt: skip


def _data():
    x = jax.random.normal(jax.random.key(0), (23, 3))
    return mfnn.DataSet(x, jnp.tanh(x[:, 0]))


def _cases():
    data = _data()
    model = mfnn.TwoLayer(d=3, activation="tanh")
    full = mfnn.GradientFlow(model, mfnn.EmpiricalRisk(data, l2=0.01), mfnn.FullBatch(data))
    teacher = Teacher(w=jnp.array([[1.0, 0.0, 0.0]]), activation="tanh")
    online = mfnn.GradientFlow(
        model, mfnn.EmpiricalRisk(data), Online(GaussianInputs(dim=3), teacher, batch_size=2)
    )
    minibatch = mfnn.GradientFlow(model, mfnn.EmpiricalRisk(data), Minibatch(data, 5))
    langevin = mfnn.Langevin(online, mfnn.Temperature(200.0))
    return {
        "full_batch_heun": (full, mfnn.Heun()),
        "online_euler": (online, mfnn.Euler()),
        "online_heun": (online, mfnn.Heun()),
        "minibatch_euler": (minibatch, mfnn.Euler()),
        "online_langevin": (langevin, mfnn.EulerMaruyama()),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_blocked_steps_equal_one_step_per_iteration(case, monkeypatch):
    dynamics, integrator = _cases()[case]
    theta = jax.random.normal(jax.random.key(1), (7, 5))
    stochastic = case != "full_batch_heun"
    if stochastic:
        assert loop.prefetch_steps(dynamics, jax.random.key(3)) == loop.PREFETCH
    else:
        assert loop.prefetch_steps(dynamics, jax.random.key(3)) == 0
        assert loop.unroll_factor(dynamics.model, theta) == loop.UNROLL > 1
    # 150 steps, records every 70: intervals of 70 and a last of 10, none a multiple of
    # the block (64 prefetched, 4 unrolled): blocks, then a remainder loop
    blocked = _run(dynamics, integrator, theta, 150, 70)
    monkeypatch.setattr(loop, "UNROLL", 1)
    monkeypatch.setattr(loop, "PREFETCH", 1)
    jax.clear_caches()
    assert loop.prefetch_steps(dynamics, jax.random.key(3)) == 0
    single = _run(dynamics, integrator, theta, 150, 70)
    assert single.status == blocked.status == "completed"
    np.testing.assert_allclose(blocked.state.theta, single.state.theta, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(blocked["loss"], single["loss"], rtol=1e-13, atol=1e-15)
    # the run moved: the comparison is not between two copies of theta0
    assert float(jnp.max(jnp.abs(single.state.theta - theta))) > 1e-3


def test_blocks_see_other_batches_than_a_shifted_stream():
    """Negative control: the blocked run's batches are those of their own steps. Shifting
    the stream by one step (batch k + 1 at step k) changes the result, so the equality
    above is not blind to which batch a step sees."""
    dynamics, integrator = _cases()["online_euler"]
    theta = jax.random.normal(jax.random.key(1), (7, 5))
    ref = _run(dynamics, integrator, theta, 150, 70).state.theta
    sampler = dynamics.sampler

    class Shifted(type(sampler)):
        def __call__(self, key, step):
            return super().__call__(key, step + 1)

    shifted = mfnn.GradientFlow(
        dynamics.model, dynamics.objective,
        Shifted(sampler.inputs, sampler.target, sampler.batch_size, sampler.dtype),
    )  # fmt: skip
    moved = _run(shifted, integrator, theta, 150, 70).state.theta
    assert float(jnp.max(jnp.abs(moved - ref))) > 1e-6


def test_prefetch_draws_each_steps_own_batch():
    data = _data()
    key = jax.random.key(5)
    for sampler in (
        Online(GaussianInputs(dim=3), Teacher(w=jnp.ones((1, 3)), activation="tanh"), 4),
        Minibatch(data, 5),
    ):
        steps = jnp.arange(10, 17)
        given = eqx.filter_jit(prefetch)(sampler, key, steps)
        assert isinstance(given, Given) and given.x.shape[0] == 7
        one = eqx.filter_jit(lambda s, k: s(key, k))
        for u, k in enumerate(range(10, 17)):
            x, y = one(sampler, jnp.asarray(k))
            np.testing.assert_array_equal(given.x[u], x)
            np.testing.assert_array_equal(given.y[u], y)
        x0, y0 = given.x[0], given.y[0]
        assert Given(x0, y0)(jax.random.key(9), 123) == (x0, y0)  # the key and step unused


def test_prefetch_refuses_a_deterministic_sampler():
    with pytest.raises(ConfigError, match="stochastic sampler; got FullBatch"):
        prefetch(mfnn.FullBatch(_data()), jax.random.key(0), jnp.arange(3))


def test_prefetch_block_respects_the_byte_budget(monkeypatch):
    dynamics, _ = _cases()["online_euler"]
    key = jax.random.key(0)
    # one step's batch: x (2, 3) and y (2,) in float64 = 64 bytes
    monkeypatch.setattr(loop, "PREFETCH_BYTES", 64 * 10)
    assert loop.prefetch_steps(dynamics, key) == 10
    monkeypatch.setattr(loop, "PREFETCH_BYTES", 64)
    assert loop.prefetch_steps(dynamics, key) == 0
    # a minibatch's draw holds the epoch's permutation (n indices) besides its batch: a
    # large data set is not prefetched (U permutations of n at once)
    monkeypatch.setattr(loop, "PREFETCH_BYTES", 1 << 20)
    x = jnp.zeros((300_000, 3))
    big = mfnn.GradientFlow(
        dynamics.model, dynamics.objective, Minibatch(mfnn.DataSet(x, x[:, 0]), 5)
    )
    assert draw_bytes(big.sampler, key) >= 300_000 * 4
    assert loop.prefetch_steps(big, key) == 0


def test_large_or_deep_models_take_one_step_per_iteration():
    big = jnp.zeros((2048, 5))
    assert loop.unroll_factor(mfnn.TwoLayer(d=3), big) == 1
