"""The host loop of a simulation: compiled chunks (`mfnn.loop`), I/O between them.

One loop serves a single run (`simulate`) and a batch of runs of the same shapes
(`simulate_batch`, vmapped); a single run is a batch of one that calls the unbatched
compiled chunk, so that its numbers do not depend on batching.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._typing import Key, Particles
from .dynamics.base import AbstractDynamics
from .errors import ConfigError, IntegrationError
from .guard import DEFAULT as DEFAULT_GUARD
from .guard import FINITE, Guard, stable_dt
from .integrators.base import AbstractIntegrator
from .loop import advance, advance_batch, record, record_batch, stack
from .recorder import AbstractRecorder, Recorder
from .sharding import ParticleSharding, particle_sharding
from .trajectory import ChunkPlan, Observer, State, Trajectory, default_chunk

__all__ = ["BatchDiverged", "State", "Trajectory", "simulate", "simulate_batch"]


class BatchDiverged(RuntimeError):
    """A member of a `simulate_batch` diverged (NaN/inf, or beyond its `Guard`);
    ``members`` are their indices.

    The batch stops at the start of the failing chunk (rows, snapshots and checkpoints
    written up to there stay valid); run the members one by one with `simulate` (from
    their last checkpoint) to find each one's exact failing step.
    """

    def __init__(self, members: list[int], step: int):
        self.members, self.step = members, step
        super().__init__(
            f"batch members {members} diverged (NaN/inf or beyond the divergence guard) in "
            f"the interval from step {step}; run them unbatched to find each one's step."
        )


def check_run(
    dynamics: AbstractDynamics,
    integrator: AbstractIntegrator,
    recorder: AbstractRecorder,
    dt,
    steps,
    snapshot_every,
    chunk,
    snapshot_steps=None,
) -> int:
    """Refuse a bad step size, step count, record plan, or a dynamics the integrator or
    the recorder cannot serve (by type, before compiling); return the chunk (steps per
    compiled call)."""
    if not isinstance(dynamics, AbstractDynamics):
        raise ConfigError(f"`simulate` needs an `AbstractDynamics`; got {type(dynamics).__name__}.")
    if not isinstance(integrator, AbstractIntegrator):
        raise ConfigError(
            f"`simulate` needs an `AbstractIntegrator`; got {type(integrator).__name__}."
        )
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
    if snapshot_steps is not None:
        if snapshot_every is not None:
            raise ConfigError(
                "`record.snapshot_count` and `record.snapshot_every` exclude each other "
                f"(`snapshot_steps` and `snapshot_every` of `simulate`); got snapshot_every = "
                f"{snapshot_every!r} and snapshot_steps too. Give one of them."
            )
        off = [
            s
            for s in snapshot_steps
            if not isinstance(s, int | np.integer) or not 0 <= s <= steps
            or (s % every and s != steps)
        ]  # fmt: skip
        if off:
            raise ConfigError(
                "`snapshot_steps` (of `record.snapshot_count`) must lie on the record grid "
                f"(multiples of `record.every` = {every} in [0, {steps}], or the last step "
                f"{steps}); got {off[:5]!r}."
            )
    chunk = default_chunk(steps, every, snapshot_every) if chunk is None else chunk
    if chunk < every or chunk % every or (snapshot_every and snapshot_every % chunk):
        raise ConfigError(
            f"`record.chunk` must be a multiple of `record.every` ({every}) that divides "
            f"`record.snapshot_every` ({snapshot_every}); got {chunk!r}."
        )
    integrator.check(dynamics)
    recorder.check(dynamics)
    return chunk


def _sorted_steps(snapshot_steps: Sequence[int] | None) -> tuple[int, ...]:
    """The snapshot steps, increasing, each once (none: ``()``)."""
    return () if snapshot_steps is None else tuple(sorted({int(s) for s in snapshot_steps}))


def _rows(block: dict[str, np.ndarray], dt: float) -> list[dict[str, float]]:
    """Rows (step, t, metrics...) of one chunk's recorded columns."""
    rows = []
    for i, s in enumerate(block["step"]):
        row = {"step": int(s), "t": float(s) * dt}
        row.update({k: float(v[i]) for k, v in block.items() if k != "step"})
        rows.append(row)
    return rows


def _trajectory(
    columns, recorder, dt, snapshots, state, status, message, divergence=None
) -> Trajectory:
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
        divergence=divergence,
    )


