"""`resnet_ensemble`: the layout of the stacked width-study run, the NumPy ResNet against the
model, the pair statistics on clouds of known dimension (a line in R^D has no curse: the
exponent check fails on it), checks that fail on doctored statistics, bad params refused
with the field named (default tier); the quick run, resume, and a run too short to reach
zero loss or stationarity (slow)."""

import json
import math
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.experiments.resnet_ensemble import (
    RESNET_ENSEMBLE,
    ResNetEnsembleParams,
    _increasing_in_d,
    branch_outputs,
    exponent_fit,
    layout,
    pair_statistics,
    teacher_paths,
)
from mfnn.models import EnsembleResNet
from mfnn.stats import loglog_fit
from mfnn.study import Study

E = RESNET_ENSEMBLE


def run(tmp_path, *overrides, resume=False):
    cfg = config.load(E.default_config(), list(E.quick) + list(overrides))
    return E.run(cfg, tmp_path, resume=resume, progress=False)


def _study(tmp_path, *overrides):
    cfg = config.load(E.default_config(), list(overrides))
    return Study(E, cfg, E.validate_params(cfg), tmp_path, progress=False)


def test_layout_covers_the_state_once():
    p = ResNetEnsembleParams(
        reference_width=64, widths=(2, 4, 8), ensemble_widths=(4, 16), particles_per_width=32
    )
    lay = layout(p)
    assert lay["replicas"] == {4: 8, 16: 2}  # max(min_replicas = 2, 32 // N)
    covered = np.zeros(lay["rows"], int)
    covered[:64] += 1
    for n, (a, b) in lay["systems"].items():
        assert b - a == lay["replicas"][n] * n
        covered[a:b] += 1
    assert np.all(covered == 1) and sum(lay["sizes"]) == lay["rows"] == 64 + 32 + 32


def test_numpy_resnet_is_the_model():
    # branch_outputs (NumPy, used by the analysis) equals EnsembleResNet.units
    rng = np.random.default_rng(0)
    for depth, d in ((3, 1), (2, 3)):
        net = EnsembleResNet(d=d, depth=depth, activation="tanh")
        theta, x = rng.standard_normal((5, net.dim)), rng.standard_normal((7, d))
        want = np.asarray(net.units(jnp.asarray(theta), jnp.asarray(x)))
        np.testing.assert_allclose(branch_outputs(theta, x, depth, d), want, rtol=0, atol=1e-13)
    # theta = 0 is the identity map
    np.testing.assert_array_equal(branch_outputs(np.zeros((2, 4)), x[:, :2], 1, 2)[:, 0], x[:, :2])


def test_teacher_is_drawn_from_the_config():
    cfg = config.load(E.default_config())
    a = teacher_paths(cfg)
    assert a.shape == (1, 3, 1, 1)  # one vanilla ResNet of the student's depth, d = 1
    np.testing.assert_array_equal(a, teacher_paths(cfg))
    cfg = config.load(E.default_config(), ["data.teacher.std=2.0", "seed=1"])
    b = teacher_paths(cfg)
    assert not np.allclose(b, 2.0 * a)


def _clouds(D, M, rng, line=False):
    if line:  # a measure of dimension 1 embedded in R^D
        return np.outer(rng.standard_normal(M), np.ones(D) / math.sqrt(D))
    return rng.standard_normal((M, D))


def test_pair_statistics_see_the_dimension_of_the_measure():
    p = ResNetEnsembleParams(
        reference_width=512, widths=(8, 32, 128), w2_pairs=256, function_pairs=32
    )
    rng = np.random.default_rng(1)
    slopes = {"gaussian": [], "line": []}
    for D in (2, 8, 27):
        for kind in slopes:
            cloud = _clouds(D, 512, rng, line=kind == "line")
            units = cloud[None, :, :2] + 0.0  # any bounded per-branch function will do
            st = pair_statistics(cloud, units, p.widths, p, rng)
            slopes[kind].append(loglog_fit(p.widths, st["W"]).slope)
            # F is one N-sample's function error over the branch spread: ~ N^(-1/2)
            assert abs(loglog_fit(p.widths, st["F"]).slope + 0.5) < 0.15
    lo, hi = p.exponent_band
    assert lo <= exponent_fit([2, 8, 27], slopes["gaussian"]) <= hi  # |s_W| falls like D^-b
    assert slopes["gaussian"][0] < slopes["gaussian"][1] < slopes["gaussian"][2] < 0
    # negative control: a line carries the same N^(-1/2) rate in every D, no curse
    assert all(abs(s + 0.5) < 0.15 for s in slopes["line"])
    assert not lo <= exponent_fit([2, 8, 27], slopes["line"]) <= hi


