"""`global_convergence`: the teacher's known answers, the checks on doctored statistics (each
fails when it should), bad parameters refused with the field named; slow: the quick run and
a run cut short. The sphere W2 is tested in tests/diagnostics/test_teacher.py."""

import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.experiments.global_convergence import GLOBAL_CONVERGENCE as GC
from mfnn.experiments.global_convergence import teacher_atoms
from mfnn.study import Study


def load(*overrides):
    return config.load(GC.default_config(), list(GC.quick) + list(overrides))


def run(tmp_path, *overrides):
    return GC.run(load(*overrides), tmp_path, progress=False)


def test_teacher_atoms_are_unit_directions_with_weights_proportional_to_i():
    c, alpha = teacher_atoms(6, 5, 1)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0)
    np.testing.assert_allclose(alpha, np.arange(1, 7) / 21)
    np.testing.assert_array_equal(c, teacher_atoms(6, 5, 1)[0])  # seeded


def fake_stats(narrow=(1e-6, 2e-3), wide=3e-4):
    runs = {f"m6_s{i}": {"width": 6, "loss_ratio": x} for i, x in enumerate(narrow)}
    return {"runs": runs | {"m192": {"width": 192, "loss_ratio": wide}}}


def test_evaluate_on_doctored_statistics(tmp_path):
    cfg = load()
    s = Study(GC, cfg, GC.validate_params(cfg), tmp_path)
    checks = GC.evaluate(s, fake_stats())
    assert all(c["passed"] for c in checks.values()), checks
    assert checks["narrow_need_not"]["value"] == 0.5
    # a wide student stuck above the tolerance fails the claim
    assert not GC.evaluate(s, fake_stats(wide=2e-3))["overparameterized_reach_zero"]["passed"]
    # negative control: every narrow student reaching zero too (no bad stationary point)
    assert not GC.evaluate(s, fake_stats(narrow=(1e-6, 1e-5)))["narrow_need_not"]["passed"]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.k=0", "experiment.params.k"),
        ("experiment.params.width_factors=[4, 32]", "experiment.params.width_factors"),
        ("experiment.params.width_factors=[1, 4]", "experiment.params.width_factors"),
        ("experiment.params.tolerance=2", "experiment.params.tolerance"),
        ("experiment.params.widths=3", "experiment.params.widths"),
        ("experiment.params.narrow_seeds=0", "experiment.params.narrow_seeds"),
        ("model.activation=tanh", "data.population.method"),  # closed form: relu, erf
        (("model.activation=tanh", "data.population.method=monte_carlo"), "model.activation"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, *([override] if isinstance(override, str) else override))
    assert not (tmp_path / "runs").exists()  # refused before any compute


@pytest.mark.slow
def test_quick_checks_hold(tmp_path):
    s = run(tmp_path)
    assert s["status"] == "completed" and s["passed"]
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    assert set(s["runs"]) == {"m6_s0", "m6_s1", "m192"}
    assert s["runs"]["m6_s0"]["seed"] != s["runs"]["m6_s1"]["seed"]
    for r in s["runs"].values():
        assert np.isfinite(r["w2_sphere"]) and 0 <= r["negative_mass_fraction"] <= 1
    for fig in s["figures"]:
        assert (tmp_path / fig).stat().st_size > 5000


@pytest.mark.slow
def test_check_fails_when_training_is_cut_short(tmp_path):
    s = run(tmp_path, "dynamics.steps=40", "record.every=20")
    assert s["checks"]["overparameterized_reach_zero"]["passed"] is False
    assert s["passed"] is False
