"""The divergence guard: when a run has blown up, with the rule and a step size to try.

A run whose particles become NaN/inf is caught by the compiled loop (`mfnn.loop`). An
explicit scheme with too large a step can also blow up to huge *finite* numbers (ReLU
at dt = 100 puts particles at 1e207; tanh at dt = 5 a loss of 1e233) long before a NaN
appears. `Guard` is the rule `mfnn.simulate.simulate` applies at every record:

- ``loss``, ``energy`` and ``dissipation`` must be finite;
- ``loss <= loss_growth * max(loss_0, 1)``, with loss_0 the loss at step 0 (recorded
  on a fresh run, recomputed from the initial particles on a resume);
- ``max_j |theta_j|_inf <= theta_limit``, by default
  ``theta_growth * max(max_j |theta_{0,j}|_inf, 1)``.

The floors of 1 keep a run that starts at zero loss or at the origin from being called
diverged for a loss or a weight of order one. The first record that breaks a rule ends
the run as ``diverged``; the state of the record before it (the last one within the
bounds) is kept, written as a snapshot and as the checkpoint.

The advice comes from `stable_dt`: explicit Euler (and Heun) on a gradient flow
d theta/dt = v(theta) is stable for dt < 2 / L, with L the spectral radius of the
Jacobian dv/dtheta (for v = -grad E, the largest eigenvalue of the Hessian of the
scaled energy), estimated by power iteration on Jacobian-vector products.
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._typing import Particles
from .errors import ConfigError

# the record columns that must stay finite (others, like `movement` from a start at the
# origin, may be nan by definition)
FINITE = ("loss", "energy", "dissipation")


@dataclasses.dataclass(frozen=True)
class Guard:
    """The divergence rule of a run (see the module docstring).

    Args:
        loss_growth: a loss above this many times max(loss_0, 1) is a divergence (> 1).
        theta_growth: a particle coordinate above this many times
            max(max |theta_0|, 1) is a divergence (> 1); ignored if ``theta_limit`` set.
        theta_limit: an absolute bound on max |theta| instead (> 0), or None.
    """

    loss_growth: float = 1e6
    theta_growth: float = 1e6
    theta_limit: float | None = None

    def __post_init__(self):
        for name, value in (("loss_growth", self.loss_growth), ("theta_growth", self.theta_growth)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 1):
                raise ConfigError(f"`guard.{name}` must be a finite number > 1; got {value!r}.")
        lim = self.theta_limit
        if lim is not None and not (
            isinstance(lim, int | float) and math.isfinite(lim) and lim > 0
        ):
            raise ConfigError(f"`guard.theta_limit` must be a finite number > 0; got {lim!r}.")

    def bounds(self, loss0: float, theta0: np.ndarray) -> tuple[float, float]:
        """(loss bound, |theta| bound) of a run that starts at ``loss0``, ``theta0``."""
        peak0 = float(np.max(np.abs(theta0))) if np.size(theta0) else 0.0
        loss_bound = self.loss_growth * max(abs(float(loss0)), 1.0)
        if not math.isfinite(loss_bound):  # an initial loss that is already inf/nan
            loss_bound = math.inf
        limit = self.theta_limit
        theta_bound = self.theta_growth * max(peak0, 1.0) if limit is None else float(limit)
        return loss_bound, theta_bound

    def first_violation(
        self,
        values: dict[str, np.ndarray],
        peaks: np.ndarray,
        loss_bound: float,
        theta_bound: float,
    ) -> tuple[int, str, float, str] | None:
        """The first record (index into the columns) that breaks the rule, with the
        quantity, its value and the rule; None if every record is within the bounds.

        Example:
            >>> g = Guard()
            >>> g.first_violation({"loss": np.array([1.0, 2e7])}, np.array([1.0, 1.0]), 1e6, 1e6)
            (1, 'loss', 20000000.0, 'loss <= 1e+06 (1e+06 x max(initial loss, 1))')
        """
        n = len(peaks)
        for r in range(n):
            for name in FINITE:
                if name in values and not math.isfinite(float(values[name][r])):
                    return r, name, float(values[name][r]), f"{name} finite"
            if "loss" in values and abs(float(values["loss"][r])) > loss_bound:
                rule = f"loss <= {loss_bound:.3g} ({self.loss_growth:.3g} x max(initial loss, 1))"
                return r, "loss", float(values["loss"][r]), rule
            if not float(peaks[r]) <= theta_bound:  # nan included
                src = (
                    "guard.theta_limit"
                    if self.theta_limit is not None
                    else f"{self.theta_growth:.3g} x max(initial max |theta|, 1)"
                )
                return (
                    r,
                    "max |theta|",
                    float(peaks[r]),
                    f"max |theta| <= {theta_bound:.3g} ({src})",
                )
        return None


@eqx.filter_jit
def _lipschitz(dynamics, theta: Particles, key, iterations: int):
    full = dynamics.exact()

    def v(x):
        return full.full_velocity(x)[0]

    def body(carry, _):
        u, _ = carry
        _, ju = jax.jvp(v, (theta,), (u,))
        norm = jnp.linalg.norm(ju)
        return (ju / jnp.where(norm > 0, norm, 1.0), norm), None

    u0 = jax.random.normal(key, theta.shape, theta.dtype)
    u0 = u0 / jnp.linalg.norm(u0)
    (_, norm), _ = jax.lax.scan(body, (u0, jnp.zeros((), theta.dtype)), None, length=iterations)
    return norm


def lipschitz(dynamics, theta: Particles, key, iterations: int = 50) -> float:
    """L ~ |dv/dtheta|_2 at ``theta``: the spectral radius of the Jacobian of the
    full-batch velocity, by ``iterations`` steps of power iteration on Jacobian-vector
    products (a lower bound that converges to it; nan if the Jacobian is not finite).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from mfnn import TwoLayer, EmpiricalRisk, FullBatch, GradientFlow, DataSet
        >>> x = jnp.linspace(-1, 1, 8)[:, None]
        >>> data = DataSet(x, x[:, 0])
        >>> net = TwoLayer(d=1, activation="tanh")
        >>> flow = GradientFlow(net, EmpiricalRisk(data), FullBatch(data))
        >>> theta = jax.random.normal(jax.random.key(0), (16, 3))
        >>> lipschitz(flow, theta, jax.random.key(1)) > 0
        True
    """
    return float(_lipschitz(dynamics, jnp.asarray(theta), key, iterations))


def stable_dt(dynamics, thetas: list[Particles], key) -> float | None:
    """The largest step an explicit Euler/Heun step of the flow tolerates near the
    given states, 2 / max L (`lipschitz` at each), or None when no finite positive L
    is found (e.g. the velocity's Jacobian is not finite there)."""
    ls = []
    for theta in thetas:
        try:
            value = lipschitz(dynamics, theta, key)
        except Exception:  # noqa: BLE001 - advice only: no estimate rather than no message
            continue
        if math.isfinite(value) and value > 0:
            ls.append(value)
    return 2.0 / max(ls) if ls else None


# the guard `simulate` applies unless told otherwise
DEFAULT = Guard()
