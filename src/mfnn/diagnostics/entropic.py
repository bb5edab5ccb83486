r"""Statistics of the entropic regime (Tzen and Raginsky 2020): how far a nearly Gaussian
particle law is from gamma_tau = N(0, tau I), and how far SGD is from the McKean-Vlasov flow.

* ``gaussian_w2_sq``, ``gaussian_kl``: W2^2 and KL of N(mean, cov) against gamma_tau in
  closed form (lower bounds of W2^2 and KL for any law with these two moments);
* ``control_variate_moments``, ``control_variate_distances``, ``control_variate_window``:
  the moments, W2^2 and KL of a cloud x against gamma_tau with a coupled control cloud y
  (same start, same noise, stationary law gamma_tau exactly) as control variate: its
  statistics have known means, so the difference removes the floors of plain estimates
  from m particles (tr Sigma / m in the Bures bound, the kNN bias) that do not scale with
  the signal;
* ``relative_drift``: the stationarity statistic of a short autocorrelated series;
* ``mean_field_pull``: g = E_mu grad_w Psi(W; mu), the first-order (linear response)
  shift of the Gibbs law gamma_tau exp(-(beta/tau) Psi): W2^2(mu*, gamma_tau) =
  beta^2 |g|^2 + o(beta^2) for mu = gamma_tau (Stein's identity);
* ``tracking_statistic``: D, the largest gap between the mean risk curves of SGD runs and
  of McKean-Vlasov runs, relative to the latter's drop.

All but ``mean_field_pull`` take and return NumPy values (they run on snapshots and
recorded metrics, after the compiled loop).

Example:
    >>> round(gaussian_w2_sq(np.zeros(2), 4.0 * np.eye(2), 1.0), 12)  # 2 (2 - 1)^2
    2.0
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .entropy import kl_to_gaussian, w2_to_gaussian_bures

__all__ = [
    "control_variate_distances",
    "control_variate_moments",
    "control_variate_window",
    "gaussian_kl",
    "gaussian_w2_sq",
    "mean_field_pull",
    "relative_drift",
    "tracking_statistic",
]


def gaussian_w2_sq(mean: np.ndarray, cov: np.ndarray, tau: float) -> float:
    r"""Bures-Wasserstein W2^2(N(mean, cov), gamma_tau), gamma_tau = N(0, tau I):

        W2^2 = |mean|^2 + sum_i (sqrt(lambda_i(cov)) - sqrt(tau))^2,

    Gelbrich's lower bound of W2^2(mu, gamma_tau) for every mu with these two moments,
    exact for a Gaussian mu. Negative eigenvalues (a noisy difference of covariances)
    count as 0.

    Example:
        >>> gaussian_w2_sq(np.array([0.3, 0.4]), np.eye(2), 1.0)
        0.25

    References:
        Gelbrich, Math. Nachr. 147 (1990), Thm. 2.1.
    """
    lam = np.clip(np.linalg.eigvalsh(cov), 0.0, None)
    return float(mean @ mean + np.sum((np.sqrt(lam) - math.sqrt(tau)) ** 2))


def gaussian_kl(mean: np.ndarray, cov: np.ndarray, tau: float) -> float:
    r"""KL(N(mean, cov) || N(0, tau I)) in R^d:

        KL = (1/2) [tr cov / tau + |mean|^2 / tau - d - log det(cov / tau)],

    a lower bound of KL(mu || gamma_tau) for every mu with these two moments (the Gaussian
    has the largest entropy). Talagrand's inequality for gamma_tau, W2^2 <= 2 tau KL, holds
    with `gaussian_w2_sq`, with equality for a shift (cov = tau I).

    Example:
        >>> round(gaussian_kl(np.array([1.0, 0.0]), np.eye(2), 1.0), 12)
        0.5
    """
    d = mean.shape[0]
    lam = np.clip(np.linalg.eigvalsh(cov), 1e-300, None)
    return float(0.5 * (lam.sum() / tau + mean @ mean / tau - d - np.sum(np.log(lam / tau))))


def control_variate_moments(
    x: np.ndarray, y: np.ndarray, tau: float
) -> tuple[np.ndarray, np.ndarray]:
    r"""Control-variate moments of the cloud x (m, d) with the coupled control y (m, d),
    whose law is gamma_tau:

        mean_cv = mean(x) - mean(y),    Sigma_cv = Cov(x) - Cov(y) + tau I

    (E mean(y) = 0, E Cov(y) = tau I up to the biases x and y share, time step and 1/m,
    which the difference removes; the 1/m normalization of the covariances).

    Example:
        >>> y = np.array([[-1.0], [1.0]])  # mean 0, variance 1
        >>> mean, cov = control_variate_moments(y + 0.5, y, 2.0)  # x = y shifted
        >>> mean.tolist(), cov.tolist()
        ([0.5], [[2.0]])
    """
    cov = np.cov(x.T, bias=True) - np.cov(y.T, bias=True) + tau * np.eye(x.shape[1])
    return x.mean(0) - y.mean(0), np.atleast_2d(cov)


def control_variate_distances(x: np.ndarray, y: np.ndarray, tau: float, k: int) -> dict:
    r"""W2^2 and KL of the cloud x against gamma_tau, plain and with the control y.

    Returns a dict of floats:

    - ``w2_cv`` = `gaussian_w2_sq` and ``kl_gauss_cv`` = `gaussian_kl` of the
      `control_variate_moments`;
    - ``kl_cv`` = KL_kNN(x) - KL_kNN(y), the difference of the kNN estimates
      (`mfnn.diagnostics.entropy.kl_to_gaussian` with ``k`` neighbours), whose common
      bias cancels; nan when a cloud sits at one point (no density);
    - the plain estimates ``w2_raw`` (Bures bound of x), ``kl_raw`` (kNN KL of x) and
      the control's own, ``w2_floor``, ``kl_floor``: what the plain estimates read for
      gamma_tau itself.

    Example:
        >>> y = np.random.default_rng(0).normal(size=(400, 1))
        >>> y = y - y.mean(0)  # gamma_1, centred
        >>> d = control_variate_distances(y + 0.1, y, 1.0, 4)  # x = gamma_1 shifted by 0.1
        >>> round(d["w2_cv"], 12), round(d["kl_cv"], 5)  # 0.1^2, 0.1^2 / 2 (kNN in float32)
        (0.01, 0.005)
    """
    mean, cov = control_variate_moments(x, y, tau)
    dense = np.ptp(x) > 0 and np.ptp(y) > 0  # not all particles at one point (a density)
    kl_x, kl_y = (float(kl_to_gaussian(z, tau, k)) if dense else math.nan for z in (x, y))
    return {
        "w2_cv": gaussian_w2_sq(mean, cov, tau),
        "kl_gauss_cv": gaussian_kl(mean, cov, tau),
        "kl_cv": kl_x - kl_y,
        "w2_raw": float(w2_to_gaussian_bures(x, tau)),
        "w2_floor": float(w2_to_gaussian_bures(y, tau)),
        "kl_raw": kl_x,
        "kl_floor": kl_y,
    }


def control_variate_window(xs: list[np.ndarray], ys: list[np.ndarray], tau: float, k: int):
    r"""`control_variate_distances` of a stationary law sampled by n snapshots xs of a run
    and ys of its coupled control (equal lengths), pooled over the window.

    Returns a dict: ``w2_cv``, ``kl_gauss_cv``, ``w2_raw``, ``w2_floor`` and ``mean_cv``
    from the pooled particles (all snapshots of a run stacked); ``kl_cv``, ``kl_raw``,
    ``kl_floor``, the means over the snapshots; the standard errors ``w2_cv_se``,
    ``kl_gauss_cv_se``, ``kl_cv_se`` = std over the snapshots / sqrt(n) (snapshots
    treated as independent: space them a relaxation time apart); ``drift`` =
    `relative_drift` of the snapshots' ``w2_cv``; ``snapshots_in_window`` = n.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> ys = [rng.normal(size=(300, 2)) for _ in range(8)]
        >>> w = control_variate_window([y + [0.1, 0.0] for y in ys], ys, 1.0, 4)
        >>> round(w["w2_cv"], 12), round(w["w2_cv_se"], 12), w["snapshots_in_window"]
        (0.01, 0.0, 8)
    """
    snaps = [control_variate_distances(x, y, tau, k) for x, y in zip(xs, ys, strict=True)]
    series = {name: np.array([d[name] for d in snaps]) for name in snaps[0]}
    n = len(snaps)
    xw, yw = np.concatenate(xs), np.concatenate(ys)
    mean, cov = control_variate_moments(xw, yw, tau)

    def se(name):
        return float(series[name].std(ddof=1) / math.sqrt(n))

    return {
        "snapshots_in_window": n,
        "w2_cv": gaussian_w2_sq(mean, cov, tau),
        "w2_cv_se": se("w2_cv"),
        "kl_gauss_cv": gaussian_kl(mean, cov, tau),
        "kl_gauss_cv_se": se("kl_gauss_cv"),
        "kl_cv": float(series["kl_cv"].mean()),
        "kl_cv_se": se("kl_cv"),
        "w2_raw": float(w2_to_gaussian_bures(xw, tau)),
        "w2_floor": float(w2_to_gaussian_bures(yw, tau)),
        "kl_raw": float(series["kl_raw"].mean()),
        "kl_floor": float(series["kl_floor"].mean()),
        "mean_cv": mean.tolist(),
        "drift": relative_drift(series["w2_cv"]),
    }


def relative_drift(series) -> float:
    """|mean of the first quarter - mean of the last half| / |mean of the last half|: a
    stationarity statistic with Geweke's fractions, judged relative to the value (a dozen
    autocorrelated snapshots give no usable variance for Geweke's z-score). 0 for an
    all-zero series, inf when only the last half's mean is 0.

    Example:
        >>> relative_drift([1.0, 2.0, 1.0, 2.0, 1.5, 1.5, 1.5, 1.5])
        0.0
        >>> relative_drift([0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
        1.0
    """
    x = np.asarray(series, float)
    q, h = max(1, x.size // 4), max(1, x.size // 2)
    late = x[x.size - h :].mean()
    if late == 0:
        return 0.0 if np.all(x == 0) else math.inf
    return float(abs(x[:q].mean() - late) / abs(late))


def mean_field_pull(objective, model, theta) -> jax.Array:
    r"""g = (1/m) sum_j grad_w Psi(theta_j; mu_m), Psi = ``objective.first_variation`` at
    the empirical measure mu_m of ``theta`` (m, D), held fixed.

    With theta drawn from gamma_tau this is E_{gamma_tau} grad Psi(W; gamma_tau): to first
    order in beta the Gibbs law gamma_tau exp(-(beta/tau) Psi) is gamma_tau shifted by
    -beta g (Stein's identity E_{gamma_tau}[W h(W)] = tau E_{gamma_tau} grad h), so
    W2^2(mu*, gamma_tau) = beta^2 |g|^2 + o(beta^2). Since the velocity is v = -grad Psi
    (plus the confinement), g = -mean_j v_j when ``objective.l2`` = 0.

    Example:
        >>> from mfnn.models import TwoLayer
        >>> from mfnn.objectives import ZeroRisk
        >>> net = TwoLayer(d=2, activation="erf", scaling="mean_field", train_output=False)
        >>> mean_field_pull(ZeroRisk(), net, jnp.ones((4, 2))).tolist()  # Psi = 0
        [0.0, 0.0]
    """
    theta = jnp.asarray(theta)

    @jax.jit
    def pull(q):
        return jax.grad(lambda p: jnp.sum(objective.first_variation(model, q, p)))(q).mean(0)

    return pull(theta)


def tracking_statistic(sgd, mv) -> dict:
    r"""How far SGD runs are from McKean-Vlasov runs, from their risk curves (one row per
    run, both on the grid t_j = j / n of [0, 1]):

        D = max_j |mean_s R_SGD(t_j) - mean_s R_MV(t_j)| / (R_MV(0) - R_MV(1)),

    normalized by the drop of the McKean-Vlasov mean (inf when it does not drop). Also
    returned: the mean curves (``risk_sgd``, ``risk_mv``) and the runs, the drops
    ``drop_mv`` and ``drop_sgd``, ``D_over_R0`` (normalized by R_MV(0) instead),
    ``D_noise`` = max_j of the standard error of the difference of the means / drop, and
    ``D_per_seed``, the statistic of each SGD run against the McKean-Vlasov mean (Tzen
    and Raginsky 2020 bound max_k |R_N(W_k) - R(mu_{k eta})| for one run).

    Example:
        >>> mv = [np.array([1.0, 0.5, 0.0])] * 2
        >>> round(tracking_statistic([np.array([1.0, 0.6, 0.0])] * 2, mv)["D"], 12)
        0.1
    """
    sgd, mv = np.array(sgd), np.array(mv)
    r_sgd, r_mv = sgd.mean(0), mv.mean(0)
    drop = float(r_mv[0] - r_mv[-1])
    diff = np.abs(r_sgd - r_mv)
    se = np.sqrt(
        (sgd.var(0, ddof=1) / sgd.shape[0] if sgd.shape[0] > 1 else 0.0)
        + (mv.var(0, ddof=1) / mv.shape[0] if mv.shape[0] > 1 else 0.0)
    )
    return {
        "t": np.linspace(0.0, 1.0, r_mv.size).tolist(),
        "risk_sgd": r_sgd.tolist(),
        "risk_mv": r_mv.tolist(),
        "risk_sgd_runs": sgd.tolist(),
        "risk_mv_runs": mv.tolist(),
        "drop_mv": drop,
        "drop_sgd": float(r_sgd[0] - r_sgd[-1]),
        "D": float(diff.max() / drop) if drop > 0 else float("inf"),
        "D_over_R0": float(diff.max() / r_mv[0]),
        "D_noise": float(np.max(se) / drop) if drop > 0 else float("nan"),
        "D_per_seed": [float(np.max(np.abs(r - r_mv)) / drop) for r in sgd],
    }
