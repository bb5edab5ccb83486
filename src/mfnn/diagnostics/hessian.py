r"""The Hessian of the energy in particle space: minimum, saddle or degenerate (a snapshot test).

The particles theta = (theta_1, ..., theta_m), rows of an (m, D) array, follow the gradient
flow of the energy E(theta) = R(mu_m(theta)) + (lambda/2) (1/m) sum_j |theta_j|^2
(`mfnn.objectives.base.AbstractObjective.energy`) rescaled in time,

    d theta_j / dt = v_j = -s dE/dtheta_j,     s = m^(2 gamma - 1)

(s is `mfnn.models.AbstractModel.velocity_scale` of the width, the one factor every
objective multiplies its velocity by, `mfnn.objectives.risk.energy_velocity`, so a factor
the model's `Scaling` adds to it is carried too; frozen columns, ``model.trainable``, get
v = 0). mean_field (gamma = 1): s = m and v_j = -grad dE/dmu(theta_j); ntk: s = 1. A
Langevin drift is ``drift_scale`` times this velocity, so its s carries that factor too.
Here x is the vector of the TRAINABLE coordinates of all m particles, row by row
(x = theta[:, trainable_columns].reshape(-1), N = m D_t entries; frozen columns stay
fixed at the snapshot's values), H = d^2 E / dx^2 (N, N), and the flow restricted to x is
dx/dt = -s grad_x E. Its linearisation at a stationary point x*
is d(dx)/dt = -s H dx: the eigenvalues of s H are the RATES of the flow, in units of 1/t
(O(1) in every scaling: s H is the Hessian of the rescaled first variation plus the
interaction, docs/theory.md sections 2 and 4). Everything reported is an eigenvalue of
s H; a negative one is a direction in which the flow leaves x* (a saddle, or a maximum
when all are negative).

Second-order test (the classical one: Nocedal and Wright 2006, "Numerical Optimization",
Theorems 2.3-2.4): at a stationary point, s H positive definite <=> strict local minimum;
a negative eigenvalue <=> not a minimum. The verdict, with the tolerances it uses:

- rate_max = max |eigenvalue| (the largest rate), theta_rms = sqrt(mean_j |x_j|^2) over
  the trainable coordinates (1 when the particles sit at the origin),
  velocity_rms = sqrt(mean_j |v_j|^2) = s |grad_x E| / sqrt(m) (in mean_field its square
  is the dissipation int |grad dE/dmu|^2 dmu of docs/theory.md section 5);
- stationarity = velocity_rms / (rate_max theta_rms): how far the flow is from rest,
  relative to its fastest rate and the particles' size (a lower bound on the distance
  to the nearest stationary point of the local quadratic model, relative to theta_rms);
- "not stationary" when stationarity > ``grad_rtol`` (default 1e-6): the eigenvalues are
  still reported, but they describe the curvature along the path, not a critical point;
- else "saddle" when the smallest eigenvalue < -tol, tol = ``rtol`` rate_max (default
  rtol = 1e-6), and "maximum" when even the largest is; "degenerate" when none is below
  -tol but the smallest is within tol of 0 (|lambda_min| <= tol); "minimum" when every
  eigenvalue exceeds tol.

**Exact zero modes.** Two-layer networks have directions along which E is constant, so
"degenerate" is common:

- positive homogeneity: with sigma = relu (degree p = 1) or z^2 (p = 2), the unit
  a sigma(w . x + b) is unchanged by (a, w, b) -> (c^p a, w/c, b/c); the tangent
  u_j = (p a_j, -w_j, -b_j) at c = 1 gives, at a stationary point, H u_j = 0 exactly
  (differentiate E(theta(c)) = const twice: H u = -(Du)^T grad E). One per particle, m in
  all, when a, w (and b, if present) are trainable and lambda = 0 (the L2 weight breaks
  the symmetry). `symmetry_directions` builds them; the verdict is taken on their
  orthogonal complement (the quotient by the symmetry: Morse-Bott), and
  ``symmetry_modes`` says how many were removed (``quotient=False`` keeps them);
- zero loss with more parameters than constraints (n data points, or the teacher's
  moments): at R = 0 the Hessian is the Gauss-Newton matrix (1/n) J^T J of rank <= n, so
  >= N - n zero modes: a global minimum that is never strict (Cooper 2021, "Global minima
  of overparameterized neural networks", SIAM J. Math. Data Sci. 3(2): the zero-loss set
  is a manifold of dimension N - n). The verdict says "degenerate";
- dead units (a relu unit off on every data point: its a, w and b directions are all
  flat for an empirical risk): zero modes no symmetry accounts for; also "degenerate".

Permutations of the particles are not zero modes in particle space: they are a discrete
symmetry (the measure mu_m does not see them), which moves no eigenvalue.

Two ways to get the spectrum (``method``):

- "dense" (default when N <= `DENSE_LIMIT` = 2000): H column by column from batches of
  Hessian-vector products, symmetrised, then ``numpy.linalg.eigh``; every eigenvalue.
- "lanczos": the ``k`` smallest and ``k`` largest eigenvalues by Lanczos iteration on
  Hessian-vector products (jvp of the gradient) with full reorthogonalisation (Golub and
  Van Loan 2013, "Matrix Computations", 4th ed., section 10.1; Paige 1972), for
  N > 2000. One start vector finds each distinct eigenvalue once, so counts (of negative
  or zero eigenvalues) are lower bounds there; the extreme values are accurate to the
  reported residual bound |beta_j s_ji| (an eigenvalue lies within it of each Ritz
  value).

Hessian-vector products are ``jax.jvp`` of ``jax.grad`` of E. Where that second
derivative is not finite (the closed-form relu kernel's angular factor has a custom
first derivative whose own derivative is 1/sqrt(1 - c^2), inf on the diagonal
K(w_j, w_j), where it multiplies a zero tangent), they fall back to central differences
of the exact gradient, (grad E(x + h u) - grad E(x - h u)) / (2 h), h = eps^(1/3) max(1,
theta_rms): error O(h^2) ~ 1e-10 relative in float64; the report's ``hvp`` says which.

The test is meaningful near a stationary point only, and for the transport part of a
dynamics (birth-death jumps and Langevin noise are not linearised; on a bounded domain a
particle on the wall is tested as if the wall were absent).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy.linalg import eigh_tridiagonal

from .._typing import Array, Float, Particles
from ..dynamics.langevin import Langevin
from ..errors import ConfigError

__all__ = [
    "DENSE_LIMIT",
    "HessianReport",
    "LanczosResult",
    "classify",
    "dense_hessian",
    "energy_gradient",
    "hessian_of_run",
    "hessian_vector_products",
    "lanczos_extremes",
    "particle_hessian",
    "rate_scale",
    "symmetry_directions",
]

DENSE_LIMIT = 2000
"""Largest N = m D_trainable for which ``method="auto"`` builds the dense Hessian."""

FD_LOOP_LIMIT = 256
"""Up to this N, finite differences call the compiled gradient point by point."""

DENSE_BATCH = 32
"""Hessian columns per compiled call of `dense_hessian`."""

HOMOGENEITY = {"relu": 1, "quadratic": 2}
"""Activations positively homogeneous of degree p: sigma(c z) = c^p sigma(z), c > 0."""


# ------------------------------------------------------------------- the energy in x


def _cols(dynamics) -> tuple[int, ...]:
    return tuple(int(c) for c in dynamics.model.trainable_columns())


def _energy(dynamics, theta: Particles, cols: tuple[int, ...], x: Float[Array, " N"]):
    """E at the particles ``theta`` with their trainable columns replaced by ``x``."""
    m = theta.shape[0]
    th = theta.at[:, np.asarray(cols)].set(x.reshape(m, len(cols)).astype(theta.dtype))
    return dynamics.energy(th)


@eqx.filter_jit
def _value_grad(dynamics, theta, cols, x):
    return jax.value_and_grad(_energy, argnums=3)(dynamics, theta, cols, x)


@eqx.filter_jit
def _grads(dynamics, theta, cols, xs):
    return jax.vmap(lambda x: jax.grad(_energy, argnums=3)(dynamics, theta, cols, x))(xs)


@eqx.filter_jit
def _hvps(dynamics, theta, cols, x, vs):
    """(E, grad_x E, H v for each row v of ``vs``): one program (linearize of the gradient)."""

    def value_grad(y):
        return jax.value_and_grad(_energy, argnums=3)(dynamics, theta, cols, y)

    (e, g), lin = jax.linearize(value_grad, x)
    return e, g, jax.vmap(lambda v: lin(v)[1])(vs)


def _flat(dynamics, theta: Particles) -> tuple[tuple[int, ...], Float[Array, " N"]]:
    cols = _cols(dynamics)
    if not cols:
        raise ConfigError(
            "`model.trainable` leaves no trainable column: the energy has no coordinates to "
            "take a Hessian in."
        )
    rows = np.asarray(theta)[:, np.asarray(cols)]  # on the host: no eager device program
    return cols, jnp.asarray(rows.reshape(-1), dtype=theta.dtype)


def rate_scale(dynamics, theta: Particles) -> float:
    """s in dx/dt = -s grad_x E: the model's m^(2 gamma - 1) of the width m
    (`mfnn.models.AbstractModel.velocity_scale`, the factor of every objective's velocity),
    times the drift scale of a Langevin dynamics; a birth-death dynamics uses its transport.

    Example:
        >>> import jax.numpy as jnp
        >>> from mfnn import TwoLayer, GradientFlow
        >>> from mfnn.objectives import ZeroRisk, Exact
        >>> flow = GradientFlow(TwoLayer(d=2, scaling="ntk"), ZeroRisk(), Exact())
        >>> rate_scale(flow, jnp.zeros((8, 4))), rate_scale(
        ...     GradientFlow(TwoLayer(d=2), ZeroRisk(), Exact()), jnp.zeros((8, 4)))
        (1.0, 8.0)
    """
    from ..dynamics.base import AbstractJumps

    dyn = dynamics.inner if isinstance(dynamics, AbstractJumps) else dynamics
    model = dyn.model
    blocks = jax.eval_shape(model.to_blocks, jax.ShapeDtypeStruct(theta.shape, theta.dtype))
    s = float(model.velocity_scale(model.width(blocks)))
    if isinstance(dyn, Langevin):
        s *= float(np.asarray(dyn.drift_scale))
    return s


def _objective_of(dynamics):
    """The objective of a gradient flow, of a Langevin dynamics' flow, of the transport
    under birth-death jumps; None for other dynamics."""
    from ..dynamics.base import AbstractJumps
    from ..dynamics.gradient_flow import GradientFlow

    if isinstance(dynamics, AbstractJumps):
        return _objective_of(dynamics.inner)
    if isinstance(dynamics, Langevin):
        return _objective_of(dynamics.flow)
    return dynamics.objective if isinstance(dynamics, GradientFlow) else None


def energy_gradient(dynamics, theta: Particles) -> Float[Array, " N"]:
    """grad_x E at ``theta``: the trainable coordinates, row by row (N = m D_t); the
    velocity is v = -s grad_x E (`rate_scale`)."""
    cols, x = _flat(dynamics, theta)
    return _value_grad(dynamics, theta, cols, x)[1]


def hessian_vector_products(
    dynamics, theta: Particles, vs: Float[Array, "k N"], *, finite_difference: bool = False
) -> Float[Array, "k N"]:
    """H v for each row v of ``vs``: ``jax.jvp`` of ``jax.grad`` of E (forward over
    reverse), or with ``finite_difference`` the central difference of the exact gradient,
    (grad E(x + h v) - grad E(x - h v)) / (2 h), h = eps^(1/3) max(1, theta_rms) / |v|
    (theta_rms = sqrt(mean_j |x_j|^2)): error O(h^2), ~1e-10 relative in float64."""
    cols, x = _flat(dynamics, theta)
    vs = jnp.asarray(vs, x.dtype)
    if not finite_difference:
        return _hvps(dynamics, theta, cols, x, vs)[2]
    scale = max(1.0, float(jnp.sqrt(jnp.sum(x * x) / theta.shape[0])))
    eps = float(jnp.finfo(x.dtype).eps)
    norms = jnp.maximum(jnp.linalg.norm(vs, axis=1, keepdims=True), 1e-300)
    h = eps ** (1 / 3) * scale / norms
    pts = jnp.concatenate([x[None] + h * vs, x[None] - h * vs])
    k = vs.shape[0]
    if x.shape[0] <= FD_LOOP_LIMIT:  # small N: reuse the compiled gradient, no new program
        g = jnp.stack([_value_grad(dynamics, theta, cols, p)[1] for p in pts])
    else:
        g = _grads(dynamics, theta, cols, pts)
    return (g[:k] - g[k:]) / (2 * h)


def dense_hessian(
    dynamics, theta: Particles, *, batch: int | None = None, finite_difference: bool = False
) -> Float[np.ndarray, "N N"]:
    """H = d^2 E / dx^2 (N, N), not scaled by s: `hessian_vector_products` on the unit
    vectors, ``batch`` (default `DENSE_BATCH`) columns per compiled call (the last batch
    padded, so one program serves all), then (H + H^T) / 2."""
    n = int(_flat(dynamics, theta)[1].shape[0])
    batch = max(1, min(DENSE_BATCH if batch is None else batch, n))
    dtype = theta.dtype
    cols = []
    for start in range(0, n, batch):
        idx = np.arange(start, start + batch)
        eye = np.zeros((batch, n))
        eye[np.arange(batch)[idx < n], idx[idx < n]] = 1.0
        hv = hessian_vector_products(
            dynamics, theta, jnp.asarray(eye, dtype), finite_difference=finite_difference
        )
        cols.append(np.asarray(hv)[: min(batch, n - start)])
    h = np.concatenate(cols)
    return 0.5 * (h + h.T)


def symmetry_directions(dynamics, theta: Particles) -> Float[np.ndarray, "r N"]:
    """The exact zero modes of positive homogeneity, orthonormal rows in x (N entries).

    For a `mfnn.models.TwoLayer` with sigma homogeneous of degree p (relu: 1, quadratic:
    2), output weights a present, a, w and b (if present) all trainable, and no L2 weight,
    u_j = (p a_j, -w_j, -b_j) on the coordinates of particle j (zero elsewhere) is the
    tangent of (a, w, b) -> (c^p a, w/c, b/c) at c = 1, which leaves f and E unchanged:
    H u_j = -(D u_j)^T grad E, 0 at a stationary point. Particles at the origin give no
    direction. Returns (0, N) when the model has no such symmetry.
    """
    from ..models.two_layer import TwoLayer

    cols, x = _flat(dynamics, theta)
    n = int(x.shape[0])
    model = dynamics.model
    obj = _objective_of(dynamics)
    l2 = float(np.asarray(obj.l2)) if obj is not None else 1.0
    p = HOMOGENEITY.get(model.activation, 0) if isinstance(model, TwoLayer) else 0
    ok = (
        isinstance(model, TwoLayer)
        and p > 0
        and l2 == 0.0
        and "a" in model.present_blocks
        and set(model.trainable) == set(model.present_blocks)
    )
    if not ok:
        return np.zeros((0, n))
    rows = np.asarray(theta, dtype=np.float64)[:, list(cols)]
    gen = -rows.copy()
    a_col = model.block_slices()["a"].start
    gen[:, cols.index(a_col)] = p * rows[:, cols.index(a_col)]
    norms = np.linalg.norm(gen, axis=1)
    out = []
    d_t = len(cols)
    for j in np.flatnonzero(norms > 0):
        u = np.zeros(n)
        u[j * d_t : (j + 1) * d_t] = gen[j] / norms[j]
        out.append(u)
    return np.array(out).reshape(-1, n)


# ------------------------------------------------------------------------- Lanczos


@dataclasses.dataclass(frozen=True)
class LanczosResult:
    """The extreme eigenvalues found by `lanczos_extremes`.

    Attributes:
        smallest: the k smallest Ritz values, increasing.
        largest: the k largest Ritz values, decreasing.
        residuals: the bound |beta_j s_ji| on the distance from each of those (smallest
            first, then largest) to an eigenvalue.
        iterations: Lanczos steps taken (the Krylov dimension).
        converged: every residual <= tol max |Ritz value| (or the Krylov space became
            invariant, when the Ritz values are exact).
    """

    smallest: np.ndarray
    largest: np.ndarray
    residuals: np.ndarray
    iterations: int
    converged: bool


def lanczos_extremes(
    matvec: Callable[[np.ndarray], np.ndarray],
    n: int,
    k: int,
    *,
    max_iter: int | None = None,
    tol: float = 1e-10,
    seed: int = 0,
    deflate: np.ndarray | None = None,
    check_every: int = 5,
) -> LanczosResult:
    r"""The k smallest and k largest eigenvalues of a symmetric operator by Lanczos.

    q_1 random (``numpy.random.default_rng(seed)``), then for j = 1, 2, ...

        w = A q_j - alpha_j q_j - beta_{j-1} q_{j-1},   alpha_j = q_j . A q_j,
        w <- w - Q_j (Q_j^T w)   (twice: full reorthogonalisation),
        beta_j = |w|,   q_{j+1} = w / beta_j,

    T_j = tridiag(beta, alpha, beta) = Q_j^T A Q_j; its eigenvalues (Ritz values) theta_i
    with eigenvectors s_i satisfy |A y_i - theta_i y_i| = beta_j |s_ji| (y_i = Q_j s_i), so
    some eigenvalue of A lies within that residual of theta_i (Golub and Van Loan 2013,
    "Matrix Computations", 4th ed., sections 10.1-10.3; Paige 1972). Stops when the 2k
    wanted residuals are <= ``tol`` max_i |theta_i|, when beta_j vanishes (an invariant
    subspace: the Ritz values are eigenvalues), or at ``max_iter`` (default min(n,
    max(300, 40 k))). ``deflate`` (r, n) orthonormal rows are projected out of every
    vector: the operator is then A restricted to their orthogonal complement. Memory
    O(n max_iter) for Q.

    Each distinct eigenvalue is found once (a single start vector), so multiplicities are
    not resolved.

    Example:
        >>> import numpy as np
        >>> a = np.diag(np.arange(1.0, 101.0))
        >>> r = lanczos_extremes(lambda v: a @ v, 100, 2)
        >>> r.smallest.round(8).tolist(), r.largest.round(8).tolist(), r.converged
        ([1.0, 2.0], [100.0, 99.0], True)
    """
    if not 1 <= k <= n:
        raise ConfigError(f"`k` (eigenvalues at each end) must be in [1, {n}]; got {k}.")
    max_iter = min(n, max(300, 40 * k)) if max_iter is None else min(int(max_iter), n)
    rng = np.random.default_rng(seed)
    u = np.zeros((0, n)) if deflate is None else np.asarray(deflate, dtype=np.float64)
    dim = n - u.shape[0]

    def project(v):
        for _ in range(2):
            if u.shape[0]:
                v = v - u.T @ (u @ v)
        return v

    q = project(rng.standard_normal(n))
    q /= np.linalg.norm(q)
    basis = np.zeros((max_iter + 1, n))
    basis[0] = q
    alpha, beta = np.zeros(max_iter), np.zeros(max_iter)
    size, top, invariant = 0, 0.0, False

    def ritz(size: int, b: float):
        """The wanted Ritz values (k smallest, k largest) and their residuals."""
        if size == 1:
            theta, s = alpha[:1].copy(), np.ones((1, 1))
        else:
            theta, s = eigh_tridiagonal(alpha[:size], beta[: size - 1])
        kk = min(k, size)
        wanted = np.r_[np.arange(kk), np.arange(size - kk, size)[::-1]]
        return theta, np.abs(b * s[-1, wanted]), kk

    for j in range(max_iter):
        w = project(np.asarray(matvec(basis[j]), dtype=np.float64))
        alpha[j] = basis[j] @ w
        w = w - alpha[j] * basis[j] - (beta[j - 1] * basis[j - 1] if j else 0.0)
        for _ in range(2):
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        w = project(w)
        beta[j] = np.linalg.norm(w)
        size = j + 1
        top = max(top, abs(alpha[j]) + beta[j])
        invariant = beta[j] <= 1e-13 * max(top, 1e-300) or size >= dim
        if invariant:
            break
        if size >= 2 * k and (size % check_every == 0 or size == max_iter):
            theta, res, _ = ritz(size, beta[j])
            if np.all(res <= tol * max(float(np.max(np.abs(theta))), 1e-300)):
                break
        basis[j + 1] = w / beta[j]
    theta, res, kk = ritz(size, beta[size - 1])
    if invariant:
        res = np.zeros_like(res)
    return LanczosResult(
        smallest=theta[:kk].copy(),
        largest=theta[::-1][:kk].copy(),
        residuals=res,
        iterations=size,
        converged=bool(invariant or np.all(res <= tol * max(float(np.max(np.abs(theta))), 1e-300))),
    )


# ------------------------------------------------------------------------ the verdict


def classify(
    smallest: float, largest: float, stationarity: float, *, tol: float, grad_rtol: float
) -> str:
    """The verdict of the second-order test on the eigenvalues of s H (module docstring).

    "not stationary" if ``stationarity`` > ``grad_rtol``; else "maximum" if ``largest`` <
    -tol, "saddle" if ``smallest`` < -tol, "degenerate" if ``smallest`` <= tol, "minimum"
    otherwise.

    Example:
        >>> classify(-0.5, 2.0, 0.0, tol=1e-6, grad_rtol=1e-6)
        'saddle'
        >>> classify(1e-9, 2.0, 0.0, tol=1e-6, grad_rtol=1e-6)
        'degenerate'
        >>> classify(0.3, 2.0, 1e-3, tol=1e-6, grad_rtol=1e-6)
        'not stationary'
    """
    if not stationarity <= grad_rtol:
        return "not stationary"
    if largest < -tol:
        return "maximum"
    if smallest < -tol:
        return "saddle"
    if smallest <= tol:
        return "degenerate"
    return "minimum"


@dataclasses.dataclass(frozen=True)
class HessianReport:
    """The spectrum of s H at one point and its verdict (`particle_hessian`).

    Attributes:
        m: particles; d_trainable: trainable columns a particle (D_t); n: N = m D_t.
        scale: s (dx/dt = -s grad_x E).
        method: "dense" or "lanczos"; hvp: "autodiff" or "finite_difference".
        smallest: the k smallest eigenvalues of s H, increasing (on the complement of the
            symmetry directions when ``symmetry_modes`` > 0).
        largest: the k largest, decreasing.
        eigenvalues: every eigenvalue (dense only), increasing; None with Lanczos.
        n_negative: eigenvalues < -tol (Lanczos: among the distinct Ritz values found).
        n_zero: eigenvalues within tol of 0 (same caveat).
        symmetry_modes: exact zero modes removed before classifying (`symmetry_directions`).
        energy, risk: E and R at the point.
        gradient_norm: |grad_x E| (Euclidean); velocity_rms: sqrt(mean_j |v_j|^2).
        theta_rms: sqrt(mean_j |x_j|^2) (trainable coordinates).
        rate_max: max |eigenvalue|; stationarity: velocity_rms / (rate_max theta_rms).
        tol, grad_rtol, rtol: the tolerances of the verdict (tol = rtol rate_max).
        verdict: "minimum", "degenerate", "saddle", "maximum" or "not stationary".
        lanczos: iterations, converged, max residual (Lanczos only).
        wall_s: seconds spent.
    """

    m: int
    d_trainable: int
    n: int
    scale: float
    method: str
    hvp: str
    smallest: np.ndarray
    largest: np.ndarray
    eigenvalues: np.ndarray | None
    n_negative: int
    n_zero: int
    symmetry_modes: int
    energy: float
    risk: float
    gradient_norm: float
    velocity_rms: float
    theta_rms: float
    rate_max: float
    stationarity: float
    tol: float
    rtol: float
    grad_rtol: float
    verdict: str
    lanczos: dict[str, Any] | None = None
    wall_s: float = 0.0

    def to_dict(self, eigenvalues: bool = True) -> dict[str, Any]:
        """JSON-ready fields (every eigenvalue too when ``eigenvalues`` and dense)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "eigenvalues"}
        out["smallest"] = [float(v) for v in self.smallest]
        out["largest"] = [float(v) for v in self.largest]
        if eigenvalues and self.eigenvalues is not None:
            out["eigenvalues"] = [float(v) for v in self.eigenvalues]
        out["convention"] = (
            "eigenvalues of s H: H = d^2 E / dx^2 over the trainable coordinates x of all "
            "particles, s the model's velocity scale (m^(2 gamma - 1); times the drift scale "
            "of a Langevin dynamics), dx/dt = -s grad_x E; a negative eigenvalue is an "
            "unstable direction of the flow"
        )
        return out

    def format(self) -> str:
        """A few lines for a terminal."""
        lines = [
            f"verdict: {self.verdict}",
            f"  N = {self.n} coordinates (m = {self.m} particles x {self.d_trainable} trainable "
            f"columns), rates = eigenvalues of s H, s = {self.scale:.6g}, {self.method} "
            f"({self.hvp} Hessian-vector products)",
            f"  smallest: {_fmt_list(self.smallest)}",
            f"  largest:  {_fmt_list(self.largest)}",
            f"  below -tol: {self.n_negative}, within tol of 0: {self.n_zero}, "
            f"symmetry modes removed: {self.symmetry_modes}",
            f"  E = {self.energy:.6g}, R = {self.risk:.6g}, |grad E| = {self.gradient_norm:.3g}, "
            f"velocity rms = {self.velocity_rms:.3g}",
            f"  stationarity = velocity_rms / (rate_max theta_rms) = {self.stationarity:.3g} "
            f"(stationary if <= {self.grad_rtol:g}); tol = {self.rtol:g} x rate_max = "
            f"{self.tol:.3g}",
        ]
        if self.lanczos is not None:
            lz = self.lanczos
            lines.append(
                f"  Lanczos: {lz['iterations']} iterations, converged {lz['converged']}, "
                f"max residual {lz['max_residual']:.3g}"
            )
        return "\n".join(lines)


