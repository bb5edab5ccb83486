"""The divergence guard: its rule, the stable step size it advises, and what a run keeps."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import DataSet, EmpiricalRisk, Euler, FullBatch, GradientFlow, Recorder, TwoLayer
from mfnn.errors import ConfigError
from mfnn.guard import Guard, lipschitz, stable_dt
from mfnn.simulate import BatchDiverged, simulate, simulate_batch


def flow_of(activation="relu", trainable=None, n=16, seed=0):
    x = jax.random.normal(jax.random.key(seed), (n, 1))
    data = DataSet(x, jnp.sign(x[:, 0]))
    net = TwoLayer(d=1, activation=activation, trainable=trainable)
    return GradientFlow(net, EmpiricalRisk(data), FullBatch(data))


def test_rule_each_quantity_and_its_bound():
    g = Guard()
    loss_b, theta_b = g.bounds(0.3, np.array([[0.5, -2.0]]))
    assert loss_b == 1e6 and theta_b == 2e6  # floors of 1, then the largest |theta_0|
    ok = {"loss": np.array([0.3, 1e6]), "energy": np.array([0.3, 1e6])}
    assert g.first_violation(ok, np.array([1.0, 2e6]), loss_b, theta_b) is None  # at the bound
    over = {"loss": np.array([0.3, 0.2, 1.0000001e6])}
    assert g.first_violation(over, np.ones(3), loss_b, theta_b)[:2] == (2, "loss")
    nan = {"loss": np.array([0.3, 0.2]), "energy": np.array([0.3, np.nan])}
    assert g.first_violation(nan, np.ones(2), loss_b, theta_b)[:2] == (1, "energy")
    peaks = np.array([1.0, 2.1e6, np.inf])
    assert g.first_violation({"loss": np.zeros(3)}, peaks, loss_b, theta_b)[:2] == (
        1,
        "max |theta|",
    )
    assert Guard(theta_limit=10.0).bounds(0.0, np.zeros((1, 2)))[1] == 10.0


@pytest.mark.parametrize(
    "kwargs",
    [{"loss_growth": 1.0}, {"theta_growth": float("inf")}, {"theta_limit": -1.0},
     {"theta_limit": float("nan")}, {"loss_growth": "big"}],
)  # fmt: skip
def test_bad_guard_is_refused_naming_the_field(kwargs):
    with pytest.raises(ConfigError, match=f"`guard.{next(iter(kwargs))}`"):
        Guard(**kwargs)


def test_lipschitz_is_the_spectral_norm_of_the_velocity_jacobian(key):
    """Power iteration on Jacobian-vector products against the dense Jacobian's 2-norm."""
    flow = flow_of("tanh")
    theta = jax.random.normal(key, (6, 3))

    def v(x):
        return flow.full_velocity(x.reshape(theta.shape))[0].ravel()

    dense = np.linalg.norm(np.asarray(jax.jacfwd(v)(theta.ravel())), 2)
    assert lipschitz(flow, theta, key, iterations=300) == pytest.approx(dense, rel=1e-6)


def test_stable_dt_is_the_euler_threshold_on_a_quadratic_energy(key):
    """Training the output weights only, E is quadratic in theta, v is affine and
    explicit Euler is stable exactly for dt < 2/L: just below the estimate the particles
    stay bounded, just above they grow geometrically."""
    flow = flow_of("tanh", trainable=("a",))
    theta = jax.random.normal(key, (8, 3))
    est = stable_dt(flow, [theta], key)
    assert est is not None

    def peak(dt):
        traj = simulate(flow, Euler(), theta, dt=dt, steps=2000, key=key, guard=None,
                        recorder=Recorder(every=2000))  # fmt: skip
        return float(np.max(np.abs(traj.final)))

    assert peak(0.98 * est) < 1e3  # converges (to the least-squares output weights)
    assert peak(1.02 * est) > 1e20  # grows by a fixed factor a step


@pytest.mark.parametrize("activation, dt", [("relu", 100.0), ("tanh", 40.0)])
def test_huge_finite_blow_up_ends_the_run_diverged(key, activation, dt):
    flow = flow_of(activation)
    theta = jax.random.normal(key, (32, 3))
    rec = Recorder(every=5)
    traj = simulate(flow, Euler(), theta, dt=dt, steps=200, key=key, recorder=rec)
    assert traj.status == "diverged"
    d = traj.divergence
    assert d["step"] > d["kept_step"] == traj.state.step == traj.steps[-1]
    assert d["quantity"] in ("loss", "max |theta|", "energy", "dissipation")
    assert f"diverged at step {d['step']}" in traj.message and "dynamics.dt" in traj.message
    assert d["stable_dt"] is not None and d["stable_dt"] < dt
    assert np.all(np.isfinite(traj["loss"]))
    # the kept state is the one an uninterrupted run reaches at that step, bit for bit
    if d["kept_step"] > 0:
        again = simulate(flow, Euler(), theta, dt=dt, steps=d["kept_step"], key=key,
                         recorder=rec, guard=None)  # fmt: skip
        np.testing.assert_array_equal(traj.final, again.final)
    # negative control: without the guard the same run "completes" with absurd numbers
    blind = simulate(flow, Euler(), theta, dt=dt, steps=200, key=key, recorder=rec, guard=None)
    assert blind.status == "completed" or "NaN/inf" in blind.message
    assert not np.all(np.abs(blind.final) < 1e6) or blind.status == "diverged"


