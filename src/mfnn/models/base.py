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
