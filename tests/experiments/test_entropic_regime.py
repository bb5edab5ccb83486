"""`entropic_regime` (Tzen-Raginsky 2020): the sub-runs are the theorems' dynamics, the
checks fail on doctored statistics (negative controls), bad parameters are refused with
the field named; in the slow tier the quick run, resume, and negative controls that rerun
part of the experiment. The estimators are tested in tests/diagnostics/test_entropic.py."""

import json
import math
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import ConfigError, config
from mfnn.build import build
from mfnn.experiments.entropic_regime import (
    ENTROPIC_REGIME,
    evaluate,
    langevin_config,
    langevin_name,
    plan,
    tracking_configs,
)
from mfnn.objectives import ZeroRisk
from mfnn.rundir import same_config
from mfnn.stats import loglog_slope
from mfnn.study import Study

E = ENTROPIC_REGIME


def quick_config(*overrides, quick=True):
    return config.load(E.default_config(), (list(E.quick) if quick else []) + list(overrides))


def study(*overrides, quick=True):
    """The context of a plan or an evaluation (nothing is run)."""
    cfg = quick_config(*overrides, quick=quick)
    return Study(E, cfg, E.validate_params(cfg), Path("unused"), progress=False)


def run(tmp_path, *overrides, resume=False):
    return E.run(quick_config(*overrides), tmp_path, resume=resume, progress=False)


# ------------------------------------------------------------ the sub-runs are the theorems'


def test_sgd_step_is_the_theorems_update():
    # W_{k+1} = W_k + eta beta (Y - f_N(X)) grad_w sigma(X; W_k), sigma = erf, dt = eta beta
    s = study()
    p, tau = s.params, 0.3**2 / 2
    b = build(tracking_configs(s, p.eps)["sgd_eps0.3_s0"])
    theta = b.theta0
    assert b.dynamics.sampler.batch_size == 1 and b.dynamics.sampler.stochastic
    assert theta.shape == (p.sgd_width, 2)
    assert float(jnp.std(theta)) == pytest.approx(math.sqrt(tau), rel=0.05)  # W_0 ~ gamma_tau
    x, y = b.dynamics.sampler(b.key, 3)  # the fresh sample of step 3
    v, _ = b.dynamics.velocity(theta, 3, b.key)
    z = theta @ x[0]
    f = jnp.mean(jax.scipy.special.erf(z))
    grad = (2 / math.sqrt(math.pi)) * jnp.exp(-(z**2))[:, None] * x[0][None, :]
    eta = 1.0 / p.sgd_steps
    np.testing.assert_allclose(b.dt * v, eta * p.eps * (y[0] - f) * grad, rtol=1e-10, atol=1e-16)
    assert b.dt * b.steps == pytest.approx(p.eps)  # mfnn time beta * (k eta): t = 1 at the end


def test_mckean_vlasov_run_is_the_theorems_sde():
    # dW = -beta grad Psi dt + sqrt(tau) dB from W_0 = 0 on [0, 1]
    s = study()
    b = build(tracking_configs(s, s.params.eps)["mv_eps0.3_s0"])
    assert b.dynamics.drift_scale == s.params.eps
    assert float(b.dynamics.diffusion(0, b.dt) ** 2) == pytest.approx(0.3**2 / 2)
    assert b.dt * b.steps == pytest.approx(1.0)
    assert not np.any(np.asarray(b.theta0))
    assert b.dynamics.objective.l2 == 0


def test_langevin_run_has_the_gibbs_law_of_mu_star_and_shares_noise_with_its_control():
    # Gibbs of the run: exp(-s beta_L [Psi + lambda |w|^2 / 2]) with s beta_L = beta / tau and
    # s beta_L lambda = 1 / tau, i.e. gamma_tau exp(-(beta / tau) Psi)
    s = study()
    tau, beta = 0.3**2 / 2, s.params.betas[0]
    run_ = build(langevin_config(s, beta))
    control = build(langevin_config(s, None))
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


def test_plan_of_the_default_config_has_every_sub_run():
    s = study(quick=False)
    names = set(plan(s))
    betas = [0.3 * f for f in (0.0625, 0.125, 0.25, 0.5, 1.0)]
    assert {langevin_name(None)} | {langevin_name(b) for b in betas} <= names
    for eps in ("0.3", "2"):  # the claim's eps and the negative control
        assert {f"sgd_eps{eps}_s{i}" for i in range(8)} <= names
        assert {f"mv_eps{eps}_s{i}" for i in range(8)} <= names
    assert len(names) == 6 + 32
    only = plan(study("experiment.params.parts=[tracking]"))
    assert not any(n.startswith("langevin") for n in only)


