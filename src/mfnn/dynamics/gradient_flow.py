"""Wasserstein gradient flow of the particles (THEORY.md section 2)."""

from __future__ import annotations

import equinox as eqx

from .._typing import Key, Particles, Scalar


class GradientFlow(eqx.Module):
    r"""Velocity field of the mean-field gradient flow, d theta_j/dt = v(theta_j).

        v(theta) = -grad_theta dE/dmu(theta)         (mean_field; E = risk + L2 weight)
                 = -m^(2 gamma - 1) dE/dtheta_j       (any scaling gamma)

    The flow is the Wasserstein gradient flow d/dt mu_t = div(mu_t grad dE/dmu).
    A dynamics only computes velocities; an integrator steps them. With a stochastic
    ``sampler`` (`Minibatch`, `Online`) the velocity is that of the batch of the step, and
    stepping it with `Euler` is (minibatch / online) SGD.

    With a bounded ``domain`` (`mfnn.domains.Ball` or `Box`, THEORY.md section 5) every
    step is followed by the normal reflection of the particles that left it; the particle
    count (the mass) is conserved exactly.

    Args:
        model: e.g. `TwoLayer`.
        objective: e.g. `EmpiricalRisk`, `PopulationRisk`.
        sampler: the batch of each step (`FullBatch`, `Exact`, `Minibatch`, `Online`).
        domain: optional bounded parameter domain.
    """

    model: eqx.Module
    objective: eqx.Module
    sampler: eqx.Module
    domain: eqx.Module | None = None

    def constrain(self, state):
        """Reflect the particles (rows or blocks) that left the domain back into it."""
        return state if self.domain is None else self.domain.reflect(state)

    has_noise = False

    @property
    def stochastic(self) -> bool:
        return bool(self.sampler.stochastic)

    def exact(self) -> GradientFlow:
        """The same flow on the exact objective (full batch, closed form or quadrature):
        what records measure."""
        from ..objectives.sampling import Exact

        return eqx.tree_at(lambda d: d.sampler, self, Exact())

    def velocity(self, theta: Particles, step, key: Key) -> tuple[Particles, Scalar]:
        """(v (m, D), risk of the step's batch)."""
        x, y = self.sampler(key, step)
        return self.objective.velocity(self.model, theta, x, y)

    def velocity_blocks(self, blocks, step, key: Key):
        """`velocity` in the model's block layout (``model.to_blocks``): (v, risk).

        `simulate` steps in this layout (see `Blocks`)."""
        x, y = self.sampler(key, step)
        return self.objective.velocity_blocks(self.model, blocks, x, y)

    def full_velocity(self, theta: Particles) -> tuple[Particles, Scalar]:
        """The velocity on the full training set (for diagnostics)."""
        return self.objective.velocity(self.model, theta)

    def energy(self, theta: Particles) -> Scalar:
        return self.objective.energy(self.model, theta)

    def dissipation(self, v: Particles) -> Scalar:
        """-dE/dt along the flow: m^(1 - 2 gamma) sum_j |v_j|^2 (= mean_j |v_j|^2 in mean_field)."""
        m = v.shape[0]
        return m ** (1.0 - 2.0 * self.model.gamma) * (v * v).sum()


class Blocks(eqx.Module):
    r"""A dynamics acting on the particles in its model's block layout.

    The same vector field in another memory layout: for `TwoLayer` the state is the
    tuple ``model.to_blocks(theta)`` = (a (m,), w^T (d, m), b (m,)) and
    ``decode(Blocks(dyn).velocity(encode(theta), k, key)[0]) == dyn.velocity(theta, k,
    key)[0]``. `simulate` carries the particles this way between records: each block is
    a separate contiguous array and the GEMMs of a step run in their fast orientation
    (2-3x faster on CPU at d = 16..64, and on GPU the packed (m, D) or (D, m) array
    forces slow GEMMs). A dynamics or model without a block layout is stepped in rows.
    """

    dynamics: eqx.Module

    @property
    def native(self) -> bool:
        model = getattr(self.dynamics, "model", None)
        return hasattr(self.dynamics, "velocity_blocks") and hasattr(model, "to_blocks")

    @property
    def stochastic(self) -> bool:
        return bool(getattr(self.dynamics, "stochastic", False))

    def encode(self, theta: Particles):
        """Rows (m, D) -> the state the loop carries."""
        return self.dynamics.model.to_blocks(theta) if self.native else theta

    def decode(self, state) -> Particles:
        """The carried state -> rows (m, D)."""
        return self.dynamics.model.from_blocks(state) if self.native else state

    def constrain(self, state):
        fn = getattr(self.dynamics, "constrain", None)
        return state if fn is None else fn(state)

    def diffusion(self, step, dt):
        """The dynamics' noise amplitude sigma_k, or None for an ODE."""
        fn = getattr(self.dynamics, "diffusion", None)
        return None if fn is None else fn(step, dt)

    def noise(self, state, step, key: Key):
        """Standard normal increments shaped like the carried state (see `Langevin`)."""
        return self.dynamics.noise(state, step, key)

    @property
    def jumps(self) -> bool:
        return hasattr(self.dynamics, "jump")

    def jump(self, state, step, dt, key: Key):
        """The dynamics' jump step (birth-death) on the carried state."""
        return self.encode(self.dynamics.jump(self.decode(state), step, dt, key))

    def velocity(self, state, step, key: Key):
        if self.native:
            return self.dynamics.velocity_blocks(state, step, key)
        return self.dynamics.velocity(state, step, key)
