r"""Online SGD of soft committee machines: the exact order-parameter ODEs at large d.

**Networks.** For inputs x ~ N(0, I_d), a student with K hidden units and a teacher with M,

    f(x) = sum_{k=1..K} v_k g(lambda_k),    lambda_k = W_k . x / sqrt d,
    y(x) = sum_{n=1..M} v*_n g(nu_n),        nu_n = W*_n . x / sqrt d,

with g(z) = erf(z / sqrt 2), the convention of Saad and Solla (1995): g(0) = 0,
g'(z) = sqrt(2/pi) exp(-z^2/2), and E g(z)^2 = 1/3 for z ~ N(0, 1). erf(z) itself is
g(sqrt 2 z), i.e. g at input scale sqrt 2; this module is for g(z) = erf(z / sqrt 2) only
(a unit erf(s w . x) is the unit g with weights sqrt 2 s w, which is how `from_mfnn` maps
mfnn's `activation_scale` s). Rows W_k, W*_n of W (K, d) and W* (M, d) have |W_k|^2 = O(d).

**Online SGD.** Step mu draws B fresh inputs x^1..x^B and, with Delta = f(x) - y(x),

    W_k <- W_k - (eta_w / sqrt d) (1/B) sum_b v_k g'(lambda_k^b) Delta^b x^b,
    v_k <- v_k - (eta_v / d)      (1/B) sum_b g(lambda_k^b) Delta^b     (second layer trained),

both from the old weights. The generalisation error is eps_g = (1/2) E_x (f(x) - y(x))^2.

**Order parameters.** Q_kl = W_k . W_l / d, R_kn = W_k . W*_n / d, T_nm = W*_n . W*_m / d
(the covariance of the Gaussian vector (lambda, nu)), and v, v*. Time is alpha = mu / d, the
number of steps over d. As d -> infinity at fixed eta_w, eta_v, B, alpha, the order
parameters concentrate on the solution of the ODEs below (the equations of motion of Saad and
Solla 1995 and Biehl and Schwarze 1995 for B = 1 and fixed v; with a trained second layer
those of Goldt, Advani, Saxe, Krzakala and Zdeborova 2019), writing
delta_k = v_k g'(lambda_k) Delta:

    dR_kn/dalpha = -eta_w E[delta_k nu_n],
    dQ_kl/dalpha = -eta_w (E[delta_k lambda_l] + E[delta_l lambda_k])
                   + (eta_w^2 / B) E[delta_k delta_l],
    dv_k/dalpha  = -eta_v E[g(lambda_k) Delta]        (0 when the second layer is fixed),

T and v* constant. Derivation (one step is dalpha = 1/d):

- R_kn changes by -(eta_w / d) (1/B) sum_b delta_k^b nu_n^b: a mean of B terms with mean
  E[delta_k nu_n] and O(1/d) variance per step, so over alpha d steps the fluctuations average
  out (they add O(1/sqrt d) to R) and the drift is the expected gradient.
- Q_kl changes by (dW_k . W_l + W_k . dW_l + dW_k . dW_l) / d. The first two are as for R.
  The last is (eta_w^2 / d^2) (1/B^2) sum_{b,b'} delta_k^b delta_l^b' x^b . x^b'. The diagonal
  b = b' has x^b . x^b = d (1 + O(d^(-1/2))): B terms of size eta_w^2 / d, i.e.
  (eta_w^2 / (B d)) E[delta_k delta_l] per step. The B(B - 1) off-diagonal terms have
  x^b . x^b' = O(sqrt d) and their mean is of order 1/d^2. The factor 1/B is the variance of
  the mean of B independent gradients: the eta^2 term is the squared length of the step,
  and only its noise part (the diagonal) survives at large d.
- v_k changes by -(eta_v / d) (1/B) sum_b g(lambda_k^b) Delta^b: the drift E[g(lambda_k) Delta];
  its square is O(1/d^2) per step, so v has no eta_v^2 term.

With u = (v, -v*) and z = (lambda, nu) (Delta = sum_c u_c g(z_c)) the expectations are

    E[delta_k z_b]     = v_k sum_c u_c I3(k, b, c),
    E[delta_k delta_l] = v_k v_l sum_{c,e} u_c u_e I4(k, l, c, e),
    E[g(lambda_k) Delta] = sum_c u_c I2(k, c),      eps_g = (1/2) sum_{c,e} u_c u_e I2(c, e),

Gaussian integrals over z ~ N(0, C), C = [[Q, R], [R^T, T]] ((K + M) square), in closed form
for g = erf(z / sqrt 2) (`i2`, `i3`, `i4`; the averages of Saad and Solla 1995 PRE).

**The map to mfnn.** mfnn's two-layer mean-field network without bias (docs/theory.md
sections 1-3) is f = (1/K) sum_j a_j sigma(w_j . x), sigma(z) = erf(s z) (`model.activation:
erf`, `model.activation_scale: s`), with particle velocity -K dR/dtheta_j for the risk
R = (1/2) E (f - y)^2 and the online SGD step theta_j <- theta_j + dt v_j on B fresh samples
(`sampling: online`). Since erf(s z) = g(sqrt 2 s z), it is this committee machine with

    W_j = sqrt 2 s sqrt d w_j,   v_j = a_j / K,   eta_w = 2 s^2 K d dt,   eta_v = d dt / K,
    alpha = steps / d = t / (d dt),  t = steps * dt,

so at s = 1/sqrt 2 (g itself) W_j = sqrt d w_j, eta_w = K d dt, and the overlaps are
Q = w w^T, R = w w*^T, T = w* w*^T without a 1/d (`mfnn_learning_rates`, `mfnn_time`,
`OrderParameters.from_mfnn`). In mfnn's time the ODE reads dQ/dt = (1/(d dt)) dQ/dalpha:
the gradient terms are d-free, and the noise term carries (2 s^2 K)^2 d dt / B, so it is the
SGD noise of a step dt ~ 1/d and vanishes for d dt / B -> 0 (the gradient flow).

Floats are float64 when JAX's x64 mode is on (mfnn turns it on for float64 runs).

References:
    D. Saad and S. A. Solla (1995). Exact solution for on-line learning in multilayer neural
    networks. Phys. Rev. Lett. 74, 4337. And: On-line learning in soft committee machines.
    Phys. Rev. E 52, 4225.
    M. Biehl and H. Schwarze (1995). Learning by on-line gradient descent. J. Phys. A 28, 643.
    S. Goldt, M. S. Advani, A. M. Saxe, F. Krzakala and L. Zdeborova (2019). Dynamics of
    stochastic gradient descent for two-layer neural networks in the teacher-student setup.
    NeurIPS 2019.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._typing import Array, Float, Key, Scalar
from .errors import ConfigError

_TWO_OVER_PI = 2.0 / math.pi
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def g(z: Array) -> Array:
    """The activation g(z) = erf(z / sqrt 2) of the soft committee machine."""
    return jax.scipy.special.erf(z / math.sqrt(2.0))


def g_prime(z: Array) -> Array:
    """g'(z) = sqrt(2 / pi) exp(-z^2 / 2)."""
    return _SQRT_2_OVER_PI * jnp.exp(-0.5 * z * z)


