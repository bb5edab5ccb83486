"""JAX's persistent compilation cache, under the user's cache directory.

A run compiles its chunk loop and its recorder once per shape; the persistent cache keeps
the compiled executables on disk, so that a second process running the same shapes (a
second `mfnn run NAME --quick`, the test suite, the points of a sweep) loads them instead
of compiling again. The `mfnn` command and the test suite turn it on; a library user calls
`enable_compilation_cache` once.

Where: ``$MFNN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/mfnn/jax`` (``~/.cache/mfnn/jax``).
``MFNN_CACHE_DIR=off`` turns it off. JAX keys each entry by the program, the backend and
the library versions, so a cache shared across versions or machines cannot load a wrong
executable; the cache is capped (`MAX_BYTES`, least recently used entries go first).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import jax

MAX_BYTES = 2 * 1024**3
MIN_COMPILE_S = 0.0
"""Compiles faster than this are not written to disk. 0: every program, the tiny ones of
eager operations included: a process compiles dozens of them (10-30 ms each) before its
first step, and reading them back is cheaper (a repeated 64-particle run: 6.3 s -> 5.4 s
on 2 cores, benchmarks/bench_startup.py)."""


def cache_dir() -> Path | None:
    """The cache folder ``enable_compilation_cache`` uses, or None when it is turned off."""
    value = os.environ.get("MFNN_CACHE_DIR")
    if value is not None:
        return None if value.strip().lower() in ("", "0", "off", "none") else Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mfnn" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache at ``path`` (default `cache_dir`).

    Returns the folder, or None when the cache is off (``MFNN_CACHE_DIR=off``) or the
    folder cannot be created (a read-only home: runs then compile as usual).
    """
    folder = Path(path) if path is not None else cache_dir()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)  # LRU eviction (filelock)
    return folder


class Compilations:
    """What `count_compilations` counted: ``lowered`` programs traced and lowered to XLA
    (one per new shape or static value of a jitted function, whether its executable is
    then compiled or loaded from the persistent cache) and ``compiled`` backend compiles
    (not counting executables loaded from the persistent cache)."""

    def __init__(self) -> None:
        self.lowered = 0
        self.compiled = 0

    def __repr__(self) -> str:
        return f"Compilations(lowered={self.lowered}, compiled={self.compiled})"


_ACTIVE: list[Compilations] = []
_LISTENING = {"on": False}
_LOWER_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def _listener(event: str, duration: float, **_: object) -> None:
    for counter in _ACTIVE:
        if event == _LOWER_EVENT:
            counter.lowered += 1
        elif event == _COMPILE_EVENT:
            counter.compiled += 1


@contextlib.contextmanager
def count_compilations() -> Iterator[Compilations]:
    """Count the XLA programs JAX lowers and compiles inside the ``with`` block (JAX's own
    monitoring events), e.g. to check that a sweep over a number compiles once.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> f = jax.jit(lambda x, s: s * x)
        >>> x = jnp.ones(3)
        >>> with count_compilations() as c:
        ...     _ = [f(x, s) for s in (1.0, 2.0, 3.0)]  # s traced: one program
        >>> c.lowered
        1
    """
    if not _LISTENING["on"]:
        jax.monitoring.register_event_duration_secs_listener(_listener)
        _LISTENING["on"] = True
    counter = Compilations()
    _ACTIVE.append(counter)
    try:
        yield counter
    finally:
        _ACTIVE.remove(counter)
