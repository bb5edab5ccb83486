r"""Optimal transport between particle measures: W2 exact, entropic, sliced and 1-D.

A particle cloud x (n, D) with weights p (n,) (p_i >= 0, sum_i p_i = 1; uniform 1/n when
omitted) is the measure mu = sum_i p_i delta_{x_i} (docs/theory.md section 1). The quadratic
Wasserstein distance between mu and nu = sum_j q_j delta_{y_j} is

    W2^2(mu, nu) = min_{pi >= 0, pi 1 = p, pi^T 1 = q} sum_ij pi_ij |x_i - y_j|^2.

Which function to use (n, m points):

=============================  ==============================  ==========================
function                       what it computes                use it for
=============================  ==============================  ==========================
``w2_exact``                   W2, exact (assignment or        n, m <= ~5000 (O(n^3) time,
                               network simplex; host, float64)  O(n m) memory)
``w2_sinkhorn``                the Sinkhorn divergence S_eps,  1e3-1e5 points; memory O((n
                               an approximation of W2^2 (JAX)  + m) D) with the cost formed
                                                               on the fly in row blocks
``w2_sliced``                  sliced W2 <= W2 (JAX, jit-able) any size (1e6 points in D =
                                                               10): a lower bound, cheap
``w2_1d``                      W2 in one dimension, exact      D = 1, any size, weights
                               (quantiles; JAX, jit-able)      allowed
``optimal_map``,               the optimal assignment and the  equal-size uniform clouds
``displacement_interpolation`` W2 geodesic between two clouds  (docs/theory.md s. 14)
=============================  ==============================  ==========================

Measured on 2 shared CPU cores, D = 10, two independent Gaussian samples, float32 for
the JAX functions (``benchmarks/bench_transport.py``, ``results/bench_transport_cpu2.json``):
``w2_exact`` 0.4 s at n = 1000, 29-78 s at 5000 (simplex / assignment); ``w2_sinkhorn``
(default eps and tol) 0.3 s at 1000, 18 s at 5000, 111 s at 1e4 (100 iterations), W2
within 0.25 % of exact; at 1e5 one pass over the kernel takes 35 s, so a solve (~400
passes) needs a GPU; ``w2_sliced`` with 128 directions 0.03 s at 5000, 15 s at 1e6.

Every function returns W2 itself (a distance, the square root of the optimal cost), or
its square with ``squared=True``. Clouds of different dimension, weights that are
negative or do not sum to 1, and mismatched shapes raise `ConfigError` naming the
argument. ``wasserstein2(x, p, y, q)`` is the older name of ``w2_exact``.

Between equal-size uniform clouds W2 is the quotient metric under permutations of the
particles (H. Yang's overview "Mean-field analysis of neural network", Remark 1, after
Mei, Montanari and Nguyen 2018): W2^2 = min_sigma (1/n) sum_i |x_i - y_sigma(i)|^2.

Example:
    >>> import numpy as np
    >>> x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> round(w2_exact(x, x + np.array([3.0, 4.0])), 9)  # a translation by |v| = 5
    5.0
    >>> round(float(w2_1d(np.array([0.0, 1.0]), np.array([2.0, 3.0]))), 9)
    2.0
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import ot
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from .._typing import Array, Float, Key, Scalar
from ..errors import ConfigError, MfnnError

__all__ = [
    "SinkhornResult",
    "w2_exact",
    "w2_sinkhorn",
    "w2_sliced",
    "w2_1d",
    "optimal_map",
    "displacement_interpolation",
    "wasserstein2",
]

# Sinkhorn: numbers per block of the cost matrix formed on the fly (1 MiB in float64: a
# block that stays in cache was 2-3x faster than 8 MiB blocks on the 2-core machine), and
# the size up to which the whole (n, m) cost matrix is formed once and kept (32 MiB).
_BLOCK_ELEMENTS = 1 << 17
_DENSE_MAX_ELEMENTS = 1 << 22
# Sinkhorn warm start: epsilon_k = max(epsilon, epsilon_0 * _ANNEAL_DECAY^k), epsilon_0 the
# mean cost (Schmitzer's epsilon scaling; the fixed point at `epsilon` is unchanged).
_ANNEAL_DECAY = 0.7
# Over-relaxation of the Sinkhorn updates: measured over _SOR_WINDOW iterations once the
# marginal error is below _SOR_START, capped at _SOR_MAX (Lehmann et al. 2022).
_SOR_START = 1e-3
_SOR_WINDOW = 20
_SOR_MAX = 1.9
# Sliced W2: numbers held at once by the batched projections and sorts (64 MiB in float64).
_SLICED_ELEMENTS = 1 << 23


# ------------------------------------------------------------------ validation


def _is_traced(*values) -> bool:
    return any(isinstance(v, jax.core.Tracer) for v in values)


def _cloud(name: str, x, *, xp=np):
    """``x`` as a floating (n, D) array with n >= 1, D >= 1; ``xp`` is np or jnp."""
    x = xp.asarray(x)
    if x.ndim != 2:
        raise ConfigError(
            f"`{name}` must be a 2-D array (n, D), one point per row; got shape {x.shape}. "
            "Reshape a 1-D sample of n numbers to (n, 1), or use `w2_1d`."
        )
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ConfigError(f"`{name}` must hold at least one point in D >= 1; got {x.shape}.")
    if not xp.issubdtype(x.dtype, xp.floating):
        x = x.astype(np.float64 if xp is np else jnp.result_type(float))
    if not _is_traced(x) and not bool(xp.all(xp.isfinite(x))):
        raise ConfigError(f"`{name}` must be finite; it contains NaN or inf.")
    return x


def _same_dimension(x, y) -> None:
    if x.shape[1] != y.shape[1]:
        raise ConfigError(
            f"`y` must live in the same dimension D as `x` (both clouds are measures on "
            f"R^D); got `x` with shape {tuple(x.shape)} (D = {x.shape[1]}) and `y` with "
            f"shape {tuple(y.shape)} (D = {y.shape[1]})."
        )


def _weights(name: str, w, n: int, cloud: str, *, xp=np):
    """Probability weights (n,) for the points of ``cloud``; None stays None (uniform)."""
    if w is None:
        return None
    w = xp.asarray(w)
    if w.shape != (n,):
        raise ConfigError(
            f"`{name}` must be a 1-D array of weights, one per point of `{cloud}` (shape "
            f"({n},)); got shape {tuple(w.shape)}."
        )
    if not xp.issubdtype(w.dtype, xp.floating):
        w = w.astype(np.float64 if xp is np else jnp.result_type(float))
    if _is_traced(w):
        return w
    wn = np.asarray(w, dtype=np.float64)
    if not np.all(np.isfinite(wn)):
        raise ConfigError(f"`{name}` must be finite; it contains NaN or inf.")
    if np.any(wn < 0):
        i = int(np.argmin(wn))
        raise ConfigError(
            f"`{name}` must be nonnegative weights (a probability vector); got `{name}[{i}]` "
            f"= {wn[i]:.6g}."
        )
    total = float(wn.sum())
    # sqrt(machine epsilon) of the weights' dtype: 1.5e-8 in float64, 3.5e-4 in float32.
    atol = math.sqrt(float(np.finfo(np.dtype(w.dtype)).eps))
    if abs(total - 1.0) > atol:
        raise ConfigError(
            f"`{name}` must sum to 1 (a probability vector), within {atol:.1e}; got sum "
            f"{total:.10g}. Normalize it: `{name} / {name}.sum()`."
        )
    return w / w.sum()  # exact normalization for the solvers (POT checks the masses)


def _check_positive(name: str, value, *, integer: bool = False) -> None:
    if _is_traced(value):
        return
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool) if integer else True
    try:
        v = float(value)
    except (TypeError, ValueError):
        ok = False
    else:
        ok = ok and math.isfinite(v) and v > 0
    if not ok:
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"`{name}` must be {kind}; got {value!r}.")


def _is_uniform(w) -> bool:
    return w is None or bool(np.all(w == w[0]))


# ------------------------------------------------------------------ exact


def _sq_cost(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return cdist(x, y, metric="sqeuclidean")


# `w2_exact(method="auto")` solves equal-size uniform clouds below this size as an
# assignment, from it by the network simplex (the timings are in `w2_exact`'s docstring)
AUTO_ASSIGNMENT_MAX_N = 2000


def w2_exact(x, y, p=None, q=None, *, squared: bool = False, method: str = "auto") -> float:
    r"""Exact W2 between two discrete measures, on the host in float64.

        W2^2(mu, nu) = min_{pi >= 0, pi 1 = p, pi^T 1 = q} sum_ij pi_ij |x_i - y_j|^2.

    Two exact solvers (``method="auto"`` picks from the input):

    * ``"assignment"``, for equal sizes n = m and uniform weights: by Birkhoff's theorem an
      optimal plan is a permutation, so W2^2 = min_sigma (1/n) sum_i |x_i - y_sigma(i)|^2,
      solved by ``scipy.optimize.linear_sum_assignment`` (Jonker-Volgenant, O(n^3) worst
      case);
    * ``"network_simplex"``, for any weights and sizes: POT's ``ot.emd2``, exact up to
      float rounding.

    ``"auto"`` takes the assignment for equal-size uniform clouds with n < 2000
    (``AUTO_ASSIGNMENT_MAX_N``) and the network simplex otherwise. Measured on 2 shared
    CPU cores, two independent standard Gaussian samples, median seconds of one call
    (cost matrix included) as assignment / simplex:

    ====== ================ ================ ================ ================
    D      n = 100          n = 300          n = 1000         n = 2000
    ====== ================ ================ ================ ================
    2      0.0006 / 0.0013  0.0069 / 0.013   0.11 / 0.11      0.67 / 0.45
    10     0.0005 / 0.0008  0.0047 / 0.0078  0.11 / 0.15      1.0 / 0.84
    ====== ================ ================ ================ ================

    and at n = 1500: 0.32 / 0.24 (D = 2), 0.36 / 0.57 (D = 10); n = 3000: 1.9 / 1.2
    (D = 2), 2.6 / 2.4 (D = 10); n = 5000, D = 10 (``benchmarks/bench_transport.py``):
    78 / 29. The assignment is 1.6-2.2x faster up to n = 300; at n = 1000-1500 the faster
    one depends on D and on the load (up to 1.4x either way for D = 2, the assignment up
    to 2.2x for D = 10); from n = 2000 the simplex is 1.1-1.7x faster (2.7x at 5000).
    Repeated runs vary by about 30 %. On easy inputs (y the image of x by an affine optimal map) the
    assignment stays faster (0.08 s against 0.26 s at n = 1000, D = 10, 7.7 s against
    8.9 s at 5000); force it with ``method="assignment"``. Both agree to 1e-15 relative.

    Cost: the dense (n, m) cost matrix (memory 8 n m bytes: 200 MB at n = m = 5000) plus
    the solver. Beyond a few thousand points use ``w2_sinkhorn`` (an approximation with
    a convergence report) or ``w2_sliced`` (a lower bound). Not jit-able (host code).

    Args:
        x: (n, D) support of mu.
        y: (m, D) support of nu, the same D.
        p: (n,) weights of mu, >= 0, summing to 1; None for uniform 1/n.
        q: (m,) weights of nu, >= 0, summing to 1; None for uniform 1/m.
        squared: return W2^2 instead of W2.
        method: ``"auto"`` (assignment for equal-size uniform clouds with n < 2000, else
            the network simplex), ``"assignment"`` or ``"network_simplex"``.

    Returns:
        W2(mu, nu) as a Python float (not squared), or W2^2 with ``squared=True``.

    Raises:
        ConfigError: ``x`` or ``y`` not 2-D or not finite, different dimensions D,
            weights of the wrong shape, negative, or not summing to 1; an unknown
            ``method``, or ``"assignment"`` for clouds that are not equal-size uniform.
        MfnnError: the network simplex stopped before optimality (not seen in tests).

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0]])
        >>> y = np.array([[0.0], [0.5], [3.0]])
        >>> w2_exact(x, y, q=np.array([0.25, 0.25, 0.5]), squared=True)  # 0.0625 + 2
        2.0625

    References:
        Peyre and Cuturi, "Computational Optimal Transport", Found. Trends Mach. Learn. 11
        (2019), sections 2.3 and 3.5 (assignment; network simplex). Bonneel et al.,
        "Displacement interpolation using Lagrangian mass transport", ACM TOG 30 (2011)
        (the network simplex POT uses).
    """
    methods = ("auto", "assignment", "network_simplex")
    if method not in methods:
        raise ConfigError(f"`method` must be one of {', '.join(methods)}; got {method!r}.")
    x, y = _cloud("x", x), _cloud("y", y)
    _same_dimension(x, y)
    p = _weights("p", p, x.shape[0], "x")
    q = _weights("q", q, y.shape[0], "y")
    n, m = x.shape[0], y.shape[0]
    uniform = n == m and _is_uniform(p) and _is_uniform(q)
    if method == "assignment" and not uniform:
        raise ConfigError(
            f"`method` = 'assignment' needs two equal-size clouds with uniform weights; got "
            f"{n} and {m} points{'' if p is None and q is None else ' with weights'}. Use "
            "'network_simplex' or 'auto'."
        )
    cost = _sq_cost(x.astype(np.float64), y.astype(np.float64))
    if method == "auto":
        method = "assignment" if uniform and n < AUTO_ASSIGNMENT_MAX_N else "network_simplex"
    if method == "assignment":
        rows, cols = linear_sum_assignment(cost)
        value = float(cost[rows, cols].mean())
    else:
        a = np.full(n, 1.0 / n) if p is None else np.asarray(p, np.float64)
        b = np.full(m, 1.0 / m) if q is None else np.asarray(q, np.float64)
        value, log = ot.emd2(a, b, cost, numItermax=max(100_000, 50 * n * m), log=True)
        if log.get("result_code", 1) != 1:
            raise MfnnError(
                f"w2_exact: the network simplex did not reach the optimum ({log['warning']}); "
                "the clouds may be too large for exact OT, use `w2_sinkhorn`."
            )
        value = float(value)
    value = max(value, 0.0)
    return value if squared else math.sqrt(value)


def wasserstein2(x, p, y, q) -> float:
    """W2 between sum_i p_i delta_{x_i} and sum_j q_j delta_{y_j}: ``w2_exact(x, y, p, q)``.

    The older name, kept for `mfnn.experiments.global_convergence`; note the argument
    order (x, p, y, q). See `w2_exact`.
    """
    return w2_exact(x, y, p, q)


# ------------------------------------------------------------------ 1-D


def _host_sort(a: np.ndarray) -> np.ndarray:
    return np.sort(a, axis=-1)


def _host_argsort(a: np.ndarray) -> np.ndarray:
    return np.argsort(a, axis=-1).astype(np.int32)


@jax.custom_jvp
def _sort(u: Array) -> Array:
    """Sort along the last axis; on CPU by NumPy through a callback, differentiable.

    XLA's CPU sort takes 0.35-0.45 s for 1e6 numbers against NumPy's 0.06-0.11 s (2-core
    machine, float32 / float64), and sorting is most of the cost of ``w2_sliced``; on an
    accelerator ``jnp.sort`` is fast and stays on the device. The derivative of a sort is
    the same permutation applied to the tangent (the JVP below takes an argsort).
    """
    if jax.default_backend() != "cpu":
        return jnp.sort(u, axis=-1)
    out = jax.ShapeDtypeStruct(u.shape, u.dtype)
    return jax.pure_callback(_host_sort, out, u, vmap_method="expand_dims")


@_sort.defjvp
def _sort_jvp(primals, tangents):
    (u,), (du,) = primals, tangents
    if jax.default_backend() != "cpu":
        idx = jnp.argsort(u, axis=-1)
    else:
        out = jax.ShapeDtypeStruct(u.shape, jnp.int32)
        idx = jax.pure_callback(_host_argsort, out, u, vmap_method="expand_dims")
    return jnp.take_along_axis(u, idx, axis=-1), jnp.take_along_axis(du, idx, axis=-1)


def _w2_1d_sq_uniform(u: Array, v: Array) -> Scalar:
    return jnp.mean((_sort(u) - _sort(v)) ** 2)


def _w2_1d_sq_weighted(u: Array, p: Array, v: Array, q: Array) -> Scalar:
    """int_0^1 |F^-1(t) - G^-1(t)|^2 dt for two weighted 1-D measures.

    Both quantile functions are constant between consecutive points of the merged grid
    of cumulative weights {P_i} u {Q_j}; on (t_(k-1), t_k] the quantile of mu is u_i with
    i the first index such that P_i >= t_k (searchsorted, side "left").
    """
    iu, iv = jnp.argsort(u), jnp.argsort(v)
    u, p, v, q = u[iu], p[iu], v[iv], q[iv]
    cp, cq = jnp.cumsum(p), jnp.cumsum(q)
    t = jnp.sort(jnp.concatenate([cp, cq]))
    dt = jnp.diff(t, prepend=jnp.zeros((1,), t.dtype))
    i = jnp.clip(jnp.searchsorted(cp, t, side="left"), 0, u.shape[0] - 1)
    j = jnp.clip(jnp.searchsorted(cq, t, side="left"), 0, v.shape[0] - 1)
    return jnp.sum(dt * (u[i] - v[j]) ** 2)


def _w2_1d_sq(u, v, p, q) -> Scalar:
    n, m = u.shape[0], v.shape[0]
    if p is None and q is None and n == m:
        return _w2_1d_sq_uniform(u, v)
    p = jnp.full((n,), 1.0 / n, u.dtype) if p is None else p.astype(u.dtype)
    q = jnp.full((m,), 1.0 / m, u.dtype) if q is None else q.astype(u.dtype)
    return _w2_1d_sq_weighted(u, p, v, q)


def _common_dtype(*arrays):
    """The widest floating dtype of the arrays (explicit: strict promotion refuses mixes)."""
    dtype = arrays[0].dtype
    for a in arrays[1:]:
        dtype = np.promote_types(dtype, a.dtype)
    return jnp.dtype(dtype)


def _line(name: str, x):
    x = jnp.asarray(x)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1 or x.shape[0] < 1:
        raise ConfigError(
            f"`{name}` must be a 1-D sample, shape (n,) or (n, 1); got shape {x.shape}. "
            "For clouds in D > 1 use `w2_exact`, `w2_sinkhorn` or `w2_sliced`."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if not _is_traced(x) and not bool(jnp.all(jnp.isfinite(x))):
        raise ConfigError(f"`{name}` must be finite; it contains NaN or inf.")
    return x


def w2_1d(x, y, p=None, q=None, *, squared: bool = False) -> Scalar:
    r"""Exact W2 between two measures on the real line, by the quantile formula.

        W2^2(mu, nu) = int_0^1 |F_mu^{-1}(t) - F_nu^{-1}(t)|^2 dt,

    F^{-1} the quantile functions (the monotone rearrangement is optimal in 1-D). For
    equal-size uniform samples it is the sorted matching (1/n) sum_i (x_(i) - y_(i))^2;
    with weights the integral is summed exactly over the merged grid of cumulative
    weights. Cost O((n + m) log(n + m)) (sorts), memory O(n + m): any size that fits.
    jit-able (JAX; weights are checked only outside jit), and the building block of
    ``w2_sliced``.

    Args:
        x: (n,) or (n, 1) points of mu.
        y: (m,) or (m, 1) points of nu.
        p: (n,) weights of mu, >= 0, summing to 1; None for uniform.
        q: (m,) weights of nu; None for uniform.
        squared: return W2^2 instead of W2.

    Returns:
        Scalar W2 (not squared), or W2^2 with ``squared=True``, in the dtype of x and y.

    Raises:
        ConfigError: a sample that is not 1-D or not finite; weights of the wrong shape,
            negative or not summing to 1.

    Example:
        >>> import numpy as np
        >>> x = np.array([1.0, 1.0, 1.0, -2.0])  # 4 points, to 2 atoms with mass 3/4, 1/4
        >>> float(w2_1d(x, np.array([0.0, 0.5]), q=np.array([0.75, 0.25]), squared=True))
        1.5625

    References:
        Villani, "Topics in Optimal Transportation", AMS (2003), Remark 2.19; Peyre and
        Cuturi (2019), Remark 2.30.
    """
    u, v = _line("x", x), _line("y", y)
    p = _weights("p", p, u.shape[0], "x", xp=jnp)
    q = _weights("q", q, v.shape[0], "y", xp=jnp)
    dtype = _common_dtype(u, v)
    value = _w2_1d_jit(u.astype(dtype), v.astype(dtype), p, q)
    return value if squared else jnp.sqrt(value)


@jax.jit
def _w2_1d_jit(u, v, p, q):
    return jnp.maximum(_w2_1d_sq(u, v, p, q), 0.0)


# ------------------------------------------------------------------ sliced


def _directions(key: Key, n: int, d: int, dtype) -> Float[Array, "L D"]:
    """n unit vectors, each uniform on the sphere, in orthonormal blocks of d.

    Each block is the Q factor of a Gaussian matrix with the signs of diag(R) folded in
    (a Haar rotation), so every row is uniform on S^(D-1) and the estimator stays
    unbiased; orthogonality within a block lowers its variance (for a translation by v a
    full block gives sum_k (theta_k . v)^2 = |v|^2 exactly).
    """
    blocks = -(-n // d)
    g = jax.random.normal(key, (blocks, d, d), dtype)
    qm, r = jnp.linalg.qr(g)
    qm = qm * jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))[:, None, :]
    return jnp.swapaxes(qm, -1, -2).reshape(blocks * d, d)[:n]


@functools.partial(jax.jit, static_argnames=("n_projections", "batch"))
def _sliced_sq(x, y, p, q, key, n_projections: int, batch: int):
    theta = _directions(key, n_projections, x.shape[1], x.dtype)
    per_direction = jax.lax.map(lambda t: _w2_1d_sq(x @ t, y @ t, p, q), theta, batch_size=batch)
    return jnp.maximum(jnp.mean(per_direction), 0.0)


def w2_sliced(
    x, y, key: Key, n_projections: int = 128, p=None, q=None, *, squared: bool = False
) -> Scalar:
    r"""Sliced W2: the 1-D W2 of the projections, averaged over random directions.

        SW2^2(mu, nu) = int_{S^(D-1)} W2^2(P_theta # mu, P_theta # nu) d sigma(theta),
        P_theta(x) = theta . x,
        estimate:  (1/L) sum_{l=1..L} W2^2(P_theta_l # mu, P_theta_l # nu),

    sigma the uniform probability on the unit sphere, L = ``n_projections`` directions in
    orthonormal blocks of D (each direction uniform; see `_directions`), each 1-D term
    exact (``w2_1d``). Relation to W2: P_theta is 1-Lipschitz, so every term, and hence
    the estimate for any set of directions, is <= W2^2: SW2 <= W2, a LOWER BOUND, not an
    approximation. For a translation nu = mu(. - v): SW2 = |v| / sqrt(D) while W2 = |v|;
    in general there is no bound of W2 by a multiple of SW2 (only Hoelder-type bounds on
    compact sets, Bonnotte 2013, chapter 5): in the benchmark's D = 10 Gaussian pairs
    SW2 / W2 = 0.26-0.29, below the 1 / sqrt(10) = 0.32 of a translation. Use it to
    compare clouds at scale (monitoring a run against a reference, 1e6 points), never as
    W2 itself. Differentiable in x and y (the sort's JVP is a permutation).

    Cost O(L (n + m)(D + log(n + m))) time, O(n + m) memory per direction (directions
    are batched to hold about 8M numbers at once): 1e6 points in D = 10 with 128
    directions take 15 s on 2 CPU cores (float32), 5000 points 0.03 s. The Monte Carlo
    error over directions is relative O(1 / sqrt(L)) (for a translation in D = 10 about
    1.2 / sqrt(L) on SW2^2 with independent directions; less with the orthonormal
    blocks). jit-able with ``n_projections`` static.

    Args:
        x: (n, D) points of mu.
        y: (m, D) points of nu, the same D.
        key: PRNG key for the directions.
        n_projections: number L of directions, a positive integer (static).
        p: (n,) weights of mu; None for uniform.
        q: (m,) weights of nu; None for uniform.
        squared: return SW2^2 instead of SW2.

    Returns:
        Scalar SW2 (not squared) or SW2^2 with ``squared=True``, in the dtype of x and y.

    Raises:
        ConfigError: clouds not 2-D or of different dimension, bad weights, or
            ``n_projections`` not a positive integer.

    Example:
        >>> import jax, numpy as np
        >>> x = np.random.default_rng(0).standard_normal((500, 4))
        >>> v = np.array([2.0, 0.0, 0.0, 0.0])  # |v| = 2, D = 4
        >>> sw = w2_sliced(x, x + v, jax.random.key(0), n_projections=8)  # 2 full blocks
        >>> round(float(sw), 6)  # |v| / sqrt(D)
        1.0

    References:
        Rabin, Peyre, Delon and Bernot, "Wasserstein barycenter and its application to
        texture mixing", SSVM (2011); Bonneel, Rabin, Peyre and Pfister, "Sliced and Radon
        Wasserstein barycenters of measures", J. Math. Imaging Vis. 51 (2015), section 2.
        Bonnotte, "Unidimensional and evolution methods for optimal transportation", PhD
        thesis, Paris-Sud (2013), chapter 5.
    """
    _check_positive("n_projections", n_projections, integer=True)
    x, y = _cloud("x", x, xp=jnp), _cloud("y", y, xp=jnp)
    _same_dimension(x, y)
    p = _weights("p", p, x.shape[0], "x", xp=jnp)
    q = _weights("q", q, y.shape[0], "y", xp=jnp)
    dtype = _common_dtype(x, y)
    batch = int(max(1, min(n_projections, _SLICED_ELEMENTS // max(x.shape[0], y.shape[0]))))
    value = _sliced_sq(x.astype(dtype), y.astype(dtype), p, q, key, int(n_projections), batch)
    return value if squared else jnp.sqrt(value)


# ------------------------------------------------------------------ Sinkhorn


class SinkhornResult(NamedTuple):
    """What ``w2_sinkhorn`` returns: the estimate and whether it can be trusted.

    Attributes:
        value: sqrt(S_eps) (or S_eps with ``squared=True``; OT_eps with ``debiased=False``).
        converged: every Sinkhorn problem met ``tol`` within ``max_iter`` iterations.
        iterations: iterations of the slowest of the (up to three) problems.
        error: the largest final marginal error sum_i |(pi 1)_i - p_i| (L1).
        epsilon: the regularization used (absolute, in units of squared distance).
    """

    value: float
    converged: bool
    iterations: int
    error: float
    epsilon: float


def _softmin_blocks(x, y, loga, eps, rows: int):
    """-eps log sum_j exp(loga_j - |x_i - y_j|^2 / eps) for each row, in blocks of rows.

    The (rows, m) block of the cost is formed on the fly, |x|^2 + |y|^2 - 2 x.y (one GEMM
    per block; the clouds are centred first so the cancellation error is small against
    eps), reduced by an online log-sum-exp: memory O((n + m) D) plus one block.
    """
    yy = jnp.sum(y * y, axis=-1)

    def row(xi):
        z = loga - (jnp.sum(xi * xi) + yy - 2.0 * (y @ xi)) / eps
        zmax = jnp.max(z)
        return -eps * (zmax + jnp.log(jnp.sum(jnp.exp(z - zmax))))

    return jax.lax.map(row, x, batch_size=rows)


def _softmin_dense(cost, loga, eps):
    z = loga[None, :] - cost / eps
    return -eps * jax.scipy.special.logsumexp(z, axis=1)


def _sinkhorn_loop(x, y, logp, logq, eps, eps0, tol, max_iter, *, symmetric, dense, rows):
    """Log-domain Sinkhorn for OT_eps between (x, p) and (y, q); returns (f, g, it, err).

    Updates (potentials f (n,), g (m,), C_ij = |x_i - y_j|^2), over-relaxed by omega:
        f_i <- (1 - omega) f_i + omega (-eps log sum_j q_j exp((g_j - C_ij)/eps)),
        g_j <- (1 - omega) g_j + omega (-eps log sum_i p_i exp((f_i - C_ij)/eps)).
    omega = 1 (plain Sinkhorn) until the error, at the final eps, is below 1e-3 and has
    decayed over a window of 20 iterations; then omega = 2 / (1 + sqrt(1 - eta)) (capped
    at 1.9), eta the measured error ratio per iteration (Lehmann, von Renesse, Sambale and
    Uschmajew 2022), which turns a rate eta = 0.999 into about omega - 1 = 0.94 near the
    fixed point; back to omega = 1 if the error grows tenfold. For x = y (symmetric) the
    averaged update f <- (f + T(f)) / 2 (Feydy et al. 2019).

    The error of the plan pi_ij = p_i q_j exp((f_i + g_j - C_ij)/eps) is the larger of
    its row-marginal L1 error sum_i p_i |exp((f_i - T(g)_i)/eps) - 1| and the column one,
    read off the updates at no extra cost; it counts once the annealed eps_k reached eps.
    The non-symmetric loop ends with a plain g-update, so the plan's columns are exact
    and <p, f> + <q, g> is its dual objective.
    """
    if dense:
        cost = jnp.sum(x * x, -1)[:, None] + jnp.sum(y * y, -1)[None, :] - 2.0 * x @ y.T
        cost = jnp.maximum(cost, 0.0)
        t_f = lambda g, e: _softmin_dense(cost, logq + g / e, e)  # noqa: E731
        t_g = lambda f, e: _softmin_dense(cost.T, logp + f / e, e)  # noqa: E731
    else:
        rows_x, rows_y = rows
        t_f = lambda g, e: _softmin_blocks(x, y, logq + g / e, e, rows_x)  # noqa: E731
        t_g = lambda f, e: _softmin_blocks(y, x, logp + f / e, e, rows_y)  # noqa: E731
    dtype = x.dtype
    p, q = jnp.exp(logp), jnp.exp(logq)
    inf = jnp.asarray(jnp.inf, dtype)
    one = jnp.asarray(1.0, dtype)
    decay = jnp.asarray(_ANNEAL_DECAY, dtype)
    # first iteration whose (f, g) and update share the final eps
    k_final = (jnp.ceil(jnp.log(eps / eps0) / jnp.log(decay))).astype(jnp.int32) + 1

    def eps_at(k):
        return jnp.maximum(eps, eps0 * decay ** k.astype(dtype))

    def cond(state):
        k, err = state[2], state[3]
        return (k < max_iter) & (err > tol)  # NaN stops the loop (and fails the check)

    def body(state):
        f, g, k, _, omega, mark, k_mark, phase = state
        e = eps_at(k)
        tf = t_f(g, e)
        err = jnp.sum(p * jnp.abs(jnp.expm1((f - tf) / e)))
        if symmetric:
            f_new = 0.5 * (f + tf)
            g_new = f_new
        else:
            f_new = f + omega * (tf - f)
            tg = t_g(f_new, e)
            err = jnp.maximum(err, jnp.sum(q * jnp.abs(jnp.expm1((g - tg) / e))))
            g_new = g + omega * (tg - g)
        err = jnp.where(k >= k_final, err, inf)
        if not symmetric:
            # over-relaxation: once err < _SOR_START, measure the plain rate over a window
            # of iterations, then switch; revert to omega = 1 if the error grows tenfold.
            begin = (phase == 0) & (err < _SOR_START)
            mark = jnp.where(begin, err, mark)
            k_mark = jnp.where(begin, k, k_mark)
            phase = jnp.where(begin, 1, phase)
            ready = (phase == 1) & (k == k_mark + _SOR_WINDOW)
            eta = (err / mark) ** (1.0 / _SOR_WINDOW)
            best = jnp.minimum(2.0 / (1.0 + jnp.sqrt(jnp.maximum(1.0 - eta, 0.0))), _SOR_MAX)
            omega = jnp.where(ready, jnp.where(eta < 1.0, best, one), omega)
            mark = jnp.where(ready, err, mark)
            phase = jnp.where(ready, 2, phase)
            bad = (phase == 2) & (err > 10.0 * mark)
            omega = jnp.where(bad, one, omega)
            phase = jnp.where(bad, 3, phase)
        return f_new, g_new, k + 1, err, omega, mark, k_mark, phase

    f0 = jnp.zeros(x.shape[0], dtype)
    g0 = jnp.zeros(y.shape[0], dtype)
    zero = jnp.asarray(0, jnp.int32)
    state = (f0, g0, zero, inf, one, inf, zero, zero)
    f, g, k, err = jax.lax.while_loop(cond, body, state)[:4]
    if not symmetric:
        g = t_g(f, eps)
    return f, g, k, err


@functools.partial(jax.jit, static_argnames=("debiased", "dense", "rows"))
def _sinkhorn_divergence(x, y, p, q, eps, eps0, tol, max_iter, *, debiased, dense, rows):
    logp, logq = jnp.log(p), jnp.log(q)
    kw = dict(dense=dense, rows=(rows[0], rows[1]))
    f, g, it, err = _sinkhorn_loop(
        x, y, logp, logq, eps, eps0, tol, max_iter, symmetric=False, **kw
    )
    value = jnp.dot(p, f) + jnp.dot(q, g)  # the dual objective = OT_eps at the fixed point
    its, errs = [it], [err]
    if debiased:
        kx = dict(dense=dense, rows=(rows[0], rows[0]))
        ky = dict(dense=dense, rows=(rows[1], rows[1]))
        fx, _, itx, errx = _sinkhorn_loop(
            x, x, logp, logp, eps, eps0, tol, max_iter, symmetric=True, **kx
        )
        gy, _, ity, erry = _sinkhorn_loop(
            y, y, logq, logq, eps, eps0, tol, max_iter, symmetric=True, **ky
        )
        value = jnp.dot(p, f - fx) + jnp.dot(q, g - gy)
        its += [itx, ity]
        errs += [errx, erry]
    return value, jnp.max(jnp.stack(its)), jnp.max(jnp.stack(errs))


def w2_sinkhorn(
    x,
    y,
    p=None,
    q=None,
    epsilon: float | None = None,
    max_iter: int = 2000,
    tol: float = 1e-3,
    *,
    debiased: bool = True,
    squared: bool = False,
    warn: bool = True,
) -> SinkhornResult:
    r"""Entropic W2 by log-domain Sinkhorn in JAX: the Sinkhorn divergence, for large clouds.

        OT_eps(mu, nu) = min_{pi in Pi(p, q)} sum_ij pi_ij |x_i - y_j|^2 + eps KL(pi || p q^T),
        S_eps(mu, nu)  = OT_eps(mu, nu) - (OT_eps(mu, mu) + OT_eps(nu, nu)) / 2   (debiased).

    OT_eps is computed from its dual, <p, f> + <q, g> at the Sinkhorn fixed point (log
    domain, stable for small eps). It decreases monotonically to W2^2 as eps -> 0 (it is a
    minimum of functions affine in eps with slope KL >= 0) but is biased by about eps
    times an entropy (eps log n for an assignment); the debiasing removes most of it:
    S_eps >= 0, S_eps(mu, mu) = 0, S_eps -> W2^2 as eps -> 0 (a faster approach), and
    S_eps -> |mean(mu) - mean(nu)|^2 as eps -> infinity (Feydy et al., Thm. 1: half the
    energy distance with kernel -|x - y|^2). For a translation, S_eps(mu,
    mu(. - v)) = |v|^2 exactly at every eps. The value returned is sqrt(S_eps) (an
    approximation of W2, not squared), S_eps with ``squared=True``, and OT_eps (or its
    root) with ``debiased=False``.

    Cost per iteration O(n m D) time (two log-sum-exp passes over the cost; three
    problems when debiased, the two symmetric ones converging in a few tens of
    iterations); memory: the (n, m) cost is kept when n m <= 4M, else formed on the fly
    in blocks of 128K numbers with an online log-sum-exp, so memory is O((n + m) D) and
    1e5 points fit. A pass runs at about 3e8 kernel entries per second on 2 CPU cores
    (float32): 0.3-0.6 s at n = m = 1e4 (a solve: 111 s), 35 s at 1e5 (a solve of ~400
    passes: hours), so 1e5 points need a GPU. Iterations grow roughly like (cost scale /
    eps) and depend on the data: at the default eps in D = 10, 100-180 for two
    independent Gaussian samples, 18 for a sample and its image by an affine map
    (``benchmarks/bench_transport.py``). eps is annealed from the mean cost down to
    ``epsilon`` (eps_k = max(eps, eps_0 0.7^k), a warm start that leaves the fixed point
    unchanged). Use it between ~1e3 and 1e5 points, where ``w2_exact`` is too slow or too
    big. In float32 the expanded cost |x|^2 + |y|^2 - 2 x.y carries an absolute error
    ~1e-7 |x|^2 (the clouds are centred first to keep it small): keep eps far above it.

    Note:
        Why it can fail, and what to do:

        * ``converged`` is False: the marginal error is still above ``tol`` after
          ``max_iter`` iterations. Iterations scale like max cost / eps, so a small
          ``epsilon`` (relative to the spread of the clouds) needs many; raise
          ``max_iter``, raise ``epsilon``, or loosen ``tol``. A warning is issued (unless
          ``warn=False``) and the value must not be trusted.
        * NaN: non-finite input is refused; a NaN during the iterations (float32 with eps
          tiny against the squared distances) stops the loop with ``converged`` False;
          use float64 or a larger ``epsilon``.
        * The value is a biased estimate of W2 at eps > 0 (it smooths the transport over
          distances ~sqrt(eps)): compare runs at the same ``epsilon``, and check against
          ``w2_exact`` on a subsample when the absolute value matters.
        * ``tol`` bounds the marginal error (L1) of the plans, not the error of the value.
          The value converges much faster than the marginals: on 200 points in D = 2,
          |S_eps(tol) - S_eps(tol = 1e-9)| / S_eps was 3e-7 to 1e-5 at tol = 1e-3 and
          below 3e-7 at tol = 1e-4 (eps = 0.01-0.3 of the spread). Far from convergence
          (a tiny ``max_iter``) it can be off by any amount.

    Args:
        x: (n, D) points of mu.
        y: (m, D) points of nu, the same D.
        p: (n,) weights of mu, >= 0 summing to 1; None for uniform.
        q: (m,) weights of nu; None for uniform.
        epsilon: entropic regularization eps > 0 in units of squared distance; None for
            0.01 * s, s = the mean over both clouds of |x - c|^2, c their joint weighted
            mean (the spread of the data; reported in ``result.epsilon``).
        max_iter: iteration budget of each of the Sinkhorn problems.
        tol: target L1 marginal error of the plans (OTT's default threshold, 1e-3).
        debiased: return the Sinkhorn divergence S_eps (True) or OT_eps (False).
        squared: return S_eps (or OT_eps) instead of its square root.
        warn: issue a RuntimeWarning when not converged.

    Returns:
        ``SinkhornResult(value, converged, iterations, error, epsilon)`` of Python
        scalars. Computation runs in the dtype of x and y.

    Raises:
        ConfigError: clouds not 2-D, not finite or of different dimension, bad weights,
            non-positive ``epsilon``, ``tol`` or ``max_iter``.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).standard_normal((200, 2))
        >>> res = w2_sinkhorn(x, x + np.array([0.6, 0.8]), epsilon=0.5, tol=1e-6)
        >>> res.converged, round(res.value, 5)  # a translation: sqrt(S_eps) = |v| = 1
        (True, 1.0)

    References:
        Cuturi, "Sinkhorn distances", NeurIPS (2013). Feydy, Sejourne, Vialard, Amari,
        Trouve and Peyre, "Interpolating between optimal transport and MMD using Sinkhorn
        divergences", AISTATS (2019), eq. (3) and section 3 (symmetric update). Schmitzer,
        "Stabilized sparse scaling algorithms for entropy regularized transport problems",
        SIAM J. Sci. Comput. 41 (2019) (log domain, eps scaling). Peyre and Cuturi (2019),
        Remark 4.23.
    """
    x, y = _cloud("x", x), _cloud("y", y)
    _same_dimension(x, y)
    p = _weights("p", p, x.shape[0], "x")
    q = _weights("q", q, y.shape[0], "y")
    if epsilon is not None:
        _check_positive("epsilon", epsilon)
    _check_positive("tol", tol)
    _check_positive("max_iter", max_iter, integer=True)
    dtype = _common_dtype(jnp.asarray(x[:1]), jnp.asarray(y[:1]))
    n, m = x.shape[0], y.shape[0]
    pw = np.full(n, 1.0 / n) if p is None else np.asarray(p, np.float64)
    qw = np.full(m, 1.0 / m) if q is None else np.asarray(q, np.float64)
    # Centre both clouds at their joint mean (W2 is translation invariant): smaller |x|^2
    # and |y|^2 in the expanded cost, hence less cancellation. Moments in float64.
    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mx, my = pw @ x64, qw @ y64
    centre = 0.5 * (mx + my)
    xc, yc = x64 - centre, y64 - centre
    spread = 0.5 * (pw @ np.sum(xc**2, axis=1) + qw @ np.sum(yc**2, axis=1))
    mean_cost = float(
        pw @ np.sum(xc**2, 1) + qw @ np.sum(yc**2, 1) - 2 * (mx - centre) @ (my - centre)
    )
    eps = float(epsilon) if epsilon is not None else 0.01 * float(spread)
    if not eps > 0:
        raise ConfigError(
            "`epsilon` must be positive; the default 0.01 * spread is 0 because both clouds "
            "are a single point. Pass `epsilon` explicitly."
        )
    eps0 = max(eps, mean_cost)
    dense = n * m <= _DENSE_MAX_ELEMENTS
    rows = (int(max(1, min(n, _BLOCK_ELEMENTS // m))), int(max(1, min(m, _BLOCK_ELEMENTS // n))))
    value, it, err = _sinkhorn_divergence(
        jnp.asarray(xc, dtype),
        jnp.asarray(yc, dtype),
        jnp.asarray(pw, dtype),
        jnp.asarray(qw, dtype),
        jnp.asarray(eps, dtype),
        jnp.asarray(eps0, dtype),
        jnp.asarray(tol, dtype),
        jnp.asarray(max_iter, jnp.int32),
        debiased=bool(debiased),
        dense=dense,
        rows=rows,
    )
    value, it, err = float(value), int(it), float(err)
    converged = bool(math.isfinite(value) and err <= tol)
    if not converged and warn:
        warnings.warn(
            f"w2_sinkhorn did not converge: marginal error {err:.3g} > tol = {tol:g} after "
            f"{it} iterations (epsilon = {eps:.3g}); raise `max_iter` or `epsilon`, or "
            "loosen `tol`. The value is not reliable.",
            RuntimeWarning,
            stacklevel=2,
        )
    if not squared:
        value = math.sqrt(max(value, 0.0)) if math.isfinite(value) else value
    return SinkhornResult(value, converged, it, err, eps)


# ------------------------------------------------------------------ maps and geodesics


def optimal_map(x, y) -> np.ndarray:
    r"""The optimal assignment between two equal-size uniform clouds, as a permutation.

        sigma = argmin_sigma (1/n) sum_i |x_i - y_sigma(i)|^2,   T(x_i) = y_sigma(i),

    so T # mu = nu for mu = (1/n) sum delta_{x_i}, nu = (1/n) sum delta_{y_j}, and
    W2^2(mu, nu) = (1/n) sum_i |x_i - T(x_i)|^2 (Birkhoff: an optimal plan between equal-size
    uniform measures is a permutation). Solved by ``linear_sum_assignment`` on the host,
    O(n^3) worst case (see ``w2_exact`` for sizes). For weighted or unequal clouds the
    optimal plan splits mass and is not a map; use POT's ``ot.emd`` for the plan.

    Args:
        x: (n, D) source points.
        y: (n, D) target points, the same n and D.

    Returns:
        sigma, an (n,) integer array: ``y[sigma]`` is T(x) row by row.

    Raises:
        ConfigError: clouds not 2-D, of different dimension or of different sizes.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [2.0]])
        >>> optimal_map(x, np.array([[2.1], [0.1], [1.1]])).tolist()  # monotone in 1-D
        [1, 2, 0]
    """
    x, y = _cloud("x", x), _cloud("y", y)
    _same_dimension(x, y)
    if x.shape[0] != y.shape[0]:
        raise ConfigError(
            f"`y` must have as many points as `x` for an optimal map (a permutation); got "
            f"{x.shape[0]} and {y.shape[0]}. For unequal sizes the optimal plan splits mass: "
            "use `w2_exact` for the distance."
        )
    _, cols = linear_sum_assignment(_sq_cost(x.astype(np.float64), y.astype(np.float64)))
    return cols


def displacement_interpolation(x, y, s, *, permutation=None) -> np.ndarray:
    r"""McCann's displacement interpolation between two equal-size uniform clouds.

        mu_s = ((1 - s) Id + s T) # mu,   points (1 - s) x_i + s y_sigma(i),   s in [0, 1],

    T the optimal map (``optimal_map``; McCann 1997; docs/theory.md section 14). mu_s is
    the constant-speed W2 geodesic from mu_0 = mu to mu_1 = nu:
    W2(mu_s, mu_t) = |t - s| W2(mu, nu). It is not the linear mixture (1 - s) mu + s nu.

    Args:
        x: (n, D) source points.
        y: (n, D) target points.
        s: a time in [0, 1], or a 1-D sequence of k times.
        permutation: the (n,) result of ``optimal_map(x, y)``, to reuse; computed if None.

    Returns:
        (n, D) points of mu_s for a scalar ``s``; (k, n, D) for a sequence (float64).

    Raises:
        ConfigError: as ``optimal_map``; ``s`` outside [0, 1]; a bad ``permutation``.

    Example:
        >>> import numpy as np
        >>> x, y = np.array([[0.0], [1.0]]), np.array([[3.0], [2.0]])
        >>> displacement_interpolation(x, y, 0.5)[:, 0].tolist()  # 0 -> 2, 1 -> 3
        [1.0, 2.0]

    References:
        McCann, "A convexity principle for interacting gases", Adv. Math. 128 (1997).
    """
    x, y = _cloud("x", x).astype(np.float64), _cloud("y", y).astype(np.float64)
    if permutation is None:
        permutation = optimal_map(x, y)
    else:
        _same_dimension(x, y)
        permutation = np.asarray(permutation)
        if permutation.shape != (x.shape[0],) or not np.array_equal(
            np.sort(permutation), np.arange(y.shape[0])
        ):
            raise ConfigError(
                f"`permutation` must be a permutation of range({y.shape[0]}) (from "
                f"`optimal_map(x, y)`); got shape {permutation.shape}."
            )
    s_arr = np.asarray(s, dtype=np.float64)
    if s_arr.ndim > 1 or not np.all((s_arr >= 0) & (s_arr <= 1)):
        raise ConfigError(f"`s` must be a time in [0, 1] or a 1-D sequence of them; got {s!r}.")
    target = y[permutation]
    if s_arr.ndim == 0:
        return (1.0 - s_arr) * x + s_arr * target
    return (1.0 - s_arr)[:, None, None] * x[None] + s_arr[:, None, None] * target[None]
