"""`langevin_gibbs`: the checks on doctored statistics (exact draws pass, a too-short run
and the Gibbs law without the risk term fail), bad parameters refused with the field
named; behind `slow`: the quick run, a run too short to pass, resume and the full run.
The statistics' known answers are in tests/diagnostics/test_gibbs.py."""

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.diagnostics import coordinate_stats, gaussian_free_energy
from mfnn.experiments.langevin_gibbs import LANGEVIN_GIBBS, GibbsParams, evaluate

GIBBS = LANGEVIN_GIBBS


def load(*overrides):
    return config.load(GIBBS.default_config(), list(GIBBS.quick) + list(overrides))


def run(tmp_path, *overrides, resume=False):
    return GIBBS.run(load(*overrides), tmp_path, resume=resume, progress=False)


# ------------------------------------------------------------------ checks on statistics

PARAMS = GibbsParams(widths=(256, 1024), gaussian={"width": 2048, "steps": 1200, "every": 40})
V_EM = 1.0 / (1.0 - 0.01 / 2)  # beta = lambda = 1, dt = 0.01
F_STAR = gaussian_free_energy(2, 1.0, 1.0, 1.0)


def statistics(w: np.ndarray) -> dict:
    """The statistics `evaluate` reads, with the Gaussian part's particles ``w`` and a
    teacher part at its quick-run values (KS well inside the tolerance, bookkeeping errors
    at round-off, the control far)."""
    coords = coordinate_stats(w, V_EM)
    fe = {"F_star": F_STAR, "plateau_mean": F_STAR + 0.008, "plateau_rel_spread": 0.07}
    fe |= {"plateau_start": 6.0, "knn_bias": 0.0025, "knn_sd": 0.043, "draws": 16}
    gauss = {"v_em": V_EM, "em_bias_over_se": (V_EM - 1.0) / max(coords["se_var"])}
    runs = {"gaussian": gauss | {"coordinates": coords, "free_energy": fe}}
    for m, ks in ((256, 0.036), (1024, 0.019)):
        runs[f"teacher_m{m}"] = {
            "width": m,
            "ks": ks,
            "ks_tolerance": 1.95 / math.sqrt(m),
            "ks_l2_only_gaussian": 0.36,
            "potential_drift_rel_err": 2e-15,
            "l2_term_rel_err": 1e-16,
        }
    return {"runs": runs}


def checks(stats: dict) -> dict:
    return evaluate(SimpleNamespace(params=PARAMS), stats)


def test_exact_draws_of_the_gibbs_law_pass():
    w = np.random.default_rng(2).normal(0.0, math.sqrt(V_EM), (2048, 2))
    c = checks(statistics(w))
    assert all(v["passed"] for v in c.values()), c
    assert set(c) >= {"gaussian_mean_0", "gaussian_var_1", "ks_m1024", "control_l2_only_gaussian"}


def test_a_run_too_short_fails_the_gaussian_checks():
    # the Ornstein-Uhlenbeck law at lambda T = 0.5 from uniform[1, 3]^2: mean 2 e^-0.5 = 1.2,
    # variance e^-1 / 3 + (1 - e^-1) = 0.75 instead of 1
    rng = np.random.default_rng(3)
    w0 = rng.uniform(1.0, 3.0, (2048, 2))
    w = math.exp(-0.5) * w0 + math.sqrt(1 - math.exp(-1.0)) * rng.normal(size=w0.shape)
    c = checks(statistics(w))
    for i in (0, 1):
        assert not c[f"gaussian_mean_{i}"]["passed"] and not c[f"gaussian_var_{i}"]["passed"]


