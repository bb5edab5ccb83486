r"""The dynamics interface: a velocity field on particles, and what a run records of it.

A dynamics computes, never steps (an integrator steps it). Three kinds, told apart by
type so that an integrator can refuse what it cannot step before anything compiles:

- `AbstractDynamics`: a drift d theta_j / dt = v(theta_j) (an ODE), e.g. the Wasserstein
  gradient flow `GradientFlow` and its tracer / replica wrappers;
- `AbstractDiffusion`: a drift plus additive noise sigma(t) dB with sigma = sqrt(2/beta(t))
  (an SDE), e.g. `Langevin` (and McKean-Vlasov, a Langevin with a drift scale);
- `AbstractJumps`: a transport dynamics ``inner`` (either kind above) plus a jump process
  that moves mass between particles, e.g. `BirthDeath`.

Particles are stepped in the model's block layout (`mfnn.models.AbstractModel.to_blocks`);
``velocity_blocks`` works there, ``velocity`` on rows.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp

from .._typing import Inputs, Key, Particles, Scalar, Targets
from ..models.base import AbstractModel, Blocks


class AbstractDynamics(eqx.Module):
    """A velocity field on the particles of ``model`` (an ODE), and the energy it
    decreases: what the recorder measures (energy, its dissipation, the risk)."""

    model: eqx.AbstractVar[AbstractModel]

    @abc.abstractmethod
    def velocity_blocks(self, state: Blocks, step, key: Key) -> tuple[Blocks, Scalar]:
        """(the drift of step ``step`` in the block layout, the risk of the step's batch)."""

    @abc.abstractmethod
    def full_velocity(self, theta: Particles) -> tuple[Particles, Scalar]:
        """(the drift on the exact objective, as rows (m, D), the exact risk)."""

    @abc.abstractmethod
    def exact(self) -> "AbstractDynamics":
        """The same dynamics on the exact objective (full data set, closed form or
        quadrature): what records measure."""

    @abc.abstractmethod
    def energy(self, theta: Particles) -> Scalar:
        """E(mu_m(theta)), the functional the drift decreases."""

    @abc.abstractmethod
    def penalty(self, theta: Particles) -> Scalar:
        """The L2 part (lambda/2) int |theta|^2 dmu of the energy."""

    @abc.abstractmethod
    def risk(self, theta: Particles, x: Inputs, y: Targets) -> Scalar:
        """The risk on a given data set (the recorder's test loss)."""

    @abc.abstractmethod
    def dissipation(self, v: Particles) -> Scalar:
        """-dE/dt along the drift ``v`` (rows, as `full_velocity` returns it)."""

    @abc.abstractmethod
    def constrain(self, state: Blocks) -> Blocks:
        """Put particles that left a bounded domain back (identity without a domain)."""

    @property
    @abc.abstractmethod
    def bounded(self) -> bool:
        """Whether `constrain` can move a particle (a bounded parameter domain)."""

    @property
    @abc.abstractmethod
    def stochastic(self) -> bool:
        """Whether a step draws randomness (minibatches, fresh samples, noise, jumps)."""

    @property
    @abc.abstractmethod
    def exact_steps(self) -> bool:
        """Whether each step's drift is the exact (full-batch) one with no randomness, so
        that a step may start from the velocity a record computed."""

    # ------------------------------------------------------ concrete, final
    def velocity(self, theta: Particles, step, key: Key) -> tuple[Particles, Scalar]:
        """`velocity_blocks` on rows: (v (m, D), the risk of the step's batch).

        Compiled as one program (called eagerly, a velocity would dispatch its hundreds of
        primitives one by one, each compiled on first use: 5-10x slower for a closed-form
        population risk); ``step`` is passed as an array so that a new step does not
        compile again.
        """
        return _velocity_rows(self, theta, jnp.asarray(step), key)


@eqx.filter_jit
def _velocity_rows(dynamics: AbstractDynamics, theta: Particles, step, key: Key):
    v, loss = dynamics.velocity_blocks(dynamics.model.to_blocks(theta), step, key)
    return dynamics.model.from_blocks(v), loss


class AbstractDiffusion(AbstractDynamics):
    """A drift plus additive noise: d theta = v dt + sigma(t) dB, sigma = sqrt(2 / beta(t)).

    A step's `noise` must depend only on (key, step) and the shapes of the state: the
    compiled loop draws a block of steps' noise at once (`noises`, vmapped over the steps)
    and hands each step its own through `given_noise` (a copy whose `noise` returns it).
    """

    @abc.abstractmethod
    def diffusion(self, step, dt) -> Scalar:
        """sigma_k, the noise amplitude of step ``step``."""

    @abc.abstractmethod
    def noise(self, state: Blocks, step, key: Key) -> Blocks:
        """Standard normal increments shaped like ``state`` (zero on frozen blocks)."""

    @abc.abstractmethod
    def beta(self, t) -> Scalar:
        """The effective inverse temperature of the free energy at time t."""

    @abc.abstractmethod
    def given_noise(self, xi: Blocks) -> "AbstractDiffusion":
        """The same dynamics whose `noise` is ``xi`` at any step: the noise of one step,
        drawn beforehand (`noises`; the compiled loop draws a block of steps' noise at once,
        `mfnn.loop.prefetch_steps`)."""

    # ------------------------------------------------------ concrete, final
    def noises(self, state: Blocks, steps, key: Key) -> Blocks:
        """The noise of U consecutive steps ``steps`` (possibly traced) in one vectorised
        draw: blocks with a leading axis U whose entry u is exactly
        ``noise(state, steps[u], key)`` (a step's noise depends only on (key, step) and the
        shapes of ``state``)."""
        return jax.vmap(lambda k: self.noise(state, k, key))(jnp.asarray(steps))


class AbstractJumps(AbstractDynamics):
    """A transport dynamics ``inner`` followed, each step, by jumps between particles."""

    inner: eqx.AbstractVar[AbstractDynamics]

    @abc.abstractmethod
    def jump(self, theta: Particles, step, dt, key: Key) -> Particles:
        """One jump step on the rows ``theta`` (m, D)."""

    @abc.abstractmethod
    def jump_dissipation(self, theta: Particles) -> Scalar:
        """The jump part of -dE/dt at ``theta``."""


def diffusion_of(dynamics: AbstractDynamics) -> AbstractDiffusion | None:
    """The noisy part of a dynamics: itself if it is a diffusion, the transport of a jump
    dynamics if that is one, else None (an ODE)."""
    if isinstance(dynamics, AbstractJumps):
        dynamics = dynamics.inner
    return dynamics if isinstance(dynamics, AbstractDiffusion) else None
