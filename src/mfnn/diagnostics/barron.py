r"""Barron-space diagnostics: a representing measure over ReLU neurons in closed form, the
Monte Carlo error of networks sampled from it, and the random-features least squares.

A Barron function is an expectation over neurons theta = (a, w, b) drawn from a measure pi,

    f(x) = E_pi[a relu(w . x + b)],   ||f||_B = inf over such pi of P(pi),
    P(pi) = E_pi |a| (||w||_1 + |b|)          (the path norm of pi).

N neurons drawn i.i.d. from pi give f_N = (1/N) sum_j a_j relu(w_j . x + b_j) with, for any
probability measure mu of the inputs (Barron 1993; E, Ma and Wu 2019, Theorem 4; H. Yang,
"Mean-field analysis of neural networks", Theorems 2.1-2.2),

    E ||f - f_N||^2_mu = V_mu(pi) / N,   V_mu(pi) = E_pi ||a relu(w . x + b)||^2_mu - ||f||^2_mu,
    V_mu(pi) <= B2(pi)^2 = E_pi a^2 (||w||_1 + |b|)^2 <= 3 P(pi)^2   when ||x||_inf <= 1,

the last inequality on the theorem's box (`barron_rate`). Random features (Rahimi and Recht
2008; E, Ma and Wu 2020) freeze the (w, b) of m neurons and fit only a: a convex least-squares
problem (`random_features_solution`) whose gradient flow in L2(rho_0) has the rate
R(t) - R* <= ||a_0 - a*||^2 / (2t) (`convex_rate_ratio`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtr

CHUNK = 2048
"""Neurons a block when `sampled_error` evaluates f_N (memory: points x CHUNK floats)."""


def relu_gaussian_moments(mean, var) -> tuple[np.ndarray, np.ndarray]:
    r"""E relu(Z) and E relu(Z)^2 for Z ~ N(mean, var), var > 0 (elementwise).

        E relu(Z)   = m Phi(m/s) + s phi(m/s),
        E relu(Z)^2 = (m^2 + s^2) Phi(m/s) + m s phi(m/s),     s = sqrt(var).

    Args:
        mean: the means m (any shape).
        var: the variances s^2 (broadcast with ``mean``).

    Returns:
        (E relu(Z), E relu(Z)^2), arrays of the broadcast shape.

    Example:
        >>> m1, m2 = relu_gaussian_moments(np.array([0.0]), np.array([1.0]))
        >>> round(float(m1[0]), 6), round(float(m2[0]), 6)  # 1/sqrt(2 pi), 1/2
        (0.398942, 0.5)
    """
    mean, var = np.asarray(mean, float), np.asarray(var, float)
    s = np.sqrt(var)
    z = mean / s
    cdf, pdf = ndtr(z), np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return mean * cdf + s * pdf, (mean * mean + var) * cdf + mean * s * pdf


def abs_gaussian_mean(mean, std) -> np.ndarray:
    r"""E|Z| for Z ~ N(mean, std^2): s sqrt(2/pi) exp(-m^2/(2 s^2)) + m (1 - 2 Phi(-m/s)).

    Example:
        >>> round(float(abs_gaussian_mean(0.0, 1.0)), 6)  # sqrt(2/pi)
        0.797885
    """
    mean, std = np.asarray(mean, float), np.asarray(std, float)
    folded = std * math.sqrt(2.0 / math.pi) * np.exp(-(mean**2) / (2 * std**2))
    return folded + mean * (1.0 - 2.0 * ndtr(-mean / std))


@dataclasses.dataclass(frozen=True)
class GaussianMixtureMeasure:
    r"""pi = sum_k p_k delta_{a_k} (x) N(mu_k, s_k^2 I_{d+1}) over neurons theta = (a, w, b).

    Given the component k, w . x + b ~ N(mu_k . x~, s_k^2 |x~|^2) with x~ = (x, 1), so

        f(x) = sum_k p_k a_k E relu(N(mu_k . x~, s_k^2 |x~|^2))      (`relu_gaussian_moments`),

    and the path norm P(pi) and B2(pi)^2 follow from E|Z| of Gaussian coordinates, which are
    independent given k: everything but the error of sampled networks is exact.

    Attributes:
        weights: p (K,), positive, summing to 1.
        a: the output weights a_k (K,).
        mean: mu_k (K, d + 1): w, then b.
        std: s_k (K,), positive.

    Example:
        >>> pi = GaussianMixtureMeasure.of([{"weight": 1, "a": 2, "mean": [0, 0], "std": 1}])
        >>> round(float(pi.f(np.zeros((1, 1)))[0]), 6)  # 2 E relu(N(0, 1))
        0.797885
        >>> round(pi.path_norm(), 6)  # 2 (E|w| + E|b|) = 4 sqrt(2/pi)
        3.191538
        >>> round(pi.b2_squared(), 6)  # 4 E(|w| + |b|)^2 = 4 (2 + 4/pi)
        13.092958
    """

    weights: np.ndarray
    a: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, components) -> GaussianMixtureMeasure:
        """From components, mappings with keys weight, a, mean, std."""
        rows = [dict(c) for c in components]
        return cls(*(np.array([r[k] for r in rows], float) for k in ("weight", "a", "mean", "std")))

    @property
    def d(self) -> int:
        """The input dimension."""
        return int(self.mean.shape[1]) - 1

    def _moments(self, x):
        xt = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
        var = (xt**2).sum(axis=1)[:, None] * self.std[None, :] ** 2
        return relu_gaussian_moments(xt @ self.mean.T, var)

    def f(self, x: np.ndarray) -> np.ndarray:
        """f(x) = E_pi[a relu(w . x + b)] at inputs x (n, d) -> (n,)."""
        return self._moments(x)[0] @ (self.weights * self.a)

    def second_moment(self, x: np.ndarray) -> np.ndarray:
        """E_pi[a^2 relu(w . x + b)^2] at inputs x (n, d) -> (n,)."""
        return self._moments(x)[1] @ (self.weights * self.a**2)

    def variance(self, x: np.ndarray) -> float:
        """V_mu(pi) = E_pi ||a relu(w . x + b)||^2_mu - ||f||^2_mu for mu the empirical
        measure of the points x (n, d): N times the expected error of N sampled neurons."""
        return float(np.mean(self.second_moment(x)) - np.mean(self.f(x) ** 2))

    def path_norm(self) -> float:
        """P(pi) = E_pi |a| (||w||_1 + |b|), an upper bound on ||f||_B."""
        e = abs_gaussian_mean(self.mean, self.std[:, None]).sum(axis=1)
        return float(self.weights @ (np.abs(self.a) * e))

    def b2_squared(self) -> float:
        """B2(pi)^2 = E_pi a^2 (||w||_1 + |b|)^2."""
        e = abs_gaussian_mean(self.mean, self.std[:, None])
        second = (self.mean**2 + self.std[:, None] ** 2).sum(axis=1)
        sq = second + e.sum(axis=1) ** 2 - (e**2).sum(axis=1)
        return float(self.weights @ (self.a**2 * sq))

    def sample(self, rng: np.random.Generator, n: int, std_factor: float = 1.0):
        """n i.i.d. neurons (a (n,), w (n, d), b (n,)); ``std_factor`` != 1 scales every
        s_k, a measure that no longer represents f (a control)."""
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        z = rng.standard_normal((n, self.d + 1))
        theta = self.mean[k] + (std_factor * self.std[k])[:, None] * z
        return self.a[k], theta[:, : self.d], theta[:, self.d]


@jax.jit
def _relu_sum(x, w, b, a):
    """sum_j a_j relu(w_j . x_i + b_j) for a block of neurons: (n,)."""
    return jnp.maximum(x @ w.T + b, 0.0) @ a


def sampled_error(x, fx, a, w, b) -> float:
    """||f - f_N||^2_mu = mean_i (f(x_i) - f_N(x_i))^2, f_N = (1/N) sum_j a_j relu(w_j . x + b_j).

    The neurons go in blocks of at most `CHUNK`, each padded with a = 0 neurons to a power
    of two, so a handful of compiled shapes serve every N (float64: enable it first).

    Args:
        x: the points of mu (n, d).
        fx: f at those points (n,).
        a, w, b: the N neurons, (N,), (N, d), (N,).

    Example:
        >>> x = np.array([[1.0], [-1.0]])
        >>> sampled_error(x, np.zeros(2), np.array([2.0]), np.array([[1.0]]), np.zeros(1))
        2.0
    """
    n_neurons = a.shape[0]
    xj = jnp.asarray(x, jnp.float64)
    fn = np.zeros(x.shape[0])
    for s in range(0, n_neurons, CHUNK):
        blk = slice(s, min(s + CHUNK, n_neurons))
        size = blk.stop - blk.start
        pad = 1 << max(size - 1, 0).bit_length()
        wb, bb, ab = np.zeros((pad, w.shape[1])), np.zeros(pad), np.zeros(pad)
        wb[:size], bb[:size], ab[:size] = w[blk], b[blk], a[blk]
        fn += np.asarray(_relu_sum(xj, *(jnp.asarray(v, jnp.float64) for v in (wb, bb, ab))))
    return float(np.mean((fx - fn / n_neurons) ** 2))


def barron_rate(path_norm, n, constant: float = 3.0):
    """The Barron/Monte Carlo rate ``constant`` P^2 / N: with the constant 3, the bound on
    ||f - f_N||^2 of the best N-neuron network on the box [-1, 1]^d, for P = ||f||_B or any
    path norm above it (a representing measure's P(pi)).

    Example:
        >>> barron_rate(2.0, np.array([1.0, 10.0])).tolist()
        [12.0, 1.2]
    """
    return constant * path_norm**2 / n


def feature_matrix(model, theta, x) -> np.ndarray:
    """Phi (n, m), Phi_ij = sigma(w_j . x_i + b_j): the features of the particles ``theta``
    (a `TwoLayer`'s rows (a, w, b)) at the inputs ``x`` (n, d), output weights set to 1."""
    _, w, b = model.split(jnp.asarray(theta))
    ones = model.join(jnp.ones(theta.shape[0], theta.dtype), w, b)
    return np.asarray(model.features(ones, jnp.asarray(x)))


def random_features_solution(phi: np.ndarray, y: np.ndarray, a0: np.ndarray) -> dict:
    r"""The minimizer of R(a) = (1/(2n)) |Phi a / m - y|^2 closest to a_0 in L2(rho_0).

        a* = a_0 + argmin {|delta| : delta minimizes |(Phi / m) delta - (y - Phi a_0 / m)|},
        R* = R(a*),   L = lambda_max(Phi^T Phi / (n m))   (the Hessian in L2(rho_0)),
        rel_gradient = |Phi^T (Phi a* / m - y)| / |Phi^T y|.

    a* is the limit of the gradient flow from a_0 (it moves a_0 in the row space of Phi only).

    Args:
        phi: the features Phi (n, m) (`feature_matrix`).
        y: the targets (n,).
        a0: the initial output weights (m,).

    Returns:
        dict with a_star (m,), r_star, dist2 = (1/m) sum_j (a_0j - a*_j)^2, L, rel_gradient.

    Example:
        >>> phi = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
        >>> s = random_features_solution(phi, phi @ np.array([4.0, -2.0]) / 2, np.zeros(2))
        >>> np.round(s["a_star"], 10).tolist(), round(s["dist2"], 10)
        ([4.0, -2.0], 10.0)
    """
    n, m = phi.shape
    a_star = a0 + np.linalg.lstsq(phi / m, y - phi @ a0 / m, rcond=None)[0]
    res = phi @ a_star / m - y
    ty = np.linalg.norm(phi.T @ y)
    return {
        "a_star": a_star,
        "r_star": float(0.5 * np.mean(res**2)),
        "dist2": float(np.mean((a0 - a_star) ** 2)),
        "L": float(np.linalg.eigvalsh(phi.T @ phi / (n * m))[-1]),
        "rel_gradient": float(np.linalg.norm(phi.T @ res) / ty) if ty > 0 else 0.0,
    }


def convex_rate_ratio(t, risk, r_star: float, dist2: float) -> np.ndarray:
    r"""ratio(t) = t (R(t) - R*) / (||a_0 - a*||^2 / 2) at the times t > 0.

    For a convex risk R and its gradient flow (or gradient descent with step dt L <= 1, at
    t = k dt; Garrigos and Gower 2023, Theorem 3.4), R(t) - R* <= ||a_0 - a*||^2 / (2t), i.e.
    ratio(t) <= 1; for a quadratic sup_t ratio(t) <= 1/(2e) along the flow.

    Example:
        >>> convex_rate_ratio(np.array([0.0, 1.0, 4.0]), np.array([9.0, 0.5, 0.25]), 0.0, 2.0)
        array([0.5, 1. ])
    """
    t, risk = np.asarray(t, float), np.asarray(risk, float)
    keep = t > 0
    return t[keep] * (risk[keep] - r_star) / (0.5 * dist2)


__all__ = [
    "CHUNK",
    "GaussianMixtureMeasure",
    "abs_gaussian_mean",
    "barron_rate",
    "convex_rate_ratio",
    "feature_matrix",
    "random_features_solution",
    "relu_gaussian_moments",
    "sampled_error",
]
