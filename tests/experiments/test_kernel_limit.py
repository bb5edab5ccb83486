"""`kernel_limit`: the plan (ntk replicas per width, mean-field runs of the same draws),
the checks on doctored statistics (negative controls), bad parameters refused; the quick
run in the slow tier."""

import pytest

from mfnn import ConfigError, config
from mfnn.experiments.kernel_limit import KERNEL_LIMIT, evaluate, plan
from mfnn.study import Study

EXP = KERNEL_LIMIT


def load(*overrides, quick=True):
    return config.load(EXP.default_config(), (list(EXP.quick) if quick else []) + list(overrides))


def study(tmp_path, *overrides):
    cfg = load(*overrides)
    return Study(EXP, cfg, EXP.validate_params(cfg), tmp_path, progress=False)


def test_plan_pairs_ntk_replicas_with_mean_field_runs_of_the_same_draws(tmp_path):
    runs = plan(study(tmp_path))
    assert sorted(runs) == sorted(
        [f"ntk-m{m}-r{r}" for m in (128, 512, 2048) for r in range(2)]
        + [f"mf-m{m}" for m in (128, 512, 2048)]
        + [f"alpha{a}" for a in (1, 16, 64, 256)]
    )
    a, b = runs["ntk-m512-r0"].config, runs["mf-m512"].config
    assert a.model.scaling == "ntk" and b.model.scaling == "mean_field"
    assert a.seed == b.seed and a.model.init == b.model.init  # the same particles
    assert runs["ntk-m512-r1"].config.seed != a.seed
    # the alpha route: one width, one draw (paired, f_0 = 0), alpha the only difference
    c, d = runs["alpha1"].config, runs["alpha256"].config
    assert (c.model.alpha, d.model.alpha) == (1.0, 256.0) and c.model.width == 128
    assert c.seed == d.seed and c.model.init.paired and c.model.activation == "erf"
    assert c.model.model_copy(update={"alpha": 256.0}) == d.model


def stats(gap, mf, alpha_gap=(0.2, 4e-3, 2.5e-4, 1.6e-5)):
    import numpy as np

    w = [128, 512, 2048]
    slope = float(np.polyfit(np.log(w), np.log(gap), 1)[0])
    mf_slope = float(np.polyfit(np.log(w), np.log(mf), 1)[0])
    fit = float(np.polyfit(np.log([16, 64, 256]), np.log(alpha_gap[1:]), 1)[0])
    return {"gap": gap, "slope": slope, "mean_field_slope": mf_slope, "mf_ratio": mf[-1] / gap[-1],
            "alpha_slope": fit, "alpha_departure": alpha_gap[0] / alpha_gap[-1]}  # fmt: skip


@pytest.mark.parametrize(
    ("gap", "mf", "fails"),
    [
        ([0.08, 0.04, 0.02], [0.05, 0.05, 0.05], set()),
        (
            [0.05, 0.05, 0.05],
            [0.05, 0.05, 0.05],
            {"gap_slope", "gap_decreasing", "mean_field_departs"},
        ),  # no kernel limit
        ([0.08, 0.02, 0.005], [0.05, 0.05, 0.05], {"gap_slope"}),  # m^-1: too fast
        ([0.08, 0.04, 0.02], [0.05, 0.025, 0.0125], {"mean_field_flat", "mean_field_departs"}),
    ],
)
def test_checks_fail_on_doctored_statistics(tmp_path, gap, mf, fails):
    checks = evaluate(study(tmp_path), stats(gap, mf))
    assert {k for k, c in checks.items() if not c["passed"]} == fails, checks


@pytest.mark.parametrize(
    ("alpha_gap", "fails"),
    [
        ((0.2, 4e-3, 1e-3, 2.5e-4), {"alpha_slope"}),  # 1/alpha: the paired cancellation lost
        ((0.2, 0.1, 0.1, 0.1), {"alpha_slope", "alpha_departs"}),  # no lazy limit
        ((1e-3, 4e-3, 2.5e-4, 1.6e-5), {"alpha_departs"}),  # alpha = 1 already lazy
    ],
)
def test_alpha_checks_fail_on_doctored_statistics(tmp_path, alpha_gap, fails):
    good = ([0.08, 0.04, 0.02], [0.05, 0.05, 0.05])
    checks = evaluate(study(tmp_path), stats(*good, alpha_gap=alpha_gap))
    assert {k for k, c in checks.items() if not c["passed"]} == fails, checks


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("model.init.b.law=uniform", "model.init"),
        ("model.activation=tanh", "model.activation"),
        ("data.n_test=0", "data.n_test"),
        ("dynamics.integrator=heun", "dynamics.kind"),
    ],
)
def test_bad_parameters_name_the_field(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        EXP.validate_params(load(override))


@pytest.mark.slow
def test_quick_run_passes(tmp_path):
    summary = EXP.run(load(), tmp_path, progress=False)
    assert summary["passed"], {k: v for k, v in summary["checks"].items() if not v["passed"]}
