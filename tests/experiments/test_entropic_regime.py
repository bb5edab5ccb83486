"""`entropic_regime` (seed 003): the sub-runs are the seed's dynamics, the estimators have
the stated properties, the quick checks hold, checks fail when their premise is removed,
resume reuses finished sub-runs, and bad parameters are refused with the field named."""

import json
import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.build import build
from mfnn.diagnostics.entropy import w2_to_gaussian_bures
from mfnn.experiments.entropic_regime import (
    ENTROPIC_REGIME,
    _params,
    drift_statistic,
    gaussian_kl,
    gaussian_w2_sq,
    langevin_config,
    tracking_configs,
)
from mfnn.objectives import ZeroRisk
from mfnn.rundir import same_config

E = ENTROPIC_REGIME


def quick_config(*overrides):
    return config.load(E.default_config(), list(E.quick) + list(overrides))


def run(tmp_path, *overrides, resume=False):
    return E.run(quick_config(*overrides), tmp_path, resume=resume, progress=False)


# ------------------------------------------------------------ the sub-runs are seed 003's


def test_sgd_step_is_the_seeds_update():
    # W_{k+1} = W_k + eta beta (Y - f_N(X)) grad_w sigma(X; W_k), sigma = erf, dt = eta beta
    cfg = quick_config()
    p = _params(cfg)
    eps, tau = p["eps"], p["tau"]
    sub = tracking_configs(cfg, p, eps)["sgd_eps0.3_s0"]
    b = build(sub)
    theta = b.theta0
    assert b.dynamics.sampler.batch_size == 1 and b.dynamics.sampler.stochastic
    assert theta.shape == (p["sgd_width"], 2)
    assert float(jnp.std(theta)) == pytest.approx(math.sqrt(tau), rel=0.05)  # W_0 ~ gamma_tau
    x, y = b.dynamics.sampler(b.key, 3)  # the fresh sample of step 3
    v, _ = b.dynamics.velocity(theta, 3, b.key)
    z = theta @ x[0]
    f = jnp.mean(jax.scipy.special.erf(z))
    grad = (2 / math.sqrt(math.pi)) * jnp.exp(-(z**2))[:, None] * x[0][None, :]
    eta = 1.0 / p["sgd_steps"]
    np.testing.assert_allclose(b.dt * v, eta * eps * (y[0] - f) * grad, rtol=1e-10, atol=1e-16)
    assert b.dt * b.steps == pytest.approx(eps)  # mfnn time beta * (k eta): t = 1 at the end


def test_mckean_vlasov_run_is_the_seeds_sde():
    # dW = -beta grad Psi dt + sqrt(tau) dB from W_0 = 0 on [0, 1]
    cfg = quick_config()
    p = _params(cfg)
    b = build(tracking_configs(cfg, p, p["eps"])["mv_eps0.3_s0"])
    assert b.dynamics.drift_scale == p["eps"]
    assert float(b.dynamics.diffusion(0, b.dt) ** 2) == pytest.approx(p["tau"])
    assert b.dt * b.steps == pytest.approx(1.0)
    assert not np.any(np.asarray(b.theta0))
    assert b.dynamics.objective.l2 == 0


def test_langevin_run_has_the_gibbs_law_of_mu_star_and_shares_noise_with_its_control():
    # Gibbs of the run: exp(-s beta_L [Psi + lambda |w|^2 / 2]) with s beta_L = beta / tau and
    # s beta_L lambda = 1 / tau, i.e. gamma_tau exp(-(beta / tau) Psi)
    cfg = quick_config()
    p = _params(cfg)
    tau, beta = p["tau"], p["betas"][0]
    run_ = build(langevin_config(cfg, p, beta))
    control = build(langevin_config(cfg, p, None))
    s_beta = float(run_.dynamics.beta(0.0))
    assert s_beta == pytest.approx(beta / tau)
    assert s_beta * run_.dynamics.objective.l2 == pytest.approx(1 / tau)
    # the control: R == 0, the OU process d phi = -phi dt + sqrt(2 tau) dB (gamma_tau exactly)
    assert isinstance(control.dynamics.objective, ZeroRisk)
    assert float(control.dynamics.beta(0.0)) * control.dynamics.objective.l2 == pytest.approx(
        1 / tau
    )
    assert control.dynamics.drift_scale * control.dynamics.objective.l2 == pytest.approx(1.0)
    # common random numbers: same particles, same key, same noise of every step
    np.testing.assert_array_equal(run_.theta0, control.theta0)
    assert float(jnp.std(run_.theta0)) == pytest.approx(math.sqrt(tau), rel=0.1)
    state = run_.model.to_blocks(run_.theta0)
    np.testing.assert_array_equal(
        jax.tree.leaves(run_.dynamics.noise(state, 7, run_.key)),
        jax.tree.leaves(control.dynamics.noise(state, 7, control.key)),
    )


