"""The zero risk R == 0 with the L2 weight only: the reference problem of the noisy dynamics."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._typing import Array, Float, Particles, Scalar
from .base import AbstractObjective
from .risk import nonnegative


class ZeroRisk(AbstractObjective):
    r"""R(mu) == 0, so E(mu) = (lambda/2) int |theta|^2 dmu and v(theta) = -lambda theta.

    With the mean-field Langevin dynamics this is the Ornstein-Uhlenbeck process
    d theta = -lambda theta dt + sqrt(2/beta) dB: the law stays Gaussian, with mean
    e^(-lambda t) mean_0 and covariance e^(-2 lambda t) Sigma_0 + (1 - e^(-2 lambda t)) /
    (beta lambda) I, and the Gibbs fixed point rho* proportional to
    exp(-beta lambda |theta|^2 / 2) is N(0, I / (beta lambda)). For a general scaling gamma
    the first variation is rescaled as in `EmpiricalRisk`: Phi = m^(2 gamma - 2) (lambda/2)
    |theta|^2 and v = -grad Phi = -m^(2 gamma - 2) lambda theta. Frozen blocks do not move.

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

    l2: Array

    def __init__(self, l2: float = 0.0):
        self.l2 = nonnegative(l2, "objective.l2")

    def risk(self, model, theta: Particles, x=None, y=None) -> Scalar:
        """R == 0."""
        del model, x, y
        return jnp.zeros((), theta.dtype)

    def first_variation(self, model, theta: Particles, points: Float[Array, "k D"]):
        """Phi(theta') = m^(2 gamma - 2) (lambda/2) |theta'|^2."""
        c = model.scaling.confinement(theta.shape[0])
        return c * 0.5 * self.l2.astype(points.dtype) * jnp.sum(points**2, -1)

    def velocity_blocks(self, model, blocks, x=None, y=None):
        """(v = -m^(2 gamma - 1) lambda theta_j / m, R = 0) in the block layout: the
        derivative of (lambda/2) mean_k |theta_k|^2 in theta_j is lambda theta_j / m."""
        m = model.width(blocks)
        scale = -self.l2 * model.velocity_scale(m) / m
        v = jax.tree.map(lambda p: scale.astype(p.dtype) * p, blocks)
        dtype = jax.tree.leaves(blocks)[0].dtype
        return model.freeze(v), jnp.zeros((), dtype)
