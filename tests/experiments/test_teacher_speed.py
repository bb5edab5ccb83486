"""`teacher_speed`: the quick checks hold, the check fails when it should (a run too short,
a strongly coupled geometry, doctored ratios), resume reuses finished sub-runs, and bad
parameters are refused with the field named."""

import json
import math

import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.experiments import EXPERIMENTS
from mfnn.experiments.teacher_speed import (
    _params,
    hitting_time,
    initial_particles,
    ring,
    speed_check,
)

TS = EXPERIMENTS["teacher_speed"]


def run(tmp_path, *overrides, resume=False):
    cfg = config.load(TS.default_config(), list(TS.quick) + list(overrides))
    return TS.run(cfg, tmp_path, resume=resume, progress=False)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher_speed_quick")
    return out, run(out)


def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed"
    assert {"speed_ratio_2", "speed_ratio_4", "speed_ratio_8"} <= set(s["checks"])
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    assert s["passed"] is True
    for r in (2, 4, 8):
        sub = s["runs"][f"ratio_{r}"]
        n1, n2 = sub["n"]
        assert n1 == r * n2 and sub["assigned"] == [n1, n2]  # students stay with their atom
        assert sub["alpha"][0] / sub["alpha"][1] == pytest.approx(r)
        assert sub["speed_ratio"] == pytest.approx(sub["T_2"] / sub["T_1"])
        assert 0 < sub["T_1"] < sub["T_2"] <= sub["final_t"]
        assert len(sub["slowdown"]) == 2 and all(x > 0 for x in sub["slowdown"])
        assert (out / "runs" / f"ratio_{r}" / "metrics.csv").is_file()
    assert s["runs"]["reference"]["T_ref"] > 0
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"] and "claim" in on_disk
    assert (out / "config.yaml").is_file()
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000


def test_resume_reuses_completed_subruns(quick, resume_after_interrupt):
    out, s = quick
    # pretend ratio_8 was interrupted: only it is run again (from its checkpoint)
    again, after = resume_after_interrupt(out, "ratio_8", lambda: run(out, resume=True))
    assert again["checks"] == s["checks"]


def test_check_fails_when_the_run_is_too_short(tmp_path):
    # t = 150: the alpha_2 students have not reached the tolerance, T_2 = nan
    s = run(
        tmp_path,
        "experiment.params.ratios=[8]",
        "experiment.params.cluster_size=4",
        "experiment.params.reference=false",
        "dynamics.steps=150",
    )
    c = s["checks"]["speed_ratio_8"]
    assert c["passed"] is False and math.isnan(c["value"])
    assert s["passed"] is False


def test_check_fails_for_strongly_coupled_atoms(tmp_path):
    # c_1, c_2 at 150 degrees: the atoms interact strongly, T_2/T_1 is ~1.75 times the ratio
    s = run(
        tmp_path,
        "experiment.params.ratios=[2]",
        "experiment.params.cluster_size=5",
        "experiment.params.angle_deg=150",
        "experiment.params.reference=false",
        "dynamics.dt=2.0",
        "dynamics.steps=1200",
    )
    c = s["checks"]["speed_ratio_2"]
    assert c["passed"] is False and c["value"] > 3.0
    assert s["passed"] is False


@pytest.mark.parametrize(
    ("S", "r", "passed"),
    [
        (8.0, 8, True),
        (11.9, 8, True),
        (5.4, 8, True),
        (12.5, 8, False),
        (5.2, 8, False),
        (4.0, 2, False),
        (float("nan"), 4, False),
        (float("inf"), 4, False),
    ],
)
def test_speed_check_on_doctored_ratios(S, r, passed):
    assert speed_check(S, r, 1.5, 0.2)["passed"] is passed


def test_hitting_time_interpolates_and_is_nan_when_never_reached():
    t = np.array([0.0, 10.0, 20.0, 30.0])
    d = np.array([0.3, 0.25, 0.15, 0.1])
    assert hitting_time(t, d, 0.2) == pytest.approx(15.0)
    assert math.isnan(hitting_time(t, d, 0.05))


def test_rings_have_the_same_normalized_law():
    c = np.array([[1.0, 0.0], [0.0, 1.0]])
    p = {"spread": 0.3, "placement": "ring"}
    theta = initial_particles(c, 40, 10, p, 0)
    for i, sel in enumerate((slice(0, 40), slice(40, 50))):
        dist = np.linalg.norm(theta[sel] - c[i], axis=1)
        np.testing.assert_allclose(dist, 0.3)
        np.testing.assert_allclose(theta[sel].mean(0), c[i], atol=1e-15)
    # the ring around c_2 is the ring around c_1 rotated by the angle between them
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    np.testing.assert_allclose(ring(c[0], 10, 0.3) @ rot.T, ring(c[1], 10, 0.3), atol=1e-15)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.ratios=[1, 2]", "experiment.params.ratios"),
        ("experiment.params.ratios=[2.55]", "experiment.params.ratios"),  # 25.5 students
        ("experiment.params.ratios=2", "experiment.params.ratios"),
        ("experiment.params.cluster_size=0", "experiment.params.cluster_size"),
        ("experiment.params.tolerance=0.3", "experiment.params.tolerance"),
        ("experiment.params.factor=1", "experiment.params.factor"),
        ("experiment.params.angle_deg=180", "experiment.params.angle_deg"),
        ("experiment.params.spread=-1", "experiment.params.spread"),
        ("experiment.params.placement=grid", "experiment.params.placement"),
        ("experiment.params.reference=maybe", "experiment.params.reference"),
        ("experiment.params.ratio=[2]", "experiment.params"),
        ("data.population.dim=3", "data.population"),
        ("model.train_output=true", "model.train_output"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute


def test_a_ratio_with_a_whole_number_of_students_is_accepted():
    cfg = config.load(TS.default_config(), [*TS.quick, "experiment.params.ratios=[2.5]"])
    assert _params(cfg)["ratios"] == [2.5]  # n_1 = 2.5 * 10 = 25
