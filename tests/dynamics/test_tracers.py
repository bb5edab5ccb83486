"""Tracers, Replicas and Stack: the tracer field is -grad dR/dmu of the reference, the
reference part is the plain flow, replicas and stacked parts are the separate runs."""

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
    Langevin,
    Minibatch,
    PopulationRisk,
    Recorder,
    Teacher,
    Temperature,
    TwoLayer,
    simulate,
)
from mfnn.domains import Ball
from mfnn.dynamics.tracers import Replicas, Stack, Tracers
from mfnn.objectives import Exact
from mfnn.targets import GaussianInputs
from tiers import first_by_default


def _flow(data, l2=0.0, trainable=None, activation="tanh", domain=None):
    net = TwoLayer(d=data.x.shape[1], activation=activation, trainable=trainable)
    return GradientFlow(net, EmpiricalRisk(data, l2=l2), FullBatch(data), domain)


def _central_differences(phi, points, h=1e-6):
    """d phi / d points by central differences, all points and coordinates in one call of
    ``phi`` ((k, D) -> (k,))."""
    k, dim = points.shape
    steps = h * np.eye(dim)
    plus = (points[:, None, :] + steps[None]).reshape(-1, dim)
    minus = (points[:, None, :] - steps[None]).reshape(-1, dim)
    values = np.asarray(phi(jnp.concatenate([plus, minus])))
    return (values[: k * dim] - values[k * dim :]).reshape(k, dim) / (2 * h)


@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize("trainable", [None, ("w", "b")])
def test_tracer_velocity_is_minus_grad_first_variation(key, make_problem, l2, trainable):
    """v[mu^M](p) = -grad Phi[mu^M](p), by central differences of the first variation."""
    data, theta = make_problem(key, n=30, d=3, m=12)
    flow = _flow(data, l2, trainable)
    points = jax.random.normal(jax.random.fold_in(key, 1), (4, theta.shape[1]), jnp.float64)
    dyn = Tracers(flow, 4)
    v, _ = dyn.velocity(jnp.concatenate([theta, points]), 0, key)
    got = np.asarray(v[12:])

    fd = _central_differences(
        lambda p: flow.objective.first_variation(flow.model, theta, p), points
    )
    mask = np.asarray(flow.model.mask(jnp.float64))
    np.testing.assert_allclose(got, -fd * mask, rtol=1e-6, atol=1e-8)


