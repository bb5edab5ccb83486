"""Sweeps: a grid of configs, each point an ordinary run directory, one aggregated table.

    mfnn sweep CONFIG --grid model.width=100,1000,10000 --grid seed=0..4 --out DIR

Layout (a contract, like a run directory)::

    DIR/sweep.json                  the base config, the grid, the points (name -> overrides)
                                    and earlier_points (an earlier grid's, not in this one)
    DIR/points/<name>/              one run directory (or named-experiment directory) a point
    DIR/table.csv                   one row per point: grid values, in_grid, status, final
                                    metrics (earlier points' rows kept, in_grid False)
    DIR/figures/sweep.png           final loss against the first numeric grid key
    DIR/lock                        the sweep's claim on DIR (`mfnn.rundir.RunLock`): a
                                    second sweep on DIR is refused; each point locks its own

A sweep is resumable: running the same command again skips the points whose directory
completed with the same config (`mfnn.rundir.run_dir_status`) and runs the rest, continuing
interrupted points from their checkpoints (a point stopped before its first checkpoint
starts over, its rows moved to ``previous/``). A point that fails is reported in the table
(status ``failed`` and its message), never fatal to the others.

Execution: local processes in parallel (``workers``; spawned, not forked, since JAX is
multi-threaded) by default, or the same tasks submitted to a Dask distributed scheduler
(``dask_address``; the ``dask`` extra) for sweeps beyond one machine.

Seed batches (``batch_seeds``, ``--batch-seeds``; off by default): the points that differ
only in ``seed`` and are plain runs are integrated together, vmapped, in one process
(`run_batch`, `mfnn.simulate.simulate_batch`); each still writes its own ordinary run
directory, and the table's ``batched`` column says which points ran that way. Measured on
the 2-core CPU (benchmarks/bench_sweep.py, results/bench_sweep_cpu2.json), 8 seeds of a
teacher-student gradient flow (m = n = 512, 400 steps), whole ``mfnn sweep`` processes:
the batch took 0.99x the serial time (7.9 s against 7.8 s; final losses equal to 2e-16),
because XLA on CPU runs a vmapped chunk no faster than the seeds one by one (1.03x the
time at m = n = 128, 1.65x at 512, likely as the batch's arrays outgrow the cache); what a
batch saves is per-point overhead. Two local processes took 1.4x the serial time there
(spawn, imports and compilation per process, on a machine another job also loaded).
Batches are for accelerators, where one small run leaves the device idle (not measured:
no GPU in that session).

Stopping (SIGINT, i.e. Ctrl-C, or SIGTERM): queued points are cancelled and running points
interrupted. A local worker process that receives the signal (from the terminal, which
signals the whole foreground process group, or forwarded by the sweep process to each
worker) raises KeyboardInterrupt in its point's run loop once, so the run ends with status
``interrupted`` in its summary.json and keeps its last checkpoint (a point stopped outside
its run loop, e.g. while compiling, gets ``interrupted`` written over the ``running`` its
summary.json was left at, by `run_point`); a later signal to the same
worker is ignored, and a worker that has been signalled reports each task it is handed
afterwards as ``cancelled`` without running it. The sweep process waits for the running
points to stop (at most `INTERRUPT_GRACE_S`; a second Ctrl-C or the end of the grace kills
the workers, whose points then read ``interrupted`` and continue from their last
checkpoint), writes table.csv with the finished points and a row ``interrupted`` or
``cancelled`` for each other one, and raises `SweepInterrupted` (`mfnn sweep` exits 130
and says to run the same command again: a sweep resumes). With Dask the queued futures
are cancelled (``client.cancel``); a task a Dask worker already runs cannot be
interrupted from here and runs on to its end (its row reads ``cancelled``). A process
that inherited SIGINT ignored (a background job) keeps ignoring it.

Worker lifetime: local workers are spawned with SIGINT and SIGTERM blocked (the sweep
process blocks them while it starts workers), and the pool initializer (`_worker_init`)
installs the worker's handlers before it unblocks them, so no signal reaches a worker
half started. Workers die with the sweep process, even after ``kill -9`` of it: on Linux
the initializer asks the kernel for SIGTERM when the parent dies
(``prctl(PR_SET_PDEATHSIG, SIGTERM)``; the kernel sends it when the thread that started
the worker ends, here the sweep process's main thread, so when the process ends), then
checks that its parent is still the sweep
process (``os.getppid()`` against the pid the sweep process passed), which closes the race
where the parent died before prctl ran; elsewhere, and as a second line on Linux, a daemon
thread polls ``os.getppid()`` every `WATCHDOG_POLL_S` and sends the worker SIGTERM when the
parent is gone. On that SIGTERM an idle worker exits at once, a running point is
interrupted as above (its summary reads ``interrupted``) and the worker exits after it,
and a worker whose point has not stopped `PARENT_GONE_GRACE_S` later exits regardless
(the run keeps its last checkpoint; a rerun drops the metrics rows after it).

Grid rules: a sweep has at most `MAX_POINTS` points (the product of the value counts is
computed, and a range's length read, before any list is built); a value repeated within a
key (``seed=1,1``), two points with one directory name (``a b`` and ``a_b``) or two points
whose validated configs are equal (``model.width=100,1e2``) are refused before any run, as
they would make two writers on one run directory or run one config twice.

Kept rows: table.csv keeps the rows of points that an earlier run of the sweep (in the
same directory) had and the current grid does not, read from the previous table.csv, with
``in_grid`` False (True for the current grid's points); sweep.json lists those points
under ``earlier_points`` (name -> grid values).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Any

import yaml

from .config import dump, load, parse_yaml
from .errors import ConfigError
from .interrupts import in_unraisable_context, interrupt

DASK_TIMEOUT_S = 5.0
_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")
# the most points one sweep takes (each is a run directory and a process task)
MAX_POINTS = 10_000
# after a stop signal, how long the sweep waits for running points to end their run
INTERRUPT_GRACE_S = 30.0
# a worker's check of its parent, and how long it may take to stop once the parent died
WATCHDOG_POLL_S = 1.0
PARENT_GONE_GRACE_S = 10.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by SIGINT or SIGTERM, after writing its table.

    Attributes:
        rows: the current grid's rows (status ``interrupted`` or ``cancelled`` for the
            points that did not finish).
        out: the sweep directory.
    """

    def __init__(self, rows: list[dict[str, Any]], out: Path):
        super().__init__(f"sweep interrupted; table -> {out / 'table.csv'}")
        self.rows = rows
        self.out = out


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    """``key=v1,v2,...`` or ``key=a..b`` (integers a to b inclusive) -> {key: values}.

    Values are read as YAML (numbers, booleans, strings). Refused (`ConfigError` naming
    ``--grid``): a repeated key, a value repeated within a key, a value that is not valid
    YAML, and a grid of more than `MAX_POINTS` points (a range's length and the product
    of the counts are checked before any list is built).

    Example:
        >>> parse_grid(["model.width=100,1000", "seed=0..2", "model.activation=relu,tanh"])
        {'model.width': [100, 1000], 'seed': [0, 1, 2], 'model.activation': ['relu', 'tanh']}
    """
    if not specs:
        raise ConfigError(
            "`--grid` is empty: give at least one `--grid key=v1,v2` (e.g. "
            "`--grid model.width=100,1000 --grid seed=0..4`)."
        )
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, text = spec.partition("=")
        key = key.strip()
        if not sep or not key or not all(key.split(".")):
            raise ConfigError(
                f"`--grid` takes key=v1,v2 or key=a..b (e.g. `model.width=100,1000`); got {spec!r}."
            )
        if key in grid:
            raise ConfigError(f"`--grid` names {key!r} twice; give its values once.")
        rng = _RANGE.match(text)
        if rng:
            lo, hi = int(rng.group(1)), int(rng.group(2))
            if hi < lo:
                raise ConfigError(f"`--grid {key}={text}`: the range a..b needs a <= b.")
            _check_size({**{k: len(v) for k, v in grid.items()}, key: hi - lo + 1})
            values = list(range(lo, hi + 1))
        else:
            values = [_grid_value(key, v) for v in text.split(",") if v.strip() != ""]
        if not values:
            raise ConfigError(f"`--grid {key}=` has no values; got {spec!r}.")
        seen: dict[str, Any] = {}
        for v in values:
            tag = json.dumps(v, sort_keys=True, default=str)
            if tag in seen:
                raise ConfigError(
                    f"`--grid {key}=...` repeats the value {v!r}; give each value once (two "
                    "equal points would write to one run directory)."
                )
            seen[tag] = v
        grid[key] = values
        _check_size({k: len(v) for k, v in grid.items()})
    return grid


