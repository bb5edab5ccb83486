"""Integrators for the noisy and non-local dynamics: Euler-Maruyama and birth-death
splitting (THEORY.md sections 3 and 4)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._typing import Key, Particles, Scalar
from .explicit import Euler, _axpy


class EulerMaruyama(eqx.Module):
    r"""theta_{k+1} = theta_k + dt b(theta_k) + sigma_k sqrt(dt) xi_k, xi_k ~ N(0, I).

    b is the dynamics' drift (``velocity``), sigma_k = ``diffusion(k, dt)`` (for
    `Langevin`, sqrt(2 / beta(t_k))), xi_k from the step's own noise stream. For a
    dynamics without noise it is `Euler`. The noise is additive (sigma does not depend on
    theta), so the scheme has strong order 1 (not only 1/2) and weak order 1; the tests
    measure both slopes. A higher-order scheme would need the second derivatives of the
    first variation for a gain only in the drift's error: not worth it here.
    """

    order = 1
    takes_noise = True

    def step(
        self, dynamics, theta: Particles, step, dt, key: Key, k1=None
    ) -> tuple[Particles, Scalar]:
        """One step; returns (theta_{k+1}, risk of the step's batch at theta_k)."""
        v, loss = dynamics.velocity(theta, step, key) if k1 is None else k1
        new = _axpy(theta, dt, v)
        sigma = dynamics.diffusion(step, dt) if hasattr(dynamics, "diffusion") else None
        if sigma is None:
            return new, loss
        scale = (sigma * jnp.sqrt(dt)).astype(jax.tree.leaves(theta)[0].dtype)
        return _axpy(new, scale, dynamics.noise(theta, step, key)), loss


class BirthDeathSplitting(eqx.Module):
    """A transport step of ``transport`` (`Euler`, `Heun` or `EulerMaruyama`), then the
    dynamics' birth-death `jump` (Lie splitting; THEORY.md section 4).

    The splitting error is O(dt) per unit time, like Euler's."""

    transport: eqx.Module = Euler()

    order = 1

    @property
    def takes_noise(self) -> bool:
        return bool(getattr(self.transport, "takes_noise", False))

    def step(self, dynamics, theta, step, dt, key: Key, k1=None):
        new, loss = self.transport.step(dynamics, theta, step, dt, key, k1)
        new = dynamics.constrain(new) if hasattr(dynamics, "constrain") else new
        return dynamics.jump(new, step, dt, key), loss