# ------------------------------------------------------------------ Gaussian integrals


def _i2(c11, c12, c22):
    return _TWO_OVER_PI * jnp.arcsin(c12 / jnp.sqrt((1.0 + c11) * (1.0 + c22)))


def _i3(c11, c12, c13, c23, c33):
    lam3 = (1.0 + c11) * (1.0 + c33) - c13 * c13
    return _TWO_OVER_PI / jnp.sqrt(lam3) * (c23 * (1.0 + c11) - c12 * c13) / (1.0 + c11)


def _i4(c11, c12, c13, c14, c22, c23, c24, c33, c34, c44):
    lam4 = (1.0 + c11) * (1.0 + c22) - c12 * c12
    lam0 = (
        lam4 * c34
        - c23 * c24 * (1.0 + c11)
        - c13 * c14 * (1.0 + c22)
        + c12 * c13 * c24
        + c12 * c14 * c23
    )
    lam1 = lam4 * (1.0 + c33) - c23 * c23 * (1.0 + c11) - c13 * c13 * (1.0 + c22)
    lam1 = lam1 + 2.0 * c12 * c13 * c23
    lam2 = lam4 * (1.0 + c44) - c24 * c24 * (1.0 + c11) - c14 * c14 * (1.0 + c22)
    lam2 = lam2 + 2.0 * c12 * c14 * c24
    return 4.0 / (math.pi**2 * jnp.sqrt(lam4)) * jnp.arcsin(lam0 / jnp.sqrt(lam1 * lam2))


@jax.jit
def _i2_cov(c):
    return _i2(c[..., 0, 0], c[..., 0, 1], c[..., 1, 1])


@jax.jit
def _i3_cov(c):
    return _i3(c[..., 0, 0], c[..., 0, 1], c[..., 0, 2], c[..., 1, 2], c[..., 2, 2])


@jax.jit
def _i4_cov(c):
    idx = ((0, 0), (0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (3, 3))
    return _i4(*(c[..., a, b] for a, b in idx))


def _check_cov(cov, n: int, name: str) -> Array:
    cov = jnp.asarray(cov)
    if cov.ndim < 2 or cov.shape[-2:] != (n, n):
        raise ConfigError(
            f"`{name}` needs covariance matrices of shape (..., {n}, {n}); got {cov.shape}."
        )
    return cov


def i2(cov: Float[Array, "... 2 2"]) -> Float[Array, "..."]:
    r"""I2(C) = E[g(u_1) g(u_2)] for u ~ N(0, C), g(z) = erf(z / sqrt 2):

        I2(C) = (2/pi) arcsin( C_12 / sqrt((1 + C_11) (1 + C_22)) ).

    Args:
        cov: (..., 2, 2) covariance matrices (symmetric, positive semi-definite).

    Returns:
        (...) the integrals.

    Example:
        >>> float(i2(jnp.eye(2)))  # independent units
        0.0

    References:
        Saad and Solla (1995 PRE), their average I2; the erf kernel of Williams, "Computing with
        infinite networks", NeurIPS 1996.
    """
    return _i2_cov(_check_cov(cov, 2, "cov"))


def i3(cov: Float[Array, "... 3 3"]) -> Float[Array, "..."]:
    r"""I3(C) = E[g'(u_1) u_2 g(u_3)] for u ~ N(0, C), g(z) = erf(z / sqrt 2):

        I3(C) = (2/pi) (1 / sqrt(L3)) (C_23 (1 + C_11) - C_12 C_13) / (1 + C_11),
        L3 = (1 + C_11) (1 + C_33) - C_13^2.

    (Stein's lemma twice: E[u_2 h(u)] = C_21 E[d_1 h] + C_23 E[d_3 h], with
    E[g'(u_1) g'(u_3)] = (2/pi) / sqrt(L3) and E[g''(u_1) g(u_3)] = -C_13 (2/pi) /
    (sqrt(L3) (1 + C_11)).)

    Args:
        cov: (..., 3, 3) covariance matrices.

    Returns:
        (...) the integrals.

    References:
        Saad and Solla (1995 PRE), their average I3.
    """
    return _i3_cov(_check_cov(cov, 3, "cov"))


def i4(cov: Float[Array, "... 4 4"]) -> Float[Array, "..."]:
    r"""I4(C) = E[g'(u_1) g'(u_2) g(u_3) g(u_4)] for u ~ N(0, C), g(z) = erf(z / sqrt 2):

        I4(C) = 4 / (pi^2 sqrt(L4)) arcsin( L0 / sqrt(L1 L2) ),
        L4 = (1 + C_11)(1 + C_22) - C_12^2,
        L0 = L4 C_34 - C_23 C_24 (1 + C_11) - C_13 C_14 (1 + C_22)
             + C_12 (C_13 C_24 + C_14 C_23),
        L1 = L4 (1 + C_33) - C_23^2 (1 + C_11) - C_13^2 (1 + C_22) + 2 C_12 C_13 C_23,
        L2 = L4 (1 + C_44) - C_24^2 (1 + C_11) - C_14^2 (1 + C_22) + 2 C_12 C_14 C_24.

    Args:
        cov: (..., 4, 4) covariance matrices.

    Returns:
        (...) the integrals.

    References:
        Saad and Solla (1995 PRE), their average I4.
    """
    return _i4_cov(_check_cov(cov, 4, "cov"))


# ------------------------------------------------------------------ order parameters


def _is_traced(*xs) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in xs)


def _covariance(Q, R, T) -> Array:
    return jnp.block([[Q, R], [R.T, T]])


class OrderParameters(eqx.Module):
    r"""The state of a soft committee machine and its teacher at large d.

    Q_kl = W_k . W_l / d, R_kn = W_k . W*_n / d, T_nm = W*_n . W*_m / d, the second-layer
    weights v (student) and v* (teacher); (lambda, nu) ~ N(0, [[Q, R], [R^T, T]]).

    Attributes:
        Q: (K, K) student-student overlaps, symmetric positive definite.
        R: (K, M) student-teacher overlaps.
        T: (M, M) teacher-teacher overlaps; [[Q, R], [R^T, T]] positive semi-definite.
        v: (K,) student second-layer weights.
        v_star: (M,) teacher second-layer weights.

    Bad shapes, an asymmetric or non-positive-definite Q, or a joint matrix that is not a
    covariance raise `ConfigError` (the value checks are skipped under a JAX trace).

    References:
        Saad and Solla (1995 PRE); Goldt et al. (2019).
    """

    Q: Float[Array, "K K"]
    R: Float[Array, "K M"]
    T: Float[Array, "M M"]
    v: Float[Array, " K"]
    v_star: Float[Array, " M"]

    def __init__(self, Q, R, T, v, v_star):
        Q, R, T, v, v_star = (jnp.asarray(a) for a in (Q, R, T, v, v_star))
        if Q.ndim != 2 or Q.shape[0] != Q.shape[1] or Q.shape[0] < 1:
            raise ConfigError(f"`Q` must be a (K, K) matrix with K >= 1; got shape {Q.shape}.")
        if T.ndim != 2 or T.shape[0] != T.shape[1] or T.shape[0] < 1:
            raise ConfigError(f"`T` must be an (M, M) matrix with M >= 1; got shape {T.shape}.")
        K, M = Q.shape[0], T.shape[0]
        if R.shape != (K, M):
            raise ConfigError(f"`R` must have shape (K, M) = ({K}, {M}); got {R.shape}.")
        if v.shape != (K,):
            raise ConfigError(f"`v` must have shape (K,) = ({K},); got {v.shape}.")
        if v_star.shape != (M,):
            raise ConfigError(f"`v_star` must have shape (M,) = ({M},); got {v_star.shape}.")
        if not _is_traced(Q, R, T, v, v_star):
            _check_values(*(np.asarray(a) for a in (Q, R, T, v, v_star)))
        self.Q, self.R, self.T, self.v, self.v_star = Q, R, T, v, v_star

    @property
    def K(self) -> int:
        """The number of student hidden units."""
        return int(self.Q.shape[0])

    @property
    def M(self) -> int:
        """The number of teacher hidden units."""
        return int(self.T.shape[0])

    def covariance(self) -> Float[Array, "P P"]:
        """C = [[Q, R], [R^T, T]], the covariance of (lambda, nu), P = K + M."""
        return _covariance(self.Q, self.R, self.T)

    @classmethod
    def from_weights(
        cls,
        W: Float[Array, "K d"],
        W_star: Float[Array, "M d"],
        v: Float[Array, " K"],
        v_star: Float[Array, " M"],
    ) -> OrderParameters:
        """Q = W W^T / d, R = W W*^T / d, T = W* W*^T / d from the committee weights.

        Args:
            W: (K, d) student first-layer weights (rows W_k, |W_k|^2 = O(d)).
            W_star: (M, d) teacher first-layer weights.
            v: (K,) student second-layer weights.
            v_star: (M,) teacher second-layer weights.
        """
        W, W_star = jnp.asarray(W), jnp.asarray(W_star)
        if W.ndim != 2 or W_star.ndim != 2 or W.shape[1] != W_star.shape[1]:
            raise ConfigError(
                "`W` (K, d) and `W_star` (M, d) must be matrices with the same d; "
                f"got shapes {W.shape} and {W_star.shape}."
            )
        d = W.shape[1]
        return cls(W @ W.T / d, W @ W_star.T / d, W_star @ W_star.T / d, v, v_star)

    @classmethod
    def from_mfnn(
        cls,
        w: Float[Array, "K d"],
        a: Float[Array, " K"],
        w_star: Float[Array, "M d"],
        v_star: Float[Array, " M"],
        *,
        activation_scale: float = 1.0 / math.sqrt(2.0),
    ) -> OrderParameters:
        r"""The order parameters of an mfnn two-layer mean-field network without bias.

        The student f = (1/K) sum_j a_j erf(s w_j . x) and teacher y = sum_n v*_n
        erf(s w*_n . x) (an mfnn teacher measure sum_i alpha_i delta_(a_i, w_i) has
        v*_i = alpha_i a_i) are the committee machines of the module docstring with
        W = sqrt 2 s sqrt d w, v = a / K, so

            Q = 2 s^2 w w^T,  R = 2 s^2 w w*^T,  T = 2 s^2 w* w*^T,  v = a / K

        (no 1/d: w = W / (sqrt 2 s sqrt d)); at s = 1/sqrt 2 (g itself) Q = w w^T.

        Args:
            w: (K, d) student input weights (rows of the mfnn particles' w block).
            a: (K,) student output weights.
            w_star: (M, d) teacher input weights.
            v_star: (M,) teacher output weights alpha_i a_i.
            activation_scale: s of `model.activation_scale` (mfnn's default is 1, i.e.
                erf(z) = g(sqrt 2 z)).
        """
        c2 = 2.0 * _check_scale(activation_scale) ** 2
        w, w_star, a = jnp.asarray(w), jnp.asarray(w_star), jnp.asarray(a)
        if w.ndim != 2 or w_star.ndim != 2 or w.shape[1] != w_star.shape[1]:
            raise ConfigError(
                "`w` (K, d) and `w_star` (M, d) must be matrices with the same d; "
                f"got shapes {w.shape} and {w_star.shape}."
            )
        K = w.shape[0]
        return cls(c2 * w @ w.T, c2 * w @ w_star.T, c2 * w_star @ w_star.T, a / K, v_star)


