"""Euler-Maruyama's strong order on a shared Brownian path, and birth-death: alpha = 0 is
gradient flow exactly, m stays fixed, the expected energy decrease of a jump matches the
identity's jump term, and bad input is refused."""

from typing import Any

import equinox as eqx
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
    Recorder,
    TwoLayer,
    config,
    loop,
    simulate,
)
from mfnn.build import build
from mfnn.dynamics import AbstractDiffusion, BirthDeath, Langevin, Temperature
from mfnn.integrators import BirthDeathSplitting, EulerMaruyama


class PathNoise(AbstractDiffusion):
    """A Langevin dynamics whose Brownian increments come from one fixed fine path:
    coarse step k (dt = ratio * dt_fine) uses the normalized sum of ``ratio`` fine
    increments, so every dt integrates the same Brownian path. (A diffusion of its own
    that wraps a `Langevin`: the interface is the same, only the noise differs.)"""

    inner: Langevin
    increments: jax.Array  # (n_fine, m, D), standard normal
    ratio: int = eqx.field(static=True)
    xi: Any = None  # one step's noise given beforehand (`given_noise`)

    @property
    def model(self):
        return self.inner.model

    bounded = False
    stochastic = True
    exact_steps = False

    def velocity_blocks(self, state, step, key):
        return self.inner.velocity_blocks(state, step, key)

    def diffusion(self, step, dt):
        return self.inner.diffusion(step, dt)

    def noise(self, state, step, key):
        if self.xi is not None:
            return self.xi
        blk = jax.lax.dynamic_slice_in_dim(self.increments, step * self.ratio, self.ratio, 0)
        return self.model.to_blocks(blk.sum(0) / np.sqrt(self.ratio))

    def beta(self, t):
        return self.inner.beta(t)

    def given_noise(self, xi):
        return eqx.tree_at(lambda d: d.xi, self, xi, is_leaf=lambda x: x is None)

    def full_velocity(self, theta):
        return self.inner.full_velocity(theta)

    def exact(self):
        return self

    def energy(self, theta):
        return self.inner.energy(theta)

    def penalty(self, theta):
        return self.inner.penalty(theta)

    def risk(self, theta, x, y):
        return self.inner.risk(theta, x, y)

    def dissipation(self, v):
        return self.inner.dissipation(v)

    def constrain(self, state):
        return state


@eqx.filter_jit
def _solve(dyn, theta, dt, n, key):
    def body(k, th):
        return EulerMaruyama().step(dyn, th, k, dt, key)[0]

    model = dyn.model
    return model.from_blocks(jax.lax.fori_loop(0, n, body, model.to_blocks(theta)))