# ------------------------------------------------------------ estimators


def test_gaussian_w2_and_kl_from_moments():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 2)) * [0.3, 0.1] + [0.2, -0.1]
    mean, cov = x.mean(0), np.cov(x.T, bias=True)
    assert gaussian_w2_sq(mean, cov, 0.05) == pytest.approx(float(w2_to_gaussian_bures(x, 0.05)))
    # 1-D closed forms: W2^2 = m^2 + (s - sqrt(tau))^2,
    # KL = (s^2/tau + m^2/tau - 1 - log(s^2/tau)) / 2
    m, s2, tau = 0.3, 0.5, 0.8
    assert gaussian_w2_sq(np.array([m]), np.array([[s2]]), tau) == pytest.approx(
        m**2 + (math.sqrt(s2) - math.sqrt(tau)) ** 2
    )
    assert gaussian_kl(np.array([m]), np.array([[s2]]), tau) == pytest.approx(
        0.5 * (s2 / tau + m**2 / tau - 1 - math.log(s2 / tau))
    )
    # Talagrand for gamma_tau: W2^2 <= 2 tau KL, equality for a shift
    for _ in range(20):
        a = rng.normal(size=(2, 2))
        mean, cov = rng.normal(size=2), a @ a.T + 0.01 * np.eye(2)
        assert gaussian_w2_sq(mean, cov, 0.3) <= 2 * 0.3 * gaussian_kl(mean, cov, 0.3) + 1e-12
    shift = np.array([0.1, 0.2])
    assert gaussian_w2_sq(shift, 0.3 * np.eye(2), 0.3) == pytest.approx(
        2 * 0.3 * gaussian_kl(shift, 0.3 * np.eye(2), 0.3)
    )


def test_drift_statistic_sees_a_transient():
    relax = (1 - np.exp(-np.arange(16.0))) ** 2  # W2^2 = |mean|^2, the mean relaxing at rate 1
    assert drift_statistic(relax) > 0.4  # window from t = 0
    assert drift_statistic(relax[5:]) < 0.02  # window after 5 relaxation times


# ------------------------------------------------------------ the quick experiment


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("entropic_quick")
    return out, run(out)


def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed"
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    betas = [0.3 * f for f in (0.0625, 0.25, 1.0)]
    assert set(s["checks"]) == {f"stationary_beta{b:.6g}" for b in betas} | {
        "w2_slope",
        "kl_slope",
        "resolved",
        "kl_knn_consistent",
        "linear_response",
        "tracks_eps0.3",
    }
    st = s["stationary"]
    assert st["betas"] == pytest.approx(betas)
    # the control variates remove floors the plain estimates carry
    rows = st["rows"]
    assert rows[0]["w2_sampled_last"] > 10 * rows[0]["w2_cv"]  # assignment W2: floor-dominated
    assert abs(rows[0]["kl_raw"]) > 5 * rows[0]["kl_gauss_cv"]  # plain kNN: bias-dominated
    # W2^2 ~ beta^2: the largest beta is 16 eps/16, W2^2 grows 16^1.7..16^2.1
    assert 16**1.7 < rows[-1]["w2_cv"] / rows[0]["w2_cv"] < 16**2.1
    tr = s["tracking"]["0.3"]
    assert tr["drop_mv"] > 0.3 * tr["risk_mv"][0]  # the risk does move over [0, 1]
    assert tr["D_over_R0"] < tr["D"]
    assert s["quadrature_error_max"] < 2e-3 * tr["drop_mv"]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["checks"] == s["checks"] and "claim" in on_disk
    for fig in s["figures"]:
        assert (out / fig).stat().st_size > 5000


def test_quick_control_is_coupled_to_the_langevin_runs(quick):
    # same particles at t = 0; later the beta run is the control shifted by about -beta g
    out, s = quick
    b = s["stationary"]["betas"][0]
    snaps = sorted((out / "runs" / f"langevin_beta{b:.6g}" / "snapshots").glob("*.npz"))
    ctrl = sorted((out / "runs" / "langevin_control" / "snapshots").glob("*.npz"))
    x0, y0 = np.load(snaps[0])["w"], np.load(ctrl[0])["w"]
    np.testing.assert_array_equal(x0, y0)
    x, y = np.load(snaps[-1])["w"], np.load(ctrl[-1])["w"]
    spread = np.sqrt(s["tau"])
    assert np.abs(x - y).max() < 0.2 * spread  # common noise: a small, smooth displacement
    g = np.asarray(s["stationary"]["g"])
    np.testing.assert_allclose((x - y).mean(0), -b * g, rtol=0.3)