def _check_values(Q, R, T, v, v_star) -> None:
    for name, a in (("Q", Q), ("R", R), ("T", T), ("v", v), ("v_star", v_star)):
        if not np.all(np.isfinite(a)):
            raise ConfigError(f"`{name}` must be finite; got {a.tolist()}.")
    for name, a in (("Q", Q), ("T", T)):
        if not np.allclose(a, a.T, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(a).max())):
            raise ConfigError(f"`{name}` must be symmetric; got {a.tolist()}.")
    q_min = np.linalg.eigvalsh(Q).min()
    if not q_min > 0:
        raise ConfigError(
            f"`Q` (the student overlaps W W^T / d) must be positive definite; its smallest "
            f"eigenvalue is {q_min:.3g}: {Q.tolist()}."
        )
    C = np.block([[Q, R], [R.T, T]])
    c_min = np.linalg.eigvalsh(C).min()
    if c_min < -1e-10 * max(1.0, np.abs(C).max()):
        raise ConfigError(
            "`R` with `Q` and `T` must form a covariance [[Q, R], [R^T, T]] (positive "
            f"semi-definite); its smallest eigenvalue is {c_min:.3g}. R = {R.tolist()}."
        )


def _check_scale(s) -> float:
    if not (isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) and s > 0):
        raise ConfigError(f"`activation_scale` must be a finite number > 0; got {s!r}.")
    return float(s)


def _eps_g(Q, R, T, v, v_star) -> Scalar:
    C = _covariance(Q, R, T)
    u = jnp.concatenate([v, -v_star])
    diag = jnp.diagonal(C)
    I2 = _i2(diag[:, None], C, diag[None, :])
    return 0.5 * u @ I2 @ u


_eps_g_jit = jax.jit(_eps_g)


def generalisation_error(op: OrderParameters) -> Scalar:
    r"""eps_g = (1/2) E_x (f(x) - y(x))^2 in closed form:

        eps_g = (1/2) [ sum_kl v_k v_l I2(Q_kk, Q_kl, Q_ll) - 2 sum_kn v_k v*_n I2(Q_kk, R_kn, T_nn)
                        + sum_nm v*_n v*_m I2(T_nn, T_nm, T_mm) ],

    I2(a, c, b) = (2/pi) arcsin(c / sqrt((1 + a)(1 + b))) (`i2`). It is mfnn's population
    risk R of the mapped network (`OrderParameters.from_mfnn`).

    References:
        Saad and Solla (1995 PRE), the generalisation error in the order parameters;
        Goldt et al. (2019), the same with second-layer weights.
    """
    return _eps_g_jit(op.Q, op.R, op.T, op.v, op.v_star)


# ------------------------------------------------------------------ the ODE