def _grid_value(key: str, text: str) -> Any:
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        marked = isinstance(exc, yaml.MarkedYAMLError) and exc.problem
        why = marked or str(exc).splitlines()[0]
        raise ConfigError(
            f"`--grid {key}=...`: the value {text.strip()!r} is not valid YAML ({why}). Values "
            "are separated by ',', so a list cannot be one; quote a string that YAML "
            "would read otherwise."
        ) from None


def grid_size(grid: dict[str, Any]) -> int:
    """The number of points of ``grid`` ({key: values} or {key: count}), without
    building them.

    Example:
        >>> grid_size({"model.width": [4, 8, 16], "seed": 10**6})
        3000000
    """
    return math.prod(v if isinstance(v, int) else len(v) for v in grid.values())


def _check_size(grid: dict[str, Any], limit: int | None = None) -> None:
    limit = MAX_POINTS if limit is None else limit
    n = grid_size(grid)
    if n > limit:
        counts = " x ".join(f"{k}: {v if isinstance(v, int) else len(v)}" for k, v in grid.items())
        raise ConfigError(
            f"`--grid` makes {n} points ({counts}); a sweep takes at most {limit} "
            "(`mfnn.sweep.MAX_POINTS`). Split it into smaller sweeps or use fewer values."
        )


def _fmt(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]", "_", str(value))


