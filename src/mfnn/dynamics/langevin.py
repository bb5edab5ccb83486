"""Mean-field Langevin dynamics and its temperature schedules."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._typing import Array, Inputs, Key, Particles, Scalar, Targets
from ..errors import ConfigError
from ..models.base import AbstractModel, Blocks
from ..objectives.base import AbstractObjective
from .base import AbstractDiffusion
from .gradient_flow import GradientFlow

SCHEDULES = ("constant", "log", "geometric", "piecewise")
# the noise of step k is drawn from fold_in(fold_in(key, NOISE_STREAM), k): a stream of its
# own, apart from the minibatch / fresh-sample stream fold_in(key, k) of the samplers
NOISE_STREAM = 0x6E6F69


def _positive(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _traced(x) -> Array:
    return jnp.asarray(x, dtype=float)


def _check_schedule(f, beta, schedule, rate, growth, period, beta_max, values, times) -> None:
    """Refuse a bad temperature schedule (a `ConfigError` naming `f.<key>`)."""
    if not _positive(beta):
        raise ConfigError(
            f"`{f}.beta` (the inverse temperature) must be a number > 0; got {beta!r}."
        )
    if schedule not in SCHEDULES:
        raise ConfigError(f"`{f}.schedule` must be one of {list(SCHEDULES)}; got {schedule!r}.")
    if schedule == "log" and not _positive(rate):
        raise ConfigError(
            f"`{f}.rate` of a log schedule must be > 0 (beta must increase); got {rate!r}."
        )
    if schedule == "geometric":
        if not (_positive(growth) and growth > 1):
            raise ConfigError(
                f"`{f}.growth` of a geometric schedule must be > 1 (an annealing schedule "
                f"must increase beta); got {growth!r}."
            )
        if not _positive(period):
            raise ConfigError(f"`{f}.period` must be a time > 0; got {period!r}.")
        if not (beta_max >= beta):
            raise ConfigError(f"`{f}.beta_max` must be >= `{f}.beta` ({beta}); got {beta_max!r}.")
    if schedule == "piecewise":
        v, t = values, times
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
        if v[0] != beta:
            raise ConfigError(f"`{f}.values[0]` must equal `{f}.beta` ({beta}); got {v[0]!r}.")


class Temperature(eqx.Module):
    r"""The inverse temperature beta(t) of the Langevin noise, t = k dt.

    - ``constant``: beta(t) = beta;
    - ``log``: beta(t) = beta (1 + rate log(1 + t)) (the classical log-cooling, rate > 0);
    - ``geometric``: beta(t) = min(beta growth^(t / period), beta_max) (growth > 1);
    - ``piecewise``: beta(t) = values[i] for times[i] <= t < times[i + 1], times[0] = 0,
      ``values`` non-decreasing (an annealing schedule only heats down).

    Every schedule is non-decreasing in t (annealing): a schedule that would cool the
    particles back up is refused. The numbers are traced arrays: runs that differ only in
    them (a sweep over beta) share one compiled loop.

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

    beta: Array
    rate: Array
    growth: Array
    period: Array
    beta_max: Array
    values: Array
    times: Array
    schedule: str = eqx.field(static=True)
    field: str = eqx.field(static=True)

    def __init__(
        self,
        beta: float,
        schedule: str = "constant",
        rate: float = 1.0,
        growth: float = 2.0,
        period: float = 1.0,
        beta_max: float = math.inf,
        values: tuple[float, ...] = (),
        times: tuple[float, ...] = (),
        field: str = "dynamics.langevin",
    ):
        _check_schedule(
            field, beta, schedule, rate, growth, period, beta_max, list(values), list(times)
        )
        self.beta, self.rate, self.growth = _traced(beta), _traced(rate), _traced(growth)
        self.period, self.beta_max = _traced(period), _traced(beta_max)
        self.values = jnp.asarray(values, dtype=float).reshape(-1)
        self.times = jnp.asarray(times, dtype=float).reshape(-1)
        self.schedule, self.field = schedule, field

    def __call__(self, t) -> Scalar:
        """beta(t) (t a scalar or an array of times)."""
        t = jnp.asarray(t)
        dtype = t.dtype if jnp.issubdtype(t.dtype, jnp.floating) else jnp.float64
        t = t.astype(dtype)
        beta = self.beta.astype(dtype)
        if self.schedule == "constant":
            return jnp.full(t.shape, beta, dtype)
        if self.schedule == "log":
            return beta * (1.0 + self.rate.astype(dtype) * jnp.log1p(t))
        if self.schedule == "geometric":
            growth = self.growth.astype(dtype) ** (t / self.period.astype(dtype))
            return jnp.minimum(beta * growth, self.beta_max.astype(dtype))
        idx = jnp.searchsorted(self.times.astype(dtype), t, side="right") - 1
        return self.values.astype(dtype)[idx]

    def describe(self, t_end: float) -> str:
        b = np.asarray(self(np.array([0.0, t_end])))
        return f"{self.schedule} beta: {b[0]:g} -> {b[1]:g}"


