"""The chunked simulation loop: jit-compiled lax.scan chunks, host I/O between them."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._typing import Array, Key, Particles
from .dynamics import Blocks
from .errors import ConfigError
from .objectives.sampling import Exact, FullBatch
from .recorder import Recorder


@dataclasses.dataclass
class State:
    """Everything needed to continue a run: particles, their start, the step, the key."""

    theta: Particles
    theta0: Particles
    step: int
    key: Key


@dataclasses.dataclass
class Trajectory:
    """What `simulate` returns.

    Attributes:
        steps: (r,) recorded steps.
        times: (r,) recorded times t = step * dt.
        metrics: name -> (r,) recorded values (see `Recorder`).
        snapshots: step -> particles (m, D) at the snapshot steps.
        final: the particles at the last step reached.
        status: "completed", "diverged" or "interrupted".
        message: what happened, with advice when the run did not complete.
        state: the final `State` (to continue).
    """

    steps: np.ndarray
    times: np.ndarray
    metrics: dict[str, np.ndarray]
    snapshots: dict[int, np.ndarray]
    final: np.ndarray
    status: str
    message: str
    state: State

    def __getitem__(self, name: str) -> np.ndarray:
        return self.metrics[name]


class Observer(Protocol):
    """Receives a run's output as it is produced (e.g. a run directory writer)."""

    def on_records(self, rows: list[dict[str, float]]) -> None: ...
    def on_snapshot(self, step: int, theta: np.ndarray) -> None: ...
    def on_checkpoint(self, state: State) -> None: ...


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """Segments (start, n_records, every) covering [0, steps), fixed by the config alone.

    Chunk boundaries are multiples of ``chunk`` (and ``steps``), so a run resumed from a
    checkpoint at a boundary executes the same compiled chunks as the uninterrupted run
    and reproduces it bit for bit.
    """

    steps: int
    every: int
    chunk: int

    def segments(self, start: int = 0) -> list[tuple[int, int, int]]:
        out = []
        s = start
        while s < self.steps:
            end = min((s // self.chunk + 1) * self.chunk, self.steps)
            full = (end - s) // self.every
            if full:
                out.append((s, full, self.every))
                s += full * self.every
            if s < end:  # the last, shorter interval ending at `steps`
                out.append((s, 1, end - s))
                s = end
        return out


def default_chunk(steps: int, every: int, snapshot_every: int | None = None) -> int:
    """Steps per compiled chunk: about 1000 steps, a multiple of `every`, dividing snapshots."""
    chunk = every * max(1, round(1000 / every))
    if snapshot_every:
        chunk = math.gcd(chunk, snapshot_every)
    return max(every, min(chunk, every * math.ceil(steps / every)))


@eqx.filter_jit
def _record(dynamics, integrator, recorder, theta, theta0, step, dt, key):
    return recorder(dynamics, integrator, theta, theta0, step, dt, key)


def _all_finite(state) -> Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(state)]))