def expand(grid: dict[str, list[Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The cartesian product of the grid: (point name, {key: value}) in a fixed order.

    Example:
        >>> [n for n, _ in expand({"model.width": [10, 20], "seed": [0, 1]})]
        ['model.width=10__seed=0', 'model.width=10__seed=1', 'model.width=20__seed=0', \
'model.width=20__seed=1']
    """
    keys = list(grid)
    out = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        name = "__".join(f"{k}={_fmt(v)}" for k, v in values.items())
        out.append((name, values))
    return out


def _overrides(values: dict[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def _final_row(run_dir: Path) -> dict[str, float]:
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return {}
    from .rundir import read_metrics

    m = read_metrics(run_dir)
    return {f"final_{k}": float(v[-1]) for k, v in m.items() if k not in ("step",) and len(v)}


_INTERRUPTED = "interrupted (the sweep was stopped); run the same command again to continue it"
_CANCELLED = "not run (the sweep was stopped first); run the same command again to run it"


def run_point(raw: dict, overrides: list[str], run_dir: str, base: str | None = None) -> dict:
    """Run (or resume) one point into ``run_dir``; return its table row (never raises).

    A config naming an experiment (``experiment.name``) runs that experiment; its checks
    are reported as ``check:<name>`` (value) and ``passed``. A plain run continues from
    its checkpoint; one stopped before its first checkpoint starts over, its rows moved
    to ``previous/`` (`mfnn.runs.resume_state` with ``from_scratch``), so that running a
    sweep again finishes it. An interrupt (KeyboardInterrupt) ends the point with status
    ``interrupted``: inside the run loop the run itself saves its state and says so,
    elsewhere the row (and a summary.json left at ``running``) does.
    """
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    row: dict[str, Any] = {}
    try:
        from .experiments import EXPERIMENTS
        from .rundir import run_dir_status
        from .runs import execute

        cfg = load(raw, overrides)
        exp = EXPERIMENTS.get(cfg.experiment.name) if cfg.experiment.name else None
        if run_dir_status(run_dir, cfg) == "completed":
            summary = json.loads((run_dir / "summary.json").read_text())
            row["reused"] = True
        elif exp is not None:
            summary = exp.run(cfg, run_dir, resume=True, progress=False)
        else:  # a point that cannot continue (no checkpoint yet) restarts, old rows aside
            _, _, summary = execute(
                cfg,
                run_dir,
                resume=True,
                progress=False,
                base=base,
                make_figures=False,
                from_scratch=True,
            )
        row.update(status=summary.get("status"), final_loss=summary.get("final_loss"))
        if exp is not None:
            row["passed"] = summary.get("passed")
            for name, c in (summary.get("checks") or {}).items():
                row[f"check:{name}"] = c.get("value")
        else:
            row.update(_final_row(run_dir))
        if summary.get("status") != "completed" and summary.get("message"):
            row["message"] = summary["message"]
    except KeyboardInterrupt:  # outside the run loop (which ends the run itself)
        row.update(status="interrupted", message=_INTERRUPTED)
        _mark_interrupted(run_dir)
    except Exception as exc:  # noqa: BLE001 - a failed point is a row, not the end of the sweep
        row.update(status="failed", message=f"{type(exc).__name__}: {exc}")
    row["wall_s"] = time.perf_counter() - t0
    return row


def _mark_interrupted(run_dir: Path) -> None:
    """A run stopped outside its run loop (while compiling, say) leaves summary.json at
    ``running``; say ``interrupted`` instead (either way a later sweep resumes it from its
    checkpoint)."""
    from .rundir import read_json, write_json

    path = Path(run_dir) / "summary.json"
    try:
        summary = read_json(path) if path.is_file() else {}
        if summary.get("status") == "running":
            write_json(path, summary | {"status": "interrupted", "message": _INTERRUPTED})
    except (OSError, ValueError, AttributeError):
        pass


def _batchable(cfg) -> str | None:
    """Why the config cannot run in a seed batch (None if it can)."""
    if cfg.experiment.name:
        return f"a named experiment ({cfg.experiment.name}) runs its own way"
    if cfg.dynamics.kind == "pde":
        return "a grid (pde) run has no particles to stack"
    return None


def run_batch(raw: dict, overrides: list[list[str]], run_dirs: list[str], base=None) -> list[dict]:
    """Run (or resume) points that differ only in ``seed`` as one vmapped batch; return
    their table rows (never raises).

    Each point is built as `mfnn.runs.execute` builds it (`mfnn.build.build`: data,
    teacher, test set, initial particles and the dynamics key are all functions of the
    seed), the members are stacked and integrated together by
    `mfnn.simulate.simulate_batch`, and each point's directory gets what an unbatched run
    writes: config.yaml, metrics.csv (the same columns), snapshots, checkpoint.npz and
    summary.json (the same keys; ``wall_s`` is the point's share of the batch's wall time).
    So a batched point is an ordinary run: `mfnn resume` and a later sweep treat it as one.

    Points already completed with the same config are reused. If the rest cannot form a
    batch (fewer than two, other shapes, different checkpoint steps) or the batch fails
    (a member became NaN/inf, an error), each of them runs unbatched with `run_point`,
    continuing from the checkpoint the batch left, so failure handling stays per point;
    such a row has ``batched`` False and says why in ``batch_error``.
    """
    t0 = time.perf_counter()
    rows: list[dict | None] = [None] * len(run_dirs)
    todo: list[int] = []
    note = None
    try:
        from .rundir import run_dir_status

        cfgs = [load(raw, ov) for ov in overrides]
        for i, cfg in enumerate(cfgs):
            if run_dir_status(run_dirs[i], cfg) == "completed":
                rows[i] = run_point(raw, overrides[i], run_dirs[i], base)
            else:
                todo.append(i)
        why = next((w for w in map(_batchable, cfgs) if w), None)
        if why:
            raise ConfigError(why)
        if len(todo) >= 2:
            done = _run_members([cfgs[i] for i in todo], [run_dirs[i] for i in todo], base)
            wall = (time.perf_counter() - t0) / len(todo)
            for i, row in zip(todo, done, strict=True):
                rows[i] = row | {"batched": True, "wall_s": wall}
            todo = []
    except KeyboardInterrupt:  # outside the batch's run loop: no fallback, the sweep stops
        for i in range(len(run_dirs)):
            if rows[i] is None:
                _mark_interrupted(Path(run_dirs[i]))
                rows[i] = {"status": "interrupted", "message": _INTERRUPTED}
        todo = []
    except Exception as exc:  # noqa: BLE001 - the points run one by one instead
        note = f"{type(exc).__name__}: {exc}"
    for i in todo:
        rows[i] = run_point(raw, overrides[i], run_dirs[i], base)
        if note is not None:
            rows[i]["batch_error"] = note
    return [r | {"batched": r.get("batched", False)} for r in rows if r is not None]


def _run_members(cfgs: list, run_dirs: list[str], base) -> list[dict]:
    """Build, stack, integrate once, and write each member's run directory."""
    from .build import build
    from .rundir import read_metrics, write_json
    from .runs import open_run, resume_state, single_summary, write_predictions
    from .simulate import simulate_batch

    t0 = time.perf_counter()
    dirs = [Path(d) for d in run_dirs]
    built = [build(cfg, base) for cfg in cfgs]
    first = built[0]
    for b in built[1:]:  # what `simulate_batch` shares must agree (it stacks the rest)
        if (b.dt, b.steps, b.snapshot_every, b.chunk, b.integrator, b.guard) != (
            first.dt,
            first.steps,
            first.snapshot_every,
            first.chunk,
            first.integrator,
            first.guard,
        ):
            raise ConfigError("the points of a seed batch differ in more than their seed.")
    states = [resume_state(d, b.config) for d, b in zip(dirs, built, strict=True)]
    if len({0 if s is None else s.step for s in states}) > 1:
        raise ConfigError("the points continue from checkpoints at different steps.")
    writers = [open_run(d, b, s) for d, b, s in zip(dirs, built, states, strict=True)]
    trajs = simulate_batch(
        [b.dynamics for b in built],
        first.integrator,
        [b.theta0 for b in built],
        dt=first.dt,
        steps=first.steps,
        key=[b.key for b in built],
        recorder=[b.recorder for b in built],
        snapshot_every=first.snapshot_every,
        snapshot_steps=first.snapshot_steps,
        chunk=first.chunk,
        state=states,
        observer=writers,
        keep_snapshots=False,
        guard=first.guard,  # the guard is not swept (`_run_members` checks)
    )
    wall = (time.perf_counter() - t0) / len(built)
    rows = []
    for d, b, traj in zip(dirs, built, trajs, strict=True):
        write_predictions(d, b, traj.state.theta)
        summary = single_summary(traj, read_metrics(d), b, wall)
        write_json(d / "summary.json", summary)
        row = {"status": summary["status"], "final_loss": summary["final_loss"]}
        row.update(_final_row(d))
        if summary["status"] != "completed":
            row["message"] = summary["message"]
        rows.append(row)
    return rows


def _dask_client(address: str):
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError(
            "`--dask` needs the `dask` extra: pip install 'mfnn[dask]' (dask.distributed)."
        ) from None
    try:
        return Client(address, timeout=DASK_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"`--dask`: could not reach a Dask scheduler at {address!r} within "
            f"{DASK_TIMEOUT_S:g} s ({type(exc).__name__}: {exc}). Check the address "
            "(e.g. tcp://127.0.0.1:8786) and that the scheduler runs."
        ) from None


def seed_batches(
    points: list[tuple[str, dict[str, Any]]], plain: dict[str, bool], parts: int = 1
) -> list[list[str]]:
    """Group the points that differ only in ``seed`` (every other grid value equal) and
    whose config is a plain run (``plain[name]``); split each group into at most
    ``parts`` batches of near-equal size. Groups (or parts) of one point are left out.

    Example:
        >>> pts = expand({"model.width": [4, 8], "seed": [0, 1, 2]})
        >>> seed_batches(pts, {n: True for n, _ in pts})[0]
        ['model.width=4__seed=0', 'model.width=4__seed=1', 'model.width=4__seed=2']
        >>> [len(b) for b in seed_batches(pts, {n: True for n, _ in pts}, parts=2)]
        [2, 2]

        (Split in two, each group of 3 gives a batch of 2 and a single point, which runs
        unbatched.)
    """
    groups: dict[str, list[str]] = {}
    for name, values in points:
        if "seed" in values and plain[name]:
            rest = json.dumps({k: v for k, v in values.items() if k != "seed"}, sort_keys=True)
            groups.setdefault(rest, []).append(name)
    out = []
    for names in groups.values():
        k = min(max(parts, 1), len(names))
        size = math.ceil(len(names) / k)
        out += [names[i : i + size] for i in range(0, len(names), size)]
    return [b for b in out if len(b) >= 2]


# ---- stopping and worker lifetime (see the module docstring) ----

_PARENT: int | None = None  # in a pool worker: the sweep process's pid
_STOPPING = False  # in a pool worker: a stop signal came (later tasks are not run)
_RUNNING = False  # in a pool worker: a task is running
_INTERRUPTED_ONCE = False  # in a pool worker: KeyboardInterrupt was raised for the stop


def _die_with_parent() -> bool:
    """Linux: ask for SIGTERM when the parent dies (``prctl(PR_SET_PDEATHSIG)``).

    Returns whether the kernel took the request (False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, int(signal.SIGTERM), 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def _worker_init(parent: int, cache: str | None = None) -> None:
    """Pool initializer: stop signals handled, death with the parent (module docstring),
    and the sweep process's persistent compilation cache (``cache``, if it has one on), so
    that the workers load what an earlier process compiled.

    The worker starts with SIGINT and SIGTERM blocked (inherited from the sweep process,
    which blocks them while it starts workers): the handlers are installed first, then
    PR_SET_PDEATHSIG is set, then the signals are unblocked (one that came meanwhile is
    handled now), then the parent is checked: if ``os.getppid()`` is no longer ``parent``
    (the sweep process), it died before prctl ran and no signal will come, so the worker
    exits. A daemon thread (`_watch_parent`) then polls ``os.getppid()``.
    """
    global _PARENT
    _PARENT = parent
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _worker_signal)
    _die_with_parent()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(_STOP_SIGNALS))
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent,), name="mfnn-watch-parent", daemon=True
    ).start()
    if cache:
        from .cache import enable_compilation_cache

        enable_compilation_cache(cache)


def _worker_signal(signum: int, frame) -> None:
    """A worker's SIGINT/SIGTERM: interrupt the running point once; exit if idle and the
    parent is gone; otherwise remember it (later tasks are reported ``cancelled``)."""
    global _STOPPING, _INTERRUPTED_ONCE
    _STOPPING = True
    if not _RUNNING and os.getppid() != _PARENT:
        os._exit(128 + signum)
    if _RUNNING and not _INTERRUPTED_ONCE:
        if not in_unraisable_context(frame):
            _INTERRUPTED_ONCE = True
        interrupt(signum, frame)  # raises, or sends the signal again a moment later


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCHDOG_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)  # handled in the main thread, as PDEATHSIG's is
    time.sleep(PARENT_GONE_GRACE_S)
    os._exit(1)


def _rows_of(n: int, **row: Any) -> dict | list[dict]:
    """One row (a single point's task) or ``n`` copies (a batch's)."""
    return dict(row) if n == 1 else [dict(row) for _ in range(n)]


def _pool_task(n: int, fn, *args):
    """Run ``fn(*args)`` (`run_point` or `run_batch`, for ``n`` points) in a pool worker,
    unless a stop signal came first (then its rows say ``cancelled``)."""
    global _RUNNING
    _RUNNING = True
    try:
        if _STOPPING:
            return _rows_of(n, status="cancelled", message=_CANCELLED)
        return fn(*args)
    except KeyboardInterrupt:  # before the point's own handling took over
        return _rows_of(n, status="interrupted", message=_INTERRUPTED)
    finally:
        _RUNNING = False
        if _PARENT is not None and os.getppid() != _PARENT:
            os._exit(1)  # the sweep process is gone: nobody reads the result


class _Stop:
    """The sweep process's stop request: set by the first SIGINT/SIGTERM."""

    def __init__(self) -> None:
        self.requested = False
        self.hurry = False  # a further signal raises too (while waiting for the workers)


@contextlib.contextmanager
def _stop_on_signals(stop: _Stop):
    """SIGINT and SIGTERM request a stop (KeyboardInterrupt, once) while the points run.

    Only in the main thread (where Python runs signal handlers); a signal this process
    inherited as ignored stays ignored. The previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        first = not stop.requested
        stop.requested = True
        if first or stop.hurry:
            if in_unraisable_context(frame):
                stop.requested = not first  # the resent signal is the first again
            interrupt(signum, frame)

    old = {}
    for sig in _STOP_SIGNALS:
        current = signal.getsignal(sig)
        if current is not signal.SIG_IGN and current is not None:
            old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


@contextlib.contextmanager
def _blocked(signals):
    """Block ``signals`` in this thread (processes started meanwhile inherit the mask)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, set(signals))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _run_pool(tasks, workers: int, done, stop: _Stop, progress: bool) -> None:
    ctx = multiprocessing.get_context("spawn")
    jax = sys.modules.get("jax")  # the cache this process uses, if any, for the workers too
    cache = jax.config.jax_compilation_cache_dir if jax else None
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)),
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(os.getpid(), cache or None),
    )
    futures: list = []
    try:
        try:
            with _blocked(_STOP_SIGNALS):  # workers start with them blocked (`_worker_init`)
                for names, fn, a in tasks:
                    futures.append((names, pool.submit(_pool_task, len(names), fn, *a)))
            for names, fut in futures:
                try:
                    result = fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker died (BrokenProcessPool)
                    result = _rows_of(len(names), status="failed", message=_died(exc))
                done(names, result)
        except KeyboardInterrupt:
            stop.requested = True
            _stop_pool(futures, done, stop, progress)
    finally:
        try:
            pool.shutdown(wait=True, cancel_futures=True)
        except KeyboardInterrupt:
            _kill()
            pool.shutdown(wait=False, cancel_futures=True)


