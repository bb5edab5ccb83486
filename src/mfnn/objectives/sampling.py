"""Where a step's batch comes from: the full data, minibatches, or fresh samples."""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .._typing import Inputs, Key, Targets
from ..errors import ConfigError
from ..targets import DataSet, InputLaw, Sign, Teacher


class AbstractSampler(eqx.Module):
    """Where the batch of step k comes from. ``stochastic``: it draws randomness (from
    ``fold_in(key, step)``, so a step's batch depends only on the key and the step)."""

    stochastic: ClassVar[bool]

    @abc.abstractmethod
    def __call__(self, key: Key, step) -> tuple[Inputs, Targets] | tuple[None, None]:
        """(x, y) of step ``step``; (None, None) for the objective's exact risk."""


class FullBatch(AbstractSampler):
    """Every step sees the whole training set (gradient flow / gradient descent)."""

    data: DataSet

    stochastic = False

    def __call__(self, key: Key, step) -> tuple[Inputs, Targets]:
        del key, step
        return self.data.x, self.data.y


class Exact(AbstractSampler):
    """Every step uses the objective's own exact risk: the whole data set of an
    `EmpiricalRisk`, the closed form or quadrature of a `PopulationRisk` (no batch)."""

    stochastic = False

    def __call__(self, key: Key, step) -> tuple[None, None]:
        del key, step
        return None, None


class Minibatch(AbstractSampler):
    """Minibatches of the data set without replacement within each epoch.

    Step k lies in epoch e = k // B (B = n // batch_size batches per epoch; the remainder
    of a permutation is dropped); the permutation of epoch e is drawn from
    ``fold_in(key, e)``, so the batch of a step depends only on (key, step) and a resumed
    run sees the same batches.
    """

    data: DataSet
    batch_size: int = eqx.field(static=True)

    stochastic = True

    def __check_init__(self):
        if not 1 <= self.batch_size <= self.data.n:
            raise ConfigError(
                f"`dynamics.batch_size` must be between 1 and the number of training points "
                f"({self.data.n}); got {self.batch_size!r}."
            )

    def __call__(self, key: Key, step) -> tuple[Inputs, Targets]:
        per_epoch = self.data.n // self.batch_size
        epoch, pos = step // per_epoch, step % per_epoch
        perm = jax.random.permutation(jax.random.fold_in(key, epoch), self.data.n)
        idx = jax.lax.dynamic_slice(perm, (pos * self.batch_size,), (self.batch_size,))
        return self.data.x[idx], self.data.y[idx]


class Online(AbstractSampler):
    """Fresh samples x ~ P, y = f*(x) at every step (online SGD)."""

    inputs: InputLaw
    target: Sign | Teacher
    batch_size: int = eqx.field(static=True)
    dtype: str = eqx.field(static=True, default="float64")

    stochastic = True

    def __check_init__(self):
        if not self.batch_size >= 1:
            raise ConfigError(f"`dynamics.batch_size` must be >= 1; got {self.batch_size!r}.")

    def __call__(self, key: Key, step) -> tuple[Inputs, Targets]:
        x = self.inputs.sample(
            jax.random.fold_in(key, step), self.batch_size, jnp.dtype(self.dtype)
        )
        return x, self.target(x).astype(x.dtype)
