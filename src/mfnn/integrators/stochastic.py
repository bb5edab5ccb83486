"""Integrators for the noisy and non-local dynamics: Euler-Maruyama and birth-death
splitting."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._typing import Key, Particles, Scalar
from ..dynamics.base import AbstractDiffusion, AbstractDynamics, AbstractJumps
from ..errors import ConfigError
from ..models.base import Blocks
from .base import AbstractIntegrator, axpy, refuse_jumps
from .explicit import Euler


class EulerMaruyama(AbstractIntegrator):
    r"""theta_{k+1} = theta_k + dt b(theta_k) + sigma_k sqrt(dt) xi_k, xi_k ~ N(0, I).

    b is the dynamics' drift (``velocity``), sigma_k = ``diffusion(k, dt)`` (for
    `Langevin`, sqrt(2 / beta(t_k))), xi_k from the step's own noise stream. For a
    dynamics without noise it is `Euler`. The noise is additive (sigma does not depend on
    theta), so the scheme has strong order 1 (not only 1/2) and weak order 1; the tests
    measure both slopes. A higher-order scheme would need the second derivatives of the
    first variation for a gain only in the drift's error: not worth it here.
    """

    order = 1

    def step(
        self, dynamics: AbstractDynamics, state: Blocks, step, dt, key: Key, k1=None
    ) -> tuple[Blocks, Scalar]:
        v, loss = dynamics.velocity_blocks(state, step, key) if k1 is None else k1
        new = axpy(state, dt, v)
        if not isinstance(dynamics, AbstractDiffusion):
            return new, loss
        sigma = dynamics.diffusion(step, dt)
        scale = (sigma * jnp.sqrt(dt)).astype(jax.tree.leaves(state)[0].dtype)
        return axpy(new, scale, dynamics.noise(state, step, key)), loss

    def drift_step(self, dynamics, theta: Particles, step, dt, key: Key, k1) -> Particles:
        return theta + dt * k1[0]

    def check(self, dynamics: AbstractDynamics) -> None:
        refuse_jumps(self, dynamics)


class BirthDeathSplitting(AbstractIntegrator):
    """A transport step of ``transport`` (`Euler`, `Heun` or `EulerMaruyama`) on the
    dynamics' ``inner`` transport, then its birth-death `jump` (Lie splitting).

    The splitting error is O(dt) per unit time, like Euler's."""

    transport: AbstractIntegrator = eqx.field(default_factory=Euler)

    order = 1

    def step(
        self, dynamics: AbstractJumps, state: Blocks, step, dt, key: Key, k1=None
    ) -> tuple[Blocks, Scalar]:
        new, loss = self.transport.step(dynamics.inner, state, step, dt, key, k1)
        model = dynamics.model
        rows = dynamics.jump(model.from_blocks(dynamics.constrain(new)), step, dt, key)
        return model.to_blocks(rows), loss

    def drift_step(self, dynamics: AbstractJumps, theta, step, dt, key: Key, k1) -> Particles:
        return self.transport.drift_step(dynamics.inner, theta, step, dt, key, k1)

    def check(self, dynamics: AbstractDynamics) -> None:
        if not isinstance(dynamics, AbstractJumps):
            raise ConfigError(
                "BirthDeathSplitting steps a jump dynamics (`BirthDeath`); got "
                f"{type(dynamics).__name__}: use its transport integrator "
                f"{type(self.transport).__name__} alone."
            )
        self.transport.check(dynamics.inner)
