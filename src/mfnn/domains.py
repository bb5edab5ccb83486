r"""Bounded parameter domains with normal reflection (docs/theory.md section 11).

The setting of "Mean field models for neural networks in teacher-student setting",
section 2.1: particles live in a bounded domain and are reflected at its boundary.

A particle that leaves the domain after a step is put back by *normal reflection*: it is
mirrored in the boundary, as a billiard ball would be. No particle is added, removed or
re-weighted, so the mass of the empirical measure (the particle count m) is conserved
exactly; only the positions of the particles that are outside change, and the particles
inside are returned bit for bit.

Both domains accept the particles in either layout of `mfnn.models.TwoLayer`:

* rows: one array (m, D), one particle per row;
* blocks: a tuple (or any pytree) of arrays with the particle index on the LAST axis,
  e.g. ``model.to_blocks(theta)`` = (a (m,), w^T (d, m), b (m,)). Particle j is the
  concatenation of ``leaf[..., j]`` over the leaves, in the order of `from_blocks`.

Overshoots of any size are folded back: the reflection is the triangle wave

    fold_[lo, hi](x) = lo + L - | ((x - lo) mod 2L) - L |,    L = hi - lo,

which is the identity on [lo, hi], the mirror image x -> 2 hi - x just above hi (and
x -> 2 lo - x just below lo), and the position of a billiard ball bouncing between lo and
hi for larger overshoots; it always lands in [lo, hi]. The result is inside up to
floating-point rounding (a few ulps of the bound); ``contains(..., atol)`` takes a
tolerance for that. ``reflect`` and ``contains`` are ``eqx.filter_jit``-ed (one compile
per shape when called directly) and trace as usual inside ``jit``/``scan``/``jvp``.

Example:
    >>> import jax.numpy as jnp
    >>> Ball(radius=1.0).reflect(jnp.array([[0.0, 1.5], [0.25, 0.5]])).tolist()
    [[0.0, 0.5], [0.25, 0.5]]
    >>> Box(low=-1.0, high=1.0).reflect(jnp.array([[1.25, -1.5, 3.5]])).tolist()
    [[0.75, -0.5, -0.5]]
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._typing import Array, Float
from .errors import ConfigError, did_you_mean

State = Any
"""Particles as rows (m, D) or a pytree of blocks with particles on the last axis."""


def _is_rows(state: State) -> bool:
    return isinstance(state, jax.Array | np.ndarray)


def _is_real(value) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def fold(x: Array, lo: float, hi: float) -> Array:
    r"""Reflect x into [lo, hi], folding overshoots of any size (a triangle wave).

        fold(x) = lo + L - | ((x - lo) mod 2L) - L |,    L = hi - lo.

    The identity on [lo, hi] up to rounding: callers keep the inside points with
    ``jnp.where`` so that they are untouched bit for bit.
    """
    length = hi - lo
    u = jnp.mod(x - lo, 2.0 * length)
    return lo + (length - jnp.abs(u - length))


def _per_particle_sum(state: State, values: list[Array]) -> Array:
    """Sum each leaf over its coordinate axes, then over leaves: one value per particle."""
    if _is_rows(state):
        return jnp.sum(values[0], axis=-1)
    total = None
    for v in values:
        s = jnp.sum(v, axis=tuple(range(v.ndim - 1))) if v.ndim > 1 else v
        total = s if total is None else total + s
    return total


def _leaves(state: State) -> list[Array]:
    leaves = [jnp.asarray(x) for x in jax.tree_util.tree_leaves(state)]
    if not leaves:
        raise ConfigError(
            "The particle state passed to a domain has no arrays; got an empty pytree."
        )
    return leaves


class Ball(eqx.Module):
    r"""The closed ball {theta : |theta - c| <= R} in the full parameter space R^D.

    The norm of particle j runs over ALL its coordinates (across all blocks in the block
    layout). A particle at distance r > R from the center c, on the ray
    e = (theta - c) / r, is reflected along the line through c:

        theta -> c + s(r) e,    s(r) = fold_[-R, R](r) = R - | ((r + R) mod 4R) - 2R |,

    so for R < r <= 3R it is the mirror image c + (2R - r) e (for r > 2R this has passed
    through the center and sits on the opposite side, at distance r - 2R), and larger
    overshoots keep bouncing between the two ends of the diameter: |s(r)| <= R always.
    Particles with r <= R are returned unchanged (bit for bit). At the sphere the
    Jacobian of the map is I - 2 n n^T, n = e: a velocity pushed through it (``jax.jvp``)
    is reflected in the tangent plane, as a billiard ball's is.

    Args:
        radius: R > 0 (`dynamics.domain.radius`).
        center: c, a (D,) array in row order (the layout of `from_blocks` for blocks), or
            None for the origin.

    Example:
        >>> import jax.numpy as jnp
        >>> Ball(radius=1.875).reflect(jnp.array([[3.0, 4.0]])).tolist()  # r = 5: s = -1.25
        [[-0.75, -1.0]]
    """

    radius: Float[Array, ""]
    center: Float[Array, " D"] | None = None
    kind: ClassVar[str] = "ball"

    def __post_init__(self):
        if not _is_real(self.radius) or not math.isfinite(self.radius) or self.radius <= 0:
            raise ConfigError(
                f"`dynamics.domain.radius` must be a finite number > 0; got {self.radius!r}."
            )
        # a traced scalar (weakly typed): runs that differ only in R share one compile
        object.__setattr__(self, "radius", jnp.asarray(float(self.radius)))
        if self.center is not None and not isinstance(self.center, jax.Array):
            try:
                center = jnp.asarray(self.center)
            except (TypeError, ValueError) as err:
                raise ConfigError(
                    "`dynamics.domain.center` must be a list of numbers (one per parameter "
                    f"coordinate) or null; got {self.center!r}."
                ) from err
            object.__setattr__(self, "center", center)

    def __check_init__(self):
        if self.center is not None and (
            self.center.ndim != 1 or not jnp.issubdtype(self.center.dtype, jnp.number)
        ):
            raise ConfigError(
                "`dynamics.domain.center` must be a 1-D list of numbers (one per parameter "
                f"coordinate) or null; got an array of shape {tuple(self.center.shape)} "
                f"and dtype {self.center.dtype}."
            )

    # ----------------------------------------------------------------- helpers
    def _centers(self, state: State) -> list[Array] | None:
        """c cut into the leaves' shapes and dtypes (broadcasting over particles), or None."""
        if self.center is None:
            return None
        leaves = _leaves(state)
        if _is_rows(state):
            shapes = [leaves[0].shape[-1:]]
        else:
            shapes = [x.shape[:-1] + (1,) for x in leaves]
        sizes = [math.prod(s) for s in shapes]
        if self.center.shape[0] != sum(sizes):
            raise ConfigError(
                f"`dynamics.domain.center` must have one entry per parameter coordinate "
                f"(D = {sum(sizes)}); got {self.center.shape[0]} entries."
            )
        out, start = [], 0
        for x, size, shape in zip(leaves, sizes, shapes, strict=True):
            out.append(self.center[start : start + size].reshape(shape).astype(x.dtype))
            start += size
        return out

    def _offsets(self, state: State) -> list[Array]:
        """theta - c, leaf by leaf (the leaves themselves when c is the origin)."""
        leaves, centers = _leaves(state), self._centers(state)
        if centers is None:
            return leaves
        return [x - c for x, c in zip(leaves, centers, strict=True)]

    def _squared_distance(self, state: State) -> Float[Array, " m"]:
        offsets = self._offsets(state)
        return _per_particle_sum(state, [y * y for y in offsets])

    def distance(self, state: State) -> Float[Array, " m"]:
        """r_j = |theta_j - c|, over all coordinates of particle j."""
        return jnp.sqrt(self._squared_distance(state))

    # -------------------------------------------------------------- interface
    @eqx.filter_jit
    def contains(self, state: State, atol: float = 0.0) -> jax.Array:
        """Boolean (m,): |theta_j - c|^2 <= (R + atol)^2 (the test `reflect` uses at atol = 0)."""
        return self._squared_distance(state) <= (self.radius + atol) ** 2

    @eqx.filter_jit
    def reflect(self, state: State) -> State:
        r"""Normal reflection into the ball; same layout, shapes and dtypes as ``state``.

            theta -> c + fold_[-R, R](r) (theta - c) / r    where r = |theta - c| > R,

        and theta unchanged where r <= R.
        """
        leaves, centers = _leaves(state), self._centers(state)
        offsets = self._offsets(state)
        r2 = _per_particle_sum(state, [y * y for y in offsets])
        outside = r2 > self.radius**2
        # r only where it is > R: no 0/0 (nor an infinite sqrt' at r = 0) in the dead branch
        r_safe = jnp.sqrt(jnp.where(outside, r2, jnp.ones_like(r2)))
        factor = fold(r_safe, -self.radius, self.radius) / r_safe
        if _is_rows(state):
            factor, outside = factor[..., None], outside[..., None]
        new = []
        for i, (x, y) in enumerate(zip(leaves, offsets, strict=True)):
            moved = factor * y if centers is None else centers[i] + factor * y
            new.append(jnp.where(outside, moved, x))
        if _is_rows(state):
            return new[0]
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(state), new)


