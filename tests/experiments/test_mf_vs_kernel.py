"""`mf_vs_kernel`: the plan (mean-field and ntk runs on the same data per (d, n)), the
interpolated sample size n_eps, the checks on doctored statistics (negative controls), bad
parameters refused; the quick run in the slow tier."""

import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.experiments.mf_vs_kernel import MF_VS_KERNEL, evaluate, n_at, plan
from mfnn.study import Study

EXP = MF_VS_KERNEL


def load(*overrides, quick=True):
    return config.load(EXP.default_config(), (list(EXP.quick) if quick else []) + list(overrides))


def study(tmp_path, *overrides, quick=True):
    cfg = load(*overrides, quick=quick)
    return Study(EXP, cfg, EXP.validate_params(cfg), tmp_path, progress=False)


def test_plan_runs_both_scalings_on_the_same_data(tmp_path):
    runs = plan(study(tmp_path, quick=False))
    dims, sizes = (20, 40), (64, 128, 256, 512, 1024, 2048)
    want = {f"{s}-d{d}-n{n}" for s in ("mf", "ntk") for d in dims for n in sizes}
    assert set(runs) == want
    a, b = runs["mf-d40-n256"].config, runs["ntk-d40-n256"].config
    assert a.model.scaling == "mean_field" and b.model.scaling == "ntk"
    assert a.seed == b.seed and a.data == b.data  # the same draw of data and particles
    assert a.data.inputs.dim == 40 and a.data.n_train == 256
    assert a.data.teacher.w == [[1.0] + [0.0] * 39]
    assert a.model.init.w.std == pytest.approx(1 / np.sqrt(40)) and a.model.init.paired
    # quick: mean-field runs only
    quick = {f"mf-d{d}-n{n}" for d in (12, 24) for n in (64, 256, 1024)}
    assert set(plan(study(tmp_path))) == quick


def test_n_at_interpolates_in_log_log():
    sizes = [100, 400, 1600]
    # errors 1, 0.1, 0.01 (slope -1/log4 per decade): 0.1 is reached exactly at 400
    assert n_at(sizes, [1.0, 0.1, 0.01], 0.1) == (pytest.approx(400.0), True)
    # geometric mean between grid points: sqrt(0.1 * 0.01) at sqrt(400 * 1600) = 800
    assert n_at(sizes, [1.0, 0.1, 0.01], np.sqrt(1e-3))[0] == pytest.approx(800.0)
    assert n_at(sizes, [1.0, 0.5, 0.3], 0.1) == (1600.0, False)  # a lower bound
    assert n_at(sizes, [0.05, 0.01, 0.001], 0.1) == (100.0, True)  # an upper bound


def _stats(mf, kernel, sizes=(64, 256, 1024), dims=(12, 24), reached=True):
    per = {}
    for d, m, k in zip(dims, mf, kernel, strict=True):
        n_mf, ok = n_at(sizes, m, 0.1)
        n_k, _ = n_at(sizes, k, 0.1)
        per[str(d)] = {
            "relative_test_error": {"mean_field": m, "kernel": k},
            "n_ratio": n_k / n_mf,
            "n_eps_mean_field_reached": ok and reached,
            "ratio_at_n_max": m[-1] / k[-1],
        }
    return {"dims": list(dims), "sizes": list(sizes), "per_dim": per}


GOOD_MF = ([0.17, 0.007, 0.001], [0.5, 0.05, 0.007])
GOOD_K = ([0.45, 0.06, 0.013], [0.72, 0.33, 0.048])


@pytest.mark.parametrize(
    ("mf", "kernel", "fails"),
    [
        (GOOD_MF, GOOD_K, set()),
        # features do not help: the network is the kernel
        (GOOD_K, GOOD_K, {"features_help_d12", "features_help_d24", "sample_ratio_d12",
                          "sample_ratio_d24", "curse_of_dimension"}),
        # the network does not learn at d = 24
        (([0.17, 0.007, 0.001], [0.9, 0.8, 0.7]), GOOD_K,
         {"mf_learns_d24", "features_help_d24", "sample_ratio_d24", "curse_of_dimension"}),
        # the kernel's task gets easier with d (no curse of dimensionality)
        ((GOOD_MF[0], GOOD_MF[0]), (GOOD_K[1], GOOD_K[0]), {"curse_of_dimension"}),
    ],
)  # fmt: skip
def test_checks_fail_on_doctored_statistics(tmp_path, mf, kernel, fails):
    checks = evaluate(study(tmp_path), _stats(mf, kernel))
    assert {k for k, c in checks.items() if not c["passed"]} == fails, checks


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("model.activation=tanh", "model.activation"),
        ("data.inputs.law=uniform", "data.inputs.law"),
        ("data.n_test=10", "data.n_test"),
        ("model.init.b.law=uniform", "model.init"),
        ("dynamics.kind=sgd", "dynamics.kind"),
    ],
)
def test_bad_parameters_name_the_field(tmp_path, override, field):
    extra = ["dynamics.batch_size=8"] if override.startswith("dynamics.kind") else []
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        EXP.validate_params(load(override, *extra))


@pytest.mark.slow
def test_quick_run_passes(tmp_path):
    summary = EXP.run(load(), tmp_path, progress=False)
    assert summary["passed"], {k: v for k, v in summary["checks"].items() if not v["passed"]}
