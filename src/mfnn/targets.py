"""Targets and data: input laws, named targets (sign, teacher), data files.

A data set is a pair x (n, d), y (n,). It comes from a file (npz with ``x`` and ``y``)
or from a named target evaluated on inputs sampled from an input law.
"""

from __future__ import annotations

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._typing import Array, Float, Inputs, Key, Targets
from .errors import ConfigError
from .models.activations import check_activation_scale, get_activation, scaled_activation

# ------------------------------------------------------------------ input laws


class UniformBox(eqx.Module):
    """Inputs uniform on the box [low, high]^d."""

    dim: int = eqx.field(static=True, default=1)
    low: float = -1.0
    high: float = 1.0

    def __check_init__(self):
        if not isinstance(self.dim, int | np.integer) or self.dim < 1:
            raise ConfigError(f"`data.inputs.dim` must be a positive integer; got {self.dim!r}.")
        if not self.high > self.low:
            raise ConfigError(
                "`data.inputs` needs `low` < `high` for a uniform box; "
                f"got low={self.low!r}, high={self.high!r}."
            )

    def sample(self, key: Key, n: int, dtype) -> Inputs:
        return jax.random.uniform(key, (n, self.dim), dtype, self.low, self.high)


class GaussianInputs(eqx.Module):
    """Inputs x ~ N(0, std^2 I_d)."""

    dim: int = eqx.field(static=True, default=1)
    std: float = 1.0

    def __check_init__(self):
        if not isinstance(self.dim, int | np.integer) or self.dim < 1:
            raise ConfigError(f"`data.inputs.dim` must be a positive integer; got {self.dim!r}.")
        if not self.std > 0:
            raise ConfigError(f"`data.inputs.std` must be > 0; got {self.std!r}.")

    def sample(self, key: Key, n: int, dtype) -> Inputs:
        return self.std * jax.random.normal(key, (n, self.dim), dtype)


InputLaw = UniformBox | GaussianInputs

# --------------------------------------------------------------------- targets


class Sign(eqx.Module):
    """f*(x) = sign(x_1): the jump a ReLU network must learn to place its breakpoints at
    (the `sign` experiment; docs/theory.md section 15)."""

    def __call__(self, x: Inputs) -> Targets:
        return jnp.sign(x[:, 0])


class Teacher(eqx.Module):
    r"""Teacher network f*(x) = sum_i alpha_i a_i sigma(w_i . x + b_i) = int phi d rho*.

    The teacher measure is rho* = sum_i alpha_i delta_{c_i} (docs/theory.md section 12) with
    alpha_i >= 0 summing to 1; ``a`` defaults to 1 (fixed output weights) and ``b`` to 0.
    ``activation_scale`` s makes sigma(s z) the activation (`scaled_activation`).
    """

    w: Float[Array, "k d"]
    alpha: Float[Array, " k"]
    a: Float[Array, " k"]
    b: Float[Array, " k"]
    activation: str = eqx.field(static=True, default="relu")
    activation_scale: float = eqx.field(static=True, default=1.0)

    def __init__(self, w, alpha=None, a=None, b=None, activation="relu", activation_scale=1.0):
        w = np.atleast_2d(np.asarray(w, dtype=np.float64))
        k = w.shape[0]
        alpha = np.full(k, 1.0 / k) if alpha is None else np.asarray(alpha, np.float64)
        if alpha.shape != (k,):
            raise ConfigError(
                f"`data.teacher.alpha` must have one weight per teacher neuron ({k}); "
                f"got shape {alpha.shape}."
            )
        if np.any(alpha < 0) or not np.isclose(alpha.sum(), 1.0, atol=1e-9):
            raise ConfigError(
                "`data.teacher.alpha` must be non-negative weights summing to 1 "
                f"(rho* = sum alpha_i delta_c_i); got {alpha.tolist()} (sum {alpha.sum():.6g})."
            )
        for name, arr in (("a", a), ("b", b)):
            if arr is not None and np.shape(arr) != (k,):
                raise ConfigError(
                    f"`data.teacher.{name}` must have shape ({k},) like `data.teacher.alpha`; "
                    f"got {np.shape(arr)}."
                )
        get_activation(activation, "data.teacher.activation")
        self.w = jnp.asarray(w)
        self.alpha = jnp.asarray(alpha)
        self.a = jnp.asarray(np.ones(k) if a is None else np.asarray(a, np.float64))
        self.b = jnp.asarray(np.zeros(k) if b is None else np.asarray(b, np.float64))
        self.activation = activation
        self.activation_scale = check_activation_scale(
            activation_scale, "data.teacher.activation_scale"
        )

    def __call__(self, x: Inputs) -> Targets:
        z = x @ self.w.T.astype(x.dtype) + self.b.astype(x.dtype)
        act = scaled_activation(self.activation, self.activation_scale)(z)
        return act @ (self.alpha * self.a).astype(x.dtype)

    @property
    def dim(self) -> int:
        """The input dimension d."""
        return int(self.w.shape[1])


