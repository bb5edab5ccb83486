"""`boltzmann_fixed_point`: the plan (a PDE run over the particles' time span, the
equilibrium computation), the checks on doctored statistics (negative controls), bad
parameters refused; the quick run in the slow tier."""

import pytest

from mfnn import ConfigError, config
from mfnn.experiments.boltzmann_fixed_point import (
    BOLTZMANN_FIXED_POINT,
    _cdf_of_density,
    _cdf_of_points,
    evaluate,
    ks,
    plan,
)
from mfnn.study import Call, Run, Study

EXP = BOLTZMANN_FIXED_POINT


def load(*overrides, quick=True):
    extra = list(EXP.quick) if quick else []
    return config.load(EXP.default_config(), extra + list(overrides))


def study(tmp_path, *overrides):
    cfg = load(*overrides)
    return Study(EXP, cfg, EXP.validate_params(cfg), tmp_path, progress=False)


def test_plan_runs_the_pde_over_the_particles_time_span(tmp_path):
    runs = plan(study(tmp_path))
    assert isinstance(runs["equilibrium"], Call) and isinstance(runs["pde"], Run)
    pde, parts = runs["pde"].config, runs["particles"].config
    assert pde.dynamics.kind == "pde" and parts.dynamics.kind == "gradient_flow"
    t_pde = pde.dynamics.steps * pde.dynamics.dt
    assert t_pde == pytest.approx(parts.dynamics.steps * parts.dynamics.dt)
    assert pde.dynamics.langevin.beta == parts.dynamics.langevin.beta
    assert pde.dynamics.grid.cells == 240  # the quick override


def good_stats():
    return dict(
        residual=1e-14, sweep_residual=1e-13, free_energy_star=-0.01, pde_min_gap=1e-4,
        pde_gap_ratio=0.003, ks_pde=0.005, ks_particles=0.03, energy_gap=0.05, slope=-1.1,
        monotone=True,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("doctored", "fails"),
    [
        ({}, None),
        ({"residual": 1e-6}, "fixed_point_residual"),
        ({"pde_min_gap": -1e-3}, "minimum_along_flow"),  # the flow went below the minimum
        ({"pde_gap_ratio": 0.2}, "pde_gap"),
        ({"ks_pde": 0.05}, "ks_pde"),
        ({"ks_particles": 0.2}, "ks_particles"),
        ({"energy_gap": 0.5}, "particles_energy"),
        ({"slope": 0.2}, "risk_exponent"),
        ({"monotone": False}, "risk_exponent"),
    ],
)
def test_each_check_fails_on_doctored_statistics(tmp_path, doctored, fails):
    s = study(tmp_path, "experiment.params.gap_ratio=0.01", "experiment.params.ks_pde=0.01")
    checks = evaluate(s, good_stats() | doctored)
    failed = {k for k, c in checks.items() if not c["passed"]}
    assert failed == ({fails} if fails else set()), checks


def test_ks_of_a_sample_against_its_density():
    import numpy as np
    from scipy.special import ndtr

    edges = np.linspace(-5, 5, 401)
    rho = np.diff(ndtr(edges)) / 0.025
    cdf = _cdf_of_density(rho, 0.025)
    pts = np.random.default_rng(0).standard_normal(4000)
    assert ks(_cdf_of_points(pts, edges), cdf) < 1.63 / np.sqrt(4000)  # 99 % KS quantile
    assert ks(_cdf_of_points(pts + 0.5, edges), cdf) > 0.15  # a shifted sample fails


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.high=-6", "experiment.params.high"),
        ("model.bias=true", "`model`"),
        ("data.population.method=monte_carlo", "data.population"),
        ("objective.l2=0", "objective.l2"),
    ],
)
def test_bad_parameters_name_the_field(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        cfg = load(override)
        EXP.validate_params(cfg)


@pytest.mark.slow
def test_quick_run_passes(tmp_path):
    summary = EXP.run(load(), tmp_path, progress=False)
    assert summary["passed"], {k: v for k, v in summary["checks"].items() if not v["passed"]}
