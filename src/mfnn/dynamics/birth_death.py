"""Birth-death dynamics (Rotskoff, Jelassi, Bruna and Vanden-Eijnden 2019)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .._typing import Array, Float, Inputs, Key, Particles, Scalar, Targets
from ..errors import ConfigError
from ..models.base import AbstractModel, Blocks
from ..objectives.base import AbstractObjective
from .base import AbstractJumps
from .gradient_flow import GradientFlow
from .langevin import Langevin

# the jumps of step k draw from fold_in(fold_in(key, JUMP_STREAM), k)
JUMP_STREAM = 0x6A756D70


class BirthDeath(AbstractJumps):
    r"""Transport plus birth-death of the particles: the PDE

        d/dt rho = div(rho grad dE/dmu) - alpha (dE/dmu - <dE/dmu>_rho) rho,

    at fixed m by operator splitting: a transport step of ``inner`` (a `GradientFlow`, or a
    `Langevin` for the noisy version), then `jump`. With g_j = Phi(theta_j) - mean_k
    Phi(theta_k) (Phi = dE/dmu at the particles), particle j has an event with probability
    1 - exp(-alpha |g_j| dt): if g_j > 0 it is killed and replaced by a copy of a uniformly
    chosen particle; if g_j < 0 it is duplicated onto a uniformly chosen particle (which
    is killed). m stays fixed. The expected change of the measure is
    -alpha dt (Phi - <Phi>) rho + O(dt^2), so in the mean-field limit

        dE/dt = -int |grad dE/dmu|^2 drho - alpha int (dE/dmu - <dE/dmu>)^2 drho,

    the energy identity with the jump term (`jump_dissipation`). At finite m a jump moves
    mass 1/m, and the quadratic part of E adds (1/2) int int U d(delta mu) d(delta mu) per
    event: an expected increase of order alpha mean_j |g_j| U(theta_j, theta_j) / m per unit
    time (not O(dt); measured in `birth_death_speedup`: small early, comparable to the
    jump dissipation once the loss is small, which is where resampling stops paying at
    finite width). `jump_dissipation` is the mean-field term only. Events of one step are
    applied at once from the pre-jump positions; two events on the same slot (probability
    O(dt^2)) keep the later write. With alpha = 0 no event happens and the dynamics is
    ``inner`` exactly. With Langevin noise the rate uses Phi alone (the entropy's
    (1/beta) log rho is left out: a density estimate per particle would be needed).

    Args:
        inner: the transport dynamics, a `GradientFlow` or a `Langevin` (mean_field
            scaling).
        rate: alpha >= 0 (traced: runs that differ only in alpha share one compile).
    """

    inner: GradientFlow | Langevin
    rate: Array

    def __init__(self, inner: GradientFlow | Langevin, rate: float = 1.0):
        r = rate
        if not (isinstance(r, int | float) and not isinstance(r, bool) and math.isfinite(r)):
            raise ConfigError(f"`dynamics.birth_death.rate` must be a number; got {r!r}.")
        if r < 0:
            raise ConfigError(
                f"`dynamics.birth_death.rate` (alpha) must be >= 0; got {r!r}. alpha = 0 is "
                "plain transport."
            )
        if not isinstance(inner, GradientFlow | Langevin):
            raise ConfigError(
                "birth-death wraps a `GradientFlow` or a `Langevin` (its transport); got "
                f"{type(inner).__name__}."
            )
        if not inner.model.scaling.mean_field:
            raise ConfigError(
                "birth-death is defined for `model.scaling: mean_field` with `model.alpha` 1; "
                f"got gamma = {inner.model.gamma}, alpha = {inner.model.scaling.alpha}."
            )
        self.inner, self.rate = inner, jnp.asarray(r, dtype=float)

    @property
    def model(self) -> AbstractModel:
        return self.inner.model

    @property
    def objective(self) -> AbstractObjective:
        return self.inner.objective

    @property
    def bounded(self) -> bool:
        return self.inner.bounded

    stochastic = True
    exact_steps = False

    def constrain(self, state: Blocks) -> Blocks:
        return self.inner.constrain(state)

    def velocity_blocks(self, state: Blocks, step, key: Key) -> tuple[Blocks, Scalar]:
        return self.inner.velocity_blocks(state, step, key)

    def full_velocity(self, theta: Particles) -> tuple[Particles, Scalar]:
        return self.inner.full_velocity(theta)

    def energy(self, theta: Particles) -> Scalar:
        return self.inner.energy(theta)

    def penalty(self, theta: Particles) -> Scalar:
        return self.inner.penalty(theta)

    def risk(self, theta: Particles, x: Inputs, y: Targets) -> Scalar:
        return self.inner.risk(theta, x, y)

    def dissipation(self, v: Particles) -> Scalar:
        return self.inner.dissipation(v)

    def exact(self) -> BirthDeath:
        return eqx.tree_at(lambda d: d.inner, self, self.inner.exact())

    def centered_potential(self, theta: Particles) -> Float[Array, " m"]:
        """g_j = Phi(theta_j) - mean_k Phi(theta_k), Phi = dE/dmu[mu_m(theta)] (exact
        objective: the full data set, closed form or quadrature)."""
        phi = self.objective.first_variation(self.model, theta, theta)
        return phi - jnp.mean(phi)

    def jump_dissipation(self, theta: Particles) -> Scalar:
        """alpha int (dE/dmu - <dE/dmu>)^2 drho = alpha mean_j g_j^2."""
        g = self.centered_potential(theta)
        return self.rate.astype(g.dtype) * jnp.mean(g * g)

    def jump(self, theta: Particles, step, dt, key: Key) -> Particles:
        """One birth-death step on the rows ``theta`` (m, D) (see the class docstring);
        with alpha = 0 nothing is computed (a branch taken at run time)."""
        return jax.lax.cond(
            self.rate > 0, lambda th: self._jump(th, step, dt, key), lambda th: th, theta
        )

    def _jump(self, theta: Particles, step, dt, key: Key) -> Particles:
        m = theta.shape[0]
        g = self.centered_potential(theta)
        k = jax.random.fold_in(jax.random.fold_in(key, JUMP_STREAM), step)
        k_event, k_partner = jax.random.split(k)
        prob = -jnp.expm1(-self.rate.astype(g.dtype) * jnp.abs(g) * dt)
        event = jax.random.uniform(k_event, (m,), theta.dtype) < prob
        partner = jax.random.randint(k_partner, (m,), 0, m)
        kill, dup = event & (g > 0), event & (g < 0)
        idx = jnp.arange(m)
        new = theta[jnp.where(kill, partner, idx)]  # a killed particle becomes a copy
        target = jnp.where(dup, partner, m)  # a duplicated one overwrites its partner
        return new.at[target].set(theta, mode="drop")
