"""`pde_vs_particles`: the plan (a pde run and particle runs per case), bad parameters
refused with the field named, the checks on doctored statistics (negative controls); in
the slow tier the quick run. W2 itself is tested in tests/pde/test_compare.py."""

import pytest

from mfnn import ConfigError, config
from mfnn.experiments.pde_vs_particles import PDE_VS_PARTICLES, evaluate, plan, run_name
from mfnn.study import Study

EXP = PDE_VS_PARTICLES


def load(*overrides, quick=True):
    extra = list(EXP.quick) if quick else []
    return config.load(EXP.default_config(), extra + list(overrides))


def study(tmp_path, *overrides):
    cfg = load(*overrides)
    return Study(EXP, cfg, EXP.validate_params(cfg), tmp_path, progress=False)


def test_plan_has_a_pde_run_and_independent_particle_runs_per_case(tmp_path):
    s = study(tmp_path)
    runs = plan(s)
    p = s.params
    assert len(runs) == len(p.cases) * (1 + p.replicas * len(p.widths))
    seeds = set()
    for case in p.cases:
        pde = runs[f"pde-{case}"].config
        assert pde.dynamics.kind == "pde" and pde.record.snapshot_every == 125
        for r in range(p.replicas):
            for m in p.widths:
                c = runs[run_name(case, m, r)].config
                assert c.dynamics.kind == "gradient_flow" and c.model.width == m
                assert c.record.snapshot_every == pde.record.snapshot_every
                assert (c.dynamics.domain is None) == (case != "ball")
                assert (c.dynamics.birth_death is None) == (case != "birth_death")
                seeds.add((case, c.seed))
    assert len(seeds) == len(p.cases) * p.replicas * len(p.widths)  # independent draws
    ball = runs["pde-ball"].config
    assert ball.dynamics.domain.radius == 1.0 and ball.dynamics.grid.low is None
    assert ball.dynamics.grid.cells == 40  # h = 0.05 on [-1, 1], as the free grid's h
    assert runs["pde-free"].config.dynamics.grid.cells == 200


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.widths=[300, 100, 30]", "experiment.params.widths"),
        ("experiment.params.widths=[30, 100]", "experiment.params.widths"),
        ("experiment.params.cases=[free, free]", "experiment.params.cases"),
        ("experiment.params.cases=[torus]", "experiment.params.cases"),
        ("experiment.params.times=[0.35]", "experiment.params.times"),
        ("experiment.params.times=[2.0]", "experiment.params.times"),
        ("experiment.params.replicas=0", "experiment.params.replicas"),
        ("experiment.params.grid.cell_width=0", "experiment.params.grid.cell_width"),
        ("experiment.params.w2_slope_tolerance=0.7", "experiment.params.w2_slope_tolerance"),
        ("model.bias=true", "model.bias"),
        ("data.population.method=monte_carlo", "data.population"),
        ("dynamics.birth_death.rate=1.0", "dynamics.domain"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        EXP.run(load(override), tmp_path, progress=False)
    assert not (tmp_path / "runs").exists()  # refused before any compute


def stats(w2_rows, gap_rows, times=("0", "0.5", "1"), widths=(30, 100, 300)):
    """Statistics of one case repeated for every case; slopes fitted from the rows."""
    import numpy as np

    def slope(rows):
        return float(np.polyfit(np.log(widths), np.log(rows), 1)[0])

    c = {
        "w2": {t: list(w2_rows) for t in times},
        "loss_gap": {t: list(gap_rows) for t in times},
        "slopes": {
            "w2": {t: slope(w2_rows) for t in times},
            "loss_gap": {t: slope(gap_rows) for t in times},
        },
    }
    cases = {k: c for k in ("free", "ball", "birth_death")}
    return {"widths": list(widths), "times": [0.0, 0.5, 1.0], "cases": cases}


def test_checks_pass_on_the_claimed_rates_and_fail_on_doctored_statistics(tmp_path):
    s = study(tmp_path)
    m = [30, 100, 300]
    good = evaluate(s, stats([0.5 * k**-0.5 for k in m], [0.05 * k**-0.5 for k in m]))
    assert all(c["passed"] for c in good.values()), good
    assert len(good) == 3 * (2 * 2 + 2)  # per case: 2 slopes x 2 times, small, decreasing
    # a discretization floor: W stops falling (slope ~ 0), and too large at m_max
    floor = evaluate(s, stats([0.2, 0.19, 0.19], [0.05 * k**-0.5 for k in m]))
    assert not floor["w2_slope_free_t1"]["passed"] and not floor["w2_slope_ball_t1"]["passed"]
    assert not floor["w2_small_ball"]["passed"]
    assert not floor["w2_decreasing_birth_death"]["passed"]
    # W2 falling too fast (m^-1: e.g. particles placed at quantiles, not sampled)
    fast = evaluate(s, stats([1.0 / k for k in m], [0.05 * k**-0.5 for k in m]))
    assert not fast["w2_slope_free_t0.5"]["passed"]
    # a risk gap that does not close (a biased PDE) or closes at m^-2
    flat = evaluate(s, stats([0.5 * k**-0.5 for k in m], [0.01, 0.01, 0.009]))
    assert not flat["loss_gap_slope_birth_death_t1"]["passed"]
    steep = evaluate(s, stats([0.5 * k**-0.5 for k in m], [k**-2.0 for k in m]))
    assert not steep["loss_gap_slope_free_t1"]["passed"]
    # a sub-run that diverged before a statistic time
    lost = evaluate(s, {"missing": ["pde-ball (t = [1.0]; diverged)"]})
    assert list(lost) == ["run_completed"] and not lost["run_completed"]["passed"]


# ------------------------------------------------------------------ slow tier


@pytest.mark.slow
def test_quick_run_checks_hold(tmp_path):
    s = EXP.run(load(), tmp_path, progress=False)
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert s["status"] == "completed" and not failed, failed
    assert {"pde-free/mass_conservation", "pde-ball/positivity"} <= set(s["checks"])
    for case in ("free", "ball", "birth_death"):
        w = s["cases"][case]["w2"]["1"]
        assert w[-1] < w[0]
