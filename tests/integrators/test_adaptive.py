"""The adaptive integrator: a linear flow to its tolerance against the closed form, Euler's
first order against it, its cost at equal accuracy, honest evaluation counts, the config
path (run and bit-identical resume) and the refusals."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mfnn import (
    BirthDeath,
    EmpiricalRisk,
    Euler,
    FullBatch,
    GradientFlow,
    Heun,
    Langevin,
    Minibatch,
    Temperature,
    TwoLayer,
    config,
    rundir,
    runs,
)
from mfnn.build import build
from mfnn.cli import app
from mfnn.domains import Ball
from mfnn.errors import ConfigError
from mfnn.integrators import Adaptive, adaptive_solve
from mfnn.measure import load_particles


def _tanh_flow(data, trainable=None):
    net = TwoLayer(d=3, activation="tanh", scaling="mean_field", trainable=trainable)
    return GradientFlow(net, EmpiricalRisk(data, l2=0.01), FullBatch(data))


@eqx.filter_jit
def _fixed_steps(integrator, flow, theta, dt, n, key):
    """n steps of a fixed-step integrator (n traced: one program for every dt)."""
    model = flow.model

    def body(i, s):
        return integrator.step(flow, s, i, dt, key)[0]

    return model.from_blocks(jax.lax.fori_loop(0, n, body, model.to_blocks(theta)))


def _fixed(integrator, flow, theta, t, n, key):
    return np.asarray(_fixed_steps(integrator, flow, theta, jnp.asarray(t / n), n, key))


# ------------------------------------------------------------------ (a) a linear flow
def _linear_exact(flow, theta, key, t):
    """The random-features flow (only the output weights a move): v(a) = M a + c is affine
    with M = -m Hess_a E symmetric, so a(t) = a0 + t phi(t M) v(a0), phi(z) = (e^z - 1)/z,
    by the eigendecomposition of M (M probed column by column: exact for an affine map)."""
    col = flow.model.block_slices()["a"]

    def v_a(th):
        return np.asarray(flow.velocity(th, 0, key)[0])[:, col].ravel()

    a0, v0 = np.asarray(theta)[:, col].ravel(), v_a(theta)
    m = a0.size
    M = np.stack([v_a(theta.at[k, col].add(1.0)) - v0 for k in range(m)], axis=1)
    assert np.abs(M - M.T).max() < 1e-12  # a gradient flow: symmetric Jacobian
    lam, U = np.linalg.eigh(M)
    assert lam.max() < 0  # l2 > 0: strictly stable, every mode decays

    def at(s):
        return a0 + U @ (np.expm1(lam * s) / lam * (U.T @ v0))

    return at, col


def test_linear_flow_to_tolerance(key, make_problem, slope):
    data, theta = make_problem(key)
    flow = _tanh_flow(data, trainable=("a",))
    T, rtols = 10.0, [1e-4, 1e-6, 1e-8]
    exact, col = _linear_exact(flow, theta, key, T)
    target = exact(T)
    scale = np.abs(target).max()
    assert np.abs(target - np.asarray(theta)[:, col].ravel()).max() > 0.5 * scale  # it moved
    errors, costs = [], []
    for rtol in rtols:
        end, stats = adaptive_solve(flow, theta, T, rtol=rtol, atol=1e-2 * rtol)
        errors.append(np.abs(np.asarray(end)[:, col].ravel() - target).max() / scale)
        costs.append(stats["evaluations"])
        # the frozen blocks did not move
        np.testing.assert_array_equal(np.delete(np.asarray(end), col, 1), np.delete(theta, col, 1))
    assert all(e <= 10 * r for e, r in zip(errors, rtols, strict=True)), errors
    assert errors[0] > errors[1] > errors[2] and costs[0] < costs[1] < costs[2]
    # tolerance proportionality: error ~ rtol^q, q <= 1 (here ~1)
    assert 0.6 <= slope(rtols, errors) <= 1.3, errors
    # negative control: the closed form a ten-thousandth of the time later is off by far
    # more than the bound of the finest tolerance, so the check can see a small error
    shifted = np.abs(exact(T * (1 + 1e-4)) - target).max() / scale
    assert shifted > 100 * 10 * rtols[-1]


# ------------------------------------------------------------------ (b) Euler is order 1
@pytest.mark.slow  # ~10 s; the orders are tested by default in tests/integrators/test_explicit.py
def test_euler_and_heun_orders_against_the_adaptive_reference(key, make_problem, slope):
    data, theta = make_problem(key)
    flow = _tanh_flow(data)
    ref, _ = adaptive_solve(flow, theta, 1.0, rtol=1e-12, atol=1e-14)
    ref = np.asarray(ref)
    assert np.abs(ref - theta).max() > 0.2  # a nonlinear flow that really moves
    steps = np.array([10, 20, 40, 80])
    slopes = {}
    for integrator in (Euler(), Heun()):
        errs = [np.abs(_fixed(integrator, flow, theta, 1.0, n, key) - ref).max() for n in steps]
        slopes[type(integrator).__name__] = slope(1.0 / steps, errs)
    # Heun (order 2) is the negative control: the same fit tells the orders apart, and the
    # reference is exact well below Heun's smallest error (5e-6)
    assert 0.9 <= slopes["Euler"] <= 1.1 and 1.85 <= slopes["Heun"] <= 2.15, slopes


# ------------------------------------------------------------------ (c) cost at equal accuracy
@pytest.mark.slow  # ~10-20 s; the cost comparison is benchmarks/bench_adaptive.py's too
def test_fewer_velocity_evaluations_than_euler_at_equal_accuracy(key, make_problem):
    data, theta = make_problem(key)
    flow = _tanh_flow(data)
    T, goal = 1.0, 1e-6
    ref = np.asarray(adaptive_solve(flow, theta, T, rtol=1e-12, atol=1e-14)[0])
    scale = np.abs(ref).max()

    def rel(x):
        return np.abs(np.asarray(x) - ref).max() / scale

    n = 16  # Euler: halve dt until the goal is met; one velocity evaluation a step
    while rel(_fixed(Euler(), flow, theta, T, n, key)) > goal:
        n *= 2
    assert rel(_fixed(Euler(), flow, theta, T, n // 2, key)) > goal  # the halving was needed
    for rtol in (1e-5, 1e-6, 1e-7, 1e-8):  # the loosest tolerance that meets it
        end, stats = adaptive_solve(flow, theta, T, rtol=rtol, atol=1e-2 * rtol)
        if rel(end) <= goal:
            break
    else:
        pytest.fail("no tolerance reached the goal")
    # measured: Euler 65536 evaluations, tsit5 25 (rtol 1e-6)
    assert n >= 1000 * stats["evaluations"], (n, stats)


# ------------------------------------------------------------------ counts and the FSAL reuse
class _Counting(GradientFlow):
    """A gradient flow that counts its velocity evaluations on the host."""

    def velocity_blocks(self, state, step, key):
        jax.debug.callback(_COUNT.append, 1)
        return super().velocity_blocks(state, step, key)


_COUNT: list[int] = []


@pytest.mark.parametrize(
    "solver,per", [("tsit5", 6), pytest.param("heun", 2, marks=pytest.mark.slow)]
)
def test_evaluation_counts_are_exact(key, make_problem, solver, per):
    """The counts `adaptive_solve` reports are the velocity calls made (counted on the host):
    per internal step, accepted or rejected, the pair's new stages, plus v(theta0) for a
    first-same-as-last pair."""
    data, theta = make_problem(key)
    flow = _tanh_flow(data)
    counting = _Counting(flow.model, flow.objective, flow.sampler)
    _COUNT.clear()
    _, stats = adaptive_solve(counting, theta, 2.0, rtol=1e-6, atol=1e-8, solver=solver)
    assert stats["rejected"] >= 1  # the first try (h = 2) is rejected: counted too
    steps = stats["accepted"] + stats["rejected"]
    assert len(_COUNT) == stats["evaluations"] == per * steps + (solver == "tsit5")


@pytest.mark.slow  # the counts test (default tier) checks the evaluations
def test_k1_is_reused(key, make_problem):
    """The engine's step from a record's velocity k1: one evaluation fewer, the same state."""
    data, theta = make_problem(key)
    flow = _tanh_flow(data)
    integ, model = Adaptive(rtol=1e-8, atol=1e-10), flow.model
    blocks = model.to_blocks(theta)
    v, _ = flow.velocity_blocks(blocks, 0, key)
    with_k1 = eqx.filter_jit(lambda s, w: integ.solve_blocks(flow, s, 0, 1.0, key, w))
    a, sa = with_k1(blocks, v)
    b, sb = adaptive_solve(flow, theta, 1.0, rtol=1e-8, atol=1e-10)  # the same, without
    assert int(sa["evaluations"]) == sb["evaluations"] - 1
    np.testing.assert_allclose(model.from_blocks(a), b, rtol=0, atol=1e-13)
    # negative control: a wrong k1 is really used (the first stage is not recomputed)
    c, sc = with_k1(blocks, jax.tree.map(jnp.zeros_like, v))
    assert np.abs(model.from_blocks(c) - b).max() > 1e-9
    assert int(sc["rejected"]) > int(sa["rejected"])  # the error control saw it


def test_order_is_the_pairs():
    import diffrax

    from mfnn.integrators.adaptive import SOLVERS
    from mfnn.models.resnet import diffrax_solver

    term = diffrax.ODETerm(lambda t, y, args: y)
    for name in SOLVERS:
        assert Adaptive(solver=name).order == diffrax_solver(name).order(term), name
    assert Adaptive().order == 5  # tsit5


# ------------------------------------------------------------------ (d) the config path
SMALL = {
    "model": {"width": 12, "activation": "tanh"},
    "data": {"n_train": 32, "n_test": 16},
    "dynamics": {"integrator": "adaptive", "rtol": 1e-9, "atol": 1e-11, "dt": 0.5, "steps": 12},
    "record": {"every": 2, "chunk": 4, "snapshot_every": 4},
}


def test_config_builds_the_adaptive_integrator():
    built = build(config.load(SMALL, ["dynamics.solver=dopri8", "dynamics.max_steps=500"]))
    integ = built.integrator
    assert isinstance(integ, Adaptive) and (integ.solver, integ.max_steps) == ("dopri8", 500)
    assert (float(integ.rtol), float(integ.atol), integ.order) == (1e-9, 1e-11, 8)
    integ.check(built.dynamics)  # what `simulate` asks before compiling


def test_energy_identity_is_second_order_in_the_record_spacing():
    """With the flow solved exactly over dt, (E(t + dt) - E(t))/dt + (D(t) + D(t + dt))/2 is
    the trapezoid error O(dt^2): halving dt divides it by 4. The left-point form (Euler's)
    would be O(dt) (negative control: its ratio is about 2)."""
    built = build(config.load(SMALL, ["dynamics.rtol=1e-11", "dynamics.atol=1e-13"]))
    flow, theta = built.dynamics, built.theta0
    rec, key = built.recorder, built.key
    res = [abs(float(rec(flow, built.integrator, theta, theta, 0, dt, key)["energy_residual"]))
           for dt in (0.05, 0.025, 0.0125)]  # fmt: skip
    ratios = [res[0] / res[1], res[1] / res[2]]
    assert all(3.2 < r < 4.8 for r in ratios), (res, ratios)
    v, _ = flow.exact().full_velocity(theta)
    d0 = float(flow.exact().dissipation(v))
    left = []  # the left-point form (E(t + dt) - E(t))/dt + D(t): O(dt)
    for dt in (0.05, 0.025):
        nxt = built.integrator.drift_step(flow, theta, 0, dt, key, (v, None))
        e0 = float(flow.exact().energy(theta))
        left.append(abs((float(flow.exact().energy(nxt)) - e0) / dt + d0))
    assert 1.6 < left[0] / left[1] < 2.4, left
    # the recorder uses the trapezoid: at each dt its residual is far below the left point's
    # (a recorder that ignored `solves_flow` would report the left-point values)
    assert res[0] < left[0] / 5 and res[1] < left[1] / 5, (res, left)


@pytest.mark.slow  # a compiled chunk holds five diffrax solves: ~10 s on 2 cores
def test_mfnn_run_adaptive_end_to_end(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["final_t"] == pytest.approx(6.0)
    resolved = config.read_yaml(out / "config.yaml")["dynamics"]
    assert resolved["integrator"] == "adaptive" and resolved["solver"] == "tsit5"
    m = rundir.read_metrics(out)
    assert m["loss"][-1] < m["loss"][0] and m["step"].tolist() == list(range(0, 13, 2))


@pytest.mark.slow  # three runs and a solve: ~15 s on 2 cores
def test_adaptive_resume_is_bit_identical(tmp_path, monkeypatch):
    cfg = config.load(SMALL)
    runs.execute(cfg, tmp_path / "full", progress=False)
    original = rundir.RunWriter.on_checkpoint

    def interrupt_after_8(self, state):
        original(self, state)
        if state.step == 8:
            raise KeyboardInterrupt

    monkeypatch.setattr(rundir.RunWriter, "on_checkpoint", interrupt_after_8)
    _, _, s = runs.execute(cfg, tmp_path / "cut", progress=False)
    assert s["status"] == "interrupted" and s["final_step"] == 8
    monkeypatch.setattr(rundir.RunWriter, "on_checkpoint", original)
    _, _, s = runs.execute(cfg, tmp_path / "cut", resume=True, progress=False)
    assert s["status"] == "completed"
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert (full / "metrics.csv").read_bytes() == (cut / "metrics.csv").read_bytes()
    fs, cs = rundir.list_snapshots(full), rundir.list_snapshots(cut)
    assert list(fs) == list(cs) == [0, 4, 8, 12]
    for step in fs:
        a, b = np.load(fs[step]), np.load(cs[step])
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    # 12 engine steps of 0.5 are one solve to t = 6 (each to the tolerance)
    built = build(cfg)
    end, _ = adaptive_solve(built.dynamics, built.theta0, 6.0, rtol=1e-11, atol=1e-13)
    final = load_particles(fs[12], built.model)
    assert np.abs(final - np.asarray(end)).max() < 1e-7


# ------------------------------------------------------------------ (e) refusals
BASE = ["model.width=8", "dynamics.integrator=adaptive"]


def test_a_valid_adaptive_config_loads():
    dyn = config.load({}, BASE + ["dynamics.rtol=1e-10", "dynamics.solver=dopri8"]).dynamics
    assert (dyn.integrator, dyn.rtol, dyn.solver) == ("adaptive", 1e-10, "dopri8")


@pytest.mark.parametrize(
    "overrides,needles",
    [
        (["dynamics.rtol=0"], ["`dynamics.rtol`"]),
        (["dynamics.atol=-1"], ["`dynamics.atol`"]),
        (["dynamics.rtol=.inf"], ["`dynamics.rtol`"]),
        (["dynamics.rtol=.nan"], ["`dynamics.rtol`"]),
        (["dynamics.rtol=1e-16"], ["`dynamics.rtol`", "round-off"]),
        (["dtype=float32", "dynamics.rtol=1e-7"], ["`dynamics.rtol`", "float32"]),
        (["dynamics.solver=rk4"], ["`dynamics.solver`", "tsit5"]),
        (["dynamics.max_steps=0"], ["`dynamics.max_steps`"]),
        (["dynamics.langevin.beta=10"], ["`dynamics.langevin`", "adaptive"]),
        (["dynamics.birth_death.rate=1"], ["`dynamics.birth_death`", "adaptive"]),
        (["dynamics.domain.kind=ball"], ["`dynamics.domain`", "adaptive"]),
        (
            ["dynamics.kind=sgd", "dynamics.batch_size=8"],
            ["`dynamics.kind: sgd`", "`dynamics.batch_size`"],
        ),
    ],
)
def test_config_refusals(overrides, needles):
    with pytest.raises(ConfigError) as err:
        config.load({}, BASE + overrides)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


@pytest.mark.parametrize(
    "option", ["dynamics.rtol=1e-8", "dynamics.atol=1e-8", "dynamics.solver=dopri5"]
)
def test_adaptive_options_refused_without_adaptive(option):
    with pytest.raises(ConfigError, match="option of `dynamics.integrator: adaptive`"):
        config.load({}, ["model.width=8", "dynamics.integrator=heun", option])


def test_monte_carlo_population_refused():
    raw = {
        "model": {"width": 8, "bias": False},
        "data": {
            "population": {"inputs": "gaussian", "dim": 2, "method": "monte_carlo"},
            "teacher": {"w": [[1.0, 0.0]], "alpha": [1.0]},
        },
        "dynamics": {"integrator": "adaptive"},
    }
    with pytest.raises(ConfigError, match="`data.population.method: monte_carlo`"):
        config.load(raw)
    raw["data"]["population"]["method"] = "closed_form"
    assert config.load(raw).dynamics.integrator == "adaptive"  # the control loads


def test_integrator_check_refuses_what_has_no_ode(key, make_problem):
    data, theta = make_problem(key)
    flow = _tanh_flow(data)
    Adaptive().check(flow)  # the control: a full-batch gradient flow is an ODE
    cases = [
        (Langevin(flow, Temperature(2.0)), "noise"),
        (BirthDeath(flow, 1.0), "birth-death"),
        (GradientFlow(flow.model, flow.objective, Minibatch(data, 4)), "`dynamics.batch_size`"),
        (GradientFlow(flow.model, flow.objective, FullBatch(data), Ball(2.0)), "dynamics.domain"),
    ]
    for dynamics, needle in cases:
        with pytest.raises(ConfigError, match=needle):
            Adaptive().check(dynamics)
    with pytest.raises(ConfigError, match="`dynamics.kind: sgd`"):
        Adaptive().check(cases[2][0])
    with pytest.raises(ConfigError, match="Did you mean `tsit5`"):
        Adaptive(solver="tsit")
    with pytest.raises(ConfigError, match="`dynamics.atol`"):
        Adaptive(atol=float("nan"))


@pytest.mark.slow  # the in-run test (default tier) covers the path
def test_max_steps_exceeded_is_an_error_naming_the_field(key, make_problem):
    data, theta = make_problem(key)
    flow = _tanh_flow(data)
    with pytest.raises(eqx.EquinoxRuntimeError, match="`dynamics.max_steps` = 3"):
        adaptive_solve(flow, theta, 5.0, rtol=1e-10, atol=1e-12, max_steps=3)


def test_max_steps_exceeded_in_a_run_is_a_user_error(key, make_problem):
    """Inside `simulate` the compiled check becomes an `IntegrationError` (exit 2 from the
    CLI, the message naming the field), not an internal error."""
    from mfnn import simulate
    from mfnn.errors import IntegrationError

    data, theta = make_problem(key)
    flow = _tanh_flow(data)
    integ = Adaptive(rtol=1e-10, atol=1e-12, max_steps=3)
    with pytest.raises(IntegrationError, match="`dynamics.max_steps` = 3") as info:
        simulate(flow, integ, theta, dt=5.0, steps=2, key=key)
    assert "after step 0" in str(info.value) and "\n" not in str(info.value)
