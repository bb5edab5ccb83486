"""How much memory a run will hold, estimated from its config before anything is allocated.

`build` calls `check_memory` first, so that a config asking for more memory than the
machine has fails with a `ConfigError` naming the fields that drive the estimate, instead
of a ``MemoryError`` or an XLA abort minutes later. The estimate, in bytes, with
b = 8 (float64) or 4 (float32), m particles of D = train_output + d + bias coordinates,
d the input dimension, all sizes as the config (or a file's npz headers) gives them::

    particles = P m D b      P = PARTICLE_COPIES: theta, theta0, the velocity, integrator
                             stages, the scan's carry and output, the host checkpoint
    data      = (n_train + n_test) (d + 1) b     a data set (x and y)
              | K (d + 2) b                      a population risk's fixed inputs, with
                                                 K = (2 nodes)^dim (quadrature: the finer
                                                 rule of the error estimate) or
                                                 eval_samples (monte_carlo); none in
                                                 closed form
    work      = W r m b      W = WORK_COPIES: pre-activation, activation, derivative and
                             a product, each an (r, m) matrix, with r the largest number
                             of inputs a step or a record evaluates every particle on:
                             n_train, n_test, batch_size, samples, K, m + k in closed form
                             (the particle-particle and particle-teacher kernels, k
                             teacher neurons), projections (sliced W2)
    w2_exact  = 8 m^2        the host's float64 cost matrix of an exact W2 record
    rows      = 8 C (steps // every + 1)    recorded metrics, C = RECORD_COLUMNS, float64
    total     = particles + data + work + w2_exact + rows

Snapshots (steps // snapshot_every + 2) m D b are written to disk as they come (the run
keeps none in memory) and are reported as ``disk``, not counted in ``total``.

The limit is `available_memory`: ``MFNN_MEMORY_LIMIT_BYTES`` when set, else the smaller
of the memory the kernel reports available (``MemAvailable`` of /proc/meminfo, or the
physical memory) and the cgroup's room (a container's limit). On a GPU the device's
memory limit bounds particles + data + work and the host's the rest.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from .config import Config
from .errors import ConfigError

__all__ = ["Estimate", "available_memory", "check_memory", "estimate", "human"]

PARTICLE_COPIES = 8
WORK_COPIES = 4
RECORD_COLUMNS = 16  # a row holds 7 to 14 metrics today, plus the step
ENV = "MFNN_MEMORY_LIMIT_BYTES"


@dataclasses.dataclass(frozen=True)
class Part:
    """One term of the estimate: ``bytes``, its formula with the numbers put in, the
    config fields it grows with, and where it lives (``device``, ``host`` or ``disk``)."""

    bytes: int
    formula: str
    fields: tuple[str, ...]
    where: str = "device"


@dataclasses.dataclass(frozen=True)
class Estimate:
    """The terms of a run's memory estimate (see the module docstring for the formula)."""

    parts: dict[str, Part]

    @property
    def total(self) -> int:
        """Bytes held in memory (device and host; snapshots on disk excluded)."""
        return sum(p.bytes for p in self.parts.values() if p.where != "disk")

    @property
    def device(self) -> int:
        return sum(p.bytes for p in self.parts.values() if p.where == "device")

    @property
    def host(self) -> int:
        return sum(p.bytes for p in self.parts.values() if p.where == "host")

    @property
    def disk(self) -> int:
        return sum(p.bytes for p in self.parts.values() if p.where == "disk")


