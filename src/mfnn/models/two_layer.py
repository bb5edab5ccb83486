"""The two-layer network as a measure over neurons (THEORY.md section 1)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._typing import Array, Float, Inputs, Particles
from ..errors import ConfigError, did_you_mean
from .activations import ACTIVATIONS, get_activation

SCALINGS = {"mean_field": 1.0, "ntk": 0.5}
BLOCKS = ("a", "w", "b")


def scaling_gamma(scaling: str | float, gamma: float | None = None) -> float:
    """The exponent gamma of f_m = m^(-gamma) sum_j phi for a named or general scaling."""
    if isinstance(scaling, bool):
        scaling = str(scaling)
    if isinstance(scaling, int | float):
        scaling, gamma = "general", float(scaling)
    if scaling in SCALINGS:
        if gamma is not None and not math.isclose(gamma, SCALINGS[scaling]):
            raise ConfigError(
                f"`model.gamma` is {gamma} but `model.scaling` is {scaling!r}, whose gamma is "
                f"{SCALINGS[scaling]}; drop `model.gamma` or set `model.scaling: general`."
            )
        return SCALINGS[scaling]
    if scaling == "general":
        if gamma is None or not 0.5 <= float(gamma) <= 1.0:
            raise ConfigError(
                "`model.gamma` must be a number in [0.5, 1] when `model.scaling` is 'general'; "
                f"got {gamma!r}. gamma = 1 is mean_field, gamma = 0.5 is ntk."
            )
        return float(gamma)
    raise ConfigError(
        f"`model.scaling` must be 'mean_field', 'ntk' or 'general' (with `model.gamma`); "
        f"got {scaling!r}. {did_you_mean(str(scaling), [*SCALINGS, 'general'])}"
    )


class TwoLayer(eqx.Module):
    r"""Two-layer network f_m(x) = m^(-gamma) sum_j a_j sigma(w_j . x + b_j).

    A particle is a row theta_j = (a_j, w_j, b_j) of an (m, D) array, D = 1 + d + 1,
    with the `a` column absent when ``train_output=False`` (then a == 1, seed 002 eq. 1)
    and the `b` column absent when ``bias=False``. The unit is

        phi(x; theta) = a * sigma(w . x + b).

    The scaling sets gamma (mean_field: 1, ntk: 1/2, general: gamma in [1/2, 1]) and with
    it the time scaling of THEORY.md section 1: the gradient-flow velocity of particle j is
    ``-m^(2 gamma - 1) dR/dtheta_j``, so f moves O(1) in O(1) time in every scaling.

    Args:
        d: input dimension.
        activation: one of relu, softplus, tanh, sigmoid, arctan, erf, gaussian
            (exp(-z^2/2)), quadratic.
        scaling: "mean_field", "ntk" or "general" (then ``gamma`` is required).
        gamma: exponent for the general scaling.
        bias: whether the unit has a bias b.
        train_output: whether a is a parameter (False fixes a == 1).
        trainable: the blocks that move ("a", "w", "b"); frozen blocks keep their
            initial values (e.g. ``("a",)`` gives random features).

    Example:
        >>> import jax.numpy as jnp
        >>> net = TwoLayer(d=1, activation="relu", scaling="mean_field", bias=True)
        >>> theta = jnp.array([[1.0, 1.0, 0.0], [2.0, -1.0, 0.0]])  # (a, w, b) rows
        >>> net.predict(theta, jnp.array([[0.5], [-0.5]])).tolist()
        [0.25, 0.5]
    """

    d: int = eqx.field(static=True)
    activation: str = eqx.field(static=True, default="relu")
    scaling: str = eqx.field(static=True, default="mean_field")
    gamma: float = eqx.field(static=True, default=None)  # type: ignore[assignment]
    bias: bool = eqx.field(static=True, default=True)
    train_output: bool = eqx.field(static=True, default=True)
    trainable: tuple[str, ...] = eqx.field(static=True, default=None)  # type: ignore[assignment]

    def __post_init__(self):
        object.__setattr__(self, "gamma", scaling_gamma(self.scaling, self.gamma))
        if not isinstance(self.scaling, str) or self.scaling not in SCALINGS:
            object.__setattr__(self, "scaling", "general")
        present = self.present_blocks
        trainable = present if self.trainable is None else tuple(self.trainable)
        object.__setattr__(self, "trainable", trainable)

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

    def mask(self, dtype=jnp.float32) -> Float[Array, " D"]:
        """1 on the columns of trainable blocks, 0 on frozen ones."""
        mask = np.zeros(self.dim)
        mask[self.trainable_columns()] = 1.0
        return jnp.asarray(mask, dtype=dtype)

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
    def output_scale(self, m: int) -> float:
        """m^(-gamma): the factor in front of sum_j phi."""
        return float(m) ** (-self.gamma)

    def velocity_scale(self, m: int) -> float:
        """m^(2 gamma - 1): the time scaling of the particle velocity."""
        return float(m) ** (2.0 * self.gamma - 1.0)

    def preactivation(self, theta: Particles, x: Inputs) -> Float[Array, "n m"]:
        """z_ij = w_j . x_i + b_j."""
        _, w_t, b = self.unpack_blocks(self.to_blocks(theta))
        return x @ w_t + b[None, :]

    def features(self, theta: Particles, x: Inputs) -> Float[Array, "n m"]:
        """phi(x_i; theta_j) = a_j sigma(w_j . x_i + b_j), an (n, m) matrix."""
        a, _, _ = self.split(theta)
        return ACTIVATIONS[self.activation](self.preactivation(theta, x)) * a[None, :]

    def predict(self, theta: Particles, x: Inputs) -> Float[Array, " n"]:
        """f_m(x) = m^(-gamma) sum_j phi(x; theta_j)."""
        return self.output_scale(theta.shape[0]) * jnp.sum(self.features(theta, x), axis=1)

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

        sigma' comes from a forward-mode derivative of sigma, so every activation gets it
        exactly; `EmpiricalRisk.velocity` is tested equal to the autodiff pullback.

        Returns:
            (f (n,), pullback: (n,) -> blocks)
        """
        a, w_t, b = self.unpack_blocks(blocks)
        sigma = ACTIVATIONS[self.activation]
        z = x @ w_t + b[None, :]
        s = sigma(z)
        f = self.output_scale(w_t.shape[1]) * (s @ a)

        def pullback(weight):
            out = []
            if self.train_output:
                out.append(weight @ s)
            # s' from z here, not stored in the forward pass: it fuses into dz
            ds = jax.jvp(sigma, (z,), (jnp.ones_like(z),))[1]
            dz = (weight[:, None] * ds) * a[None, :]
            out.append(x.T @ dz)
            if self.bias:
                out.append(jnp.sum(dz, axis=0))
            return tuple(out)

        return f, pullback
