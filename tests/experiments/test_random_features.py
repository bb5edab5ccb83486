"""`random_features`: the checks on known and doctored statistics, the informational
both-layer energy identity, bad parameters refused; slow: the quick run, a diverging step, a
noisy target, resume and a changed problem. The least-squares reference, the bound ratio and
gradient descent against the bound are tested in tests/diagnostics/test_barron.py."""

import json
import math
import types

import pytest

from mfnn import ConfigError, config
from mfnn.experiments.random_features import RANDOM_FEATURES as RF
from mfnn.experiments.random_features import evaluate
from mfnn.study import Study, collect_checks, verdict


def load(*overrides):
    return config.load(RF.default_config(), list(RF.quick) + list(overrides))


def run(out, *overrides, resume=False):
    return RF.run(load(*overrides), out, resume=resume, progress=False)


def study(*overrides) -> Study:
    cfg = load(*overrides)
    return Study(RF, cfg, RF.validate_params(cfg), None)


GOOD = {  # the statistics of a passing run (the quick run's values, rounded)
    "r_star": 4e-31,
    "dist2_a0_astar": 5.28,
    "L": 0.389,
    "dt_L": 0.389,
    "lstsq_rel_gradient": 2e-15,
    "min_excess": 8.7e-6,
    "velocity_error": 3e-16,
    "frozen_change": 0.0,
    "runs": {"random_features": {"max_ratio": 0.128, "initial_loss": 0.257}},
}


def doctored(**changes) -> dict:
    st = json.loads(json.dumps(GOOD))
    if "max_ratio" in changes:
        st["runs"]["random_features"]["max_ratio"] = changes.pop("max_ratio")
    return st | changes


def test_checks_on_known_statistics():
    checks = evaluate(study(), doctored())
    assert {c["passed"] for c in checks.values()} == {True}
    assert checks["bound"]["value"] == 0.128 and checks["step_size"]["value"] == 0.389


@pytest.mark.parametrize(
    ("overrides", "changes", "failing"),
    [
        # a wrong constant below the measured max ratio
        (["experiment.params.bound_constant=0.05"], {}, {"bound"}),
        # dt L = 2.5 > 2: gradient descent diverges (the ratio of `descend(2.5)`)
        ([], {"dt_L": 2.5, "max_ratio": 1.2e4}, {"bound", "step_size"}),
        # an iterate below the solved minimum: R* is not the minimum
        ([], {"min_excess": -1e-6}, {"a_star_converged"}),
        ([], {"lstsq_rel_gradient": 1e-5}, {"a_star_converged"}),
        # a velocity in another time convention (e.g. without the factor m)
        ([], {"velocity_error": 0.98}, {"velocity_convention"}),
        ([], {"frozen_change": 1e-3}, {"frozen_features"}),
        ([], {"max_ratio": float("nan")}, {"bound"}),
    ],
)
def test_checks_fail_on_doctored_statistics(overrides, changes, failing):
    checks = evaluate(study(*overrides), doctored(**changes))
    assert {k for k, c in checks.items() if not c["passed"]} == failing


