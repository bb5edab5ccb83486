r"""One run's particles split across devices: the particle axis sharded, the rest replicated.

A mean-field network is an average over its particles,

    f_m(x) = m^(-gamma) sum_{j=1}^m phi(x; theta_j),

so the m particles split into N groups of m / N, one group a device, with nothing but
the sum to share. `ParticleSharding` lays a run out that way over a one-axis
`jax.sharding.Mesh` (axis name ``"particles"``, `AXIS`):

- the particles, rows (m, D), are sharded along m: ``NamedSharding(mesh, P("particles"))``
  (device k holds the rows k m/N, ..., (k + 1) m/N - 1); in the model's block layout
  (`mfnn.models.AbstractModel.to_blocks`, the particle index on each leaf's last axis)
  the last axis is the sharded one;
- every other array of the run is replicated on every device: the data (x, y), the test
  set, a teacher, the traced numbers (dt, beta, lambda, the drift scale), the PRNG key.

The compiled loop (`mfnn.loop.advance`) is unchanged: jit compiles it for sharded inputs
as one SPMD program (GSPMD: Xu et al. 2021, "GSPMD: General and Scalable Parallelization
for ML Computation Graphs"). Each device computes its partial sum
S_k(x_i) = sum_{j in group k} phi(x_i; theta_j) over its own particles, and XLA inserts
one all-reduce (a psum over the ``particles`` axis) that gives every device
f_m(x_i) = m^(-gamma) sum_k S_k(x_i). The velocity of particle j, minus the gradient of
the first variation, v_j = -E_x[(f(x) - y(x)) grad_theta phi(x; theta_j)] for the square
loss (Mei, Montanari and Nguyen 2018; Chizat and Bach 2018), needs f and theta_j only,
so it is computed where theta_j lives, with no further communication.

Cost model (the full-batch two-layer step, n data points, N devices): compute
O(n d m / N) per device and step; communication one all-reduce of the n outputs
f(x_1..x_n) per forward pass (one for `Euler`, two for `Heun`), plus a few scalars
(loss, energy) at records: O(n) words per step, independent of m. A step pays the
all-reduce latency, so sharding pays when n d m / N is large against it (one run too big
or too slow for one device); for many small independent runs use a sweep's process pool
or Dask instead (`mfnn.sweep`). Record-time metrics that need every particle at once
(the kNN entropy, W2 to a reference) gather the particles at records only.

Results agree with one device to round-off, not bit for bit: the partial sums change
the order of the sum over particles. Random numbers do not depend on the sharding: a
draw is a function of the key and the global shape only (JAX's partitionable threefry),
so a Langevin run sees the same noise on 1, 2 or 4 devices.

`simulate` takes ``devices``; `simulate_batch` (the seed batches of a sweep) runs on one
device. Many independent runs are spread over processes (a sweep's pool, or Dask), not
over a mesh: they share nothing, so they need no all-reduce.

Every model runs correctly sharded (SPMD keeps the semantics); the O(n) communication
holds for the unit models, whose particles interact only through f (`TwoLayer`,
`EnsembleResNet`). For a model whose units are coupled otherwise (`Multilayer`'s
hidden-to-hidden blocks) XLA gathers what it needs, and sharding may not pay.

Example:
    >>> particle_sharding(1, 64) is None  # one device: the plain path, nothing placed
    True
    >>> check_width(64, 4)  # 16 particles a device
    >>> check_width(62, 4)
    Traceback (most recent call last):
    ...
    mfnn.errors.ConfigError: `devices` (4) must divide the number of particles m ...
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .errors import ConfigError

AXIS = "particles"
"""The name of the mesh axis the particles are split along."""

HOST_DEVICES_HINT = (
    "on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N set before JAX starts "
    "makes N host devices"
)


def device_count(devices: int | str | None) -> int:
    """The number of devices a request asks for: None or 1 -> 1, an integer N -> N,
    ``"all"`` -> every device JAX sees (``len(jax.devices())``).

    Raises:
        ConfigError: naming `devices`, for anything but a positive integer or "all", and
            for more devices than JAX sees.

    Example:
        >>> device_count(None), device_count(1)
        (1, 1)
    """
    if devices is None:
        return 1
    available = len(jax.devices())
    if isinstance(devices, str) and devices == "all":
        return available
    if isinstance(devices, bool) or not isinstance(devices, numbers.Integral) or devices < 1:
        raise ConfigError(
            "`devices` must be a positive integer (how many devices share the particles) or "
            f'"all"; got {devices!r}. Use `devices: 1` (the default) for one device.'
        )
    if devices > available:
        kinds = sorted({d.platform for d in jax.devices()})
        raise ConfigError(
            f"`devices` must be at most the number of devices JAX sees ({available}, "
            f"{'/'.join(kinds)}); got {int(devices)}. Use `devices: all` or a smaller count "
            f"({HOST_DEVICES_HINT})."
        )
    return int(devices)


def check_width(m: int, count: int) -> None:
    """Refuse m particles that do not split evenly over ``count`` devices.

    Raises:
        ConfigError: naming `devices`, when m mod count != 0.
    """
    if count > 1 and m % count:
        raise ConfigError(
            f"`devices` ({count}) must divide the number of particles m (`model.width`): "
            f"each device holds m / {count} of them; got m = {m}. Use a width that is a "
            f"multiple of {count} (e.g. {count * max(m // count, 1)}) or another device count."
        )


def check_particle_run(kind: str, devices: int | str | None) -> None:
    """Refuse `devices` other than 1 for a run without particles (``dynamics.kind:
    pde``, the density on a grid)."""
    if kind == "pde" and devices not in (None, 1):
        raise ConfigError(
            "`devices` splits a run's particles over devices; `dynamics.kind: pde` solves "
            f"for a density on a grid on one device; got devices = {devices!r}. Remove "
            "`devices` (or set it to 1)."
        )


@dataclasses.dataclass(frozen=True)
class ParticleSharding:
    """Where a run's arrays live on a one-axis mesh: particles split, the rest replicated.

    Attributes:
        mesh: a `jax.sharding.Mesh` with the one axis `AXIS` over N devices.
    """

    mesh: Mesh

    @property
    def count(self) -> int:
        """N, the number of devices."""
        return int(self.mesh.size)

    def rows(self) -> NamedSharding:
        """The sharding of particle rows (m, D): the first axis split."""
        # P(AXIS), not P(AXIS, None): the spec XLA gives the loop's output, so that the
        # next chunk finds its input sharded the same way and does not compile again
        return NamedSharding(self.mesh, P(AXIS))

    def replicated_sharding(self) -> NamedSharding:
        """A full copy on every device."""
        return NamedSharding(self.mesh, P())

    def particles(self, theta) -> jax.Array:
        """The rows (m, D) placed sharded along m (m / N rows a device)."""
        check_width(int(np.shape(theta)[0]), self.count)
        return jax.device_put(theta, self.rows())

    def blocks(self, blocks) -> Any:
        """A model's block layout (`to_blocks`: particles on each leaf's last axis) placed
        sharded along that last axis."""

        def put(leaf):
            spec = P(*([None] * (np.ndim(leaf) - 1)), AXIS)
            return jax.device_put(leaf, NamedSharding(self.mesh, spec))

        return jax.tree.map(put, blocks)

    def replicated(self, tree) -> Any:
        """Every JAX array leaf of ``tree`` (data, teacher, traced scalars, keys) copied to
        every device; other leaves (static fields, NumPy arrays) as they are."""
        sharding = self.replicated_sharding()
        return jax.tree.map(
            lambda x: jax.device_put(x, sharding) if isinstance(x, jax.Array) else x, tree
        )


def particle_mesh(count: int) -> Mesh:
    """A one-axis mesh (`AXIS`) over the first ``count`` devices of `jax.devices()`."""
    return Mesh(np.asarray(jax.devices()[:count]), (AXIS,))


def particle_sharding(devices: int | str | None, m: int | None = None) -> ParticleSharding | None:
    """The layout of a run on ``devices`` (`device_count`); None for one device (the
    unsharded path: nothing is placed, the run is what it was without this module).

    Args:
        devices: None, a positive integer, or "all".
        m: the number of particles, checked to split evenly (`check_width`) if given.

    Raises:
        ConfigError: a bad request, more devices than JAX sees, or m not a multiple of
            the count.
    """
    count = device_count(devices)
    if m is not None:
        check_width(int(m), count)
    if count == 1:
        return None
    return ParticleSharding(particle_mesh(count))


__all__ = [
    "AXIS",
    "ParticleSharding",
    "check_particle_run",
    "check_width",
    "device_count",
    "particle_mesh",
    "particle_sharding",
]