def test_increasing_in_d_asks_no_order_between_equal_dimensions():
    assert _increasing_in_d([2, 8, 8, 27], [1.0, 4.0, 3.5, 9.0])
    assert not _increasing_in_d([2, 8, 8, 27], [1.0, 4.0, 0.5, 9.0])
    assert not _increasing_in_d([2, 8, 27], [1.0, 1.0, 9.0])


def _stats(**doctored):
    """Statistics as `analyze` returns them (what `evaluate` reads), doctored."""
    dims = [2, 8, 27]
    across = {
        tag: {
            "D": dims,
            "w2_exponent": doctored.get("b", -0.7),
            "log10_needed_w2": doctored.get("needed", [2.0, 4.4, 10.0]),
            "function_slope": doctored.get("fs", [-0.48, -0.5, -0.52]),
            "log10_needed_function": doctored.get("fneeded", [1.2, 1.2, 1.25]),
        }
        for tag in ("0", "T")
    }
    across["T"]["trained_over_sampled"] = doctored.get("trained", [0.2, 0.3, 0.45])
    return {
        "converge": {
            "loss_ratio": doctored.get("loss", 2e-4),
            "test_loss_ratio": doctored.get("test", 2e-4),
            "dissipation_ratio": doctored.get("diss", 3e-6),
        },
        "across_shapes": across,
        "shapes": {f"s{D}": {"loss_ratio": doctored.get("ref", 0.04)} for D in dims},
    }


