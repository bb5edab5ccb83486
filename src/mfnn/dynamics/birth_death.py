"""Birth-death (Rotskoff-Jelassi-Bruna-Vanden-Eijnden; seed 001 eq. 11, THEORY.md s.4)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .._typing import Array, Float, Key, Particles, Scalar
from ..errors import ConfigError

# the jumps of step k draw from fold_in(fold_in(key, JUMP_STREAM), k)
JUMP_STREAM = 0x6A756D70


class BirthDeath(eqx.Module):
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
        inner: the transport dynamics (mean_field scaling).
        rate: alpha >= 0.
    """

    inner: eqx.Module
    rate: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        r = self.rate
        if not (isinstance(r, int | float) and not isinstance(r, bool) and math.isfinite(r)):
            raise ConfigError(f"`dynamics.birth_death.rate` must be a number; got {r!r}.")
        if r < 0:
            raise ConfigError(
                f"`dynamics.birth_death.rate` (alpha) must be >= 0; got {r!r}. alpha = 0 is "
                "plain transport."
            )
        if self.inner.model.gamma != 1.0:
            raise ConfigError(
                "birth-death is defined for `model.scaling: mean_field`; got gamma = "
                f"{self.inner.model.gamma}."
            )

    @property
    def model(self):
        return self.inner.model

    @property
    def objective(self):
        return self.inner.objective

    @property
    def sampler(self):
        return self.inner.sampler

    @property
    def domain(self):
        return self.inner.domain

    @property
    def stochastic(self) -> bool:
        return bool(self.inner.stochastic) or self.rate > 0

    @property
    def has_noise(self) -> bool:
        return bool(getattr(self.inner, "has_noise", False))

    @property
    def temperature(self):
        return getattr(self.inner, "temperature", None)

    def beta(self, t):
        return self.inner.beta(t)

    def constrain(self, state):
        return self.inner.constrain(state)

    def velocity(self, theta: Particles, step, key: Key):
        return self.inner.velocity(theta, step, key)

    def velocity_blocks(self, blocks, step, key: Key):
        return self.inner.velocity_blocks(blocks, step, key)

    def full_velocity(self, theta: Particles):
        return self.inner.full_velocity(theta)

    def diffusion(self, step, dt):
        fn = getattr(self.inner, "diffusion", None)
        return None if fn is None else fn(step, dt)

    def noise(self, state, step, key: Key):
        return self.inner.noise(state, step, key)

    def energy(self, theta: Particles) -> Scalar:
        return self.inner.energy(theta)

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
        return self.rate * jnp.mean(g * g)

    def jump(self, theta: Particles, step, dt, key: Key) -> Particles:
        """One birth-death step on the rows ``theta`` (m, D) (see the class docstring)."""
        if self.rate == 0:
            return theta
        m = theta.shape[0]
        g = self.centered_potential(theta)
        k = jax.random.fold_in(jax.random.fold_in(key, JUMP_STREAM), step)
        k_event, k_partner = jax.random.split(k)
        prob = -jnp.expm1(-self.rate * jnp.abs(g) * dt)
        event = jax.random.uniform(k_event, (m,), theta.dtype) < prob
        partner = jax.random.randint(k_partner, (m,), 0, m)
        kill, dup = event & (g > 0), event & (g < 0)
        idx = jnp.arange(m)
        new = theta[jnp.where(kill, partner, idx)]  # a killed particle becomes a copy
        target = jnp.where(dup, partner, m)  # a duplicated one overwrites its partner
        return new.at[target].set(theta, mode="drop")
