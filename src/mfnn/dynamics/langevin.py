"""Mean-field Langevin dynamics and its temperature schedules (THEORY.md section 3)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._typing import Key, Particles, Scalar
from ..errors import ConfigError
from ..objectives.risk import freeze
from .gradient_flow import GradientFlow

SCHEDULES = ("constant", "log", "geometric", "piecewise")
# the noise of step k is drawn from fold_in(fold_in(key, NOISE_STREAM), k): a stream of its
# own, apart from the minibatch / fresh-sample stream fold_in(key, k) of the samplers
NOISE_STREAM = 0x6E6F69


def _positive(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


class Temperature(eqx.Module):
    r"""The inverse temperature beta(t) of the Langevin noise, t = k dt.

    - ``constant``: beta(t) = beta;
    - ``log``: beta(t) = beta (1 + rate log(1 + t)) (the classical log-cooling, rate > 0);
    - ``geometric``: beta(t) = min(beta growth^(t / period), beta_max) (growth > 1);
    - ``piecewise``: beta(t) = values[i] for times[i] <= t < times[i + 1], times[0] = 0,
      ``values`` non-decreasing (an annealing schedule only heats down).

    Every schedule is non-decreasing in t (annealing): a schedule that would cool the
    particles back up is refused.

    Args:
        beta: beta(0) > 0.
        schedule: one of ``constant``, ``log``, ``geometric``, ``piecewise``.
        rate, growth, period, beta_max: parameters of ``log`` and ``geometric``.
        values, times: the steps of ``piecewise``.
        field: the config field named in errors.

    Example:
        >>> temp = Temperature(2.0, "geometric", growth=2.0, period=1.0, beta_max=6.0)
        >>> [float(temp(t)) for t in (0.0, 1.0, 2.0, 5.0)]
        [2.0, 4.0, 6.0, 6.0]
    """

    beta: float = eqx.field(static=True)
    schedule: str = eqx.field(static=True, default="constant")
    rate: float = eqx.field(static=True, default=1.0)
    growth: float = eqx.field(static=True, default=2.0)
    period: float = eqx.field(static=True, default=1.0)
    beta_max: float = eqx.field(static=True, default=math.inf)
    values: tuple[float, ...] = eqx.field(static=True, default=())
    times: tuple[float, ...] = eqx.field(static=True, default=())
    field: str = eqx.field(static=True, default="dynamics.langevin")

    def __check_init__(self):
        f = self.field
        if not _positive(self.beta):
            raise ConfigError(
                f"`{f}.beta` (the inverse temperature) must be a number > 0; got {self.beta!r}."
            )
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"`{f}.schedule` must be one of {list(SCHEDULES)}; got {self.schedule!r}."
            )
        if self.schedule == "log" and not _positive(self.rate):
            raise ConfigError(
                f"`{f}.rate` of a log schedule must be > 0 (beta must increase); got {self.rate!r}."
            )
        if self.schedule == "geometric":
            if not (_positive(self.growth) and self.growth > 1):
                raise ConfigError(
                    f"`{f}.growth` of a geometric schedule must be > 1 (an annealing schedule "
                    f"must increase beta); got {self.growth!r}."
                )
            if not _positive(self.period):
                raise ConfigError(f"`{f}.period` must be a time > 0; got {self.period!r}.")
            if not (self.beta_max >= self.beta):
                raise ConfigError(
                    f"`{f}.beta_max` must be >= `{f}.beta` ({self.beta}); got {self.beta_max!r}."
                )
        if self.schedule == "piecewise":
            v, t = list(self.values), list(self.times)
            if not v or len(v) != len(t) or not all(_positive(x) for x in v):
                raise ConfigError(
                    f"`{f}.values` (betas > 0) and `{f}.times` must be non-empty lists of the "
                    f"same length; got values={v!r}, times={t!r}."
                )
            if t[0] != 0 or any(b <= a for a, b in zip(t, t[1:], strict=False)):
                raise ConfigError(f"`{f}.times` must start at 0 and increase strictly; got {t!r}.")
            if any(b < a for a, b in zip(v, v[1:], strict=False)):
                raise ConfigError(
                    f"`{f}.values` is not increasing: an annealing schedule must not lower "
                    f"beta (it would heat the particles back up); got {v!r}."
                )
            if v[0] != self.beta:
                raise ConfigError(
                    f"`{f}.values[0]` must equal `{f}.beta` ({self.beta}); got {v[0]!r}."
                )

    def __call__(self, t) -> Scalar:
        """beta(t) (t a scalar or an array of times)."""
        t = jnp.asarray(t)
        dtype = t.dtype if jnp.issubdtype(t.dtype, jnp.floating) else jnp.float64
        t = t.astype(dtype)
        if self.schedule == "constant":
            return jnp.full(t.shape, self.beta, dtype)
        if self.schedule == "log":
            return self.beta * (1.0 + self.rate * jnp.log1p(t))
        if self.schedule == "geometric":
            return jnp.minimum(self.beta * self.growth ** (t / self.period), self.beta_max)
        idx = jnp.searchsorted(jnp.asarray(self.times, dtype), t, side="right") - 1
        return jnp.asarray(self.values, dtype)[idx]

    def describe(self, t_end: float) -> str:
        b = np.asarray(self(np.array([0.0, t_end])))
        return f"{self.schedule} beta: {b[0]:g} -> {b[1]:g}"


class Langevin(eqx.Module):
    r"""Mean-field Langevin dynamics (Mei-Montanari-Nguyen; seed 001 section 3.3):

        d theta = s [v(theta) - lambda theta] dt + sqrt(2 / beta(t)) dB,

    v = -grad dR/dmu the gradient-flow velocity, lambda = ``objective.l2`` (so the drift
    is ``flow``'s velocity, -grad dE/dmu), s = ``drift_scale`` (1 by default). It is the
    Wasserstein gradient flow of the free energy

        F(mu) = R(mu) + (lambda/2) int |theta|^2 dmu + 1 / (s beta) int rho log rho,

    whose minimizer is the Gibbs fixed point
    rho* proportional to exp(-s beta [dR/dmu[rho*](theta) + lambda |theta|^2 / 2]);
    with R == 0 (`ZeroRisk`) the law is Ornstein-Uhlenbeck and rho* = N(0, I/(s beta lambda)).
    The McKean-Vlasov dynamics of seed 003, dW = -beta_e grad Psi dt + sqrt(tau) dB, is
    s = beta_e and beta = 2 / tau (`mckean_vlasov`).

    A dynamics gives drift (``velocity``) and diffusion (``diffusion``); step it with
    `EulerMaruyama` (the deterministic integrators refuse it). Frozen blocks
    (``model.trainable``) get neither drift nor noise. mean_field scaling only.

    Args:
        flow: the drift, a `GradientFlow` (model, objective, sampler, domain).
        temperature: beta(t), a `Temperature`.
        drift_scale: s > 0.
    """

    flow: GradientFlow
    temperature: Temperature
    drift_scale: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if not _positive(self.drift_scale):
            raise ConfigError(
                f"`dynamics.langevin.drift_scale` must be > 0; got {self.drift_scale!r}."
            )
        if self.flow.model.gamma != 1.0:
            raise ConfigError(
                "the Langevin dynamics is defined for `model.scaling: mean_field` (its noise "
                f"acts on the measure); got gamma = {self.flow.model.gamma}."
            )

    # the flow's parts, so that recorders and wrappers see one interface
    @property
    def model(self):
        return self.flow.model

    @property
    def objective(self):
        return self.flow.objective

    @property
    def sampler(self):
        return self.flow.sampler

    @property
    def domain(self):
        return self.flow.domain

    stochastic = True
    has_noise = True

    def beta(self, t) -> Scalar:
        """The effective inverse temperature s beta(t) of the free energy."""
        return self.drift_scale * self.temperature(t)

    def constrain(self, state):
        return self.flow.constrain(state)

    def _scale(self, out):
        v, loss = out
        if self.drift_scale == 1.0:
            return v, loss
        return jax.tree.map(lambda u: self.drift_scale * u, v), loss

    def velocity(self, theta: Particles, step, key: Key) -> tuple[Particles, Scalar]:
        """(the drift s v(theta) (m, D), the risk of the step's batch)."""
        return self._scale(self.flow.velocity(theta, step, key))

    def velocity_blocks(self, blocks, step, key: Key):
        return self._scale(self.flow.velocity_blocks(blocks, step, key))

    def full_velocity(self, theta: Particles) -> tuple[Particles, Scalar]:
        return self._scale(self.flow.full_velocity(theta))

    def diffusion(self, step, dt) -> Scalar:
        """sigma_k = sqrt(2 / beta(t_k)), t_k = step * dt."""
        dt = jnp.asarray(dt)
        return jnp.sqrt(2.0 / self.temperature(jnp.asarray(step).astype(dt.dtype) * dt))

    def noise(self, state, step, key: Key):
        """Standard normal increments shaped like ``state`` (rows or blocks), zero on
        frozen blocks, from the step's own noise stream."""
        k = jax.random.fold_in(jax.random.fold_in(key, NOISE_STREAM), step)
        leaves, tree = jax.tree.flatten(state)
        keys = jax.random.split(k, len(leaves))
        xi = [jax.random.normal(kk, x.shape, x.dtype) for kk, x in zip(keys, leaves, strict=True)]
        return freeze(self.model, jax.tree.unflatten(tree, xi))

    def exact(self) -> Langevin:
        """The same dynamics on the exact (full-batch) objective (for records)."""
        return eqx.tree_at(lambda d: d.flow, self, self.flow.exact())

    def energy(self, theta: Particles) -> Scalar:
        return self.flow.energy(theta)

    def dissipation(self, v: Particles) -> Scalar:
        """The drift part of -dE/dt for the drift ``v`` = s v_flow (what `velocity` returns).

        Along the drift, dE/dt = <grad E, s v_flow> = -s int |grad dE/dmu|^2 dmu, which is
        (1/s) int |drift|^2 dmu = the flow's dissipation of ``v`` divided by s (not
        multiplied by it: the drift is s times the flow's velocity, and only one factor s
        moves the energy).
        """
        return self.flow.dissipation(v) / self.drift_scale


def mckean_vlasov(flow: GradientFlow, beta_e: float, tau: float) -> Langevin:
    """The McKean-Vlasov dynamics of seed 003 (THEORY.md section 3, entropic
    regularization): dW = -beta_e grad Psi(W; Law(W)) dt + sqrt(tau) dB, with
    Psi = dR/dmu (= the first variation of (1/2) R~, R~ = 2R), i.e. `Langevin` with
    drift_scale = beta_e and beta = 2 / tau.

    Example:
        >>> import jax.numpy as jnp
        >>> from mfnn import TwoLayer, GradientFlow
        >>> from mfnn.objectives import ZeroRisk, Exact
        >>> net = TwoLayer(d=2, activation="tanh", bias=False, train_output=False)
        >>> mv = mckean_vlasov(GradientFlow(net, ZeroRisk(), Exact()), beta_e=0.5, tau=0.01)
        >>> round(float(mv.diffusion(0, 0.1) ** 2), 12)   # sigma^2 = tau
        0.01
    """
    if not (_positive(beta_e) and _positive(tau)):
        raise ConfigError(
            f"the McKean-Vlasov dynamics needs beta > 0 and tau > 0; got beta={beta_e!r}, "
            f"tau={tau!r}."
        )
    return Langevin(flow, Temperature(2.0 / tau), drift_scale=beta_e)
