"""Population integrals over the inputs: closed-form kernels and Gauss quadrature rules.

For units without bias and x ~ N(0, I_d) (docs/theory.md section 3), the population kernel

    K(u, v) = E_x[sigma(u . x) sigma(v . x)]

has a closed form when sigma is relu or erf. For any activation and input dimension
d <= 3, population integrals E_x h(x) are taken instead by tensor-product Gauss quadrature
(Hermite nodes for Gaussian inputs, Legendre nodes for uniform inputs).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._typing import Array, Float
from ..errors import ConfigError

# ------------------------------------------------------------------ closed-form kernels


@jax.custom_jvp
def _relu_angular(c: Array) -> Array:
    """g(c) = sqrt(1 - c^2) + (pi - arccos c) c, evaluated on clip(c, -1, 1).

    With c = cos t this is sin t + (pi - t) cos t, the angular part of the relu kernel.
    """
    c = jnp.clip(c, -1.0, 1.0)
    return jnp.sqrt(1.0 - c**2) + (jnp.pi - jnp.arccos(c)) * c


@_relu_angular.defjvp
def _relu_angular_jvp(primals, tangents):
    # g'(c) = -c / sqrt(1 - c^2) + c / sqrt(1 - c^2) + (pi - arccos c) = pi - arccos c:
    # the two singular terms cancel exactly, so write the derivative directly (finite on
    # [-1, 1]) instead of letting autodiff produce inf - inf at t = 0 and t = pi. The
    # tangent passes through linearly: the clip only guards the primal against rounding
    # (|c| = 1 + eps), and clip's own derivative would halve or zero it at the boundary.
    (c,), (dc,) = primals, tangents
    slope = jnp.pi - jnp.arccos(jnp.clip(c, -1.0, 1.0))
    return _relu_angular(c), slope * dc


def _safe_norm(w: Float[Array, "k d"]) -> tuple[Float[Array, " k"], Float[Array, " k"]]:
    """(|w|, |w| with 0 replaced by 1), both with finite gradients at w = 0.

    The double-`where` trick: sqrt is never evaluated (nor differentiated) at 0, so the
    masked branch cannot send a NaN cotangent back to w.
    """
    sq = jnp.sum(w**2, axis=-1)
    positive = sq > 0
    root = jnp.sqrt(jnp.where(positive, sq, 1.0))
    return jnp.where(positive, root, 0.0), root


def relu_kernel(u: Float[Array, "k d"], v: Float[Array, "l d"]) -> Float[Array, "k l"]:
    r"""Closed-form relu kernel for x ~ N(0, I_d) (arc-cosine kernel of degree 1).

        K(u, v) = E_x[relu(u . x) relu(v . x)]
                = |u| |v| / (2 pi) * (sin t + (pi - t) cos t),   t = angle(u, v),
                = |u| |v| g(c) / (2 pi),   c = u . v / (|u| |v|),
        g(c) = sqrt(1 - c^2) + (pi - arccos c) c,   g'(c) = pi - arccos c.

    So K(u, u) = |u|^2 / 2 and K(u, -u) = 0. The naive gradient of the arccos form is
    inf - inf at t = 0 and t = pi; here g carries its own derivative, finite on [-1, 1],
    so gradients in u and v are finite and exact for every angle, including u == v
    (the diagonal of ``relu_kernel(u, u)``). At u = 0 (or v = 0) the kernel is 0 with a
    finite gradient.

    Args:
        u: (k, d) input weights of k units.
        v: (l, d) input weights of l units.

    Returns:
        (k, l) matrix K[i, j] = K(u_i, v_j).

    Example:
        >>> u = jnp.array([[3.0, 4.0]])
        >>> float(relu_kernel(u, u)[0, 0])
        12.5

    References:
        Cho and Saul, "Kernel methods for deep learning", NeurIPS 2009, eq. (6) with n = 1.
    """
    nu, nu_safe = _safe_norm(u)
    nv, nv_safe = _safe_norm(v)
    c = (u @ v.T) / (nu_safe[:, None] * nv_safe[None, :])
    return nu[:, None] * nv[None, :] * _relu_angular(c) / (2 * jnp.pi)


def erf_kernel(u: Float[Array, "k d"], v: Float[Array, "l d"]) -> Float[Array, "k l"]:
    r"""Closed-form erf kernel for x ~ N(0, I_d).

        K(u, v) = E_x[erf(u . x) erf(v . x)]
                = (2 / pi) arcsin( 2 u . v / sqrt((1 + 2 |u|^2) (1 + 2 |v|^2)) ).

    The arcsin argument lies strictly inside (-1, 1) (since (1 + 2a^2)(1 + 2b^2) >
    4 a^2 b^2), so the kernel is smooth everywhere, u = 0 included.

    Args:
        u: (k, d) input weights of k units.
        v: (l, d) input weights of l units.

    Returns:
        (k, l) matrix K[i, j] = K(u_i, v_j).

    Example:
        >>> float(erf_kernel(jnp.zeros((1, 3)), jnp.ones((1, 3)))[0, 0])
        0.0

    References:
        Williams, "Computing with infinite networks", NeurIPS 1996, eq. (11).
    """
    su = 1.0 + 2.0 * jnp.sum(u**2, axis=-1)
    sv = 1.0 + 2.0 * jnp.sum(v**2, axis=-1)
    return (2 / jnp.pi) * jnp.arcsin(2.0 * (u @ v.T) / jnp.sqrt(su[:, None] * sv[None, :]))


KERNELS: dict[str, Callable[[Array, Array], Array]] = {"relu": relu_kernel, "erf": erf_kernel}


def get_kernel(activation: str) -> Callable[[Array, Array], Array]:
    """The closed-form kernel K(u, v) = E_x[sigma(u . x) sigma(v . x)], x ~ N(0, I_d).

    Args:
        activation: the activation sigma, ``"relu"`` or ``"erf"``.

    Returns:
        ``relu_kernel`` or ``erf_kernel``: (k, d), (l, d) -> (k, l).

    Raises:
        ConfigError: no closed form for this activation.
    """
    try:
        return KERNELS[activation]
    except (KeyError, TypeError):
        raise ConfigError(
            "`data.population.method: closed_form` exists only for relu and erf units "
            f"without bias (supported: {', '.join(sorted(KERNELS))}); got activation "
            f"{activation!r}. Use `quadrature` (d <= 3) or `monte_carlo` instead."
        ) from None


# ------------------------------------------------------------------ quadrature rules


def _check_rule(dim, nodes) -> None:
    if not isinstance(dim, int | np.integer) or dim < 1:
        raise ConfigError(f"`data.inputs.dim` must be a positive integer; got {dim!r}.")
    if not isinstance(nodes, int | np.integer) or nodes < 1:
        raise ConfigError(
            f"`data.population.nodes` must be a positive integer (nodes per dimension); "
            f"got {nodes!r}."
        )


@functools.lru_cache(maxsize=64)
def _hermegauss(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """The 1-D rule of `numpy.polynomial.hermite_e.hermegauss`, kept once computed (an
    eigenvalue problem of size ``nodes``: a second of CPU at 150-300 nodes, and every run
    of a quadrature risk asks for it several times: the rule, the 2x rule of the error)."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


