"""`birth_death_speedup`: the curve statistics on known curves, the checks on doctored
statistics (the transport control passes the O(1/t) bound but fails speedup and loss_gain),
bad parameters refused with the field named (the energy ratio and the loss gain:
tests/diagnostics/test_coupling.py); behind `slow`: the quick run, its control re-evaluated,
runs without the claim's premises or too short, resume and the full run."""

import copy
import json
import math
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.diagnostics import loss_gain
from mfnn.experiments.birth_death_speedup import (
    BIRTH_DEATH_SPEEDUP,
    SpeedupParams,
    curve_stats,
    evaluate,
)
from mfnn.stats import hitting_time, window_slope

BD = BIRTH_DEATH_SPEEDUP
CHECKS = {
    "speedup",
    "rate_birth_death",
    "loss_gain",
    "energy_identity_jumps",
    "same_start",
    "particles_transport",
    "particles_birth_death",
    "transport/energy_identity",
    "birth_death/energy_identity",
}


def run(tmp_path, *overrides, resume=False, quick=True):
    cfg = config.load(BD.default_config(), (list(BD.quick) if quick else []) + list(overrides))
    return BD.run(cfg, tmp_path, resume=resume, progress=False)


# ------------------------------------------------------------- statistics


def test_hitting_time_is_exact_for_an_exponential():
    # L = exp(-t) is linear in (t, log L): the log interpolation is exact between records
    t = np.arange(0.0, 10.0, 0.5)
    loss = np.exp(-t)
    assert hitting_time(t, loss, math.exp(-3.2), scale="log") == pytest.approx(3.2, rel=1e-12)
    assert hitting_time(t, loss, 2.0, scale="log") == 0.0
    assert math.isnan(hitting_time(t, loss, 1e-6, scale="log"))


def test_window_slope_recovers_the_power_and_needs_the_whole_window():
    t = np.linspace(0.5, 200.0, 400)
    assert window_slope(t, 3.0 / t, 10, 100) == pytest.approx(-1.0, abs=1e-12)
    assert window_slope(t, t**-1.7, 10, 100) == pytest.approx(-1.7, abs=1e-12)
    assert math.isnan(window_slope(t, 1 / t, 10, 300))  # the run ends before t_b
    assert math.isnan(window_slope(t, 1 / t, 10, 10.6))  # under 3 records in the window


# ------------------------------------------------------------- checks on statistics

PARAMS = SpeedupParams()
STUDY = SimpleNamespace(params=PARAMS)


def statistics(t, transport, birth_death) -> dict:
    """The statistics `evaluate` reads, from two loss curves (the other checks at passing
    values)."""
    runs = {}
    for name, loss in (("transport", transport), ("birth_death", birth_death)):
        runs[name] = curve_stats(PARAMS, t, loss) | {"particles_ok": True}
    runs["birth_death"]["energy_ratio"] = {"with_jumps": 0.97, "t_end": 50.0}
    tr, bd = runs["transport"]["T_target"], runs["birth_death"]["T_target"]
    gain = loss_gain(t, transport, birth_death, *PARAMS.fit_window)
    return {"speedup": tr / bd, "loss_gain": gain, "same_start": True, "runs": runs}


T = np.arange(0.0, 300.0, 0.5)
TRANSPORT = 0.15 * (1 + T) ** -1.3  # decays faster than 1/t: meets the O(1/t) bound
BIRTH_DEATH = 0.15 * (1 + 3 * T) ** -1.3  # the same curve three times faster


def test_a_faster_run_passes_and_the_transport_control_fails_what_it_passes():
    good = evaluate(STUDY, statistics(T, TRANSPORT, BIRTH_DEATH))
    assert all(c["passed"] for c in good.values()), good
    assert good["speedup"]["value"] == pytest.approx(3.0, rel=0.01)
    # the control in birth-death's place: speedup = loss_gain = 1 fail, while the O(1/t)
    # bound alone still passes (it does not separate the runs on this problem)
    control = evaluate(STUDY, statistics(T, TRANSPORT, TRANSPORT))
    assert control["speedup"]["value"] == 1.0 and not control["speedup"]["passed"]
    assert control["loss_gain"]["value"] == 1.0 and not control["loss_gain"]["passed"]
    assert control["rate_birth_death"]["passed"]


