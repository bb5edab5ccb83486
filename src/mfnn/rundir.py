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
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .config import Config, dump, load, parse_yaml, read_yaml
from .errors import ConfigError
from .measure import atomic_savez, atomic_write, particle_arrays

# the status of a study is the worst of its sub-runs'
STATUS_RANK = {"completed": 0, "interrupted": 1, "diverged": 2, "failed": 3}


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (see `mfnn.measure.atomic_write`)."""
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
        atomic_savez(snapshot_path(self.run_dir, step), **particle_arrays(self.model, theta))

    def on_checkpoint(self, state) -> None:
        atomic_savez(
            self.run_dir / "checkpoint.npz",
            theta=np.asarray(state.theta),
            theta0=np.asarray(state.theta0),
            step=np.asarray(state.step),
            key=np.asarray(jax.random.key_data(state.key)),
        )


def read_checkpoint(run_dir) -> dict[str, Any]:
    """The arrays of ``run_dir/checkpoint.npz``: theta, theta0, step, key (a key array)."""
    path = Path(run_dir) / "checkpoint.npz"
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} has no checkpoint.npz to resume from.")
    data = np.load(path)
    return {
        "theta": jax.numpy.asarray(data["theta"]),
        "theta0": jax.numpy.asarray(data["theta0"]),
        "step": int(data["step"]),
        "key": jax.random.wrap_key_data(jax.numpy.asarray(data["key"])),
    }


def same_config(run_dir, cfg: Config) -> bool:
    """Whether ``run_dir`` was started with ``cfg`` (resolved configs equal, mfnn version
    aside): only then may a resume reuse its checkpoint or its finished result."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return False
    saved = read_yaml(path)
    now = parse_yaml(dump(cfg))
    for d in (saved, now):
        d.pop("mfnn_version", None)
        model = d.get("model") or {}
        if (model.get("init") or {}).get("path") is not None:
            model.pop("width", None)  # read from the particle file: the resolved config has it
    return saved == now


def run_dir_status(run_dir, cfg: Config | None = None) -> str | None:
    """The ``status`` of the run's summary.json (None if there is none); "stale" when a
    ``cfg`` is given and the run was started with another config."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return None
    if cfg is not None and not same_config(run_dir, cfg):
        return "stale"
    return read_json(path).get("status")


def load_run_config(run_dir) -> Config:
    """The config a run (or experiment) directory was started with."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(
            f"{str(run_dir)!r} is not a run directory (no config.yaml); give the folder "
            "that `mfnn run` printed."
        )
    raw = read_yaml(path)
    raw.pop("mfnn_version", None)
    return load(raw)