def test_both_layer_energy_identity_is_informational_and_the_random_feature_one_counts():
    spec = RF.spec("both_layers/energy_identity")
    assert spec.informational and "hinge" in spec.informational
    assert RF.spec("random_features/energy_identity").informational is None
    own = evaluate(study(), doctored())

    def results(rf: bool, both: bool):
        def summary(ok):
            return types.SimpleNamespace(
                summary={"checks": {"energy_identity": {"value": 0, "passed": ok}}}
            )

        return {"random_features": summary(rf), "both_layers": summary(both)}

    checks, reasons = collect_checks(RF, own, results(True, False))
    assert verdict(checks) and list(reasons) == ["both_layers/energy_identity"]
    checks, _ = collect_checks(RF, own, results(False, True))
    assert not verdict(checks)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.teacher_scale=inf", "experiment.params.teacher_scale"),
        ("experiment.params.noise=-1", "experiment.params.noise"),
        ("experiment.params.bound_constant=0", "experiment.params.bound_constant"),
        ("experiment.params.compare=maybe", "experiment.params.compare"),
        ("experiment.params.tolerance=1", "experiment.params.tolerance"),
        ("model.scaling=ntk", "model.scaling"),
        ("model.trainable=[a, w]", "model.trainable"),
        ("model.train_output=false", "model.train_output"),
        ("dynamics.integrator=heun", "dynamics.integrator"),
        ("objective.l2=0.1", "objective.l2"),
        ("data.path=somewhere.npz", "data.path"),
        ("model.init.path=particles.npz", "model.init.path"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute


# ------------------------------------------------------------------- slow: quick run


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("random_features_quick")
    return out, run(out)


@pytest.mark.slow
def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed" and s["passed"]
    counted = {k: v for k, v in s["checks"].items() if "informational" not in v}
    failed = {k: v for k, v in counted.items() if not v["passed"]}
    assert not failed, failed
    assert set(counted) == {
        "bound",
        "a_star_converged",
        "step_size",
        "velocity_convention",
        "frozen_features",
        "random_features/energy_identity",
    }
    assert list(s["informational"]) == ["both_layers/energy_identity"]
    # the target is in the span and Phi has full column rank: a* is the teacher's
    assert s["r_star"] < 1e-20 and s["a_star_vs_teacher"] < 1e-8
    # gradient descent on a quadratic with dt L <= 1: the sharper constant 1/(2e) holds
    assert 0.01 < s["checks"]["bound"]["value"] <= 1 / (2 * math.e) + 1e-9
    both = s["runs"]["both_layers"]
    assert both["final_excess"] < both["initial_loss"] and both["trainable"] == ["a", "w", "b"]
    # the reason the both-layer identity is informational: the last step crosses hinges
    assert both["hinge_crossings_at_T"] > 0
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"] and "claim" in on_disk
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000


@pytest.mark.slow
def test_every_iterate_is_recorded(quick):
    out, _ = quick
    lines = (out / "runs" / "random_features" / "metrics.csv").read_text().splitlines()
    assert len(lines) == 1 + 4000 + 1  # header, steps 0..4000


@pytest.mark.slow
def test_resume_reuses_completed_subruns(quick):
    out, s = quick
    keep = out / "runs" / "random_features" / "metrics.csv"
    t_keep = keep.stat().st_mtime_ns
    path = out / "runs" / "both_layers" / "summary.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"status": "interrupted"}))
    again = run(out, resume=True)
    assert keep.stat().st_mtime_ns == t_keep
    assert json.loads(path.read_text())["status"] == "completed"
    assert again["checks"] == s["checks"]


@pytest.mark.slow
def test_too_large_step_fails(quick, tmp_path):
    # dt L = 2.5 > 2: gradient descent diverges, the premise and the bound fail
    _, s = quick
    bad = run(
        tmp_path,
        f"dynamics.dt={2.5 / s['L']!r}",
        "dynamics.steps=200",
        "experiment.params.compare=false",
        "record.snapshot_every=100",
    )
    assert bad["checks"]["step_size"]["passed"] is False
    assert bad["checks"]["bound"]["passed"] is False
    assert bad["checks"]["bound"]["value"] > 1e3


@pytest.mark.slow
def test_noisy_target_has_positive_r_star_and_the_bound_holds(tmp_path):
    s = run(
        tmp_path,
        "experiment.params.noise=0.05",
        "experiment.params.compare=false",
        "dynamics.steps=1000",
        "record.snapshot_every=500",
    )
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    assert s["r_star"] > 1e-4  # the noise is not in the span of 64 features (n = 128)


@pytest.mark.slow
def test_a_changed_problem_is_not_reused(tmp_path):
    # the data file is named by its content: another teacher is another sub-run config
    small = ("experiment.params.compare=false", "dynamics.steps=200")
    first = run(tmp_path, *small, "record.snapshot_every=100")
    again = run(tmp_path, *small, "record.snapshot_every=100", "experiment.params.teacher_scale=-1")
    assert again["timing"]["reused"] == [] and again["passed"] is True
    assert again["final_loss"] != first["final_loss"]
