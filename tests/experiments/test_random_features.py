"""`random_features`: the least-squares reference, the bound ratio, the quick checks, the
sharper quadratic constant, checks that fail when the premise is removed, resume, and bad
parameters refused with the field named."""

import doctest
import importlib
import json
import math
import shutil

import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.experiments.random_features import RANDOM_FEATURES as RF
from mfnn.experiments.random_features import bound_ratio, least_squares


def run(out, *overrides, resume=False):
    cfg = config.load(RF.default_config(), list(RF.quick) + list(overrides))
    return RF.run(cfg, out, resume=resume, progress=False)


def test_docstring_examples():
    mod = importlib.import_module("mfnn.experiments.random_features")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_least_squares_is_the_projection_of_a0_on_the_minimizers():
    # n < m: many minimizers, all with R* = 0; the one returned is a_0 + a vector in the row
    # space of Phi (the limit of the flow) and is the closest to a_0
    rng = np.random.default_rng(0)
    n, m = 6, 15
    phi = rng.standard_normal((n, m))
    y, a0 = rng.standard_normal(n), rng.standard_normal(m)
    s = least_squares(phi, y, a0)
    assert s["r_star"] < 1e-25 and s["rel_gradient"] < 1e-12
    delta = s["a_star"] - a0
    proj = phi.T @ np.linalg.lstsq(phi.T, delta, rcond=None)[0]  # onto the row space
    np.testing.assert_allclose(delta, proj, atol=1e-12)
    null = np.linalg.svd(phi)[2][n:]  # another minimizer is farther from a_0
    other = s["a_star"] + null[0]
    assert np.mean((a0 - other) ** 2) > s["dist2"]
    # L is the top eigenvalue of the Hessian Phi^T Phi / (n m) in L2(rho_0)
    assert s["L"] == pytest.approx(np.linalg.norm(phi, 2) ** 2 / (n * m))


def test_least_squares_with_noise_is_the_normal_equation_solution():
    rng = np.random.default_rng(1)
    n, m = 40, 8
    phi = rng.standard_normal((n, m))
    y = rng.standard_normal(n)
    s = least_squares(phi, y, np.zeros(m))
    a_star = np.linalg.solve(phi.T @ phi / m, phi.T @ y)  # (Phi/m)^T (Phi a/m - y) = 0
    np.testing.assert_allclose(s["a_star"], a_star, rtol=1e-10)
    assert s["r_star"] == pytest.approx(0.5 * np.mean((phi @ a_star / m - y) ** 2))


def test_gradient_descent_obeys_the_bound_and_the_quadratic_constant():
    # the statement itself, on a random convex quadratic in the L2(rho_0) geometry:
    # a <- a - dt (1/n) Phi^T r with dt L <= 1 gives t (R - R*) <= |a_0 - a*|^2 / (2 e)
    rng = np.random.default_rng(2)
    n, m = 30, 20
    phi = rng.standard_normal((n, m)) * np.geomspace(1, 1e-3, m)
    y = phi @ rng.standard_normal(m) / m
    a = rng.standard_normal(m)
    s = least_squares(phi, y, a)
    dt = 1.0 / s["L"]
    risks = []
    for _ in range(3000):
        risks.append(0.5 * np.mean((phi @ a / m - y) ** 2))
        a = a - dt * phi.T @ (phi @ a / m - y) / n
    t = dt * np.arange(len(risks))
    ratio = bound_ratio(t, np.array(risks), s["r_star"], s["dist2"])
    assert ratio.max() <= 1 / (2 * math.e) + 1e-12
    assert ratio.max() > 0.01  # not vacuous


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("random_features_quick")
    return out, run(out)


def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed"
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    assert set(s["checks"]) == {
        "bound",
        "a_star_converged",
        "step_size",
        "velocity_convention",
        "frozen_features",
    }
    # the target is in the span and Phi has full column rank: a* is the teacher's
    assert s["r_star"] < 1e-20 and s["a_star_vs_teacher"] < 1e-8
    # gradient descent on a quadratic with dt L <= 1: the sharper constant 1/(2e) holds
    assert s["checks"]["bound"]["value"] <= 1 / (2 * math.e) + 1e-9
    assert s["checks"]["bound"]["value"] > 0.01
    both = s["comparison"]["both_layers"]
    assert both["final_loss"] < s["runs"]["both_layers"]["initial_loss"]
    assert s["runs"]["both_layers"]["trainable"] == ["a", "w", "b"]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"] and "claim" in on_disk
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000


def test_every_iterate_is_recorded(quick):
    out, _ = quick
    lines = (out / "runs" / "random_features" / "metrics.csv").read_text().splitlines()
    assert len(lines) == 1 + 4000 + 1  # header, steps 0..4000


def test_too_small_constant_fails(quick, tmp_path):
    # a wrong constant (0.05 < the measured max ratio) must fail; the runs are reused
    out, s = quick
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    again = run(tmp_path, "experiment.params.bound_constant=0.05", resume=True)
    assert again["checks"]["bound"]["value"] == s["checks"]["bound"]["value"]
    assert again["checks"]["bound"]["passed"] is False and again["passed"] is False


def test_too_large_step_fails(quick, tmp_path):
    # dt L = 2.5 > 2: gradient descent diverges, the premise and the bound fail
    _, s = quick
    dt = 2.5 / s["L"]
    bad = run(
        tmp_path,
        f"dynamics.dt={dt!r}",
        "dynamics.steps=200",
        "experiment.params.compare=false",
        "record.snapshot_every=100",
    )
    assert bad["checks"]["step_size"]["passed"] is False
    assert bad["checks"]["bound"]["passed"] is False
    assert bad["checks"]["bound"]["value"] > 1e3


def test_noisy_target_has_positive_r_star_and_the_bound_holds(tmp_path):
    s = run(
        tmp_path,
        "experiment.params.noise=0.05",
        "experiment.params.compare=false",
        "dynamics.steps=1000",
        "record.snapshot_every=500",
    )
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    assert s["r_star"] > 1e-4  # the noise is not in the span of 64 features (n = 128)


def test_resume_reuses_completed_subruns(quick):
    out, s = quick
    keep = out / "runs" / "random_features" / "metrics.csv"
    t_keep = keep.stat().st_mtime_ns
    path = out / "runs" / "both_layers" / "summary.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"status": "interrupted"}))
    again = run(out, resume=True)
    assert keep.stat().st_mtime_ns == t_keep
    assert json.loads(path.read_text())["status"] == "completed"
    assert again["checks"] == s["checks"]


def test_a_changed_problem_is_not_reused(quick, tmp_path):
    # the data file is named by its content: another teacher is another sub-run config
    out, s = quick
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    again = run(
        tmp_path,
        "experiment.params.teacher_scale=-1.0",
        "experiment.params.compare=false",
        resume=True,
    )
    assert again["final_loss"] != s["final_loss"]
    assert again["passed"] is True


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.teacher_scale=inf", "experiment.params.teacher_scale"),
        ("experiment.params.noise=-1", "experiment.params.noise"),
        ("experiment.params.bound_constant=0", "experiment.params.bound_constant"),
        ("experiment.params.compare=maybe", "experiment.params.compare"),
        ("experiment.params.tolerance=1", "experiment.params"),
        ("model.scaling=ntk", "model.scaling"),
        ("model.trainable=[a, w]", "model.trainable"),
        ("model.train_output=false", "model.train_output"),
        ("dynamics.integrator=heun", "dynamics.integrator"),
        ("objective.l2=0.1", "objective.l2"),
        ("data.path=somewhere.npz", "data.path"),
        ("model.init.path=particles.npz", "model.init.path"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute
