r"""The small-theta expansions of the wide-ResNet's energy, E_(1) and E_(2).

For the wide-ResNet X^{l+1} = X^l + (1/(L N)) sum_j sigma(theta_j^l X^l) with sigma smooth and
sigma(0) = 0, expanding the L residual blocks around theta = 0 ("Mean field models for
neural networks in teacher-student setting", eqs. (9)-(11); `WideResNet.expansion`) gives

    E_(k)(rho) = (1/2) E_x |X_(k)(x; rho) - y(x)|^2,      k = 1, 2,

with X_(1) linear in the layer measures (E_(1) is convex in rho: a full-support stationary
point has zero loss) and X_(2) quadratic (E_(2) is quartic in rho and can have local minima).
`ExpandedRisk` is that energy for any risk (a data set, a population by quadrature or Monte
Carlo): the inner objective with the network's map X^L replaced by X_(k), so its velocity is
-L N dE_(k)/dtheta_j^l, the Wasserstein gradient flow of E_(k) in the depth-limit measure
rho(theta, eps) (mobility in theta only: eps = l/L stays).
"""

from __future__ import annotations

import equinox as eqx
import jax

from .._typing import Array, Scalar
from ..errors import ConfigError
from ..models.activations import ACTIVATIONS
from ..models.base import AbstractModel
from ..models.resnet import WideResNet
from .base import AbstractObjective
from .population import PopulationRisk
from .risk import EmpiricalRisk


class ExpandedRisk(AbstractObjective):
    """E_(order) = the ``inner`` risk of X_(order) instead of X^L (``order`` 1 or 2), with the
    inner objective's L2 weight. Needs a `WideResNet` with sigma(0) = 0.

    Example:
        >>> import jax.numpy as jnp
        >>> from mfnn.models import WideResNet
        >>> from mfnn.targets import DataSet
        >>> x = jnp.array([[1.0, 0.0]]); data = DataSet(x, x)
        >>> e1 = ExpandedRisk(EmpiricalRisk(data), 1)
        >>> float(e1.risk(WideResNet(d=2, depth=3), jnp.zeros((6, 4))))  # X_(1) = x at 0
        0.0
    """

    inner: EmpiricalRisk | PopulationRisk
    order: int = eqx.field(static=True)
    l2: Array

    def __init__(self, inner: EmpiricalRisk | PopulationRisk, order: int):
        if order not in (1, 2):
            raise ConfigError(f"`objective.expansion` must be 1 or 2; got {order!r}.")
        self.inner, self.order, self.l2 = inner, order, inner.l2

    def expanded(self, model: AbstractModel) -> WideResNet:
        """``model`` with X^L replaced by X_(order); a `ConfigError` for another model or a
        sigma with sigma(0) != 0 (the expansion is around theta = 0)."""
        if not isinstance(model, WideResNet):
            raise ConfigError(
                "`objective.expansion` is the small-theta expansion of a wide-ResNet; it needs "
                f"`model.kind: wide_resnet`, got a {type(model).__name__}."
            )
        with jax.ensure_compile_time_eval():  # a Python number also under jit
            at_zero = float(ACTIVATIONS[model.activation](0.0))
        if at_zero != 0.0:
            raise ConfigError(
                "`objective.expansion` expands around theta = 0 and needs sigma(0) = 0 "
                f"(tanh, arctan, erf, relu); `model.activation` is {model.activation!r}."
            )
        return model.expanded(self.order)

    def risk(self, model, theta, x=None, y=None) -> Scalar:
        """E_(order) without the L2 weight, on the batch (x, y) if one is given."""
        return self.inner.risk(self.expanded(model), theta, x, y)

    def first_variation(self, model, theta, points):
        """Not defined pointwise for a layered measure: a `ConfigError`."""
        raise ConfigError(
            "the first variation of E_(k) depends on the particle's depth eps; it is not a "
            "function of theta alone (use the velocity)."
        )

    def velocity_blocks(self, model, blocks, x=None, y=None):
        """(v = -L N dE_(order)/dtheta in the block layout, E_(order) risk on the batch)."""
        return self.inner.velocity_blocks(self.expanded(model), blocks, x, y)
