"""Running one simulation into a run directory: build, simulate, stream, summarize.

The file layout and its readers and writers are `mfnn.rundir`; this module puts a built
run through `mfnn.simulate.simulate` with a `mfnn.rundir.RunWriter` observer and writes
the summary with its generic check (the energy identity).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from . import __version__
from .build import Built, build
from .config import Config, dump
from .errors import ConfigError
from .objectives import PopulationRisk
from .rundir import (
    RunLock,
    RunWriter,
    atomic_write_text,
    check,
    read_checkpoint,
    read_metrics,
    same_config,
    set_aside,
    snapshot_path,
    write_json,
)
from .sharding import check_particle_run
from .simulate import State, Trajectory, simulate


def load_checkpoint(run_dir) -> State:
    """The `State` saved in ``run_dir/checkpoint.npz``."""
    return State(**read_checkpoint(run_dir))


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


# what a run writes; a restart from scratch moves these aside (`mfnn.rundir.set_aside`)
RUN_FILES = [
    "metrics.csv", "snapshots", "checkpoint.npz", "summary.json", "config.yaml",
    "predictions.npz",
]  # fmt: skip


def _recorded_rows(run_dir: Path) -> int:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return 0
    with open(path, "rb") as fh:
        return max(sum(1 for _ in fh) - 1, 0)


def resume_state(run_dir, cfg: Config, from_scratch: bool = False, load=None) -> State | None:
    """The checkpoint a run of ``cfg`` continues from, or None for a start from step 0.

    Nothing recorded is dropped on the way: when the directory holds rows but they
    cannot be continued (the run was started with another config, or it has no readable
    checkpoint: a run killed before its first checkpoint), ``from_scratch`` moves the
    old files to ``previous/<time>/`` and starts over; without it a missing or damaged
    checkpoint of this config is refused (`ConfigError`: resume with
    ``--from-scratch``). Another config's files are always moved aside: they are not
    this run's. ``load`` reads the checkpoint (default `load_checkpoint`; a grid run reads
    its density) and raises `ConfigError` when it cannot.
    """
    load = load_checkpoint if load is None else load
    run_dir = Path(run_dir)
    rows = _recorded_rows(run_dir)
    if not (run_dir / "config.yaml").is_file() or (rows == 0 and not from_scratch):
        return None  # nothing recorded yet: a fresh start loses nothing
    if not same_config(run_dir, cfg):
        set_aside(run_dir, RUN_FILES)
        return None
    if (run_dir / "checkpoint.npz").is_file():
        try:
            return load(run_dir)
        except ConfigError:
            if not from_scratch:
                raise
    elif not from_scratch:
        raise ConfigError(
            f"{str(run_dir)!r} holds {rows} recorded rows but no checkpoint to continue "
            "from (the run stopped before its first checkpoint, every `record.chunk` "
            f"steps). Start it again with `mfnn resume {run_dir} --from-scratch`: the "
            "rows so far are moved to previous/, not dropped."
        )
    set_aside(run_dir, RUN_FILES)
    return None


def open_run(run_dir, built: Built, state: State | None) -> RunWriter:
    """Prepare ``run_dir`` for a run that starts fresh (``state`` None) or continues from
    ``state``: the metrics file (cut back to the checkpoint), the stamped resolved config
    (``built.config``) and a ``running`` summary.json. Returns the run's `RunWriter`."""
    run_dir = Path(run_dir)
    writer = RunWriter(run_dir, built.model, list(built.recorder.names()))
    writer.start(None if state is None else state.step)
    stamped = built.config.model_copy(update={"mfnn_version": __version__})
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
    from_scratch: bool = False,
    predictions: bool | None = None,
) -> tuple[Trajectory | None, Built, dict]:
    """Run (or resume) one simulation into ``run_dir`` and write its summary.

    Returns (trajectory, built objects, summary). The summary's generic check
    ``energy_identity`` is the median over recorded steps of |energy_rel_residual|, which
    the discrete energy dissipation identity says is O(dt); it must be <= 0.1.

    ``built`` replaces ``build(cfg, base)``: an experiment that runs its own dynamics or
    initial state (e.g. `mfnn.experiments.chaos`, a stacked coupling system) passes the
    built objects with those swapped in and keeps the run directory contract.

    The run holds the directory's `mfnn.rundir.RunLock` from start to end (a second
    writer gets `mfnn.rundir.RunDirBusy`). With ``resume``, `resume_state` decides where
    it continues (``from_scratch``: see there). ``predictions``: write predictions.npz
    (`write_predictions`; default: when ``built`` is None, i.e. not a customised build).
    """
    run_dir = Path(run_dir)
    if cfg.dynamics.kind == "pde":  # the grid solver: the same files, a density for particles
        from .pde.run import execute_pde

        check_particle_run("pde", cfg.devices)

        return execute_pde(
            cfg, run_dir, resume=resume, progress=progress, label=label, base=base,
            make_figures=make_figures, from_scratch=from_scratch,
        )  # fmt: skip
    predictions = built is None if predictions is None else predictions
    with RunLock(run_dir):
        return _execute_locked(
            cfg, run_dir, resume, progress, label, base, make_figures, built, from_scratch,
            predictions,
        )  # fmt: skip