def test_tracer_velocity_with_closed_form_population_risk(key):
    """The same identity for the exact population risk (ReLU, no bias, closed form)."""
    teacher = Teacher([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], None, None, None, "relu")
    net = TwoLayer(d=3, activation="relu", bias=False)
    obj = PopulationRisk.make(teacher, GaussianInputs(3), "closed_form", model=net)
    flow = GradientFlow(net, obj, Exact())
    theta = jax.random.normal(key, (10, 4), jnp.float64)
    points = jax.random.normal(jax.random.fold_in(key, 1), (3, 4), jnp.float64)
    v, _ = Tracers(flow, 3).velocity(jnp.concatenate([theta, points]), 0, key)

    fd = _central_differences(lambda p: obj.first_variation(net, theta, p), points)
    np.testing.assert_allclose(v[10:], -fd, rtol=1e-6, atol=1e-8)
    # on the reference particles the tracer field is the flow's own velocity
    v_on, _ = Tracers(flow, 10).velocity(jnp.concatenate([theta, theta]), 0, key)
    np.testing.assert_allclose(v_on[10:], v_on[:10], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("integrator", first_by_default([Euler(), Heun()]))
def test_tracer_started_on_a_reference_particle_stays_on_it(key, make_problem, integrator):
    """Same field at the same point: the tracer follows its reference particle (to round-off:
    the two velocities come from two code paths, the fused pullback and autodiff of Phi)."""
    data, theta = make_problem(key, n=24, d=3, m=32)
    flow = _flow(data)
    dyn = Tracers(flow, 5)
    on = np.array([0, 3, 7, 7, 31])
    state = jnp.concatenate([theta, theta[on]])
    traj = simulate(dyn, integrator, state, dt=0.1, steps=60, key=key)
    final = traj.final
    assert traj.status == "completed"
    moved = np.abs(final[:32] - theta).max()
    assert moved > 0.05  # the particles did move
    np.testing.assert_allclose(final[32:], final[on], rtol=1e-11, atol=1e-12)


def test_reference_part_is_the_plain_flow(key, make_problem):
    """The tracers do not act on the reference: its rows are the plain M-particle run,
    and the recorded metrics are the plain run's."""
    data, theta = make_problem(key, n=24, d=3, m=40)
    test_set, _ = make_problem(jax.random.fold_in(key, 9), n=16, d=3, m=1)
    flow = _flow(data, l2=0.05)
    tracers = 3.0 * jax.random.normal(jax.random.fold_in(key, 2), (17, theta.shape[1]))
    rec = Recorder(every=5, test=test_set)
    plain = simulate(flow, Euler(), theta, dt=0.1, steps=50, key=key, recorder=rec)
    both = simulate(
        Tracers(flow, 17),
        Euler(),
        jnp.concatenate([theta, tracers]),
        dt=0.1,
        steps=50,
        key=key,
        recorder=rec,
    )
    # bit for bit on CPU; 1e-13 leaves XLA room to fuse the two graphs differently
    np.testing.assert_allclose(both.final[:40], plain.final, rtol=1e-13, atol=1e-14)
    for name in ("loss", "test_loss", "energy", "dissipation", "energy_residual"):
        np.testing.assert_allclose(both[name], plain[name], rtol=1e-12, atol=1e-14, err_msg=name)
    # and the reference velocity does not depend on where the tracers are
    dyn = Tracers(flow, 17)
    v1, l1 = dyn.velocity(jnp.concatenate([theta, tracers]), 0, key)
    v2, l2 = dyn.velocity(jnp.concatenate([theta, 2.0 * tracers]), 0, key)
    np.testing.assert_array_equal(v1[:40], v2[:40])
    assert float(l1) == float(l2)


def test_blocks_and_rows_agree_and_full_velocity(key, make_problem):
    data, theta = make_problem(key, n=20, d=3, m=12)
    dyn = Tracers(_flow(data, l2=0.1), 5)
    state = jax.random.normal(key, (17, theta.shape[1]), jnp.float64)
    rows, loss = dyn.velocity(state, 0, key)
    model = dyn.model
    got, loss_b = dyn.velocity_blocks(model.to_blocks(state), 0, key)
    np.testing.assert_allclose(model.from_blocks(got), rows, rtol=1e-13, atol=1e-14)
    full, loss_f = dyn.exact().full_velocity(state)
    np.testing.assert_allclose(full, rows, rtol=1e-13, atol=1e-14)
    assert float(loss) == pytest.approx(float(loss_b)) == pytest.approx(float(loss_f))


def test_domain_reflects_the_tracers_too(key, make_problem):
    data, theta = make_problem(key, n=20, d=3, m=16)
    flow = _flow(data, domain=Ball(1.5))
    theta = theta / jnp.linalg.norm(theta, axis=1, keepdims=True)  # inside the ball
    traj = simulate(
        Tracers(flow, 16), Euler(), jnp.concatenate([theta, theta]), dt=0.2, steps=40, key=key
    )
    final = traj.final
    assert np.linalg.norm(final, axis=1).max() <= 1.5 + 1e-12
    np.testing.assert_allclose(final[16:], final[:16], rtol=1e-11, atol=1e-12)


@pytest.mark.slow  # five runs; the Replicas doctest checks the velocity by default
def test_replicas_are_the_separate_runs(key, make_problem):
    data, _ = make_problem(key, n=20, d=3, m=1)
    flow = _flow(data)
    r, m = 4, 6
    theta = jax.random.normal(jax.random.fold_in(key, 3), (r * m, 5), jnp.float64)
    rec = Recorder(every=10)
    traj = simulate(Replicas(flow, r), Euler(), theta, dt=0.1, steps=30, key=key, recorder=rec)
    losses = []
    for i in range(r):
        one = simulate(
            flow, Euler(), theta[i * m : (i + 1) * m], dt=0.1, steps=30, key=key, recorder=rec
        )
        np.testing.assert_allclose(
            traj.final[i * m : (i + 1) * m], one.final, rtol=1e-12, atol=1e-13
        )
        losses.append(one["loss"])
    np.testing.assert_allclose(traj["loss"], np.mean(losses, axis=0), rtol=1e-12)


@pytest.mark.slow  # three runs; the Stack doctest checks the velocity by default
def test_stack_is_the_separate_runs(key, make_problem):
    data, theta = make_problem(key, n=20, d=3, m=10)
    flow = _flow(data)
    extra = jax.random.normal(jax.random.fold_in(key, 4), (3 * 4, theta.shape[1]), jnp.float64)
    dyn = Stack((Tracers(flow, 2), Replicas(flow, 3)), (12, 12))
    state = jnp.concatenate([theta, theta[:2], extra])
    rec = Recorder(every=10)
    traj = simulate(dyn, Euler(), state, dt=0.1, steps=30, key=key, recorder=rec)
    first = simulate(Tracers(flow, 2), Euler(), state[:12], dt=0.1, steps=30, key=key, recorder=rec)
    second = simulate(Replicas(flow, 3), Euler(), extra, dt=0.1, steps=30, key=key, recorder=rec)
    np.testing.assert_allclose(traj.final[:12], first.final, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(traj.final[12:], second.final, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(traj["loss"], first["loss"], rtol=1e-12)  # the first part's


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda f, d: Tracers(f, -1), "n_tracers"),
        (lambda f, d: Tracers(f, 2.5), "n_tracers"),
        (
            lambda f, d: Tracers(GradientFlow(f.model, f.objective, Minibatch(d, 4)), 2),
            "the exact flow",
        ),
        (lambda f, d: Tracers(Langevin(f, Temperature(10.0)), 2), "deterministic flow"),
        (lambda f, d: Replicas(f, 0), "n_replicas"),
        (lambda f, d: Stack((f,), (3, 4)), "one size per part"),
        (lambda f, d: Stack((f,), (0,)), "positive integers"),
        (
            lambda f, d: Stack(
                (f, GradientFlow(TwoLayer(d=3, bias=False), f.objective, f.sampler)), (2, 2)
            ),
            "share one model",
        ),
        (  # the same layout, another output factor alpha (an array field of the scaling)
            lambda f, d: Stack(
                (f, GradientFlow(TwoLayer(d=3, alpha=2.0), f.objective, f.sampler)), (2, 2)
            ),
            "share one model",
        ),
    ],
)
def test_bad_construction_is_refused(key, make_problem, make, match):
    data, _ = make_problem(key, n=20, d=3, m=1)
    with pytest.raises(ConfigError, match=match):
        make(_flow(data), data)


def test_bad_state_shapes_are_refused(key, make_problem):
    data, theta = make_problem(key, n=20, d=3, m=6)
    flow = _flow(data)
    with pytest.raises(ConfigError, match="reference row"):
        Tracers(flow, 6).velocity(theta, 0, key)
    with pytest.raises(ConfigError, match="multiple of n_replicas"):
        Replicas(flow, 4).velocity(theta, 0, key)
    with pytest.raises(ConfigError, match="sum\\(sizes\\)"):
        Stack((flow, flow), (3, 4)).velocity(theta, 0, key)
