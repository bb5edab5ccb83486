"""`online_sgd_ode`: the start has the same overlaps at every d, the plan's learning rate
and time map, the plateau/escape statistic, the checks on doctored statistics (negative
controls), bad parameters refused; the quick run in the slow tier."""

import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.committee import mfnn_learning_rates
from mfnn.experiments.online_sgd_ode import (
    ONLINE_SGD_ODE,
    R0,
    _escape,
    _start,
    evaluate,
    plan,
)
from mfnn.measure import read_npz
from mfnn.study import Study

EXP = ONLINE_SGD_ODE


def load(*overrides, quick=True):
    return config.load(EXP.default_config(), (list(EXP.quick) if quick else []) + list(overrides))


def study(tmp_path, *overrides, quick=True):
    cfg = load(*overrides, quick=quick)
    return Study(EXP, cfg, EXP.validate_params(cfg), tmp_path, progress=False)


@pytest.mark.parametrize("d", [50, 400])
def test_start_has_the_same_overlaps_at_every_d(d):
    w, w_star = _start(d, 3, R0, 0.0025)
    np.testing.assert_allclose(w_star @ w_star.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(w @ w_star.T, R0, atol=1e-12)
    r0 = np.asarray(R0)
    np.testing.assert_allclose(w @ w.T, r0 @ r0.T + 0.0025 * np.eye(2), atol=1e-12)


def test_plan_sets_the_committee_learning_rate_and_time(tmp_path):
    s = study(tmp_path)
    runs = plan(s)
    assert set(runs) == {f"d{d}-r{r}" for d in (200, 400, 800) for r in range(4)}
    cfg = runs["d400-r1"].config
    eta_w, _ = mfnn_learning_rates(2, 400, cfg.dynamics.dt, activation_scale=1 / np.sqrt(2))
    assert eta_w == pytest.approx(1.0)  # the same eta at every d
    assert cfg.dynamics.steps == 65 * 400  # alpha_max d
    assert cfg.data.population.dim == 400 and cfg.record.overlaps
    init = read_npz(cfg.model.init.path, "model.init.path", "particle file")
    teacher = read_npz(cfg.data.teacher.path, "data.teacher.path", "teacher file")
    assert init["w"].shape == (2, 400) and np.all(init["a"] == 2) and np.all(teacher["a"] == 2)
    assert runs["d400-r0"].config.seed != cfg.seed  # replicas differ


def test_escape_statistic():
    alpha = np.linspace(0, 60, 241)
    eps = np.where(alpha < 5, 0.2, np.where(alpha < 40, 0.02, 0.02 * np.exp(-(alpha - 40) / 5)))
    height, esc = _escape(alpha, eps, (10.0, 25.0))
    assert height == pytest.approx(0.02)
    assert esc == pytest.approx(40 + 5 * np.log(4), abs=0.25)  # first alpha with eps < h/4
    assert np.isnan(_escape(alpha, np.full_like(alpha, 0.02), (10.0, 25.0))[1])  # no escape


def _stats(gaps, height=1.0, escape=1.0, noise=10.0):
    d = np.array([200, 400, 800])
    out = {}
    for key in ("eps", "Q", "R"):
        out[f"slope_{key}"] = float(np.polyfit(np.log(d), np.log(gaps), 1)[0])
    out |= {"plateau_ratio": height, "escape_ratio": escape, "noise_term_ratio": noise}
    return out


@pytest.mark.parametrize(
    ("kwargs", "fails"),
    [
        ({"gaps": [0.02, 0.0141, 0.01]}, set()),
        ({"gaps": [0.02, 0.02, 0.02]}, {"gap_slope_eps", "gap_slope_Q", "gap_slope_R"}),
        ({"gaps": [0.02, 0.0141, 0.01], "height": 0.8}, {"plateau_height"}),
        ({"gaps": [0.02, 0.0141, 0.01], "escape": float("nan")}, {"plateau_escape"}),
        ({"gaps": [0.02, 0.0141, 0.01], "noise": 1.1}, {"noise_term_needed"}),
    ],
)
def test_checks_fail_on_doctored_statistics(tmp_path, kwargs, fails):
    checks = evaluate(study(tmp_path), _stats(**kwargs))
    assert {k for k, c in checks.items() if not c["passed"]} == fails, checks


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("dynamics.sampling=epochs", "dynamics.kind"),
        ("model.activation_scale=1.0", "model.activation_scale"),
        ("model.trainable=[a, w]", "model.trainable"),
        ("data.population.method=monte_carlo", "data.population.method"),
        ("experiment.params.plateau=[30, 20]", "experiment.params.plateau"),
    ],
)
def test_bad_parameters_name_the_field(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        EXP.validate_params(load(override))


@pytest.mark.slow
def test_quick_run_passes(tmp_path):
    summary = EXP.run(load(), tmp_path, progress=False)
    assert summary["passed"], {k: v for k, v in summary["checks"].items() if not v["passed"]}