@contextlib.contextmanager
def _runtime_checks(step: int, dt: float):
    """A check compiled into the loop that fails (`eqx.error_if`: an adaptive step that
    does not converge within `dynamics.max_steps`) -> an `IntegrationError`, one paragraph
    naming the setting, instead of an internal error with a JAX traceback."""
    try:
        yield
    except eqx.EquinoxRuntimeError as exc:
        text = str(exc)
        if "`dynamics.max_steps`" not in text:
            raise
        tail = "(the limit is per step)."
        start, end = text.find("the adaptive integrator"), text.find(tail)
        what = text[start : end + len(tail)] if start >= 0 and end >= 0 else text
        raise IntegrationError(
            f"stopped in the steps after step {int(step)} (t = {int(step) * float(dt):g}; the "
            f"run keeps what it wrote before): {what}"
        ) from None


@dataclasses.dataclass
class _Engine:
    """The compiled calls of a run, or of a batch of runs (``batched``: every array has a
    leading member axis and the calls are the vmapped ones)."""

    dynamics: Any
    integrator: Any
    recorder: Any
    theta0: Any
    key: Any
    dt: Any
    reuse: bool
    n: int = 1
    batched: bool = False
    # a sharded run (`mfnn.sharding`): arrays made on the host are placed replicated
    sharding: ParticleSharding | None = None

    def record0(self, theta):
        fn = record_batch if self.batched else record
        args = (self.integrator, self.recorder, theta, self.theta0, jnp.asarray(0), self.dt)
        with _runtime_checks(0, self.dt):
            return fn(self.dynamics, *args, self.key)

    def advance(self, theta, start, bad, n_rec, every, each_step=False):
        with _runtime_checks(start, self.dt):
            return self._advance(theta, start, bad, n_rec, every, each_step)

    def _advance(self, theta, start, bad, n_rec, every, each_step=False):
        fn = advance_batch if self.batched else advance
        extra = () if self.batched else (each_step,)  # a batch does not locate a bad step
        return fn(
            self.dynamics, self.integrator, self.recorder, theta, self.theta0,
            jnp.asarray(start), self.dt, self.key, bad, n_rec, jnp.asarray(every), self.reuse,
            *extra,
        )  # fmt: skip

    def no_bad(self):
        """``bad`` with no NaN/inf step yet: -1 (a member). Strongly typed like the ``bad``
        that `advance` returns: a weak type here would compile the chunk a second time."""
        bad = jnp.full((self.n,) if self.batched else (), -1, dtype=int)
        # sharded: replicated on the mesh like the ``bad`` a chunk returns (else the
        # second chunk would compile again for the other placement)
        return bad if self.sharding is None else self.sharding.replicated(bad)

    def member(self, x, i):
        """Member i of an array of the run (itself, for a single run)."""
        return x[i] if self.batched else x