def test_resume_reuses_completed_subruns(quick, resume_after_interrupt):
    out, s = quick
    again, after = resume_after_interrupt(out, "sgd_eps0.3_s5", lambda: run(out, resume=True))
    assert again["checks"] == s["checks"]


def test_resume_does_not_reuse_a_subrun_whose_config_changed(quick):
    out, _ = quick
    cfg = quick_config()
    p = _params(cfg)
    sub = langevin_config(cfg, p, p["betas"][0])
    run_dir = out / "runs" / f"langevin_beta{p['betas'][0]:.6g}"
    assert same_config(run_dir, sub)
    longer = langevin_config(
        quick_config("experiment.params.t_end=20"), p | {"t_end": 20.0}, 0.01875
    )
    assert not same_config(run_dir, longer)


def test_stationarity_fails_when_the_window_starts_in_the_transient(quick, tmp_path):
    # burn_in only changes the analysis: the runs are reused, the window now starts at t = 0
    out, _ = quick
    shutil.copytree(out, tmp_path / "copy")
    s = run(tmp_path / "copy", "experiment.params.burn_in=0", resume=True)
    for b in s["stationary"]["betas"]:
        c = s["checks"][f"stationary_beta{b:.6g}"]
        assert c["passed"] is False and c["value"] > 0.3, c
    assert s["passed"] is False


def test_tracking_fails_outside_the_small_eps_regime(tmp_path):
    # eps = 2 (tau = 2): the Gaussian start is as spread as the McKean-Vlasov end
    s = run(tmp_path, "experiment.params.parts=[tracking]", "experiment.params.eps=2.0")
    assert set(s["checks"]) == {"tracks_eps2"}
    c = s["checks"]["tracks_eps2"]
    assert c["passed"] is False and c["value"] > 0.25, c
    assert s["stationary"] is None


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.eps=-1", "experiment.params.eps"),
        ("experiment.params.beta_over_eps=[0.5, 1.0]", "experiment.params.beta_over_eps"),
        ("experiment.params.beta_over_eps=[0.5, 1.0, 2.0]", "experiment.params.beta_over_eps"),
        ("experiment.params.parts=[entropy]", "experiment.params.parts"),
        ("experiment.params.parts=[]", "experiment.params.parts"),
        ("experiment.params.langevin_dt=0.5", "experiment.params.langevin_dt"),
        ("experiment.params.t_end=15.01", "experiment.params.t_end"),
        ("experiment.params.burn_in=14", "experiment.params.t_end"),
        ("experiment.params.sgd_steps=1005", "experiment.params.sgd_steps"),
        ("experiment.params.sgd_seeds=0", "experiment.params.sgd_seeds"),
        ("experiment.params.mv_width=1", "experiment.params.mv_width"),
        ("experiment.params.contrast_eps=0.1", "experiment.params.contrast_eps"),
        ("experiment.params.track_tol=0", "experiment.params.track_tol"),
        ("experiment.params.slope_margin=3", "experiment.params.slope_margin"),
        ("experiment.params.knn_k=0", "experiment.params.knn_k"),
        ("experiment.params.stationarity_tol=-0.1", "experiment.params.stationarity_tol"),
        ("experiment.params.burn_in=-1", "experiment.params.burn_in"),
        ("experiment.params.kappa=1", "experiment.params"),
        ("model.activation=relu", "model.activation"),
        ("model.bias=true", "model.bias"),
        ("model.init.path=particles.npz", "model.init.path"),
        ("data.population.method=monte_carlo", "data.population"),
        ("objective.l2=0.1", "objective.l2"),
    ],
)
def test_bad_params_are_refused(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run(tmp_path, override)
    assert not (tmp_path / "runs").exists()  # refused before any compute


def test_docstring_examples():
    import doctest

    import mfnn.experiments.entropic_regime as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0


@pytest.mark.slow
def test_full_experiment_checks_hold(tmp_path):
    s = E.run(config.load(E.default_config()), tmp_path, progress=False)
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert s["status"] == "completed" and not failed, failed
    assert {"departs_eps2", "tracks_eps0.3", "w2_slope", "kl_slope"} <= set(s["checks"])