@functools.lru_cache(maxsize=64)
def _leggauss(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """The 1-D rule of `numpy.polynomial.legendre.leggauss`, kept once computed."""
    z, w = np.polynomial.legendre.leggauss(nodes)
    z.setflags(write=False)
    w.setflags(write=False)
    return z, w


def _tensor_product(
    x1: np.ndarray, w1: np.ndarray, dim: int, dtype
) -> tuple[Float[Array, "q dim"], Float[Array, " q"]]:
    """Tensor product of a 1-D rule (x1, w1) over dim axes, weights normalized to sum 1."""
    grids = np.meshgrid(*([x1] * dim), indexing="ij")
    x = np.stack([g.reshape(-1) for g in grids], axis=-1)
    wgrids = np.meshgrid(*([w1 / w1.sum()] * dim), indexing="ij")
    w = np.prod(np.stack([g.reshape(-1) for g in wgrids], axis=-1), axis=-1)
    return jnp.asarray(x, dtype=dtype), jnp.asarray(w, dtype=dtype)


def gauss_hermite(dim: int, nodes: int, dtype) -> tuple[Float[Array, "q dim"], Float[Array, " q"]]:
    r"""Tensor-product Gauss-Hermite rule for x ~ N(0, I_dim), q = nodes**dim points.

        E_x h(x) ~= sum_a w_a h(x_a),   sum_a w_a = 1,

    with x_a, w_a the products of the 1-D probabilists' Hermite rule (weight
    exp(-x^2 / 2) / sqrt(2 pi); ``numpy.polynomial.hermite_e.hermegauss``). Exact for
    polynomials of degree <= 2 nodes - 1 in each coordinate.

    Args:
        dim: input dimension d >= 1.
        nodes: nodes per dimension, >= 1.
        dtype: floating dtype of the returned arrays.

    Returns:
        (x (nodes**dim, dim), weights (nodes**dim,)).

    Example:
        >>> x, w = gauss_hermite(1, 2, jnp.float32)
        >>> float(jnp.sum(w * x[:, 0] ** 2))
        1.0
    """
    _check_rule(dim, nodes)
    x1, w1 = _hermegauss(int(nodes))
    return _tensor_product(x1, w1, dim, dtype)


def gauss_legendre(
    dim: int, nodes: int, low: float, high: float, dtype
) -> tuple[Float[Array, "q dim"], Float[Array, " q"]]:
    r"""Tensor-product Gauss-Legendre rule for x uniform on [low, high]^dim.

        E_x h(x) ~= sum_a w_a h(x_a),   sum_a w_a = 1,
        x_a = low + (high - low) (z_a + 1) / 2,

    with z_a, w_a the products of the 1-D Legendre rule on [-1, 1]
    (``numpy.polynomial.legendre.leggauss``). Exact for polynomials of degree
    <= 2 nodes - 1 in each coordinate.

    Args:
        dim: input dimension d >= 1.
        nodes: nodes per dimension, >= 1.
        low, high: the box, low < high.
        dtype: floating dtype of the returned arrays.

    Returns:
        (x (nodes**dim, dim), weights (nodes**dim,)).
    """
    _check_rule(dim, nodes)
    if not high > low:
        raise ConfigError(
            f"`data.inputs` needs `low` < `high` for a uniform box; got low={low!r}, high={high!r}."
        )
    z1, w1 = _leggauss(int(nodes))
    x1 = low + (high - low) * (z1 + 1.0) / 2.0
    return _tensor_product(x1, w1, dim, dtype)


QUADRATURE_LAWS = ("gaussian", "uniform")


def quadrature_rule(
    law: str, dim: int, nodes: int, dtype, low: float = -1.0, high: float = 1.0
) -> tuple[Float[Array, "q dim"], Float[Array, " q"]]:
    r"""Gauss rule for E_x h(x) under the input law, for d <= 3.

        E_x h(x) ~= sum_a w_a h(x_a),   q = nodes**dim points,   sum_a w_a = 1;

    `gauss_hermite` for ``law="gaussian"`` (x ~ N(0, I_d)), `gauss_legendre` for
    ``law="uniform"`` (x uniform on [low, high]^d). The cost grows as nodes**d, hence
    the limit d <= 3.

    Args:
        law: ``"gaussian"`` or ``"uniform"``.
        dim: input dimension, 1 <= d <= 3.
        nodes: nodes per dimension, >= 1.
        dtype: floating dtype of the returned arrays.
        low, high: the box of the uniform law (ignored for ``"gaussian"``).

    Returns:
        (x (nodes**dim, dim), weights (nodes**dim,)).

    Raises:
        ConfigError: d > 3, nodes < 1, or an unknown law.
    """
    if isinstance(dim, int | np.integer) and dim > 3:
        raise ConfigError(
            f"`data.population.method: quadrature` is for d <= 3; got d = {dim}. "
            "Use `closed_form` or `monte_carlo` instead."
        )
    _check_rule(dim, nodes)
    if law == "gaussian":
        return gauss_hermite(dim, nodes, dtype)
    if law == "uniform":
        return gauss_legendre(dim, nodes, low, high, dtype)
    raise ConfigError(
        f"`data.population.inputs` must be one of {', '.join(QUADRATURE_LAWS)} for "
        f"quadrature; got {law!r}."
    )
