"""Wasserstein gradient flow of the particles (THEORY.md section 2)."""

from __future__ import annotations

import equinox as eqx

from .._typing import Array, Float, Key, Particles, Scalar


class GradientFlow(eqx.Module):
    r"""Velocity field of the mean-field gradient flow, d theta_j/dt = v(theta_j).

        v(theta) = -grad_theta dE/dmu(theta)         (mean_field; E = risk + L2 weight)
                 = -m^(2 gamma - 1) dE/dtheta_j       (any scaling gamma)

    The flow is the Wasserstein gradient flow d/dt mu_t = div(mu_t grad dE/dmu).
    A dynamics only computes velocities; an integrator steps them. With a stochastic
    ``sampler`` (`Minibatch`, `Online`) the velocity is that of the batch of the step, and
    stepping it with `Euler` is (minibatch / online) SGD.

    Args:
        model: e.g. `TwoLayer`.
        objective: e.g. `EmpiricalRisk`.
        sampler: the batch of each step (`FullBatch`, `Minibatch`, `Online`).
    """

    model: eqx.Module
    objective: eqx.Module
    sampler: eqx.Module

    @property
    def stochastic(self) -> bool:
        return bool(self.sampler.stochastic)

    def velocity(self, theta: Particles, step, key: Key) -> tuple[Particles, Scalar]:
        """(v (m, D), risk of the step's batch)."""
        x, y = self.sampler(key, step)
        return self.objective.velocity(self.model, theta, x, y)

    def velocity_columns(self, cols: Float[Array, "D m"], step, key: Key):
        """`velocity` with particles as columns (``cols = theta.T``): (v^T (D, m), risk).

        `simulate` steps in this layout (see `Columns`)."""
        x, y = self.sampler(key, step)
        return self.objective.velocity_columns(self.model, cols, x, y)

    def full_velocity(self, theta: Particles) -> tuple[Particles, Scalar]:
        """The velocity on the full training set (for diagnostics)."""
        return self.objective.velocity(self.model, theta)

    def energy(self, theta: Particles) -> Scalar:
        return self.objective.energy(self.model, theta)

    def dissipation(self, v: Particles) -> Scalar:
        """-dE/dt along the flow: m^(1 - 2 gamma) sum_j |v_j|^2 (= mean_j |v_j|^2 in mean_field)."""
        m = v.shape[0]
        return m ** (1.0 - 2.0 * self.model.gamma) * (v * v).sum()


class Columns(eqx.Module):
    r"""A dynamics acting on particles stored as columns, ``cols = theta.T`` (D, m).

    The same vector field in another memory layout: ``Columns(dyn).velocity(theta.T, k,
    key) == dyn.velocity(theta, k, key)[0].T``. `simulate` carries the particles this way
    between records because each block (a, w, b) is then a contiguous row range and the
    GEMMs of a step run in their fast orientation (2-4x faster on CPU at d = 16..64).
    A dynamics with a native ``velocity_columns`` uses it; any other is transposed
    around its ``velocity``.
    """

    dynamics: eqx.Module

    @property
    def stochastic(self) -> bool:
        return bool(getattr(self.dynamics, "stochastic", False))

    def velocity(self, cols: Float[Array, "D m"], step, key: Key):
        native = getattr(self.dynamics, "velocity_columns", None)
        if native is not None:
            return native(cols, step, key)
        v, loss = self.dynamics.velocity(cols.T, step, key)
        return v.T, loss
