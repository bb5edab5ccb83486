"""Explicit integrators for particle ODEs: Euler (gradient descent) and Heun."""

from __future__ import annotations

import equinox as eqx
import jax

from .._typing import Key, Particles, Scalar


def _axpy(theta, dt, v):
    """theta + dt v, for particles as one array or as a tuple of blocks."""
    return jax.tree.map(lambda t, u: t + dt * u, theta, v)


class Euler(eqx.Module):
    """theta_{k+1} = theta_k + dt v(theta_k): plain gradient descent with step dt.

    In mean_field this is theta_j <- theta_j - dt m dR/dtheta_j exactly; in ntk
    theta_j <- theta_j - dt dR/dtheta_j. Local error O(dt^2), global O(dt).
    """

    order = 1

    def step(
        self, dynamics, theta: Particles, step, dt, key: Key, k1=None
    ) -> tuple[Particles, Scalar]:
        """One step; returns (theta_{k+1}, risk of the step's batch at theta_k).

        ``k1``: (v(theta_k), risk), when the caller already has them (`simulate` reuses
        the full-batch velocity of a record for the next deterministic step).
        """
        v, loss = dynamics.velocity(theta, step, key) if k1 is None else k1
        return _axpy(theta, dt, v), loss


class Heun(eqx.Module):
    """Heun's method (explicit trapezoid), global error O(dt^2).

        k1 = v(theta_k), k2 = v(theta_k + dt k1), theta_{k+1} = theta_k + dt (k1 + k2) / 2.

    Both stages use the batch of step k, so with a stochastic sampler it is a
    predictor-corrector SGD step.
    """

    order = 2

    def step(
        self, dynamics, theta: Particles, step, dt, key: Key, k1=None
    ) -> tuple[Particles, Scalar]:
        """One step; ``k1`` as in `Euler.step` (the first stage, if already known)."""
        k1, loss = dynamics.velocity(theta, step, key) if k1 is None else k1
        k2, _ = dynamics.velocity(_axpy(theta, dt, k1), step, key)
        return jax.tree.map(lambda t, u, w: t + (0.5 * dt) * (u + w), theta, k1, k2), loss
