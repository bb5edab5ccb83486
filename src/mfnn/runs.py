"""Run directories: write as the run goes, never lose what was written, resume.

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
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import __version__
from .build import Built, build
from .config import Config, dump, load, parse_yaml, read_yaml
from .errors import ConfigError
from .measure import atomic_savez, atomic_write, particle_arrays
from .simulate import State, Trajectory, simulate


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (see `mfnn.measure.atomic_write`)."""
    atomic_write(path, lambda fh: fh.write(text), mode="w")


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def write_json(path, data: dict) -> None:
    atomic_write_text(path, json.dumps(_json_safe(data), indent=2) + "\n")


def check(value: float, expected: str, passed: bool) -> dict[str, Any]:
    """A summary check: the statistic, the rule it must satisfy, and whether it did."""
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


class RunWriter:
    """An `Observer` that streams a run into its directory.

    metrics.csv rows are appended and flushed (fsync) as each chunk ends; snapshots and
    the checkpoint are written atomically (temporary file + rename), so a run killed at
    any moment leaves readable files.
    """

    def __init__(self, run_dir: Path, built: Built, fields: list[str]):
        self.run_dir = Path(run_dir)
        self.built = built
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
        atomic_savez(snapshot_path(self.run_dir, step), **particle_arrays(self.built.model, theta))

    def on_checkpoint(self, state: State) -> None:
        atomic_savez(
            self.run_dir / "checkpoint.npz",
            theta=np.asarray(state.theta),
            theta0=np.asarray(state.theta0),
            step=np.asarray(state.step),
            key=np.asarray(jax.random.key_data(state.key)),
        )


def _fmt(v: float | int) -> str:
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


def load_checkpoint(run_dir) -> State:
    path = Path(run_dir) / "checkpoint.npz"
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} has no checkpoint.npz to resume from.")
    data = np.load(path)
    return State(
        theta=jax.numpy.asarray(data["theta"]),
        theta0=jax.numpy.asarray(data["theta0"]),
        step=int(data["step"]),
        key=jax.random.wrap_key_data(jax.numpy.asarray(data["key"])),
    )


def progress_printer(label: str, stream=None) -> Callable[[dict], None]:
    """A progress line per chunk: step, t, loss, steps/s, ETA (rich when on a terminal)."""
    stream = sys.stderr if stream is None else stream

    def show(p: dict) -> None:
        frac = p["step"] / p["steps"]
        bar = "#" * int(24 * frac) + "-" * (24 - int(24 * frac))
        line = (
            f"{label} [{bar}] step {p['step']}/{p['steps']}  t={p['t']:.4g}  "
            f"loss={p['loss']:.4e}  {p['steps_per_s']:.0f} steps/s  ETA {p['eta_s']:.0f}s"
        )
        end = "\r" if stream.isatty() and p["step"] < p["steps"] else "\n"
        stream.write(line + end)
        stream.flush()

    return show


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
    return saved == now


def run_dir_status(run_dir, cfg: Config | None = None) -> str | None:
    """The ``status`` of the run's summary.json (None if there is none); "stale" when a
    ``cfg`` is given and the run was started with another config."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return None
    if cfg is not None and not same_config(run_dir, cfg):
        return "stale"
    return json.loads(path.read_text()).get("status")


def resume_state(run_dir, cfg: Config) -> State | None:
    """The checkpoint a run of ``cfg`` continues from, or None (no checkpoint, or one
    written by another config: that is not this run's, it starts over)."""
    run_dir = Path(run_dir)
    if (run_dir / "checkpoint.npz").is_file() and same_config(run_dir, cfg):
        return load_checkpoint(run_dir)
    return None


def open_run(run_dir, cfg: Config, built: Built, state: State | None) -> RunWriter:
    """Prepare ``run_dir`` for a run that starts fresh (``state`` None) or continues from
    ``state``: the metrics file (cut back to the checkpoint), the stamped config.yaml and a
    ``running`` summary.json. Returns the run's `RunWriter`."""
    run_dir = Path(run_dir)
    writer = RunWriter(run_dir, built, list(built.recorder.names()))
    writer.start(None if state is None else state.step)
    stamped = cfg.model_copy(deep=True)
    stamped.mfnn_version = __version__
    atomic_write_text(run_dir / "config.yaml", dump(stamped))
    write_json(run_dir / "summary.json", {"status": "running", "checks": {}})
    return writer


def execute(
    cfg: Config,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    label: str = "run",
    base: str | os.PathLike | None = None,
    make_figures: bool = True,
    built: Built | None = None,
) -> tuple[Trajectory | None, Built, dict]:
    """Run (or resume) one simulation into ``run_dir`` and write its summary.

    Returns (trajectory, built objects, summary). The summary's generic check
    ``energy_identity`` is the median over recorded steps of |energy_rel_residual|, which
    the discrete energy dissipation identity says is O(dt); it must be <= 0.1.

    ``built`` replaces ``build(cfg, base)``: an experiment that runs its own dynamics or
    initial state (e.g. `mfnn.experiments.chaos`, a stacked coupling system) passes the
    built objects with those swapped in and keeps the run directory contract.
    """
    run_dir = Path(run_dir)
    built = build(cfg, base) if built is None else built
    t0 = time.perf_counter()
    state = resume_state(run_dir, cfg) if resume else None
    writer = open_run(run_dir, cfg, built, state)
    try:
        traj = simulate(
            built.dynamics,
            built.integrator,
            built.theta0,
            dt=built.dt,
            steps=built.steps,
            key=built.key,
            recorder=built.recorder,
            snapshot_every=built.snapshot_every,
            chunk=built.chunk,
            state=state,
            observer=writer,
            progress=progress_printer(label) if progress else None,
            keep_snapshots=False,
        )
    except Exception as exc:  # a failed run keeps its files and says why
        summary = {"status": "failed", "message": f"{type(exc).__name__}: {exc}", "checks": {}}
        write_json(run_dir / "summary.json", summary)
        raise
    metrics = read_metrics(run_dir)
    summary = single_summary(traj, metrics, built, time.perf_counter() - t0)
    write_json(run_dir / "summary.json", summary)
    if make_figures and metrics:
        from .plots import run_figures

        run_figures(run_dir, metrics, built)
    return traj, built, summary


def single_summary(traj: Trajectory, metrics: dict, built: Built, wall: float) -> dict:
    rel = np.abs(metrics.get("energy_rel_residual", np.array([])))
    rel = rel[np.isfinite(rel)]
    checks = {}
    if rel.size:
        med = float(np.median(rel))
        checks["energy_identity"] = check(med, "median |energy_rel_residual| <= 0.1", med <= 0.1)
    last = {k: float(v[-1]) for k, v in metrics.items() if k not in ("step",)} if metrics else {}
    extra = {}
    objective, model = built.dynamics.objective, built.model
    if getattr(objective, "method", None) == "quadrature":  # |R_q - R_2q|, first and last
        extra["quadrature_error"] = {
            "nodes": objective.nodes,
            "initial": float(objective.quadrature_error(model, jnp.asarray(built.theta0))),
            "final": float(objective.quadrature_error(model, jnp.asarray(traj.final))),
        }
    return extra | {
        "status": traj.status,
        "message": traj.message,
        "final_loss": last.get("loss"),
        "final_step": int(traj.state.step),
        "final_t": traj.state.step * built.dt,
        "final": last,
        "wall_s": wall,
        "checks": checks,
    }


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
