r"""The Gibbs fixed point of mean-field Langevin dynamics, and statistics that test it.

Mean-field Langevin dynamics d theta = [v(theta) - lambda theta] dt + sqrt(2/beta) dB is the
Wasserstein gradient flow of the free energy

    F(mu) = R(mu) + (lambda/2) int |theta|^2 dmu + (1/beta) int rho log rho,

and its unique minimizer is the Gibbs (Boltzmann) law of its own potential (Mei, Montanari
and Nguyen 2018, "A mean field view of the landscape of two-layer neural networks",
Theorem 4):

    rho*(theta) = exp(-beta Phi(theta)) / Z,   Phi = dR/dmu[rho*] + lambda |theta|^2 / 2.

With R == 0 each particle is an Ornstein-Uhlenbeck process and rho* = N(0, I / (beta
lambda)), a known answer. The functions here compute the Gibbs law of a potential on a
grid (`gibbs_on_grid`) and its KS distance to particles (`gibbs_ks`), check that the
potential is the drift the dynamics used (`potential_consistency`), give the Gaussian
case's closed forms (`em_ou_variance`, `gaussian_free_energy`), the bias of the kNN
free energy on exact draws (`knn_free_energy_bias`), the statistics of a particle cloud
(`coordinate_stats`, `ou_stationary_stats` against the Gaussian case) and of a recorded
series over the end of a run (`window_stats`). NumPy in and out, after the compiled loop.

Example:
    >>> g = np.linspace(-8.0, 8.0, 4001)
    >>> rho, cdf = gibbs_on_grid(0.5 * g**2, g, beta=2.0)   # N(0, 1/2)
    >>> round(float(np.interp(0.0, g, cdf)), 6)
    0.5
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from ..stats import ks_distance
from .entropy import knn_entropy

__all__ = [
    "coordinate_stats",
    "em_ou_variance",
    "gaussian_free_energy",
    "gibbs_ks",
    "gibbs_on_grid",
    "knn_free_energy_bias",
    "ou_stationary_stats",
    "potential_consistency",
    "window_stats",
]


def gibbs_on_grid(potential, grid, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """The Gibbs density rho = exp(-beta Phi) / Z on ``grid`` and its CDF, from Phi on it.

    Z and the CDF are trapezoid sums on the grid; Phi is shifted by its minimum first (no
    overflow at large beta).

    Args:
        potential: (k,) Phi at the grid points.
        grid: (k,) increasing points, wide enough that exp(-beta Phi) is negligible at the
            ends.
        beta: the inverse temperature.

    Example:
        >>> g = np.linspace(-8.0, 8.0, 4001)
        >>> rho, cdf = gibbs_on_grid(0.5 * g**2, g, 1.0)   # N(0, 1)
        >>> round(float(rho[2000]), 4), round(float(np.interp(1.0, g, cdf)), 4)
        (0.3989, 0.8413)
    """
    u = np.exp(-beta * (potential - potential.min()))
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (u[1:] + u[:-1]) * np.diff(grid))])
    return u / cum[-1], cum / cum[-1]


def gibbs_ks(flow, theta, beta: float, points: int):
    """KS distance sup_w |ECDF_m(w) - CDF_Gibbs(w)| between 1-D particles and the Gibbs law
    of their own measure, and the same distance to the Gibbs law of the L2 term alone.

    Phi(w) = ``flow.objective.first_variation(flow.model, theta, w)`` (it contains the L2
    term lambda w^2 / 2) on ``points`` points spanning the particles +- 5 / sqrt(beta
    lambda); the Gibbs law is `gibbs_on_grid` of it. For m i.i.d. draws of rho*, sqrt(m) KS
    follows Kolmogorov's law (mean `mfnn.stats.KOLMOGOROV_MEAN`, 0.999 quantile 1.95). The
    Gibbs law without dR/dmu, N(0, 1/(beta lambda)) (CDF by erf), is a negative control:
    the particles are far from it when the risk shapes rho*.

    Args:
        flow: a gradient flow (``objective`` with ``l2`` > 0, ``model``) whose particles
            have one coordinate.
        theta: (m, 1) particles.
        beta: the inverse temperature of the Gibbs law.
        points: the number of grid points.

    Returns:
        (KS, KS to N(0, 1/(beta lambda)), grid, the Gibbs density on the grid).
    """
    w, s2 = np.asarray(theta[:, 0]), 1.0 / (beta * float(flow.objective.l2))
    pad = 5.0 / math.sqrt(beta * float(flow.objective.l2))
    grid = np.linspace(w.min() - pad, w.max() + pad, points)
    phi = flow.objective.first_variation(flow.model, theta, jnp.asarray(grid, theta.dtype)[:, None])
    rho, cdf = gibbs_on_grid(np.asarray(phi), grid, beta)
    cdf_l2 = 0.5 * (1.0 + np.vectorize(math.erf)(grid / (2 * s2) ** 0.5))
    return ks_distance(w, grid, cdf), ks_distance(w, grid, cdf_l2), grid, rho


def potential_consistency(flow, theta, grid) -> tuple[float, float]:
    """Two bookkeeping errors of Phi = objective.first_variation on a 1-D problem.

        l2_err = max_grid |Phi - Phi_{lambda=0} - lambda w^2 / 2| / max_grid |Phi|
        drift_err = max_j |v(w_j) + Phi'(w_j)| / max_j |v(w_j)|

    The first says the L2 term is in Phi, the second that -Phi' is the drift v that
    ``flow`` moves the particles ``theta`` (m, 1) with (``flow.full_velocity``); both are
    round-off when the Gibbs law exp(-beta Phi) is the fixed point of the simulated
    dynamics. Phi at a row of its query depends on that row only, so the gradient of its
    sum over the particles is Phi' at each particle.
    """
    objective, model = flow.objective, flow.model
    pts = jnp.asarray(grid, theta.dtype)[:, None]
    phi = np.asarray(objective.first_variation(model, theta, pts))
    phi0 = np.asarray(dataclasses.replace(objective, l2=0.0).first_variation(model, theta, pts))
    l2_term = 0.5 * float(objective.l2) * grid**2
    l2_err = float(np.max(np.abs(phi - phi0 - l2_term)) / np.max(np.abs(phi)))
    grad = jax.grad(lambda q: jnp.sum(objective.first_variation(model, theta, q)))(theta)
    v, _ = flow.full_velocity(theta)
    return l2_err, float(jnp.max(jnp.abs(v + grad)) / jnp.max(jnp.abs(v)))


def em_ou_variance(beta: float, l2: float, dt: float) -> float:
    """The stationary variance of Euler-Maruyama on d w = -lambda w dt + sqrt(2/beta) dB.

    The chain w' = (1 - lambda dt) w + sqrt(2 dt / beta) xi is a Gaussian AR(1) with
    stationary variance (2 dt / beta) / (1 - (1 - lambda dt)^2) = 1 / (beta lambda (1 -
    lambda dt / 2)) for lambda dt < 2: the continuous-time 1 / (beta lambda), biased up by
    the factor 1 / (1 - lambda dt / 2).

    Example:
        >>> round(em_ou_variance(1.0, 1.0, 0.01), 6)   # 1 / 0.995
        1.005025
    """
    return 1.0 / (beta * l2) / (1.0 - l2 * dt / 2.0)


def gaussian_free_energy(dim: int, beta: float, l2: float, var: float) -> float:
    """F(N(0, var I_D)) with R == 0: (lambda/2) D var - (D / (2 beta)) log(2 pi e var).

    At var = 1 / (beta lambda), the Gibbs law, it is the minimum F* = -(D / (2 beta))
    log(2 pi / (beta lambda)).

    Example:
        >>> round(gaussian_free_energy(2, 1.0, 1.0, 1.0), 4)   # -log(2 pi)
        -1.8379
    """
    return 0.5 * l2 * dim * var - dim / (2 * beta) * math.log(2 * math.pi * math.e * var)


def knn_free_energy_bias(
    key, var: float, shape, beta: float, l2: float, k: int, draws: int, dtype
) -> tuple[float, float, float]:
    """The bias and spread of the recorded free energy's estimator on exact draws of
    N(0, var I_D) with R == 0.

        F_i = (lambda/2) mean_j |x_j|^2 - H_kNN(x) / beta,   x (m, D) ~ N(0, var I_D),

    H_kNN the Kozachenko-Leonenko entropy (`knn_entropy` with ``k`` neighbours), draw i
    from ``jax.random.fold_in(key, i)`` of ``shape`` (m, D). Against the exact F =
    `gaussian_free_energy` the bias is mean_i F_i - F and the spread the standard deviation
    of the F_i (ddof 1): the tolerance of a particle run's free energy at this m and D.

    Returns:
        (the exact F, the bias, the spread).

    Example:
        >>> key = jax.random.key(0)
        >>> f, b, sd = knn_free_energy_bias(key, 1.0, (2048, 1), 1.0, 1.0, 1, 4, "float32")
        >>> round(f, 4), bool(abs(b) < 0.05), bool(0 < sd < 0.05)   # F = 1/2 - log(2 pi e)/2
        (-0.9189, True, True)
    """
    f = []
    for i in range(draws):
        x = math.sqrt(var) * jax.random.normal(jax.random.fold_in(key, i), shape, jnp.dtype(dtype))
        h = float(knn_entropy(x, k))
        f.append(0.5 * l2 * float(jnp.mean(jnp.sum(x**2, -1))) - h / beta)
    exact = gaussian_free_energy(shape[1], beta, l2, var)
    return exact, float(np.mean(f) - exact), float(np.std(f, ddof=1))


def ou_stationary_stats(w, beta: float, l2: float, dt: float) -> dict:
    """Particles ``w`` (m, D) of an Euler-Maruyama run of d w = -lambda w dt + sqrt(2/beta)
    dB (R == 0) against the Gibbs law N(0, v I), v = 1 / (beta lambda).

    Returns v, the chain's stationary variance v_EM (`em_ou_variance`), its bias in
    standard errors ``em_bias_over_se`` = (v_EM - v) / max_i SE(var_i), and
    ``coordinates``: `coordinate_stats` against v_EM, with ``z_var_continuous`` =
    |s_i^2 - v| / SE(var_i) added.

    Example:
        >>> w = np.random.default_rng(0).normal(0.0, 1.0, (20000, 2))
        >>> s = ou_stationary_stats(w, 1.0, 1.0, 0.01)
        >>> round(s["v_em"], 6), bool(max(s["coordinates"]["z_var"]) < 4)
        (1.005025, True)
    """
    v, v_em = 1.0 / (beta * l2), em_ou_variance(beta, l2, dt)
    coords = coordinate_stats(w, v_em)
    se_var = np.asarray(coords["se_var"])
    coords["z_var_continuous"] = (np.abs(np.asarray(coords["var"]) - v) / se_var).tolist()
    em_bias = float((v_em - v) / se_var.max())
    return {"v": v, "v_em": v_em, "em_bias_over_se": em_bias, "coordinates": coords}


def coordinate_stats(w, target_var: float) -> dict[str, list[float]]:
    """Per column i of ``w`` (m, D), i.i.d. rows: the mean and variance with their standard
    errors, and their z-scores against mean 0 and variance ``target_var``.

        s_i^2 = variance (ddof 1),   SE(mean_i) = s_i / sqrt(m),
        SE(var_i) = sqrt((m4_i - sigma_i^4) / m)   (central moments with 1/m),
        z_mean_i = |mean_i| / SE(mean_i),   z_var_i = |s_i^2 - target_var| / SE(var_i).

    Example:
        >>> s = coordinate_stats(np.array([[0.0], [0.0], [0.0], [4.0]]), 4.0)
        >>> s["mean"], s["var"], s["se_var"], s["z_var"]
        ([1.0], [4.0], [1.7320508075688772], [0.0])
    """
    w = np.asarray(w)
    m, mean, var = w.shape[0], w.mean(0), w.var(0, ddof=1)
    se_mean, se_var = np.sqrt(var / m), np.sqrt((((w - mean) ** 4).mean(0) - w.var(0) ** 2) / m)
    z_mean, z_var = np.abs(mean) / se_mean, np.abs(var - target_var) / se_var
    out = {"mean": mean, "var": var, "se_mean": se_mean, "se_var": se_var}
    return {k: v.tolist() for k, v in (out | {"z_mean": z_mean, "z_var": z_var}).items()}


def window_stats(t, y, fraction: float) -> dict[str, float]:
    """A recorded series y(t) over the last ``fraction`` of a run, t >= (1 - fraction) T.

    Returns the time average (``mean``, the plateau estimate of a free energy or a risk),
    ``min``, ``max``, the averages over the window's first and second halves (``early``,
    ``late``: a drift of the plateau shows as their difference), ``t_from`` (the first
    record in the window) and ``records``.

    Example:
        >>> s = window_stats(np.arange(5.0), np.array([9.0, 9.0, 1.0, 2.0, 6.0]), 0.5)
        >>> s["mean"], s["early"], s["late"], s["max"] - s["min"], s["t_from"], s["records"]
        (3.0, 1.0, 4.0, 5.0, 2.0, 3)
    """
    t, y = np.asarray(t, float), np.asarray(y, float)
    keep = np.nonzero(t >= (1.0 - fraction) * t[-1])[0]
    half = len(keep) // 2
    w = y[keep]
    return {
        "mean": float(w.mean()),
        "min": float(w.min()),
        "max": float(w.max()),
        "early": float(y[keep[:half] if half else keep].mean()),
        "late": float(y[keep[half:]].mean()),
        "t_from": float(t[keep[0]]),
        "records": int(len(keep)),
    }
