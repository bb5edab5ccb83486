r"""The model interface: what a particle is and how a measure of particles makes a function.

`AbstractModel` is what every role above it (objectives, dynamics, integrators, the
recorder, run directories) relies on; `AbstractUnitModel` adds the structure of a network
that averages a unit, f_m(x) = m^(-gamma) sum_j phi(x; theta_j), which the square-loss
objectives use for their first variation and a fused velocity. A new model subclasses one
of them and fits the rest of mfnn unchanged. The equinox pattern holds: these classes are
abstract, models are final, and a concrete method here is not overridden.

The particle state has two layouts: rows (m, D), one particle a row (files, diagnostics,
the recorder), and the model's block layout (`to_blocks`), a pytree whose leaves carry the
particle index on their LAST axis, which the compiled loop steps in (a model chooses it for
fast GEMMs: `TwoLayer` keeps w as w^T (d, m)).
"""

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._typing import Array, Float, Inputs, Key, Particles, Scalar
from .scaling import Scaling

Blocks = Any
"""Particles in a model's block layout: a pytree, the particle index on each leaf's last axis."""


class AbstractModel(eqx.Module):
    """A width-m network as a measure over its particles.

    Concrete models define the particle layout (`dim`, `to_blocks`, `from_blocks`, the
    trainable columns), the function of the particles (`predict`), particle files and
    initial draws. The scaling (`scaling`, a `Scaling`) owns every power of m.
    """

    scaling: eqx.AbstractVar[Scaling]

    # ----------------------------------------------------------------- layout
    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """D, the number of columns of a particle row."""

    @abc.abstractmethod
    def trainable_columns(self) -> np.ndarray:
        """The (static, NumPy) column indices of a row that move; the others are frozen."""

    @abc.abstractmethod
    def to_blocks(self, theta: Particles) -> Blocks:
        """Rows (m, D) -> the block layout (particles on each leaf's last axis)."""

    @abc.abstractmethod
    def from_blocks(self, blocks: Blocks) -> Particles:
        """The block layout -> rows (m, D) (inverse of `to_blocks`)."""

    @abc.abstractmethod
    def freeze(self, v):
        """Zero the frozen columns of a velocity, as rows (m, D) or as blocks."""

    # --------------------------------------------------------------- function
    @abc.abstractmethod
    def predict(self, theta: Particles, x: Inputs) -> Float[Array, " n"]:
        """f_m(x_i) for the particles ``theta`` (m, D) at the inputs x (n, d)."""

    # ---------------------------------------------------------- particle files
    @abc.abstractmethod
    def particle_arrays(self, theta: Particles) -> dict[str, np.ndarray]:
        """The named arrays of a particle file (npz) holding ``theta``."""

    @abc.abstractmethod
    def from_arrays(self, arrays: dict[str, np.ndarray], where: str, dtype) -> Particles:
        """Rows (m, D) from the named arrays of a particle file; a `ConfigError` naming
        ``where`` (the field and the file) when an array is missing or misshapen."""

    @abc.abstractmethod
    def sample(self, key: Key, m: int, laws: dict[str, Any], dtype) -> Particles:
        """m i.i.d. particles, each block drawn from ``laws[block]`` (`mfnn.measure` laws)."""

    # ------------------------------------------------------ concrete, final
    @property
    def gamma(self) -> Scalar:
        """The scaling's exponent gamma (f_m = m^(-gamma) sum_j phi)."""
        return self.scaling.gamma

    def output_scale(self, m: int) -> Scalar:
        """m^(-gamma): the factor in front of sum_j phi."""
        return self.scaling.output(m)

    def velocity_scale(self, m: int) -> Scalar:
        """m^(2 gamma - 1): the time scaling of the particle velocity."""
        return self.scaling.velocity(m)

    def width(self, blocks: Blocks) -> int:
        """m, the number of particles of a state in the block layout."""
        return int(jax.tree.leaves(blocks)[0].shape[-1])

    def mask(self, dtype=jnp.float32) -> Float[Array, " D"]:
        """1 on the trainable columns of a row, 0 on the frozen ones."""
        mask = np.zeros(self.dim)
        mask[self.trainable_columns()] = 1.0
        return jnp.asarray(mask, dtype=dtype)