class _Rates(NamedTuple):
    eta_w: Array
    eta_v: Array
    noise: Array  # eta_w^2 / B, or 0 without the SGD-noise term
    train: Array  # 1.0 when the second layer is trained, else 0.0


def _derivatives(rates: _Rates, Q, R, T, v, v_star):
    """(dQ, dR, dv) / dalpha of the module docstring."""
    K = Q.shape[0]
    C = _covariance(Q, R, T)
    d = jnp.diagonal(C)
    u = jnp.concatenate([v, -v_star])
    Ck = C[:K]  # (K, P) rows of the students
    dk = d[:K]
    # I3[k, b, c] = E[g'(z_k) z_b g(z_c)], k a student, b and c any unit
    I3 = _i3(dk[:, None, None], Ck[:, :, None], Ck[:, None, :], C[None, :, :], d[None, None, :])
    A = v[:, None] * jnp.einsum("kbc,c->kb", I3, u)  # E[delta_k z_b]
    # I4[k, l, c, e] = E[g'(z_k) g'(z_l) g(z_c) g(z_e)], k and l students
    I4 = _i4(
        dk[:, None, None, None],
        Ck[:, :K, None, None],
        Ck[:, None, :, None],
        Ck[:, None, None, :],
        dk[None, :, None, None],
        Ck[None, :, :, None],
        Ck[None, :, None, :],
        d[None, None, :, None],
        C[None, None, :, :],
        d[None, None, None, :],
    )
    N = v[:, None] * v[None, :] * jnp.einsum("klce,c,e->kl", I4, u, u)  # E[delta_k delta_l]
    AQ = A[:, :K]
    dQ = -rates.eta_w * (AQ + AQ.T) + rates.noise * N
    dR = -rates.eta_w * A[:, K:]
    I2 = _i2(dk[:, None], Ck, d[None, :])
    dv = -rates.train * rates.eta_v * (I2 @ u)
    return dQ, dR, dv


_derivatives_jit = jax.jit(_derivatives)


class CommitteeTrajectory(eqx.Module):
    """Order parameters and eps_g at the times alpha (steps / d) of an ODE solution or a
    simulation.

    Attributes:
        alpha: (n,) times alpha = mu / d.
        Q: (n, K, K), R: (n, K, M), v: (n, K): the order parameters at each time.
        T: (M, M), v_star: (M,): the teacher's (constant).
        eps_g: (n,) the generalisation error (`generalisation_error`) at each time.
    """

    alpha: Float[Array, " n"]
    Q: Float[Array, "n K K"]
    R: Float[Array, "n K M"]
    v: Float[Array, "n K"]
    T: Float[Array, "M M"]
    v_star: Float[Array, " M"]
    eps_g: Float[Array, " n"]

    def at(self, i: int) -> OrderParameters:
        """The order parameters at the i-th recorded time."""
        return OrderParameters(self.Q[i], self.R[i], self.T, self.v[i], self.v_star)


_eps_g_path = jax.jit(jax.vmap(_eps_g, in_axes=(0, 0, None, 0, None)))


def _trajectory(alpha, Q, R, v, T, v_star) -> CommitteeTrajectory:
    eps = _eps_g_path(Q, R, T, v, v_star)
    return CommitteeTrajectory(alpha, Q, R, v, T, v_star, eps)


def _nonneg(x, name: str) -> float:
    if not (isinstance(x, int | float | np.floating | np.integer) and not isinstance(x, bool)):
        raise ConfigError(f"`{name}` must be a number >= 0; got {x!r}.")
    if not (math.isfinite(x) and x >= 0):
        raise ConfigError(f"`{name}` must be a finite number >= 0; got {x!r}.")
    return float(x)


def _positive_int(x, name: str) -> int:
    if isinstance(x, bool) or not isinstance(x, int | np.integer) or x < 1:
        raise ConfigError(f"`{name}` must be an integer >= 1; got {x!r}.")
    return int(x)


