"""The integrator interface: how a dynamics is stepped, and what it can step.

An integrator states its order and checks, by the type of the dynamics, that it can step
it (`check`), before anything compiles: a deterministic scheme refuses a noisy dynamics
(it would drop the noise), a transport scheme refuses jumps.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax

from .._typing import Key, Particles, Scalar
from ..dynamics.base import AbstractDiffusion, AbstractDynamics, AbstractJumps
from ..errors import ConfigError
from ..models.base import Blocks


class AbstractIntegrator(eqx.Module):
    """Steps a dynamics in the model's block layout.

    Attributes:
        order: the (strong) order of the global error in dt.
        solves_flow: ``drift_step`` is the exact flow over dt (to a tolerance), not a
            one-step scheme: the recorder then checks the energy identity with the
            trapezoid rule of the dissipation (error O(dt^2)) instead of its left point.
    """

    order: ClassVar[int]
    solves_flow: ClassVar[bool] = False

    @abc.abstractmethod
    def step(
        self, dynamics: AbstractDynamics, state: Blocks, step, dt, key: Key, k1=None
    ) -> tuple[Blocks, Scalar]:
        """One step from ``state`` (blocks); returns (the next state, the risk of the step's
        batch at ``state``). ``k1``: (v(state), risk) when the caller already has them."""

    @abc.abstractmethod
    def drift_step(
        self, dynamics: AbstractDynamics, theta: Particles, step, dt, key: Key, k1
    ) -> Particles:
        """The deterministic part of one step, on rows, from ``k1`` = (v(theta) as rows,
        risk): what the energy identity of the recorder measures (no noise, no jumps)."""

    @abc.abstractmethod
    def check(self, dynamics: AbstractDynamics) -> None:
        """Raise a `ConfigError` if this integrator cannot step ``dynamics``."""


def step_rows(integrator: AbstractIntegrator, dynamics: AbstractDynamics, theta, step, dt, key, k1):
    """``integrator.step`` on rows (m, D) from ``k1`` = (v as rows, risk): the `drift_step`
    of a deterministic scheme whose step is its whole drift (`Heun`, `Adaptive`)."""
    model = dynamics.model
    v, loss = k1
    new, _ = integrator.step(
        dynamics, model.to_blocks(theta), step, dt, key, (model.to_blocks(v), loss)
    )
    return model.from_blocks(new)


def axpy(state: Blocks, dt, v: Blocks) -> Blocks:
    """state + dt v, leaf by leaf."""
    return jax.tree.map(lambda t, u: t + dt * u, state, v)


def refuse_noise_and_jumps(integrator: AbstractIntegrator, dynamics: AbstractDynamics) -> None:
    """The check of a deterministic transport scheme (`Euler`, `Heun`)."""
    name = type(integrator).__name__
    if isinstance(dynamics, AbstractJumps):
        refuse_jumps(integrator, dynamics)
    if isinstance(dynamics, AbstractDiffusion):
        raise ConfigError(
            f"the dynamics has noise (Langevin) but the integrator {name} cannot take it: set "
            "`dynamics.integrator: euler_maruyama` (EulerMaruyama, or "
            "BirthDeathSplitting(EulerMaruyama()))."
        )


def refuse_jumps(integrator: AbstractIntegrator, dynamics: AbstractDynamics) -> None:
    if isinstance(dynamics, AbstractJumps):
        raise ConfigError(
            f"birth-death jumps need the splitting integrator: BirthDeathSplitting("
            f"{type(integrator).__name__}()) (`dynamics.birth_death` in a config does this)."
        )