def _died(exc: BaseException) -> str:
    return (
        f"the worker process ended without a result ({type(exc).__name__}: {exc}); "
        "run the same command again to continue the point"
    )


def _workers() -> list:
    # ProcessPoolExecutor has no public list of its processes; this process's
    # multiprocessing children are the pool's workers (a sweep starts no others)
    return multiprocessing.active_children()


def _kill() -> None:
    for proc in _workers():
        with contextlib.suppress(Exception):
            if proc.is_alive():
                proc.kill()


def _stop_pool(futures, done, stop: _Stop, progress: bool) -> None:
    """Cancel the queued tasks, interrupt the running ones (SIGINT to each worker), wait
    for them (`INTERRUPT_GRACE_S`, or until a second signal), kill what still runs, and
    give every unfinished point its row."""
    for _, fut in futures:
        fut.cancel()
    running = [f for _, f in futures if not f.done()]
    if progress and running:
        print(
            f"stopping: interrupting the running points (at most {INTERRUPT_GRACE_S:g} s; "
            "Ctrl-C again to kill them now)",
            file=sys.stderr,
            flush=True,
        )
    for proc in _workers():
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(proc.pid, signal.SIGINT)
    stop.hurry = True
    try:
        wait_futures(running, timeout=INTERRUPT_GRACE_S)
    except KeyboardInterrupt:
        pass
    finally:
        stop.hurry = False
    if not all(f.done() for f in running):  # past the grace, or a second signal
        _kill()
    for names, fut in futures:
        if fut.cancelled():
            result = _rows_of(len(names), status="cancelled", message=_CANCELLED)
        elif fut.done() and fut.exception() is None:
            result = fut.result()
        else:  # killed, or its worker died
            result = _rows_of(len(names), status="interrupted", message=_INTERRUPTED)
        done(names, result, True)


