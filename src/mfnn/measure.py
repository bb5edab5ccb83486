"""Empirical measures of particles: initial laws and particle files.

A measure of m particles is mu_m = (1/m) sum_j delta_{theta_j}, stored as an (m, D)
array whose columns a model knows how to split (see `TwoLayer.split`). Particle files
are npz with ``a`` (m,), ``w`` (m, d) and optional ``b`` (m,), so any snapshot of a run
can start a new one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._typing import Key, Particles
from .errors import ConfigError


class Gaussian(eqx.Module):
    """Independent N(mean, std^2) coordinates."""

    mean: float = 0.0
    std: float = 1.0

    def __check_init__(self):
        if not self.std >= 0:
            raise ConfigError(f"`std` of a gaussian law must be >= 0; got {self.std!r}.")

    def sample(self, key: Key, shape: tuple[int, ...], dtype) -> jax.Array:
        return self.mean + self.std * jax.random.normal(key, shape, dtype)


class Uniform(eqx.Module):
    """Independent uniform coordinates on [low, high]."""

    low: float = -1.0
    high: float = 1.0

    def __check_init__(self):
        if not self.high > self.low:
            raise ConfigError(
                f"a uniform law needs `low` < `high`; got low={self.low!r}, high={self.high!r}."
            )

    def sample(self, key: Key, shape: tuple[int, ...], dtype) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, self.low, self.high)


class Constant(eqx.Module):
    """Every coordinate equal to ``value``."""

    value: float = 1.0

    def sample(self, key: Key, shape: tuple[int, ...], dtype) -> jax.Array:
        del key
        return jnp.full(shape, self.value, dtype)


Law = Gaussian | Uniform | Constant


def sample_particles(model, m: int, laws: dict[str, Law], key: Key, dtype=jnp.float64) -> Particles:
    """Draw m i.i.d. particles of ``model``, each block from its own law.

    Args:
        model: an `mfnn.models.AbstractModel` (e.g. `TwoLayer`, blocks a, w, b).
        m: number of particles (width).
        laws: law per block name; every block of the model needs one.
        key: PRNG key (the model derives one per block, so that adding a block does not
            change the others).
        dtype: float64 or float32.

    Returns:
        theta: (m, D).
    """
    if not isinstance(m, int | np.integer) or isinstance(m, bool) or m < 1:
        raise ConfigError(f"`model.width` must be a positive integer; got {m!r}.")
    return model.sample(key, int(m), laws, dtype)


def load_particles(path: str | os.PathLike, model, dtype=jnp.float64, field="model.init.path"):
    """Read a particle file (npz with the model's named arrays; for `TwoLayer`: a (m,),
    w (m, d), optional b (m,)) into (m, D) rows.

    Arrays the model does not use are ignored: a file with ``a`` is accepted by a model
    with ``train_output=False``; a model with a bias needs ``b`` in the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"`{field}` points to {str(path)!r}, which does not exist.")
    try:
        data = dict(np.load(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a config error
        raise ConfigError(f"`{field}`: could not read {str(path)!r} as npz ({exc}).") from None
    theta = model.from_arrays(data, f"`{field}`: particle file {str(path)!r}", dtype)
    if not bool(jnp.all(jnp.isfinite(theta))):
        raise ConfigError(f"`{field}`: particle file {str(path)!r} contains NaN or inf.")
    return theta


def particle_arrays(model, theta) -> dict[str, np.ndarray]:
    """The npz arrays of a particle state (the particle-file contract of the model)."""
    return model.particle_arrays(theta)


def atomic_write(path: str | os.PathLike, write, mode: str = "wb") -> None:
    """Write a file atomically: ``write(fh)`` into a temporary file in the same folder,
    fsync, then rename over ``path``; a crash leaves either the old or the new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_savez(path: str | os.PathLike, **arrays) -> None:
    """Write an npz atomically (see `atomic_write`)."""
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def save_particles(path: str | os.PathLike, model, theta) -> None:
    """Write a particle file (npz: a, w, b) atomically."""
    atomic_savez(path, **particle_arrays(model, theta))