def test_the_law_without_the_risk_term_fails_and_the_control_has_power():
    w = np.random.default_rng(2).normal(0.0, math.sqrt(V_EM), (2048, 2))
    good = statistics(w)
    # particles distributed as N(0, 1/(beta lambda)): their KS is the control's value
    bad = copy.deepcopy(good)
    bad["runs"]["teacher_m1024"]["ks"] = bad["runs"]["teacher_m1024"]["ks_l2_only_gaussian"]
    assert checks(bad)["ks_m1024"]["passed"] is False
    # a KS test that could not tell rho* from the law without dR/dmu: the control fails
    weak = copy.deepcopy(good)
    weak["runs"]["teacher_m1024"]["ks_l2_only_gaussian"] = 0.03
    assert checks(weak)["control_l2_only_gaussian"]["passed"] is False
    # a free energy off its minimum by more than the kNN calibration allows
    off = copy.deepcopy(good)
    off["runs"]["gaussian"]["free_energy"]["plateau_mean"] = F_STAR + 0.2
    assert checks(off)["gaussian_free_energy_minimum"]["passed"] is False


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.widths=[4]", "experiment.params.widths"),
        ("experiment.params.widths=[256, 256]", "experiment.params.widths"),
        ("experiment.params.ks_c=0", "experiment.params.ks_c"),
        ("experiment.params.grid=1000", "experiment.params.grid"),
        ("experiment.params.plateau=1.5", "experiment.params.plateau"),
        ("experiment.params.calibration_draws=1", "experiment.params.calibration_draws"),
        ("experiment.params.tolerance=1", "experiment.params"),
        ("experiment.params.gaussian.dim=9", "experiment.params.gaussian.dim"),
        ("experiment.params.gaussian.low=5", "experiment.params.gaussian.high"),
        ("experiment.params.gaussian.dt=2", "experiment.params.gaussian.dt"),
        ("experiment.params.gaussian.beta=-1", "experiment.params.gaussian.beta"),
        ("experiment.params.gaussian.size=3", "experiment.params.gaussian"),
        ("objective.l2=0", "objective.l2"),
        ("dynamics.langevin.schedule=log", "dynamics.langevin.schedule"),
        ("dynamics.integrator=euler", "dynamics.integrator"),
        ("model.bias=true", "model.bias"),
        ("data.population.method=monte_carlo", "data.population"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute


# ------------------------------------------------------------------ the experiment (slow)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("langevin_gibbs_quick")
    return out, run(out)


@pytest.mark.slow
def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed" and s["passed"]
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    names = {f"gaussian_{k}_{i}" for k in ("mean", "var") for i in (0, 1)}
    names |= {f"gaussian_{k}" for k in ("em_bias", "free_energy_flat", "free_energy_minimum")}
    for m in (256, 1024):
        names |= {f"ks_m{m}", f"potential_is_drift_m{m}", f"first_variation_has_l2_m{m}"}
    runs = {"gaussian", "teacher_m256", "teacher_m1024"}
    assert set(s["checks"]) == names | {"control_l2_only_gaussian"} | {
        f"{r}/energy_identity" for r in runs
    }
    g = s["runs"]["gaussian"]
    assert g["lambda_T"] == pytest.approx(12.0)
    assert min(g["initial_mean"]) > 1.9  # a shifted start
    assert g["v_em"] == pytest.approx(1.0 / (1.0 - 0.005))
    # the drift step of an OU process: relative energy residual exactly lambda dt / 2
    assert s["checks"]["gaussian/energy_identity"]["value"] == pytest.approx(0.005, rel=1e-9)
    # the KS tolerance is stricter at the larger width
    assert s["runs"]["teacher_m1024"]["ks_tolerance"] < s["runs"]["teacher_m256"]["ks_tolerance"]
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000


@pytest.mark.slow
def test_free_energy_is_recorded_as_energy_minus_entropy_over_beta(quick):
    out, _ = quick
    mt = np.genfromtxt(out / "runs" / "gaussian" / "metrics.csv", delimiter=",", names=True)
    np.testing.assert_allclose(mt["free_energy"], mt["energy"] - mt["entropy"] / mt["beta"])


@pytest.mark.slow
def test_resume_reuses_completed_subruns(quick, resume_after_interrupt):
    out, s = quick
    again, after = resume_after_interrupt(out, "teacher_m256", lambda: run(out, resume=True))
    assert set(after) == {"gaussian", "teacher_m256", "teacher_m1024"}
    assert again["checks"] == s["checks"]


@pytest.mark.slow
def test_checks_fail_when_the_runs_are_too_short(tmp_path):
    # Gaussian part: lambda T = 0.5 (mean 1.2, variance 0.75); teacher part: t = 0.2
    s = run(
        tmp_path,
        "experiment.params.gaussian.steps=50",
        "experiment.params.gaussian.every=10",
        "dynamics.steps=20",
        "record.every=10",
        "record.snapshot_every=10",
    )
    c = s["checks"]
    for i in (0, 1):
        assert c[f"gaussian_mean_{i}"]["passed"] is False
        assert c[f"gaussian_var_{i}"]["passed"] is False
    assert c["gaussian_free_energy_flat"]["passed"] is False
    assert c["ks_m1024"]["passed"] is False
    # the bookkeeping checks do not depend on the run length
    assert c["potential_is_drift_m1024"]["passed"] and c["first_variation_has_l2_m1024"]["passed"]
    assert s["passed"] is False


@pytest.mark.slow
@pytest.mark.full
def test_full_experiment_checks_hold(tmp_path):
    s = GIBBS.run(config.load(GIBBS.default_config()), tmp_path, progress=False)
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert s["status"] == "completed" and not failed, failed
    assert set(s["runs"]) == {"gaussian", "teacher_m256", "teacher_m4096"}
