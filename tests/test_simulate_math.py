"""simulate(...) against the mathematics: gradient descent by hand, the energy dissipation
identity, lazy vs mean-field movement, permutation equivariance, dtypes, no recompilation.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import (
    DataSet,
    EmpiricalRisk,
    Euler,
    FullBatch,
    GradientFlow,
    Heun,
    Recorder,
    TwoLayer,
    simulate,
)
from tiers import covering, first_by_default

# --------------------------------------------------- gradient descent written by hand


def _np_sigma(name, z):
    """sigma and sigma' in NumPy."""
    if name == "relu":
        return np.maximum(z, 0.0), (z > 0).astype(z.dtype)
    t = np.tanh(z)
    return t, 1.0 - t * t


def _np_gradient_descent(theta, x, y, activation, scaling, dt, steps):
    """Plain gradient descent on R = (1/(2n)) sum_i (f(x_i) - y_i)^2 with
    f = m^-gamma sum_j a_j sigma(w_j . x + b_j); theta rows (a, w, b).

    mean_field: theta_j <- theta_j - dt m dR/dtheta_j;  ntk: theta_j <- theta_j - dt dR/dtheta_j.
    Returns the final particles and the losses R(theta_k), k = 0..steps.
    """
    theta = np.array(theta, dtype=np.float64)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    (n, d), m = x.shape, theta.shape[0]
    gamma = {"mean_field": 1.0, "ntk": 0.5}[scaling]
    speed = {"mean_field": float(m), "ntk": 1.0}[scaling]
    losses = []
    for k in range(steps + 1):
        a, w, b = theta[:, 0], theta[:, 1 : 1 + d], theta[:, 1 + d]
        s, ds = _np_sigma(activation, x @ w.T + b[None, :])  # (n, m)
        r = m**-gamma * (s @ a) - y  # residual (n,)
        losses.append(0.5 * np.mean(r**2))
        if k == steps:
            break
        # dR/da_j = (1/n) sum_i r_i m^-gamma s_ij; dR/dw_j = (1/n) sum_i r_i m^-gamma a_j s'_ij x_i
        g_a = m**-gamma * (r @ s) / n
        g_w = m**-gamma * a[:, None] * ((r[:, None] * ds).T @ x) / n
        g_b = m**-gamma * a * (r @ ds) / n
        grad = np.concatenate([g_a[:, None], g_w, g_b[:, None]], axis=1)
        theta = theta - dt * speed * grad
    return theta, np.array(losses)


def _problem(key, activation, scaling, n=20, m=7, d=3):
    kx, ku, kt = jax.random.split(key, 3)
    x = jax.random.normal(kx, (n, d), jnp.float64)
    y = jnp.sin(2.0 * x @ jax.random.normal(ku, (d,), jnp.float64))
    theta = jax.random.normal(kt, (m, 1 + d + 1), jnp.float64)
    data = DataSet(x, y)
    net = TwoLayer(d=d, activation=activation, scaling=scaling, bias=True)
    return GradientFlow(net, EmpiricalRisk(data), FullBatch(data)), theta


