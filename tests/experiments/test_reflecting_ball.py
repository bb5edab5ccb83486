"""`reflecting_ball`: the checks on doctored statistics (the wall checks fail on a state the
reflected flow would not keep), bad parameters refused with the field named; slow: the quick
run, resume, and the claim's premise removed. The wall statistics' known answers are in
tests/diagnostics/test_teacher.py."""

import copy
import json

import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.experiments.reflecting_ball import REFLECTING_BALL as BALL
from mfnn.study import Study


def load(*overrides):
    return config.load(BALL.default_config(), list(BALL.quick) + list(overrides))


def run(tmp_path, *overrides, resume=False):
    return BALL.run(load(*overrides), tmp_path, resume=resume, progress=False)


def fake_stats():
    def one(r_max, loss0, loss, kappa, held):
        return {
            "r_max": r_max,
            "counts_ok": True,
            "initial_loss": loss0,
            "final_loss": loss,
            "kappa": kappa,
            "held": held,
            "on_wall": 90,
        }

    return {
        "runs": {
            "inside": one(1.0 - 1e-11, 0.06, 2e-6, 0.9, 0.001),
            "outside": one(1.0 - 1e-10, 0.39, 0.047, 1e-3, 0.99),
        }
    }


def test_evaluate_on_doctored_statistics(tmp_path):
    cfg = load()
    s = Study(BALL, cfg, BALL.validate_params(cfg), tmp_path)
    good = fake_stats()
    checks = BALL.evaluate(s, good)
    assert all(c["passed"] for c in checks.values()), checks
    failing = {
        # particles resting on the wall while the free flow slides them along it
        "wall_stationary_outside": ("outside", "kappa", 0.3),
        # most of the free flow's speed belongs to particles still moving inside
        "wall_holds_outside": ("outside", "held", 0.5),
        # a reflection that let a particle out, or lost one
        "invariant_within_ball_outside": ("outside", "r_max", 1.01),
        "invariant_mass_inside": ("inside", "counts_ok", False),
        # the teacher inside not learned
        "loss_to_zero_inside": ("inside", "final_loss", 1e-4),
    }
    for name, (run_name, key, value) in failing.items():
        bad = copy.deepcopy(good)
        bad["runs"][run_name][key] = value
        checks = BALL.evaluate(s, bad)
        assert {k for k, c in checks.items() if not c["passed"]} == {name}, name
    bad = copy.deepcopy(good)
    bad["runs"]["outside"]["kappa"] = float("nan")  # no particle on the wall
    assert not BALL.evaluate(s, bad)["wall_stationary_outside"]["passed"]


def test_invariants_are_labelled_and_the_outside_identity_is_informational():
    assert "by construction" in BALL.spec("invariant_within_ball_inside").rule
    assert BALL.spec("invariant_within_ball_inside").informational is None  # still counted
    assert "reflection" in BALL.spec("outside/energy_identity").informational
    assert BALL.spec("inside/energy_identity").informational is None


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.inside_scale=-1", "experiment.params.inside_scale"),
        ("experiment.params.held=2", "experiment.params.held"),
        ("experiment.params.speed=3", "experiment.params.speed"),
        ("dynamics.domain=null", "dynamics.domain"),
        ("model.train_output=true", "model.train_output"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute


# ------------------------------------------------------------------ slow: runs


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("ball_quick")
    return out, run(out)


@pytest.mark.slow
def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed" and s["passed"]
    assert set(s["checks"]) == {
        "invariant_within_ball_inside",
        "invariant_within_ball_outside",
        "invariant_mass_inside",
        "invariant_mass_outside",
        "boundary_reached",
        "loss_to_zero_inside",
        "outside_keeps_a_floor",
        "wall_stationary_outside",
        "wall_holds_outside",
        "inside/energy_identity",
        "outside/energy_identity",
    }
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    assert set(s["informational"]) == {"outside/energy_identity"}
    inside, outside = s["runs"]["inside"], s["runs"]["outside"]
    assert max(inside["teacher_norms"]) < 1.5 < min(outside["teacher_norms"])
    assert outside["on_wall"] >= 0.9 * 96  # the outside run ends on the wall
    assert json.loads((out / "summary.json").read_text())["checks"] == s["checks"]
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000
    # every snapshot of both runs: inside the ball, all particles there
    for name in ("inside", "outside"):
        for path in (out / "runs" / name / "snapshots").glob("*.npz"):
            w = np.load(path)["w"]
            assert w.shape == (96, 2) and np.linalg.norm(w, axis=1).max() <= 1.5 * (1 + 1e-12)


@pytest.mark.slow
def test_resume_reuses_completed_runs(quick):
    out, s = quick
    before = (out / "runs" / "inside" / "metrics.csv").stat().st_mtime_ns
    again = run(out, resume=True)
    assert (out / "runs" / "inside" / "metrics.csv").stat().st_mtime_ns == before
    assert again["checks"] == s["checks"]


@pytest.mark.slow
def test_checks_fail_when_the_teacher_leaves_the_ball(tmp_path):
    """With the 'inside' teacher scaled out of the ball, zero loss is out of reach."""
    s = run(tmp_path, "experiment.params.inside_scale=2.0", "dynamics.steps=400")
    assert s["checks"]["loss_to_zero_inside"]["passed"] is False
    assert s["checks"]["outside_keeps_a_floor"]["passed"] is False
    assert s["checks"]["invariant_within_ball_inside"]["passed"] is True  # reflection holds
    assert s["passed"] is False
