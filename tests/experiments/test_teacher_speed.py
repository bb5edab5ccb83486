"""`teacher_speed`: the initial rings, the checks on doctored statistics (they fail when they
should; the sweep and random placement stay informational), bad parameters refused with the
field named; slow: the quick run, resume, checks failing on real runs. The statistics'
known answers (cluster distances, hitting times, speed ratio) are in
tests/diagnostics/test_teacher.py."""

import json
import math

import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.experiments.teacher_speed import TEACHER_SPEED as TS
from mfnn.experiments.teacher_speed import rings, speed_check
from mfnn.study import Study, collect_checks, verdict


def load(*overrides):
    return config.load(TS.default_config(), list(TS.quick) + list(overrides))


def run(tmp_path, *overrides, resume=False):
    return TS.run(load(*overrides), tmp_path, resume=resume, progress=False)


def study(tmp_path, *overrides):
    cfg = load(*overrides)
    return Study(TS, cfg, TS.validate_params(cfg), tmp_path)


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


def test_rings_have_the_same_normalized_law():
    c = np.array([[1.0, 0.0], [0.0, 1.0]])
    theta = rings(c, [40, 10], 0.3)
    for i, sel in enumerate((slice(0, 40), slice(40, 50))):
        dist = np.linalg.norm(theta[sel] - c[i], axis=1)
        np.testing.assert_allclose(dist, 0.3)
        np.testing.assert_allclose(theta[sel].mean(0), c[i], atol=1e-15)
    # the ring around c_2 is the ring around c_1 rotated by the angle between them
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    one = [rings(c[i : i + 1], [10], 0.3) for i in (0, 1)]
    np.testing.assert_allclose(one[0] @ rot.T, one[1], atol=1e-15)


def test_random_placement_is_seeded_per_draw():
    c = np.array([[1.0, 0.0], [0.0, 1.0]])
    a, b = (rings(c, [20, 10], 0.3, np.random.default_rng([0, d])) for d in (0, 1))
    np.testing.assert_allclose(np.linalg.norm(a[:20] - c[0], axis=1), 0.3)
    np.testing.assert_allclose(np.linalg.norm(a[20:] - c[1], axis=1), 0.3)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, rings(c, [20, 10], 0.3, np.random.default_rng([0, 0])))
    assert np.linalg.norm(a[20:].mean(0) - c[1]) > 1e-3  # the sampled rings are off-center


def fake_stats(s, S_over_r=1.1, random=(0.9, 1.2, 1.0, 1.05)):
    """Statistics with S = S_over_r * r for the checked and sweep runs and the given S / r
    for the random-placement draws."""
    p, runs = s.params, {"reference": {"T_ref": 100.0}}
    for r in p.ratios:
        runs[f"ratio_{r:g}"] = {"speed_ratio": S_over_r * r}
    for r in p.sweep_ratios:
        runs[f"sweep_{r:g}"] = {"speed_ratio": 1.6 * r}  # out of the band, informational
    for i, x in enumerate(random):
        runs[f"random_{p.random_ratio:g}_d{i}"] = {"speed_ratio": x * p.random_ratio}
    return {"runs": runs}


def test_evaluate_on_doctored_statistics(tmp_path):
    s = study(tmp_path)
    checks = TS.evaluate(s, fake_stats(s))
    assert {"speed_ratio_2", "speed_ratio_4", "speed_ratio_8"} <= set(checks)
    assert checks["sweep_speed_ratio_16"]["passed"] is False
    assert checks["random_placement_in_band"]["value"] == 1.0
    all_checks, reasons = collect_checks(TS, checks, {})
    assert set(reasons) == {"sweep_speed_ratio_16", "random_placement_in_band"}
    assert verdict(all_checks)  # the sweep beyond the band does not count

    # negative controls: the alpha_2 students only half as slow as predicted, or no speed
    # difference at all (S = 1 for every r), fail every ratio
    checks = TS.evaluate(s, fake_stats(s, S_over_r=0.5))
    assert not any(checks[f"speed_ratio_{r}"]["passed"] for r in (2, 4, 8))
    equal = fake_stats(s)
    for r in (2, 4, 8):
        equal["runs"][f"ratio_{r}"]["speed_ratio"] = 1.0
    checks = TS.evaluate(s, equal)
    assert not any(checks[f"speed_ratio_{r}"]["passed"] for r in (2, 4, 8))
    assert not verdict(collect_checks(TS, checks, {})[0])
    # a draw out of the band is reported, not counted
    scattered = TS.evaluate(s, fake_stats(s, random=(0.3, 0.4, 0.6, 1.9)))
    assert scattered["random_placement_in_band"]["value"] == 0.0