@pytest.mark.parametrize(
    ("scaling", "activation"), covering(["mean_field", "ntk"], ["relu", "tanh"])
)
def test_euler_is_gradient_descent_written_by_hand(key, activation, scaling):
    flow, theta = _problem(key, activation, scaling)
    dt, steps = 0.2, 50
    traj = simulate(flow, Euler(), theta, dt=dt, steps=steps, key=key, recorder=Recorder(every=5))
    want_theta, want_loss = _np_gradient_descent(
        theta, flow.objective.data.x, flow.objective.data.y, activation, scaling, dt, steps
    )
    assert traj.status == "completed"
    np.testing.assert_array_equal(traj.steps, np.arange(0, steps + 1, 5))
    np.testing.assert_allclose(traj.times, dt * traj.steps, rtol=1e-15)
    assert want_loss[-1] < 0.8 * want_loss[0]  # the run is not trivial
    np.testing.assert_allclose(traj.final, want_theta, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(traj["loss"], want_loss[::5], rtol=1e-10, atol=1e-12)


# --------------------------------------------------- energy dissipation identity


def _energy_run(key, make_problem, scaling, dt, integrator=None):
    """A smooth (tanh, l2 > 0) gradient flow on [0, 2], recorded at every step."""
    data, theta = make_problem(key)
    net = TwoLayer(d=3, activation="tanh", scaling=scaling)
    flow = GradientFlow(net, EmpiricalRisk(data, l2=0.01), FullBatch(data))
    integrator = Euler() if integrator is None else integrator
    steps = round(2.0 / dt)
    # every = 1 and chunk = 10 for every dt: one compiled chunk serves all runs
    traj = simulate(
        flow, integrator, theta, dt=dt, steps=steps, key=key, recorder=Recorder(every=1), chunk=10
    )
    assert traj.status == "completed" and len(traj.steps) == steps + 1
    return flow, traj


@pytest.mark.parametrize("scaling", first_by_default(["mean_field", "ntk"]))
def test_energy_dissipation_identity_is_first_order(key, make_problem, slope, scaling):
    """(E(theta_{k+1}) - E(theta_k)) / dt + m^(1-2 gamma) sum_j |v_j|^2 = O(dt) for Euler.

    The residual is recorded at every step of [0, 2]; its max over the run must scale like
    dt^1 (a wrong dissipation formula would leave an O(1) residual: slope ~0).
    """
    dts, worst = [0.2, 0.1, 0.05, 0.025], []
    for dt in dts:
        flow, traj = _energy_run(key, make_problem, scaling, dt)
        worst.append(float(np.abs(traj["energy_residual"]).max()))
    order = slope(dts, worst)
    assert 0.8 <= order <= 1.3, (order, worst)
    # at dt = 0.025 the identity holds to 5% of the dissipation itself
    assert float(np.abs(traj["energy_rel_residual"]).max()) < 0.05
    # the recorded energy is R + (l2/2) mean_j |theta_j|^2 at the final particles
    final = jnp.asarray(traj.final)
    want = flow.objective.risk(flow.model, final) + 0.005 * jnp.mean(jnp.sum(final**2, 1))
    np.testing.assert_allclose(traj["energy"][-1], want, rtol=1e-12)


def test_energy_dissipation_by_finite_differences_in_time(key, make_problem):
    """-dE/dt from the recorded energies (central differences) matches the recorded
    dissipation m^(1 - 2 gamma) sum_j |v_j|^2 to O(dt)."""
    dt = 0.025
    _, traj = _energy_run(key, make_problem, "mean_field", dt)
    e, diss = traj["energy"], traj["dissipation"]
    de_dt = (e[2:] - e[:-2]) / (2 * dt)
    # central difference of the Euler sequence: O(dt) agreement, a few % at dt = 0.025
    np.testing.assert_allclose(-de_dt, diss[1:-1], rtol=0.05, atol=1e-6)


@pytest.mark.parametrize("integrator", first_by_default([Euler(), Heun()]))
def test_energy_does_not_increase_along_gradient_flow(key, make_problem, integrator):
    _, traj = _energy_run(key, make_problem, "mean_field", 0.025, integrator)
    e = traj["energy"]
    assert np.all(np.diff(e) <= 1e-14), np.diff(e).max()
    assert e[-1] < 0.95 * e[0]  # it does decrease (not a flat run)
    assert np.all(traj["dissipation"] >= 0)


# --------------------------------------------------- lazy (ntk) vs mean-field movement


def _movement(key, scaling, m, T=1.0, dt=0.1):
    """Relative movement |theta(T) - theta(0)|_F / |theta(0)|_F from the recorder.

    Symmetric start (pairs (a, w, b), (-a, w, b)) so f_m(0) = 0 for every width: the
    residual at t = 0 is -y whatever m, which removes the O(1) random f_m(0) of the ntk
    scaling from the comparison. Widths are nested (the first m/2 rows of one draw).
    """
    kx, kt = jax.random.split(key)
    x = jax.random.normal(kx, (32, 2), jnp.float64)
    data = DataSet(x, jnp.sin(2.0 * x[:, 0]) * x[:, 1])
    net = TwoLayer(d=2, activation="tanh", scaling=scaling)
    flow = GradientFlow(net, EmpiricalRisk(data), FullBatch(data))
    # NumPy slicing: no new eager JAX kernels per width (only simulate compiles)
    half = np.asarray(jax.random.normal(kt, (max(WIDTHS) // 2, net.dim), jnp.float64))[: m // 2]
    theta = np.concatenate([half, half * np.array([-1.0, 1.0, 1.0, 1.0])])
    steps = round(T / dt)
    traj = simulate(flow, Euler(), theta, dt=dt, steps=steps, key=key, recorder=Recorder(steps))
    assert traj.times[-1] == pytest.approx(T)
    np.testing.assert_allclose(traj["loss"][0], 0.5 * np.mean(np.asarray(data.y) ** 2), rtol=1e-12)
    return float(traj["movement"][-1])


WIDTHS = [64, 256, 1024, 4096]


@pytest.mark.parametrize(
    "scaling,lo,hi",
    [("ntk", -0.65, -0.35), ("mean_field", -0.15, 0.15)],
)
@pytest.mark.slow  # four widths up to 4096 (lazy_vs_rich measures the same in its quick run)
def test_movement_scales_with_width(key, slope, scaling, lo, hi):
    """ntk is lazy: |theta(T) - theta(0)| / |theta(0)| = O(m^-1/2); mean_field moves O(1)."""
    moves = [_movement(key, scaling, m) for m in WIDTHS]
    assert all(mv > 0 for mv in moves)
    order = slope(WIDTHS, moves)
    assert lo <= order <= hi, (order, moves)


# --------------------------------------------------- permutation equivariance


def test_velocity_is_permutation_equivariant(key):
    flow, theta = _problem(key, "tanh", "mean_field")
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 1), theta.shape[0]))
    assert not np.array_equal(perm, np.arange(len(perm)))
    v, loss = flow.velocity(theta, 0, key)
    v_p, loss_p = flow.velocity(theta[perm], 0, key)
    np.testing.assert_allclose(v_p, v[perm], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(loss_p, loss, rtol=1e-13)
    x = flow.objective.data.x
    np.testing.assert_allclose(flow.model.predict(theta[perm], x), flow.model.predict(theta, x),
                               rtol=1e-13)  # fmt: skip


@pytest.mark.parametrize("integrator", first_by_default([Euler(), Heun()]))
def test_trajectory_is_permutation_equivariant(key, integrator):
    flow, theta = _problem(key, "tanh", "mean_field")
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 1), theta.shape[0]))
    # the same configuration as the hand-written gradient descent test (compiled once)
    kw = dict(dt=0.2, steps=50, key=key, recorder=Recorder(every=5))
    traj = simulate(flow, integrator, theta, **kw)
    traj_p = simulate(flow, integrator, theta[perm], **kw)
    assert np.abs(traj.final - np.asarray(theta)).max() > 0.1
    np.testing.assert_allclose(traj_p.final, traj.final[perm], rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(traj_p.snapshots[0], np.asarray(theta)[perm], rtol=0)
    for name in ("loss", "energy", "dissipation", "movement"):
        np.testing.assert_allclose(traj_p[name], traj[name], rtol=1e-11, atol=1e-14)


# --------------------------------------------------- dtypes


@pytest.mark.parametrize("integrator", first_by_default([Euler(), Heun()]))
def test_float32_and_float64_both_run(key, integrator):
    flow64, theta64 = _problem(key, "tanh", "mean_field")
    data32 = jax.tree.map(lambda a: a.astype(jnp.float32), flow64.objective.data)
    flow32 = GradientFlow(flow64.model, EmpiricalRisk(data32), FullBatch(data32))
    theta32 = theta64.astype(jnp.float32)
    kw = dict(dt=0.2, steps=50, key=key, recorder=Recorder(every=5))
    t64 = simulate(flow64, integrator, theta64, **kw)
    t32 = simulate(flow32, integrator, theta32, **kw)
    assert t64.final.dtype == np.float64
    assert t32.final.dtype == np.float32
    assert t32.status == t64.status == "completed"
    for name, col in t32.metrics.items():
        assert np.all(np.isfinite(col)), name
    # single precision: ~1e-7 per operation, amplified over 50 steps; 1e-4 is loose
    np.testing.assert_allclose(t32.final, t64.final, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(t32["loss"], t64["loss"], rtol=1e-4)


# --------------------------------------------------- no recompilation

TRACES: list[str] = []


class _CountingFullBatch(eqx.Module):
    """FullBatch that appends to TRACES whenever it is traced (a Python side effect runs
    only while JAX traces, never when a compiled function is replayed)."""

    data: DataSet
    stochastic = False

    def __call__(self, key, step):
        TRACES.append("traced")
        return self.data.x, self.data.y


def test_second_simulate_call_does_not_recompile(key):
    flow, theta = _problem(key, "tanh", "ntk")
    counting = GradientFlow(flow.model, flow.objective, _CountingFullBatch(flow.objective.data))
    kw = dict(steps=30, recorder=Recorder(every=10))
    TRACES.clear()
    first = simulate(counting, Euler(), theta, dt=0.1, key=key, **kw)
    n_traces = len(TRACES)
    assert n_traces > 0  # the counter sees traces
    # new values, same shapes and static configuration: nothing is traced again
    data2 = DataSet(2.0 * flow.objective.data.x, -flow.objective.data.y)
    counting2 = GradientFlow(flow.model, EmpiricalRisk(data2), _CountingFullBatch(data2))
    second = simulate(counting2, Euler(), 0.5 * theta, dt=0.05, key=jax.random.key(7), **kw)
    assert len(TRACES) == n_traces
    assert not np.allclose(second.final, first.final)
    # a new width is a new shape: it must trace again (the counter can fail the test)
    simulate(counting, Euler(), theta[:5], dt=0.1, key=key, **kw)
    assert len(TRACES) > n_traces


# --------------------------------------------------- records reuse the velocity


@pytest.mark.parametrize("integrator", first_by_default([Euler(), Heun()]))
def test_reusing_the_record_velocity_changes_nothing(key, integrator):
    """A full-batch step starts from the velocity its record computed; a sampler holding
    an equal but distinct data set turns that off: the two runs must agree."""
    flow, theta = _problem(key, "tanh", "mean_field")
    data = flow.objective.data
    copy = DataSet(jnp.array(data.x, copy=True), jnp.array(data.y, copy=True))
    plain = GradientFlow(flow.model, flow.objective, FullBatch(copy))
    kw = dict(dt=0.2, steps=50, key=key, recorder=Recorder(every=5))
    reused, computed = (
        simulate(flow, integrator, theta, **kw),
        simulate(plain, integrator, theta, **kw),
    )
    assert np.abs(reused.final - np.asarray(theta)).max() > 0.1
    np.testing.assert_allclose(reused.final, computed.final, rtol=1e-12, atol=1e-14)
    for name in reused.metrics:
        np.testing.assert_allclose(reused[name], computed[name], rtol=1e-10, atol=1e-14)


# --------------------------------------------------- divergence is located exactly


def test_divergence_reports_the_exact_step(key):
    """Without the divergence guard, the fast loop checks finiteness once per record
    interval and re-runs a failing interval step by step: the reported step and kept
    state are those of a step-by-step loop, whatever the interval."""
    x = jnp.linspace(-1.0, 1.0, 16)[:, None]
    data = DataSet(x, jnp.sign(x[:, 0]))
    flow = GradientFlow(TwoLayer(d=1, activation="quadratic"), EmpiricalRisk(data), FullBatch(data))
    theta = 0.3 * jax.random.normal(key, (8, 3))
    dt = 1.0
    state, bad = theta, None  # reference: Euler by hand until an update is non-finite
    net = flow.model

    @jax.jit
    def euler(state, k):
        return net.from_blocks(Euler().step(flow, net.to_blocks(state), k, dt, key)[0])

    for k in range(200):
        new = euler(state, k)
        if not np.all(np.isfinite(np.asarray(new))):
            bad = k
            break
        state = new
    assert bad is not None and bad > 4  # diverges, past the first interval of every=4
    for every in (4, 50):  # the bad step past the first interval of 4, and within one of 50
        traj = simulate(
            flow, Euler(), theta, dt=dt, steps=200, key=key, recorder=Recorder(every), guard=None
        )  # the NaN/inf path alone (the guard would stop the run earlier)
        assert traj.status == "diverged"
        assert traj.state.step == bad, every
        assert f"step {bad + 1}" in traj.message
        np.testing.assert_allclose(traj.final, state, rtol=1e-10)
        assert np.all(traj.steps <= bad)
