"""Sweeps: a grid of configs, each point an ordinary run directory, one aggregated table.

    mfnn sweep CONFIG --grid model.width=100,1000,10000 --grid seed=0..4 --out DIR

Layout (a contract, like a run directory)::

    DIR/sweep.json                  the base config, the grid and the points (name -> overrides)
    DIR/points/<name>/              one run directory (or named-experiment directory) a point
    DIR/table.csv                   one row per point: grid values, status, final metrics
    DIR/figures/sweep.png           final loss against the first numeric grid key

A sweep is resumable: running the same command again skips the points whose directory
completed with the same config (`mfnn.runs.run_dir_status`) and runs the rest, continuing
interrupted points from their checkpoints. A point that fails is reported in the table
(status ``failed`` and its message), never fatal to the others.

Execution: local processes in parallel (``workers``; spawned, not forked, since JAX is
multi-threaded) by default, or the same tasks submitted to a Dask distributed scheduler
(``dask_address``; the ``dask`` extra) for sweeps beyond one machine.
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
    from .runs import read_metrics

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
        from .runs import execute, run_dir_status

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


def run_sweep(
    raw: dict,
    grid: dict[str, list[Any]],
    out: str | Path,
    *,
    workers: int = 2,
    dask_address: str | None = None,
    base: str | Path | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run every point of ``grid`` over the base config ``raw``; write the table.

    Every point's config is validated before anything runs, so an unknown key or a bad
    value fails at once (`ConfigError` naming the point). Returns the table rows.

    Args:
        raw: the base config (a dict, as read from YAML).
        grid: {dotted key: values} (`parse_grid`).
        out: the sweep directory.
        workers: local processes (1: in this process).
        dask_address: submit to this Dask scheduler instead of local processes.
        base: folder that relative paths in the config are resolved against.
        progress: print a line as each point finishes.
    """
    if not grid:
        raise ConfigError("the sweep grid is empty: give at least one key with values.")
    if not (isinstance(workers, int) and workers >= 1):
        raise ConfigError(f"`--workers` must be a positive integer; got {workers!r}.")
    out = Path(out)
    points = expand(grid)
    for name, values in points:  # validate all before any compute
        try:
            load(raw, _overrides(values))
        except ConfigError as exc:
            raise ConfigError(f"sweep point {name}: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    from .runs import write_json

    manifest = {
        "base": parse_yaml(dump(load(raw))),
        "grid": grid,
        "points": {name: values for name, values in points},
    }
    write_json(out / "sweep.json", manifest)
    tasks = [
        (raw, _overrides(values), str(out / "points" / name), None if base is None else str(base))
        for name, values in points
    ]
    rows: dict[str, dict] = {}

    def done(name: str, row: dict) -> None:
        rows[name] = {"point": name, **points_by_name[name], **row}
        _write_table(out, [rows[n] for n, _ in points if n in rows])
        if progress:
            print(
                f"[{len(rows)}/{len(points)}] {name}: {row.get('status')} "
                f"loss={row.get('final_loss')} ({row.get('wall_s', 0):.1f} s)",
                flush=True,
            )

    points_by_name = dict(points)
    if dask_address is not None:
        client = _dask_client(dask_address)
        try:
            futures = {
                name: client.submit(run_point, *t, pure=False)
                for (name, _), t in zip(points, tasks, strict=True)
            }
            for name, fut in futures.items():
                done(name, fut.result())
        finally:
            client.close()
    elif workers == 1 or len(points) == 1:
        for (name, _), t in zip(points, tasks, strict=True):
            done(name, run_point(*t))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(points)), mp_context=ctx) as pool:
            futures = {
                name: pool.submit(run_point, *t) for (name, _), t in zip(points, tasks, strict=True)
            }
            for name, fut in futures.items():
                done(name, fut.result())
    table = [rows[n] for n, _ in points]
    _plot(out, grid, table)
    return table


def _write_table(out: Path, rows: list[dict]) -> None:
    from .runs import atomic_write_text

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
