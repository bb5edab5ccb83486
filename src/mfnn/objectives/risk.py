"""Empirical square-loss risk, its first variation and the particle velocity."""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._typing import Array, Float, Inputs, Particles, Scalar, Targets
from ..errors import ConfigError
from ..models.base import (
    AbstractModel,
    AbstractUnitModel,
    Blocks,
    features_pullback,
    row_tile,
    tiled_pullback,
)
from ..targets import DataSet
from .base import AbstractObjective


def nonnegative(value, field: str) -> Array:
    """``value`` as a traced scalar array (a new value does not recompile a run), after
    checking it is a finite number >= 0 (a `ConfigError` naming ``field`` otherwise)."""
    ok = isinstance(value, int | float | jax.Array) and not isinstance(value, bool)
    if ok and isinstance(value, int | float):  # a number: checked without JAX
        ok = math.isfinite(value) and value >= 0
    elif ok:
        ok = bool(jnp.isfinite(value)) and bool(value >= 0)
    if not ok:
        raise ConfigError(f"`{field}` must be a finite number >= 0; got {value!r}.")
    return jnp.asarray(value, dtype=float)


class EmpiricalRisk(AbstractObjective):
    r"""Square-loss risk on a data set, with optional L2 weight.

        R(mu) = (1/(2n)) sum_i (f(x_i; mu) - y_i)^2,
        E(mu) = R(mu) + (lambda/2) int |theta|^2 dmu    (lambda = ``l2``).

    First variation (mean_field; Mei, Montanari and Nguyen 2018, eq. (9)):

        dE/dmu(theta) = E_x[(f(x; mu) - y(x)) phi(x; theta)] + (lambda/2) |theta|^2,

    and the velocity of particle j is v(theta_j) = -grad_theta dE/dmu(theta_j)
    = -m dE/dtheta_j. For a general scaling gamma the velocity is
    -m^(2 gamma - 1) dE/dtheta_j, and `first_variation` is rescaled,

        Phi(theta) = m^(gamma - 1) E_x[(f - y) phi(x; theta)]
                     + m^(2 gamma - 2) (lambda/2) |theta|^2,

    so that v = -grad Phi in every scaling (Phi = dE/dmu when gamma = 1). The powers of
    m come from the model's `Scaling`. Frozen blocks (``model.trainable``) get zero
    velocity. ``l2`` is a traced array: runs that differ only in lambda share one compile.

    Args:
        data: training set x (n, d), y (n,); `risk` and `energy` use it unless a batch is
            passed.
        l2: lambda >= 0.
        fused: use the unit model's hand-fused pullback (default); False forces the
            autodiff one (`features_pullback`), which it is tested against.
        tile: rows of the data per tile of the velocity and risk passes
            (`weighted_velocity`); None (default) chooses from (n, m, d, dtype)
            (`mfnn.models.base.row_tile`), a count >= n turns tiling off.
    """

    data: DataSet
    l2: Array
    fused: bool = eqx.field(static=True)
    tile: int | None = eqx.field(static=True)

    def __init__(self, data: DataSet, l2: float = 0.0, fused: bool = True, tile: int | None = None):
        self.data = data
        self.l2 = nonnegative(l2, "objective.l2")
        self.fused = fused
        ok = tile is None or (isinstance(tile, int | np.integer) and not isinstance(tile, bool))
        if not ok or (tile is not None and tile < 1):
            raise ConfigError(f"`objective.tile` must be a positive integer or null; got {tile!r}.")
        self.tile = None if tile is None else int(tile)

    def _batch(self, x, y):
        return (self.data.x, self.data.y) if x is None else (x, y)

    def risk(self, model, theta: Particles, x: Inputs | None = None, y=None) -> Scalar:
        """R = (1/(2n)) sum_i |f(x_i) - y_i|^2 on the data (or the given batch); the norm
        is over the output's components when f is vector-valued (a ResNet's X^L)."""
        x, y = self._batch(x, y)
        return weighted_risk(model, theta, x, y, None, self.tile)

    def first_variation(
        self, model, theta: Particles, points: Float[Array, "k D"], x=None, y=None
    ) -> Float[Array, " k"]:
        """Phi(theta') at each row of ``points``, with mu = mu_m(theta) held fixed."""
        _unit(model, "first_variation")
        x, y = self._batch(x, y)
        m = theta.shape[0]
        residual = model.predict(theta, x) - y
        phi = model.features(points, x)  # (n, k)
        value = model.scaling.field(m) * (residual @ phi) / x.shape[0]
        l2 = self.l2.astype(points.dtype)
        return value + model.scaling.confinement(m) * 0.5 * l2 * jnp.sum(points**2, -1)

    def velocity_blocks(self, model, blocks: Blocks, x=None, y=None) -> tuple[Blocks, Scalar]:
        """(v as blocks, R on the batch): one pullback of sum_j Phi(theta_j) with the
        residual held fixed (mu frozen) gives every particle's velocity."""
        x, y = self._batch(x, y)
        return weighted_velocity(model, blocks, x, y, None, self.l2, self.fused, self.tile)