def _fmt_list(v) -> str:
    return ", ".join(f"{float(x):.6g}" for x in v)


def particle_hessian(
    dynamics,
    theta: Particles,
    *,
    k: int = 6,
    method: str = "auto",
    rtol: float = 1e-6,
    grad_rtol: float = 1e-6,
    quotient: bool = True,
    dense_limit: int = DENSE_LIMIT,
    max_iter: int | None = None,
    seed: int = 0,
) -> HessianReport:
    r"""The eigenvalues of s H at the particles ``theta`` (m, D) and the verdict.

    H = d^2 E / dx^2 over the trainable coordinates x (N = m D_t), E = ``dynamics.energy``
    (the exact objective: the whole data set, the closed form or the quadrature), s =
    `rate_scale` (dx/dt = -s grad_x E); the conventions, the tolerances of the verdict and
    the exact zero modes are in the module docstring.

    Args:
        dynamics: the run's dynamics (`mfnn.dynamics.GradientFlow`, `Langevin`,
            `BirthDeath`: its transport).
        theta: (m, D) particles (frozen columns at their values).
        k: eigenvalues reported at each end (1 <= k <= N).
        method: "dense", "lanczos", or "auto" (dense when N <= ``dense_limit``).
        rtol: eigenvalues within rtol x max |eigenvalue| of 0 count as zero.
        grad_rtol: the largest stationarity that counts as stationary.
        quotient: classify on the complement of the exact homogeneity zero modes.
        max_iter, seed: Lanczos iteration cap and start vector.

    Returns:
        a `HessianReport`.

    Example:
        >>> import jax.numpy as jnp
        >>> from mfnn import TwoLayer, GradientFlow
        >>> from mfnn.objectives import ZeroRisk, Exact
        >>> flow = GradientFlow(TwoLayer(d=1, bias=False), ZeroRisk(l2=0.5), Exact())
        >>> r = particle_hessian(flow, jnp.zeros((4, 2)), k=2)   # E = 0.25 mean |theta|^2
        >>> r.verdict, r.smallest.round(12).tolist(), r.largest.round(12).tolist()
        ('minimum', [0.5, 0.5], [0.5, 0.5])
    """
    t0 = time.perf_counter()
    theta = jnp.asarray(theta)
    if theta.ndim != 2 or theta.shape[1] != dynamics.model.dim:
        raise ConfigError(
            f"`theta` must be (m, {dynamics.model.dim}) particle rows; got {tuple(theta.shape)}."
        )
    cols, x = _flat(dynamics, theta)
    n, m = int(x.shape[0]), int(theta.shape[0])
    if not isinstance(k, int | np.integer) or not 1 <= k <= n:
        raise ConfigError(
            f"`k` (eigenvalues reported at each end, `--top`) must be an integer in [1, N] = "
            f"[1, {n}] (N = m x trainable columns = {m} x {len(cols)}); got {k!r}."
        )
    if method not in ("auto", "dense", "lanczos"):
        raise ConfigError(f"`method` must be 'auto', 'dense' or 'lanczos'; got {method!r}.")
    for name, val in (("rtol", rtol), ("grad_rtol", grad_rtol)):
        if not (isinstance(val, int | float) and np.isfinite(val) and val >= 0):
            raise ConfigError(f"`{name}` must be a finite number >= 0; got {val!r}.")
    if method == "auto":
        method = "dense" if n <= dense_limit else "lanczos"
    s = rate_scale(dynamics, theta)
    # one autodiff product in the batch shape the method then uses (one compile serves):
    # E, grad E, and whether the second derivative is finite here
    rows = min(DENSE_BATCH, n) if method == "dense" else 1
    probe = np.random.default_rng(seed).standard_normal((rows, n))
    energy, g, hv = _hvps(dynamics, theta, cols, x, jnp.asarray(probe, x.dtype))
    fd = not bool(jnp.all(jnp.isfinite(hv)))
    if fd or not np.isfinite(float(energy)):
        energy, g = _value_grad(dynamics, theta, cols, x)
    energy, g = float(energy), np.asarray(g, dtype=np.float64)
    sym = symmetry_directions(dynamics, theta) if quotient else np.zeros((0, n))
    lanczos = None
    if method == "dense":
        h = s * dense_hessian(dynamics, theta, finite_difference=fd)
        if sym.shape[0]:
            # an orthonormal basis of the complement of the symmetry directions
            q, _ = np.linalg.qr(np.concatenate([sym.T, np.eye(n)], axis=1))
            comp = q[:, sym.shape[0] : n]
            h = comp.T @ h @ comp
        eig = np.linalg.eigvalsh(h)
        kk = min(k, eig.size)
        smallest, largest = eig[:kk], eig[::-1][:kk]
    else:
        dtype = theta.dtype

        def matvec(v):
            hv = hessian_vector_products(
                dynamics, theta, jnp.asarray(v[None], dtype), finite_difference=fd
            )
            return s * np.asarray(hv[0], dtype=np.float64)

        res = lanczos_extremes(
            matvec, n, k, max_iter=max_iter, seed=seed, deflate=sym if sym.shape[0] else None
        )
        eig = None
        smallest, largest = res.smallest, res.largest
        lanczos = {
            "iterations": res.iterations,
            "converged": res.converged,
            "max_residual": float(np.max(res.residuals)) if res.residuals.size else 0.0,
            "residuals": [float(r) for r in res.residuals],
        }
    rate_max = float(max(abs(smallest[0]), abs(largest[0])))
    tol = rtol * rate_max
    found = eig if eig is not None else np.unique(np.r_[smallest, largest])
    xs = np.asarray(x, dtype=np.float64).reshape(m, len(cols))
    theta_rms = float(np.sqrt(np.mean(np.sum(xs**2, axis=1))))
    velocity_rms = float(s * np.linalg.norm(g) / np.sqrt(m))
    length = theta_rms if theta_rms > 0 else 1.0
    if rate_max > 0:
        stationarity = velocity_rms / (rate_max * length)
    else:
        stationarity = 0.0 if velocity_rms == 0 else float("inf")
    obj = _objective_of(dynamics)
    l2 = float(np.asarray(obj.l2)) if obj is not None else None
    if l2 is not None:  # the penalty (lambda/2) mean_j |theta_j|^2 on the host
        penalty = 0.5 * l2 * float(np.mean(np.sum(np.asarray(theta, np.float64) ** 2, axis=1)))
    else:
        penalty = float(dynamics.penalty(theta))
    risk = energy - penalty
    return HessianReport(
        m=m,
        d_trainable=len(cols),
        n=n,
        scale=s,
        method=method,
        hvp="finite_difference" if fd else "autodiff",
        smallest=np.asarray(smallest),
        largest=np.asarray(largest),
        eigenvalues=eig,
        n_negative=int(np.sum(found < -tol)),
        n_zero=int(np.sum(np.abs(found) <= tol)),
        symmetry_modes=int(sym.shape[0]),
        energy=energy,
        risk=risk,
        gradient_norm=float(np.linalg.norm(g)),
        velocity_rms=velocity_rms,
        theta_rms=theta_rms,
        rate_max=rate_max,
        stationarity=float(stationarity),
        tol=tol,
        rtol=float(rtol),
        grad_rtol=float(grad_rtol),
        verdict=classify(
            float(smallest[0]), float(largest[0]), stationarity, tol=tol, grad_rtol=grad_rtol
        ),
        lanczos=lanczos,
        wall_s=time.perf_counter() - t0,
    )