def _execute_locked(
    cfg, run_dir, resume, progress, label, base, make_figures, built, from_scratch, predictions
):
    built = build(cfg, base) if built is None else built
    t0 = time.perf_counter()
    state = resume_state(run_dir, built.config, from_scratch) if resume else None
    writer = open_run(run_dir, built, state)
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
            snapshot_steps=built.snapshot_steps,
            chunk=built.chunk,
            state=state,
            observer=writer,
            progress=progress_printer(label) if progress else None,
            keep_snapshots=False,
            guard=built.guard,
            devices=built.devices,
        )
    except KeyboardInterrupt:  # outside the loop's own handling (e.g. while compiling)
        step = 0 if state is None else int(state.step)
        message = f"interrupted at step {step}; continue it with `mfnn resume {run_dir}`."
        write_json(run_dir / "summary.json", {"status": "interrupted", "message": message,
                                               "checks": {}})  # fmt: skip
        raise
    except Exception as exc:  # a failed run keeps its files and says why
        summary = {"status": "failed", "message": f"{type(exc).__name__}: {exc}", "checks": {}}
        write_json(run_dir / "summary.json", summary)
        raise
    metrics = read_metrics(run_dir)
    if predictions:  # not for a customised build of stacked systems: no single network
        write_predictions(run_dir, built, traj.state.theta)
    summary = single_summary(traj, metrics, built, time.perf_counter() - t0)
    write_json(run_dir / "summary.json", summary)
    if make_figures and metrics:
        from .plots import run_figures

        run_figures(run_dir, metrics, built)
    return traj, built, summary


MAX_PREDICTED = 100_000  # points of a data set whose predictions a run writes


@eqx.filter_jit
def _predict(model, theta, x):
    """The model's outputs, one compiled program per shape (eager, each of its operations
    would be a program of its own, read back from the compilation cache one by one)."""
    return model.predict(theta, x)


def write_predictions(run_dir, built: Built, theta) -> Path | None:
    """``predictions.npz``: the network's outputs on its data sets, for the final particles
    and for every snapshot (`mfnn.rundir.list_snapshots`):

    - ``x_test``, ``y_test``, ``f_test`` (the final f on x_test), ``f_test_snapshots``
      (S, n_test) at ``snapshot_steps`` (S,); the same with ``train`` for the training set.

    Written atomically when the run stops (completed, diverged or interrupted), for runs
    built from their config (not for a customised build of stacked systems); data sets of
    more than `MAX_PREDICTED` points and population risks (no data set) are left out.
    Returns the path, or None when there was nothing to write."""
    from .measure import atomic_savez, load_particles

    sets = {
        name: ds
        for name, ds in (("test", built.test), ("train", built.train))
        if ds is not None and ds.x.shape[0] <= MAX_PREDICTED
    }
    if not sets:
        return None
    snaps = {}
    from .rundir import list_snapshots

    for step, path in list_snapshots(run_dir).items():
        try:
            snaps[step] = load_particles(path, built.model, built.theta0.dtype)
        except ConfigError:  # a snapshot of another layout: not this run's
            continue
    steps = sorted(snaps)
    arrays = {"snapshot_steps": np.asarray(steps, np.int64)}
    theta = jnp.asarray(theta)
    for name, ds in sets.items():
        arrays[f"x_{name}"] = np.asarray(ds.x)
        arrays[f"y_{name}"] = np.asarray(ds.y)
        arrays[f"f_{name}"] = np.asarray(_predict(built.model, theta, ds.x))
        if steps:
            arrays[f"f_{name}_snapshots"] = np.stack(
                [np.asarray(_predict(built.model, snaps[k], ds.x)) for k in steps]
            )
    path = Path(run_dir) / "predictions.npz"
    atomic_savez(path, **arrays)
    return path


def single_summary(traj: Trajectory, metrics: dict, built: Built, wall: float) -> dict:
    rel = np.abs(metrics.get("energy_rel_residual", np.array([])))
    rel = rel[np.isfinite(rel)]
    checks = {}
    if rel.size:
        med = float(np.median(rel))
        checks["energy_identity"] = check(med, "median |energy_rel_residual| <= 0.1", med <= 0.1)
    last = {k: float(v[-1]) for k, v in metrics.items() if k not in ("step",)} if metrics else {}
    extra = {}
    objective, model = built.objective, built.model
    if isinstance(objective, PopulationRisk) and objective.method == "quadrature":
        # |R_q - R_2q|, first and last
        extra["quadrature_error"] = {
            "nodes": objective.nodes,
            "initial": float(objective.quadrature_error(model, jnp.asarray(built.theta0))),
            "final": float(objective.quadrature_error(model, jnp.asarray(traj.final))),
        }
    if traj.divergence is not None:
        kept = traj.divergence["kept_step"]
        extra["divergence"] = traj.divergence | {"kept_file": str(snapshot_path(Path(), kept))}
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
