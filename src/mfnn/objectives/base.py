r"""The objective interface: an energy E(mu) over particle measures and its first variation.

    E(mu) = R(mu) + (lambda/2) int |theta|^2 dmu,

R a risk (empirical, population, or zero), lambda = ``l2``. An objective gives the energy,
the rescaled first variation Phi (= dE/dmu in the mean-field scaling) at any points, and
the velocity v_j = -m^(2 gamma - 1) dE/dtheta_j of every particle at once, in the model's
block layout. The model's scaling (`mfnn.models.scaling`) supplies every power of m.
"""

import abc

import equinox as eqx
import jax.numpy as jnp

from .._typing import Array, Float, Inputs, Particles, Scalar, Targets
from ..models.base import AbstractModel, Blocks


class AbstractObjective(eqx.Module):
    """An energy E = R + (lambda/2) int |theta|^2 dmu of the particle measure.

    ``x, y`` arguments are a batch (minibatch or fresh samples of online SGD); None means
    the objective's own exact risk (the whole data set, a closed form, a quadrature).
    """

    l2: eqx.AbstractVar[Array]

    @abc.abstractmethod
    def risk(
        self, model: AbstractModel, theta: Particles, x: Inputs | None = None, y=None
    ) -> Scalar:
        """R(mu_m(theta)), on the batch (x, y) if one is given."""

    @abc.abstractmethod
    def first_variation(
        self, model: AbstractModel, theta: Particles, points: Float[Array, "k D"]
    ) -> Float[Array, " k"]:
        """Phi(theta') at each row of ``points``, with mu = mu_m(theta) held fixed, rescaled
        so that v = -grad Phi in every scaling (Phi = dE/dmu when gamma = 1)."""

    @abc.abstractmethod
    def velocity_blocks(
        self, model: AbstractModel, blocks: Blocks, x: Inputs | None = None, y=None
    ) -> tuple[Blocks, Scalar]:
        """(v_j = -m^(2 gamma - 1) dE/dtheta_j in the block layout, R on the batch)."""

    # ------------------------------------------------------ concrete, final
    def penalty(self, theta: Particles) -> Scalar:
        """(lambda/2) (1/m) sum_j |theta_j|^2."""
        l2 = jnp.asarray(self.l2).astype(theta.dtype)
        return 0.5 * l2 * jnp.mean(jnp.sum(theta**2, axis=-1))

    def energy(
        self, model: AbstractModel, theta: Particles, x: Inputs | None = None, y=None
    ) -> Scalar:
        """E = R + (lambda/2) mean_j |theta_j|^2, the functional the flow decreases."""
        return self.risk(model, theta, x, y) + self.penalty(theta)

    def velocity(
        self, model: AbstractModel, theta: Particles, x: Inputs | None = None, y=None
    ) -> tuple[Particles, Scalar]:
        """`velocity_blocks` for particles as rows: (v (m, D), R), compiled as one program
        (eager, the pullback would dispatch and compile its primitives one by one)."""
        return _velocity_rows(self, model, theta, x, y)


@eqx.filter_jit
def _velocity_rows(objective: AbstractObjective, model: AbstractModel, theta, x, y):
    v, loss = objective.velocity_blocks(model, model.to_blocks(theta), x, y)
    return model.from_blocks(v), loss


Batch = tuple[Inputs, Targets] | tuple[None, None]
