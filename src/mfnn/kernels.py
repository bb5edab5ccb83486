r"""The infinite-width kernels of the two-layer network and kernel gradient flow.

Units phi(x; theta) = a sigma(w . x + b) with i.i.d. initial parameters
a ~ N(0, s_a^2), w ~ N(0, s_w^2 I_d), b ~ N(0, s_b^2) (no b without bias). For two inputs
the pre-activations (u, u') = (w . x + b, w . x' + b) are jointly Gaussian, mean 0,

    Sigma = [[s_w^2 |x|^2 + s_b^2,   s_w^2 x . x' + s_b^2],
             [s_w^2 x . x' + s_b^2,  s_w^2 |x'|^2 + s_b^2]].

**NNGP.** Under the ntk scaling f_0 = m^(-1/2) sum_j phi(x; theta_j) tends to a centred
Gaussian process with covariance (Neal 1996; Williams 1997)

    K_NNGP(x, x') = E[phi(x) phi(x')] = s_a^2 E[sigma(u) sigma(u')].

**NTK.** In mfnn's time convention (`mfnn.diagnostics.kernel`), every scaling moves the
function by df(x)/dt = -(1/n) sum_i Theta_m(x, x_i) (f(x_i) - y_i) with
Theta_m = (1/m) sum_j grad phi(x; theta_j) . grad phi(x'; theta_j) over the trainable
coordinates; at initialisation, as m -> infinity (Jacot, Gabriel and Hongler 2018),

    Theta(x, x') = [a trains] E[sigma(u) sigma(u')]
                   + s_a^2 E[sigma'(u) sigma'(u')] ([w trains] x . x' + [b trains]).

Under ntk the kernel stays at Theta along training (the lazy limit); under mean_field it
moves (docs/theory.md section 15).

Closed forms (the Gaussian expectations of two correlated pre-activations):

- relu (Cho and Saul 2009, arc-cosine kernels of orders 1 and 0), with
  cos t = Sigma_12 / sqrt(Sigma_11 Sigma_22):
  E[relu(u) relu(u')] = sqrt(Sigma_11 Sigma_22) (sin t + (pi - t) cos t) / (2 pi),
  E[1{u > 0} 1{u' > 0}] = (pi - t) / (2 pi);
- erf (Williams 1997):
  E[erf(u) erf(u')] = (2/pi) arcsin(2 Sigma_12 / sqrt((1 + 2 Sigma_11)(1 + 2 Sigma_22))),
  E[erf'(u) erf'(u')] = (4/pi) / sqrt((1 + 2 Sigma_11)(1 + 2 Sigma_22) - 4 Sigma_12^2);
- any other activation: a two-dimensional Gauss-Hermite rule on (u, u') = L z,
  L L^T = Sigma (``nodes`` per axis).

**Kernel gradient flow** (`kernel_flow`): with K = Theta(X, X) (n x n) and the square loss
R = (1/(2n)) |f(X) - y|^2, the linearised flow df/dt = -(1/n) Theta (f - y) is exact in t
through the eigendecomposition K = V diag(lambda) V^T:

    f_t(X)  = y + V e^{-t lambda / n} V^T (f_0(X) - y),
    f_t(x*) = f_0(x*) - Theta(x*, X) V diag((1 - e^{-t lambda / n}) / lambda) V^T (f_0(X) - y),

the factor (1 - e^{-t lambda/n}) / lambda -> t / n as lambda -> 0, so no inverse of K is
needed; t = infinity is kernel interpolation, and `kernel_ridge` is the ridge predictor
Theta(x*, X) (K + n mu I)^{-1} y. With f_0 = 0 these are the mean predictions of the
infinite-width ntk network.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ._typing import Array, Float
from .errors import ConfigError
from .models.activations import ACTIVATIONS

CLOSED = ("relu", "erf")
BLOCKS = ("a", "w", "b")


def _sigma(x, x2, w_std, b_std):
    """(Sigma_11 (n,1), Sigma_22 (1,l), Sigma_12 (n,l)) of the pre-activations."""
    s11 = w_std**2 * jnp.sum(x * x, -1)[:, None] + b_std**2
    s22 = w_std**2 * jnp.sum(x2 * x2, -1)[None, :] + b_std**2
    s12 = w_std**2 * (x @ x2.T) + b_std**2
    return s11, s22, s12


def _relu_pair(s11, s22, s12):
    norm = jnp.sqrt(s11 * s22)
    c = jnp.clip(s12 / jnp.where(norm > 0, norm, 1.0), -1.0, 1.0)
    t = jnp.arccos(c)
    value = norm * (jnp.sqrt(jnp.maximum(1.0 - c * c, 0.0)) + (jnp.pi - t) * c) / (2 * jnp.pi)
    deriv = (jnp.pi - t) / (2 * jnp.pi)
    return value, deriv


def _erf_pair(s11, s22, s12):
    p, q = 1.0 + 2.0 * s11, 1.0 + 2.0 * s22
    value = (2.0 / jnp.pi) * jnp.arcsin(jnp.clip(2.0 * s12 / jnp.sqrt(p * q), -1.0, 1.0))
    deriv = (4.0 / jnp.pi) / jnp.sqrt(p * q - 4.0 * s12 * s12)
    return value, deriv


def _quadrature_pair(activation, s11, s22, s12, nodes):
    """E[sigma(u) sigma(u')] and E[sigma'(u) sigma'(u')] by a tensor Gauss-Hermite rule."""
    z, wz = np.polynomial.hermite_e.hermegauss(nodes)
    wz = wz / wz.sum()
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    w2 = np.outer(wz, wz)
    z1, z2, w2 = (jnp.asarray(v.reshape(-1), s12.dtype) for v in (z1, z2, w2))
    s11, s22 = jnp.broadcast_to(s11, s12.shape), jnp.broadcast_to(s22, s12.shape)
    l11 = jnp.sqrt(s11)
    l21 = s12 / jnp.where(l11 > 0, l11, 1.0)
    l22 = jnp.sqrt(jnp.maximum(s22 - l21**2, 0.0))
    u = l11[..., None] * z1
    v = l21[..., None] * z1 + l22[..., None] * z2
    act = ACTIVATIONS[activation]
    grad = jnp.vectorize(jax.grad(act))
    value = jnp.sum(w2 * act(u) * act(v), -1)
    deriv = jnp.sum(w2 * grad(u) * grad(v), -1)
    return value, deriv


def _expectations(x, x2, activation, w_std, b_std, nodes):
    s11, s22, s12 = _sigma(x, x2, w_std, b_std)
    if activation == "relu":
        return _relu_pair(s11, s22, s12)
    if activation == "erf":
        return _erf_pair(s11, s22, s12)
    return _quadrature_pair(activation, s11, s22, s12, nodes)


@functools.partial(jax.jit, static_argnames=("activation", "nodes", "kind", "trainable"))
def _matrix(x, x2, w_std, b_std, a_std, *, activation, nodes, kind, trainable):
    """The kernel matrix in one compiled program: XLA fuses the elementwise formulas, so
    an (n, l) matrix needs about two (n, l) buffers (op by op it would be ten)."""
    value, deriv = _expectations(x, x2, activation, w_std, b_std, nodes)
    if kind == "nngp":
        return a_std**2 * value
    inner = (x @ x2.T if "w" in trainable else 0.0) + (1.0 if "b" in trainable else 0.0)
    out = a_std**2 * deriv * inner
    return out + value if "a" in trainable else out


def _inputs(x, x2, activation, w_std, b_std):
    """Validated (x, x2) as (n, d), (l, d) arrays."""
    if activation not in ACTIVATIONS:
        raise ConfigError(f"`activation` must be one of {sorted(ACTIVATIONS)}; got {activation!r}.")
    for name, v in (("w_std", w_std), ("b_std", b_std)):
        if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
            raise ConfigError(f"`{name}` must be a finite number >= 0; got {v!r}.")
    x = jnp.atleast_2d(jnp.asarray(x))
    x2 = x if x2 is None else jnp.atleast_2d(jnp.asarray(x2, x.dtype))
    if x.shape[1] != x2.shape[1]:
        raise ConfigError(f"inputs of dimension {x.shape[1]} and {x2.shape[1]}: they must agree.")
    return x, x2


def nngp(
    x: Float[Array, "n d"],
    x2: Float[Array, "l d"] | None = None,
    *,
    activation: str = "relu",
    a_std: float = 1.0,
    w_std: float = 1.0,
    b_std: float = 0.0,
    nodes: int = 48,
) -> Float[Array, "n l"]:
    """K_NNGP(x, x') = s_a^2 E[sigma(u) sigma(u')] (module docstring); ``b_std = 0`` is a
    unit without bias. Closed form for relu and erf, Gauss-Hermite (``nodes`` per axis)
    otherwise.

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
        >>> nngp(x, activation="relu").round(4).tolist()  # |x| = 1: 1/2 and 1/(2 pi)
        [[0.5, 0.1592], [0.1592, 0.5]]
    """
    x, x2 = _inputs(x, x2, activation, w_std, b_std)
    return _matrix(x, x2, w_std, b_std, a_std, activation=activation, nodes=nodes, kind="nngp",
                   trainable=BLOCKS)  # fmt: skip


def ntk(
    x: Float[Array, "n d"],
    x2: Float[Array, "l d"] | None = None,
    *,
    activation: str = "relu",
    a_std: float = 1.0,
    w_std: float = 1.0,
    b_std: float = 0.0,
    trainable: tuple[str, ...] = BLOCKS,
    nodes: int = 48,
) -> Float[Array, "n l"]:
    """Theta(x, x') = [a] E[sigma sigma'] + s_a^2 E[sigma' sigma'] ([w] x . x' + [b])
    (module docstring), the limit of `mfnn.diagnostics.kernel.tangent_kernel` times the
    model's velocity scale. ``trainable``: the blocks that move (b only if ``b_std > 0``
    or listed: a unit without bias has no b)."""
    for blk in trainable:
        if blk not in BLOCKS:
            raise ConfigError(f"`trainable` entries must be among {list(BLOCKS)}; got {blk!r}.")
    x, x2 = _inputs(x, x2, activation, w_std, b_std)
    return _matrix(x, x2, w_std, b_std, a_std, activation=activation, nodes=nodes, kind="ntk",
                   trainable=tuple(trainable))  # fmt: skip


def _spectral(k_train):
    lam, vec = jnp.linalg.eigh(0.5 * (k_train + k_train.T))
    return jnp.maximum(lam, 0.0), vec


def kernel_flow(
    k_train: Float[Array, "n n"],
    y: Float[Array, " n"],
    t,
    *,
    k_test: Float[Array, "l n"] | None = None,
    f0_train: Float[Array, " n"] | None = None,
    f0_test: Float[Array, " l"] | None = None,
    dt: float | None = None,
) -> tuple[Float[Array, " n"], Float[Array, " l"] | None]:
    """(f_t(X), f_t(x*)) of the kernel gradient flow df/dt = -(1/n) Theta (f - y), exact
    in t (module docstring); ``t = inf`` is kernel interpolation. f_0 = 0 by default.

    ``dt``: the same for the Euler steps f_{k+1} = f_k - (dt/n) Theta (f_k - y) that a run
    with that step takes (t = k dt): e^{-t lambda/n} becomes (1 - dt lambda/n)^k, so a
    simulation is compared with its own time discretisation."""
    n = k_train.shape[0]
    y = jnp.asarray(y, k_train.dtype)
    f0 = jnp.zeros(n, k_train.dtype) if f0_train is None else f0_train
    lam, vec = _spectral(k_train)
    r0 = vec.T @ (f0 - y)
    t = jnp.asarray(t, k_train.dtype)
    if dt is None:
        decay = jnp.where(jnp.isinf(t), 0.0, jnp.exp(-t * lam / n))
    else:
        decay = (1.0 - dt * lam / n) ** jnp.round(t / dt)
    f_train = y + vec @ (decay * r0)
    if k_test is None:
        return f_train, None
    # (1 - e^{-t lam / n}) / lam, -> t / n at lam = 0 (and 1/lam at t = inf)
    small = lam * jnp.where(jnp.isinf(t), 1.0, t) / n < 1e-8
    safe = jnp.where(small, 1.0, lam)
    gain = jnp.where(small, jnp.where(jnp.isinf(t), 0.0, t / n), (1.0 - decay) / safe)
    base = jnp.zeros(k_test.shape[0], k_train.dtype) if f0_test is None else f0_test
    return f_train, base - k_test @ (vec @ (gain * r0))


def kernel_ridge(
    k_train: Float[Array, "n n"], y: Float[Array, " n"], k_test: Float[Array, "l n"], ridge: float
) -> Float[Array, " l"]:
    """Theta(x*, X) (K + n mu I)^{-1} y, mu = ``ridge`` >= 0 (0: interpolation).

    One LU solve of the n x n system (O(n^3 / 3) flops; an eigendecomposition, as
    `kernel_flow` needs for every t, costs several times more), so n = 10^4 training points
    fit in one call (benchmarks/bench_kernels.py). The limit t -> infinity of
    `kernel_flow` from f_0 = 0 is the ``ridge = 0`` case."""
    if not (isinstance(ridge, int | float) and ridge >= 0):
        raise ConfigError(f"`ridge` must be a number >= 0; got {ridge!r}.")
    return _ridge(k_train, jnp.asarray(y, k_train.dtype), k_test, ridge)


@jax.jit
def _ridge(k_train, y, k_test, ridge):
    """One compiled program: the ridge added on the diagonal of a single copy of K (an
    n x n identity would be another n^2 buffer), then LU."""
    n = k_train.shape[0]
    idx = jnp.arange(n)
    system = k_train.at[idx, idx].add(n * ridge)
    return k_test @ jnp.linalg.solve(system, y)
