"""Recorder W2 metrics (`record.w2`): identities against the W2 tools, known answers, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import config, rundir, runs
from mfnn.build import build
from mfnn.diagnostics.transport import w2_exact, w2_sliced
from mfnn.errors import ConfigError
from mfnn.measure import load_particles
from mfnn.models import TwoLayer
from mfnn.recorder import W2Monitor
from mfnn.targets import Teacher, teacher_measure

TEACHER = {
    "target": "teacher",
    "teacher": {
        "w": [[1.5, 0.0], [0.0, -1.0]],
        "alpha": [0.4, 0.6],
        "a": [2.0, -1.0],
        "b": [0.3, -0.2],
        "activation": "tanh",
    },
    "inputs": {"law": "gaussian", "dim": 2},
    "n_train": 64,
    "n_test": 0,
}


def teacher_cfg(*overrides, w2=None, **record):
    raw = {
        "seed": 3,
        "model": {"width": 30, "activation": "tanh", "bias": True, "train_output": True},
        "data": TEACHER,
        "dynamics": {"kind": "gradient_flow", "dt": 0.1, "steps": 40},
        "record": {"every": 10, "snapshot_every": 10, **record},
    }
    if w2 is not None:
        raw["record"]["w2"] = w2
    return config.load(raw, list(overrides))


def test_teacher_measure_layout_and_function():
    """rho*'s atoms in the student layout give the teacher's function as a mean-field net."""
    cfg = teacher_cfg()
    built = build(cfg)
    atoms, alpha = teacher_measure(Teacher(**_teacher_args()), built.model)
    np.testing.assert_allclose(atoms, [[2.0, 1.5, 0.0, 0.3], [-1.0, 0.0, -1.0, -0.2]])
    # int a tanh(w.x + b) d rho* = the teacher: f with the atoms repeated in the ratio alpha
    reps = np.repeat(np.asarray(atoms), [4, 6], axis=0)  # alpha = (0.4, 0.6)
    x = built.train.x
    np.testing.assert_allclose(built.model.predict(jnp.asarray(reps), x), built.train.y, atol=1e-13)


def _teacher_args():
    t = TEACHER["teacher"]
    return {"w": t["w"], "alpha": t["alpha"], "a": t["a"], "b": t["b"], "activation": "tanh"}


def test_w2_metrics_equal_w2_exact_on_the_snapshots(tmp_path):
    """w2_initial / w2_teacher recorded in the loop == w2_exact on the written snapshots,
    and W2(mu_t, mu_0) <= the synchronous coupling sqrt(mean_j |theta_j(t) - theta_j(0)|^2)."""
    cfg = teacher_cfg(w2={"initial": True, "teacher": True})
    _, built, _ = runs.execute(cfg, tmp_path, progress=False, make_figures=False)
    m = rundir.read_metrics(tmp_path)
    snaps = rundir.list_snapshots(tmp_path)
    assert sorted(snaps) == m["step"].tolist() == [0, 10, 20, 30, 40]
    theta0 = np.asarray(load_particles(snaps[0], built.model))
    atoms, alpha = built.recorder.w2.teacher
    assert m["w2_initial"][0] == 0.0
    for i, step in enumerate(m["step"]):
        theta = np.asarray(load_particles(snaps[step], built.model))
        assert m["w2_initial"][i] == pytest.approx(w2_exact(theta, theta0), rel=1e-10, abs=1e-14)
        coupling = np.sqrt(np.mean(np.sum((theta - theta0) ** 2, axis=1)))
        assert m["w2_initial"][i] <= coupling + 1e-12
        ref = w2_exact(theta, np.asarray(atoms), q=np.asarray(alpha))
        assert m["w2_teacher"][i] == pytest.approx(ref, rel=1e-10)
    assert m["w2_initial"][-1] > 0.05  # the measure moved


def test_w2_teacher_zero_at_rho_star_and_translation(tmp_path):
    """A student that IS rho* (atoms repeated in the ratio alpha) is stationary with zero
    loss: w2_teacher == 0 at every record. Shifting every particle by v gives |v| exactly."""
    model = TwoLayer(d=2, activation="tanh", bias=True)
    atoms, alpha = teacher_measure(Teacher(**_teacher_args()), model)
    reps = np.repeat(np.asarray(atoms), [2, 3], axis=0)
    path = tmp_path / "rho_star.npz"
    np.savez(path, a=reps[:, 0], w=reps[:, 1:3], b=reps[:, 3])
    cfg = teacher_cfg(
        f"model.init.path={path}",
        "model.width=5",
        w2={"teacher": True},
    )
    runs.execute(cfg, tmp_path / "run", progress=False, make_figures=False)
    m = rundir.read_metrics(tmp_path / "run")
    assert np.max(m["loss"]) < 1e-28
    np.testing.assert_allclose(m["w2_teacher"], 0.0, atol=1e-12)
    # the monitor itself: a translation of rho* by v is at W2 distance |v|
    v = jnp.array([0.3, -0.4, 0.0, 1.2])  # |v| = 1.3
    key = jax.random.key(0)
    for method in ("exact", "sliced"):
        mon = W2Monitor(teacher=(atoms, alpha), method=method, projections=64)
        got = float(mon(jnp.asarray(reps) + v, jnp.asarray(reps), 0.0, key)["w2_teacher"])
        # sliced: a translation projects to |theta . v|, so SW2 = |v| / sqrt(D) exactly
        expected = 1.3 if method == "exact" else 1.3 / 2.0
        assert got == pytest.approx(expected, rel=1e-10 if method == "exact" else 0.05)


@pytest.mark.slow  # four runs, ~20 s
def test_w2_reference_same_run_is_zero_and_other_dt_matches_by_time(tmp_path):
    """A run compared with its own twin has w2_reference == 0 at every snapshot time and
    NaN where the reference has no snapshot; a reference stepped with dt / 2 is matched by
    time, and equals the exact W2 between the two clouds there."""
    ref = tmp_path / "ref"
    runs.execute(teacher_cfg("record.snapshot_every=20"), ref, progress=False, make_figures=False)
    cfg = teacher_cfg(w2={"reference": str(ref)})
    runs.execute(cfg, tmp_path / "twin", progress=False, make_figures=False)
    m = rundir.read_metrics(tmp_path / "twin")
    at = {int(s): float(v) for s, v in zip(m["step"], m["w2_reference"], strict=True)}
    assert at[0] == at[20] == at[40] == 0.0
    assert np.isnan(at[10]) and np.isnan(at[30])

    fine = tmp_path / "fine"  # the same flow with dt / 2, snapshots at the same times
    runs.execute(
        teacher_cfg(
            "dynamics.dt=0.05", "dynamics.steps=80", "record.every=20", "record.snapshot_every=20"
        ),
        fine,
        progress=False,
        make_figures=False,
    )
    runs.execute(teacher_cfg(w2={"reference": str(fine)}), tmp_path / "cmp", progress=False)
    m = rundir.read_metrics(tmp_path / "cmp")
    built = build(cfg)
    snaps_fine, snaps_cmp = rundir.list_snapshots(fine), rundir.list_snapshots(tmp_path / "cmp")
    assert np.all(np.isfinite(m["w2_reference"]))
    for i, step in enumerate(m["step"]):
        a = np.asarray(load_particles(snaps_cmp[step], built.model))
        b = np.asarray(load_particles(snaps_fine[2 * step], built.model))
        assert m["w2_reference"][i] == pytest.approx(w2_exact(a, b), rel=1e-10, abs=1e-14)
    assert (tmp_path / "cmp" / "figures" / "w2.png").stat().st_size > 1000
    # Euler with dt and dt / 2: the two flows differ by O(dt) and agree at t = 0
    assert m["w2_reference"][0] == 0.0 and 0 < m["w2_reference"][-1] < 0.05


@pytest.mark.slow  # two runs
def test_sliced_records_a_lower_bound(tmp_path):
    """record.w2.method: sliced records SW2 <= W2, and not a degenerate bound."""
    cfg = teacher_cfg(w2={"initial": True, "teacher": True, "method": "sliced"})
    runs.execute(cfg, tmp_path / "s", progress=False, make_figures=False)
    cfg = teacher_cfg(w2={"initial": True, "teacher": True})
    runs.execute(cfg, tmp_path / "e", progress=False, make_figures=False)
    s, e = rundir.read_metrics(tmp_path / "s"), rundir.read_metrics(tmp_path / "e")
    for name in ("w2_initial", "w2_teacher"):
        assert np.all(s[name] <= e[name] + 1e-12)
        assert np.all(s[name][1:] > 0.2 * e[name][1:])  # not degenerate


def test_sliced_monitor_is_exact_in_one_dimension():
    """With D = 1 every projection is the line itself: the sliced monitor is W2."""
    x = jax.random.normal(jax.random.key(1), (50, 1))
    y = 2.0 * jax.random.normal(jax.random.key(2), (40, 1)) + 1.0
    mon = W2Monitor(method="sliced", projections=3)
    got = float(mon.distance(x, y, None, jax.random.key(3)))
    assert got == pytest.approx(w2_exact(np.asarray(x), np.asarray(y)), rel=1e-10)
    assert got == pytest.approx(float(w2_sliced(x, y, jax.random.key(3), 3)), rel=1e-12)


@pytest.mark.slow  # a float32 run
def test_w2_float32_path(tmp_path):
    """float32 runs (the fast path) record W2 in float32, within float32 round-off of the
    float64 W2 of the same particles."""
    w2 = {"initial": True, "teacher": True, "method": "exact"}
    _, built, _ = runs.execute(
        teacher_cfg("dtype=float32", w2=w2), tmp_path, progress=False, make_figures=False
    )
    m = rundir.read_metrics(tmp_path)
    atoms, alpha = (np.asarray(a, np.float64) for a in built.recorder.w2.teacher)
    q = alpha / alpha.sum()  # float32 weights sum to 1 +- 3e-8
    snaps = rundir.list_snapshots(tmp_path)
    for i, step in enumerate(m["step"]):
        theta = np.asarray(load_particles(snaps[step], built.model), np.float64)
        assert m["w2_teacher"][i] == pytest.approx(w2_exact(theta, atoms, q=q), rel=1e-5)


def test_w2_monitor_under_vmap():
    """A batch of runs (vmap over particles) gets one W2 per member: the host callback is
    called member by member."""
    mon = W2Monitor(initial=True)
    x = jax.random.normal(jax.random.key(0), (3, 20, 2))
    x0 = jax.random.normal(jax.random.key(1), (3, 20, 2))
    got = jax.vmap(lambda a, b: mon(a, b, 0.0, jax.random.key(0))["w2_initial"])(x, x0)
    expected = [w2_exact(np.asarray(x[i]), np.asarray(x0[i])) for i in range(3)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("overrides", "w2", "match"),
    [
        (["data.target=sign"], {"teacher": True}, r"record\.w2\.teacher.*needs a teacher"),
        (["model.scaling=ntk"], {"teacher": True}, r"mean_field.*'ntk'"),
        (["model.activation=relu"], {"teacher": True}, r"data\.teacher\.activation"),
        ([], {"reference": "/nonexistent/run"}, r"record\.w2\.reference.*run directory"),
        (["model.width=6000"], {"initial": True}, r"record\.w2\.method: exact.*sliced"),
        ([], {"initial": True, "method": "sinkhorn"}, r"record\.w2\.method"),
        ([], {"initial": True, "projections": 0}, r"record\.w2\.projections"),
    ],
)
def test_w2_bad_input_names_the_field(overrides, w2, match):
    with pytest.raises(ConfigError, match=match):
        build(teacher_cfg(*overrides, w2=w2))


@pytest.mark.slow  # a run, then its snapshots deleted
def test_w2_reference_without_snapshots(tmp_path):
    ref = tmp_path / "ref"
    runs.execute(teacher_cfg(), ref, progress=False, make_figures=False)
    for p in rundir.list_snapshots(ref).values():
        p.unlink()
    with pytest.raises(ConfigError, match=r"record\.w2\.reference.*no snapshots"):
        build(teacher_cfg(w2={"reference": str(ref)}))


def test_teacher_measure_needs_the_students_blocks():
    wrong = TwoLayer(d=2, activation="tanh", bias=False)
    with pytest.raises(ConfigError, match=r"data\.teacher\.b"):
        teacher_measure(Teacher(**_teacher_args()), wrong)
    no_a = TwoLayer(d=2, activation="tanh", bias=True, train_output=False)
    with pytest.raises(ConfigError, match=r"data\.teacher\.a"):
        teacher_measure(Teacher(**_teacher_args()), no_a)