class AbstractUnitModel(AbstractModel):
    r"""A network that averages a unit: f_m(x) = m^(-gamma) sum_j phi(x; theta_j).

    For such models the first variation of the square loss is explicit,

        dR/dmu(theta) = E_x[(f(x) - y(x)) phi(x; theta)],

    and one pullback of the features gives every particle's velocity at once
    (`predict_and_pullback_blocks`).
    """

    @abc.abstractmethod
    def features(self, theta: Particles, x: Inputs) -> Float[Array, "n m"]:
        """phi(x_i; theta_j), an (n, m) matrix."""

    @abc.abstractmethod
    def predict_and_pullback_blocks(
        self, blocks: Blocks, x: Inputs
    ) -> tuple[Float[Array, " n"], Callable[[Float[Array, " n"]], Blocks]]:
        """f_m(x) and the map weight (n,) -> G (blocks), G_j = sum_i weight_i grad phi(x_i;
        theta_j). A model without a hand-fused form returns `features_pullback`."""

    def predict(self, theta: Particles, x: Inputs) -> Float[Array, " n"]:
        """f_m(x) = m^(-gamma) sum_j phi(x; theta_j)."""
        return self.output_scale(theta.shape[0]) * jnp.sum(self.features(theta, x), axis=1)


def features_pullback(model: AbstractUnitModel, blocks: Blocks, x: Inputs):
    """`AbstractUnitModel.predict_and_pullback_blocks` by autodiff: ``jax.vjp`` of the
    features, for any unit model (the reference a hand-fused form is tested against)."""
    phi, vjp = jax.vjp(lambda p: model.features(model.from_blocks(p), x), blocks)
    f = model.output_scale(phi.shape[1]) * jnp.sum(phi, axis=1)

    def pullback(weight):
        return vjp(jnp.broadcast_to(weight[:, None], phi.shape).astype(phi.dtype))[0]

    return f, pullback


def transposed(x: Array) -> Array:
    """x^T, as a contiguous array on the CPU: the operand of a GEMM such as x^T dz.

    Left to itself XLA folds the transpose into the GEMM, and on the CPU a GEMM whose
    left operand is stored transposed ran 1.6x slower (x (1024, 17), dz (1024, 1024):
    630 us against 380 us), unless x is a compile-time constant, whose transpose XLA
    stores once. An optimization barrier makes it write x^T out ((d, n): small next to
    dz) in every case; off the CPU the transpose is left to the GEMM."""
    if jax.default_backend() != "cpu":
        return x.T
    return lax.optimization_barrier(x.T)


TILE_BYTES = 1 << 22
"""Cache budget of one (tile, m) array of a tiled pass (`row_tile`): 4 MiB. Measured on a
2-core AMD EPYC (1 MiB L2 per core, 32 MiB L3) at the three `bench_step.py` sizes: tiles
of 2-8 MiB ran the step 1.5-3x faster than the unblocked pass for (n, m) arrays of 64 MiB
and more, and the unblocked pass was as fast or faster up to 8 MiB (`row_tile` takes it
there)."""

MIN_TILE = 64
"""Fewest rows per tile: below this the per-tile GEMM calls (each re-reads the (d, m)
weights and the (d, m) accumulator) cost more than the cache saves."""