def test_euler_maruyama_strong_order_one_for_additive_noise(key, make_problem, slope):
    # nonlinear drift (tanh network on data, L2 weight) + additive noise sqrt(2/beta):
    # the strong error E|X_dt(T) - X_ref(T)|^2)^(1/2) on a shared path decays like dt^1
    data, theta = make_problem(key, m=16, d=3)
    net = TwoLayer(d=3, activation="tanh")
    lang = Langevin(
        GradientFlow(net, EmpiricalRisk(data, l2=0.1), FullBatch(data)), Temperature(2.0)
    )
    n_fine, T = 2**11, 1.0
    errors, dts = [], []
    finals = {}
    for path in range(3):
        inc = jax.random.normal(jax.random.fold_in(key, 100 + path), (n_fine, *theta.shape))
        for ratio in (2**8, 2**7, 2**6, 2**5, 2**4, 1):
            dyn = PathNoise(lang, inc, ratio)
            finals[(path, ratio)] = _solve(dyn, theta, T * ratio / n_fine, n_fine // ratio, key)
    for ratio in (2**8, 2**7, 2**6, 2**5, 2**4):
        sq = [np.mean((finals[(p, ratio)] - finals[(p, 1)]) ** 2) for p in range(3)]
        errors.append(np.sqrt(np.mean(sq)))
        dts.append(T * ratio / n_fine)
    order = slope(dts, errors)
    assert 0.85 <= order <= 1.3, (order, errors)


def test_a_diffusion_of_its_own_runs_with_prefetched_noise(key, make_problem):
    # simulate draws a block of steps' noise at once (`noises`) and hands each step its
    # own (`given_noise`): for a diffusion defined outside mfnn too, the same steps as the
    # one-step-per-iteration loop above
    data, theta = make_problem(key, m=8, d=3)
    net = TwoLayer(d=3, activation="tanh")
    lang = Langevin(GradientFlow(net, EmpiricalRisk(data), FullBatch(data)), Temperature(5.0))
    inc = jax.random.normal(jax.random.fold_in(key, 7), (300, *theta.shape))
    dyn = PathNoise(lang, inc, 2)
    assert loop.prefetch_steps(dyn, key, theta) > 1
    run = simulate(dyn, EulerMaruyama(), theta, dt=0.02, steps=150, key=key)
    ref = _solve(dyn, theta, 0.02, 150, key)
    np.testing.assert_allclose(run.final, ref, rtol=1e-12, atol=1e-13)
    assert float(jnp.max(jnp.abs(ref - theta))) > 1e-2


# ------------------------------------------------------------------ birth-death


def _flow(key, make_problem, m=32):
    data, theta = make_problem(key, m=m, d=3)
    net = TwoLayer(d=3, activation="tanh")
    return GradientFlow(net, EmpiricalRisk(data), FullBatch(data)), theta


def test_alpha_zero_is_gradient_flow_exactly(key, make_problem):
    flow, theta = _flow(key, make_problem)
    plain = simulate(flow, Euler(), theta, dt=0.1, steps=60, key=key)
    bd = simulate(
        BirthDeath(flow, 0.0), BirthDeathSplitting(Euler()), theta, dt=0.1, steps=60, key=key
    )
    np.testing.assert_array_equal(plain.final, bd.final)
    np.testing.assert_array_equal(plain["loss"], bd["loss"])


def test_jumps_keep_m_and_copy_existing_particles(key, make_problem):
    flow, theta = _flow(key, make_problem)
    bd = BirthDeath(flow, 50.0)  # alpha |g| dt of order 1: many events per step
    g = bd.centered_potential(theta)
    assert float(jnp.abs(g).max()) * 50.0 * 0.1 > 1.0
    jump = eqx.filter_jit(bd.jump)  # one compile; eager calls would trace each step
    new = theta
    for step in range(20):
        new = jump(new, jnp.asarray(step), 0.1, key)
        assert new.shape == theta.shape and bool(jnp.all(jnp.isfinite(new)))
    # every particle is a copy of an initial one (jumps create no new positions)
    d = np.min(np.linalg.norm(np.asarray(new)[:, None] - np.asarray(theta)[None], axis=-1), 1)
    np.testing.assert_allclose(d, 0.0, atol=0)
    assert len({tuple(r) for r in np.asarray(new)}) < theta.shape[0]  # some were duplicated


def test_expected_jump_decrease_matches_the_identity(key, make_problem):
    # E[E(jump(theta))] - E(theta) = -dt alpha int (Phi - <Phi>)^2 drho + O(dt^2):
    # 4000 independent jump steps, compared within 4 Monte Carlo standard errors plus 10 %
    # (the finite-m resampling term, O(1/m): about 6 % here at m = 64, see `BirthDeath`;
    # and the O(dt^2) term, bounded by running at dt and dt/2)
    flow, theta = _flow(key, make_problem, m=64)
    alpha = 2.0
    bd = BirthDeath(flow, alpha)
    e0 = flow.energy(theta)
    predicted = bd.jump_dissipation(theta)

    def rate(dt):
        keys = jax.random.split(jax.random.fold_in(key, 7), 4000)
        ds = jax.jit(jax.vmap(lambda k: (flow.energy(bd.jump(theta, 0, dt, k)) - e0) / dt))(keys)
        return float(ds.mean()), float(ds.std() / np.sqrt(len(keys)))

    (r1, se1), (r2, se2) = rate(0.02), rate(0.01)
    for r, se in ((r1, se1), (r2, se2)):
        assert abs(r + predicted) <= 4 * se + 0.1 * float(predicted), (r, -predicted, se)
    assert r1 < 0 and r2 < 0


def test_recorder_jump_dissipation_is_alpha_times_the_variance(key, make_problem):
    flow, theta = _flow(key, make_problem)
    bd = BirthDeath(flow, 3.0)
    rec = Recorder(every=1, jumps=True)
    out = rec(bd, BirthDeathSplitting(Euler()), theta, theta, 0, 0.1, key)
    phi = flow.objective.first_variation(flow.model, theta, theta)
    np.testing.assert_allclose(out["jump_dissipation"], 3.0 * np.var(phi), rtol=1e-12)


@pytest.mark.slow  # a third compiled dynamics of the module
def test_birth_death_with_langevin_noise_runs(key, make_problem):
    flow, theta = _flow(key, make_problem)
    dyn = BirthDeath(Langevin(flow, Temperature(20.0)), 1.0)
    traj = simulate(dyn, BirthDeathSplitting(EulerMaruyama()), theta, dt=0.05, steps=40, key=key)
    assert traj.status == "completed" and traj.final.shape == theta.shape


def test_jumps_without_the_splitting_integrator_are_refused(key, make_problem):
    flow, theta = _flow(key, make_problem)
    with pytest.raises(ConfigError, match="BirthDeathSplitting"):
        simulate(BirthDeath(flow, 1.0), Euler(), theta, dt=0.1, steps=2, key=key)
    with pytest.raises(ConfigError, match="rate"):
        BirthDeath(flow, -1.0)


def _raw(**dynamics):
    return {
        "model": {"width": 16, "activation": "relu", "bias": False, "train_output": False},
        "data": {
            "population": {"inputs": "gaussian", "dim": 2, "method": "closed_form"},
            "teacher": {"w": [[1.0, 0.0]], "alpha": [1.0]},
        },
        "dynamics": {"dt": 0.1, "steps": 20} | dynamics,
        "record": {"every": 10},
    }


def test_birth_death_config(tmp_path):
    from mfnn.rundir import read_metrics
    from mfnn.runs import execute

    with pytest.raises(ConfigError, match=r"dynamics\.birth_death\.rate"):
        build(config.load(_raw(birth_death={"rate": -0.5})))
    cfg = config.load(_raw(birth_death={"rate": 2.0}))
    _, built, summary = execute(cfg, tmp_path, progress=False)
    assert isinstance(built.dynamics, BirthDeath)
    assert isinstance(built.integrator, BirthDeathSplitting)
    assert summary["status"] == "completed"
    m = read_metrics(tmp_path)
    assert "jump_dissipation" in m and m["jump_dissipation"][0] > 0
