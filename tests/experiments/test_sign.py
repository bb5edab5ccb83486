"""The `sign` experiment: each check fails on doctored statistics (a lazy mean_field run, a
feature-learning ntk run, an ntk run that moves as much), bad params are refused with the
field named; in the slow tier the quick run holds, resumes without recomputing, and a run
too short to learn fails."""

import json

import pytest

from mfnn import ConfigError, config
from mfnn.experiments import EXPERIMENTS
from mfnn.experiments.sign import SignParams, evaluate
from mfnn.study import Study

SIGN = EXPERIMENTS["sign"]

HELD = {  # the statistics of a run where the claim holds (quick-run values)
    "mean_field": {"C_initial": 0.25, "C_final": 0.96, "movement": 0.9},
    "ntk": {"C_initial": 0.25, "C_final": 0.27, "movement": 0.04},
}


def judge(**runs):
    cfg = config.load(SIGN.default_config())
    study = Study(SIGN, cfg, SignParams(), None)
    return evaluate(study, {"runs": {k: HELD[k] | runs.get(k, {}) for k in HELD}})


def test_the_checks_hold_on_the_statistics_of_the_claim():
    checks = judge()
    assert set(checks) == {"mean_field_concentrates", "ntk_does_not_concentrate", "ntk_moves_less"}
    assert all(c["passed"] for c in checks.values())


@pytest.mark.parametrize(
    ("doctored", "fails"),
    [
        ({"mean_field": {"C_final": 0.3}}, "mean_field_concentrates"),  # lazy mean_field
        ({"mean_field": {"C_initial": 0.6, "C_final": 0.9}}, "mean_field_concentrates"),
        ({"ntk": {"C_final": 0.9}}, "ntk_does_not_concentrate"),  # ntk learned features
        ({"ntk": {"movement": 0.5}}, "ntk_moves_less"),  # ntk moved like mean_field
    ],
)
def test_each_check_fails_on_a_negative_control(doctored, fails):
    checks = judge(**doctored)
    assert [k for k, c in checks.items() if not c["passed"]] == [fails]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.radius=0", "experiment.params.radius"),
        ("experiment.params.scalings=[]", "experiment.params.scalings"),
        ("experiment.params.scalings=[lazy]", "experiment.params.scalings"),
        ("experiment.params.radus=0.3", "experiment.params.radus"),
    ],
)
def test_bad_params_are_refused_with_the_field(override, field):
    cfg = config.load(SIGN.default_config(), [override])
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        SIGN.validate_params(cfg)


def run(tmp_path, *overrides, resume=False):
    cfg = config.load(SIGN.default_config(), list(SIGN.quick) + list(overrides))
    return SIGN.run(cfg, tmp_path, resume=resume, progress=False)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("sign_quick")
    return out, run(out)


@pytest.mark.slow
def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed" and s["passed"]
    assert set(s["checks"]) == {
        "mean_field_concentrates",
        "ntk_does_not_concentrate",
        "ntk_moves_less",
        "mean_field/energy_identity",
        "ntk/energy_identity",
    }
    mf, ntk = s["runs"]["mean_field"], s["runs"]["ntk"]
    assert mf["C_initial"] == ntk["C_initial"]  # same initial particles
    assert mf["final_loss"] < ntk["final_loss"]
    assert json.loads((out / "summary.json").read_text())["checks"] == s["checks"]
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000
    for sc in ("mean_field", "ntk"):
        assert (out / "runs" / sc / "metrics.csv").is_file()


@pytest.mark.slow
def test_resume_of_a_completed_experiment_recomputes_nothing(quick):
    out, s = quick
    before = (out / "runs" / "ntk" / "metrics.csv").stat().st_mtime_ns
    again = run(out, resume=True)
    assert (out / "runs" / "ntk" / "metrics.csv").stat().st_mtime_ns == before
    assert again["checks"] == s["checks"] and again["timing"]["reused"] == ["mean_field", "ntk"]


@pytest.mark.slow
def test_a_run_too_short_to_learn_fails(tmp_path):
    # barely trained: breakpoints have not moved yet, so mean_field does not concentrate
    s = run(tmp_path, "dynamics.steps=20", "record.every=10", "record.snapshot_every=10")
    assert s["checks"]["mean_field_concentrates"]["passed"] is False
    assert s["passed"] is False
