"""The chunked simulation loop: jit-compiled lax.scan chunks, host I/O between them."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
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


def _check(dynamics, integrator, recorder, dt, steps, snapshot_every, chunk) -> int:
    """Refuse a bad step size, step count, record plan or dynamics/integrator pair;
    return the chunk (steps per compiled call)."""
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
    return chunk


def _exact_reuse(dynamics) -> bool:
    """Whether a step may start from the full-batch velocity a record computed: a
    deterministic dynamics whose step velocity is the exact (full-batch) one."""
    sampler = getattr(dynamics, "sampler", None)
    objective = getattr(dynamics, "objective", None)
    return not getattr(dynamics, "has_noise", False) and (
        isinstance(sampler, Exact)
        or (
            isinstance(sampler, FullBatch)
            and objective is not None
            and sampler.data is getattr(objective, "data", None)
        )
    )


def _trajectory(columns, recorder, dt, snapshots, state, status, message) -> Trajectory:
    """The `Trajectory` of the recorded chunks ``columns`` (one dict of arrays each)."""
    names = ["step", "t", *recorder.names()]
    empty = {k: np.zeros(0, int if k == "step" else float) for k in names}
    table = {k: np.concatenate([empty[k]] + [c[k] for c in columns]) for k in names if k != "t"}
    table["t"] = table["step"] * dt
    return Trajectory(
        steps=table.pop("step").astype(int),
        times=table.pop("t"),
        metrics=table,
        snapshots=snapshots,
        final=np.asarray(state.theta),
        status=status,
        message=message,
        state=state,
    )


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
    chunk = _check(dynamics, integrator, recorder, dt, steps, snapshot_every, chunk)
    every = recorder.every
    theta0 = jnp.asarray(theta0)
    if theta0.ndim != 2:
        raise ConfigError(f"particles must be an (m, D) array; got shape {theta0.shape}.")
    if state is None:
        state = State(theta=theta0, theta0=theta0, step=0, key=key)
    dtype = theta0.dtype
    dt_arr = jnp.asarray(dt, dtype)
    plan = ChunkPlan(steps, every, chunk)
    reuse = _exact_reuse(dynamics)

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
    return _trajectory(
        columns, recorder, dt, snapshots, State(theta, th0, step, key), status, message
    )


class BatchDiverged(RuntimeError):
    """A member of a `simulate_batch` became NaN/inf; ``members`` are their indices.

    The batch stops at the start of the failing chunk (rows, snapshots and checkpoints
    written up to there stay valid); run the members one by one with `simulate` (from
    their last checkpoint) to find each one's exact failing step.
    """

    def __init__(self, members: list[int], step: int):
        self.members, self.step = members, step
        super().__init__(
            f"batch members {members} became NaN/inf in the interval from step {step}; "
            "run them unbatched to find each one's step."
        )


def stack(trees: Sequence[Any], what: str = "batch member") -> Any:
    """Stack pytrees that differ only in the values of their arrays (equinox modules
    included): array leaves gain a leading batch axis, everything else is shared.

    Raises:
        ConfigError: if a tree's structure, a non-array leaf (a static field) or an
            array's shape or dtype differs from the first tree's.

    Example:
        >>> import jax.numpy as jnp
        >>> stack([(jnp.zeros(3), 1.0), (jnp.ones(3), 1.0)])[0].shape
        (2, 3)
    """
    arrays = [eqx.filter(t, eqx.is_array) for t in trees]
    static = [eqx.filter(t, eqx.is_array, inverse=True) for t in trees]
    leaves0, def0 = jax.tree.flatten(arrays[0])
    sdef0 = jax.tree.structure(static[0])
    for i, (a, s) in enumerate(zip(arrays[1:], static[1:], strict=True), start=1):
        leaves, tdef = jax.tree.flatten(a)
        same = (
            tdef == def0
            and jax.tree.structure(s) == sdef0
            and jax.tree.leaves(s) == jax.tree.leaves(static[0])
            and all(
                x.shape == y.shape and x.dtype == y.dtype
                for x, y in zip(leaves, leaves0, strict=True)
            )
        )
        if not same:
            raise ConfigError(
                f"{what} {i} differs from {what} 0 in more than its array values (structure, "
                "a static field, or an array's shape or dtype): members of a batch must "
                "share shapes; run them separately."
            )
    return eqx.combine(jax.tree.map(lambda *xs: jnp.stack(xs), *arrays), static[0])


@eqx.filter_jit
def _record_batch(dynamics, integrator, recorder, theta, theta0, step, dt, key):
    def one(dyn, rec, th, th0, k):
        return rec(dyn, integrator, th, th0, step, dt, k)

    return eqx.filter_vmap(one)(dynamics, recorder, theta, theta0, key)


@eqx.filter_jit
def _advance_batch(
    dynamics, integrator, recorder, theta, theta0, start, dt, key, bad, n_rec, every, reuse
):
    """`_advance` vmapped over the members (stacked dynamics, recorder, particles, keys)."""

    def one(dyn, rec, th, th0, k, b):
        return _advance(dyn, integrator, rec, th, th0, start, dt, k, b, n_rec, every, reuse)

    return eqx.filter_vmap(one)(dynamics, recorder, theta, theta0, key, bad)


def simulate_batch(
    dynamics: Sequence[Any],
    integrator,
    theta0: Sequence[Particles],
    *,
    dt: float,
    steps: int,
    key: Sequence[Key],
    recorder: Sequence[Recorder] | None = None,
    snapshot_every: int | None = None,
    chunk: int | None = None,
    state: Sequence[State | None] | None = None,
    observer: Sequence[Observer] | None = None,
    keep_snapshots: bool = True,
) -> list[Trajectory]:
    r"""`simulate` B runs of the same shapes at once: one compiled loop, vmapped.

    Member i is the run ``simulate(dynamics[i], integrator, theta0[i], key=key[i],
    recorder=recorder[i], ...)``; the members may differ in every array (data, teacher,
    test set, particles, key: all that a seed changes) but not in shapes or static
    fields (`stack` checks). The same `ChunkPlan`, the same `_advance` (vmapped with
    `equinox.filter_vmap`), the same records, snapshots and checkpoints, handed to
    ``observer[i]``.

    Agreement with `simulate`: to float64 round-off, not bit for bit. vmap turns each
    matmul and reduction into its batched form, which XLA may compile with another
    summation order or blocking; the per-member arithmetic is otherwise the same (same
    keys, same steps, same chunk boundaries).

    A batch is all or nothing about failure: if any member becomes NaN/inf the batch
    stops before writing that chunk and raises `BatchDiverged`; each member's observer
    has everything up to the previous chunk (its checkpoint included), so the members
    can be finished one by one with `simulate`, which finds each one's exact step.

    Args:
        dynamics: B dynamics of the same structure and shapes.
        integrator: one integrator (shared).
        theta0: B initial particle arrays (m, D).
        dt, steps, snapshot_every, chunk, keep_snapshots: as in `simulate` (shared).
        key: B keys.
        recorder: B recorders (default `Recorder()` each).
        state: B states to continue from (None entries: from step 0); all at one step.
        observer: B observers.

    Returns:
        B `Trajectory` objects, as `simulate` would return them.

    Raises:
        BatchDiverged: a member's particles became NaN/inf.
        ConfigError: bad arguments (as `simulate`), members of different shapes, or
            states at different steps.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from mfnn import TwoLayer, EmpiricalRisk, FullBatch, GradientFlow, Euler, DataSet
        >>> net = TwoLayer(d=1, activation="tanh", scaling="mean_field", bias=False)
        >>> def member(s):
        ...     x = jax.random.normal(jax.random.key(s), (8, 1))
        ...     data = DataSet(x, jnp.sign(x[:, 0]))
        ...     flow = GradientFlow(net, EmpiricalRisk(data), FullBatch(data))
        ...     return flow, jax.random.normal(jax.random.key(10 + s), (16, 2))
        >>> (f0, t0), (f1, t1) = member(0), member(1)
        >>> trajs = simulate_batch([f0, f1], Euler(), [t0, t1], dt=0.1, steps=20,
        ...                        key=[jax.random.key(2), jax.random.key(3)])
        >>> one = simulate(f1, Euler(), t1, dt=0.1, steps=20, key=jax.random.key(3))
        >>> bool(jnp.allclose(trajs[1]["loss"], one["loss"], rtol=1e-10))
        True
    """
    n = len(dynamics)
    if n < 1 or len(theta0) != n or len(key) != n:
        raise ConfigError(
            f"`simulate_batch` needs as many particle arrays and keys as dynamics ({n} "
            f"dynamics, {len(theta0)} particle arrays, {len(key)} keys)."
        )
    recorders = [Recorder() for _ in range(n)] if recorder is None else list(recorder)
    observers = [None] * n if observer is None else list(observer)
    states = [None] * n if state is None else list(state)
    if not len(recorders) == len(observers) == len(states) == n:
        raise ConfigError(
            f"`simulate_batch`: give one recorder, observer and state a member ({n} members)."
        )
    # the members share their static fields (`stack` checks), so the first one speaks for all
    chunk = _check(dynamics[0], integrator, recorders[0], dt, steps, snapshot_every, chunk)
    if len({r.every for r in recorders}) != 1 or len({_exact_reuse(d) for d in dynamics}) != 1:
        raise ConfigError("`simulate_batch`: the members must share `record.every` and sampling.")
    every, dtype = recorders[0].every, jnp.asarray(theta0[0]).dtype
    states = [
        State(jnp.asarray(t0), jnp.asarray(t0), 0, k) if s is None else s
        for s, t0, k in zip(states, theta0, key, strict=True)
    ]
    step = int(states[0].step)
    if any(int(s.step) != step for s in states):
        raise ConfigError(
            "`simulate_batch`: the members continue from different steps "
            f"({sorted({int(s.step) for s in states})}); run them separately."
        )
    dyn_b = stack(list(dynamics), "batch member (dynamics)")
    rec_b = stack(recorders, "batch member (recorder)")
    theta = stack([jnp.asarray(s.theta, dtype) for s in states], "batch member (particles)")
    th0 = stack([jnp.asarray(s.theta0, dtype) for s in states], "batch member (particles)")
    if theta.ndim != 3:
        raise ConfigError(f"particles must be (m, D) arrays; got shape {theta.shape[1:]}.")
    keys = jnp.stack([s.key for s in states])
    dt_arr = jnp.asarray(dt, dtype)
    plan = ChunkPlan(steps, every, chunk)
    reuse = _exact_reuse(dynamics[0])
    columns: list[list[dict[str, np.ndarray]]] = [[] for _ in range(n)]
    snapshots: list[dict[int, np.ndarray]] = [{} for _ in range(n)]

    def emit(i: int, block: dict[str, np.ndarray]) -> None:
        columns[i].append(block)
        rows = _rows(block, dt)
        if observers[i] is not None and rows:
            observers[i].on_records(rows)

    def emit_snapshots(at: int, theta) -> None:
        arr = np.asarray(theta)
        for i in range(n):
            if observers[i] is not None:
                observers[i].on_snapshot(at, arr[i])
            if keep_snapshots:
                snapshots[i][at] = arr[i]

    status, message = "completed", f"completed {steps} steps (t = {steps * dt:g})"
    if step == 0:
        rec0 = jax.device_get(
            _record_batch(dyn_b, integrator, rec_b, theta, th0, jnp.asarray(0), dt_arr, keys)
        )
        for i in range(n):
            emit(i, {"step": np.array([0])} | {k: np.atleast_1d(v[i]) for k, v in rec0.items()})
        emit_snapshots(0, theta)
    bad0 = jnp.full((n,), -1)
    try:
        for start, n_rec, seg_every in plan.segments(step):
            new, bad, recs = _advance_batch(
                dyn_b,
                integrator,
                rec_b,
                theta,
                th0,
                jnp.asarray(start),
                dt_arr,
                keys,
                bad0,
                n_rec,
                seg_every,
                reuse,
            )
            bad = np.asarray(bad)
            if (bad >= 0).any():
                raise BatchDiverged([int(i) for i in np.flatnonzero(bad >= 0)], start)
            theta, recs = new, jax.device_get(recs)
            rec_steps = start + seg_every * np.arange(1, n_rec + 1)
            for i in range(n):
                emit(i, {"step": rec_steps} | {k: np.asarray(v[i]) for k, v in recs.items()})
            step = start + n_rec * seg_every
            if snapshot_every and step % snapshot_every == 0 and step != steps:
                emit_snapshots(step, theta)
            if step % chunk == 0 or step == steps:
                for i in range(n):
                    if observers[i] is not None:
                        observers[i].on_checkpoint(State(theta[i], th0[i], step, keys[i]))
        else:
            emit_snapshots(steps, theta)
    except KeyboardInterrupt:
        status = "interrupted"
        message = f"interrupted at step {step} (t = {step * dt:g}); continue it with `mfnn resume`."
    return [
        _trajectory(
            columns[i],
            recorders[i],
            dt,
            snapshots[i],
            State(theta[i], th0[i], step, keys[i]),
            status,
            message,
        )
        for i in range(n)
    ]
