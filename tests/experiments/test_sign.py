"""The `sign` experiment: its checks hold in quick mode, can fail, and the full run holds."""

import json

import pytest

from mfnn import config
from mfnn.experiments import EXPERIMENTS

SIGN = EXPERIMENTS["sign"]


def run(tmp_path, *overrides, resume=False):
    cfg = config.load(SIGN.default_config(), list(SIGN.quick) + list(overrides))
    return SIGN.run(cfg, tmp_path, resume=resume, progress=False)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("sign_quick")
    return out, run(out)


def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed"
    assert set(s["checks"]) >= {
        "mean_field_concentrates",
        "ntk_does_not_concentrate",
        "ntk_moves_less",
    }
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    mf, ntk = s["runs"]["mean_field"], s["runs"]["ntk"]
    assert mf["C_initial"] == ntk["C_initial"]  # same initial particles
    assert mf["final_loss"] < ntk["final_loss"]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"]
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000
    for sc in ("mean_field", "ntk"):
        assert (out / "runs" / sc / "metrics.csv").is_file()


def test_resume_of_a_completed_experiment_recomputes_nothing(quick, tmp_path):
    out, s = quick
    before = (out / "runs" / "ntk" / "metrics.csv").stat().st_mtime_ns
    again = run(out, resume=True)
    assert (out / "runs" / "ntk" / "metrics.csv").stat().st_mtime_ns == before
    assert again["checks"] == s["checks"]


def test_checks_can_fail(tmp_path):
    # barely trained: breakpoints have not moved yet, so mean_field does not concentrate
    s = run(tmp_path, "dynamics.steps=20", "record.every=10", "record.snapshot_every=10")
    assert s["checks"]["mean_field_concentrates"]["passed"] is False
    assert s["passed"] is False