# ------------------------------------------------------------------- run directories


def hessian_of_run(run_dir, step: int | None = None, **options) -> tuple[HessianReport, dict]:
    """`particle_hessian` at a run's particles: the last snapshot (the final particles of
    a completed run) or the snapshot of ``step``, with the run's own config, model and
    objective (`mfnn.rundir.load_run_config`, `mfnn.build.build`, the snapshot read by
    `mfnn.measure.load_particles`).

    Returns (the report, where: {"run_dir", "step", "t", "snapshot"}). A `ConfigError`
    names the problem: no run directory, an experiment directory (give a sub-run), a grid
    run (no particles), no snapshot at ``step`` (the available steps listed).
    """
    from ..build import build
    from ..measure import load_particles
    from ..rundir import list_snapshots, load_run_config

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"`RUN_DIR` {str(run_dir)!r} does not exist (or is not a folder).")
    cfg = load_run_config(run_dir)
    if cfg.experiment.name is not None:
        subs = sorted(p.name for p in (run_dir / "runs").glob("*") if p.is_dir())
        raise ConfigError(
            f"{str(run_dir)!r} is an experiment directory ({cfg.experiment.name}); give one of "
            f"its sub-runs, {str(run_dir / 'runs')}/NAME, NAME in {subs}."
        )
    if cfg.dynamics.kind == "pde":
        raise ConfigError(
            f"{str(run_dir)!r} is a grid run (`dynamics.kind: pde`): it holds a density, no "
            "particles to take a Hessian at."
        )
    snaps = list_snapshots(run_dir)
    if not snaps:
        raise ConfigError(f"{str(run_dir)!r} has no snapshots (snapshots/step_*.npz).")
    if step is None:
        step = max(snaps)
    elif step not in snaps:
        raise ConfigError(
            f"`--step` {step}: {str(run_dir)!r} has no snapshot at that step; the snapshots "
            f"are at steps {sorted(snaps)}."
        )
    built = build(cfg, base=run_dir)
    theta = load_particles(snaps[step], built.model, _theta_dtype(cfg), field="snapshot")
    report = particle_hessian(built.dynamics.exact(), theta, **options)
    where = {
        "run_dir": str(run_dir),
        "step": int(step),
        "t": float(step) * float(cfg.dynamics.dt),
        "snapshot": str(snaps[step]),
    }
    return report, where


def _theta_dtype(cfg):
    """The array dtype of a run's particles (its config's ``dtype``)."""
    return jnp.float64 if cfg.dtype == "float64" else jnp.float32
