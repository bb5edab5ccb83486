"""`langevin_temperature`: the plan (beta and lambda per run), the checks on doctored
statistics (negative controls), bad parameters refused with the field named; in the slow
tier the quick run, resume, runs too short, and lambda held large. The window statistics
are tested in tests/diagnostics/test_gibbs.py."""

import json

import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.experiments.langevin_temperature import LANGEVIN_TEMPERATURE, evaluate, plan
from mfnn.study import Study

TEMP = LANGEVIN_TEMPERATURE


def run_name(beta):
    return f"beta{beta:g}"


def load(*overrides, quick=True):
    extra = list(TEMP.quick) if quick else []
    return config.load(TEMP.default_config(), extra + list(overrides))


def run(tmp_path, *overrides, resume=False, quick=True):
    return TEMP.run(load(*overrides, quick=quick), tmp_path, resume=resume, progress=False)


def study(tmp_path, *overrides):
    cfg = load(*overrides)
    return Study(TEMP, cfg, TEMP.validate_params(cfg), tmp_path, progress=False)


# ------------------------------------------------------------------ default tier


def test_run_names_are_distinct(tmp_path):
    runs = plan(study(tmp_path, "experiment.params.betas=[0.5, 10, 300, 1e6]"))
    assert list(runs) == ["beta0.5", "beta10", "beta300", "beta1e+06"]


def test_plan_lowers_lambda_with_beta_and_keeps_the_start(tmp_path):
    s = study(tmp_path)
    runs = plan(s)
    assert list(runs) == [run_name(b) for b in (10.0, 30.0, 100.0, 300.0)]
    for b, r in zip((10.0, 30.0, 100.0, 300.0), runs.values(), strict=True):
        assert r.config.dynamics.langevin.beta == b
        assert r.config.objective.l2 == pytest.approx(0.1 * (b / 10) ** -0.5)
        assert r.config.seed == s.config.seed  # common random numbers
        assert r.config.model == s.config.model
    fixed = plan(study(tmp_path, "experiment.params.l2_exponent=0"))
    assert {r.config.objective.l2 for r in fixed.values()} == {0.1}


def stats(risk, energy=None, quad=1e-4):
    betas = [10.0, 30.0, 100.0, 300.0]
    slope = float(np.polyfit(np.log(betas), np.log(risk), 1)[0])
    energy = list(energy or np.asarray(risk) + 0.01)
    return {
        "betas": betas,
        "risk": list(risk),
        "energy": energy,
        "slope": slope,
        "quadrature_rel": quad,
    }


