"""`mv_control`: the plan (one grid computation per resolution, no particle runs), the
params refused with the field named, the checks on doctored statistics (negative
controls); the quick run itself in the slow tier."""

import pytest

from mfnn import ConfigError, config
from mfnn.experiments.mv_control import MV_CONTROL, evaluate, plan
from mfnn.study import Call, Study

E = MV_CONTROL


def load(*overrides):
    return config.load(E.default_config(), list(E.quick) + list(overrides))


def study(tmp_path, *overrides):
    cfg = load(*overrides)
    return Study(E, cfg, E.validate_params(cfg), tmp_path, progress=False)


def test_plan_is_one_grid_computation_per_resolution(tmp_path):
    runs = plan(study(tmp_path))
    assert list(runs) == ["grid61", "grid121"]
    assert all(isinstance(r, Call) for r in runs.values())
    assert [r.inputs["cells"] for r in runs.values()] == [61, 121]


def good_stats():
    return {
        "cells": [61, 121],
        "w2_control": [0.027, 0.014],
        "kl_control": [4.4e-4, 1.1e-4],
        "w2_greedy": 0.04,
        "cost_rel_error": 0.003,
        "bridge_w2_max": 0.014,
        "bridge_cost_rel_error": 0.003,
        "drift_rel_l2_space_time": 0.43,
        "fixed_point_residual": 8e-11,
        "cfl_max": 0.02,
    }


@pytest.mark.parametrize(
    ("key", "value", "check"),
    [
        ("w2_control", [0.027, 0.2], "terminal_w2"),
        ("w2_control", [0.014, 0.014], "w2_refines"),
        ("kl_control", [1e-4, 1e-4], "kl_refines"),
        ("cost_rel_error", 0.2, "cost_identity"),
        ("bridge_w2_max", 0.3, "bridge_marginals"),
        ("bridge_cost_rel_error", 0.5, "bridge_cost"),
        ("drift_rel_l2_space_time", 0.01, "control_differs"),  # greedy drift = u*
        ("w2_greedy", 0.015, "greedy_farther"),  # greedy ends at mu* too
        ("fixed_point_residual", 1e-3, "fixed_point"),
        ("cfl_max", 1.5, "stable"),
    ],
)
def test_checks_pass_on_good_stats_and_fail_on_doctored_ones(tmp_path, key, value, check):
    s = study(tmp_path)
    good = evaluate(s, good_stats())
    assert {c for c in good} == {spec.name for spec in E.checks}
    assert all(c["passed"] for c in good.values()), good
    bad = evaluate(s, good_stats() | {key: value})
    assert bad[check]["passed"] is False


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.cells=[120,240]", "experiment.params"),
        ("experiment.params.cells=[241,121]", "experiment.params.cells"),
        ("experiment.params.cells=[121]", "experiment.params.cells"),
        ("experiment.params.times=[0.5,0.25]", "experiment.params.times"),
        ("experiment.params.times=[0.5,1.5]", "experiment.params.times"),
        ("experiment.params.tau=0", "experiment.params.tau"),
        ("experiment.params.refinement=1.5", "experiment.params.refinement"),
        ("experiment.params.nope=1", "experiment.params"),
        ("objective.l2=0.1", "objective.l2"),
        ("data.population.dim=2", "data.population"),
        ("model.bias=true", "model.bias"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        E.run(load(override), tmp_path, progress=False)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_quick_run_passes(tmp_path):
    s = E.run(load(), tmp_path, progress=False)
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert s["status"] == "completed" and s["passed"] and not failed, failed
    w2, kl = s["w2_control"], s["kl_control"]
    assert w2[1] < w2[0] and kl[1] < kl[0]
    assert s["w2_greedy"] > w2[1]
    for fig in s["figures"]:
        assert (tmp_path / fig).stat().st_size > 5000
