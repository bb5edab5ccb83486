"""Empirical square-loss risk, its first variation and the particle velocity (THEORY.md s.2)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._typing import Array, Float, Inputs, Particles, Scalar, Targets
from ..errors import ConfigError
from ..targets import DataSet


class EmpiricalRisk(eqx.Module):
    r"""Square-loss risk on a data set, with optional L2 weight.

        R(mu) = (1/(2n)) sum_i (f(x_i; mu) - y_i)^2,
        E(mu) = R(mu) + (lambda/2) int |theta|^2 dmu    (lambda = ``l2``).

    First variation (mean_field, THEORY.md section 2):

        dE/dmu(theta) = E_x[(f(x; mu) - y(x)) phi(x; theta)] + (lambda/2) |theta|^2,

    and the velocity of particle j is v(theta_j) = -grad_theta dE/dmu(theta_j)
    = -m dE/dtheta_j. For a general scaling gamma the velocity is
    -m^(2 gamma - 1) dE/dtheta_j (THEORY.md section 1); `first_variation` is then rescaled,

        Phi(theta) = m^(gamma - 1) E_x[(f - y) phi(x; theta)]
                     + m^(2 gamma - 2) (lambda/2) |theta|^2,

    so that v = -grad Phi in every scaling (Phi = dE/dmu when gamma = 1).
    Frozen blocks (``model.trainable``) get zero velocity.

    Args:
        data: training set x (n, d), y (n,); `risk` and `energy` use it unless a batch is
            passed.
        l2: lambda >= 0.
        fused: use the model's hand-fused pullback when it has one (default); False
            forces the generic ``jax.vjp`` path.
    """

    data: DataSet
    l2: float = eqx.field(static=True, default=0.0)
    fused: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if not self.l2 >= 0:
            raise ConfigError(f"`objective.l2` must be >= 0; got {self.l2!r}.")

    def _batch(self, x, y):
        return (self.data.x, self.data.y) if x is None else (x, y)

    def risk(
        self, model, theta: Particles, x: Inputs | None = None, y: Targets | None = None
    ) -> Scalar:
        """R = (1/(2n)) sum_i (f(x_i) - y_i)^2 on the data (or the given batch)."""
        x, y = self._batch(x, y)
        return 0.5 * jnp.mean((model.predict(theta, x) - y) ** 2)

    def penalty(self, theta: Particles) -> Scalar:
        """(lambda/2) (1/m) sum_j |theta_j|^2."""
        return 0.5 * self.l2 * jnp.mean(jnp.sum(theta**2, axis=-1))

    def energy(self, model, theta: Particles, x=None, y=None) -> Scalar:
        """E = R + (lambda/2) mean_j |theta_j|^2, the functional the flow decreases."""
        return self.risk(model, theta, x, y) + self.penalty(theta)

    def first_variation(
        self, model, theta: Particles, points: Float[Array, "k D"], x=None, y=None
    ) -> Float[Array, " k"]:
        """Phi(theta') at each row of ``points``, with mu = mu_m(theta) held fixed."""
        x, y = self._batch(x, y)
        m = theta.shape[0]
        residual = model.predict(theta, x) - y
        phi = model.features(points, x)  # (n, k)
        value = m ** (model.gamma - 1.0) * (residual @ phi) / x.shape[0]
        if self.l2:
            value = value + m ** (2 * model.gamma - 2) * 0.5 * self.l2 * jnp.sum(points**2, -1)
        return value

    def velocity(self, model, theta: Particles, x=None, y=None) -> tuple[Particles, Scalar]:
        """v(theta_j) = -grad Phi(theta_j), all j at once, and the batch risk.

        The residual is held fixed (mu frozen), so the pullback of sum_j Phi(theta_j)
        through the features gives every particle's gradient in one pass. Models with a
        hand-fused ``predict_and_pullback_blocks`` (`TwoLayer`) use it (two GEMMs, the
        speed of a hand-written loop); others, and ``fused=False``, use ``jax.vjp`` of
        ``model.features``. The two are tested equal.

        Returns:
            (v (m, D), R on the batch)
        """
        if hasattr(model, "to_blocks"):
            v, loss = self.velocity_blocks(model, model.to_blocks(theta), x, y)
            return model.from_blocks(v), loss
        return self._velocity(model, theta, _identity, x, y)

    def velocity_blocks(self, model, blocks: tuple[Array, ...], x=None, y=None):
        """`velocity` in the model's block layout (`TwoLayer.to_blocks`): the layout
        `simulate` steps in. Returns (v as blocks, R on the batch)."""
        return self._velocity(model, blocks, model.from_blocks, x, y)

    def _velocity(self, model, params, to_rows, x, y):
        x, y = self._batch(x, y)
        return weighted_velocity(model, params, to_rows, x, y, None, self.l2, self.fused)


def weighted_velocity(model, params, to_rows, x, y, weights, l2: float, fused: bool = True):
    r"""-grad Phi at every particle for R = (1/2) sum_i omega_i (f(x_i) - y_i)^2.

    ``weights`` omega (n,) sum to 1 (a quadrature rule); None means omega_i = 1/n (a data
    set). ``params`` are particles as rows (``to_rows`` the identity) or in the model's
    block layout (``to_rows = model.from_blocks``). The residual is held fixed, so one
    pullback of sum_j Phi(theta_j) gives every particle's velocity:

        v_j = -m^(2 gamma - 1) dE/dtheta_j = -m^(gamma - 1) sum_i omega_i (f_i - y_i)
              grad phi(x_i; theta_j) - lambda m^(2 gamma - 2) theta_j.

    Returns (v in the layout of ``params``, R).
    """
    n = x.shape[0]
    if fused and hasattr(model, "predict_and_pullback_blocks") and to_rows is not _identity:
        f, pullback = model.predict_and_pullback_blocks(params, x)
        m = model.unpack_blocks(params)[1].shape[1]
    else:
        phi, vjp = jax.vjp(lambda p: model.features(to_rows(p), x), params)
        m = phi.shape[1]
        f = model.output_scale(m) * jnp.sum(phi, axis=1)

        def pullback(weight):
            return vjp(jnp.broadcast_to(weight[:, None], phi.shape).astype(phi.dtype))[0]

    residual = f - y
    omega = 1.0 / n if weights is None else weights
    weight = jax.lax.stop_gradient(residual) * omega * m ** (model.gamma - 1.0)
    v = jax.tree.map(jnp.negative, pullback(weight))
    if l2:
        c = l2 * m ** (2 * model.gamma - 2)
        v = jax.tree.map(lambda vi, p: vi - c * p, v, params)
    v = freeze(model, v)
    loss = 0.5 * (jnp.mean(residual**2) if weights is None else jnp.sum(weights * residual**2))
    return v, loss


def _identity(theta):
    return theta


def freeze(model, v):
    """Zero the velocity of the blocks ``model.trainable`` leaves out (rows or blocks)."""
    if set(model.trainable) == set(model.present_blocks):
        return v
    if isinstance(v, tuple):
        return tuple(
            vi if blk in model.trainable else jnp.zeros_like(vi)
            for blk, vi in zip(model.present_blocks, v, strict=True)
        )
    return v * model.mask(v.dtype)
