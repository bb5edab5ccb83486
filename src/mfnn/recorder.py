"""What a run keeps: metrics at recorded steps (a function of (t, particles))."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from ._typing import Particles, Scalar
from .errors import ConfigError
from .integrators import Euler, EulerMaruyama
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

    For a noisy dynamics (`Langevin`) the residual uses the drift step alone (the
    identity of the deterministic part), and with ``entropy_k`` set the recorder adds

    - ``beta``: the effective inverse temperature s beta(t_k) of the free energy;
    - ``entropy``: the Kozachenko-Leonenko estimate (k = ``entropy_k`` nearest
      neighbours) of H = -int rho log rho over the trainable coordinates;
    - ``free_energy``: F = E - H / beta (THEORY.md section 3).

    For `BirthDeath` (``jumps``) it adds ``jump_dissipation`` = alpha int (dE/dmu -
    <dE/dmu>)^2 drho: the energy identity with jumps is dE/dt = -(dissipation +
    jump_dissipation).

    Args:
        every: record interval in steps (>= 1).
        test: optional test set.
        entropy_k: record the entropy and free energy with this many neighbours.
        jumps: record the birth-death dissipation.
    """

    every: int = eqx.field(static=True, default=10)
    test: DataSet | None = None
    entropy_k: int | None = eqx.field(static=True, default=None)
    jumps: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if not isinstance(self.every, int) or self.every < 1:
            raise ConfigError(f"`record.every` must be a positive integer; got {self.every!r}.")
        k = self.entropy_k
        if k is not None and not (isinstance(k, int) and k >= 1):
            raise ConfigError(f"`record.entropy_k` must be a positive integer; got {k!r}.")

    def names(self) -> tuple[str, ...]:
        base = ("loss",) + (("test_loss",) if self.test is not None else ())
        out = base + (
            "energy",
            "dissipation",
            "energy_residual",
            "energy_rel_residual",
            "movement",
        )
        if self.entropy_k is not None:
            out += ("beta", "entropy", "free_energy")
        if self.jumps:
            out += ("jump_dissipation",)
        return out

    def __call__(
        self, dynamics, integrator, theta: Particles, theta0: Particles, step, dt, key
    ) -> dict[str, Scalar]:
        return self.measure(dynamics, integrator, theta, theta0, step, dt, key)[0]

    def measure(
        self, dynamics, integrator, theta: Particles, theta0: Particles, step, dt, key
    ) -> tuple[dict[str, Scalar], tuple[Particles, Scalar]]:
        """The metrics and (v (m, D), R): the full-batch velocity and risk they used."""
        model, objective = dynamics.model, dynamics.objective
        if hasattr(dynamics, "exact"):
            full = dynamics.exact()
        else:
            full = eqx.tree_at(lambda d: d.sampler, dynamics, Exact())
        v, loss = full.full_velocity(theta)
        energy = loss + objective.penalty(theta)
        dissipation = full.dissipation(v)
        stepper = getattr(integrator, "transport", integrator)  # a splitting: its transport
        if isinstance(stepper, Euler | EulerMaruyama):  # the drift step: reuse v
            nxt = theta + dt * v
        else:
            nxt, _ = stepper.step(full, theta, step, dt, key)
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
        if self.entropy_k is not None:
            from .diagnostics.entropy import knn_entropy

            beta = dynamics.beta(jnp.asarray(step).astype(theta.dtype) * dt).astype(theta.dtype)
            entropy = knn_entropy(theta[:, model.trainable_columns()], self.entropy_k)
            out.update(beta=beta, entropy=entropy, free_energy=energy - entropy / beta)
        if self.jumps:
            out["jump_dissipation"] = full.jump_dissipation(theta)
        return out, (v, loss)