class OnlineSGDODE(eqx.Module):
    r"""The d -> infinity ODEs of online SGD in (Q, R, v) (module docstring):

        dR_kn/dalpha = -eta_w E[delta_k nu_n],
        dQ_kl/dalpha = -eta_w (E[delta_k lambda_l] + E[delta_l lambda_k])
                       + (eta_w^2 / B) E[delta_k delta_l],
        dv_k/dalpha  = -eta_v E[g(lambda_k) Delta]     (train_second_layer only),

    delta_k = v_k g'(lambda_k) Delta, alpha = steps / d, for g = erf(z / sqrt 2).

    Attributes:
        eta_w: learning rate of the first layer (>= 0), scaled as in the module docstring.
        eta_v: learning rate of the second layer (>= 0; used when train_second_layer).
        batch_size: B >= 1 fresh samples per step; the eta_w^2 term carries 1/B.
        train_second_layer: whether v moves.
        sgd_noise: keep the eta_w^2 / B term (True, the exact limit). False drops it: the
            order-parameter ODE of gradient flow on eps_g in the weights, the limit
            eta_w -> 0 at fixed eta_w alpha (a negative control here; it is not the
            d -> infinity limit of SGD at finite eta_w).

    References:
        Saad and Solla (1995 PRL, PRE), the equations of motion of Q and R (B = 1,
        fixed v); Biehl and Schwarze (1995); Goldt et al. (2019), the equations of motion
        of Q, R and v (trained v). The 1/B of the noise term is derived in the module
        docstring.
    """

    eta_w: float
    eta_v: float = 0.0
    batch_size: int = 1
    train_second_layer: bool = False
    sgd_noise: bool = True

    def __check_init__(self):
        _nonneg(self.eta_w, "eta_w")
        _nonneg(self.eta_v, "eta_v")
        _positive_int(self.batch_size, "batch_size")
        for name, value in (
            ("train_second_layer", self.train_second_layer),
            ("sgd_noise", self.sgd_noise),
        ):
            if not isinstance(value, bool):
                raise ConfigError(f"`{name}` must be True or False; got {value!r}.")

    def _rates(self, dtype) -> _Rates:
        noise = self.eta_w**2 / self.batch_size if self.sgd_noise else 0.0
        return _Rates(
            jnp.asarray(self.eta_w, dtype),
            jnp.asarray(self.eta_v, dtype),
            jnp.asarray(noise, dtype),
            jnp.asarray(1.0 if self.train_second_layer else 0.0, dtype),
        )

    def derivatives(
        self, op: OrderParameters
    ) -> tuple[Float[Array, "K K"], Float[Array, "K M"], Float[Array, " K"]]:
        """(dQ/dalpha, dR/dalpha, dv/dalpha) at ``op``."""
        return _derivatives_jit(self._rates(op.Q.dtype), op.Q, op.R, op.T, op.v, op.v_star)

    def default_step(self, op0: OrderParameters) -> float:
        """The RK4 step of `solve`: h = 0.02 / max(1, (eta_w + eta_v) u^2), u = the largest
        |v_k|, |v*_n| at the start (eta_v counts only when the second layer is trained).

        The right-hand side is eta u^2 times Gaussian integrals of magnitude < 1 (plus the
        eta_w^2 / B term, smaller where SGD converges), so eta u^2 bounds its rates, and
        h eta u^2 <= 0.02 keeps the O(h^4) error of RK4 near 1e-9 over alpha of a few
        hundred: against diffrax's adaptive Dopri8 at rtol 1e-12 the order parameters
        agree to a few 1e-9 for eta_w up to 3, B = 1 and 4, and trained second layers.
        """
        u = float(np.max(np.abs(np.concatenate([np.asarray(op0.v), np.asarray(op0.v_star)]))))
        eta_v = self.eta_v if self.train_second_layer else 0.0
        return 0.02 / max(1.0, (self.eta_w + eta_v) * u**2)

    def solve(
        self, op0: OrderParameters, alphas, *, step: float | None = None
    ) -> CommitteeTrajectory:
        """Integrate from ``op0`` at alpha = 0 to alphas[-1]; the state at each of ``alphas``.

        Solver: the classical 4th-order Runge-Kutta method with a step of at most ``step``
        (default `default_step`), shortened in each interval between two requested times
        so that it lands on them. (An own RK4 rather than a diffrax solver compiles in a
        fraction of the time: it evaluates the right-hand side in one compiled copy.)
        The integration is compiled once per (K, M, len(alphas)); `solve` itself checks its
        input on the host and is not traceable (`derivatives` and `generalisation_error`
        are).

        Args:
            op0: the initial order parameters.
            alphas: (n,) strictly increasing times >= 0 (alpha = steps / d).
            step: the largest RK4 step (> 0).

        Returns:
            `CommitteeTrajectory` at ``alphas``.
        """
        if not isinstance(op0, OrderParameters):
            raise ConfigError(f"`op0` must be an OrderParameters; got {type(op0).__name__}.")
        a = np.asarray(alphas, dtype=np.float64)
        if a.ndim != 1 or a.size < 1 or not np.all(np.isfinite(a)):
            raise ConfigError(f"`alphas` must be a non-empty 1-d array of times; got {alphas!r}.")
        if a[0] < 0 or np.any(np.diff(a) <= 0):
            raise ConfigError(
                f"`alphas` must be >= 0 and strictly increasing; got {a.tolist()[:10]}."
            )
        if step is None:
            step = self.default_step(op0)
        if not (isinstance(step, int | float) and math.isfinite(step) and step > 0):
            raise ConfigError(f"`step` must be a number > 0; got {step!r}.")
        dtype = op0.Q.dtype
        ends = np.concatenate([[0.0], a])
        n_sub = np.ceil(np.diff(ends) / step).astype(np.int32)  # 0 for a[0] == 0
        Q, R, v = _solve(
            self._rates(dtype),
            (op0.Q, op0.R, op0.v),
            op0.T,
            op0.v_star,
            jnp.asarray(np.diff(ends) / np.maximum(n_sub, 1), dtype),
            jnp.asarray(n_sub),
        )
        return _trajectory(jnp.asarray(a, dtype), Q, R, v, op0.T, op0.v_star)


_RK4_A = (0.0, 0.5, 0.5, 1.0)  # y_i = y + A_i h k_(i-1)
_RK4_B = (1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0)  # y' = y + h sum_i B_i k_i