class Langevin(AbstractDiffusion):
    r"""Mean-field Langevin dynamics (Mei, Montanari and Nguyen 2018, eq. (13)):

        d theta = s [v(theta) - lambda theta] dt + sqrt(2 / beta(t)) dB,

    v = -grad dR/dmu the gradient-flow velocity, lambda = ``objective.l2`` (so the drift
    is ``flow``'s velocity, -grad dE/dmu), s = ``drift_scale`` (1 by default). It is the
    Wasserstein gradient flow of the free energy

        F(mu) = R(mu) + (lambda/2) int |theta|^2 dmu + 1 / (s beta) int rho log rho,

    whose minimizer is the Gibbs fixed point
    rho* proportional to exp(-s beta [dR/dmu[rho*](theta) + lambda |theta|^2 / 2]);
    with R == 0 (`ZeroRisk`) the law is Ornstein-Uhlenbeck and rho* = N(0, I/(s beta lambda)).
    The McKean-Vlasov dynamics of the entropic regime (Tzen and Raginsky 2020),
    dW = -beta_e grad Psi dt + sqrt(tau) dB, is s = beta_e and beta = 2 / tau
    (`mckean_vlasov`).

    Step it with `EulerMaruyama` (the deterministic integrators refuse it). Frozen blocks
    (``model.trainable``) get neither drift nor noise. mean_field scaling only.

    Args:
        flow: the drift, a `GradientFlow` (model, objective, sampler, domain).
        temperature: beta(t), a `Temperature`.
        drift_scale: s > 0 (traced: runs that differ only in s share one compile).
    """

    flow: GradientFlow
    temperature: Temperature
    drift_scale: Array
    xi: Blocks | None  # the noise of one step drawn beforehand (`given_noise`), else None

    def __init__(self, flow: GradientFlow, temperature: Temperature, drift_scale: float = 1.0):
        if not _positive(drift_scale):
            raise ConfigError(f"`dynamics.langevin.drift_scale` must be > 0; got {drift_scale!r}.")
        if not flow.model.scaling.mean_field:
            raise ConfigError(
                "the Langevin dynamics is defined for `model.scaling: mean_field` (its noise "
                f"acts on the measure) with `model.alpha` 1; got gamma = {flow.model.gamma}, "
                f"alpha = {flow.model.scaling.alpha}."
            )
        self.flow, self.temperature, self.drift_scale = flow, temperature, _traced(drift_scale)
        self.xi = None

    @property
    def model(self) -> AbstractModel:
        return self.flow.model

    @property
    def objective(self) -> AbstractObjective:
        return self.flow.objective

    @property
    def bounded(self) -> bool:
        return self.flow.bounded

    stochastic = True
    exact_steps = False

    def beta(self, t) -> Scalar:
        """The effective inverse temperature s beta(t) of the free energy."""
        b = self.temperature(t)
        return self.drift_scale.astype(b.dtype) * b

    def constrain(self, state: Blocks) -> Blocks:
        return self.flow.constrain(state)

    def _scale(self, v):
        return jax.tree.map(lambda u: self.drift_scale.astype(u.dtype) * u, v)

    def velocity_blocks(self, state: Blocks, step, key: Key) -> tuple[Blocks, Scalar]:
        """(the drift s v (blocks), the risk of the step's batch)."""
        v, loss = self.flow.velocity_blocks(state, step, key)
        return self._scale(v), loss

    def full_velocity(self, theta: Particles) -> tuple[Particles, Scalar]:
        v, loss = self.flow.full_velocity(theta)
        return self._scale(v), loss

    def diffusion(self, step, dt) -> Scalar:
        """sigma_k = sqrt(2 / beta(t_k)), t_k = step * dt."""
        dt = jnp.asarray(dt)
        return jnp.sqrt(2.0 / self.temperature(jnp.asarray(step).astype(dt.dtype) * dt))

    def noise(self, state: Blocks, step, key: Key) -> Blocks:
        """Standard normal increments shaped like ``state``, zero on frozen blocks, from
        the step's own noise stream fold_in(fold_in(key, NOISE_STREAM), step) (or the
        given ``xi``, whatever the step: `given_noise`)."""
        if self.xi is not None:
            return self.xi
        k = jax.random.fold_in(jax.random.fold_in(key, NOISE_STREAM), step)
        leaves, tree = jax.tree.flatten(state)
        keys = jax.random.split(k, len(leaves))
        xi = [jax.random.normal(kk, x.shape, x.dtype) for kk, x in zip(keys, leaves, strict=True)]
        return self.model.freeze(jax.tree.unflatten(tree, xi))

    def given_noise(self, xi: Blocks) -> Langevin:
        """This dynamics with its noise ``xi``: one step's noise, shaped like the
        particles' blocks (an entry of `noises`)."""
        return eqx.tree_at(lambda d: d.xi, self, xi, is_leaf=lambda x: x is None)

    def exact(self) -> Langevin:
        """The same dynamics on the exact (full-batch) objective (for records)."""
        return eqx.tree_at(lambda d: d.flow, self, self.flow.exact())

    def energy(self, theta: Particles) -> Scalar:
        return self.flow.energy(theta)

    def penalty(self, theta: Particles) -> Scalar:
        return self.flow.penalty(theta)

    def risk(self, theta: Particles, x: Inputs, y: Targets) -> Scalar:
        return self.flow.risk(theta, x, y)

    def dissipation(self, v: Particles) -> Scalar:
        """The drift part of -dE/dt for the drift ``v`` = s v_flow (what `velocity` returns).

        Along the drift, dE/dt = <grad E, s v_flow> = -s int |grad dE/dmu|^2 dmu, which is
        (1/s) int |drift|^2 dmu = the flow's dissipation of ``v`` divided by s (not
        multiplied by it: the drift is s times the flow's velocity, and only one factor s
        moves the energy).
        """
        d = self.flow.dissipation(v)
        return d / self.drift_scale.astype(d.dtype)


def mckean_vlasov(flow: GradientFlow, beta_e: float, tau: float) -> Langevin:
    """The McKean-Vlasov dynamics of the entropic regime (Tzen and Raginsky 2020):
    dW = -beta_e grad Psi(W; Law(W)) dt + sqrt(tau) dB, with
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