def test_checks_pass_on_a_falling_risk_and_fail_on_negative_controls(tmp_path):
    s = study(tmp_path)
    good = evaluate(s, stats([2e-3, 6e-4, 1.5e-4, 8e-5]))
    assert set(good) == {"slope", "ratio", "quadrature_resolved"}
    assert all(c["passed"] for c in good.values()), good
    # the risk stops falling (lambda held large: the regularized minimizer's floor)
    flat = evaluate(s, stats([2e-3, 8.4e-4, 5.4e-4, 6.3e-4]))
    assert not flat["ratio"]["passed"]
    assert evaluate(s, stats([1e-3, 9e-4, 8e-4, 7.5e-4]))["slope"]["passed"] is False
    # an unresolved quadrature
    assert not evaluate(s, stats([2e-3, 6e-4, 1.5e-4, 8e-5], quad=0.5))["quadrature_resolved"][
        "passed"
    ]
    # lambda fixed: the energy must not increase with beta
    assert "energy_monotone" not in good
    fixed = study(tmp_path, "experiment.params.l2_exponent=0")
    risk = [2e-3, 8e-4, 5e-4, 6e-4]
    ok = evaluate(fixed, stats(risk, energy=[0.05, 0.02, 0.008, 0.005]))
    assert ok["energy_monotone"]["passed"] is True
    bad = evaluate(fixed, stats(risk, energy=[0.05, 0.02, 0.03, 0.005]))
    assert bad["energy_monotone"]["passed"] is False and bad["energy_monotone"]["value"] == 1.5


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.betas=[1000, 300, 100, 30, 10]", "experiment.params.betas"),
        ("experiment.params.betas=[50, 50, 50, 50]", "experiment.params.betas"),
        ("experiment.params.betas=[10, 100, 1000]", "experiment.params.betas"),
        ("experiment.params.betas=[10, 12, 14, 16]", "experiment.params.betas"),
        ("experiment.params.betas=[0, 10, 100, 1000]", "experiment.params.betas"),
        ("experiment.params.l2_exponent=2", "experiment.params.l2_exponent"),
        ("experiment.params.average=0", "experiment.params.average"),
        ("experiment.params.ratio=0.5", "experiment.params.ratio"),
        ("experiment.params.slope_margin=-1", "experiment.params.slope_margin"),
        ("experiment.params.window=0.5", "experiment.params"),
        ("objective.l2=0", "objective.l2"),
        ("dynamics.langevin.schedule=log", "dynamics.langevin.schedule"),
        ("dynamics.integrator=euler", "dynamics.integrator"),
        ("data.population.method=monte_carlo", "data.population"),
        ("model.scaling=ntk", "model.scaling"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute


# ------------------------------------------------------------------ slow tier


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("langevin_temperature_quick")
    return out, run(out)


@pytest.mark.slow
def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed" and s["passed"]
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    assert s["betas"] == [10.0, 30.0, 100.0, 300.0]
    assert set(s["checks"]) == {"slope", "ratio", "quadrature_resolved"} | {
        f"{run_name(b)}/energy_identity" for b in s["betas"]
    }
    assert not s["informational"]
    # lambda_i = 0.1 (beta_i / 10)^(-1/2), one run per beta
    lams = [s["runs"][run_name(b)]["l2"] for b in s["betas"]]
    np.testing.assert_allclose(lams, [0.1 * (b / 10) ** -0.5 for b in s["betas"]])
    # the slope in summary.json is the fit of the reported risks
    fit = np.polyfit(np.log(s["betas"]), np.log(s["risk"]), 1)[0]
    assert s["slope"] == pytest.approx(fit) and s["checks"]["slope"]["value"] == s["slope"]
    lo, hi = s["slope_fit"]["ci"]
    assert lo < s["slope"] < hi
    assert s["risk"][0] / s["risk"][-1] == pytest.approx(s["checks"]["ratio"]["value"])
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"] and "claim" in on_disk
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000


@pytest.mark.slow
def test_runs_share_the_start(quick):
    out, _ = quick
    first = {}
    for b in (10.0, 300.0):
        snaps = sorted((out / "runs" / run_name(b) / "snapshots").glob("*.npz"))
        first[b] = np.load(snaps[0])["w"]
    np.testing.assert_array_equal(first[10.0], first[300.0])


@pytest.mark.slow
def test_resume_reuses_completed_subruns(quick, resume_after_interrupt):
    out, s = quick
    again, _ = resume_after_interrupt(out, "beta300", lambda: run(out, resume=True))
    assert again["checks"] == s["checks"]


@pytest.mark.slow
def test_checks_fail_when_the_runs_are_too_short(tmp_path):
    # t = 0.3: every run still carries the start's risk, whatever its temperature
    s = run(tmp_path, "dynamics.steps=15", "record.every=5")
    assert s["checks"]["slope"]["passed"] is False
    assert s["checks"]["ratio"]["passed"] is False
    assert s["passed"] is False


@pytest.mark.slow
@pytest.mark.full
def test_full_experiment_checks_hold_and_fail_with_lambda_fixed_large(tmp_path):
    s = run(tmp_path / "default", quick=False)
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert s["status"] == "completed" and not failed, failed
    assert s["monotone"]
    # the premise removed: lambda = 0.1 at every beta, the risk stops falling at the
    # lambda-regularized minimizer's level
    fixed = run(tmp_path / "fixed", "experiment.params.l2_exponent=0", quick=False)
    assert fixed["checks"]["ratio"]["passed"] is False
    assert fixed["checks"]["slope"]["passed"] is False
    assert fixed["passed"] is False
    # what does hold at fixed lambda: the energy E = R + (lambda/2) M_2 falls with beta
    assert fixed["checks"]["energy_monotone"]["passed"] is True
