r"""The multilayer mean-field network: H >= 2 hidden layers of N units, 1/N in every layer.

The formulation is that of Nguyen and Pham (2020, "A rigorous framework for the mean field
limit of multilayer neural networks"; also Araujo, Oliveira and Yukimura 2019, Sirignano and
Spiliopoulos 2020 for H = 2): with no biases,

    h_1(x)_k   = W_1[k] . x,
    h_{l+1}(x)_k = (1/N) sum_j W_{l+1}[j, k] sigma(h_l(x)_j),    1 <= l < H,
    f(x)       = (1/N) sum_k a_k sigma(h_H(x)_k),

all weights O(1). The time scaling is theirs: each weight moves O(1) in O(1) time when the
gradient flow on E is rescaled by the number of weights its derivative averages over,

    dW_1[k]/dt = -N dE/dW_1[k],   dW_l[j, k]/dt = -N^2 dE/dW_l[j, k],   da_k/dt = -N dE/da_k.

``scaling: ntk`` is the neural-tangent parametrisation of Jacot, Gabriel and Hongler (2018):
every 1/N above becomes 1/sqrt(N) and every factor of the flow is 1 (each weight moves
O(N^-1/2): lazy training).

Particles. mfnn steps one array of rows with one velocity factor, m^(2 gamma - 1) dE/drow
(`mfnn.models.scaling`), so the middle weights are stored rescaled, U_l = W_l / sqrt(N) in
mean_field (U_l = W_l in ntk): h_{l+1} = N^(-1/2) sum_j U_{l+1}[j, k] sigma(h_l)_j in both
scalings, and the flow -N dE/dU_l is exactly -N^2 dE/dW_l. Row j of the (N, d + (H-1) N + 1)
array holds W_1[j] (d), U_2[j, :], ..., U_H[j, :] (each N: the weights leaving unit j of
layer l) and a_j. Relative movements (|U(t) - U(0)| / |U(0)|) equal those of W. Particle
files hold the true weights: ``w1`` (N, d), ``w2`` ... ``wH`` (N, N), ``a`` (N,).
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._typing import Array, Float, Inputs, Key, Particles
from ..errors import ConfigError
from .activations import ACTIVATIONS, get_activation
from .base import AbstractModel
from .resnet import _kind_of_file, _positive
from .scaling import Scaling


class Multilayer(AbstractModel):
    r"""A fully connected network with ``hidden`` = H >= 2 hidden layers of N units each,
    in the mean-field (or ntk) parametrisation of the module docstring. Output scalar.

    Rows (N, d + (H-1) N + 1); blocks (W_1^T (d, N), U_2^T (N, N), ..., U_H^T, a (N,)),
    the particle index on each leaf's last axis.

    Args:
        d: input dimension.
        width: N, the units of every hidden layer (the row length depends on it).
        hidden: H, the number of hidden layers (>= 2; H = 1 is `TwoLayer`).
        activation: any of `mfnn.models.ACTIVATIONS`.
        scaling: "mean_field" or "ntk".

    Example:
        >>> import jax.numpy as jnp
        >>> net = Multilayer(d=1, width=4, hidden=2, activation="tanh")
        >>> net.dim  # d + (H - 1) N + 1
        6
        >>> net.predict(jnp.zeros((4, 6)), jnp.array([[1.0]])).tolist()
        [0.0]
    """

    d: int = eqx.field(static=True)
    units: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    scaling: Scaling

    def __init__(
        self, d: int, width: int, hidden: int = 2, activation: str = "tanh", scaling="mean_field"
    ):
        self.d, self.units, self.hidden, self.activation = d, width, hidden, activation
        self.scaling = Scaling.of(scaling)

    def __check_init__(self):
        _positive(self.d, "model.d")
        _positive(self.units, "model.width")
        if isinstance(self.hidden, bool) or not isinstance(self.hidden, int) or self.hidden < 2:
            raise ConfigError(
                f"`model.hidden` (hidden layers of a multilayer network) must be an integer "
                f">= 2 (one hidden layer is `model.kind: two_layer`); got {self.hidden!r}."
            )
        get_activation(self.activation)
        if self.scaling.name not in ("mean_field", "ntk"):
            raise ConfigError(
                "`model.scaling` of a multilayer network must be 'mean_field' or 'ntk' (a "
                f"general gamma has no single time scale across layers); got {self.scaling.name!r}."
            )

    # ----------------------------------------------------------------- layout
    @property
    def dim(self) -> int:
        """d + (H - 1) N + 1."""
        return self.d + (self.hidden - 1) * self.units + 1

    def trainable_columns(self) -> np.ndarray:
        """Every column moves."""
        return np.arange(self.dim)

    def freeze(self, v):
        """Every weight moves."""
        return v

    def _split(self, theta: Particles) -> list[Array]:
        n = self.units
        if theta.ndim != 2 or theta.shape != (n, self.dim):
            raise ConfigError(
                f"multilayer particles for N = {n} must be rows ({n}, {self.dim}) "
                f"(d + (H-1) N + 1 columns); got shape {tuple(theta.shape)}."
            )
        cuts = np.cumsum([self.d] + [n] * (self.hidden - 1))
        return jnp.split(theta, cuts, axis=1)

    def to_blocks(self, theta: Particles) -> tuple[Array, ...]:
        """(W_1^T (d, N), U_2^T, ..., U_H^T (N, N), a (N,)): column j of each is unit j."""
        parts = self._split(theta)
        return (*(p.T for p in parts[:-1]), parts[-1][:, 0])

    def from_blocks(self, blocks: tuple[Array, ...]) -> Particles:
        return jnp.concatenate([*(b.T for b in blocks[:-1]), blocks[-1][:, None]], axis=1)

    # --------------------------------------------------------------- function
    def _inner(self, n: int) -> float:
        return 1.0 / math.sqrt(n)

    def _outer(self, n: int) -> float:
        return 1.0 / n if self.scaling.mean_field else 1.0 / math.sqrt(n)

    def hidden_blocks(self, blocks, x: Inputs) -> list[Array]:
        """The pre-activations h_1, ..., h_H at x, each (n, N)."""
        sigma = ACTIVATIONS[self.activation]
        w1_t, *middle, _ = blocks
        n = w1_t.shape[-1]
        h = [x.astype(w1_t.dtype) @ w1_t]
        for u_t in middle:  # h_{l+1} = N^-1/2 sigma(h_l) @ U  (U_t = U^T)
            h.append(self._inner(n) * (sigma(h[-1]) @ u_t.T))
        return h

    def predict_blocks(self, blocks, x: Inputs) -> Float[Array, " n"]:
        sigma = ACTIVATIONS[self.activation]
        a = blocks[-1]
        return self._outer(a.shape[0]) * (sigma(self.hidden_blocks(blocks, x)[-1]) @ a)

    def predict(self, theta: Particles, x: Inputs) -> Float[Array, " n"]:
        """f(x) = c_N sum_k a_k sigma(h_H(x)_k), c_N = 1/N (mean_field) or N^-1/2 (ntk)."""
        return self.predict_blocks(self.to_blocks(theta), x)

    def layer_movement(self, theta: Particles, theta0: Particles) -> dict[str, Array]:
        """|P(t) - P(0)|_F / |P(0)|_F for each weight block P (w1, w2, ..., a)."""
        out = {}
        for i, (p, p0) in enumerate(zip(self._split(theta), self._split(theta0), strict=True)):
            name = "a" if i == self.hidden else f"w{i + 1}"
            out[name] = jnp.linalg.norm(p - p0) / jnp.linalg.norm(p0)
        return out

    # ---------------------------------------------------------- particle files
    def _weight_scale(self, n: int) -> float:
        """W_l = c U_l: c = sqrt(N) in mean_field, 1 in ntk."""
        return math.sqrt(n) if self.scaling.mean_field else 1.0

    def particle_arrays(self, theta: Particles) -> dict[str, np.ndarray]:
        """``w1`` (N, d), ``w2``..``wH`` (N, N) (true weights W_l[j, k]) and ``a`` (N,)."""
        parts = [np.asarray(p) for p in self._split(jnp.asarray(theta))]
        n = parts[0].shape[0]
        out = {"w1": parts[0]}
        for i, u in enumerate(parts[1:-1]):
            out[f"w{i + 2}"] = self._weight_scale(n) * u
        out["a"] = parts[-1][:, 0]
        return out

    def from_arrays(self, arrays: dict[str, np.ndarray], where: str, dtype) -> Particles:
        names = ["w1", *(f"w{i}" for i in range(2, self.hidden + 1)), "a"]
        missing = [k for k in names if k not in arrays]
        if missing:
            raise ConfigError(
                f"{where} lacks {missing} of a multilayer network with H = {self.hidden} "
                f"hidden layers (it needs {names}); it has {sorted(arrays)}"
                f"{_kind_of_file(arrays)}."
            )
        w1 = np.asarray(arrays["w1"])
        n = self.units
        if w1.shape != (n, self.d):
            raise ConfigError(
                f"{where}: `w1` must be ({n}, {self.d}) (N = `model.width`, d); got "
                f"{tuple(w1.shape)}."
            )
        cols = [w1]
        for k in names[1:-1]:
            w = np.asarray(arrays[k])
            if w.shape != (n, n):
                raise ConfigError(f"{where}: `{k}` must be ({n}, {n}); got {tuple(w.shape)}.")
            cols.append(w / self._weight_scale(n))
        a = np.asarray(arrays["a"]).reshape(-1)
        if a.shape != (n,):
            raise ConfigError(f"{where}: `a` must be ({n},); got {tuple(np.shape(arrays['a']))}.")
        cols.append(a[:, None])
        return jnp.asarray(np.concatenate(cols, axis=1), dtype)

    def sample(self, key: Key, m: int, laws: dict[str, Any], dtype) -> Particles:
        """W_1 from ``laws["w"]``, the true middle weights W_l from ``laws["hidden"]``
        (default: the w law), a from ``laws["a"]``, i.i.d.; stored as rows."""
        if m != self.units:
            raise ConfigError(f"`model.width` is {self.units}; cannot draw {m} units.")
        hidden_law = laws.get("hidden", laws["w"])
        cols = [laws["w"].sample(jax.random.fold_in(key, 1), (m, self.d), dtype)]
        for i in range(self.hidden - 1):
            w = hidden_law.sample(jax.random.fold_in(key, 10 + i), (m, m), dtype)
            cols.append(w / self._weight_scale(m))
        cols.append(laws["a"].sample(jax.random.fold_in(key, 0), (m, 1), dtype))
        return jnp.concatenate(cols, axis=1)
