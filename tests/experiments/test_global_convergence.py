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


# the second-order test at a student's last particles: lambda_min, lambda_max of s H and
# the stationarity |v|_rms / (max|lambda| |theta|_rms) (measured values of the quick run)
MINIMUM = {"lambda_min": 1.56e-3, "lambda_max": 0.277, "stationarity": 7e-16}
SADDLE = {"lambda_min": -1e-4, "lambda_max": 0.277, "stationarity": 1e-12}
MOVING = {"lambda_min": -9.4e-4, "lambda_max": 0.272, "stationarity": 5e-4}


def fake_stats(narrow=(1e-6, 2e-3), wide=3e-4, hessians=(MINIMUM, MINIMUM)):
    runs = {
        f"m6_s{i}": {"width": 6, "loss_ratio": x, "hessian": h}
        for i, (x, h) in enumerate(zip(narrow, hessians, strict=True))
    }
    return {"runs": runs | {"m192": {"width": 192, "loss_ratio": wide}}}


def test_evaluate_on_doctored_statistics(tmp_path):
    cfg = load()
    s = Study(GC, cfg, GC.validate_params(cfg), tmp_path)
    checks = GC.evaluate(s, fake_stats())
    assert all(c["passed"] for c in checks.values()), checks
    assert checks["narrow_need_not"]["value"] == 0.5
    assert checks["stuck_narrow_spurious_minimum"]["value"] == 1
    # a wide student stuck above the tolerance fails the claim
    assert not GC.evaluate(s, fake_stats(wide=2e-3))["overparameterized_reach_zero"]["passed"]
    # negative control: every narrow student reaching zero too (no bad stationary point)
    assert not GC.evaluate(s, fake_stats(narrow=(1e-6, 1e-5)))["narrow_need_not"]["passed"]


def test_hessian_checks_fail_on_doctored_statistics(tmp_path):
    cfg = load()
    s = Study(GC, cfg, GC.validate_params(cfg), tmp_path)
    # the stuck student at rest at a saddle: both checks fail
    checks = GC.evaluate(s, fake_stats(hessians=(MINIMUM, SADDLE)))
    assert not checks["stuck_narrow_spurious_minimum"]["passed"]
    assert not checks["stuck_narrow_no_saddle"]["passed"]
    assert checks["stuck_narrow_no_saddle"]["value"] == 1
    # still moving (not at rest): no verdict, so no spurious minimum is shown
    checks = GC.evaluate(s, fake_stats(hessians=(MINIMUM, MOVING)))
    assert not checks["stuck_narrow_spurious_minimum"]["passed"]
    assert checks["stuck_narrow_no_saddle"]["passed"]
    # a degenerate point (lambda_min within 1e-6 max|lambda| of 0) is not a strict minimum
    flat = MINIMUM | {"lambda_min": 1e-8}
    assert not GC.evaluate(s, fake_stats(hessians=(MINIMUM, flat)))[
        "stuck_narrow_spurious_minimum"
    ]["passed"]
    # the tolerances are params: a looser rest tolerance accepts the moving student's point
    cfg = load("experiment.params.hessian_stationarity=1e-3")
    s = Study(GC, cfg, GC.validate_params(cfg), tmp_path)
    moving_min = MOVING | {"lambda_min": 1e-3}
    assert GC.evaluate(s, fake_stats(hessians=(MINIMUM, moving_min)))[
        "stuck_narrow_spurious_minimum"
    ]["passed"]


def test_narrow_students_run_narrow_steps(tmp_path):
    cfg = load()
    s = Study(GC, cfg, GC.validate_params(cfg), tmp_path)
    steps = {name: r.config.dynamics.steps for name, r in GC.plan(s).items()}
    assert steps == {"m6_s0": 40000, "m6_s1": 40000, "m192": 4000}
    cfg = load("experiment.params.narrow_steps=null")
    s = Study(GC, cfg, GC.validate_params(cfg), tmp_path)
    assert {r.config.dynamics.steps for r in GC.plan(s).values()} == {4000}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.k=0", "experiment.params.k"),
        ("experiment.params.width_factors=[4, 32]", "experiment.params.width_factors"),
        ("experiment.params.width_factors=[1, 4]", "experiment.params.width_factors"),
        ("experiment.params.tolerance=2", "experiment.params.tolerance"),
        ("experiment.params.widths=3", "experiment.params.widths"),
        ("experiment.params.narrow_seeds=0", "experiment.params.narrow_seeds"),
        ("experiment.params.narrow_steps=0", "experiment.params.narrow_steps"),
        ("experiment.params.hessian_rtol=0", "experiment.params.hessian_rtol"),
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
    failed = {k for k, v in s["checks"].items() if not v["passed"]}
    # only the m = k runs' energy identities, informational: they end at rest (0/0)
    assert failed <= {"m6_s0/energy_identity", "m6_s1/energy_identity"}, failed
    assert all(s["checks"][k]["informational"] for k in failed)
    assert set(s["runs"]) == {"m6_s0", "m6_s1", "m192"}
    assert s["runs"]["m6_s0"]["seed"] != s["runs"]["m6_s1"]["seed"]
    for r in s["runs"].values():
        assert np.isfinite(r["w2_sphere"]) and 0 <= r["negative_mass_fraction"] <= 1
    # the m = k students at rest: s0 at the teacher (a strict minimum, lambda_min 3.3e-3),
    # s1 stuck at a spurious strict minimum (lambda_min 1.6e-3, L/L(0) = 1.19e-3)
    h0, h1 = s["runs"]["m6_s0"]["hessian"], s["runs"]["m6_s1"]["hessian"]
    assert h0["verdict"] == h1["verdict"] == "minimum"
    assert h0["stationarity"] < 1e-12 and h1["stationarity"] < 1e-12
    assert h1["lambda_min"] == pytest.approx(1.565e-3, rel=0.01)
    assert h0["lambda_min"] == pytest.approx(3.317e-3, rel=0.01)
    assert "m192" not in s["checks"] and "hessian" not in s["runs"]["m192"]
    assert s["checks"]["m6_s1/energy_identity"]["informational"]
    for fig in s["figures"]:
        assert (tmp_path / fig).stat().st_size > 5000


@pytest.mark.slow
def test_check_fails_when_training_is_cut_short(tmp_path):
    # t = 20 for every run: the wide one is far from zero loss, the narrow ones still move
    # (no point at rest, so no spurious minimum is shown)
    s = run(tmp_path, "dynamics.steps=40", "record.every=20", "experiment.params.narrow_steps=40")
    assert s["checks"]["overparameterized_reach_zero"]["passed"] is False
    assert s["checks"]["stuck_narrow_spurious_minimum"]["passed"] is False
    assert {r["hessian"]["verdict"] for n, r in s["runs"].items() if n != "m192"} == {
        "not stationary"
    }
    assert s["passed"] is False
