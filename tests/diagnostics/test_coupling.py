"""`mfnn.diagnostics.coupling`: the coupling statistics against direct computations and
known answers (translations, the W2 sampling floor m^(-1/D)), the width exponents and fits
on exact power laws, the training change of a rescaled network, a run against its control
(loss gain of a time-rescaled power law, the energy identity with jumps) and the finite-m
noise ratio of a birth-death dynamics against its pairwise definition."""

import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import TwoLayer, config
from mfnn.build import build
from mfnn.diagnostics import (
    coupling_distance,
    energy_ratio,
    function_distance,
    independent_w2,
    jump_noise_ratio,
    loss_gain,
    synchronous_coupling,
    training_change,
    w2_exact,
    width_exponents,
    width_fit,
)
from mfnn.experiments.birth_death_speedup import BIRTH_DEATH_SPEEDUP

# ------------------------------------------------------------- propagation of chaos


def test_coupling_and_function_distances_against_loops(key):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 4))
    want = [np.mean([np.sum((x[r, j] - y[r, j]) ** 2) for j in range(5)]) for r in range(3)]
    np.testing.assert_allclose(coupling_distance(x, y), want, rtol=1e-14)
    assert coupling_distance(x[0], y[0]) == pytest.approx(want[0], rel=1e-14)
    net = TwoLayer(d=2, activation="tanh", bias=True)
    systems = jax.random.normal(key, (3, 6, 4), jnp.float64)
    ref = jax.random.normal(jax.random.fold_in(key, 1), (40, 4), jnp.float64)
    inputs = jax.random.normal(jax.random.fold_in(key, 2), (7, 2), jnp.float64)
    f_ref = np.asarray(net.predict(ref, inputs))
    sq = [np.mean((np.asarray(net.predict(s, inputs)) - f_ref) ** 2) for s in systems]
    assert function_distance(net, systems, ref, inputs) == pytest.approx(np.sqrt(np.mean(sq)))
    # the reference against itself (as R replicas): 0
    assert function_distance(net, jnp.stack([ref, ref]), ref, inputs) == 0.0


def test_synchronous_coupling_of_a_translation():
    """Systems = tracers + v: every particle is |v| from its tracer, so C = |v|^2 exactly,
    its relative standard error is 0, and W2 to the tracer cloud is |v| (a translation)."""
    rng = np.random.default_rng(2)
    tracers, v = rng.normal(size=(5, 16, 3)), np.array([0.3, 0.0, 0.4])
    net = TwoLayer(d=2, activation="tanh", bias=False)
    ref = rng.normal(size=(64, 3))
    s = synchronous_coupling(
        net, tracers + v, tracers, ref, np.ones((4, 2)), np.random.default_rng(0), 3
    )
    assert s["coupling"] == pytest.approx(0.25, rel=1e-12)
    assert s["coupling_rse"] == pytest.approx(0.0, abs=1e-12)
    assert s["w2_tracers"] == pytest.approx(0.5, rel=1e-9)
    assert s["coupling_w2_replicas"] == pytest.approx(0.25, rel=1e-12)
    # the independent W2 uses the first w2_replicas systems and one draw of the rng each
    rng0 = np.random.default_rng(0)
    want = [
        w2_exact(c, ref[rng0.choice(64, 16, replace=False)], squared=True)
        for c in (tracers + v)[:3]
    ]
    assert s["w2_independent"] == pytest.approx(math.sqrt(np.mean(want)), rel=1e-12)
    same = synchronous_coupling(net, tracers, tracers, ref, np.ones((4, 2)), rng0, 8)
    assert same["coupling"] == 0.0 and same["w2_tracers"] == 0.0
    assert math.isnan(same["coupling_rse"])


def test_independent_clouds_decay_like_m_to_the_minus_1_over_D(slope):
    """The sampling floor on its own: W2 between m points and an independent m-sample of a
    large reference of N(0, I_D) decays like m^(-1/D) for D = 6, much slower than
    m^(-1/2); in D = 1 it decays like m^(-1/2)."""
    rng = np.random.default_rng(1)
    ms = [16, 64, 256]
    for dim, lo, hi in ((6, -0.3, -0.1), (1, -0.65, -0.4)):
        ref = rng.normal(size=(8192, dim))
        w = [independent_w2(rng.normal(size=(8, m, dim)), ref, rng) for m in ms]
        assert lo <= slope(ms, w) <= hi, (dim, slope(ms, w))


# ------------------------------------------------------------------ lazy against rich


def test_width_exponents():
    # movement m^(gamma - 1), kernel change m^(2 (gamma - 1))
    assert width_exponents(0.5) == (-0.5, -1.0)
    assert width_exponents(0.75) == (-0.25, -0.5)
    assert width_exponents(1.0) == (0.0, 0.0)


