"""`chaos`: the layout of the stacked coupling run, checks that fail on doctored statistics,
bad params refused with the field named (default tier; the W2 sampling floor and the
coupling statistics: tests/diagnostics/test_coupling.py); the quick run, its shared initial
points, resume, a reference too small, the linear phase and a diverged run (slow)."""

import json
import math

import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.experiments.chaos import CHAOS, ChaosParams, layout
from mfnn.study import Study


def run(tmp_path, *overrides, resume=False):
    cfg = config.load(CHAOS.default_config(), list(CHAOS.quick) + list(overrides))
    return CHAOS.run(cfg, tmp_path, resume=resume, progress=False)


def test_layout_covers_the_state_once():
    p = ChaosParams(widths=(4, 8, 32), particles_per_width=64, min_replicas=3)
    lay = layout(p, 128)
    reps = lay["replicas"]
    assert reps == {4: 16, 8: 8, 32: 3}
    ranges = [lay["reference"], *lay["tracers"].values(), lay["half_reference"]]
    ranges += [lay["half_tracers"], *lay["systems"].values()]
    covered = np.zeros(lay["rows"], int)
    for a, b in ranges:
        covered[a:b] += 1
    assert np.all(covered == 1) and sum(lay["sizes"]) == lay["rows"]
    for m in p.widths:
        a, b = lay["tracers"][m]
        c, d = lay["systems"][m]
        assert b - a == d - c == reps[m] * m
    assert lay["half_reference"][1] - lay["half_reference"][0] == 64
    # parts: reference + all tracers; half reference + the widest tracers; one per width
    assert lay["sizes"][0] == 128 + sum(reps[m] * m for m in p.widths)
    assert lay["sizes"][1] == 64 + reps[32] * 32


def _study(tmp_path):
    cfg = config.load(CHAOS.default_config())
    return Study(CHAOS, cfg, CHAOS.validate_params(cfg), tmp_path, progress=False)


def _stats(coupling=-1.0, function=-0.5, w2=-0.2, share=0.05, loss_ratio=0.05):
    """Statistics as `analyze` returns them (time keys as in the summary), doctored."""
    ts = ["0", "5", "10", "15"]
    return {
        "D": 6,
        "slopes": {
            "coupling": dict.fromkeys(ts, coupling),
            "function": dict.fromkeys(ts, function),
            "w2_independent": dict.fromkeys(ts, w2),
        },
        "reference_share": dict.fromkeys(ts[1:], share),
        "loss_ratio": loss_ratio,
    }


@pytest.mark.parametrize(
    ("doctored", "failing"),
    [
        ({}, None),
        ({"coupling": -0.8}, "coupling_slope_t"),
        ({"coupling": -1.2}, "coupling_slope_t"),
        ({"coupling": -0.5}, "coupling_slope_t"),  # what W2 to the coupled cloud decays like
        ({"function": -0.3}, "function_slope_t"),
        ({"function": -1.0}, "function_slope_t"),
        ({"w2": -0.5}, "w2_independent_slope_t"),
        ({"share": 0.5}, "reference_error_t"),  # a reference too small
        ({"loss_ratio": 0.5}, "nonlinear_regime"),  # the linear phase only
        ({"coupling": math.nan}, "coupling_slope_t"),
    ],
)
def test_checks_fail_on_doctored_statistics(tmp_path, doctored, failing):
    checks = CHAOS.evaluate(_study(tmp_path), _stats(**doctored))
    assert len(checks) == 3 * 3 + 4 + 1
    failed = {k for k, v in checks.items() if not v["passed"]}
    if failing is None:
        assert not failed
    else:
        assert failed and all(k.startswith(failing) for k in failed), failed


