"""Statistics of the entropic regime: the Gaussian W2^2 and KL against gamma_tau in closed
form, the control-variate estimators (known answers for shifted and scaled clouds), the
stationarity drift, the mean-field pull against the velocity and a hand-written gradient,
and the tracking statistic D."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import TwoLayer
from mfnn.diagnostics.entropic import (
    control_variate_distances,
    control_variate_moments,
    control_variate_window,
    gaussian_kl,
    gaussian_w2_sq,
    mean_field_pull,
    relative_drift,
    tracking_statistic,
)
from mfnn.diagnostics.entropy import kl_to_gaussian, w2_to_gaussian_bures
from mfnn.objectives import EmpiricalRisk


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


def test_control_variates_are_exact_for_a_shift_and_a_scaling():
    # the control y is any sample; x = A y + c: mean_cv = (A - I) mean(y) + c,
    # Sigma_cv = A Cov(y) A^T - Cov(y) + tau I, the sampling error of y's moments cancels
    # when A = I (a shift): W2^2_cv = |c|^2 and KL_gauss_cv = |c|^2 / (2 tau) exactly
    rng = np.random.default_rng(1)
    tau, c = 0.2, np.array([0.05, -0.02])
    y = math.sqrt(tau) * rng.normal(size=(600, 2))
    mean, cov = control_variate_moments(y + c, y, tau)
    np.testing.assert_allclose(mean, c, rtol=1e-12)
    np.testing.assert_allclose(cov, tau * np.eye(2), atol=1e-15)
    a = np.diag([1.5, 0.5])
    mean, cov = control_variate_moments(y @ a.T, y, tau)
    cy = np.cov(y.T, bias=True)
    np.testing.assert_allclose(mean, (a - np.eye(2)) @ y.mean(0), atol=1e-15)
    np.testing.assert_allclose(cov, a @ cy @ a.T - cy + tau * np.eye(2), atol=1e-14)
    d = control_variate_distances(y + c, y, tau, 4)
    assert d["w2_cv"] == pytest.approx(c @ c, rel=1e-10)
    assert d["kl_gauss_cv"] == pytest.approx(c @ c / (2 * tau), rel=1e-8)
    # the kNN entropies of x and y are equal (a shift), so KL_kNN_cv is the second-moment
    # term: (E|y + c|^2 - E|y|^2) / (2 tau)
    second = (np.mean(np.sum((y + c) ** 2, 1)) - np.mean(np.sum(y**2, 1))) / (2 * tau)
    assert d["kl_cv"] == pytest.approx(second, rel=1e-8)
    # the plain estimates and the floors: the control's own values
    assert d["w2_floor"] == pytest.approx(float(w2_to_gaussian_bures(y, tau)))
    assert d["kl_floor"] == pytest.approx(float(kl_to_gaussian(y, tau, 4)))
    assert d["kl_raw"] - d["kl_floor"] == pytest.approx(d["kl_cv"])
    # a cloud at one point has no density: no kNN KL, the Gaussian ones still defined
    point = control_variate_distances(np.zeros((10, 2)), y[:10], tau, 4)
    assert math.isnan(point["kl_cv"]) and math.isfinite(point["w2_cv"])


def test_control_variate_window_pools_the_snapshots():
    rng = np.random.default_rng(2)
    tau, n = 0.5, 6
    ys = [math.sqrt(tau) * rng.normal(size=(200, 2)) for _ in range(n)]
    ys = [y - y.mean(0) for y in ys]  # equal means: the pooled covariance has no cross term
    shifts = [np.array([0.1 + 0.01 * i, 0.0]) for i in range(n)]
    xs = [y + s for y, s in zip(ys, shifts, strict=True)]
    w = control_variate_window(xs, ys, tau, 3)
    assert w["snapshots_in_window"] == n
    # pooled: the mean shift, and Sigma_cv = tau I + the spread of the shifts
    c = np.mean(shifts, 0)
    np.testing.assert_allclose(w["mean_cv"], c, rtol=1e-12)
    spread = np.var([s[0] for s in shifts])
    mean, cov = c, tau * np.eye(2) + np.diag([spread, 0.0])
    assert w["w2_cv"] == pytest.approx(gaussian_w2_sq(mean, cov, tau), rel=1e-9)
    # per snapshot: w2_cv = |shift|^2, and SE = their std / sqrt(n)
    per = np.array([s @ s for s in shifts])
    assert w["w2_cv_se"] == pytest.approx(per.std(ddof=1) / math.sqrt(n), rel=1e-8)
    assert w["drift"] == pytest.approx(relative_drift(per), rel=1e-8)
    kls = [control_variate_distances(x, y, tau, 3)["kl_cv"] for x, y in zip(xs, ys, strict=True)]
    assert w["kl_cv"] == pytest.approx(np.mean(kls))
    assert w["w2_floor"] == pytest.approx(float(w2_to_gaussian_bures(np.concatenate(ys), tau)))


def test_relative_drift_sees_a_transient():
    relax = (1 - np.exp(-np.arange(16.0))) ** 2  # W2^2 = |mean|^2, the mean relaxing at rate 1
    assert relative_drift(relax) > 0.4  # window from t = 0
    assert relative_drift(relax[5:]) < 0.02  # window after 5 relaxation times
    assert relative_drift(np.zeros(8)) == 0.0
    assert relative_drift([1.0, 1.0, 0.0, 0.0]) == math.inf


def test_mean_field_pull_is_the_mean_gradient_of_the_first_variation(key, make_problem):
    data, theta = make_problem(key, n=30, d=2, m=40, bias=False)
    theta = 0.5 * theta[:, 1:]  # a particle is w (output weights fixed)
    net = TwoLayer(d=2, activation="erf", scaling="mean_field", bias=False, train_output=False)
    objective = EmpiricalRisk(data)
    g = np.asarray(mean_field_pull(objective, net, theta))
    # by hand: Psi(w) = (1/n) sum_i r_i erf(w . x_i), r = f - y
    r = jnp.mean(jax.scipy.special.erf(data.x @ theta.T), 1) - data.y
    z = theta @ data.x.T  # (m, n)
    grad = (2 / math.sqrt(math.pi)) * (jnp.exp(-(z**2)) * r) @ data.x / data.x.shape[0]
    np.testing.assert_allclose(g, np.asarray(grad.mean(0)), rtol=1e-12)
    # v = -grad Psi with no confinement
    v, _ = objective.velocity(net, theta)
    np.testing.assert_allclose(g, -np.asarray(v.mean(0)), rtol=1e-12)


def test_tracking_statistic_normalizes_by_the_drop():
    mv = [np.array([1.0, 0.6, 0.2]), np.array([1.0, 0.4, 0.0])]  # mean 1.0, 0.5, 0.1: drop 0.9
    sgd = [np.array([1.0, 0.59, 0.1])] * 2
    tr = tracking_statistic(sgd, mv)
    assert tr["D"] == pytest.approx(0.09 / 0.9) and tr["D_over_R0"] == pytest.approx(0.09)
    assert tr["drop_mv"] == pytest.approx(0.9) and tr["t"] == [0.0, 0.5, 1.0]
    # the largest standard error of the difference of the means (the MV spread), / drop
    assert tr["D_noise"] == pytest.approx(np.std([0.6, 0.4], ddof=1) / math.sqrt(2) / 0.9)
    assert tr["D_per_seed"] == pytest.approx([0.1, 0.1])
    # no drop: D is infinite (the check fails), not a division by zero
    with np.errstate(divide="ignore"):
        flat = tracking_statistic(sgd, [np.ones(3)] * 2)
    assert flat["D"] == math.inf and math.isnan(flat["D_noise"])