def _run_serial(tasks, done, stop: _Stop) -> None:
    current: list[str] = []
    try:
        for names, fn, a in tasks:
            if stop.requested:
                break
            current = names
            done(names, fn(*a))  # a signal in a run ends that run (status interrupted)
            current = []
            release_if_crowded()
    except KeyboardInterrupt:
        stop.requested = True
    if stop.requested:
        if current:
            n = len(current)
            done(current, _rows_of(n, status="interrupted", message=_INTERRUPTED), True)
        for names, _, _ in tasks:
            done(names, _rows_of(len(names), status="cancelled", message=_CANCELLED), True)


def _run_dask(tasks, address: str, done, stop: _Stop) -> None:
    client = _dask_client(address)
    futures: list = []
    try:
        try:
            for names, fn, a in tasks:
                futures.append((names, client.submit(fn, *a, pure=False)))
            for names, fut in futures:
                done(names, fut.result())
        except KeyboardInterrupt:
            stop.requested = True
            pending = [f for _, f in futures if not f.done()]
            with contextlib.suppress(Exception):
                client.cancel(pending)
            for names, fut in futures:
                result = None
                if fut.status == "finished":
                    with contextlib.suppress(Exception):
                        result = fut.result(timeout=DASK_TIMEOUT_S)
                if result is None:
                    result = _rows_of(
                        len(names),
                        status="cancelled",
                        message=_CANCELLED
                        + " (a task a Dask worker had started runs on to its end)",
                    )
                done(names, result, True)
            for names, _, _ in tasks:  # not even submitted
                done(names, _rows_of(len(names), status="cancelled", message=_CANCELLED), True)
    finally:
        client.close()