class ModelTeacher(eqx.Module):
    r"""A teacher of the student's kind: y(x) = f(x; theta*) for a deep model (`EnsembleResNet`,
    `WideResNet`, `Multilayer`) with particles theta* (rows).

    A vanilla ResNet X^{l+1} = X^l + (1/L) sigma(theta*^l X^l) is an `EnsembleResNet` with one
    particle; with weights ``alpha`` (k,) (ensemble only) the teacher is the measure
    rho* = sum_i alpha_i delta_{theta*_i} on Theta^L and y(x) = sum_i alpha_i X^L_{theta*_i}(x),
    the teacher of Theorem 3 of "Mean field models for neural networks in teacher-student
    setting".
    """

    model: eqx.Module
    theta: Float[Array, "k D"]
    alpha: Float[Array, " k"] | None = None

    def __check_init__(self):
        if self.alpha is not None:
            from .models.resnet import EnsembleResNet

            if not isinstance(self.model, EnsembleResNet):
                raise ConfigError(
                    "`data.teacher.alpha` weighs the atoms of a measure of ResNets; it is for "
                    f"`model.kind: ensemble_resnet`, not a {type(self.model).__name__}."
                )
            alpha = np.asarray(self.alpha)
            if alpha.shape != (self.theta.shape[0],) or np.any(alpha < 0):
                raise ConfigError(
                    f"`data.teacher.alpha` must be {self.theta.shape[0]} weights >= 0 (one per "
                    f"teacher ResNet); got {alpha.tolist()}."
                )
            if not np.isclose(alpha.sum(), 1.0, atol=1e-9):
                raise ConfigError(
                    f"`data.teacher.alpha` must sum to 1; got {alpha.tolist()} "
                    f"(sum {alpha.sum():.6g})."
                )

    def __call__(self, x: Inputs):
        theta = self.theta.astype(x.dtype)
        if self.alpha is None:
            return self.model.predict(theta, x)
        return jnp.einsum("i,nid->nd", self.alpha.astype(x.dtype), self.model.units(theta, x))

    @property
    def dim(self) -> int:
        """The input dimension d."""
        return int(self.model.d)


