"""What a run keeps: metrics at recorded steps (a function of (t, particles))."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from ._typing import Particles, Scalar
from .errors import ConfigError
from .integrators import Euler
from .objectives.sampling import Exact
from .targets import DataSet


class Recorder(eqx.Module):
    r"""Metrics recorded every ``every`` steps (and at the last step).

    At a recorded step k with particles theta_k (t = k dt):

    - ``loss``: R(mu_k) on the training set (the risk, without the L2 weight);
    - ``test_loss``: R on the test set, if one is given;
    - ``energy``: E = R + (lambda/2) mean_j |theta_j|^2, the functional the flow decreases;
    - ``dissipation``: -dE/dt predicted by the identity, int |grad dE/dmu|^2 dmu
      = m^(1 - 2 gamma) sum_j |v(theta_j)|^2 (= mean_j |v_j|^2 in mean_field), with the
      full-batch velocity;
    - ``energy_residual``: (E(theta_{k+1}) - E(theta_k)) / dt + dissipation, where
      theta_{k+1} is one full-batch step of the run's integrator from theta_k; the energy
      dissipation identity dE/dt = -int |grad dE/dmu|^2 dmu says this is O(dt);
    - ``energy_rel_residual``: energy_residual / dissipation;
    - ``movement``: |theta_k - theta_0|_F / |theta_0|_F (relative particle movement).

    Args:
        every: record interval in steps (>= 1).
        test: optional test set.
    """

    every: int = eqx.field(static=True, default=10)
    test: DataSet | None = None

    def __check_init__(self):
        if not isinstance(self.every, int) or self.every < 1:
            raise ConfigError(f"`record.every` must be a positive integer; got {self.every!r}.")

    def names(self) -> tuple[str, ...]:
        base = ("loss",) + (("test_loss",) if self.test is not None else ())
        return base + (
            "energy",
            "dissipation",
            "energy_residual",
            "energy_rel_residual",
            "movement",
        )

    def __call__(
        self, dynamics, integrator, theta: Particles, theta0: Particles, step, dt, key
    ) -> dict[str, Scalar]:
        return self.measure(dynamics, integrator, theta, theta0, step, dt, key)[0]

    def measure(
        self, dynamics, integrator, theta: Particles, theta0: Particles, step, dt, key
    ) -> tuple[dict[str, Scalar], tuple[Particles, Scalar]]:
        """The metrics and (v (m, D), R): the full-batch velocity and risk they used."""
        model, objective = dynamics.model, dynamics.objective
        full = eqx.tree_at(lambda d: d.sampler, dynamics, Exact())
        v, loss = full.full_velocity(theta)
        energy = loss + objective.penalty(theta)
        dissipation = full.dissipation(v)
        if isinstance(integrator, Euler):  # the step Euler would take: reuse v
            nxt = theta + dt * v
        else:
            nxt, _ = integrator.step(full, theta, step, dt, key)
        residual = (full.energy(nxt) - energy) / dt + dissipation
        tiny = jnp.finfo(theta.dtype).tiny
        out = {"loss": loss}
        if self.test is not None:
            out["test_loss"] = objective.risk(model, theta, self.test.x, self.test.y)
        out.update(
            energy=energy,
            dissipation=dissipation,
            energy_residual=residual,
            energy_rel_residual=residual / jnp.maximum(dissipation, tiny),
            movement=jnp.linalg.norm(theta - theta0) / jnp.maximum(jnp.linalg.norm(theta0), tiny),
        )
        return out, (v, loss)