def _unit(model, what: str) -> None:
    if not isinstance(model, AbstractUnitModel):
        raise ConfigError(
            f"`{what}` of the square loss needs a network that averages a unit "
            f"(`AbstractUnitModel`, e.g. `TwoLayer`); got {type(model).__name__}."
        )


def weighted_velocity(
    model: AbstractModel,
    blocks: Blocks,
    x: Inputs,
    y: Targets,
    weights: Float[Array, " n"] | None,
    l2: Array,
    fused: bool = True,
    tile: int | None = None,
) -> tuple[Blocks, Scalar]:
    r"""-grad Phi at every particle for R = (1/2) sum_i omega_i (f(x_i) - y_i)^2.

    ``weights`` omega (n,) sum to 1 (a quadrature rule); None means omega_i = 1/n (a data
    set). For a unit model the residual is held fixed and one pullback of
    sum_j Phi(theta_j) gives every particle's velocity:

        v_j = -m^(2 gamma - 1) dE/dtheta_j = -m^(gamma - 1) sum_i omega_i (f_i - y_i)
              grad phi(x_i; theta_j) - lambda m^(2 gamma - 2) theta_j.

    The sum over i runs over tiles of rows (`mfnn.models.base.tiled_pullback`): each
    tile's forward pass, residual and share of every v_j in one pass while its (tile, m)
    pre-activations are in cache. ``tile`` is the rows per tile, None for `row_tile`'s
    choice from (n, m, d, dtype); ``tile >= n`` is the unblocked pass.

    For any other model it is the gradient of the energy by autodiff, times
    -m^(2 gamma - 1).

    Returns (v in the block layout, R).
    """
    m = model.width(blocks)
    if not isinstance(model, AbstractUnitModel):
        return energy_velocity(
            model, blocks, l2, lambda theta: weighted_risk(model, theta, x, y, weights)
        )
    n = x.shape[0]
    if tile is None:
        tile = row_tile(n, m, jnp.dtype(x.dtype).itemsize, d=x.shape[-1])
    field = model.scaling.field(m)

    def weight_of(f, rows):
        yt, omega = rows
        residual = f - yt
        omega = 1.0 / n if omega is None else omega
        return residual * omega * field, jnp.sum(omega * residual**2)

    if fused:
        pullback_of = model.predict_and_pullback_blocks
    else:
        pullback_of = functools.partial(features_pullback, model)
    g, sum_sq = tiled_pullback(pullback_of, blocks, x, (y, weights), weight_of, tile)
    c = l2 * model.scaling.confinement(m)
    v = jax.tree.map(lambda gi, p: -gi - c.astype(p.dtype) * p, g, blocks)
    return model.freeze(v), 0.5 * sum_sq


def square_norms(residual: Float[Array, "n ..."]) -> Float[Array, " n"]:
    """|r_i|^2 per sample: r_i^2 for scalar outputs, the sum over the components of a
    vector output (n, k)."""
    return (
        residual**2
        if residual.ndim == 1
        else jnp.sum(residual**2, axis=tuple(range(1, residual.ndim)))
    )


def weighted_risk(model, theta, x, y, weights, tile: int | None = None):
    """(1/2) sum_i omega_i |f(x_i) - y_i|^2 (omega_i = 1/n for None); for a unit model the
    forward pass runs in the block layout over tiles of rows (`tiled_pullback` with an
    empty pullback), so the (n, m) features are never formed whole. The risk of
    `EmpiricalRisk`, and of `PopulationRisk` by Monte Carlo or quadrature."""
    n = x.shape[0]

    def weight_of(f, rows):
        yt, omega = rows
        sq = square_norms(f - yt)
        return None, jnp.sum(sq / n if omega is None else omega * sq)

    if not isinstance(model, AbstractUnitModel):
        return 0.5 * weight_of(model.predict(theta, x), (y, weights))[1]
    if tile is None:
        tile = row_tile(n, theta.shape[0], jnp.dtype(x.dtype).itemsize, d=x.shape[-1])

    def forward(blocks, xt):  # the step's own forward pass; its pullback is never built
        return model.predict_and_pullback_blocks(blocks, xt)[0], lambda weight: ()

    # in the block layout (w^T (d, m) contiguous): x @ w^T in the fast GEMM orientation;
    # rows (m, D) would put a transposed operand in every tile's GEMM (on CPU the forward
    # pass alone then cost more than a whole step)
    blocks = model.to_blocks(theta)
    _, sum_sq = tiled_pullback(forward, blocks, x, (y, weights), weight_of, tile)
    return 0.5 * sum_sq


def energy_velocity(model: AbstractModel, blocks: Blocks, l2: Array, risk) -> tuple[Blocks, Scalar]:
    """v = -m^(2 gamma - 1) grad_theta E by autodiff of E = risk(theta) + (lambda/2)
    mean_j |theta_j|^2, in the block layout, and the risk: the velocity of any model."""

    def energy(p):
        theta = model.from_blocks(p)
        r = risk(theta)
        return r + 0.5 * l2.astype(theta.dtype) * jnp.mean(jnp.sum(theta**2, axis=-1)), r

    (_, loss), grad = jax.value_and_grad(energy, has_aux=True)(blocks)
    scale = model.velocity_scale(model.width(blocks))
    return model.freeze(jax.tree.map(lambda g: -scale * g, grad)), loss
