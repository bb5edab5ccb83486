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


class Given(AbstractSampler):
    """The batch of one step, drawn beforehand: ``(x, y)`` whatever the key and step.

    The compiled loop of a tiny problem (`mfnn.loop.unroll_factor`) draws the batches of
    several consecutive steps k0, ..., k0 + U - 1 of a stochastic sampler at once (one
    vectorised draw, `prefetch`) and hands step k0 + u the sampler ``Given(x[u], y[u])``:
    the same numbers the sampler would have drawn at that step, since a stochastic
    sampler's batch depends only on (key, step).
    """

    x: Inputs
    y: Targets

    stochastic = True

    def __call__(self, key: Key, step) -> tuple[Inputs, Targets]:
        del key, step
        return self.x, self.y


def draw_bytes(sampler: AbstractSampler, key: Key) -> int:
    """The bytes one step's draw of ``sampler`` holds at once: its batch (x, y) and, for
    `Minibatch`, the permutation of the epoch it slices (n indices). `prefetch` of U steps
    holds U times this."""
    shapes = jax.tree.leaves(jax.eval_shape(lambda s, k: s(k, 0), sampler, key))
    nbytes = sum(a.size * a.dtype.itemsize for a in shapes)
    if isinstance(sampler, Minibatch):
        nbytes += sampler.data.n * jnp.dtype(jnp.int_).itemsize
    return int(nbytes)


def prefetch(sampler: AbstractSampler, key: Key, steps) -> Given:
    """The batches of ``steps`` (U consecutive, possibly traced, steps) of a stochastic
    ``sampler``, drawn in one vectorised call: ``Given(xs, ys)`` with a leading axis U,
    (xs[u], ys[u]) = sampler(key, steps[u]) exactly (a scan over it hands each step its
    own ``Given``).

    Raises:
        ConfigError: for a deterministic sampler (`FullBatch`, `Exact`): it draws nothing.
    """
    if not sampler.stochastic:
        raise ConfigError(
            f"prefetch draws the batches of a stochastic sampler; got {type(sampler).__name__}, "
            "which draws nothing."
        )
    xs, ys = jax.vmap(lambda k: sampler(key, k))(jnp.asarray(steps))
    return Given(xs, ys)