def human(n: float) -> str:
    """Bytes in the largest unit that keeps the number >= 1 (``1.5 GiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError  # unreachable


def _file_shapes(path: str | None, base: Path | None) -> dict[str, tuple[int, ...]] | None:
    """The array shapes of an npz named by a config field, from its headers, and its path
    under the key ``""`` (None when the file cannot be read: its loader reports that with
    the field's name)."""
    if path is None:
        return None
    from .measure import npz_headers

    p = Path(path)
    try:
        p = p.expanduser()
        if not p.is_absolute() and base is not None and not p.exists():
            p = base / p
        return {k: shape for k, (shape, _) in npz_headers(p).items()} | {"": str(p)}
    except Exception:  # noqa: BLE001 - unreadable: the loader names the field and the file
        return None


def _from(shapes: dict | None) -> str:
    return f" (from {shapes['']!r})" if shapes else ""


def _rows_of(shapes: dict | None, name: str, axis: int = 0) -> int | None:
    shape = (shapes or {}).get(name)
    if shape is None or len(shape) <= axis:
        return None
    return int(shape[axis])


def estimate(cfg: Config, base: str | os.PathLike | None = None) -> Estimate:
    """The memory estimate of a run of ``cfg`` (files named by the config are read for
    their shapes only, relative paths against ``base`` as `mfnn.build.build` does).

    Example:
        >>> from mfnn import config
        >>> cfg = config.load({"model": {"width": 100}, "data": {"n_train": 50,
        ...     "n_test": 10}, "dynamics": {"steps": 1000}, "record": {"every": 10}})
        >>> est = estimate(cfg)
        >>> est.parts["particles"].bytes  # 8 copies x 100 particles x 3 columns x 8 bytes
        19200
        >>> est.parts["work"].bytes  # 4 x max(50, 10) rows x 100 particles x 8 bytes
        160000
    """
    base = Path(base) if base is not None else None
    b = 8 if cfg.dtype == "float64" else 4
    data, dyn, model, rec = cfg.data, cfg.dynamics, cfg.model, cfg.record
    pop = data.population

    # input dimension and data sizes (a data file's from its headers)
    n_train, n_test = data.n_train, data.n_test
    d = pop.dim if pop is not None else data.inputs.dim
    data_fields: tuple[str, ...] = ("data.n_train", "data.n_test", "data.inputs.dim")
    n_source = ""
    if pop is None and data.path is not None:
        shapes = _file_shapes(data.path, base)
        n_train = _rows_of(shapes, "x") or 0
        d = _rows_of(shapes, "x", 1) or 1
        data_fields, n_source = ("data.path",), _from(shapes)
    no_data = pop is not None or (data.path is None and data.target == "zero")
    if no_data:
        n_train = 0
    if data.test_path is not None:
        shapes = _file_shapes(data.test_path, base)
        n_test = _rows_of(shapes, "x") or 0
        data_fields += ("data.test_path",)
        n_source += _from(shapes)
    elif no_data or data.path is not None:  # build samples a test set for a named target only
        n_test = 0

    # particles
    m = model.width or 1
    m_field, m_source = "model.width", ""
    if model.init.path is not None:
        shapes = _file_shapes(model.init.path, base)
        m = _rows_of(shapes, "w") or _rows_of(shapes, "a") or m
        m_field, m_source = "model.init.path", _from(shapes)
    D = int(model.train_output) + d + int(model.bias)
    parts = {
        "particles": Part(
            PARTICLE_COPIES * m * D * b,
            f"{PARTICLE_COPIES} copies x m {m}{m_source} x D {D} x {b} B",
            (m_field, "data.inputs.dim" if pop is None else "data.population.dim"),
        )
    }

    # data arrays, and the rows one step or one record evaluates every particle on
    rows = {
        "data.path" if data.path else "data.n_train": n_train,
        "data.test_path" if data.test_path else "data.n_test": n_test,
    }
    if pop is None:
        parts["data"] = Part(
            (n_train + n_test) * (d + 1) * b,
            f"(n_train {n_train} + n_test {n_test}){n_source} x (d {d} + 1) x {b} B",
            data_fields,
        )
    else:
        k = len(data.teacher.w) if data.teacher and data.teacher.w else 1
        if data.teacher and data.teacher.path:
            k = _rows_of(_file_shapes(data.teacher.path, base), "w") or 1
        if pop.method == "quadrature":
            points = (2 * pop.nodes) ** pop.dim
            parts["data"] = Part(
                points * (pop.dim + 2) * b,
                f"(2 nodes {pop.nodes})^dim {pop.dim} x (dim + 2) x {b} B",
                ("data.population.nodes", "data.population.dim"),
            )
            rows["data.population.nodes"] = points
        elif pop.method == "monte_carlo":
            parts["data"] = Part(
                pop.eval_samples * (pop.dim + 1) * b,
                f"eval_samples {pop.eval_samples} x (dim {pop.dim} + 1) x {b} B",
                ("data.population.eval_samples", "data.population.dim"),
            )
            rows["data.population.eval_samples"] = pop.eval_samples
            rows["data.population.samples"] = pop.samples
        else:
            rows["model.width"] = m + k
    if dyn.batch_size is not None:
        rows["dynamics.batch_size"] = dyn.batch_size
    w2 = rec.w2
    if w2 is not None and w2.method == "sliced" and (w2.initial or w2.teacher or w2.reference):
        rows["record.w2.projections"] = w2.projections
    driver = max(rows, key=rows.get)
    r = rows[driver]
    parts["work"] = Part(
        WORK_COPIES * r * m * b,
        f"{WORK_COPIES} x rows {r} (`{driver}`) x m {m}{m_source} x {b} B",
        (driver, m_field),
    )
    if w2 is not None and w2.method == "exact" and (w2.initial or w2.teacher or w2.reference):
        parts["w2_exact"] = Part(
            8 * m * m, f"m {m} x m {m} x 8 B", ("record.w2.method", m_field), "host"
        )

    # recorded rows (host, float64) and snapshots (disk)
    n_rec = dyn.steps // rec.every + 1
    parts["rows"] = Part(
        8 * RECORD_COLUMNS * n_rec,
        f"8 B x {RECORD_COLUMNS} columns x (steps {dyn.steps} // every {rec.every} + 1)",
        ("dynamics.steps", "record.every"),
        "host",
    )
    if rec.snapshot_count is not None:
        parts["snapshots"] = Part(
            rec.snapshot_count * m * D * b,
            f"snapshot_count {rec.snapshot_count} x m {m} x D {D} x {b} B (at most)",
            ("record.snapshot_count", m_field),
            "disk",
        )
    elif rec.snapshot_every is not None:
        n_snap = dyn.steps // rec.snapshot_every + 2
        parts["snapshots"] = Part(
            n_snap * m * D * b,
            f"(steps {dyn.steps} // snapshot_every {rec.snapshot_every} + 2) x m {m} x D {D}"
            f" x {b} B",
            ("record.snapshot_every", m_field),
            "disk",
        )
    return Estimate(parts)


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """What the cgroup (a container's memory limit) still allows, v2 or v1; None if none."""
    for limit, used in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            cap = Path(limit).read_text().strip()
            if cap == "max" or int(cap) >= 2**60:  # no limit
                return None
            return max(int(cap) - int(Path(used).read_text().strip()), 0)
        except (OSError, ValueError):
            continue
    return None


def available_memory() -> tuple[int, str]:
    """(bytes a run may use, where the number comes from).

    ``MFNN_MEMORY_LIMIT_BYTES`` (a non-negative integer) when set; else the smaller of
    ``MemAvailable`` (/proc/meminfo; the physical memory ``SC_PHYS_PAGES * SC_PAGE_SIZE``
    where there is none) and the cgroup's room.
    """
    text = os.environ.get(ENV)
    if text is not None:
        try:
            value = int(text.strip())
            if value < 0:
                raise ValueError
        except ValueError:
            raise ConfigError(
                f"the environment variable {ENV} must be a number of bytes (an integer >= 0); "
                f"got {text!r}. Unset it to use the machine's available memory."
            ) from None
        return value, ENV
    found = _meminfo_available()
    source = "MemAvailable in /proc/meminfo"
    if found is None:
        try:
            found = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            source = "the physical memory"
        except (ValueError, OSError, AttributeError):
            return 2**63, "no memory information"  # nothing to check against
    room = _cgroup_room()
    if room is not None and room < found:
        return room, "the cgroup's memory limit"
    return found, source


def _device_memory() -> int | None:
    """The accelerator's memory limit (None on a CPU backend)."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - a backend without memory statistics
        return None
    return int(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None


def _device_count(cfg: Config) -> int:
    """How many devices share the particles (``devices``; "all" is every device)."""
    import jax

    return len(jax.devices()) if cfg.devices == "all" else int(cfg.devices)


def check_memory(cfg: Config, base: str | os.PathLike | None = None) -> Estimate:
    """Refuse a config whose `estimate` exceeds `available_memory` (a `ConfigError` with
    the estimate, the limit and the fields that drive the largest term); return the
    estimate otherwise. With ``MFNN_MEMORY_LIMIT_BYTES`` set its value bounds the total;
    else on a GPU the device limit bounds particles + data + work and the host's memory
    the rest, and on a CPU the host's memory bounds the total.
    """
    est = estimate(cfg, base)
    limit, source = available_memory()
    device = None if source == ENV else _device_memory()
    checks = [(est.total, limit, source, est.parts)]
    if device is not None:
        on_device = {k: p for k, p in est.parts.items() if p.where == "device"}
        on_host = {k: p for k, p in est.parts.items() if p.where == "host"}
        n = _device_count(cfg)
        split = {k: dataclasses.replace(p, bytes=-(-p.bytes // n)) if k != "data" else p
                 for k, p in on_device.items()}  # fmt: skip
        where = "the accelerator's memory" + (f", per device of {n}" if n > 1 else "")
        checks = [
            (sum(p.bytes for p in split.values()), device, where, split),
            (est.host, limit, source, on_host),
        ]
    for need, have, where, parts in checks:
        if need <= have:
            continue
        big = sorted(parts.items(), key=lambda kv: -kv[1].bytes)
        terms = "; ".join(f"{k} {human(p.bytes)} = {p.formula}" for k, p in big if p.bytes)
        fields = ", ".join(f"`{f}`" for f in dict.fromkeys(big[0][1].fields))
        raise ConfigError(
            f"this run would hold about {human(need)} in memory, more than the {human(have)} "
            f"available ({where}): {terms}. The largest term grows with {fields}; make them "
            f"smaller (or set {ENV} to a larger number of bytes if the estimate is too "
            "cautious)."
        )
    return est