class Box(eqx.Module):
    r"""The box [low, high]^D: every coordinate of every particle in [low, high].

    Coordinate-wise normal reflection (the layout does not matter):

        x -> 2 high - x   if high < x <= 2 high - low,
        x -> 2 low - x    if 2 low - high <= x < low,

    and in general x -> fold_[low, high](x) = low + L - | ((x - low) mod 2L) - L |,
    L = high - low, which folds an overshoot of any size periodically (period 2L) back
    into [low, high]. Coordinates in [low, high] are returned unchanged (bit for bit).

    Args:
        low: the lower bound of every coordinate (`dynamics.domain.low`).
        high: the upper bound of every coordinate (`dynamics.domain.high`), > low.

    Example:
        >>> import jax.numpy as jnp
        >>> Box(low=0.0, high=1.0).reflect(jnp.array([[1.25, -0.5, 2.25]])).tolist()
        [[0.75, 0.5, 0.25]]
    """

    low: Float[Array, ""]
    high: Float[Array, ""]
    kind: ClassVar[str] = "box"

    def __post_init__(self):
        for name, value in (("low", self.low), ("high", self.high)):
            if not _is_real(value) or not math.isfinite(value):
                raise ConfigError(
                    f"`dynamics.domain.{name}` must be a finite number; got {value!r}."
                )
        if not self.low < self.high:
            raise ConfigError(
                "`dynamics.domain.low` must be smaller than `dynamics.domain.high`; got "
                f"low = {self.low!r} and high = {self.high!r}."
            )
        # traced scalars (weakly typed): runs that differ only in the bounds share a compile
        object.__setattr__(self, "low", jnp.asarray(float(self.low)))
        object.__setattr__(self, "high", jnp.asarray(float(self.high)))

    @eqx.filter_jit
    def contains(self, state: State, atol: float = 0.0) -> jax.Array:
        """Boolean (m,): low - atol <= every coordinate of theta_j <= high + atol."""
        lo, hi = self.low - atol, self.high + atol
        leaves = _leaves(state)
        if _is_rows(state):
            return jnp.all((leaves[0] >= lo) & (leaves[0] <= hi), axis=-1)
        out = None
        for x in leaves:
            ok = (x >= lo) & (x <= hi)
            ok = jnp.all(ok, axis=tuple(range(x.ndim - 1))) if x.ndim > 1 else ok
            out = ok if out is None else out & ok
        return out

    @eqx.filter_jit
    def reflect(self, state: State) -> State:
        r"""Coordinate-wise normal reflection into [low, high]; same layout, shapes, dtypes.

        x -> fold_[low, high](x)   where x < low or x > high,  x unchanged otherwise.
        """

        def one(x):
            x = jnp.asarray(x)
            outside = (x < self.low) | (x > self.high)
            return jnp.where(outside, fold(x, self.low, self.high), x)

        if _is_rows(state):
            return one(state)
        return jax.tree_util.tree_map(one, state)