def teacher_measure(teacher: Teacher, model) -> tuple[Float[Array, "k D"], Float[Array, " k"]]:
    r"""The teacher measure rho* = sum_i alpha_i delta_{c_i} as atoms in the student's particle
    space (docs/theory.md section 12): rows c_i = (a_i, w_i, b_i) in the layout of ``model`` and
    weights alpha_i.

    A mean-field student f = int a sigma(w . x + b) d mu equals the teacher exactly when
    mu = rho*, which is what makes W2(mu, rho*) a distance to the target. This needs a
    mean_field model (gamma = 1: with gamma < 1 the student is not an integral against its
    measure), the teacher's activation and input dimension, a_i == 1 when the student has
    no output column, and b_i == 0 when it has no bias.

    Raises:
        ConfigError: naming the field that does not match the model.

    Example:
        >>> from mfnn.models import TwoLayer
        >>> t = Teacher([[1.0], [-2.0]], alpha=[0.25, 0.75], a=[2.0, 1.0], activation="tanh")
        >>> atoms, alpha = teacher_measure(t, TwoLayer(d=1, activation="tanh", bias=False))
        >>> atoms.tolist(), alpha.tolist()
        ([[2.0, 1.0], [1.0, -2.0]], [0.25, 0.75])
    """
    if not model.scaling.mean_field:
        raise ConfigError(
            "the teacher measure rho* lives in the particle space of a mean_field student "
            f"(f = int phi d mu); `model.scaling` is {model.scaling.name!r} "
            f"(gamma = {model.gamma:g}, alpha = {model.scaling.alpha:g})."
        )
    if teacher.activation != model.activation:
        raise ConfigError(
            f"`data.teacher.activation` is {teacher.activation!r} but `model.activation` is "
            f"{model.activation!r}: rho* is a measure over the student's units only when "
            "they agree."
        )
    if teacher.activation_scale != model.activation_scale:
        raise ConfigError(
            f"`data.teacher.activation_scale` is {teacher.activation_scale:g} but "
            f"`model.activation_scale` is {model.activation_scale:g}: rho* is a measure over "
            "the student's units only when they agree."
        )
    if teacher.w.shape[1] != model.d:
        raise ConfigError(
            f"`data.teacher.w` has dimension {teacher.w.shape[1]}, the model {model.d}."
        )
    a, b = np.asarray(teacher.a), np.asarray(teacher.b)
    if not model.train_output and not np.allclose(a, 1.0):
        raise ConfigError(
            "`data.teacher.a` must be 1 when `model.train_output` is false (the student's "
            f"a == 1, so rho* has no a column); got {a.tolist()}."
        )
    if not model.bias and not np.allclose(b, 0.0):
        raise ConfigError(
            f"`data.teacher.b` must be 0 when `model.bias` is false; got {b.tolist()}."
        )
    atoms = model.join(
        teacher.a if model.train_output else None,
        teacher.w,
        teacher.b if model.bias else None,
    )
    return atoms, teacher.alpha


TARGETS = ("sign", "teacher")

# ------------------------------------------------------------------ data sets


class DataSet(eqx.Module):
    """Training inputs and outputs, x (n, d), y (n,) (or (n, k): vector-valued targets)."""

    x: Inputs
    y: Targets

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def d(self) -> int:
        return int(self.x.shape[1])


def sample_dataset(target, inputs: InputLaw, n: int, key: Key, dtype=jnp.float64, noise=0.0):
    """n inputs from ``inputs`` and y = target(x) (+ N(0, noise^2) if noise > 0).

    One compiled program per (target, law, n, dtype); ``noise`` is traced (y + 0 * z = y
    exactly when it is 0), so data sets that differ in their noise level share it."""
    x, y = _sample_xy(target, inputs, int(n), key, jnp.dtype(dtype), jnp.asarray(noise))
    return DataSet(x, y)


@eqx.filter_jit
def _sample_xy(target, inputs: InputLaw, n: int, key: Key, dtype, noise):
    kx, ke = jax.random.split(key)
    x = inputs.sample(kx, n, dtype)
    y = target(x)
    y = y + noise.astype(dtype) * jax.random.normal(ke, y.shape, dtype)
    return x, y.astype(dtype)


def load_dataset(path: str | os.PathLike, dtype=jnp.float64, field="data.path") -> DataSet:
    """Read a data file: npz with ``x`` (n, d) and ``y`` (n,) or (n, k)."""
    from .measure import read_npz  # the rules every input file obeys (numeric, finite, ...)

    data = read_npz(path, field, "data file")
    missing = [k for k in ("x", "y") if k not in data]
    if missing:
        raise ConfigError(
            f"`{field}`: data file {str(path)!r} lacks {missing}; it needs `x` (n, d) and "
            f"`y` (n,); it has {sorted(data)}."
        )
    x, y = np.asarray(data["x"]), np.asarray(data["y"])
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or y.ndim not in (1, 2) or y.shape[0] != x.shape[0]:
        raise ConfigError(
            f"`{field}`: in {str(path)!r}, `x` must be (n, d) and `y` (n,) (or (n, k) for a "
            f"vector-valued target such as a ResNet's) with the same n; got x "
            f"{tuple(data['x'].shape)}, y {tuple(y.shape)}."
        )
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ConfigError(f"`{field}`: data file {str(path)!r} contains NaN or inf.")
    return DataSet(jnp.asarray(x, dtype), jnp.asarray(y, dtype))
