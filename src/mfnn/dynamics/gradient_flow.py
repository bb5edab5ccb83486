"""Wasserstein gradient flow of the particles."""

from __future__ import annotations

import equinox as eqx

from .._typing import Inputs, Key, Particles, Scalar, Targets
from ..domains import Ball, Box
from ..models.base import AbstractModel, Blocks
from ..objectives.base import AbstractObjective
from ..objectives.risk import EmpiricalRisk
from ..objectives.sampling import AbstractSampler, Exact, FullBatch
from .base import AbstractDynamics


class GradientFlow(AbstractDynamics):
    r"""Velocity field of the mean-field gradient flow, d theta_j/dt = v(theta_j).

        v(theta) = -grad_theta dE/dmu(theta)         (mean_field; E = risk + L2 weight)
                 = -m^(2 gamma - 1) dE/dtheta_j       (any scaling gamma)

    The flow is the Wasserstein gradient flow d/dt mu_t = div(mu_t grad dE/dmu)
    (Mei, Montanari and Nguyen 2018; Chizat and Bach 2018). With a stochastic ``sampler``
    (`Minibatch`, `Online`) the velocity is that of the batch of the step, and stepping it
    with `Euler` is (minibatch / online) SGD.

    With a bounded ``domain`` (`mfnn.domains.Ball` or `Box`) every step is followed by
    the normal reflection of the particles that left it; the particle count (the mass) is
    conserved exactly.

    Args:
        model: e.g. `TwoLayer`.
        objective: e.g. `EmpiricalRisk`, `PopulationRisk`.
        sampler: the batch of each step (`FullBatch`, `Exact`, `Minibatch`, `Online`).
        domain: optional bounded parameter domain.
    """

    model: AbstractModel
    objective: AbstractObjective
    sampler: AbstractSampler
    domain: Ball | Box | None = None

    @property
    def bounded(self) -> bool:
        return self.domain is not None

    @property
    def stochastic(self) -> bool:
        return self.sampler.stochastic

    @property
    def exact_steps(self) -> bool:
        """The step's batch is the objective's exact risk: `Exact`, or `FullBatch` on the
        very data set of an `EmpiricalRisk`."""
        return isinstance(self.sampler, Exact) or (
            isinstance(self.sampler, FullBatch)
            and isinstance(self.objective, EmpiricalRisk)
            and self.sampler.data is self.objective.data
        )

    def constrain(self, state: Blocks) -> Blocks:
        """Reflect the particles (rows or blocks) that left the domain back into it."""
        return state if self.domain is None else self.domain.reflect(state)

    def exact(self) -> GradientFlow:
        """The same flow on the exact objective (full batch, closed form or quadrature)."""
        return eqx.tree_at(lambda d: d.sampler, self, Exact())

    def velocity_blocks(self, state: Blocks, step, key: Key) -> tuple[Blocks, Scalar]:
        """(v in the block layout, the risk of the step's batch)."""
        x, y = self.sampler(key, step)
        return self.objective.velocity_blocks(self.model, state, x, y)

    def full_velocity(self, theta: Particles) -> tuple[Particles, Scalar]:
        """The velocity on the exact objective, as rows (for records and diagnostics)."""
        return self.objective.velocity(self.model, theta)

    def energy(self, theta: Particles) -> Scalar:
        return self.objective.energy(self.model, theta)

    def penalty(self, theta: Particles) -> Scalar:
        return self.objective.penalty(theta)

    def risk(self, theta: Particles, x: Inputs, y: Targets) -> Scalar:
        return self.objective.risk(self.model, theta, x, y)

    def dissipation(self, v: Particles) -> Scalar:
        """-dE/dt along the flow: m^(1 - 2 gamma) sum_j |v_j|^2 (= mean_j |v_j|^2 =
        int |grad dE/dmu|^2 dmu in mean_field)."""
        return self.model.scaling.dissipation(v.shape[0]) * (v * v).sum()