@eqx.filter_jit
def _advance(
    dynamics,
    integrator,
    recorder,
    theta,
    theta0,
    start,
    dt,
    key,
    bad,
    n_rec,
    every,
    reuse,
    each_step=False,
):
    """n_rec intervals of ``every`` steps from step ``start``, recording after each.

    Between records the particles are carried in the model's block layout (`Blocks`).
    With ``reuse`` (a deterministic full-batch dynamics) the full-batch velocity a record
    computed is the first stage of the next step, so a record costs less than a step;
    the first step of a call always computes its own, so the result depends on the chunk
    plan only (resume stays bit-identical).

    NaN/inf: the state is frozen at the last finite particles. With ``each_step`` every
    step is checked and ``bad`` is the first step whose update was non-finite (-1 if
    none). Without it (the fast path: on small problems on a GPU a per-step check costs
    as much as the step) only the end of each interval is checked; a non-finite interval
    leaves the state at its start and ``bad`` at its first step, and `simulate` re-runs
    that one interval with ``each_step`` to find the exact step.
    """
    blocks = Blocks(dynamics)

    def plain(state, step, k1=None):
        return blocks.constrain(integrator.step(blocks, state, step, dt, key, k1)[0])

    def guard(new, state, bad, at):
        ok = _all_finite(new) & (bad < 0)
        state = jax.tree.map(lambda u, s: jnp.where(ok, u, s), new, state)
        return state, jnp.where((bad < 0) & ~ok, at, bad)

    def checked_step(carry, j):
        state, bad, base = carry
        step = base + j
        return (*guard(plain(state, step), state, bad, step), base), None

    def plain_step(carry, j):
        state, base = carry
        return (plain(state, base + j), base), None

    def one_record(carry, i):
        state, bad, k1, have = carry
        base = start + i * every
        begin = state
        if reuse:  # the first step of the interval from the last record's velocity
            new = jax.lax.cond(have, lambda s: plain(s, base, k1), lambda s: plain(s, base), state)
            if each_step:
                state, bad = guard(new, state, bad, base)
            else:
                state = new
            first = 1
        else:
            first = 0
        steps = jnp.arange(first, every)
        if each_step:
            (state, bad, _), _ = jax.lax.scan(checked_step, (state, bad, base), steps)
        else:
            (state, _), _ = jax.lax.scan(plain_step, (state, base), steps)
            state, bad = guard(state, begin, bad, base)
        theta = blocks.decode(state)
        rec, (v, loss) = recorder.measure(
            dynamics, integrator, theta, theta0, base + every, dt, key
        )
        return (state, bad, (blocks.encode(v), loss), jnp.asarray(True)), rec

    state = blocks.encode(theta)
    k1 = (jax.tree.map(jnp.zeros_like, state), jnp.zeros((), theta.dtype))
    carry = (state, bad, k1, jnp.asarray(False))
    (state, bad, _, _), recs = jax.lax.scan(one_record, carry, jnp.arange(n_rec))
    return blocks.decode(state), bad, recs


def _rows(block: dict[str, np.ndarray], dt: float) -> list[dict[str, float]]:
    """Rows (step, t, metrics...) of one chunk's recorded columns."""
    rows = []
    for i, s in enumerate(block["step"]):
        row = {"step": int(s), "t": float(s) * dt}
        row.update({k: float(v[i]) for k, v in block.items() if k != "step"})
        rows.append(row)
    return rows


def simulate(
    dynamics,
    integrator,
    theta0: Particles,
    *,
    dt: float,
    steps: int,
    key: Key,
    recorder: Recorder | None = None,
    snapshot_every: int | None = None,
    chunk: int | None = None,
    state: State | None = None,
    observer: Observer | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    keep_snapshots: bool = True,
) -> Trajectory:
    r"""Integrate the particles from ``theta0`` for ``steps`` steps of size ``dt``.

    Time is t = step * dt. The loop runs in jit-compiled chunks (lax.scan over
    ``chunk`` steps); between chunks the host hands metric rows, snapshots and a
    checkpoint `State` to ``observer`` and reports progress. Memory does not grow with
    ``steps`` (only the recorded rows do). Step k of a stochastic dynamics uses
    ``fold_in(key, k)``-derived randomness, so results do not depend on the chunking.

    Args:
        dynamics: e.g. `GradientFlow`.
        integrator: e.g. `Euler` or `Heun`.
        theta0: initial particles (m, D).
        dt: step size (> 0).
        steps: number of steps (>= 1).
        key: PRNG key of the dynamics (minibatches, fresh samples).
        recorder: what to record and how often (default `Recorder(every=10)`).
        snapshot_every: also keep the particles every this many steps (a multiple of
            ``recorder.every``); the first and last steps are always kept.
        chunk: steps per compiled chunk (a multiple of ``recorder.every``).
        state: continue from this `State` (from a checkpoint) instead of step 0.
        observer: receives rows, snapshots and checkpoints as they are produced.
        progress: called after each chunk with step, t, loss, steps_per_s, eta_s.
        keep_snapshots: keep snapshots in the returned `Trajectory` (set False when an
            observer writes them, to hold memory flat).

    Returns:
        A `Trajectory`; ``status`` is "diverged" (with the step and advice in
        ``message``) if the particles became NaN/inf, and the state before the failing
        step is the final one.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from mfnn import TwoLayer, EmpiricalRisk, FullBatch, GradientFlow, Euler, DataSet
        >>> x = jnp.linspace(-1, 1, 8)[:, None]
        >>> data = DataSet(x, jnp.sign(x[:, 0]))
        >>> net = TwoLayer(d=1, activation="relu", scaling="mean_field")
        >>> theta = jax.random.normal(jax.random.key(0), (16, 3))
        >>> flow = GradientFlow(net, EmpiricalRisk(data), FullBatch(data))
        >>> traj = simulate(flow, Euler(), theta, dt=0.1, steps=20, key=jax.random.key(1))
        >>> bool(traj["loss"][-1] < traj["loss"][0])
        True
    """
    recorder = Recorder() if recorder is None else recorder
    if not (isinstance(dt, int | float) and dt > 0 and math.isfinite(dt)):
        raise ConfigError(f"`dynamics.dt` must be a positive number; got {dt!r}.")
    if not isinstance(steps, int | np.integer) or steps < 1:
        raise ConfigError(f"`dynamics.steps` must be a positive integer; got {steps!r}.")
    every = recorder.every
    if snapshot_every is not None and (snapshot_every < every or snapshot_every % every):
        raise ConfigError(
            f"`record.snapshot_every` must be a positive multiple of `record.every` ({every}); "
            f"got {snapshot_every!r}."
        )
    chunk = default_chunk(steps, every, snapshot_every) if chunk is None else chunk
    if chunk < every or chunk % every or (snapshot_every and snapshot_every % chunk):
        raise ConfigError(
            f"`record.chunk` must be a multiple of `record.every` ({every}) that divides "
            f"`record.snapshot_every` ({snapshot_every}); got {chunk!r}."
        )
    if getattr(dynamics, "has_noise", False) and not getattr(integrator, "takes_noise", False):
        raise ConfigError(
            f"the dynamics has noise (Langevin) but the integrator "
            f"{type(integrator).__name__} cannot take it: set `dynamics.integrator: "
            "euler_maruyama` (EulerMaruyama, or BirthDeathSplitting(EulerMaruyama()))."
        )
    if hasattr(dynamics, "jump") and not hasattr(integrator, "transport"):
        raise ConfigError(
            f"birth-death jumps need the splitting integrator: BirthDeathSplitting("
            f"{type(integrator).__name__}()) (`dynamics.birth_death` in a config does this)."
        )
    theta0 = jnp.asarray(theta0)
    if theta0.ndim != 2:
        raise ConfigError(f"particles must be an (m, D) array; got shape {theta0.shape}.")
    if state is None:
        state = State(theta=theta0, theta0=theta0, step=0, key=key)
    dtype = theta0.dtype
    dt_arr = jnp.asarray(dt, dtype)
    plan = ChunkPlan(steps, every, chunk)
    # records compute the exact (full-batch) velocity; an exact step can start from it
    sampler = getattr(dynamics, "sampler", None)
    objective = getattr(dynamics, "objective", None)
    reuse = not getattr(dynamics, "has_noise", False) and (
        isinstance(sampler, Exact)
        or (
            isinstance(sampler, FullBatch)
            and objective is not None
            and sampler.data is getattr(objective, "data", None)
        )
    )

    columns: list[dict[str, np.ndarray]] = []  # one dict of arrays per chunk (compact)
    snapshots: dict[int, np.ndarray] = {}

    def emit_snapshot(step, theta):
        arr = np.asarray(theta)
        if observer is not None:
            observer.on_snapshot(step, arr)
        if keep_snapshots:
            snapshots[step] = arr

    theta, step = jnp.asarray(state.theta, dtype), int(state.step)
    th0, key = jnp.asarray(state.theta0, dtype), state.key
    status, message = "completed", f"completed {steps} steps (t = {steps * dt:g})"
    if step == 0:
        rec0 = jax.device_get(
            _record(dynamics, integrator, recorder, theta, th0, jnp.asarray(0), dt_arr, key)
        )
        block = {"step": np.array([0])} | {k: np.atleast_1d(v) for k, v in rec0.items()}
        columns.append(block)
        rows = _rows(block, dt)
        if observer is not None:
            observer.on_records(rows)
        emit_snapshot(0, theta)
    t_start, steps_done = time.perf_counter(), 0
    bad = jnp.asarray(-1)
    try:
        for start, n_rec, seg_every in plan.segments(step):
            theta, bad, recs = _advance(
                dynamics,
                integrator,
                recorder,
                theta,
                th0,
                jnp.asarray(start),
                dt_arr,
                key,
                bad,
                n_rec,
                seg_every,
                reuse,
            )
            recs = jax.device_get(recs)
            bad_step = int(bad)
            if bad_step >= 0:  # the interval from bad_step holds a NaN/inf: find the step
                found, bad, _ = _advance(
                    dynamics,
                    integrator,
                    recorder,
                    theta,
                    th0,
                    jnp.asarray(bad_step),
                    dt_arr,
                    key,
                    jnp.asarray(-1),
                    seg_every,
                    1,
                    reuse,
                    True,
                )
                if int(bad) >= 0:  # else keep the interval's start (finite) as the state
                    theta, bad_step = found, int(bad)
            rec_steps = start + seg_every * np.arange(1, n_rec + 1)
            keep = rec_steps <= bad_step if bad_step >= 0 else np.ones(n_rec, bool)
            block = {"step": rec_steps[keep]} | {k: np.asarray(v)[keep] for k, v in recs.items()}
            columns.append(block)
            rows = _rows(block, dt)
            if observer is not None and rows:
                observer.on_records(rows)
            if bad_step >= 0:
                step = bad_step
                status = "diverged"
                message = (
                    f"particles became NaN/inf at step {bad_step + 1} "
                    f"(t = {(bad_step + 1) * dt:g}); "
                    f"the state of step {bad_step} is kept. Try a smaller `dynamics.dt` "
                    f"(now {dt:g}) or a smaller initialization scale."
                )
                emit_snapshot(bad_step, theta)
                break
            step = start + n_rec * seg_every
            steps_done += n_rec * seg_every
            if snapshot_every and step % snapshot_every == 0 and step != steps:
                emit_snapshot(step, theta)
            if observer is not None and (step % chunk == 0 or step == steps):
                observer.on_checkpoint(State(theta, th0, step, key))
            if progress is not None:
                elapsed = time.perf_counter() - t_start
                rate = steps_done / max(elapsed, 1e-9)
                progress(
                    {
                        "step": step,
                        "steps": steps,
                        "t": step * dt,
                        "loss": rows[-1]["loss"] if rows else float("nan"),
                        "steps_per_s": rate,
                        "eta_s": (steps - step) / rate if rate > 0 else float("inf"),
                    }
                )
        else:
            emit_snapshot(steps, theta)
    except KeyboardInterrupt:
        status = "interrupted"
        message = f"interrupted at step {step} (t = {step * dt:g}); continue it with `mfnn resume`."
    names = ["step", "t", *recorder.names()]
    empty = {k: np.zeros(0, int if k == "step" else float) for k in names}
    table = {k: np.concatenate([empty[k]] + [c[k] for c in columns]) for k in names if k != "t"}
    table["t"] = table["step"] * dt
    return Trajectory(
        steps=table.pop("step").astype(int),
        times=table.pop("t"),
        metrics=table,
        snapshots=snapshots,
        final=np.asarray(theta),
        status=status,
        message=message,
        state=State(theta, th0, step, key),
    )