@jax.jit
def _solve(rates, y0, T, v_star, h, n_sub):
    """RK4 from y0: n_sub[i] steps of length h[i] between the i-th and (i+1)-th output."""

    def field(y):
        return _derivatives(rates, y[0], y[1], T, y[2], v_star)

    coef = jnp.asarray(np.stack([_RK4_A, _RK4_B], axis=1), h.dtype)

    def rk4(y, hi):
        def stage(carry, ab):  # one compiled copy of the field for the four stages
            k, acc = carry
            k = field(jax.tree.map(lambda a, b: a + ab[0] * hi * b, y, k))
            return (k, jax.tree.map(lambda a, b: a + ab[1] * hi * b, acc, k)), None

        zero = jax.tree.map(jnp.zeros_like, y)
        return jax.lax.scan(stage, (zero, y), coef)[0][1]

    def interval(y, hn):
        hi, n = hn
        y = jax.lax.fori_loop(0, n, lambda _, y: rk4(y, hi), y)
        return y, y

    return jax.lax.scan(interval, y0, (h, n_sub))[1]


# ------------------------------------------------------------------ direct simulation


def simulate_online_sgd(
    key: Key,
    W0: Float[Array, "K d"],
    W_star: Float[Array, "M d"],
    v0: Float[Array, " K"],
    v_star: Float[Array, " M"],
    eta_w: float,
    eta_v: float,
    batch_size: int,
    steps: int,
    record_every: int,
    train_second_layer: bool = False,
) -> CommitteeTrajectory:
    r"""Online SGD of the soft committee machine at finite d (the reference of the ODE).

    Each step draws fresh x^1..x^B ~ N(0, I_d) (those of C consecutive steps at once, from
    ``fold_in(key, c)`` for the c-th group; C divides ``record_every``) and applies

        W_k <- W_k - (eta_w / sqrt d) (1/B) sum_b v_k g'(lambda_k^b) Delta^b x^b,
        v_k <- v_k - (eta_v / d) (1/B) sum_b g(lambda_k^b) Delta^b   (train_second_layer),

    lambda_k = W_k . x / sqrt d, Delta = f(x) - y(x), g = erf(z / sqrt 2). The order
    parameters (Q = W W^T / d, R = W W*^T / d, v) are recorded at steps 0, record_every,
    ..., steps, i.e. alpha = step / d, with the exact eps_g of the weights
    (`generalisation_error`, no sampling error). A ``lax.scan``; cost O(steps B d (K + M)).

    Args:
        key: a JAX PRNG key.
        W0: (K, d) initial student first-layer weights; W_star: (M, d) teacher's.
        v0: (K,) initial student second-layer weights; v_star: (M,) teacher's.
        eta_w, eta_v: learning rates (>= 0).
        batch_size: B >= 1 fresh samples per step.
        steps: the number of steps (a multiple of ``record_every``).
        record_every: steps between records.
        train_second_layer: whether v moves.

    Returns:
        `CommitteeTrajectory` with steps // record_every + 1 records.

    References:
        Saad and Solla (1995 PRE), on-line gradient descent (B = 1); Goldt et al. (2019).
    """
    eta_w = _nonneg(eta_w, "eta_w")
    eta_v = _nonneg(eta_v, "eta_v")
    batch_size = _positive_int(batch_size, "batch_size")
    steps = _positive_int(steps, "steps")
    record_every = _positive_int(record_every, "record_every")
    if steps % record_every:
        raise ConfigError(
            f"`steps` must be a multiple of `record_every` ({record_every}); got {steps}."
        )
    if not isinstance(train_second_layer, bool):
        raise ConfigError(
            f"`train_second_layer` must be True or False; got {train_second_layer!r}."
        )
    op0 = OrderParameters.from_weights(W0, W_star, v0, v_star)  # checks shapes and Q
    W0 = jnp.asarray(W0)
    dtype = W0.dtype
    Q, R, v = _simulate(
        key,
        W0,
        jnp.asarray(W_star, dtype),
        jnp.asarray(v0, dtype),
        jnp.asarray(v_star, dtype),
        jnp.asarray(eta_w, dtype),
        jnp.asarray(eta_v if train_second_layer else 0.0, dtype),
        batch_size,
        steps // record_every,
        record_every,
    )
    alpha = jnp.arange(steps // record_every + 1, dtype=dtype) * (record_every / W0.shape[1])
    return _trajectory(alpha, Q, R, v, op0.T, op0.v_star)


@jax.jit
def online_sgd_step(
    W: Float[Array, "K d"],
    v: Float[Array, " K"],
    W_star: Float[Array, "M d"],
    v_star: Float[Array, " M"],
    x: Float[Array, "B d"],
    eta_w,
    eta_v,
) -> tuple[Float[Array, "K d"], Float[Array, " K"]]:
    r"""One online SGD step of the committee machine on the batch ``x`` (B, d):

        W_k <- W_k - (eta_w / sqrt d) (1/B) sum_b v_k g'(lambda_k^b) Delta^b x^b,
        v_k <- v_k - (eta_v / d) (1/B) sum_b g(lambda_k^b) Delta^b,

    lambda^b = W x^b / sqrt d, Delta^b = f(x^b) - y(x^b), both from the old weights; it is
    -eta_w sqrt d dL/dW_k and -eta_v d dL/dv_k for the batch loss L = (1/(2B)) sum_b
    Delta^b^2. ``eta_v = 0`` keeps v fixed. Returns the new (W, v). Jit-able.

    References:
        Saad and Solla (1995 PRE), on-line gradient descent; Goldt et al. (2019).
    """
    B, d = x.shape
    sqrt_d = math.sqrt(d)
    lam = x @ W.T / sqrt_d  # (B, K)
    nu = x @ W_star.T / sqrt_d  # (B, M)
    g_lam = g(lam)
    delta = g_lam @ v - g(nu) @ v_star  # (B,)
    grad = (v[None, :] * g_prime(lam) * delta[:, None]).T @ x  # (K, d): sum_b delta_k^b x^b
    W_new = W - (eta_w / (sqrt_d * B)) * grad
    v_new = v - (eta_v / (d * B)) * (g_lam.T @ delta)
    return W_new, v_new


def _chunk_size(B: int, d: int, every: int) -> int:
    """The steps whose inputs are drawn at once: the largest divisor of ``every`` with at
    most 2^16 numbers (B d each); drawing many at once is ~3x faster on a CPU."""
    cap = max(1, 2**16 // (B * d))
    return max(c for c in range(1, min(cap, every) + 1) if every % c == 0)


@eqx.filter_jit
def _simulate(key, W0, W_star, v0, v_star, eta_w, eta_v, B: int, blocks: int, every: int):
    d = W0.shape[1]
    C = _chunk_size(B, d, every)

    def step(carry, x):  # x: (B, d)
        return online_sgd_step(*carry, W_star, v_star, x, eta_w, eta_v), None

    def chunk(carry, c):
        xs = jax.random.normal(jax.random.fold_in(key, c), (C, B, d), W0.dtype)
        return jax.lax.scan(step, carry, xs)[0], None

    def overlaps(W, v):
        return W @ W.T / d, W @ W_star.T / d, v

    def block(carry, b):
        carry, _ = jax.lax.scan(chunk, carry, b * (every // C) + jnp.arange(every // C))
        return carry, overlaps(*carry)

    _, (Q, R, v) = jax.lax.scan(block, (W0, v0), jnp.arange(blocks))
    Q0, R0, v00 = overlaps(W0, v0)
    return (
        jnp.concatenate([Q0[None], Q]),
        jnp.concatenate([R0[None], R]),
        jnp.concatenate([v00[None], v]),
    )


# ------------------------------------------------------------------ the map to mfnn


def mfnn_learning_rates(
    K: int, d: int, dt: float, *, activation_scale: float = 1.0 / math.sqrt(2.0)
) -> tuple[float, float]:
    r"""(eta_w, eta_v) of the committee machine that an mfnn mean-field SGD run is.

    mfnn's network f = (1/K) sum_j a_j sigma(w_j . x), sigma(z) = erf(s z) = g(c z) with
    c = sqrt 2 s, steps theta_j <- theta_j - dt K dR_B/dtheta_j (R_B the batch risk
    (1/(2B)) sum_b Delta^b^2; docs/theory.md section 2):

        w_j <- w_j - dt a_j c (1/B) sum_b g'(c w_j . x^b) Delta^b x^b,
        a_j <- a_j - dt (1/B) sum_b g(c w_j . x^b) Delta^b.

    With W_j = c sqrt d w_j (so lambda_j = c w_j . x) and v_j = a_j / K, the first line is
    W_j <- W_j - c^2 sqrt d dt K v_j (1/B) sum_b g' Delta x, i.e. eta_w / sqrt d = c^2 K
    sqrt d dt; the second is v_j <- v_j - (dt / K) (1/B) sum_b g Delta, i.e. eta_v / d = dt / K:

        eta_w = 2 s^2 K d dt,    eta_v = d dt / K

    (eta_w = K d dt at s = 1/sqrt 2). eta_v applies only when mfnn trains a
    (`model.train_output`).

    Args:
        K: the width m of the mfnn network (>= 1).
        d: the input dimension (>= 1).
        dt: the time step (> 0).
        activation_scale: s of `model.activation_scale` (1/sqrt 2: sigma = g; mfnn's
            default 1 is erf(z), c^2 = 2).

    References:
        Saad and Solla (1995 PRE) for the committee scaling; Mei, Montanari and Nguyen
        (2018) for the mean-field SGD step.
    """
    K = _positive_int(K, "K")
    d = _positive_int(d, "d")
    if not (isinstance(dt, int | float) and math.isfinite(dt) and dt > 0):
        raise ConfigError(f"`dt` must be a number > 0; got {dt!r}.")
    s = _check_scale(activation_scale)
    return 2.0 * s * s * K * d * dt, d * dt / K


def mfnn_time(alpha, d: int, dt: float):
    """The mfnn time t = steps * dt of committee time alpha = steps / d: t = alpha d dt.

    (Its inverse is alpha = t / (d dt), `committee_time`.) Works on numbers and arrays.
    """
    d = _positive_int(d, "d")
    if not (isinstance(dt, int | float) and math.isfinite(dt) and dt > 0):
        raise ConfigError(f"`dt` must be a number > 0; got {dt!r}.")
    return alpha * (d * dt)


def committee_time(t, d: int, dt: float):
    """The committee time alpha = steps / d of mfnn time t = steps * dt: alpha = t / (d dt)."""
    d = _positive_int(d, "d")
    if not (isinstance(dt, int | float) and math.isfinite(dt) and dt > 0):
        raise ConfigError(f"`dt` must be a number > 0; got {dt!r}.")
    return t / (d * dt)


__all__ = [
    "CommitteeTrajectory",
    "OnlineSGDODE",
    "OrderParameters",
    "committee_time",
    "g",
    "g_prime",
    "generalisation_error",
    "i2",
    "i3",
    "i4",
    "mfnn_learning_rates",
    "mfnn_time",
    "online_sgd_step",
    "simulate_online_sgd",
]