def _loop(
    engine: _Engine,
    theta,
    step: int,
    *,
    recorders: list,
    dt: float,
    steps: int,
    snapshot_every: int | None,
    snapshot_steps: tuple[int, ...],
    chunk: int,
    observers: list,
    progress: Callable[[dict[str, Any]], None] | None,
    keep_snapshots: bool,
    guard: Guard | None,
) -> list[Trajectory]:
    """The host loop: chunks from ``step`` to ``steps``, rows, snapshots and checkpoints
    handed to each member's observer as they come."""
    n, every = engine.n, recorders[0].every
    plan = ChunkPlan(steps, every, chunk, snapshot_steps)
    at_steps = set(snapshot_steps)
    columns: list[list[dict[str, np.ndarray]]] = [[] for _ in range(n)]
    snapshots: list[dict[int, np.ndarray]] = [{} for _ in range(n)]
    th0 = engine.theta0

    def emit(i: int, block: dict[str, np.ndarray]) -> list[dict[str, float]]:
        columns[i].append(block)
        rows = _rows(block, dt)
        if observers[i] is not None and rows:
            observers[i].on_records(rows)
        return rows

    def emit_snapshots(at: int, theta) -> None:
        arr = np.asarray(theta)
        for i in range(n):
            member = engine.member(arr, i)
            if observers[i] is not None:
                observers[i].on_snapshot(at, member)
            if keep_snapshots:
                snapshots[i][at] = member

    def state_of(i: int, theta, at: int) -> State:
        return State(
            engine.member(theta, i), engine.member(th0, i), at, engine.member(engine.key, i)
        )

    def advice(est: float | None) -> str:
        """Which step size to try, from ``est`` = 2/L (`mfnn.guard.stable_dt`) if known."""
        if est is None:
            return f"Try a smaller `dynamics.dt` (now {dt:g}) or a smaller initialization scale."
        return (
            f"Try `dynamics.dt` <= {est / 2:.3g} (now {dt:g}): explicit steps of this flow are "
            f"stable for dt < 2/L = {est:.3g}, with L the Lipschitz constant of the velocity "
            "near the initial and the last kept state (power iteration)."
        )

    divergence: dict[str, Any] | None = None
    status, message = "completed", f"completed {steps} steps (t = {steps * dt:g})"
    # step 0's record: the first row of a fresh run, the guard's reference on a resume
    rec0 = jax.device_get(engine.record0(theta if step == 0 else th0))
    if step == 0:
        for i in range(n):
            values = {k: np.atleast_1d(engine.member(np.asarray(v), i)) for k, v in rec0.items()}
            emit(i, {"step": np.array([0])} | values)
        emit_snapshots(0, theta)
    if guard is not None:
        th0_np = np.asarray(th0)
        loss0 = np.atleast_1d(np.asarray(rec0["loss"]))
        bounds = [
            guard.bounds(float(loss0[i if engine.batched else 0]), engine.member(th0_np, i))
            for i in range(n)
        ]
    t_start, steps_done = time.perf_counter(), 0
    bad0 = engine.no_bad()
    bad = bad0
    try:
        for start, n_rec, seg_every in plan.segments(step):
            new, bad, recs, peaks = engine.advance(theta, start, bad, n_rec, seg_every)
            recs, peaks = jax.device_get((recs, peaks))
            bad_np = np.atleast_1d(np.asarray(bad))
            rec_steps = start + seg_every * np.arange(1, n_rec + 1)
            trips = []
            if guard is not None:  # the first record beyond the bounds, per member
                for i in range(n):
                    values = {k: engine.member(np.asarray(recs[k]), i) for k in FINITE if k in recs}
                    trips.append(guard.first_violation(values, engine.member(peaks, i), *bounds[i]))
            gone = [i for i in range(n) if bad_np[i] >= 0 or (trips and trips[i] is not None)]
            if gone and engine.batched:
                raise BatchDiverged(gone, start)
            trip = trips[0] if trips else None
            bad_step = -1
            if bad_np[0] >= 0:
                # the interval from bad_step holds a NaN/inf: find the exact step
                bad_step = int(bad_np[0])
                found, again, _, _ = engine.advance(new, bad_step, bad0, 1, seg_every, True)
                if int(again) >= 0:  # else keep the interval's start (finite) as the state
                    new, bad_step = found, int(again)
                if trip is not None and rec_steps[trip[0]] > bad_step:
                    trip = None  # the NaN/inf came first: reported as such
            if trip is not None:
                # keep the state of the last record within the bounds (bit-identical: the
                # same compiled steps from the interval's start)
                r = trip[0]
                new = engine.advance(theta, start, bad0, r, seg_every)[0] if r else theta
                bad_step = start + r * seg_every
            theta = new
            keep = rec_steps <= bad_step if bad_step >= 0 else np.ones(n_rec, bool)
            rows = []
            for i in range(n):
                values = {k: engine.member(np.asarray(v), i)[keep] for k, v in recs.items()}
                emitted = emit(i, {"step": rec_steps[keep]} | values)
                rows = emitted if i == 0 else rows
            if bad_step >= 0:  # diverged (a single run: a batch raised above)
                est = stable_dt(engine.dynamics, [theta, th0], engine.key)
                if trip is not None:
                    r, quantity, value, rule = trip
                    at = int(rec_steps[r])
                    what = (
                        f"diverged at step {at} (t = {at * dt:g}): {quantity} = {value:.4g} "
                        f"breaks the divergence guard's rule {rule}. The particles of step "
                        f"{bad_step}, the last record within the bounds, are"
                    )
                else:
                    at, quantity, value = bad_step + 1, "particles", math.nan
                    rule = "particles finite"
                    what = (
                        f"particles became NaN/inf at step {at} (t = {at * dt:g}); the "
                        f"particles of step {bad_step} are"
                    )
                step, status = bad_step, "diverged"
                divergence = dict(
                    step=at, quantity=quantity, value=value, rule=rule, kept_step=bad_step,
                    stable_dt=est,
                )  # fmt: skip
                message = f"{what} kept as the final state and snapshot. {advice(est)}"
                emit_snapshots(bad_step, theta)
                break
            step = start + n_rec * seg_every
            steps_done += n_rec * seg_every
            periodic = bool(snapshot_every) and step % snapshot_every == 0
            if (periodic or step in at_steps) and step != steps:
                emit_snapshots(step, theta)
            if step % chunk == 0 or step == steps:
                for i in range(n):
                    if observers[i] is not None:
                        observers[i].on_checkpoint(state_of(i, theta, step))
            if progress is not None:
                rate = steps_done / max(time.perf_counter() - t_start, 1e-9)
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
            state_of(i, theta, step),
            status,
            message,
            divergence,
        )
        for i in range(n)
    ]


