"""`resnet_depth_limit`: the depth-coupled particle paths, the Euler network's O(1/L) rate
against a wrong (uncoupled) model, the stacked coupling layout and its velocities, checks
that fail on doctored statistics, bad params refused with the field named (default tier);
the quick run, its shared initial points, reuse, the ODE reference, a run too short and a
width reference too small (slow)."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.build import build, enable_dtype
from mfnn.experiments.resnet_depth_limit import (
    RESNET_DEPTH_LIMIT,
    couple,
    l2,
    path_layers,
    twins,
)
from mfnn.models import WideResNet
from mfnn.stats import loglog_fit
from mfnn.study import Study

E = RESNET_DEPTH_LIMIT


def run(tmp_path, *overrides, resume=False):
    cfg = config.load(E.default_config(), list(E.quick) + list(overrides))
    return E.run(cfg, tmp_path, resume=resume, progress=False)


def _study(tmp_path, *overrides):
    cfg = config.load(E.default_config(), list(overrides))
    return Study(E, cfg, E.validate_params(cfg), tmp_path, progress=False)


# ------------------------------------------------------------ the depth-coupled paths


def test_paths_are_one_family_sampled_at_left_points_and_midpoints():
    cfg = config.load(E.default_config())
    enable_dtype("float64")
    left4, left8 = (path_layers(cfg, 16, L, 0.0) for L in (4, 8))
    mid4 = path_layers(cfg, 16, 4, 0.5)
    assert left4.shape == (4, 16, 2, 2) and mid4.shape == (4, 16, 2, 2)
    np.testing.assert_array_equal(left8[::2], left4)  # eps = l / 4 = 2 l / 8
    np.testing.assert_allclose(left8[1::2], mid4, rtol=0, atol=1e-15)  # (l + 1/2) / 4
    # every depth has the law of model.init.w: A cos + B sin of i.i.d. N(0, 1) entries
    many = path_layers(cfg, 4096, 3, 0.25)
    assert np.all(np.abs(many.std(axis=(1, 2, 3)) - 1.0) < 0.03)
    assert np.all(np.abs(many.mean(axis=(1, 2, 3))) < 0.03)


def _gaps(layers_of, depths, x, reference):
    """||f_L - reference|| on x for the Euler networks built from ``layers_of(L)``."""
    out = []
    for L in depths:
        net = WideResNet(2, L, "tanh")
        theta = jnp.asarray(layers_of(L).reshape(-1, 4))
        out.append(l2(np.asarray(net.predict(theta, x)), reference))
    return out


def test_euler_network_converges_at_one_over_L_and_an_uncoupled_one_does_not(tmp_path):
    """The mathematics of (a) at t = 0, checked by the experiment's own rule: the Euler
    networks of one smooth path family approach the continuous-depth limit (here the
    Richardson value of L = 256, 512) at slope -1; drawing every layer independently (no
    depth-coupled family: a wrong model) still converges, by the law of large numbers in
    depth, but at L^(-1/2), and `depth_slope` fails."""
    cfg = config.load(E.default_config())
    enable_dtype("float64")
    x = jax.random.normal(jax.random.key(7), (64, 2), jnp.float64)
    depths = (4, 8, 16, 32)

    def paths(L):
        return path_layers(cfg, 8, L, 0.0)

    hi, lo = (
        WideResNet(2, L, "tanh").predict(jnp.asarray(paths(L).reshape(-1, 4)), x)
        for L in (512, 256)
    )
    reference = 2.0 * np.asarray(hi) - np.asarray(lo)
    smooth = loglog_fit(depths, _gaps(paths, depths, x, reference)).slope

    def iid(L, draw=0):  # a fresh N(0, 1) matrix for every unit of every layer
        key = jax.random.fold_in(jax.random.key(11 + draw), L)
        return np.asarray(jax.random.normal(key, (L, 8, 2, 2), jnp.float64))

    # E tanh(theta z) = 0 for theta -> -theta symmetric: the uncoupled limit is f = x
    rms = np.sqrt(
        np.mean(
            [
                np.square(_gaps(lambda L, r=r: iid(L, r), depths, x, np.asarray(x)))
                for r in range(8)
            ],
            axis=0,
        )
    )
    uncoupled = loglog_fit(depths, rms).slope
    assert abs(smooth + 1.0) < 0.05 and abs(uncoupled + 0.5) < 0.15, (smooth, uncoupled)
    study = _study(tmp_path)
    for slope, passes in ((smooth, True), (uncoupled, False)):
        checks = E.evaluate(study, _stats(depth_slope=slope))
        assert checks["depth_slope_t0"]["passed"] is passes


# -------------------------------------------------------------- the stacked coupling


def _small_config():
    return config.load(
        {
            "seed": 3,
            "dtype": "float64",
            "model": {"kind": "wide_resnet", "depth": 2, "width": 8, "activation": "tanh"},
            "data": {
                "target": "teacher",
                "inputs": {"law": "gaussian", "dim": 2},
                "teacher": {"width": 2, "std": 1.0, "depth": 2},
                "n_train": 16,
                "n_test": 8,
            },
            "dynamics": {"dt": 0.1, "steps": 2},
            "record": {"every": 1},
        }
    )


def test_twins_group_the_reference_units_by_replica():
    L, M, n, D = 3, 8, 2, 4
    ref = np.arange(L * M * D, dtype=float).reshape(L * M, D)  # row l M + i
    tw = twins(ref, L, n)
    assert tw.shape == (M // n, L * n, D)
    for r in range(M // n):
        for lay in range(L):
            for j in range(n):
                np.testing.assert_array_equal(tw[r, lay * n + j], ref[lay * M + r * n + j])
    # every reference unit is the twin of exactly one student unit
    assert sorted(tw.reshape(-1, D)[:, 0].tolist()) == ref[:, 0].tolist()


def test_stacked_replicas_move_like_separate_wide_resnets():
    """The `Stack` of the reference and `Replicas` works on the wide-ResNet's layer-major
    rows: the students start on their twins and each replica's velocity is that of an
    N-unit wide-ResNet alone (velocity -L N dE/dtheta of its own measure); the reference
    part moves as the plain M-unit flow."""
    built = couple(build(_small_config()), widths=(2, 4))
    L, M, D = 2, 8, 4
    theta0 = np.asarray(built.theta0)
    assert theta0.shape == (3 * L * M, D)
    ref = theta0[: L * M]
    for i, n in enumerate((2, 4), start=1):
        students = theta0[i * L * M : (i + 1) * L * M].reshape(M // n, L * n, D)
        np.testing.assert_array_equal(students, twins(ref, L, n))
    v, _ = built.dynamics.full_velocity(jnp.asarray(theta0))
    v = np.asarray(v)
    flow = built.dynamics.parts[0]
    v_ref, _ = flow.full_velocity(jnp.asarray(ref))
    np.testing.assert_allclose(v[: L * M], v_ref, rtol=1e-12, atol=1e-14)
    students = theta0[L * M : 2 * L * M].reshape(4, L * 2, D)
    for r in range(4):
        alone, _ = flow.full_velocity(jnp.asarray(students[r]))
        got = v[L * M : 2 * L * M].reshape(4, L * 2, D)[r]
        np.testing.assert_allclose(got, alone, rtol=1e-12, atol=1e-14)
    # a student's velocity differs from its twin's (its own N-unit field), not its rows'
    assert not np.allclose(v[L * M : 2 * L * M].reshape(4, 4, D), twins(v[: L * M], L, 2))


# ----------------------------------------------------------------------- the checks


def _stats(
    depth_slope=-1.0,
    depth_share=0.05,
    loss_ratio=0.3,
    coupling=-1.0,
    function=-0.5,
    width_share=0.05,
    unpaired=0.0,
):
    """Statistics as `analyze` returns them (time keys as in the summary), doctored."""
    ts = ["2", "4", "8"]
    return {
        "depth": {
            "slope": {"0": depth_slope, "8": depth_slope},
            "reference_share": {"0": depth_share, "8": depth_share},
            "loss_ratio": loss_ratio,
        },
        "width": {
            "slopes": {
                "coupling": dict.fromkeys(ts, coupling),
                "function": dict.fromkeys(["0", *ts], function),
                "unpaired": dict.fromkeys(["0", *ts], unpaired),
            },
            "reference_share": dict.fromkeys(ts, width_share),
        },
    }


@pytest.mark.parametrize(
    ("doctored", "failing"),
    [
        ({}, None),
        ({"depth_slope": -0.75}, "depth_slope_t"),
        ({"depth_slope": -0.5}, "depth_slope_t"),  # layers drawn independently
        ({"depth_slope": -1.25}, "depth_slope_t"),
        ({"depth_slope": -2.0}, "depth_slope_t"),  # a second-order scheme is not this claim
        ({"depth_slope": math.nan}, "depth_slope_t"),
        ({"depth_share": 0.5}, "depth_reference_t"),  # a reference too coarse
        ({"loss_ratio": 0.9}, "depth_training"),  # barely trained
        ({"coupling": -0.8}, "width_coupling_slope_t"),
        ({"coupling": -1.2}, "width_coupling_slope_t"),
        ({"coupling": math.nan}, "width_coupling_slope_t"),
        ({"function": -0.3}, "width_function_slope_t"),
        ({"function": -1.0}, "width_function_slope_t"),
        ({"width_share": 0.5}, "width_reference_t"),  # a width reference too small
        ({"unpaired": -1.0}, "width_unpaired_slope_t"),  # "unpaired" were the twins
    ],
)
def test_checks_fail_on_doctored_statistics(tmp_path, doctored, failing):
    checks = E.evaluate(_study(tmp_path), _stats(**doctored))
    assert len(checks) == 2 * 2 + 1 + 3 * 4
    failed = {k for k, v in checks.items() if not v["passed"]}
    if failing is None:
        assert not failed
    else:
        assert failed and all(k.startswith(failing) for k in failed), failed


def test_a_width_run_that_misses_a_statistic_time_fails(tmp_path):
    stats = _stats()
    stats["width"] = {"missing_times": [8.0], "message": "NaN/inf"}
    checks = E.evaluate(_study(tmp_path), stats)
    assert checks["width_run_completed"]["passed"] is False
    assert "NaN/inf" in checks["width_run_completed"]["expected"]
    assert not any(k.startswith("width_coupling") for k in checks)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.depths=[4, 8]", "experiment.params.depths"),
        ("experiment.params.depths=[8, 4, 16]", "experiment.params.depths"),
        ("experiment.params.depths=[4, 8, 32]", "experiment.params.depths"),  # no doubling
        ("experiment.params.reference_depth=16", "experiment.params.reference_depth"),
        ("experiment.params.reference=exact", "experiment.params.reference"),
        ("experiment.params.widths=[8, 16]", "experiment.params.widths"),
        ("experiment.params.widths=[8, 24, 32]", "model.width"),  # 2048 % 24 != 0
        ("model.width=48", "model.width"),  # < 2 * N_max
        ("experiment.params.times=[2.1]", "experiment.params.times"),
        ("experiment.params.times=[40.0]", "experiment.params.times"),
        ("experiment.params.slope_tolerance=0", "experiment.params.slope_tolerance"),
        ("experiment.params.pairing_margin=0.5", "experiment.params.pairing_margin"),
        ("experiment.params.units=0", "experiment.params.units"),
        ("experiment.params.depth_step=2", "experiment.params"),
        ("model.kind=ensemble_resnet", "model.kind"),
        ("model.solver=tsit5", "model.solver"),
        ("dynamics.kind=sgd", "dynamics.kind"),
        ("data.target=sign", "data.target"),
        ("data.n_test=0", "data.n_test"),
        ("record.every=3", "record.every"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    extra = ["dynamics.batch_size=8"] if override.startswith("dynamics.kind") else []
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override, *extra)
    assert not (tmp_path / "runs").exists()  # refused before any compute


def test_default_config_is_the_documented_one():
    cfg = config.load(E.default_config())
    p = E.validate_params(cfg)
    assert p.depths == (4, 8, 16, 32, 64) and p.reference == "ode"
    assert p.widths == (8, 16, 32, 64, 128) and p.depth_tolerance == 0.2
    assert p.slope_tolerance == 0.15 and cfg.model.width == 4096 and cfg.model.depth == 4
    text = E.describe()
    for name in ("depth_slope_t*", "width_coupling_slope_t*", "*/energy_identity"):
        assert name in text


# ------------------------------------------------------------------ slow: runs


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("resnet_depth_limit_quick")
    return out, run(out)


@pytest.mark.slow
def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed" and s["passed"] is True
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    for name in ("depth_slope_t0", "depth_slope_t4", "depth_reference_t4", "depth_training"):
        assert name in s["checks"]
    for kind in ("coupling_slope", "function_slope", "reference", "unpaired_slope"):
        assert f"width_{kind}_t4" in s["checks"]
    assert "width/energy_identity" in s["checks"]
    a, b = s["depth"], s["width"]
    # D(L) halves with L at t = 0 and T; the reference sits far below the smallest gap
    for t, gaps in a["function_gap"].items():
        assert all(0.4 < g2 / g1 < 0.6 for g1, g2 in zip(gaps, gaps[1:], strict=False)), gaps
        assert a["reference_error"][t] < 0.1 * gaps[-1]
    assert a["function_change"] > 5 * a["function_gap"]["4"][0]  # training moved f
    # the flow norm is recorded along training by every depth and the reference
    assert set(a["flow_norm"]) == {"depth_L8", "depth_L16", "depth_L32", "reference_L64"}
    assert a["flow_norm_gap_slope"] < -0.7
    # twins start equal; unpaired units are O(1) apart at every N
    c, u = b["statistics"]["coupling"], b["statistics"]["unpaired"]
    assert c["0"] == [0.0] * 3 and min(u["4"]) > 100 * max(c["4"])
    assert all(r < 0.15 for r in b["statistics"]["coupling_rse"]["4"])
    assert b["replicas"] == [256, 128, 64]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"] and "claim" in on_disk
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000
    header = (out / "runs" / "depth_L8" / "metrics.csv").read_text().splitlines()[0]
    assert "flow_norm" in header.split(",")


@pytest.mark.slow
def test_quick_students_start_on_their_twins(quick):
    out, s = quick
    snaps = sorted((out / "runs" / "width" / "snapshots").glob("*.npz"))
    layers = np.load(snaps[0])["layers"]
    state = layers.reshape(-1, 4)
    L, M = s["width"]["L"], s["width"]["M"]
    ref = state[: L * M]
    for i, n in enumerate([8, 16, 32, M // 2], start=1):
        block = state[i * L * M : (i + 1) * L * M].reshape(M // n, L * n, 4)
        np.testing.assert_array_equal(block, twins(ref, L, n))


@pytest.mark.slow
def test_quick_is_reused(quick):
    out, s = quick
    metrics = out / "runs" / "width" / "metrics.csv"
    before = metrics.stat().st_mtime_ns
    again = run(out, resume=True)
    assert metrics.stat().st_mtime_ns == before  # reused, not recomputed
    assert again["checks"] == s["checks"]


@pytest.mark.slow
def test_the_ode_reference_agrees(tmp_path):
    # the continuous-depth ODE (tsit5, midpoints) as f_ref: the same slopes, and its error
    # against the Richardson value of the deepest networks is far below the smallest gap
    s = run(
        tmp_path,
        "experiment.params.reference=ode",
        "experiment.params.reference_depth=32",
        "experiment.params.widths=[8, 16, 32]",
    )
    assert s["passed"] is True, {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert max(s["depth"]["reference_share"].values()) < 0.1
    assert "reference/energy_identity" in s["checks"]


@pytest.mark.slow
def test_checks_fail_for_a_run_too_short(tmp_path):
    s = run(tmp_path, "dynamics.steps=1", "experiment.params.times=[0.2]", "record.every=1")
    assert s["checks"]["depth_training"]["passed"] is False and s["passed"] is False
    assert s["depth"]["loss_ratio"] > 0.5


@pytest.mark.slow
def test_checks_fail_when_the_width_reference_is_too_small(tmp_path):
    # M = 2 N_max: the reference's own error is as large as the widest coupling
    s = run(tmp_path, "model.width=64")
    assert s["checks"]["width_reference_t4"]["passed"] is False
    assert s["width"]["reference_share"]["4"] > 0.2
    assert s["passed"] is False
