"""Mean-field Langevin: Ornstein-Uhlenbeck known answers, temperature schedules, frozen
blocks, resume, the McKean-Vlasov form, and bad input refused with the field named."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from mfnn import (
    ConfigError,
    EmpiricalRisk,
    Euler,
    FullBatch,
    GradientFlow,
    Heun,
    Recorder,
    TwoLayer,
    config,
    simulate,
)
from mfnn.build import build
from mfnn.dynamics import Langevin, Temperature, mckean_vlasov
from mfnn.integrators import EulerMaruyama
from mfnn.objectives import Exact, ZeroRisk
from tiers import first_by_default


def ou(beta=4.0, lam=1.5, d=2, temperature=None):
    """R == 0 with L2 weight lambda: d theta = -lambda theta dt + sqrt(2/beta) dB."""
    net = TwoLayer(d=d, activation="tanh", bias=False, train_output=False)
    flow = GradientFlow(net, ZeroRisk(l2=lam), Exact())
    return Langevin(flow, temperature or Temperature(beta))


def em_moments(mean0, var0, lam, dt, betas):
    """The exact mean and variance of Euler-Maruyama on OU after len(betas) steps:
    mean' = (1 - lam dt) mean, var' = (1 - lam dt)^2 var + (2 / beta_k) dt."""
    mean, var = mean0, var0
    out = []
    for b in betas:
        mean = (1 - lam * dt) * mean
        var = (1 - lam * dt) ** 2 * var + 2.0 / b * dt
        out.append((mean, var))
    return out


@pytest.mark.parametrize(
    "temperature",
    first_by_default(
        [
            Temperature(4.0),
            Temperature(1.0, "log", rate=2.0),
            Temperature(1.0, "geometric", growth=3.0, period=0.5, beta_max=8.0),
            Temperature(1.0, "piecewise", values=(1.0, 2.0, 10.0), times=(0.0, 0.3, 0.7)),
        ]
    ),
    ids=["constant", "log", "geometric", "piecewise"],
)
def test_ou_law_stays_gaussian_with_the_exact_moments(key, temperature):
    # m = 20000 particles from N(1, 0.3^2) per coordinate; at every record the sample mean
    # and variance are within 4 standard errors of the scheme's exact recursion, and the
    # law is Gaussian (KS against the normal with those moments)
    lam, dt, m, d = 1.5, 0.01, 20000, 2
    dyn = ou(lam=lam, d=d, temperature=temperature)
    theta0 = 1.0 + 0.3 * jax.random.normal(jax.random.fold_in(key, 1), (m, d))
    traj = simulate(
        dyn,
        EulerMaruyama(),
        theta0,
        dt=dt,
        steps=120,
        key=key,
        recorder=Recorder(every=30),
        snapshot_every=30,
    )
    betas = np.asarray(temperature(dt * np.arange(120)))
    exact = em_moments(1.0, 0.09, lam, dt, betas)
    for step, theta in traj.snapshots.items():
        if step == 0:
            continue
        mean, var = exact[step - 1]
        x = np.asarray(theta)
        se_mean = np.sqrt(var / m)
        se_var = var * np.sqrt(2.0 / (m - 1))
        np.testing.assert_array_less(np.abs(x.mean(0) - mean), 4 * se_mean)
        np.testing.assert_array_less(np.abs(x.var(0, ddof=1) - var), 4 * se_var)
        for j in range(d):
            assert stats.kstest(x[:, j], "norm", args=(mean, np.sqrt(var))).pvalue > 1e-3


def test_ou_reaches_the_gibbs_law(key):
    # stationary law N(0, I/(beta lambda)) (EM: variance / (1 - lambda dt / 2))
    beta, lam, dt, m = 4.0, 1.0, 0.02, 20000
    dyn = ou(beta, lam)
    theta0 = 2.0 + jax.random.uniform(jax.random.fold_in(key, 1), (m, 2))
    traj = simulate(
        dyn, EulerMaruyama(), theta0, dt=dt, steps=600, key=key, recorder=Recorder(every=600)
    )
    x = traj.final
    var = 1.0 / (beta * lam * (1 - lam * dt / 2))
    np.testing.assert_array_less(np.abs(x.mean(0)), 4 * np.sqrt(var / m))
    np.testing.assert_array_less(np.abs(x.var(0) - var), 4 * var * np.sqrt(2.0 / m))


def test_em_without_noise_is_euler(key, make_problem):
    data, theta = make_problem(key)
    flow = GradientFlow(TwoLayer(d=3, activation="tanh"), EmpiricalRisk(data), FullBatch(data))
    a = simulate(flow, Euler(), theta, dt=0.1, steps=30, key=key)
    b = simulate(flow, EulerMaruyama(), theta, dt=0.1, steps=30, key=key)
    np.testing.assert_array_equal(a.final, b.final)


def test_em_step_is_the_formula(key):
    dyn = ou(beta=2.0, lam=0.5)
    theta = jnp.arange(6.0).reshape(3, 2)
    net = dyn.model
    new, _ = EulerMaruyama().step(dyn, net.to_blocks(theta), 7, 0.1, key)
    new = net.from_blocks(new)
    xi = net.from_blocks(dyn.noise(net.to_blocks(theta), 7, key))
    np.testing.assert_allclose(new, theta - 0.1 * 0.5 * theta + np.sqrt(0.1) * 1.0 * xi)
    # the noise of a step is its own stream: another step, another draw
    assert not np.allclose(net.from_blocks(dyn.noise(net.to_blocks(theta), 8, key)), xi)


def test_frozen_blocks_get_no_noise(key, make_problem):
    data, theta = make_problem(key, d=3, bias=True)
    net = TwoLayer(d=3, activation="tanh", trainable=("w",))
    dyn = Langevin(GradientFlow(net, EmpiricalRisk(data), FullBatch(data)), Temperature(1.0))
    traj = simulate(dyn, EulerMaruyama(), theta, dt=0.05, steps=40, key=key)
    np.testing.assert_array_equal(traj.final[:, 0], theta[:, 0])  # a
    np.testing.assert_array_equal(traj.final[:, -1], theta[:, -1])  # b
    assert not np.allclose(traj.final[:, 1:4], theta[:, 1:4])


@pytest.mark.slow  # tests/test_runs.py resumes by default; here the noise keys as well
def test_resumed_run_is_bit_identical(key):
    dyn = ou()
    theta0 = jax.random.normal(key, (64, 2))
    whole = simulate(dyn, EulerMaruyama(), theta0, dt=0.05, steps=200, key=key, chunk=50)
    half = simulate(dyn, EulerMaruyama(), theta0, dt=0.05, steps=100, key=key, chunk=50)
    rest = simulate(
        dyn, EulerMaruyama(), theta0, dt=0.05, steps=200, key=key, chunk=50, state=half.state
    )
    np.testing.assert_array_equal(whole.final, rest.final)


def test_entropy_and_free_energy_are_recorded(key):
    # with the Gaussian at the Gibbs law: F = lambda/2 E|theta|^2 - H / beta
    beta, lam, m, d = 2.0, 1.0, 4000, 2
    dyn = ou(beta, lam, d)
    var = 1.0 / (beta * lam)
    theta0 = np.sqrt(var) * jax.random.normal(key, (m, d))
    traj = simulate(
        dyn,
        EulerMaruyama(),
        theta0,
        dt=0.001,
        steps=10,
        key=key,
        recorder=Recorder(every=10, entropy_k=1),
    )
    h = 0.5 * d * np.log(2 * np.pi * np.e * var)
    f = 0.5 * lam * d * var - h / beta
    assert traj["beta"][0] == beta
    assert traj["entropy"][0] == pytest.approx(h, abs=0.05)
    assert traj["free_energy"][0] == pytest.approx(f, abs=0.05)


def test_mckean_vlasov_is_langevin_with_drift_scale(key, make_problem):
    data, theta = make_problem(key)
    flow = GradientFlow(TwoLayer(d=3, activation="tanh"), EmpiricalRisk(data), FullBatch(data))
    mv = mckean_vlasov(flow, beta_e=0.3, tau=0.02)
    v, _ = flow.velocity(theta, 0, key)
    np.testing.assert_allclose(mv.velocity(theta, 0, key)[0], 0.3 * v, rtol=1e-14)
    assert float(mv.diffusion(5, 0.1)) == pytest.approx(np.sqrt(0.02))
    assert float(mv.beta(0.0)) == pytest.approx(0.3 * 2 / 0.02)


def test_temperature_schedules_known_values():
    t = np.array([0.0, 1.0, np.e - 1])
    np.testing.assert_allclose(Temperature(3.0)(t), 3.0)
    np.testing.assert_allclose(Temperature(2.0, "log", rate=0.5)(t), 2.0 * (1 + 0.5 * np.log1p(t)))
    geo = Temperature(1.0, "geometric", growth=4.0, period=2.0, beta_max=3.0)
    np.testing.assert_allclose(geo(np.array([0.0, 1.0, 2.0])), [1.0, 2.0, 3.0])
    pw = Temperature(1.0, "piecewise", values=(1.0, 5.0), times=(0.0, 1.0))
    np.testing.assert_allclose(pw(np.array([0.0, 0.999, 1.0, 7.0])), [1.0, 1.0, 5.0, 5.0])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"beta": 0.0}, "dynamics.langevin.beta"),
        ({"beta": -1.0}, "dynamics.langevin.beta"),
        ({"beta": 1.0, "schedule": "cosine"}, "dynamics.langevin.schedule"),
        ({"beta": 1.0, "schedule": "log", "rate": -0.1}, "dynamics.langevin.rate"),
        ({"beta": 1.0, "schedule": "geometric", "growth": 0.5}, "dynamics.langevin.growth"),
        ({"beta": 2.0, "schedule": "geometric", "beta_max": 1.0}, "dynamics.langevin.beta_max"),
        (
            {"beta": 2.0, "schedule": "piecewise", "values": (2.0, 1.0), "times": (0.0, 1.0)},
            "dynamics.langevin.values",
        ),
        (
            {"beta": 2.0, "schedule": "piecewise", "values": (2.0, 3.0), "times": (0.0, 0.0)},
            "dynamics.langevin.times",
        ),
    ],
)
def test_bad_temperatures_are_refused(kwargs, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        Temperature(**kwargs)


def test_noise_with_a_deterministic_integrator_is_refused(key):
    with pytest.raises(ConfigError, match="euler_maruyama"):
        simulate(ou(), Heun(), jnp.zeros((4, 2)), dt=0.1, steps=2, key=key)


def _raw(**dynamics):
    return {
        "model": {"width": 8, "activation": "tanh", "bias": False, "train_output": False},
        "data": {"target": "zero", "inputs": {"dim": 2}},
        "objective": {"l2": 1.0},
        "dynamics": {"integrator": "euler_maruyama", "langevin": {"beta": 2.0}} | dynamics,
    }


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (_raw(langevin={"beta": 0}), "dynamics.langevin.beta"),
        (_raw(integrator="heun"), "dynamics.integrator"),
        (_raw(integrator="euler"), "dynamics.integrator"),
        (_raw(langevin={"beta": 1, "schedule": "geometric", "growth": 1.0}), "growth"),
        (_raw() | {"objective": {"l2": -1.0}}, "objective.l2"),
    ],
)
def test_bad_langevin_configs_fail_before_compute(raw, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build(config.load(raw))


def test_langevin_config_builds_and_records(tmp_path):
    from mfnn.rundir import read_metrics
    from mfnn.runs import execute

    cfg = config.load(_raw(steps=40, dt=0.05) | {"record": {"every": 20}})
    _, built, summary = execute(cfg, tmp_path, progress=False)
    assert isinstance(built.dynamics, Langevin) and summary["status"] == "completed"
    m = read_metrics(tmp_path)
    assert {"beta", "entropy", "free_energy"} <= set(m)
    assert np.all(np.isfinite(m["free_energy"]))


@pytest.mark.parametrize("drift_scale", [1.0, 0.3, 2.5])
def test_dissipation_is_minus_the_energy_rate_along_the_drift(key, make_problem, drift_scale):
    """-dE/dt along the drift u = s v equals `dissipation(u)` for every drift scale s: the
    directional derivative of E at theta along u (jvp) is -(1/s) mean_j |u_j|^2, not
    -s times it (the McKean-Vlasov runs recorded energy_rel_residual = 1 - 1/s before)."""
    data, theta = make_problem(key, n=16, d=2, m=9)
    net = TwoLayer(d=2, activation="tanh", scaling="mean_field")
    flow = GradientFlow(net, EmpiricalRisk(data, l2=0.1), FullBatch(data))
    dyn = Langevin(flow, Temperature(10.0), drift_scale=drift_scale)
    u, _ = dyn.full_velocity(theta)
    _, rate = jax.jvp(dyn.energy, (theta,), (u,))
    np.testing.assert_allclose(dyn.dissipation(u), -rate, rtol=1e-12)
