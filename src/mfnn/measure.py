"""Empirical measures of particles: initial laws and particle files.

A measure of m particles is mu_m = (1/m) sum_j delta_{theta_j}, stored as an (m, D)
array whose columns a model knows how to split (see `TwoLayer.split`). Particle files
are npz with ``a`` (m,), ``w`` (m, d) and optional ``b`` (m,), so any snapshot of a run
can start a new one.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._typing import Key, Particles
from .errors import ConfigError
from .rundir import atomic_savez as atomic_savez  # the atomic writers live with the files
from .rundir import atomic_write as atomic_write


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
    # one compiled program per (model, m, dtype); the laws' numbers are traced (weakly
    # typed, a float32 draw stays float32), so another mean or std does not compile again
    traced = {
        k: jax.tree.map(lambda v: jnp.asarray(float(v)) if _is_number(v) else v, law)
        for k, law in laws.items()
    }
    return _sample(model, key, int(m), traced, jnp.dtype(dtype))


def _is_number(v) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


@eqx.filter_jit
def _sample(model, key: Key, m: int, laws, dtype) -> Particles:
    return model.sample(key, m, laws, dtype)


# what an npz member that mfnn reads may hold: booleans, integers, real floats
_NUMERIC_KINDS = "biuf"


def npz_headers(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of each array of an npz file, read from the headers only.

    Nothing is decompressed past a header and nothing is unpickled, so this is safe on any
    file and cheap on a large one. Raises `zipfile.BadZipFile`, `ValueError` or `OSError`
    on a file that is not an npz (`read_npz` turns them into a `ConfigError`).
    """
    out = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                else:  # 3.0: utf-8 field names, i.e. a structured array
                    shape, dtype = (), np.dtype(object)
            out[info.filename[: -len(".npy")]] = (tuple(shape), dtype)
    return out


def read_npz(path: str | os.PathLike, field: str, what: str = "file") -> dict[str, np.ndarray]:
    """The arrays of an npz file named by the config field ``field``, refused with a
    `ConfigError` naming the field and the file unless it is usable input.

    Rules: the file exists and is an npz (a zip of ``.npy`` arrays, as `numpy.savez`
    writes; a bare ``.npy``, a pickle or any other file is refused); every array is
    numeric (bool, int or real float: no strings, no complex, no object arrays, which
    numpy would have to unpickle, and nothing is ever unpickled); every value is finite;
    the arrays fit in the memory `mfnn.budget.available_memory` reports (checked from the
    headers, before anything is decompressed).

    Args:
        path: the file.
        field: the dotted config field that named it (e.g. ``model.init.path``).
        what: what the file is, for the message (e.g. ``"particle file"``).
    """
    from .budget import available_memory, human

    path = Path(path)
    where = f"`{field}`: {what} {str(path)!r}"
    if not path.is_file():
        raise ConfigError(f"`{field}` points to {str(path)!r}, which does not exist.")
    try:
        headers = npz_headers(path)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ConfigError(
            f"{where} is not an npz file (a zip of .npy arrays, as numpy.savez writes): "
            f"{type(exc).__name__}: {exc}. Save the arrays with numpy.savez(path, name=array)."
        ) from None
    bad = {k: str(dt) for k, (_, dt) in headers.items() if dt.kind not in _NUMERIC_KINDS}
    if bad:
        raise ConfigError(
            f"{where} holds arrays that are not numbers: {bad}; each array must hold real "
            "numbers (no strings, complex numbers or pickled objects). Save float arrays."
        )
    size = sum(int(np.prod(shape, dtype=float)) * dt.itemsize for shape, dt in headers.values())
    limit, source = available_memory()
    if size > limit:
        raise ConfigError(
            f"{where} holds {human(size)} of arrays, more than the {human(limit)} of memory "
            f"available ({source}). Use a smaller file."
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in headers}
    except Exception as exc:  # noqa: BLE001 - a corrupt member (bad CRC, truncated data)
        raise ConfigError(
            f"{where} could not be read ({type(exc).__name__}: {exc}); the file is damaged. "
            "Write it again with numpy.savez."
        ) from None
    for k, arr in arrays.items():
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ConfigError(
                f"{where} contains NaN or inf (in `{k}`); every value must be finite."
            )
    return arrays


def load_particles(path: str | os.PathLike, model, dtype=jnp.float64, field="model.init.path"):
    """Read a particle file (npz with the model's named arrays; for `TwoLayer`: a (m,),
    w (m, d), optional b (m,)) into (m, D) rows.

    Arrays the model does not use are ignored: a file with ``a`` is accepted by a model
    with ``train_output=False``; a model with a bias needs ``b`` in the file. The file
    must pass `read_npz` (an npz of finite numbers) and hold at least one particle, and
    its values must be numbers of ``dtype`` (a float64 value beyond 3.4e38 is refused in
    a float32 run); otherwise a `ConfigError` names ``field`` and the file.
    """
    arrays = read_npz(path, field, "particle file")
    where = f"`{field}`: particle file {str(Path(path))!r}"
    top = float(jnp.finfo(dtype).max)
    for k, arr in arrays.items():
        big = arr.size and float(np.max(np.abs(arr, dtype=np.float64))) > top
        if big:
            raise ConfigError(
                f"{where} holds values beyond the range of {jnp.dtype(dtype).name} (in `{k}`); "
                "use `dtype: float64` or rescale the particles."
            )
    theta = model.from_arrays(arrays, where, dtype)
    if theta.ndim != 2 or theta.shape[0] == 0:
        raise ConfigError(
            f"{where} holds no particles (shape {tuple(theta.shape)}); a particle file needs "
            "at least one row."
        )
    return theta


def particle_arrays(model, theta) -> dict[str, np.ndarray]:
    """The npz arrays of a particle state (the particle-file contract of the model)."""
    return model.particle_arrays(theta)


def save_particles(path: str | os.PathLike, model, theta) -> None:
    """Write a particle file (npz: a, w, b) atomically."""
    atomic_savez(path, **particle_arrays(model, theta))
