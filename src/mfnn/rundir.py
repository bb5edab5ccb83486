"""Run directories on disk: the file layout, atomic writes, and reading them back.

This module knows files, not numerics: `mfnn.build` reads reference runs through it and
`mfnn.runs` writes runs through it, so neither imports the other's layer.

Layout (a contract: tests and tools read it)::

    RUN_DIR/config.yaml                   resolved config, every default filled, mfnn version
    RUN_DIR/metrics.csv                   step,t,loss,... one row per record (flushed)
    RUN_DIR/snapshots/step_XXXXXXXX.npz   particles (a, w, b) at snapshot steps
    RUN_DIR/checkpoint.npz                latest state (particles, start, step, key), atomic
    RUN_DIR/summary.json                  status, final_loss,
                                          checks {name: {value, expected, passed}}
    RUN_DIR/figures/                      png figures
    RUN_DIR/lock                          the writer's claim: pid, host, start, command
    RUN_DIR/previous/<time>/              what a restart from scratch moved aside

One writer per directory: a run, a resume, an experiment or a sweep holds `RunLock` on
its directory for its whole life; a second writer is refused with a message naming the
holder. The claim is an exclusive ``flock`` on the ``lock`` file, which the operating
system drops when the process dies however it dies (kill -9, an abort), so a lock of a
dead process is never in the way: the next writer takes it over. A directory whose
summary still says ``running`` with no live holder was left by a process that died:
readers report it as ``crashed`` (`run_dir_status`).
"""

from __future__ import annotations

import csv
import datetime
import fcntl
import json
import math
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config, dump, load, parse_yaml, read_yaml
from .errors import ConfigError

# the status of a study is the worst of its sub-runs'
STATUS_RANK = {"completed": 0, "interrupted": 1, "diverged": 2, "crashed": 3, "failed": 4}

LOCK = "lock"


class RunDirBusy(ConfigError):
    """Another live process writes the run directory (it holds its `RunLock`)."""