def _check_out(out: Path) -> None:
    """Refuse an ``out`` that is a file or cannot be written, before any compute."""
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"`--out` {str(out)!r} is a file, not a directory; give a new path or the "
            "directory of an earlier run of this sweep."
        )
    probe = out
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(
            f"`--out` {str(out)!r}: {str(probe)!r} is a file, so no directory can be made "
            "under it; choose another path."
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(
            f"`--out` {str(out)!r}: {str(probe)!r} is not writable by this user; choose a "
            "directory you can write to."
        )


def _check_points(points: list[tuple[str, dict[str, Any]]]) -> None:
    """Two points with one directory name would be two writers on one run directory."""
    seen: dict[str, dict[str, Any]] = {}
    for name, values in points:
        if name in seen:
            raise ConfigError(
                f"`--grid`: the points {seen[name]} and {values} have one directory name "
                f"{name!r} (a point's name keeps letters, digits and '.+-' and writes '_' "
                "for the rest); give values that differ in those characters."
            )
        seen[name] = values


def _previous(out: Path) -> tuple[dict[str, dict], dict[str, Any]]:
    """An earlier run's table rows ({point: row}) and points (sweep.json's ``points`` and
    ``earlier_points``); empty where there is none or it cannot be read."""
    rows: dict[str, dict] = {}
    if (out / "table.csv").is_file():
        with contextlib.suppress(OSError, csv.Error, UnicodeDecodeError):
            rows = {r["point"]: r for r in read_table(out) if r.get("point")}
    points: dict[str, Any] = {}
    if (out / "sweep.json").is_file():
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
            prev = json.loads((out / "sweep.json").read_text())
            points = {**prev.get("earlier_points", {}), **prev.get("points", {})}
    return rows, points


def run_sweep(
    raw: dict,
    grid: dict[str, list[Any]],
    out: str | Path,
    *,
    workers: int = 2,
    dask_address: str | None = None,
    base: str | Path | None = None,
    progress: bool = True,
    batch_seeds: bool = False,
) -> list[dict[str, Any]]:
    """Run every point of ``grid`` over the base config ``raw``; write the table.

    Every point's config is validated before anything runs, so an unknown key or a bad
    value fails at once (`ConfigError` naming the point); so do a grid of more than
    `MAX_POINTS` points, two points with one directory name or one validated config, and
    an ``out`` that is a file or not writable. Returns the current grid's table rows
    (table.csv also keeps earlier points outside the grid, ``in_grid`` False).

    A SIGINT or SIGTERM stops the sweep (module docstring): queued points are cancelled,
    running ones interrupted, the table is written with a row for each point, and
    `SweepInterrupted` (a KeyboardInterrupt) is raised.

    Seed batches (``batch_seeds``): points that differ only in ``seed`` and are plain
    runs (not named experiments, which run their own multi-run logic as before) are
    integrated together in one process by `run_batch` (vmap over the stacked runs).
    Every dynamics a config builds can be carried: gradient flow, SGD with minibatches
    or online samples, Langevin, birth-death, since data, teacher, initial particles and
    keys are all functions of the seed and only array values differ (members of other
    shapes are refused and run unbatched). Each point still gets its own ordinary run
    directory, and its metrics agree with the unbatched run to float64 round-off (not
    bit for bit: batched matmuls may sum in another order). With ``workers`` > 1 a seed
    group is split into ``workers`` batches, one a process; with Dask each group is one
    batch. The table's ``batched`` column says which points ran in a batch (for a reused
    point: what the previous table said).

    Off by default: on the 2-core CPU (benchmarks/bench_sweep.py,
    results/bench_sweep_cpu2.json) a batch of 8 seeds (m = n = 512, 400 steps) took
    0.99x the serial sweep's time, and a vmapped chunk is no faster than the seeds one
    by one there (1.03x at m = 128, 1.65x at m = 512), so batching buys nothing on CPU
    and costs bit-identity with `mfnn run` (round-off only). Turn it on where one small
    run leaves an accelerator idle (no GPU measurement yet).

    Args:
        raw: the base config (a dict, as read from YAML).
        grid: {dotted key: values} (`parse_grid`).
        out: the sweep directory.
        workers: local processes (1: in this process).
        dask_address: submit to this Dask scheduler instead of local processes.
        base: folder that relative paths in the config are resolved against.
        progress: print a line as each point finishes.
        batch_seeds: batch the points that differ only in their seed.

    Raises:
        ConfigError: bad input, before any run.
        SweepInterrupted: a SIGINT or SIGTERM stopped the sweep (after the table).
    """
    if not grid:
        raise ConfigError("the sweep grid is empty: give at least one key with values.")
    if not (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1):
        raise ConfigError(f"`--workers` must be a positive integer; got {workers!r}.")
    if not isinstance(batch_seeds, bool):
        raise ConfigError(f"`--batch-seeds` must be true or false; got {batch_seeds!r}.")
    _check_size(grid)
    out = Path(out)
    _check_out(out)
    points = expand(grid)
    _check_points(points)
    plain: dict[str, bool] = {}
    configs: dict[str, str] = {}  # validated config (YAML) -> point
    for name, values in points:  # validate all before any compute
        try:
            cfg = load(raw, _overrides(values))
        except ConfigError as exc:
            raise ConfigError(f"sweep point {name}: {exc}") from None
        plain[name] = _batchable(cfg) is None
        text = dump(cfg)
        if text in configs:
            raise ConfigError(
                f"`--grid`: the points {configs[text]} and {name} give one config once "
                "validated (equal values written two ways); give each value once, or "
                "they would run one config twice."
            )
        configs[text] = name
    from .rundir import RunLock

    with RunLock(out):  # one sweep at a time in a directory (its points lock their own)
        from .rundir import write_json

        points_by_name = dict(points)
        # an earlier run's points outside this grid: their rows are kept (``in_grid`` False)
        previous, previous_points = _previous(out)
        earlier_rows = [
            r | {"in_grid": False} for n, r in previous.items() if n not in points_by_name
        ]
        try:
            out.mkdir(parents=True, exist_ok=True)
            manifest = {
                "base": parse_yaml(dump(load(raw))),
                "grid": grid,
                "points": {name: values for name, values in points},
                "earlier_points": {
                    n: v for n, v in previous_points.items() if n not in points_by_name
                },
            }
            write_json(out / "sweep.json", manifest)
        except OSError as exc:
            raise ConfigError(
                f"`--out` {str(out)!r} cannot be written ({type(exc).__name__}: {exc}); choose "
                "a directory you can write to."
            ) from None
        base_s = None if base is None else str(base)

        def args(name: str) -> tuple:
            return (raw, _overrides(points_by_name[name]), str(out / "points" / name), base_s)

        # tasks: (point names, function, arguments); a batch task returns one row a point
        parts = 1 if dask_address is not None else workers
        batches = seed_batches(points, plain, parts) if batch_seeds else []
        in_batch = {n for b in batches for n in b}
        tasks: list[tuple[list[str], Any, tuple]] = []
        for name, _ in points:
            if name not in in_batch:
                tasks.append(([name], run_point, args(name)))
            elif name == next(b for b in batches if name in b)[0]:
                batch = next(b for b in batches if name in b)
                a = [args(n) for n in batch]
                tasks.append(
                    (batch, run_batch, (raw, [x[1] for x in a], [x[2] for x in a], base_s))
                )
        rows: dict[str, dict] = {}

        def table() -> list[dict]:
            return [rows[n] for n, _ in points if n in rows]

        def done(names: list[str], result: dict | list[dict], fill: bool = False) -> None:
            """Record the rows of a task; ``fill``: only for points without a row yet, and
            the table is written later (once, not once a point)."""
            results = result if isinstance(result, list) else [result]
            for name, row in zip(names, results, strict=True):
                if fill and name in rows:
                    continue
                row.setdefault("batched", False)
                if row.get("reused") and name in previous:
                    row["batched"] = previous[name].get("batched") == "True"
                rows[name] = {"point": name, **points_by_name[name], "in_grid": True, **row}
                if progress and row.get("status") != "cancelled":
                    print(
                        f"[{len(rows)}/{len(points)}] {name}: {row.get('status')} "
                        f"loss={row.get('final_loss')} ({row.get('wall_s', 0):.1f} s"
                        f"{', batched' if row['batched'] else ''})",
                        flush=True,
                    )
            if not fill:
                _write_table(out, table() + earlier_rows)

        stop = _Stop()
        try:
            with _stop_on_signals(stop):
                if dask_address is not None:
                    _run_dask(tasks, dask_address, done, stop)
                elif workers == 1 or len(tasks) == 1:
                    _run_serial(tasks, done, stop)
                else:
                    _run_pool(tasks, workers, done, stop, progress)
        except KeyboardInterrupt:  # in the instant between a runner and the handlers' end
            stop.requested = True
        if stop.requested:
            for names, _, _ in tasks:
                done(names, _rows_of(len(names), status="cancelled", message=_CANCELLED), True)
            _write_table(out, table() + earlier_rows)
            raise SweepInterrupted(table(), out)
        _plot(out, grid, table())
        return table()


# Every executable XLA compiles for the CPU keeps memory mappings of its own; past the
# kernel's vm.max_map_count (65530 by default) the next compile segfaults. A serial sweep
# compiles in this process for every new shape, so it releases the compiled code when
# the count nears the limit (same-shape points keep reusing it until then).
MAX_MAPPINGS = 40_000


def release_if_crowded(limit: int = MAX_MAPPINGS) -> bool:
    """Drop JAX's compiled code when this process holds more than ``limit`` memory
    mappings (Linux: the lines of /proc/self/maps; elsewhere never). Returns whether it
    did.

    Example:
        >>> release_if_crowded(limit=10**9)
        False
    """
    try:
        with open("/proc/self/maps", "rb") as fh:
            count = sum(1 for _ in fh)
    except OSError:
        return False
    if count <= limit:
        return False
    import gc

    import jax

    jax.clear_caches()
    gc.collect()
    return True


def _write_table(out: Path, rows: list[dict]) -> None:
    from .rundir import atomic_write_text

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, "") for k in keys})
    atomic_write_text(out / "table.csv", buf.getvalue())


