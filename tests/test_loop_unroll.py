"""How the compiled loop takes its steps changes nothing but speed: a tiny deterministic
problem takes several steps per loop iteration (`mfnn.loop.unroll_factor`), a stochastic
sampler's or a noisy dynamics' steps run in blocks whose batches and noise are drawn
together (`mfnn.loop.prefetch_steps`, `mfnn.objectives.sampling.prefetch`,
`mfnn.dynamics.AbstractDiffusion.noises`); both give the same steps in the same order as
one step per iteration, each drawing its own batch and noise."""

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
    schedule = mfnn.Temperature(50.0, "geometric", growth=2.0, period=1.0, beta_max=400.0)
    full_langevin = mfnn.Langevin(full, schedule)
    birth_death = mfnn.BirthDeath(mfnn.Langevin(full, mfnn.Temperature(200.0)), rate=0.5)
    return {
        "full_batch_heun": (full, mfnn.Heun()),
        "online_euler": (online, mfnn.Euler()),
        "online_heun": (online, mfnn.Heun()),
        "minibatch_euler": (minibatch, mfnn.Euler()),
        "online_langevin": (langevin, mfnn.EulerMaruyama()),
        "full_batch_langevin": (full_langevin, mfnn.EulerMaruyama()),
        "langevin_birth_death": (
            birth_death, mfnn.BirthDeathSplitting(mfnn.EulerMaruyama())
        ),
    }  # fmt: skip


@pytest.mark.parametrize("case", list(_cases()))
def test_blocked_steps_equal_one_step_per_iteration(case, monkeypatch):
    dynamics, integrator = _cases()[case]
    theta = jax.random.normal(jax.random.key(1), (7, 5))
    if case != "full_batch_heun":  # a sampler's batches, a diffusion's noise
        assert loop.prefetch_steps(dynamics, jax.random.key(3), theta) == loop.PREFETCH
    else:
        assert loop.prefetch_steps(dynamics, jax.random.key(3), theta) == 0
        assert loop.unroll_factor(dynamics.model, theta) == loop.UNROLL > 1
    # 150 steps, records every 70: intervals of 70 and a last of 10, none a multiple of
    # the block (64 prefetched, 4 unrolled): blocks, then a remainder loop
    blocked = _run(dynamics, integrator, theta, 150, 70)
    monkeypatch.setattr(loop, "UNROLL", 1)
    monkeypatch.setattr(loop, "PREFETCH", 1)
    jax.clear_caches()
    assert loop.prefetch_steps(dynamics, jax.random.key(3), theta) == 0
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


def test_noises_are_each_steps_own_noise():
    dynamics, _ = _cases()["full_batch_langevin"]
    model, key = dynamics.model, jax.random.key(5)
    state = model.to_blocks(jax.random.normal(jax.random.key(1), (7, 5)))
    xs = eqx.filter_jit(lambda d, s: d.noises(s, jnp.arange(10, 17), key))(dynamics, state)
    one = eqx.filter_jit(lambda d, s, k: d.noise(s, k, key))
    for u, k in enumerate(range(10, 17)):
        xi = one(dynamics, state, jnp.asarray(k))
        for a, b in zip(jax.tree.leaves(xs), jax.tree.leaves(xi), strict=True):
            np.testing.assert_array_equal(a[u], b)
        given = dynamics.given_noise(jax.tree.map(lambda a, u=u: a[u], xs))
        for a, b in zip(jax.tree.leaves(given.noise(state, 123, jax.random.key(9))),
                        jax.tree.leaves(xi), strict=True):  # fmt: skip
            np.testing.assert_array_equal(a, b)  # the key and step unused
    # distinct steps draw distinct noise
    assert float(jnp.max(jnp.abs(jax.tree.leaves(xs)[1][0] - jax.tree.leaves(xs)[1][1]))) > 0.1


def test_blocks_see_other_noise_than_a_shifted_stream():
    """Negative control: the blocked Langevin run's noise is that of its own steps. A
    stream shifted by one step (noise k + 1 at step k) changes the result."""
    dynamics, integrator = _cases()["full_batch_langevin"]
    theta = jax.random.normal(jax.random.key(1), (7, 5))
    ref = _run(dynamics, integrator, theta, 150, 70).state.theta

    class Shifted(mfnn.Langevin):
        def noise(self, state, step, key):
            return super().noise(state, step + 1, key)

    shifted = Shifted(dynamics.flow, dynamics.temperature)
    moved = _run(shifted, integrator, theta, 150, 70).state.theta
    assert float(jnp.max(jnp.abs(moved - ref))) > 1e-3


def test_prefetch_refuses_a_deterministic_sampler():
    with pytest.raises(ConfigError, match="stochastic sampler; got FullBatch"):
        prefetch(mfnn.FullBatch(_data()), jax.random.key(0), jnp.arange(3))


def test_prefetch_block_respects_the_byte_budget(monkeypatch):
    dynamics, _ = _cases()["online_euler"]
    key = jax.random.key(0)
    theta = jnp.zeros((7, 5))
    # one step's batch: x (2, 3) and y (2,) in float64 = 64 bytes
    monkeypatch.setattr(loop, "PREFETCH_BYTES", 64 * 10)
    assert loop.prefetch_steps(dynamics, key, theta) == 10
    monkeypatch.setattr(loop, "PREFETCH_BYTES", 64)
    assert loop.prefetch_steps(dynamics, key, theta) == 0
    # a diffusion's noise counts too: 7 x 5 float64 = 280 bytes a step, on top of the batch
    langevin, _ = _cases()["online_langevin"]
    monkeypatch.setattr(loop, "PREFETCH_BYTES", (64 + 280) * 3)
    assert loop.prefetch_steps(langevin, key, theta) == 3
    full_langevin, _ = _cases()["full_batch_langevin"]
    assert loop.prefetch_steps(full_langevin, key, theta) == (64 + 280) * 3 // 280
    # a minibatch's draw holds the epoch's permutation (n indices) besides its batch: a
    # large data set is not prefetched (U permutations of n at once)
    monkeypatch.setattr(loop, "PREFETCH_BYTES", 1 << 20)
    x = jnp.zeros((300_000, 3))
    big = mfnn.GradientFlow(
        dynamics.model, dynamics.objective, Minibatch(mfnn.DataSet(x, x[:, 0]), 5)
    )
    assert draw_bytes(big.sampler, key) >= 300_000 * 4
    assert loop.prefetch_steps(big, key, theta) == 0


def test_large_or_deep_models_take_one_step_per_iteration():
    big = jnp.zeros((2048, 5))
    assert loop.unroll_factor(mfnn.TwoLayer(d=3), big) == 1
