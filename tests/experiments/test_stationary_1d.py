"""`stationary_1d`: the quadratic schedule, the checks on doctored statistics (they fail when
they should), bad parameters refused with the field named; slow: the quick run and resume.
Example 2's symmetry statements and the moment statistics are tested in
tests/diagnostics/test_teacher.py."""

import copy
import json

import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.diagnostics import vanishing_orders
from mfnn.experiments.stationary_1d import STATIONARY_1D as S1
from mfnn.study import Study


def load(*overrides):
    return config.load(S1.default_config(), list(S1.quick) + list(overrides))


def run(tmp_path, *overrides, resume=False):
    return S1.run(load(*overrides), tmp_path, resume=resume, progress=False)


def study(tmp_path, *overrides):
    cfg = load(*overrides)
    return Study(S1, cfg, S1.validate_params(cfg), tmp_path)


def test_quadratic_schedule_resolves_the_energy_identity():
    # sigma = z^2: v_j = -6 D w_j with D = M_2 - M_2*, E = (3/2) D^2, so an Euler step's
    # relative energy residual is 6 dt M_2 exactly to first order: the schedule's dt keeps
    # it below the identity's 0.1 at M_2 = M_2(rho*) (dt = 0.05 gave 0.41)
    p = S1.params()
    c, alpha = np.array([-1.2, 0.4, 1.5]), np.array([0.3, 0.3, 0.4])
    m2 = float(alpha @ c**2)
    assert 6 * p.schedule["quadratic"].dt * m2 < 0.1 < 6 * 0.05 * m2


TEACHER = {"c": [-1.2, 0.4, 1.5], "alpha": [0.3, 0.3, 0.4]}
M2 = 1.38  # sum alpha c^2: the quadratic student's one rate at zero loss is 12 M_2 = 16.56


def fake_hessian(activation, m):
    """The second-order test at the narrowest run's last particles, as measured in the quick
    run: the quadratic student at rest with the single rate 12 M_2 and m - 1 flat directions;
    the smooth ones still moving, with negative curvature ~1e-4 of the top rate."""
    if activation == "quadratic":
        return {"lambda_min": -1.6e-11, "lambda_max": 12 * M2, "second_abs": 1.6e-11,
                "stationarity": 1e-12, "n": m, "verdict": "degenerate"}  # fmt: skip
    return {"lambda_min": -1.3e-4, "lambda_max": 0.12, "second_abs": 0.02,
            "stationarity": 5.8e-5, "n": m, "verdict": "not stationary"}  # fmt: skip


def fake_stats(s):
    """Statistics of a converged experiment: every forced moment at z = 1, the free ones
    (gaussian M_1, quadratic M_4) at z = 5, loss ratios 1e-6, a resolved rule; the Hessian
    numbers of the narrowest runs."""
    runs = {}
    for a in s.params.activations:
        forced = vanishing_orders(a, s.params.max_order)
        for m in s.params.widths:
            z = [1.0 if k in forced else 5.0 for k in range(1, s.params.max_order + 1)]
            runs[f"{a}_m{m}"] = {
                "activation": a,
                "loss_ratio": 1e-6,
                "final_loss": 1e-7,
                "initial_loss": 0.1,
                "quadrature_error": 1e-12,
                "checked_orders": [k for k in forced if k <= s.params.checked_order],
                "moments": {"z": z, "SE": [0.01] * s.params.max_order},
            }
            if m == min(s.params.widths):
                runs[f"{a}_m{m}"]["hessian"] = fake_hessian(a, m)
    return {"runs": runs, "teacher": TEACHER}


def test_evaluate_passes_a_converged_run_and_fails_doctored_ones(tmp_path):
    s = study(tmp_path)
    good = fake_stats(s)
    checks = S1.evaluate(s, good)
    assert all(c["passed"] for c in checks.values()), checks
    assert {"gaussian_learns_symmetrized_teacher", "quadratic_m4_not_forced"} <= set(checks)
    assert {"quadratic_flat_directions_quadratic_m128", "smooth_negative_curvature"} <= set(checks)

    bad = copy.deepcopy(good)  # a student that kept an odd moment off: tanh's M_3
    bad["runs"]["tanh_m512"]["moments"]["z"][2] = 4.0
    bad["runs"]["softplus_m128"]["loss_ratio"] = 2e-4  # not at zero loss
    bad["runs"]["gaussian_m128"]["quadrature_error"] = 1e-6  # the rule misses the loss
    checks = S1.evaluate(s, bad)
    failed = {k for k, c in checks.items() if not c["passed"]}
    assert failed == {"symmetry_tanh_m512", "loss_softplus_m128", "quadrature_gaussian_m128"}

    # negative controls: had the flow matched the free moments too, the controls fail
    ctrl = copy.deepcopy(good)
    ctrl["runs"]["gaussian_m512"]["moments"]["z"][0] = 1.0
    ctrl["runs"]["quadratic_m512"]["moments"]["z"][3] = 1.0
    checks = S1.evaluate(s, ctrl)
    assert not checks["gaussian_learns_symmetrized_teacher"]["passed"]
    assert not checks["quadratic_m4_not_forced"]["passed"]