# ------------------------------------------------------------ checks on doctored statistics


def stats(w2=None, drift=0.05, D=0.05, contrast_D=None, floor=0.0):
    """Statistics of an experiment where mu* is gamma_tau shifted by -beta g (W2^2 =
    beta^2 |g|^2, KL = W2^2 / (2 tau)), plus ``floor`` (an estimator floor that does not
    scale with beta), with the given stationarity drift and tracking distance."""
    tau, g2 = 0.045, 0.225
    betas = [0.3 * f for f in (0.0625, 0.25, 1.0)]
    w2 = np.array([b**2 * g2 for b in betas]) if w2 is None else np.asarray(w2)
    w2 = w2 + floor
    kl = w2 / (2 * tau)
    rows = [
        {"beta": b, "window": [5.0, 15.0], "drift": drift}
        | {"w2_cv": w, "w2_cv_se": 0.01 * w, "kl_gauss_cv": k, "kl_gauss_cv_se": 0.01 * k}
        | {"kl_cv": 1.05 * k, "kl_cv_se": 0.05 * k}
        for b, w, k in zip(betas, w2, kl, strict=True)
    ]
    st = {"tau": tau, "betas": betas, "g2": g2, "rows": rows}
    st |= {"w2_slope": loglog_slope(betas, w2), "kl_slope": loglog_slope(betas, kl)}
    st["linear_response_ratio"] = (w2 / (np.array(betas) ** 2 * g2)).tolist()
    track = {"0.3": {"D": D, "D_noise": 0.03}}
    if contrast_D is not None:
        track["2"] = {"D": contrast_D, "D_noise": 0.05}
    return {"stationary": st, "tracking": track}


def test_checks_pass_when_mu_star_is_the_linear_response():
    s = study()
    checks = evaluate(s, stats())
    assert all(c["passed"] for c in checks.values()), checks
    assert set(checks) == {
        "stationary_beta0.01875",
        "stationary_beta0.075",
        "stationary_beta0.3",
        "w2_slope",
        "kl_slope",
        "resolved",
        "kl_knn_consistent",
        "linear_response",
        "tracks_eps0.3",
    }
    assert checks["w2_slope"]["value"] == pytest.approx(2.0)


def test_checks_fail_on_negative_controls():
    s = study()
    # an estimator floor that does not scale with beta (a plain estimate) flattens the slopes
    floored = evaluate(s, stats(floor=1e-3))
    assert not floored["w2_slope"]["passed"] and not floored["kl_slope"]["passed"]
    assert not floored["linear_response"]["passed"]
    # W2^2 ~ beta (not beta^2)
    linear = evaluate(s, stats(w2=[0.01875 * 0.01, 0.075 * 0.01, 0.3 * 0.01]))
    assert linear["w2_slope"]["value"] == pytest.approx(1.0) and not linear["w2_slope"]["passed"]
    # a window that starts in the transient
    drifting = evaluate(s, stats(drift=0.45))
    assert not any(drifting[f"stationary_beta{b:g}"]["passed"] for b in (0.01875, 0.075, 0.3))
    # SGD off the McKean-Vlasov curve
    assert evaluate(s, stats(D=0.37))["tracks_eps0.3"]["passed"] is False
    # a kNN KL far from the Gaussian one (a non-Gaussian part)
    st = stats()
    st["stationary"]["rows"][2]["kl_cv"] *= 2
    assert evaluate(s, st)["kl_knn_consistent"]["passed"] is False
    # the contrast: must depart at eps = 2, fails when the curves still agree there
    full = study(quick=False)
    assert evaluate(full, stats(contrast_D=0.37))["departs_eps2"]["passed"] is True
    assert evaluate(full, stats(contrast_D=0.2))["departs_eps2"]["passed"] is False


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiment.params.eps=-1", "experiment.params.eps"),
        ("experiment.params.beta_over_eps=[0.5, 1.0]", "experiment.params.beta_over_eps"),
        ("experiment.params.beta_over_eps=[0.5, 1.0, 2.0]", "experiment.params.beta_over_eps"),
        ("experiment.params.beta_over_eps=[0.5, 0.5, 1.0]", "experiment.params.beta_over_eps"),
        ("experiment.params.parts=[entropy]", "experiment.params.parts"),
        ("experiment.params.parts=[]", "experiment.params.parts"),
        ("experiment.params.parts=[tracking, tracking]", "experiment.params.parts"),
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
        ("experiment.params.knn_k=300", "experiment.params.knn_k"),
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


