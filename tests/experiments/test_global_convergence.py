"""`global_convergence`: quick checks hold, a check can fail, bad parameters are refused,
and the sphere W2 used in the summary has the known answers."""

import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.experiments import EXPERIMENTS
from mfnn.experiments.global_convergence import sphere_w2, teacher_atoms

GC = EXPERIMENTS["global_convergence"]


def run(tmp_path, *overrides):
    cfg = config.load(GC.default_config(), list(GC.quick) + list(overrides))
    return GC.run(cfg, tmp_path, progress=False)


def test_quick_checks_hold(tmp_path):
    s = run(tmp_path)
    assert s["status"] == "completed"
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    assert set(s["runs"]) == {"m6_s0", "m6_s1", "m192"}
    assert s["runs"]["m6_s0"]["seed"] != s["runs"]["m6_s1"]["seed"]
    for r in s["runs"].values():
        assert np.isfinite(r["w2_sphere"]) and 0 <= r["negative_mass_fraction"] <= 1


def test_check_fails_when_training_is_cut_short(tmp_path):
    s = run(
        tmp_path, "experiment.params.width_factors=[1, 32]", "dynamics.steps=40", "record.every=20"
    )
    assert s["checks"]["overparameterized_reach_zero"]["passed"] is False
    assert s["passed"] is False


def test_sphere_w2_is_zero_for_a_student_that_is_the_teacher():
    """Each teacher atom split over several students (same direction, masses adding up to
    alpha_i |c_i|, any split between a and |w|): W2 = 0 and no negative mass."""
    c, alpha = teacher_atoms(3, 4, 0)
    rows = []
    for ci, ai in zip(c, alpha, strict=True):
        for share, scale in ((0.25, 2.0), (0.75, 0.5)):  # a |w| / m must total alpha_i
            rows.append(np.concatenate([[share * ai * 6 / scale], scale * ci]))
    theta = np.array(rows)
    w2, neg = sphere_w2(theta, c, alpha)
    assert w2 < 1e-6 and neg == 0.0
    theta[0, 0] *= -1  # a negative output weight: counted as negative mass
    w2, neg = sphere_w2(theta, c, alpha)
    assert neg > 0


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.k=0", "experiment.params.k"),
        ("experiment.params.width_factors=[4, 32]", "experiment.params.width_factors"),
        ("experiment.params.tolerance=2", "experiment.params.tolerance"),
        ("experiment.params.widths=3", "experiment.params"),
        ("experiment.params.narrow_seeds=0", "experiment.params.narrow_seeds"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
