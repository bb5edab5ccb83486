r"""The scaling of a network with its width: every power of m in mfnn is computed here.

A width-m network of units phi is

    f_m(x) = m^(-gamma) sum_j phi(x; theta_j),     gamma in [1/2, 1],

and its gradient flow on an energy E(theta_1..theta_m) is rescaled in time so that f_m
moves O(1) in O(1) time in every scaling:

    d theta_j / dt = -m^(2 gamma - 1) dE/dtheta_j.

gamma = 1 is the mean-field scaling (f = int phi dmu, the velocity -m dE/dtheta_j =
-grad_theta dE/dmu(theta_j): Mei, Montanari and Nguyen 2018; Chizat and Bach 2018;
Rotskoff and Vanden-Eijnden 2018; Sirignano and Spiliopoulos 2020); gamma = 1/2 is the
neural tangent (ntk) scaling of Jacot, Gabriel and Hongler 2018, in which each particle
moves O(m^(-1/2)) (lazy training, Chizat, Oyallon and Bach 2019). The factors the
objectives, dynamics and recorder need follow from these two:

- ``output(m)``      = m^(-gamma)        f_m = output(m) sum_j phi
- ``velocity(m)``    = m^(2 gamma - 1)   v_j = -velocity(m) dE/dtheta_j
- ``field(m)``       = m^(gamma - 1)     = output(m) velocity(m): the factor of the
  rescaled first variation Phi(theta) = field(m) E_x[(f - y) phi(x; theta)], so that
  v = -grad Phi in every scaling (Phi = dR/dmu when gamma = 1)
- ``confinement(m)`` = m^(2 gamma - 2)   = velocity(m) / m: the factor of the L2 term
  (lambda/2) |theta|^2 in Phi (d/dtheta_j of (lambda/2) mean_k |theta_k|^2 is
  lambda theta_j / m)
- ``dissipation(m)`` = m^(1 - 2 gamma)   = 1 / velocity(m): -dE/dt = dissipation(m)
  sum_j |v_j|^2 along the flow (= mean_j |v_j|^2 = int |grad dE/dmu|^2 dmu when gamma = 1)

An output factor alpha > 0 (``alpha``, default 1) is the lazy-training scale of Chizat,
Oyallon and Bach (2019, "On lazy training in differentiable programming"): the model is
alpha f_m and the time is rescaled by 1/alpha^2 (their gradient flow of
(1/alpha^2) R(alpha f)), so f still moves O(1) in O(1) time while each particle moves
O(1/alpha): as alpha -> infinity at fixed m, training follows the linearisation of the
network at its initialisation (kernel gradient flow with the tangent kernel of theta_0),
with a deviation O(1/alpha) (their Theorem 2.3). Then output(m) = alpha m^(-gamma),
velocity(m) = m^(2 gamma - 1) / alpha^2, field(m) = m^(gamma - 1) / alpha,
confinement(m) = m^(2 gamma - 2) / alpha^2, dissipation(m) = alpha^2 m^(1 - 2 gamma);
the function-space kernel velocity(m) output(m)^2 sum_j grad phi grad phi =
(1/m) sum_j grad phi . grad phi does not depend on gamma or alpha.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp

from .._typing import Array, Scalar
from ..errors import ConfigError, did_you_mean

NAMED = {"mean_field": 1.0, "ntk": 0.5}


class Scaling(eqx.Module):
    """The exponent gamma of f_m = m^(-gamma) sum_j phi and the factors it sets.

    Build it with `Scaling.of`. ``name`` is "mean_field" (gamma = 1), "ntk" (gamma = 1/2)
    or "general" (any gamma in [1/2, 1]); ``alpha`` is the lazy-training output factor
    (module docstring). gamma and alpha are traced scalars (weakly typed, so a float32 run
    stays float32): runs that differ only in them share one compiled loop. ``name`` and
    ``mean_field`` (gamma = 1 and alpha = 1, decided when the scaling is built) are static:
    they choose code paths (the Langevin and birth-death dynamics need the mean-field
    scaling, a multilayer network's layer factors).

    Example:
        >>> s = Scaling.of("ntk")
        >>> [float(v) for v in (s.gamma, s.output(4), s.velocity(4), s.field(4))]
        [0.5, 0.5, 1.0, 0.5]
        >>> Scaling.of("general", 0.75).name, Scaling.of(1.0).mean_field
        ('general', True)
    """

    gamma: Array
    alpha: Array
    name: str = eqx.field(static=True)
    mean_field: bool = eqx.field(static=True)

    def __init__(self, gamma: float, name: str, alpha: float = 1.0):
        # `mean_field`: gamma = 1 and alpha = 1, f is an integral against the particle measure
        self.mean_field = float(gamma) == 1.0 and float(alpha) == 1.0
        self.gamma, self.alpha = jnp.asarray(float(gamma)), jnp.asarray(float(alpha))
        self.name = name

    @classmethod
    def of(
        cls, scaling: str | float | Scaling, gamma: float | None = None, alpha: float = 1.0
    ) -> Scaling:
        """The scaling named ``scaling`` ("mean_field", "ntk", or "general" with
        ``gamma``), or a bare number gamma, with output factor ``alpha``; a `ConfigError`
        naming `model.scaling` / `model.gamma` / `model.alpha` otherwise."""
        if not (isinstance(alpha, int | float) and math.isfinite(alpha) and alpha > 0):
            raise ConfigError(f"`model.alpha` must be a finite number > 0; got {alpha!r}.")
        alpha = float(alpha)
        if isinstance(scaling, Scaling):
            return scaling if alpha == 1.0 else cls(float(scaling.gamma), scaling.name, alpha)
        if isinstance(scaling, bool):
            scaling = str(scaling)
        if isinstance(scaling, int | float):
            scaling, gamma = "general", float(scaling)
        if scaling in NAMED:
            if gamma is not None and not math.isclose(gamma, NAMED[scaling]):
                raise ConfigError(
                    f"`model.gamma` is {gamma} but `model.scaling` is {scaling!r}, whose gamma "
                    f"is {NAMED[scaling]}; drop `model.gamma` or set `model.scaling: general`."
                )
            return cls(NAMED[scaling], scaling, alpha)
        if scaling == "general":
            if gamma is None or not 0.5 <= float(gamma) <= 1.0:
                raise ConfigError(
                    "`model.gamma` must be a number in [0.5, 1] when `model.scaling` is "
                    f"'general'; got {gamma!r}. gamma = 1 is mean_field, gamma = 0.5 is ntk."
                )
            return cls(float(gamma), "general", alpha)
        raise ConfigError(
            f"`model.scaling` must be 'mean_field', 'ntk' or 'general' (with `model.gamma`); "
            f"got {scaling!r}. {did_you_mean(str(scaling), [*NAMED, 'general'])}"
        )

    def output(self, m: int) -> Scalar:
        """alpha m^(-gamma)."""
        return self.alpha * float(m) ** (-self.gamma)

    def velocity(self, m: int) -> Scalar:
        """m^(2 gamma - 1) / alpha^2."""
        return float(m) ** (2.0 * self.gamma - 1.0) / self.alpha**2

    def field(self, m: int) -> Scalar:
        """m^(gamma - 1) / alpha."""
        return float(m) ** (self.gamma - 1.0) / self.alpha

    def confinement(self, m: int) -> Scalar:
        """m^(2 gamma - 2) / alpha^2."""
        return float(m) ** (2.0 * self.gamma - 2.0) / self.alpha**2

    def dissipation(self, m: int) -> Scalar:
        """alpha^2 m^(1 - 2 gamma)."""
        return self.alpha**2 * float(m) ** (1.0 - 2.0 * self.gamma)


def gamma_of(scaling: str | float, gamma: float | None = None) -> float:
    """The exponent gamma of a named or general scaling (`Scaling.of(...).gamma`).

    Example:
        >>> gamma_of("mean_field"), gamma_of("general", 0.75)
        (1.0, 0.75)
    """
    return float(Scaling.of(scaling, gamma).gamma)