# ------------------------------------------------------------ the quick experiment (slow)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("entropic_quick")
    return out, run(out)


@pytest.mark.slow
def test_quick_checks_hold(quick):
    out, s = quick
    assert s["status"] == "completed" and s["passed"]
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert not failed, failed
    assert not s["informational"]
    betas = [0.3 * f for f in (0.0625, 0.25, 1.0)]
    subruns = (
        [langevin_name(b) for b in [None, *betas]]
        + [f"sgd_eps0.3_s{i}" for i in range(6)]
        + [f"mv_eps0.3_s{i}" for i in range(6)]
    )
    assert set(s["checks"]) == {f"stationary_beta{b:.6g}" for b in betas} | {
        "w2_slope",
        "kl_slope",
        "resolved",
        "kl_knn_consistent",
        "linear_response",
        "tracks_eps0.3",
    } | {f"{r}/energy_identity" for r in subruns}
    # the energy identity of the drift step holds to O(dt) in every run (Langevin: dt / 2
    # from the OU part at dt = 0.05; it read 1 - 1/beta before the drift-scale fix)
    for r in subruns:
        assert s["checks"][f"{r}/energy_identity"]["value"] < 0.03
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


@pytest.mark.slow
def test_quick_control_is_coupled_to_the_langevin_runs(quick):
    # same particles at t = 0; later the beta run is the control shifted by about -beta g
    out, s = quick
    b = s["stationary"]["betas"][0]
    snaps = sorted((out / "runs" / langevin_name(b) / "snapshots").glob("*.npz"))
    ctrl = sorted((out / "runs" / "langevin_control" / "snapshots").glob("*.npz"))
    x0, y0 = np.load(snaps[0])["w"], np.load(ctrl[0])["w"]
    np.testing.assert_array_equal(x0, y0)
    x, y = np.load(snaps[-1])["w"], np.load(ctrl[-1])["w"]
    spread = np.sqrt(s["tau"])
    assert np.abs(x - y).max() < 0.2 * spread  # common noise: a small, smooth displacement
    g = np.asarray(s["stationary"]["g"])
    np.testing.assert_allclose((x - y).mean(0), -b * g, rtol=0.3)


@pytest.mark.slow
def test_resume_reuses_completed_subruns(quick, resume_after_interrupt):
    out, s = quick
    again, _ = resume_after_interrupt(out, "sgd_eps0.3_s5", lambda: run(out, resume=True))
    assert again["checks"] == s["checks"]


@pytest.mark.slow
def test_a_subrun_whose_config_changed_is_not_reused(quick):
    out, _ = quick
    s = study()
    b = s.params.betas[0]
    assert same_config(out / "runs" / langevin_name(b), langevin_config(s, b))
    assert not same_config(
        out / "runs" / langevin_name(b), langevin_config(study("experiment.params.t_end=20"), b)
    )


@pytest.mark.slow
def test_stationarity_fails_when_the_window_starts_in_the_transient(quick, tmp_path):
    # burn_in only changes the analysis: the runs are reused, the window now starts at t = 0
    out, _ = quick
    shutil.copytree(out, tmp_path / "copy")
    s = run(tmp_path / "copy", "experiment.params.burn_in=0", resume=True)
    assert set(s["timing"]["reused"]) == set(s["runs"])
    for b in s["stationary"]["betas"]:
        c = s["checks"][f"stationary_beta{b:.6g}"]
        assert c["passed"] is False and c["value"] > 0.3, c
    assert s["passed"] is False


@pytest.mark.slow
def test_tracking_fails_outside_the_small_eps_regime(tmp_path):
    # eps = 2 (tau = 2): the Gaussian start is as spread as the McKean-Vlasov end
    s = run(tmp_path, "experiment.params.parts=[tracking]", "experiment.params.eps=2.0")
    assert {k for k in s["checks"] if "/" not in k} == {"tracks_eps2"}
    c = s["checks"]["tracks_eps2"]
    assert c["passed"] is False and c["value"] > 0.25, c
    assert s["stationary"] is None


@pytest.mark.slow
@pytest.mark.full
def test_full_experiment_checks_hold(tmp_path):
    s = E.run(quick_config(quick=False), tmp_path, progress=False)
    failed = {k: v for k, v in s["checks"].items() if not v["passed"]}
    assert s["status"] == "completed" and not failed, failed
    assert {"departs_eps2", "tracks_eps0.3", "w2_slope", "kl_slope"} <= set(s["checks"])