def test_a_run_that_misses_a_statistic_time_fails(tmp_path):
    checks = CHAOS.evaluate(_study(tmp_path), {"missing_times": [15.0], "message": "NaN/inf"})
    assert list(checks) == ["run_completed"] and checks["run_completed"]["passed"] is False
    assert "NaN/inf" in checks["run_completed"]["expected"]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.widths=[8, 16]", "experiment.params.widths"),
        ("experiment.params.widths=[16, 8, 32]", "experiment.params.widths"),
        ("experiment.params.widths=[1, 8, 32]", "experiment.params.widths"),
        ("experiment.params.widths=[8, 16, 2048]", "model.width"),
        ("model.width=2047", "model.width"),
        ("experiment.params.times=[]", "experiment.params.times"),
        ("experiment.params.times=[2.1]", "experiment.params.times"),
        ("experiment.params.times=[4.0, 2.0]", "experiment.params.times"),
        ("experiment.params.times=[20.0]", "experiment.params.times"),
        ("experiment.params.min_replicas=1", "experiment.params.min_replicas"),
        ("experiment.params.particles_per_width=0", "experiment.params.particles_per_width"),
        ("experiment.params.slope_tolerance=0", "experiment.params.slope_tolerance"),
        ("experiment.params.reference_share=2", "experiment.params.reference_share"),
        ("experiment.params.loss_drop=0", "experiment.params.loss_drop"),
        ("experiment.params.w2_margin=0.5", "experiment.params.w2_margin"),
        ("experiment.params.reference_width=4096", "experiment.params"),
        ("model.scaling=ntk", "model.scaling"),
        ("dynamics.kind=sgd", "dynamics.kind"),
        ("data.n_test=0", "data.n_test"),
        ("data.population={dim: 4}", "data.population"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute


def test_default_config_is_the_documented_one():
    p = CHAOS.validate_params(config.load(CHAOS.default_config()))
    assert p.widths == (16, 32, 64, 128, 256, 512) and p.slope_tolerance == 0.15
    assert CHAOS.default_config()["model"]["width"] == 16384
    text = CHAOS.describe()
    for name in ("coupling_slope_t*", "reference_error_t*", "*/energy_identity"):
        assert name in text


# ------------------------------------------------------------------ slow: runs


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("chaos_quick")
    return out, run(out)


@pytest.mark.slow
def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed" and s["passed"] is True
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    for t in [2.0, 4.0, 6.0, 10.0]:
        for kind in ("coupling_slope", "function_slope", "reference_error"):
            assert f"{kind}_t{t:g}" in s["checks"]
    assert "w2_independent_slope_t0" in s["checks"] and "nonlinear_regime" in s["checks"]
    assert "coupling/energy_identity" in s["checks"]
    assert s["D"] == 6 and s["M"] == 2048 and s["widths"] == [8, 16, 32, 64, 128]
    assert s["replicas"] == [128, 64, 32, 16, 8]
    lo, hi = s["slope_ci95"]["coupling"]["10"]
    assert lo < s["slopes"]["coupling"]["10"] < hi
    # the coupling starts at 0 (same initial points) and grows with t
    c = s["statistics"]["coupling"]
    assert c["0"] == [0.0] * 5
    assert all(a < b for a, b in zip(c["2"], c["10"], strict=True))
    # W2 of independent clouds sits far above the coupling at the largest m
    w2 = s["statistics"]["w2_independent"]["10"][-1]
    assert w2 > 3 * math.sqrt(c["10"][-1])
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"] and "claim" in on_disk
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000
    run_dir = out / "runs" / "coupling"
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert (run_dir / "metrics.csv").is_file() and (run_dir / "checkpoint.npz").is_file()


@pytest.mark.slow
def test_quick_tracers_and_systems_share_initial_points(quick):
    out, s = quick
    snaps = sorted((out / "runs" / "coupling" / "snapshots").glob("*.npz"))
    w = np.load(snaps[0])["w"]
    p = ChaosParams(widths=tuple(s["widths"]), particles_per_width=1024, min_replicas=8)
    lay = layout(p, s["M"])
    for m in s["widths"]:
        a, b = lay["tracers"][m]
        c, d = lay["systems"][m]
        np.testing.assert_array_equal(w[a:b], w[c:d])
    a, b = lay["half_reference"]
    np.testing.assert_array_equal(w[a:b], w[: s["M"] // 2])  # nested half
    a, b = lay["half_tracers"]
    c, d = lay["tracers"][128]
    np.testing.assert_array_equal(w[a:b], w[c:d])


@pytest.mark.slow
def test_resume_reuses_the_completed_run_and_continues_an_interrupted_one(quick):
    out, s = quick
    metrics = out / "runs" / "coupling" / "metrics.csv"
    before = metrics.stat().st_mtime_ns
    again = run(out, resume=True)
    assert metrics.stat().st_mtime_ns == before  # reused, not recomputed
    assert again["checks"] == s["checks"]
    # an interrupted run continues from its checkpoint (the last one: nothing to redo)
    path = out / "runs" / "coupling" / "summary.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"status": "interrupted"}))
    third = run(out, resume=True)
    assert json.loads(path.read_text())["status"] == "completed"
    assert third["checks"] == s["checks"]


@pytest.mark.slow
def test_checks_fail_when_the_reference_is_too_small(tmp_path):
    # M = 2 m_max: the reference's own error is as large as the widest coupling
    s = run(
        tmp_path,
        "model.width=128",
        "experiment.params.widths=[8, 16, 64]",
        "experiment.params.particles_per_width=256",
        "experiment.params.times=[4.0, 10.0]",
    )
    failed = {k for k, v in s["checks"].items() if not v["passed"]}
    assert {"reference_error_t4", "reference_error_t10"} <= failed
    assert min(s["reference_share"].values()) > 0.2
    assert s["passed"] is False


@pytest.mark.slow
def test_nonlinear_check_fails_in_the_linear_phase(tmp_path):
    s = run(
        tmp_path,
        "experiment.params.widths=[8, 16, 32]",
        "experiment.params.particles_per_width=256",
        "experiment.params.times=[1.0]",
        "dynamics.steps=5",
    )
    assert s["checks"]["nonlinear_regime"]["passed"] is False
    assert s["loss_ratio"] > 0.5


@pytest.mark.slow
def test_a_diverged_run_is_reported_not_raised(tmp_path):
    # dt = 50: Euler blows up; the divergence guard ends the run at the first record (step 5,
    # loss ~7e7 > 1e6 x the initial loss), so no statistic time is reached
    s = run(
        tmp_path,
        "model.width=64",
        "experiment.params.widths=[4, 8, 16]",
        "experiment.params.particles_per_width=64",
        "dynamics.dt=50.0",
        "experiment.params.times=[250.0, 10000.0]",
        "dynamics.steps=200",
    )
    assert s["status"] == "diverged" and s["passed"] is False
    assert s["checks"]["run_completed"]["passed"] is False
    expected = s["checks"]["run_completed"]["expected"]
    assert "missing t = [250.0, 10000.0]" in expected
    assert "diverged at step 5" in expected and "divergence guard" in expected
    assert "dynamics.dt" in expected  # the advice names the field to change