def row_tile(
    n: int,
    m: int,
    itemsize: int,
    d: int = 1,
    budget: int = TILE_BYTES,
    platform: str | None = None,
) -> int:
    """Rows per tile of a pass over n data rows (inputs in R^d) against m particles (a
    static choice) on ``platform`` (default: JAX's default backend).

    Off the CPU (GPU, TPU) it is n: the (n, m) arrays stream from device memory at rates
    where a loop of small per-tile kernels would cost more than it saves (not tuned
    there). On the CPU, the largest count t whose (t, m) pre-activations fit ``budget``
    bytes, but at least `MIN_TILE` and 4 (d + 1) rounded up to a multiple of 8 (each
    tile reads and writes the (d + 1, m) weights and accumulator: at t >= 4 (d + 1) that
    traffic is at most a quarter of the tile's own); n itself (one tile, no loop: the
    unblocked pass) when the whole (n, m) array fits twice the budget (two tiles or
    fewer: at 1024 x 1024 float64, 8 MiB, the unblocked pass ran 1.2x faster than two
    tiles, at 16 MiB four tiles ran 1.2-1.7x faster than one) or the tile would not be
    smaller than n.

    Example (on the CPU):
        >>> row_tile(1024, 1024, 4, d=16, platform="cpu")
        1024
        >>> row_tile(1024, 1024, 8, d=16, platform="cpu")
        1024
        >>> row_tile(2048, 2048, 4, d=16, platform="cpu")
        512
        >>> row_tile(16384, 8192, 4, d=64, platform="cpu")
        264
        >>> row_tile(16384, 8192, 4, d=64, platform="gpu")
        16384
    """
    platform = jax.default_backend() if platform is None else platform
    if platform != "cpu" or n * m * itemsize <= 2 * budget:
        return n
    floor = max(MIN_TILE, -(-4 * (d + 1) // 8) * 8)
    tile = max(floor, budget // (m * itemsize))
    return n if tile >= n else int(tile)


def tiled_pullback(pullback_of, blocks: Blocks, x: Inputs, rows, weight_of, tile: int):
    r"""G = sum_i weight_i grad_theta phi(x_i; theta_j) with a weight that depends on f(x_i),
    in one pass over tiles of the data rows.

    f_i = m^(-gamma) sum_j phi(x_i; theta_j) needs every particle but only row i, so a
    tile I of rows gives f_I, the weight on I and I's share of every particle's G while
    its (|I|, m) pre-activations are in cache: G = sum_I G_I, a `lax.fori_loop` over the
    n // tile full tiles with an accumulator, then the n mod tile rows left (static
    shapes). ``tile >= n`` is the unblocked pass (one tile, no loop). The sum over tiles
    reorders the sums over rows: results equal the unblocked pass to round-off.

    Args:
        pullback_of: (blocks, x (t, d)) -> (f (t,), weight (t,) -> G), e.g. a unit
            model's `predict_and_pullback_blocks`.
        blocks: the particles in the model's block layout.
        x: (n, d) inputs.
        rows: a pytree of per-row arrays (leading axis n, e.g. targets and quadrature
            weights) tiled with x; None leaves stay None.
        weight_of: (f (t,), rows of the tile) -> (weight (t,), aux), aux a pytree summed
            over the tiles (e.g. the tile's share of the loss).
        tile: rows per tile (`row_tile`).

    Returns:
        (G in the block layout, the sum of aux over the tiles).
    """
    n = x.shape[0]

    def one(xt, rt):
        f, pullback = pullback_of(blocks, xt)
        weight, aux = weight_of(f, rt)
        return pullback(weight), aux

    if tile >= n:
        return one(x, rows)
    count = n // tile

    def body(i, acc):
        start = i * tile
        xt = lax.dynamic_slice_in_dim(x, start, tile)
        rt = jax.tree.map(lambda r: lax.dynamic_slice_in_dim(r, start, tile), rows)
        return jax.tree.map(jnp.add, acc, one(xt, rt))

    shapes = jax.eval_shape(one, x[:tile], jax.tree.map(lambda r: r[:tile], rows))
    acc = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    acc = lax.fori_loop(0, count, body, acc)
    if count * tile < n:
        rest = count * tile
        tail = one(x[rest:], jax.tree.map(lambda r: r[rest:], rows))
        acc = jax.tree.map(jnp.add, acc, tail)
    return acc
