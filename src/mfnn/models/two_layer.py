"""The two-layer network as a measure over neurons."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._typing import Array, Float, Inputs, Key, Particles
from ..errors import ConfigError
from .activations import check_activation_scale, get_activation, scaled_activation
from .base import AbstractUnitModel, transposed
from .scaling import Scaling

BLOCKS = ("a", "w", "b")


class TwoLayer(AbstractUnitModel):
    r"""Two-layer network f_m(x) = m^(-gamma) sum_j a_j sigma(w_j . x + b_j).

    A particle is a row theta_j = (a_j, w_j, b_j) of an (m, D) array, D = 1 + d + 1,
    with the `a` column absent when ``train_output=False`` (then a == 1: fixed output
    weights, as in the teacher-student models of "Mean field models for neural networks in
    teacher-student setting") and the `b` column absent when ``bias=False``. The unit is

        phi(x; theta) = a * sigma(w . x + b).

    The scaling sets gamma (mean_field: 1, ntk: 1/2, general: gamma in [1/2, 1]) and with
    it the output factor m^(-gamma) and the time scaling m^(2 gamma - 1) of the velocity
    (`mfnn.models.scaling`), so f moves O(1) in O(1) time in every scaling.

    Args:
        d: input dimension.
        activation: one of relu, softplus, tanh, sigmoid, arctan, erf, gaussian
            (exp(-z^2/2)), quadratic.
        scaling: "mean_field", "ntk", "general" (then ``gamma`` is required) or a
            `Scaling`.
        gamma: exponent for the general scaling.
        bias: whether the unit has a bias b.
        train_output: whether a is a parameter (False fixes a == 1).
        trainable: the blocks that move ("a", "w", "b"); frozen blocks keep their
            initial values (e.g. ``("a",)`` gives random features). Default: all present.
        alpha: the lazy-training output factor of Chizat, Oyallon and Bach (2019): the model
            is alpha f_m, its time scaled by 1/alpha^2 (`mfnn.models.scaling`).
        activation_scale: s > 0, the unit uses sigma(s z) (`scaled_activation`): erf at
            s = 1/sqrt 2 is the g(z) = erf(z/sqrt 2) of Saad and Solla (1995).

    Example:
        >>> import jax.numpy as jnp
        >>> net = TwoLayer(d=1, activation="relu", scaling="mean_field", bias=True)
        >>> theta = jnp.array([[1.0, 1.0, 0.0], [2.0, -1.0, 0.0]])  # (a, w, b) rows
        >>> net.predict(theta, jnp.array([[0.5], [-0.5]])).tolist()
        [0.25, 0.5]
    """

    d: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    scaling: Scaling
    bias: bool = eqx.field(static=True)
    train_output: bool = eqx.field(static=True)
    trainable: tuple[str, ...] = eqx.field(static=True)
    activation_scale: float = eqx.field(static=True)

    def __init__(
        self,
        d: int,
        activation: str = "relu",
        scaling: str | float | Scaling = "mean_field",
        gamma: float | None = None,
        bias: bool = True,
        train_output: bool = True,
        trainable: tuple[str, ...] | None = None,
        activation_scale: float = 1.0,
        alpha: float = 1.0,
    ):
        self.d = d
        self.activation_scale = check_activation_scale(activation_scale)
        self.activation = activation
        self.scaling = Scaling.of(scaling, gamma, alpha)
        self.bias = bias
        self.train_output = train_output
        self.trainable = self.present_blocks if trainable is None else tuple(trainable)

    def __check_init__(self):
        if not isinstance(self.d, int | np.integer) or self.d < 1:
            raise ConfigError(
                f"`model.d` (input dimension) must be a positive integer; got {self.d!r}."
            )
        get_activation(self.activation)
        for blk in self.trainable:
            if blk not in BLOCKS:
                raise ConfigError(
                    f"`model.trainable` entries must be among {list(BLOCKS)}; got {blk!r}."
                )
            if blk not in self.present_blocks:
                why = "`model.train_output` is false" if blk == "a" else "`model.bias` is false"
                raise ConfigError(
                    f"`model.trainable` lists {blk!r}, but the model has no `{blk}` block "
                    f"because {why}; remove {blk!r} from `model.trainable`."
                )

    # ----------------------------------------------------------------- layout
    @property
    def present_blocks(self) -> tuple[str, ...]:
        out = ("a",) if self.train_output else ()
        out += ("w",)
        return out + (("b",) if self.bias else ())

    @property
    def dim(self) -> int:
        """D, the number of columns of a particle row."""
        return int(self.train_output) + self.d + int(self.bias)

    def block_slices(self) -> dict[str, slice]:
        """Column slices of each present block in a particle row."""
        out, start = {}, 0
        for blk in self.present_blocks:
            size = self.d if blk == "w" else 1
            out[blk] = slice(start, start + size)
            start += size
        return out

    def trainable_columns(self) -> np.ndarray:
        """The column indices (static, NumPy) of the trainable blocks in a particle row."""
        cols = [
            np.arange(sl.start, sl.stop)
            for blk, sl in self.block_slices().items()
            if blk in self.trainable
        ]
        return np.concatenate(cols) if cols else np.zeros(0, int)

    def split(self, theta: Particles) -> tuple[Array, Array, Array]:
        """Rows (m, D) -> (a (m,), w (m, d), b (m,)); a == 1 / b == 0 where absent."""
        sl = self.block_slices()
        ones = jnp.ones(theta.shape[:-1], theta.dtype)
        a = theta[..., sl["a"].start] if "a" in sl else ones
        w = theta[..., sl["w"]]
        b = theta[..., sl["b"].start] if "b" in sl else jnp.zeros_like(ones)
        return a, w, b

    def to_blocks(self, theta: Particles) -> tuple[Array, ...]:
        """Rows (m, D) -> the present blocks with particles along the last axis:
        a (m,), w^T (d, m), b (m,) (absent blocks are left out).

        The layout `simulate` steps in (see `mfnn.dynamics.Blocks`): each block is its own
        contiguous array and the two GEMMs of a step run in their fast orientation
        (x @ w^T as (n, d) x (d, m), the pullback as x^T dz).
        """
        cols = theta.T
        return tuple(
            cols[sl] if blk == "w" else cols[sl.start] for blk, sl in self.block_slices().items()
        )

    def from_blocks(self, blocks: tuple[Array, ...]) -> Particles:
        """Inverse of `to_blocks`: the blocks back to rows (m, D)."""
        rows = [blk if blk.ndim == 2 else blk[None, :] for blk in blocks]
        return jnp.concatenate(rows, axis=0).T

    def unpack_blocks(self, blocks: tuple[Array, ...]) -> tuple[Array, Array, Array]:
        """`to_blocks` output -> (a (m,), w^T (d, m), b (m,)); a == 1, b == 0 where absent."""
        named = dict(zip(self.present_blocks, blocks, strict=True))
        w_t = named["w"]
        ones = jnp.ones(w_t.shape[1:], w_t.dtype)
        return named.get("a", ones), w_t, named.get("b", jnp.zeros_like(ones))

    def join(self, a: Array | None, w: Array, b: Array | None) -> Particles:
        """Inverse of `split` (blocks the model does not have are dropped)."""
        cols = []
        if self.train_output:
            cols.append(jnp.asarray(a)[..., None])
        cols.append(jnp.asarray(w))
        if self.bias:
            cols.append(jnp.asarray(b)[..., None])
        return jnp.concatenate(cols, axis=-1)

    # ------------------------------------------------------------- functions
    def sigma(self, z: Array) -> Array:
        """sigma(s z), s = ``activation_scale``."""
        return scaled_activation(self.activation, self.activation_scale)(z)

    def preactivation(self, theta: Particles, x: Inputs) -> Float[Array, "n m"]:
        """z_ij = w_j . x_i + b_j."""
        _, w_t, b = self.unpack_blocks(self.to_blocks(theta))
        return x @ w_t + b[None, :]

    def features(self, theta: Particles, x: Inputs) -> Float[Array, "n m"]:
        """phi(x_i; theta_j) = a_j sigma(w_j . x_i + b_j), an (n, m) matrix."""
        a, _, _ = self.split(theta)
        return self.sigma(self.preactivation(theta, x)) * a[None, :]

    def predict_and_pullback(self, theta: Particles, x: Inputs):
        """`predict_and_pullback_blocks` for particles as rows (m, D): G is (m, D)."""
        f, pullback = self.predict_and_pullback_blocks(self.to_blocks(theta), x)
        return f, lambda weight: self.from_blocks(pullback(weight))

    def predict_and_pullback_blocks(self, blocks: tuple[Array, ...], x: Inputs):
        r"""f_m(x) and the map weight -> G, G_j = sum_i weight_i grad_theta phi(x_i; theta_j).

        Particles and G are in the block layout of `to_blocks` (a (m,), w^T (d, m),
        b (m,)). The hand-fused form of ``jax.vjp(features)`` for this unit (two GEMMs):

            z = x w^T + b,  s = sigma(z),  s' = sigma'(z)    (n, m)
            G_a = s^T weight,   dz_ij = weight_i s'_ij a_j,
            G_w = x^T dz,       G_b = 1^T dz.

        With a bias, b rides in the GEMMs as one more input column of ones: z = [x, 1]
        [w^T; b] and [G_w; G_b] = [x, 1]^T dz, which saves a pass over the (n, m) arrays
        for the bias and one for the column sum of dz. sigma' comes from a forward-mode
        derivative of sigma, so every activation gets it exactly; it is tested equal to
        the autodiff pullback (`features_pullback`). The objectives call this on tiles of
        rows (`mfnn.models.base.tiled_pullback`), so n here is often a tile.

        Returns:
            (f (n,), pullback: (n,) -> blocks)
        """
        a, w_t, b = self.unpack_blocks(blocks)
        sigma = self.sigma
        if self.bias:
            x = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
            w_t = jnp.concatenate([w_t, b[None, :]], axis=0)
        z = x @ w_t
        s = sigma(z)
        f = self.output_scale(w_t.shape[1]) * (s @ a)

        def pullback(weight):
            out = []
            if self.train_output:
                out.append(weight @ s)
            # s' from z here, not stored in the forward pass: it fuses into dz
            ds = jax.jvp(sigma, (z,), (jnp.ones_like(z),))[1]
            dz = (weight[:, None] * ds) * a[None, :]
            g = transposed(x) @ dz
            if self.bias:
                out += [g[:-1], g[-1]]
            else:
                out.append(g)
            return tuple(out)

        return f, pullback

    # ------------------------------------------------------------ frozen blocks
    def freeze(self, v):
        """Zero the velocity of the blocks ``trainable`` leaves out (rows or blocks)."""
        if set(self.trainable) == set(self.present_blocks):
            return v
        if isinstance(v, tuple):
            return tuple(
                vi if blk in self.trainable else jnp.zeros_like(vi)
                for blk, vi in zip(self.present_blocks, v, strict=True)
            )
        return v * self.mask(v.dtype)

    # ----------------------------------------------------------- particle files
    def particle_arrays(self, theta: Particles) -> dict[str, np.ndarray]:
        """``a`` (m,) (ones when absent), ``w`` (m, d), and ``b`` (m,) with a bias."""
        a, w, b = self.split(jnp.asarray(theta))
        out = {"a": np.asarray(a), "w": np.asarray(w)}
        if self.bias:
            out["b"] = np.asarray(b)
        return out

    def from_arrays(self, arrays: dict[str, np.ndarray], where: str, dtype) -> Particles:
        """Rows from ``w`` (m, d) and, when the model has them, ``a`` (m,) and ``b`` (m,)."""
        if "w" not in arrays:
            raise ConfigError(f"{where} has no array `w` (m, d); it has {sorted(arrays)}.")
        w = np.asarray(arrays["w"])
        if w.ndim == 1:
            w = w[:, None]
        if w.ndim != 2 or w.shape[1] != self.d:
            raise ConfigError(
                f"{where}: `w` must have shape (m, {self.d}) to match the input dimension; "
                f"got {tuple(np.shape(arrays['w']))}."
            )
        m = w.shape[0]
        blocks: dict[str, Any] = {"w": jnp.asarray(w, dtype)}
        for blk, needed in (("a", self.train_output), ("b", self.bias)):
            blocks[blk] = None
            if not needed:
                continue
            if blk not in arrays:
                flag = "train_output" if blk == "a" else "bias"
                raise ConfigError(
                    f"{where} has no `{blk}` ({m},), which the model needs ({flag} is on)."
                )
            arr = np.asarray(arrays[blk])
            arr = arr.reshape(-1) if arr.ndim > 1 else arr
            if arr.shape != (m,):
                raise ConfigError(
                    f"{where}: `{blk}` must have shape ({m},) like `w`; "
                    f"got {tuple(np.shape(arrays[blk]))}."
                )
            blocks[blk] = jnp.asarray(arr, dtype)
        return self.join(blocks["a"], blocks["w"], blocks["b"])

    def sample(self, key: Key, m: int, laws: dict[str, Any], dtype) -> Particles:
        """m i.i.d. particles; block number i of (a, w, b) draws from ``fold_in(key, i)``
        (so a model without `a` draws w and b as one with it does)."""
        blocks: dict[str, Any] = {}
        for i, blk in enumerate(BLOCKS):
            blocks[blk] = None
            if blk not in self.present_blocks:
                continue
            if blk not in laws:
                raise ConfigError(
                    f"`model.init.{blk}` is missing: every block needs an initial law."
                )
            shape = (m, self.d) if blk == "w" else (m,)
            blocks[blk] = laws[blk].sample(jax.random.fold_in(key, i), shape, dtype)
        return self.join(blocks["a"], blocks["w"], blocks["b"])