def test_hessian_checks_fail_on_doctored_statistics(tmp_path):
    s = study(tmp_path)
    name = "quadratic_flat_directions_quadratic_m128"
    for change in (
        {"second_abs": 1e-3 * 12 * M2},  # a second direction of curvature: not rank one
        {"lambda_max": 1.1 * 12 * M2},  # the rate is not 12 M_2(rho*)
        {"stationarity": 1e-4},  # not at rest
        {"lambda_min": -1e-3},  # a negative direction: a saddle, not a minimum
    ):
        bad = fake_stats(s)
        bad["runs"]["quadratic_m128"]["hessian"].update(change)
        assert not S1.evaluate(s, bad)[name]["passed"], change
    # a smooth student with O(1) negative curvature fails the informational check
    bad = fake_stats(s)
    bad["runs"]["tanh_m128"]["hessian"]["lambda_min"] = -0.05
    check = S1.evaluate(s, bad)["smooth_negative_curvature"]
    assert not check["passed"] and check["value"] == pytest.approx(0.05 / 0.12)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.activations=[relu]", "experiment.params.activations"),
        ("experiment.params.activations=[]", "experiment.params.activations"),
        ("experiment.params.activations=[tanh, tanh]", "experiment.params.activations"),
        ("experiment.params.widths=[1]", "experiment.params.widths"),
        ("experiment.params.widths=[64, 64]", "experiment.params.widths"),
        ("experiment.params.schedule={quadratic: {dt: -1}}", "experiment.params.schedule"),
        ("experiment.params.schedule={relu: {dt: 1}}", "experiment.params.schedule"),
        ("experiment.params.loss_ratio=2", "experiment.params.loss_ratio"),
        ("experiment.params.z=0", "experiment.params.z"),
        ("experiment.params.checked_order=7", "experiment.params.checked_order"),
        ("experiment.params.orders=[1]", "experiment.params.orders"),
        ("data.population.dim=2", "data.population"),
        ("data.population.method=monte_carlo", "data.population"),
        ("data.population.inputs=uniform", "data.population"),
        ("model.bias=true", "model.bias"),
        ("model.init.w.law=constant", "model.init.w.law"),
        ("data.teacher.a=[1.0, 1.0, 1.0]", "data.teacher"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute


# ------------------------------------------------------------------ slow: the quick run


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("stationary_1d_quick")
    return out, run(out)


@pytest.mark.slow
def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed" and s["passed"]
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    acts, widths = S1.validate_params(load()).activations, (128, 512)
    for a in acts:
        for m in widths:
            for kind in ("loss", "symmetry", "quadrature"):
                assert f"{kind}_{a}_m{m}" in s["checks"]
            assert f"{a}_m{m}/energy_identity" in s["checks"]
            sub = s["runs"][f"{a}_m{m}"]
            assert sub["width"] == m and sub["activation"] == a
            assert sub["checked_orders"] == vanishing_orders(a, 3)
            assert len(sub["moments"]["z"]) == 6
        # the tolerance is stricter at the larger width
        se = [s["runs"][f"{a}_m{m}"]["moments"]["SE"][1] for m in widths]
        assert se[1] < se[0]
    assert s["checks"]["gaussian_learns_symmetrized_teacher"]["value"] > 3
    assert s["checks"]["quadratic_m4_not_forced"]["value"] > 3
    # the quadratic runs resolve the energy identity: 6 dt M_2(rho*) = 0.0414
    for m in widths:
        assert s["checks"][f"quadratic_m{m}/energy_identity"]["value"] == pytest.approx(
            0.0414, abs=2e-3
        )
    # the odd moments of the gaussian student are free, and visibly off: the moment test
    # can tell forced orders from free ones
    z = s["runs"]["gaussian_m512"]["moments"]["z"]
    assert max(z[0], z[2]) > 3
    # the narrowest runs' Hessians: quadratic at rest with N - 1 flat directions and the one
    # rate 12 M_2(rho*) = 16.56; the smooth students still converging
    h = s["runs"]["quadratic_m128"]["hessian"]
    assert h["verdict"] == "degenerate" and h["n_zero"] == 127
    assert h["lambda_max"] == pytest.approx(16.56, rel=1e-9)
    for a in ("gaussian", "tanh", "softplus"):
        assert s["runs"][f"{a}_m128"]["hessian"]["verdict"] == "not stationary"
        assert "hessian" not in s["runs"][f"{a}_m512"]
    assert s["checks"]["smooth_negative_curvature"]["value"] < 0.01
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"] and "claim" in on_disk
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000


@pytest.mark.slow
def test_quick_students_share_the_initial_draw(quick):
    # the same seed and width give the same full-support start for every activation
    out, _ = quick
    first = {}
    for a in ("gaussian", "tanh", "softplus"):
        snaps = sorted((out / "runs" / f"{a}_m128" / "snapshots").glob("*.npz"))
        first[a] = np.load(snaps[0])["w"]
    np.testing.assert_array_equal(first["gaussian"], first["tanh"])
    np.testing.assert_array_equal(first["gaussian"], first["softplus"])


@pytest.mark.slow
def test_resume_reuses_completed_subruns(quick, resume_after_interrupt):
    out, s = quick
    again, _ = resume_after_interrupt(out, "softplus_m512", lambda: run(out, resume=True))
    assert again["checks"] == s["checks"]


@pytest.mark.slow
def test_checks_fail_when_the_run_is_too_short(tmp_path):
    # t = 40: the loss has not dropped by 1e-4 and the odd moments are still off
    s = run(
        tmp_path,
        "experiment.params.activations=[tanh]",
        "experiment.params.widths=[64, 2048]",
        "dynamics.steps=40",
        "record.every=10",
    )
    assert s["checks"]["loss_tanh_m64"]["passed"] is False
    assert s["checks"]["symmetry_tanh_m2048"]["passed"] is False
    assert s["passed"] is False