def simulate(
    dynamics: AbstractDynamics,
    integrator: AbstractIntegrator,
    theta0: Particles,
    *,
    dt: float,
    steps: int,
    key: Key,
    recorder: AbstractRecorder | None = None,
    snapshot_every: int | None = None,
    snapshot_steps: Sequence[int] | None = None,
    chunk: int | None = None,
    state: State | None = None,
    observer: Observer | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    keep_snapshots: bool = True,
    guard: Guard | None = DEFAULT_GUARD,
    devices: int | str | None = None,
) -> Trajectory:
    r"""Integrate the particles from ``theta0`` for ``steps`` steps of size ``dt``.

    Time is t = step * dt. The loop runs in jit-compiled chunks (lax.scan over
    ``chunk`` steps); between chunks the host hands metric rows, snapshots and a
    checkpoint `State` to ``observer`` and reports progress. Memory does not grow with
    ``steps`` (only the recorded rows do). Step k of a stochastic dynamics uses
    ``fold_in(key, k)``-derived randomness, so results do not depend on the chunking.
    The integrator and the recorder check, by type, that they can serve the dynamics
    before anything compiles.

    Args:
        dynamics: e.g. `GradientFlow`.
        integrator: e.g. `Euler` or `Heun`.
        theta0: initial particles (m, D).
        dt: step size (> 0).
        steps: number of steps (>= 1).
        key: PRNG key of the dynamics (minibatches, fresh samples, noise, jumps).
        recorder: what to record and how often (default `Recorder(every=10)`).
        snapshot_every: also keep the particles every this many steps (a multiple of
            ``recorder.every``); the first and last steps are always kept.
        snapshot_steps: or keep them at these steps instead (on the record grid: multiples
            of ``recorder.every``, or ``steps``; e.g. `mfnn.trajectory.snapshot_steps`).
            The chunks are then split at these steps as well (`ChunkPlan`), into record
            counts that are powers of two, so that few programs compile; the numbers agree
            with an unsplit run to round-off (measured: bit for bit on the CPU).
        chunk: steps per compiled chunk (a multiple of ``recorder.every``).
        state: continue from this `State` (from a checkpoint) instead of step 0.
        observer: receives rows, snapshots and checkpoints as they are produced.
        progress: called after each chunk with step, t, loss, steps_per_s, eta_s.
        keep_snapshots: keep snapshots in the returned `Trajectory` (set False when an
            observer writes them, to hold memory flat).
        guard: the divergence rule checked at every record (`mfnn.guard.Guard`: loss,
            energy and dissipation finite, the loss within 1e6 x max(initial loss, 1),
            max |theta| within 1e6 x max(initial max |theta|, 1)); None: NaN/inf only.
        devices: split the particles over this many devices (an integer, or "all"): the
            particle axis sharded, every other array replicated, the mean over particles
            an all-reduce (`mfnn.sharding`). m must be a multiple of the count. None or
            1 (or "all" on a one-device machine): the plain one-device run. Agrees with
            one device to round-off; records, snapshots and the final particles come
            back to the host as NumPy arrays, ``state.theta`` stays sharded.

    Returns:
        A `Trajectory`; ``status`` is "diverged" (with the step, the quantity, the rule
        and a step size to try in ``message``) if the particles became NaN/inf or a
        record broke the guard; the state before the failing step (NaN/inf) or of the
        last record within the bounds (guard) is the final one.

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
    chunk = check_run(
        dynamics, integrator, recorder, dt, steps, snapshot_every, chunk, snapshot_steps
    )
    theta0 = jnp.asarray(theta0)
    if theta0.ndim != 2:
        raise ConfigError(f"particles must be an (m, D) array; got shape {theta0.shape}.")
    state = State(theta0, theta0, 0, key) if state is None else state
    dtype = theta0.dtype
    place = particle_sharding(devices, theta0.shape[0])
    run_theta0, run_theta = jnp.asarray(state.theta0, dtype), jnp.asarray(state.theta, dtype)
    run_key, run_dt = state.key, jnp.asarray(dt, dtype)
    if place is not None:  # one device takes none of this: its run is unchanged
        dynamics, integrator, recorder = place.replicated((dynamics, integrator, recorder))
        run_theta0, run_theta = place.particles(run_theta0), place.particles(run_theta)
        run_key, run_dt = place.replicated((run_key, run_dt))
    engine = _Engine(
        dynamics,
        integrator,
        recorder,
        run_theta0,
        run_key,
        run_dt,
        dynamics.exact_steps,
        sharding=place,
    )
    (traj,) = _loop(
        engine,
        run_theta,
        int(state.step),
        recorders=[recorder],
        dt=dt,
        steps=steps,
        snapshot_every=snapshot_every,
        snapshot_steps=_sorted_steps(snapshot_steps),
        chunk=chunk,
        observers=[observer],
        progress=progress,
        keep_snapshots=keep_snapshots,
        guard=guard,
    )
    return traj


def simulate_batch(
    dynamics: Sequence[AbstractDynamics],
    integrator: AbstractIntegrator,
    theta0: Sequence[Particles],
    *,
    dt: float,
    steps: int,
    key: Sequence[Key],
    recorder: Sequence[AbstractRecorder] | None = None,
    snapshot_every: int | None = None,
    snapshot_steps: Sequence[int] | None = None,
    chunk: int | None = None,
    state: Sequence[State | None] | None = None,
    observer: Sequence[Observer] | None = None,
    keep_snapshots: bool = True,
    guard: Guard | None = DEFAULT_GUARD,
) -> list[Trajectory]:
    r"""`simulate` B runs of the same shapes at once: one compiled loop, vmapped.

    Member i is the run ``simulate(dynamics[i], integrator, theta0[i], key=key[i],
    recorder=recorder[i], ...)``; the members may differ in every array (data, teacher,
    test set, particles, key, and the traced numbers beta, lambda, alpha, drift scale:
    all that a seed or a sweep over them changes) but not in shapes or static fields
    (`mfnn.loop.stack` checks). The same chunk plan, the same compiled chunk (vmapped with
    `equinox.filter_vmap`), the same records, snapshots and checkpoints, handed to
    ``observer[i]``.

    Agreement with `simulate`: to float64 round-off, not bit for bit. vmap turns each
    matmul and reduction into its batched form, which XLA may compile with another
    summation order or blocking; the per-member arithmetic is otherwise the same (same
    keys, same steps, same chunk boundaries).

    A batch is all or nothing about failure: if any member diverges the batch
    stops before writing that chunk and raises `BatchDiverged`; each member's observer
    has everything up to the previous chunk (its checkpoint included), so the members
    can be finished one by one with `simulate`, which finds each one's exact step.

    Args:
        dynamics: B dynamics of the same structure and shapes.
        integrator: one integrator (shared).
        theta0: B initial particle arrays (m, D).
        dt, steps, snapshot_every, snapshot_steps, chunk, keep_snapshots, guard: as in
            `simulate` (shared; each member's bounds come from its own start).
        key: B keys.
        recorder: B recorders (default `Recorder()` each).
        state: B states to continue from (None entries: from step 0); all at one step.
        observer: B observers.

    Returns:
        B `Trajectory` objects, as `simulate` would return them.

    Raises:
        BatchDiverged: a member diverged (NaN/inf or beyond the guard).
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
    chunk = check_run(
        dynamics[0], integrator, recorders[0], dt, steps, snapshot_every, chunk, snapshot_steps
    )
    reuse = {d.exact_steps for d in dynamics}
    if len({r.every for r in recorders}) != 1 or len(reuse) != 1:
        raise ConfigError("`simulate_batch`: the members must share `record.every` and sampling.")
    dtype = jnp.asarray(theta0[0]).dtype
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
    theta = stack([jnp.asarray(s.theta, dtype) for s in states], "batch member (particles)")
    if theta.ndim != 3:
        raise ConfigError(f"particles must be (m, D) arrays; got shape {theta.shape[1:]}.")
    engine = _Engine(
        stack(list(dynamics), "batch member (dynamics)"),
        integrator,
        stack(recorders, "batch member (recorder)"),
        stack([jnp.asarray(s.theta0, dtype) for s in states], "batch member (particles)"),
        jnp.stack([s.key for s in states]),
        jnp.asarray(dt, dtype),
        reuse.pop(),
        n,
        batched=True,
    )
    return _loop(
        engine,
        theta,
        step,
        recorders=recorders,
        dt=dt,
        steps=steps,
        snapshot_every=snapshot_every,
        snapshot_steps=_sorted_steps(snapshot_steps),
        chunk=chunk,
        observers=observers,
        progress=None,
        keep_snapshots=keep_snapshots,
        guard=guard,
    )