def test_energy_identity_of_the_sweep_runs_counts(tmp_path):
    # the informational patterns must not swallow the sub-runs' own checks
    spec = TS.spec("sweep_16/energy_identity")
    assert spec is not None and spec.informational is None
    assert TS.spec("sweep_speed_ratio_16").informational


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.ratios=[1, 2]", "experiment.params.ratios"),
        ("experiment.params.ratios=[2.55]", "experiment.params.ratios"),  # 25.5 students
        ("experiment.params.ratios=2", "experiment.params.ratios"),
        ("experiment.params.ratios=[2, 2]", "experiment.params.ratios"),
        ("experiment.params.sweep_ratios=[16.05]", "experiment.params.sweep_ratios"),
        ("experiment.params.cluster_size=0", "experiment.params.cluster_size"),
        ("experiment.params.tolerance=0.3", "experiment.params.tolerance"),
        ("experiment.params.factor=1", "experiment.params.factor"),
        ("experiment.params.angle_deg=180", "experiment.params.angle_deg"),
        ("experiment.params.spread=-1", "experiment.params.spread"),
        ("experiment.params.reference=maybe", "experiment.params.reference"),
        ("experiment.params.random_draws=-1", "experiment.params.random_draws"),
        ("experiment.params.ratio=[2]", "experiment.params.ratio"),
        ("data.population.dim=3", "data.population"),
        ("model.train_output=true", "model.train_output"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute


def test_a_ratio_with_a_whole_number_of_students_is_accepted():
    assert TS.validate_params(load("experiment.params.ratios=[2.5]")).ratios == (2.5,)


# ------------------------------------------------------------------ slow: runs


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher_speed_quick")
    return out, run(out)


@pytest.mark.slow
def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed" and s["passed"] is True
    counted = {k: v for k, v in s["checks"].items() if not v.get("informational")}
    assert {"speed_ratio_2", "speed_ratio_4", "speed_ratio_8"} <= set(counted)
    assert not {k: v for k, v in counted.items() if not v["passed"]}
    assert set(s["informational"]) == {"sweep_speed_ratio_16", "random_placement_in_band"}
    for r in (2, 4, 8, 16):
        sub = s["runs"][f"ratio_{r}" if r <= 8 else f"sweep_{r}"]
        n1, n2 = sub["n"]
        assert n1 == r * n2 and sub["assigned"] == [n1, n2]  # students stay with their atom
        assert sub["alpha"][0] / sub["alpha"][1] == pytest.approx(r)
        assert sub["speed_ratio"] == pytest.approx(sub["T_2"] / sub["T_1"])
        assert 0 < sub["T_1"] < sub["T_2"] <= sub["final_t"]
        assert len(sub["slowdown"]) == 2 and all(x > 0 for x in sub["slowdown"])
    # S / r drifts up with r; the summary says up to where the band holds
    drift = [s["speed_ratio_over_r"][f"{r}"] for r in (2, 4, 8, 16)]
    assert drift == sorted(drift)
    assert s["band_holds_up_to_ratio"] >= 8
    assert len(s["random_placement"]["speed_ratio_over_r"]) == 4
    assert s["runs"]["reference"]["T_ref"] > 0
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"] and "claim" in on_disk
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000


@pytest.mark.slow
def test_resume_reuses_completed_subruns(quick, resume_after_interrupt):
    out, s = quick
    # pretend ratio_8 was interrupted: only it is run again (from its checkpoint)
    again, _ = resume_after_interrupt(out, "ratio_8", lambda: run(out, resume=True))
    assert again["checks"] == s["checks"]


SMALL = (
    "experiment.params.reference=false",
    "experiment.params.sweep_ratios=[]",
    "experiment.params.random_draws=0",
)


@pytest.mark.slow
def test_check_fails_when_the_run_is_too_short(tmp_path):
    # t = 150: the alpha_2 students have not reached the tolerance, T_2 = nan
    s = run(
        tmp_path,
        *SMALL,
        "experiment.params.ratios=[8]",
        "experiment.params.cluster_size=4",
        "dynamics.steps=150",
    )
    c = s["checks"]["speed_ratio_8"]
    assert c["passed"] is False and math.isnan(c["value"])
    assert s["passed"] is False


@pytest.mark.slow
def test_check_fails_for_strongly_coupled_atoms(tmp_path):
    # c_1, c_2 at 150 degrees: the atoms interact strongly, T_2/T_1 is ~1.75 times the ratio
    s = run(
        tmp_path,
        *SMALL,
        "experiment.params.ratios=[2]",
        "experiment.params.cluster_size=5",
        "experiment.params.angle_deg=150",
        "dynamics.dt=2.0",
        "dynamics.steps=1200",
    )
    c = s["checks"]["speed_ratio_2"]
    assert c["passed"] is False and c["value"] > 3.0
    assert s["passed"] is False
