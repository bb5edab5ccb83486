"""Sweeps: a grid of configs, each point an ordinary run directory, one aggregated table.

    mfnn sweep CONFIG --grid model.width=100,1000,10000 --grid seed=0..4 --out DIR

Layout (a contract, like a run directory)::

    DIR/sweep.json                  the base config, the grid and the points (name -> overrides)
    DIR/points/<name>/              one run directory (or named-experiment directory) a point
    DIR/table.csv                   one row per point: grid values, status, final metrics
    DIR/figures/sweep.png           final loss against the first numeric grid key

A sweep is resumable: running the same command again skips the points whose directory
completed with the same config (`mfnn.rundir.run_dir_status`) and runs the rest, continuing
interrupted points from their checkpoints. A point that fails is reported in the table
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
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import multiprocessing
import re
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from .config import dump, load, parse_yaml
from .errors import ConfigError

DASK_TIMEOUT_S = 5.0
_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    """``key=v1,v2,...`` or ``key=a..b`` (integers a to b inclusive) -> {key: values}.

    Values are read as YAML (numbers, booleans, strings); a repeated key is an error.

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
            values = list(range(lo, hi + 1))
        else:
            values = [parse_yaml(v) for v in text.split(",") if v.strip() != ""]
        if not values:
            raise ConfigError(f"`--grid {key}=` has no values; got {spec!r}.")
        grid[key] = values
    return grid


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


def run_point(raw: dict, overrides: list[str], run_dir: str, base: str | None = None) -> dict:
    """Run (or resume) one point into ``run_dir``; return its table row (never raises).

    A config naming an experiment (``experiment.name``) runs that experiment; its checks
    are reported as ``check:<name>`` (value) and ``passed``.
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
        else:
            _, _, summary = execute(
                cfg, run_dir, resume=True, progress=False, base=base, make_figures=False
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
    except Exception as exc:  # noqa: BLE001 - a failed point is a row, not the end of the sweep
        row.update(status="failed", message=f"{type(exc).__name__}: {exc}")
    row["wall_s"] = time.perf_counter() - t0
    return row


def _batchable(cfg) -> str | None:
    """Why the config cannot run in a seed batch (None if it can)."""
    if cfg.experiment.name:
        return f"a named experiment ({cfg.experiment.name}) runs its own way"
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
    from .runs import open_run, resume_state, single_summary
    from .simulate import simulate_batch

    t0 = time.perf_counter()
    dirs = [Path(d) for d in run_dirs]
    built = [build(cfg, base) for cfg in cfgs]
    first = built[0]
    for b in built[1:]:  # what `simulate_batch` shares must agree (it stacks the rest)
        if (b.dt, b.steps, b.snapshot_every, b.chunk, b.integrator) != (
            first.dt,
            first.steps,
            first.snapshot_every,
            first.chunk,
            first.integrator,
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
        chunk=first.chunk,
        state=states,
        observer=writers,
        keep_snapshots=False,
    )
    wall = (time.perf_counter() - t0) / len(built)
    rows = []
    for d, b, traj in zip(dirs, built, trajs, strict=True):
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
    value fails at once (`ConfigError` naming the point). Returns the table rows.

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
    """
    if not grid:
        raise ConfigError("the sweep grid is empty: give at least one key with values.")
    if not (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1):
        raise ConfigError(f"`--workers` must be a positive integer; got {workers!r}.")
    if not isinstance(batch_seeds, bool):
        raise ConfigError(f"`--batch-seeds` must be true or false; got {batch_seeds!r}.")
    out = Path(out)
    points = expand(grid)
    plain: dict[str, bool] = {}
    for name, values in points:  # validate all before any compute
        try:
            cfg = load(raw, _overrides(values))
        except ConfigError as exc:
            raise ConfigError(f"sweep point {name}: {exc}") from None
        plain[name] = _batchable(cfg) is None
    out.mkdir(parents=True, exist_ok=True)
    from .rundir import write_json

    previous = {r["point"]: r for r in read_table(out)} if (out / "table.csv").is_file() else {}
    manifest = {
        "base": parse_yaml(dump(load(raw))),
        "grid": grid,
        "points": {name: values for name, values in points},
    }
    write_json(out / "sweep.json", manifest)
    base_s = None if base is None else str(base)
    points_by_name = dict(points)

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
            tasks.append((batch, run_batch, (raw, [x[1] for x in a], [x[2] for x in a], base_s)))
    rows: dict[str, dict] = {}

    def done(names: list[str], result: dict | list[dict]) -> None:
        for name, row in zip(names, result if isinstance(result, list) else [result], strict=True):
            row.setdefault("batched", False)
            if row.get("reused") and name in previous:
                row["batched"] = previous[name].get("batched") == "True"
            rows[name] = {"point": name, **points_by_name[name], **row}
            if progress:
                print(
                    f"[{len(rows)}/{len(points)}] {name}: {row.get('status')} "
                    f"loss={row.get('final_loss')} ({row.get('wall_s', 0):.1f} s"
                    f"{', batched' if row['batched'] else ''})",
                    flush=True,
                )
        _write_table(out, [rows[n] for n, _ in points if n in rows])

    if dask_address is not None:
        client = _dask_client(dask_address)
        try:
            futures = [(names, client.submit(fn, *a, pure=False)) for names, fn, a in tasks]
            for names, fut in futures:
                done(names, fut.result())
        finally:
            client.close()
    elif workers == 1 or len(tasks) == 1:
        for names, fn, a in tasks:
            done(names, fn(*a))
            release_if_crowded()
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
            futures = [(names, pool.submit(fn, *a)) for names, fn, a in tasks]
            for names, fut in futures:
                done(names, fut.result())
    table = [rows[n] for n, _ in points]
    _plot(out, grid, table)
    return table


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

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
        ax.plot(xs, mean, "o-", label=label)
        if any(len(y) > 1 for y in ys):
            ax.fill_between(xs, [y.min() for y in ys], [y.max() for y in ys], alpha=0.2)
    positive = all(x > 0 for x in grid[x_key])
    if positive:
        ax.set_xscale("log")
    if all(v > 0 for by_x in groups.values() for ys in by_x.values() for v in ys):
        ax.set_yscale("log")
    ax.set(xlabel=x_key, ylabel="final loss", title="sweep (mean and range over seeds)")
    ax.legend(fontsize=7)
    (out / "figures").mkdir(exist_ok=True)
    fig.savefig(out / "figures" / "sweep.png", dpi=120, bbox_inches="tight")
    plt.close(fig)
