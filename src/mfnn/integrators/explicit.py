"""Explicit integrators for particle ODEs: Euler (gradient descent) and Heun."""

from __future__ import annotations

import jax

from .._typing import Key, Particles, Scalar
from ..dynamics.base import AbstractDynamics
from ..models.base import Blocks
from .base import AbstractIntegrator, axpy, refuse_noise_and_jumps, step_rows


class Euler(AbstractIntegrator):
    """theta_{k+1} = theta_k + dt v(theta_k): plain gradient descent with step dt.

    In mean_field this is theta_j <- theta_j - dt m dR/dtheta_j exactly; in ntk
    theta_j <- theta_j - dt dR/dtheta_j. Local error O(dt^2), global O(dt).
    """

    order = 1

    def step(
        self, dynamics: AbstractDynamics, state: Blocks, step, dt, key: Key, k1=None
    ) -> tuple[Blocks, Scalar]:
        v, loss = dynamics.velocity_blocks(state, step, key) if k1 is None else k1
        return axpy(state, dt, v), loss

    def drift_step(self, dynamics, theta: Particles, step, dt, key: Key, k1) -> Particles:
        return theta + dt * k1[0]

    def check(self, dynamics: AbstractDynamics) -> None:
        refuse_noise_and_jumps(self, dynamics)


class Heun(AbstractIntegrator):
    """Heun's method (explicit trapezoid), global error O(dt^2).

        k1 = v(theta_k), k2 = v(theta_k + dt k1), theta_{k+1} = theta_k + dt (k1 + k2) / 2.

    Both stages use the batch of step k, so with a stochastic sampler it is a
    predictor-corrector SGD step.
    """

    order = 2

    def step(
        self, dynamics: AbstractDynamics, state: Blocks, step, dt, key: Key, k1=None
    ) -> tuple[Blocks, Scalar]:
        k1, loss = dynamics.velocity_blocks(state, step, key) if k1 is None else k1
        k2, _ = dynamics.velocity_blocks(axpy(state, dt, k1), step, key)
        return jax.tree.map(lambda t, u, w: t + (0.5 * dt) * (u + w), state, k1, k2), loss

    def drift_step(self, dynamics, theta: Particles, step, dt, key: Key, k1) -> Particles:
        return step_rows(self, dynamics, theta, step, dt, key, k1)

    def check(self, dynamics: AbstractDynamics) -> None:
        refuse_noise_and_jumps(self, dynamics)