def test_width_fit_of_power_laws():
    widths = np.array([16.0, 64.0, 256.0, 1024.0])
    per_seed = [2.0 * widths**-0.5, 3.0 * widths**-0.5, 2.5 * widths**-0.5]  # same slope
    w = width_fit(widths, per_seed)
    np.testing.assert_allclose(w.mean, 2.5 * widths**-0.5, rtol=1e-14)
    assert w.fit.slope == pytest.approx(-0.5, abs=1e-12) and w.seed_std < 1e-12
    lo, hi = w.fit.ci
    assert lo == pytest.approx(-0.5, abs=1e-9) and hi == pytest.approx(-0.5, abs=1e-9)
    w = width_fit(widths, [widths**-0.4, widths**-0.6])  # seed slopes -0.4 and -0.6
    assert w.seed_std == pytest.approx(0.1, abs=1e-12)
    assert math.isnan(width_fit(widths, [[1.0, 0.0, 1.0, 1.0]]).fit.slope)  # log of 0


def test_training_change_of_a_rescaled_relu_network(key):
    """theta -> c theta for a ReLU network without bias: movement |c - 1|, f scales by c^2,
    K by c^2 (each gradient is linear in theta)."""
    net = TwoLayer(d=3, activation="relu", bias=False)
    theta0 = jax.random.normal(key, (32, 4), jnp.float64)
    x = jax.random.normal(jax.random.fold_in(key, 1), (9, 3), jnp.float64)
    f0 = np.asarray(net.predict(theta0, x))
    out = training_change(net, theta0, 1.5 * theta0, x, f0)
    assert out["movement"] == pytest.approx(0.5, rel=1e-12)
    assert out["kernel_change"] == pytest.approx(1.25, rel=1e-12)
    assert out["function_change"] == pytest.approx(1.25, rel=1e-12)


# --------------------------------------------------------- a run against its control


def test_energy_ratio_is_one_when_the_identity_holds():
    # E = exp(-2t): -dE/dt = 2 exp(-2t) split as dissipation + jump_dissipation
    t = np.linspace(0.0, 3.0, 3001)
    e = np.exp(-2 * t)
    metrics = {"t": t, "energy": e, "dissipation": 1.5 * e, "jump_dissipation": 0.5 * e}
    r = energy_ratio(metrics, 2.0)
    assert r["with_jumps"] == pytest.approx(1.0, abs=1e-5)
    assert r["without_jumps"] == pytest.approx(4 / 3, abs=1e-5)
    assert r["t_end"] == pytest.approx(2.0)
    short = energy_ratio(metrics, 0.0)  # one record: no integral
    assert math.isnan(short["with_jumps"]) and math.isnan(short["without_jumps"])


def test_loss_gain_of_a_time_rescaled_power_law():
    # L_run(t) = L_control(k t) with L = t^-p: the ratio is k^p at every time
    t = np.linspace(1.0, 200.0, 400)
    assert loss_gain(t, t**-1.3, (3 * t) ** -1.3, 10, 100) == pytest.approx(3**1.3, rel=1e-12)
    assert loss_gain(t, 1 / t, 1 / t, 10, 100) == 1.0  # the control against itself
    assert math.isnan(loss_gain(t, 1 / t, 1 / t, 100, 400))  # the records end at 200


def test_jump_noise_ratio_by_hand_and_against_its_pairwise_definition():
    # g = (1, -1), U = 2 I, m = 2: D_j = 2 - 2 + 2 = 2, ratio = mean |g| D / (2m) / mean g^2
    fake = SimpleNamespace(
        centered_potential=lambda th: np.array([1.0, -1.0]),
        objective=SimpleNamespace(interaction=lambda model, p, q: 2.0 * np.eye(2)),
        model=None,
    )
    assert jump_noise_ratio(fake, np.zeros((2, 1))) == pytest.approx(0.5, rel=1e-14)
    # a real birth-death dynamics: D_j = mean_k |delta_j - delta_k|_U^2 (U_jj - 2 U_jk + U_kk)
    cfg = config.load(BIRTH_DEATH_SPEEDUP.default_config(), ["model.width=12"])
    built = build(cfg)
    theta = jnp.asarray(built.theta0)
    dyn = built.dynamics
    g = np.asarray(dyn.centered_potential(theta))
    u = np.asarray(dyn.objective.interaction(dyn.model, theta, theta))
    d = [np.mean([u[j, j] - 2 * u[j, k] + u[k, k] for k in range(12)]) for j in range(12)]
    want = np.mean(np.abs(g) * d) / (2 * 12) / np.mean(g**2)
    assert jump_noise_ratio(dyn, theta) == pytest.approx(want, rel=1e-12)
    assert 0 < want < 1  # at the start, m = 12: the jumps remove more than resampling adds
