"""The zero risk R == 0 with the L2 weight only: the reference problem of the noisy dynamics."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._typing import Array, Float, Particles, Scalar
from ..errors import ConfigError
from .risk import freeze


class ZeroRisk(eqx.Module):
    r"""R(mu) == 0, so E(mu) = (lambda/2) int |theta|^2 dmu and v(theta) = -lambda theta.

    With the mean-field Langevin dynamics (THEORY.md section 3) this is the
    Ornstein-Uhlenbeck process d theta = -lambda theta dt + sqrt(2/beta) dB: the law stays
    Gaussian, with mean e^(-lambda t) mean_0 and covariance
    e^(-2 lambda t) Sigma_0 + (1 - e^(-2 lambda t)) / (beta lambda) I, and the Gibbs fixed
    point rho* proportional to exp(-beta lambda |theta|^2 / 2) is N(0, I / (beta lambda)).
    For a general scaling gamma the first variation is rescaled as in `EmpiricalRisk`:
    Phi = m^(2 gamma - 2) (lambda/2) |theta|^2 and v = -grad Phi = -m^(2 gamma - 2) lambda
    theta. Frozen blocks do not move.

    Args:
        l2: lambda >= 0.

    Example:
        >>> import jax.numpy as jnp
        >>> from mfnn import TwoLayer
        >>> net = TwoLayer(d=1, activation="tanh", bias=False)
        >>> v, r = ZeroRisk(l2=2.0).velocity(net, jnp.array([[1.0, 0.5]]))
        >>> v.tolist(), float(r)
        ([[-2.0, -1.0]], 0.0)
    """

    l2: float = eqx.field(static=True, default=0.0)

    def __check_init__(self):
        if not self.l2 >= 0:
            raise ConfigError(f"`objective.l2` must be >= 0; got {self.l2!r}.")

    def risk(self, model, theta: Particles, x=None, y=None) -> Scalar:
        """R == 0."""
        del model, x, y
        return jnp.zeros((), theta.dtype)

    def penalty(self, theta: Particles) -> Scalar:
        """(lambda/2) (1/m) sum_j |theta_j|^2."""
        return 0.5 * self.l2 * jnp.mean(jnp.sum(theta**2, axis=-1))

    def energy(self, model, theta: Particles, x=None, y=None) -> Scalar:
        return self.penalty(theta)

    def first_variation(self, model, theta: Particles, points: Float[Array, "k D"], x=None, y=None):
        """Phi(theta') = m^(2 gamma - 2) (lambda/2) |theta'|^2."""
        m = theta.shape[0]
        return m ** (2 * model.gamma - 2) * 0.5 * self.l2 * jnp.sum(points**2, -1)

    def velocity(self, model, theta: Particles, x=None, y=None) -> tuple[Particles, Scalar]:
        """(v = -lambda theta (mean_field), R = 0)."""
        return self._velocity(model, theta, theta.shape[0])

    def velocity_blocks(self, model, blocks, x=None, y=None):
        m = jax.tree.leaves(blocks)[0].shape[-1]
        return self._velocity(model, blocks, m)

    def _velocity(self, model, params, m):
        scale = -self.l2 * float(m) ** (2 * model.gamma - 1.0) / m
        # d/dtheta_j of (lambda/2) mean_k |theta_k|^2 is lambda theta_j / m
        v = jax.tree.map(lambda p: scale * p, params)
        dtype = jax.tree.leaves(params)[0].dtype
        return freeze(model, v), jnp.zeros((), dtype)