Domain = Ball | Box
DOMAINS: dict[str, type[Ball] | type[Box]] = {"ball": Ball, "box": Box}


def make_domain(kind: str, **kw) -> Ball | Box:
    """The domain named ``kind`` ("ball" or "box") built from its fields ``kw``.

    Example:
        >>> box = make_domain("box", low=-1, high=1)
        >>> type(box).__name__, float(box.low), float(box.high)
        ('Box', -1.0, 1.0)
    """
    if not isinstance(kind, str) or kind not in DOMAINS:
        raise ConfigError(
            f"`dynamics.domain.kind` must be one of {sorted(DOMAINS)}; got {kind!r}. "
            f"{did_you_mean(str(kind), DOMAINS)}"
        )
    cls = DOMAINS[kind]
    fields = [f.name for f in dataclasses.fields(cls)]
    for name in kw:
        if name not in fields:
            raise ConfigError(
                f"`dynamics.domain.{name}` is not a field of a {kind!r} domain; its fields "
                f"are {fields}. {did_you_mean(name, fields)}"
            )
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in kw
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(
            f"`dynamics.domain.{missing[0]}` is required for a {kind!r} domain; got none "
            f"(fields: {fields})."
        )
    return cls(**kw)


__all__ = ["Ball", "Box", "DOMAINS", "Domain", "fold", "make_domain"]