def test_a_stable_run_is_not_flagged(key):
    traj = simulate(flow_of("relu"), Euler(), jax.random.normal(key, (32, 3)), dt=0.1,
                    steps=100, key=key)  # fmt: skip
    assert traj.status == "completed" and traj.divergence is None


def test_a_batch_with_a_blown_up_member_stops(key):
    """A member whose particles lie beyond an absolute bound (one saturated tanh unit with
    w = 2e4: its w barely moves) is named alone; the other member, the same flow from a
    normal start, stays. Negative control: the batch without it runs to the end."""
    flows = [flow_of("tanh", seed=s) for s in (0, 1)]
    small = jax.random.normal(key, (16, 3))
    big = small.at[0, 1].set(2e4)  # column 1 is w (layout a, w, b)
    guard = Guard(theta_limit=1e4)
    with pytest.raises(BatchDiverged) as info:
        simulate_batch(flows, Euler(), [small, big], dt=0.5, steps=100,
                       key=[key, key], guard=guard)  # fmt: skip
    assert info.value.members == [1]
    trajs = simulate_batch(flows, Euler(), [small, small], dt=0.5, steps=100,
                           key=[key, key], guard=guard)  # fmt: skip
    assert [t.status for t in trajs] == ["completed", "completed"]


@pytest.mark.parametrize("activation, dt", [("relu", 100.0), ("tanh", 5.0)])
def test_cli_divergence_exits_1_and_keeps_every_row_once(tmp_path, activation, dt):
    """The issue's cases through `mfnn run`: exit 1, status diverged with the step, the
    rule and a step size, rows and snapshots up to the kept step, each once."""
    import json

    import yaml
    from typer.testing import CliRunner

    from mfnn import rundir
    from mfnn.cli import app

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"width": 32, "activation": activation},
        "data": {"n_train": 64, "n_test": 16},
        "dynamics": {"dt": dt, "steps": 400},
        "record": {"every": 10, "snapshot_every": 20},
    }))  # fmt: skip
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(out), "--no-progress"])
    assert res.exit_code == 1, res.output
    s = json.loads((out / "summary.json").read_text())
    d = s["divergence"]
    assert s["status"] == "diverged" and "`dynamics.dt` <=" in s["message"]
    assert "diverged" in res.output
    m = rundir.read_metrics(out)
    steps = list(m["step"])
    assert steps == list(range(0, d["kept_step"] + 1, 10))  # every record once, none after
    snaps = sorted(rundir.list_snapshots(out))
    assert snaps[-1] == d["kept_step"] and (out / d["kept_file"]).is_file()
    assert all(k % 20 == 0 for k in snaps[:-1]) and len(set(snaps)) == len(snaps)
    assert d["stable_dt"] < dt and s["final_step"] == d["kept_step"]


def test_guard_from_the_config(tmp_path):
    """`guard.theta_limit` tightens the rule: a stable run whose particles grow past it
    ends diverged; the config refuses a growth factor <= 1."""
    from mfnn import config, runs

    base = ["model.width=8", "data.n_train=16", "data.n_test=8", "dynamics.steps=200"]
    _, built, s = runs.execute(config.load({}, base), tmp_path / "free", progress=False)
    assert s["status"] == "completed" and built.guard == Guard()
    snaps = (tmp_path / "free" / "snapshots").glob("*.npz")
    peak = max(float(np.max(np.abs(np.load(p)[k]))) for p in snaps for k in ("a", "w", "b"))
    cfg = config.load({}, base + [f"guard.theta_limit={peak * 0.999}"])
    _, _, s = runs.execute(cfg, tmp_path / "tight", progress=False)
    assert s["status"] == "diverged" and s["divergence"]["quantity"] == "max |theta|"
    with pytest.raises(ConfigError, match="guard.loss_growth"):
        config.load({}, ["guard.loss_growth=1"])


def test_run_files_get_the_ordinary_file_mode(tmp_path):
    from mfnn.rundir import write_json

    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "s.json", {"a": 1})
        (tmp_path / "plain").write_text("x")
    finally:
        os.umask(mask)
    assert (tmp_path / "s.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "plain").stat().st_mode & 0o777 == 0o644