def read_table(out: str | Path) -> list[dict[str, str]]:
    """table.csv as a list of rows (strings; empty cells for missing values)."""
    with open(Path(out) / "table.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _number(v) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _plot(out: Path, grid: dict[str, list[Any]], table: list[dict]) -> None:
    """Final loss against the first numeric grid key (other than seed), mean and spread
    over the seeds, one line per combination of the other keys."""
    keys = [k for k, v in grid.items() if k != "seed" and all(_number(x) is not None for x in v)]
    if not keys or len(grid[keys[0]]) < 2:
        return
    import numpy as np

    from .plots import plt, save_figure
    from .style import COLORS

    x_key = keys[0]
    others = [k for k in grid if k not in (x_key, "seed")]
    groups: dict[tuple, dict[float, list[float]]] = {}
    for r in table:
        loss = _number(r.get("final_loss"))
        if loss is None or r.get("status") != "completed":
            continue
        g = tuple(r.get(k) for k in others)
        groups.setdefault(g, {}).setdefault(float(r[x_key]), []).append(loss)
    if not groups:
        return
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for g, by_x in groups.items():
        xs = np.array(sorted(by_x))
        ys = [np.array(by_x[x]) for x in xs]
        mean = np.array([y.mean() for y in ys])
        label = ", ".join(f"{k}={v}" for k, v in zip(others, g, strict=True)) or "final loss"
        scaling = dict(zip(others, g, strict=True)).get("model.scaling")  # its style colour
        (line,) = ax.plot(xs, mean, "o-", color=COLORS.get(str(scaling)), label=label)
        if any(len(y) > 1 for y in ys):
            low, high = [y.min() for y in ys], [y.max() for y in ys]
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2)
    positive = all(x > 0 for x in grid[x_key])
    if positive:
        ax.set_xscale("log")
    if all(v > 0 for by_x in groups.values() for ys in by_x.values() for v in ys):
        ax.set_yscale("log")
    ax.set(
        xlabel=x_key,
        ylabel=r"final risk $R(\mu_T)$ (train)",
        title=f"final risk against {x_key} (mean and range over seeds)",
    )
    ax.legend(fontsize=7)
    save_figure(fig, out / "figures" / "sweep.png")