def test_a_run_that_stalls_fails_the_rate_and_nan_statistics_fail():
    stall = 0.15 * (0.1 + 0.9 / (1 + T))  # R* > 0: L flattens at 0.015
    c = evaluate(STUDY, statistics(T, TRANSPORT, stall))
    assert c["rate_birth_death"]["value"] > -0.8 and not c["rate_birth_death"]["passed"]
    assert not c["speedup"]["passed"] and not c["loss_gain"]["passed"]
    bad = copy.deepcopy(statistics(T, TRANSPORT, BIRTH_DEATH))
    bad["speedup"] = bad["loss_gain"] = bad["runs"]["birth_death"]["slope"] = math.nan
    c = evaluate(STUDY, bad)
    assert not any(c[k]["passed"] for k in ("speedup", "loss_gain", "rate_birth_death"))


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.target=2", "experiment.params.target"),
        ("experiment.params.fit_window=[100, 10]", "experiment.params.fit_window"),
        ("experiment.params.min_speedup=1", "experiment.params.min_speedup"),
        ("experiment.params.min_loss_gain=0.5", "experiment.params.min_loss_gain"),
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


# ------------------------------------------------------------- the experiment (slow)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("birth_death_quick")
    return out, run(out)


@pytest.mark.slow
def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed" and s["passed"]
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
        mt = np.genfromtxt(out / "runs" / name / "metrics.csv", delimiter=",", names=True)
        assert bool(mt["jump_dissipation"].max() > 0) is positive
    for name in ("transport", "birth_death"):
        for path in (out / "runs" / name / "snapshots").glob("*.npz"):
            w = np.load(path)["w"]
            assert w.shape == (128, 3) and np.all(np.isfinite(w))


@pytest.mark.slow
def test_the_quick_runs_transport_control_fails_what_birth_death_passes(quick):
    """The quick run's statistics with the control in birth-death's place (speedup and
    loss_gain of the control against itself are 1): the separating checks fail, the
    O(1/t) bound passes for transport too."""
    _, s = quick
    control = copy.deepcopy(s)
    control["runs"]["birth_death"] |= {k: s["runs"]["transport"][k] for k in ("slope", "T_target")}
    control["speedup"], control["loss_gain"] = 1.0, 1.0
    c = evaluate(SimpleNamespace(params=SpeedupParams(**s["params"])), control)
    assert not c["speedup"]["passed"] and not c["loss_gain"]["passed"]
    assert c["rate_birth_death"]["passed"]  # transport's own slope also beats -1 + 0.2
    assert s["checks"]["speedup"]["passed"] and s["checks"]["loss_gain"]["passed"]


@pytest.mark.slow
def test_resume_reuses_completed_runs(quick, resume_after_interrupt):
    out, s = quick
    again, _ = resume_after_interrupt(out, "birth_death", lambda: run(out, resume=True))
    assert again["checks"] == s["checks"]


@pytest.mark.slow
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
    c = s["checks"]
    assert c["speedup"]["value"] == pytest.approx(1.0, abs=0.05) and not c["speedup"]["passed"]
    assert c["loss_gain"]["value"] == pytest.approx(1.0, abs=0.05)
    assert not c["loss_gain"]["passed"]
    assert c["rate_birth_death"]["value"] > -0.8 and not c["rate_birth_death"]["passed"]
    assert c["particles_birth_death"]["passed"] is True
    assert s["passed"] is False


@pytest.mark.slow
def test_checks_fail_when_the_runs_are_too_short(quick, tmp_path):
    """The quick runs re-analysed (reused) with a level they never reach and a fit window
    past their end: T, the slope and loss_gain are nan and their checks fail."""
    out = tmp_path / "copy"
    shutil.copytree(quick[0], out)
    s = run(out, "experiment.params.target=1.0e-7", "experiment.params.fit_window=[10.0, 1000.0]")
    assert sorted(s["timing"]["reused"]) == ["birth_death", "transport"]
    for name in ("speedup", "rate_birth_death", "loss_gain"):
        assert math.isnan(s["checks"][name]["value"]), name
        assert s["checks"][name]["passed"] is False
    assert math.isnan(s["runs"]["transport"]["T_target"])
    assert s["checks"]["energy_identity_jumps"]["passed"] is True  # whole run: still holds


@pytest.mark.slow
@pytest.mark.full
def test_full_experiment(tmp_path):
    s = run(tmp_path, quick=False)
    assert s["status"] == "completed"
    assert set(s["checks"]) == CHECKS | {
        "particles_langevin_birth_death",
        "langevin_birth_death/energy_identity",
    }
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    assert math.isfinite(s["runs"]["langevin_birth_death"]["T_target"])
