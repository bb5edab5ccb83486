"""`birth_death_speedup`: the statistics on known curves, the quick checks, checks that fail
when the claim's premises are removed or the run is too short, resume, and bad parameters
refused with the field named."""

import json
import math
import shutil

import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.experiments.birth_death_speedup import (
    BIRTH_DEATH_SPEEDUP,
    energy_ratio,
    hitting_time,
    window_slope,
)

BD = BIRTH_DEATH_SPEEDUP
CHECKS = {
    "speedup",
    "rate_birth_death",
    "energy_identity_jumps",
    "same_start",
    "particles_transport",
    "particles_birth_death",
}


def run(tmp_path, *overrides, resume=False, quick=True):
    cfg = config.load(BD.default_config(), (list(BD.quick) if quick else []) + list(overrides))
    return BD.run(cfg, tmp_path, resume=resume, progress=False)


# ------------------------------------------------------------- statistics


def test_hitting_time_is_exact_for_an_exponential():
    # L = exp(-t) is linear in (t, log L): the interpolation is exact between records
    t = np.arange(0.0, 10.0, 0.5)
    loss = np.exp(-t)
    assert hitting_time(t, loss, math.exp(-3.2)) == pytest.approx(3.2, rel=1e-12)
    assert hitting_time(t, loss, 2.0) == 0.0
    assert math.isnan(hitting_time(t, loss, 1e-6))


def test_window_slope_recovers_the_power_and_needs_the_whole_window():
    t = np.linspace(0.5, 200.0, 400)
    assert window_slope(t, 3.0 / t, (10, 100)) == pytest.approx(-1.0, abs=1e-12)
    assert window_slope(t, t**-1.7, (10, 100)) == pytest.approx(-1.7, abs=1e-12)
    assert math.isnan(window_slope(t, 1 / t, (10, 300)))  # the run ends before t_b
    assert math.isnan(window_slope(t, 1 / t, (10, 10.6)))  # under 3 records in the window


def test_energy_ratio_is_one_when_the_identity_holds():
    # E = exp(-2t): -dE/dt = 2 exp(-2t) split as dissipation + jump_dissipation
    t = np.linspace(0.0, 3.0, 3001)
    metrics = {
        "t": t,
        "energy": np.exp(-2 * t),
        "dissipation": 1.5 * np.exp(-2 * t),
        "jump_dissipation": 0.5 * np.exp(-2 * t),
    }
    r = energy_ratio(metrics, 2.0)
    assert r["with_jumps"] == pytest.approx(1.0, abs=1e-5)
    assert r["without_jumps"] == pytest.approx(4 / 3, abs=1e-5)
    assert r["t_end"] == pytest.approx(2.0)


# ------------------------------------------------------------- the experiment


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("birth_death_quick")
    return out, run(out)


def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed"
    assert set(s["checks"]) == CHECKS  # quick mode: no Langevin run
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    assert json.loads((out / "summary.json").read_text())["checks"] == s["checks"]
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000
    tr, bd = s["runs"]["transport"], s["runs"]["birth_death"]
    assert tr["alpha"] == 0.0 and bd["alpha"] == 5.0
    assert tr["initial_loss"] == bd["initial_loss"]  # the same start
    assert bd["T_target"] < tr["T_target"]
    assert s["speedup"] == pytest.approx(tr["T_target"] / bd["T_target"])
    # the jump term is needed: without it the energy drop is far from the prediction
    er = bd["energy_ratio"]
    assert abs(er["without_jumps"] - 1) > 2 * abs(er["with_jumps"] - 1)
    # the transport run records no jump dissipation; the birth-death run does
    for name, positive in (("transport", False), ("birth_death", True)):
        head = (out / "runs" / name / "metrics.csv").read_text().splitlines()
        col = head[0].split(",").index("jump_dissipation")
        jd = np.array([float(r.split(",")[col]) for r in head[1:]])
        assert bool(jd.max() > 0) is positive
    # every snapshot: m particles, finite
    for name in ("transport", "birth_death"):
        for path in (out / "runs" / name / "snapshots").glob("*.npz"):
            w = np.load(path)["w"]
            assert w.shape == (128, 3) and np.all(np.isfinite(w))


def test_resume_reuses_completed_runs(quick):
    out, s = quick
    before = {
        n: (out / "runs" / n / "metrics.csv").stat().st_mtime_ns
        for n in ("transport", "birth_death")
    }
    again = run(out, resume=True)
    for n, mtime in before.items():
        assert (out / "runs" / n / "metrics.csv").stat().st_mtime_ns == mtime
    assert again["checks"] == s["checks"]


def test_checks_fail_without_the_premises(tmp_path):
    """alpha ~ 0: no speed-up (both runs the same); a teacher the students cannot represent
    (output 2 erf, students carry at most 1): R* > 0 and L(t) flattens (slope near 0)."""
    s = run(
        tmp_path,
        "model.width=64",
        "dynamics.steps=300",
        "dynamics.birth_death.rate=0.01",
        "data.teacher.a=[2.0, 2.0]",
        "experiment.params.target=0.3",
        "experiment.params.fit_window=[5.0, 30.0]",
    )
    assert s["checks"]["speedup"]["value"] == pytest.approx(1.0, abs=0.05)
    assert s["checks"]["speedup"]["passed"] is False
    assert s["checks"]["rate_birth_death"]["value"] > -0.8
    assert s["checks"]["rate_birth_death"]["passed"] is False
    assert s["checks"]["particles_birth_death"]["passed"] is True
    assert s["passed"] is False


def test_checks_fail_when_the_runs_are_too_short(quick, tmp_path):
    """The quick runs re-analysed (resume reuses them) with a level they never reach and a
    fit window past their end: T and the slope are nan and both checks fail."""
    out = tmp_path / "copy"
    shutil.copytree(quick[0], out)
    s = run(
        out,
        "experiment.params.target=1.0e-7",
        "experiment.params.fit_window=[10.0, 1000.0]",
        resume=True,
    )
    for name in ("speedup", "rate_birth_death"):
        assert math.isnan(s["checks"][name]["value"]), name
        assert s["checks"][name]["passed"] is False
    assert math.isnan(s["runs"]["transport"]["T_target"])
    assert s["checks"]["energy_identity_jumps"]["passed"] is True  # whole run: still holds


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.target=2", "experiment.params.target"),
        ("experiment.params.fit_window=[100, 10]", "experiment.params.fit_window"),
        ("experiment.params.min_speedup=-1", "experiment.params.min_speedup"),
        ("experiment.params.energy_tolerance=-0.1", "experiment.params.energy_tolerance"),
        ("experiment.params.langevin_beta=-5", "experiment.params.langevin_beta"),
        ("experiment.params.speed=3", "experiment.params"),
        ("dynamics.birth_death.rate=0", "dynamics.birth_death"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute


@pytest.mark.slow
def test_full_experiment(tmp_path):
    s = run(tmp_path, quick=False)
    assert s["status"] == "completed"
    assert set(s["checks"]) == CHECKS | {"particles_langevin_birth_death"}
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    assert math.isfinite(s["runs"]["langevin_birth_death"]["T_target"])