class RunLock:
    """An exclusive claim on a run directory for the life of a run (a context manager).

    Taking it creates the directory, takes an exclusive non-blocking ``flock`` on
    ``RUN_DIR/lock`` and writes the holder (pid, host, start time, command line) into
    it. Another process that holds it makes `acquire` raise `RunDirBusy` naming that
    holder. The operating system releases the lock when its process ends, however it
    ends, so a lock left by a dead process is taken over silently (``stale`` is then
    True: the previous writer died without releasing it, see `run_dir_status`).

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> with RunLock(d) as lock:
        ...     lock_holder(d)["pid"] == os.getpid()
        True
        >>> lock_holder(d) is None
        True
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self._fd: int | None = None
        self.stale = False

    def acquire(self) -> RunLock:
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise ConfigError(
                f"`--out` {str(self.run_dir)!r} is a file, not a directory; give a folder path."
            )
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the run directory {str(self.run_dir)!r}: {exc.strerror} "
                "(check the path and its permissions, or choose another `--out`)."
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunDirBusy(busy_message(self.run_dir, lock_holder(self.run_dir))) from None
        self.stale = os.fstat(fd).st_size > 0  # a claim its (dead) holder never cleared
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # an empty lock file: released cleanly
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_holder(run_dir) -> dict[str, Any] | None:
    """The live holder of ``run_dir``'s `RunLock` ({pid, host, started, command}), or
    None when no live process holds it (never taken, released, or its holder died)."""
    path = Path(run_dir) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # held exclusively: by a live process
            try:
                return json.loads(os.pread(fd, 4096, 0) or b"{}") or {"pid": "?"}
            except ValueError:  # caught between its truncate and its write
                return {"pid": "?"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def busy_message(run_dir, holder: dict[str, Any] | None) -> str:
    h = holder or {}
    who = f"process {h.get('pid', '?')} on {h.get('host', '?')}"
    if h.get("started"):
        who += f" (since {h['started']}: {h.get('command', '')!s})"
    return (
        f"the run directory {str(run_dir)!r} is in use by {who}; one writer at a time. "
        "Wait for it to end or stop it (then `mfnn resume` it), or choose another `--out`."
    )


def check_not_busy(run_dir) -> None:
    """Raise `RunDirBusy` if a live process holds ``run_dir``'s lock (e.g. before
    replacing the directory with ``--overwrite``)."""
    holder = lock_holder(run_dir)
    if holder is not None:
        raise RunDirBusy(busy_message(run_dir, holder))


def set_aside(run_dir, names: list[str]) -> Path | None:
    """Move the files ``names`` (those present) of ``run_dir`` into
    ``run_dir/previous/<UTC time>/``; return that folder (None if nothing was moved)."""
    run_dir = Path(run_dir)
    present = [n for n in names if (run_dir / n).exists()]
    if not present:
        return None
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    dest = run_dir / "previous" / stamp
    dest.mkdir(parents=True)
    for n in present:
        shutil.move(str(run_dir / n), str(dest / n))
    return dest


def _umask() -> int:
    """The process's umask (read by setting it and back: there is no getter)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write, mode: str = "wb") -> None:
    """Write a file atomically: ``write(fh)`` into a temporary file in the same folder,
    fsync, then rename over ``path``; a crash leaves either the old or the new file.
    The file gets the mode an ordinary ``open`` would give it (0666 less the umask, as
    matplotlib's figures get), not the 0600 of a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
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


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (see `atomic_write`)."""
    atomic_write(path, lambda fh: fh.write(text), mode="w")


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def write_json(path, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically (non-finite floats as strings)."""
    atomic_write_text(path, json.dumps(_json_safe(data), indent=2) + "\n")


def read_json(path) -> dict[str, Any]:
    """Read a JSON file written by `write_json`."""
    return json.loads(Path(path).read_text())


def check(value: float, expected: str, passed: bool) -> dict[str, Any]:
    """A summary check: the statistic, the rule it must satisfy (with its threshold), and
    whether it did. A nan value never passes a comparison, so a missing statistic fails.

    Example:
        >>> check(0.04, "ratio <= 0.2", 0.04 <= 0.2)
        {'value': 0.04, 'expected': 'ratio <= 0.2', 'passed': True}
    """
    if isinstance(value, np.generic):
        value = value.item()
    return {"value": value, "expected": expected, "passed": bool(passed)}


def snapshot_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "snapshots" / f"step_{step:08d}.npz"


def list_snapshots(run_dir) -> dict[int, Path]:
    """Step -> snapshot file, sorted by step."""
    out = {}
    for p in sorted((Path(run_dir) / "snapshots").glob("step_*.npz")):
        out[int(p.stem.split("_")[1])] = p
    return out


def read_metrics(run_dir) -> dict[str, np.ndarray]:
    """metrics.csv as columns (floats; ``step`` as int)."""
    with open(Path(run_dir) / "metrics.csv", newline="") as fh:
        # a row cut by a kill mid-write has missing cells: it is not a record
        rows = [r for r in csv.DictReader(fh) if all(v not in (None, "") for v in r.values())]
    if not rows:
        return {}
    cols = {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}
    cols["step"] = cols["step"].astype(int)
    return cols


def _fmt(v: float | int) -> str:
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


class RunWriter:
    """An `mfnn.simulate.Observer` that streams a run into its directory.

    metrics.csv rows are appended and flushed (fsync) as each chunk ends; snapshots and
    the checkpoint are written atomically (temporary file + rename), so a run killed at
    any moment leaves readable files.

    Args:
        run_dir: the run directory.
        model: the run's model (it names the blocks of a particle file).
        fields: the recorded metric names (the columns after step, t).
    """

    def __init__(self, run_dir: Path, model, fields: list[str]):
        self.run_dir = Path(run_dir)
        self.model = model
        self.fields = ["step", "t", *fields]
        self.metrics_path = self.run_dir / "metrics.csv"

    def start(self, resume_step: int | None = None) -> None:
        (self.run_dir / "snapshots").mkdir(parents=True, exist_ok=True)
        if resume_step is None or not self.metrics_path.exists():
            # a fresh run: what an earlier run left here is not this run's
            for path in list_snapshots(self.run_dir).values():
                path.unlink()
            (self.run_dir / "checkpoint.npz").unlink(missing_ok=True)
            atomic_write_text(self.metrics_path, ",".join(self.fields) + "\n")
            return
        # drop rows recorded after the checkpoint: the resumed run writes them again
        with open(self.metrics_path, newline="") as fh:
            lines = fh.read().splitlines()
        width = len(lines[0].split(","))

        def keep(line: str) -> bool:  # whole rows up to the checkpoint (a cut row is dropped)
            cells = line.split(",")
            return len(cells) == width and all(cells) and int(cells[0]) <= resume_step

        kept = [lines[0]] + [ln for ln in lines[1:] if keep(ln)]
        atomic_write_text(self.metrics_path, "\n".join(kept) + "\n")
        for step, path in list_snapshots(self.run_dir).items():
            if step > resume_step:
                path.unlink()

    def on_records(self, rows: list[dict[str, float]]) -> None:
        with open(self.metrics_path, "a", newline="") as fh:
            for row in rows:
                fh.write(",".join(_fmt(row[k]) for k in self.fields) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def on_snapshot(self, step: int, theta: np.ndarray) -> None:
        from .measure import particle_arrays

        atomic_savez(snapshot_path(self.run_dir, step), **particle_arrays(self.model, theta))

    def on_checkpoint(self, state) -> None:
        import jax

        atomic_savez(
            self.run_dir / "checkpoint.npz",
            theta=np.asarray(state.theta),
            theta0=np.asarray(state.theta0),
            step=np.asarray(state.step),
            key=np.asarray(jax.random.key_data(state.key)),
        )


def read_checkpoint(run_dir) -> dict[str, Any]:
    """The arrays of ``run_dir/checkpoint.npz``: theta, theta0, step, key (a key array)."""
    import jax

    path = Path(run_dir) / "checkpoint.npz"
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} has no checkpoint.npz to resume from.")
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {
                "theta": jax.numpy.asarray(data["theta"]),
                "theta0": jax.numpy.asarray(data["theta0"]),
                "step": int(data["step"]),
                "key": jax.random.wrap_key_data(jax.numpy.asarray(data["key"])),
            }
    except KeyError as exc:
        raise ConfigError(
            f"the checkpoint {str(path)!r} lacks the array {exc}; it holds no usable state. "
            f"Start the run again with `mfnn resume {run_dir} --from-scratch` (the rows so "
            "far are kept aside)."
        ) from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file: one message
        raise ConfigError(
            f"the checkpoint {str(path)!r} cannot be read (not an .npz archive of numeric "
            f"arrays: {type(exc).__name__}); "
            "it holds no usable state. Start the run again with `mfnn resume "
            f"{run_dir} --from-scratch` (the rows so far are kept aside)."
        ) from None
    if out["theta"].ndim != 2 or out["theta"].shape != out["theta0"].shape or out["step"] < 0:
        raise ConfigError(
            f"the checkpoint {str(path)!r} is inconsistent (particles {out['theta'].shape}, "
            f"start {out['theta0'].shape}, step {out['step']}); start again with "
            f"`mfnn resume {run_dir} --from-scratch`."
        )
    return out


def same_config(run_dir, cfg: Config) -> bool:
    """Whether ``run_dir`` was started with ``cfg`` (resolved configs equal, mfnn version
    and ``devices`` aside): only then may a resume reuse its checkpoint or its finished
    result. The device count is not part of the run: a sharded run gives the one-device
    trajectory to round-off (`mfnn.sharding`), so a run may continue on another count."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return False
    saved = read_yaml(path)
    now = parse_yaml(dump(cfg))
    for d in (saved, now):
        d.pop("mfnn_version", None)
        d.pop("devices", None)
        model = d.get("model") or {}
        if (model.get("init") or {}).get("path") is not None:
            model.pop("width", None)  # read from the particle file: the resolved config has it
    return saved == now


def run_dir_status(run_dir, cfg: Config | None = None) -> str | None:
    """The ``status`` of the run's summary.json (None if there is none); "stale" when a
    ``cfg`` is given and the run was started with another config; "crashed" when the
    summary says ``running`` but no live process holds the directory's `RunLock` (its
    writer died: kill -9, an abort, a power cut); "corrupt" when summary.json cannot be
    read."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return None
    if cfg is not None and not same_config(run_dir, cfg):
        return "stale"
    try:
        status = read_json(path).get("status")
    except (ValueError, AttributeError, OSError):
        return "corrupt"
    if status == "running" and lock_holder(run_dir) is None:
        return "crashed"
    return status


def load_run_config(run_dir) -> Config:
    """The config a run (or experiment) directory was started with."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(
            f"{str(run_dir)!r} is not a run directory (no config.yaml); give the folder "
            "that `mfnn run` printed."
        )
    try:
        raw = read_yaml(path)
    except ConfigError as exc:
        raise ConfigError(f"the run's config {str(path)!r} cannot be read: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"the run's config {str(path)!r} is not a mapping; it is damaged.")
    raw.pop("mfnn_version", None)
    return load(raw)