@pytest.mark.parametrize(
    ("doctored", "failing"),
    [
        ({}, set()),
        ({"loss": 0.05, "test": 0.05}, {"zero_loss", "zero_test_loss"}),  # a run too short
        ({"test": 0.02}, {"zero_test_loss"}),  # fits the quadrature nodes only
        ({"diss": 1e-2}, {"stationary"}),
        ({"b": 0.0}, {"w2_exponent_t0", "w2_exponent_tT"}),  # dimension-free W2
        ({"b": -1.5}, {"w2_exponent_t0", "w2_exponent_tT"}),
        ({"b": math.nan}, {"w2_exponent_t0", "w2_exponent_tT"}),
        ({"needed": [2.0, 2.5, 3.0]}, {"width_needed_grows_t0", "width_needed_grows_tT"}),
        ({"needed": [2.0, 6.0, 5.0]}, {"width_needed_grows_t0", "width_needed_grows_tT"}),
        ({"needed": [2.0, math.nan, 9.0]}, {"width_needed_grows_t0", "width_needed_grows_tT"}),
        ({"fs": [-0.5, -0.2, -0.5]}, {"function_rate_t0", "function_rate_tT"}),
        (
            {"fneeded": [1.0, 2.0, 3.5]},  # a function-level curse
            {"function_dimension_free_t0", "function_dimension_free_tT"},
        ),
        ({"trained": [0.2, 1.6, 0.3]}, {"trained_ensembles"}),
        ({"ref": 0.6}, {"references_trained"}),
    ],
)
def test_checks_fail_on_doctored_statistics(tmp_path, doctored, failing):
    checks = E.evaluate(_study(tmp_path), _stats(**doctored))
    assert len(checks) == 3 + 2 * 4 + 2
    assert {k for k, v in checks.items() if not v["passed"]} == failing
    for name in checks:
        assert E.spec(name) is not None  # every produced check is declared


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.widths=[8, 16, 2048]", "experiment.params.widths"),
        ("experiment.params.widths=[16, 8, 32]", "experiment.params.widths"),
        ("experiment.params.shapes=[[2, 1], [8, 1], [2, 2]]", "experiment.params.shapes"),
        ("experiment.params.shapes=[[2, 1], [2, 1], [4, 1], [3, 3]]", "experiment.params.shapes"),
        ("experiment.params.shapes=[[0, 1], [4, 1], [3, 3]]", "experiment.params.shapes"),
        ("experiment.params.exponent_band=[-0.5, -1.0]", "experiment.params.exponent_band"),
        ("experiment.params.ensemble_widths=[]", "experiment.params.ensemble_widths"),
        ("experiment.params.loss_ratio=0", "experiment.params.loss_ratio"),
        ("experiment.params.min_replicas=1", "experiment.params.min_replicas"),
        ("experiment.params.rate=1", "experiment.params"),
        ("model.kind=wide_resnet", "model.kind"),
        ("model.activation=relu", "model.activation"),
        ("model.init.w={law: uniform, low: -1.0, high: 1.0}", "model.init.w"),
        ("model.init.w={law: gaussian, std: 0.0}", "model.init.w"),
        ("model.init.path=x.npz", "model.init.path"),
        ("data.population=null", "data.population"),
        ("data.teacher={path: t.npz}", "data.teacher.path"),
        ("objective.l2=0.1", "objective.l2"),
        ("dynamics.kind=sgd", "dynamics.kind"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute


def test_default_config_is_the_documented_one():
    p = E.validate_params(config.load(E.default_config()))
    assert p.loss_ratio == 1e-3 and p.stationarity == 1e-4 and p.reference_width == 2048
    assert sorted({L * d * d for L, d in p.shapes}) == [2, 4, 8, 16, 27, 54]
    raw = E.default_config()
    assert raw["model"]["kind"] == "ensemble_resnet" and raw["dtype"] == "float64"
    assert raw["data"]["teacher"]["width"] == 1  # a vanilla-ResNet teacher
    text = E.describe()
    for name in ("zero_loss", "w2_exponent_t*", "width_needed_grows_t*", "*/energy_identity"):
        assert name in text


# ------------------------------------------------------------------ slow: runs


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("resnet_ensemble_quick")
    return out, run(out)


@pytest.mark.slow
def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed" and s["passed"] is True
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    assert set(s["runs"]) == {"converge", "shape_L2_d1", "shape_L2_d2", "shape_L3_d3"}
    for run_name in s["runs"]:
        assert f"{run_name}/energy_identity" in s["checks"]
    c = s["converge"]
    assert c["N"] == 256 and c["D"] == 3 and c["loss_ratio"] <= 1e-3
    assert c["sup_error_ratio"] < 0.3  # f(T) = y uniformly on the fresh inputs, not on average
    a = s["across_shapes"]
    assert a["T"]["D"] == [2, 8, 27]
    # the W2 slope flattens with D (toward -1/D), the function's stays at -1/2
    assert a["T"]["w2_slope"][0] < a["T"]["w2_slope"][1] < a["T"]["w2_slope"][2] < 0
    assert all(abs(v + 0.5) < 0.15 for v in a["0"]["function_slope"])
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"] and "claim" in on_disk
    assert sorted(s["figures"]) == ["figures/converge.png", "figures/width.png"]
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000


@pytest.mark.slow
def test_quick_stack_keeps_the_reference_and_draws_independent_ensembles(quick):
    out, s = quick
    snaps = sorted((out / "runs" / "shape_L2_d2" / "snapshots").glob("*.npz"))
    paths = np.load(snaps[0])["paths"]
    assert paths.shape == (512 + 16 * 16, 2, 2, 2)  # M, then R = 256 // 16 ensembles of 16
    ref, ens = paths[:512].reshape(512, -1), paths[512:].reshape(256, -1)
    # independent draws of the same N(0, 1) law: no shared rows, similar moments
    assert not np.isclose(ref[:, None, 0], ens[None, :, 0], rtol=0, atol=1e-15).any()
    assert abs(ref.std() - 1.0) < 0.1 and abs(ens.std() - 1.0) < 0.1


@pytest.mark.slow
def test_resume_reuses_completed_subruns(quick, resume_after_interrupt):
    out, s = quick
    again, _ = resume_after_interrupt(out, "shape_L2_d2", lambda: run(out, resume=True))
    assert again["checks"] == s["checks"]


@pytest.mark.slow
def test_a_run_too_short_fails_zero_loss_and_stationarity(quick, tmp_path):
    # the width study is reused (same configs); only the zero-loss run is redone, cut to
    # T = 8: the loss and the dissipation have not come down
    out, _ = quick
    shutil.copytree(out, tmp_path / "short")
    s = run(tmp_path / "short", "dynamics.steps=2", "record.every=1")
    assert sorted(s["timing"]["reused"]) == ["shape_L2_d1", "shape_L2_d2", "shape_L3_d3"]
    failed = {k for k, v in s["checks"].items() if not v["passed"]}
    assert {"zero_loss", "zero_test_loss", "stationary"} <= failed
    assert not any(k.startswith(("w2_", "width_", "function_")) for k in failed)
    assert s["converge"]["loss_ratio"] > 1e-2 and s["passed"] is False
