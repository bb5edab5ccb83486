"""`reflecting_ball`: the checks hold in quick mode, fail when the claim's premise is
removed, and bad parameters are refused with the field named."""

import json

import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.experiments import EXPERIMENTS

BALL = EXPERIMENTS["reflecting_ball"]


def run(tmp_path, *overrides, resume=False):
    cfg = config.load(BALL.default_config(), list(BALL.quick) + list(overrides))
    return BALL.run(cfg, tmp_path, resume=resume, progress=False)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("ball_quick")
    return out, run(out)


def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed"
    assert set(s["checks"]) == {
        "within_ball_inside",
        "within_ball_outside",
        "mass_conserved_inside",
        "mass_conserved_outside",
        "boundary_reached",
        "loss_to_zero_inside",
        "outside_keeps_a_floor",
    }
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    assert (
        max(s["runs"]["inside"]["teacher_norms"]) < 1.5 < min(s["runs"]["outside"]["teacher_norms"])
    )
    assert json.loads((out / "summary.json").read_text())["checks"] == s["checks"]
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000
    # every snapshot of both runs: inside the ball, all particles there
    for name in ("inside", "outside"):
        for path in (out / "runs" / name / "snapshots").glob("*.npz"):
            w = np.load(path)["w"]
            assert w.shape == (96, 2) and np.linalg.norm(w, axis=1).max() <= 1.5 * (1 + 1e-12)


def test_resume_reuses_completed_runs(quick):
    out, s = quick
    before = (out / "runs" / "inside" / "metrics.csv").stat().st_mtime_ns
    again = run(out, resume=True)
    assert (out / "runs" / "inside" / "metrics.csv").stat().st_mtime_ns == before
    assert again["checks"] == s["checks"]


def test_checks_fail_when_the_teacher_leaves_the_ball(tmp_path):
    """With the 'inside' teacher scaled out of the ball, zero loss is out of reach."""
    s = run(tmp_path, "experiment.params.inside_scale=2.0", "dynamics.steps=400")
    assert s["checks"]["loss_to_zero_inside"]["passed"] is False
    assert s["checks"]["outside_keeps_a_floor"]["passed"] is False
    assert s["checks"]["within_ball_inside"]["passed"] is True  # reflection still holds
    assert s["passed"] is False


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.inside_scale=-1", "experiment.params.inside_scale"),
        ("experiment.params.speed=3", "experiment.params"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
