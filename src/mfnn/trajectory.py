"""What a simulation carries and returns: its state, its trajectory, its chunk plan."""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol

import numpy as np

from ._typing import Key, Particles
from .errors import ConfigError


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
        divergence: for a diverged run, what broke: ``step`` (the first failing step or
            record), ``quantity``, ``value``, ``rule``, ``kept_step`` (the step of the
            final state), ``stable_dt`` (2/L, or None); None otherwise.
    """

    steps: np.ndarray
    times: np.ndarray
    metrics: dict[str, np.ndarray]
    snapshots: dict[int, np.ndarray]
    final: np.ndarray
    status: str
    message: str
    state: State
    divergence: dict | None = None

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

    With ``snapshots`` (steps on the record grid, e.g. from `snapshot_steps`) the segments
    also end at each snapshot step. A whole chunk without a snapshot inside stays one
    segment (as without snapshots); any other interval between two boundaries, of n
    records, runs as the binary decomposition of n, largest power of two first (then a
    last shorter step to ``steps`` if ``every`` does not divide it). Each distinct
    (n_records, every) is one compiled program, so a run compiles at most
    log2(chunk / every) + 2 of them (+1 for that last step) whatever the snapshot steps.
    Snapshots at 0 and ``steps`` only leave the plan as without snapshots. The segments
    after a boundary depend on that boundary alone, so a resume from a checkpoint runs the
    rest of the uninterrupted run's segments.

    Example:
        >>> ChunkPlan(steps=100, every=10, chunk=50, snapshots=(0, 30, 100)).segments()
        [(0, 2, 10), (20, 1, 10), (30, 2, 10), (50, 5, 10)]
    """

    steps: int
    every: int
    chunk: int
    snapshots: tuple[int, ...] = ()

    def segments(self, start: int = 0) -> list[tuple[int, int, int]]:
        interior = sorted({s for s in self.snapshots if 0 < s < self.steps})
        cuts = [s for s in interior if s > start]
        out: list[tuple[int, int, int]] = []
        s, c = start, 0
        while s < self.steps:
            end = min((s // self.chunk + 1) * self.chunk, self.steps)
            while c < len(cuts) and cuts[c] <= s:
                c += 1
            if c < len(cuts):
                end = min(end, cuts[c])
            full = (end - s) // self.every
            whole = not interior or end - s == self.chunk
            for n in [full] if whole else _powers_of_two(full):
                if n:
                    out.append((s, n, self.every))
                    s += n * self.every
            if s < end:  # the last, shorter interval ending at `steps`
                out.append((s, 1, end - s))
                s = end
        return out


def _powers_of_two(n: int) -> list[int]:
    """The binary decomposition of n >= 0, largest first: 13 -> [8, 4, 1]."""
    return [1 << k for k in range(n.bit_length() - 1, -1, -1) if n >> k & 1]


SPACINGS = ("linear", "log")


def snapshot_steps(steps: int, every: int, count: int, spacing: str = "linear") -> tuple[int, ...]:
    r"""The snapshot steps of ``record.snapshot_count`` and ``record.snapshot_spacing``.

    The record grid G = {0, every, 2 every, ...} within [0, steps], and ``steps``. With K =
    ``count``:

    - linear: the points of G nearest to linspace(0, steps, K), i.e. to steps i / (K - 1),
      i = 0..K-1;
    - log: {0} and the points of G nearest to geomspace(every, steps, K - 1), i.e. to
      every (steps / every)^(i / (K - 2)), i = 0..K-2 (K >= 3), and ``steps``.

    "Nearest" rounds x to every round(x / every) (half to even), or to ``steps`` when that
    is closer or the multiple is past it. Both always hold 0 and ``steps`` (K = 2: just
    those). Equal points are kept once, so fewer than K steps may come back: the early
    points of a log spacing lie closer together than ``every`` and share records
    (steps / every = 100 and K = 60 give 40 distinct steps; steps / every = 400, 47).
    A pure function of its arguments: a resumed run recomputes the same steps.

    Args:
        steps: the run's steps (>= 1).
        every: the record interval ``record.every`` (>= 1).
        count: K >= 2, at most the number of points of G.
        spacing: "linear" or "log".

    Returns:
        The snapshot steps, increasing, from 0 to ``steps``.

    Raises:
        ConfigError: a count, spacing or size out of range (naming the field).

    Example:
        >>> snapshot_steps(1000, 10, 5)
        (0, 250, 500, 750, 1000)
        >>> snapshot_steps(1000, 10, 5, "log")
        (0, 10, 50, 220, 1000)
        >>> snapshot_steps(1000, 10, 2, "log")
        (0, 1000)
    """
    if not (isinstance(steps, int | np.integer) and steps >= 1):
        raise ConfigError(f"`dynamics.steps` must be a positive integer; got {steps!r}.")
    if not (isinstance(every, int | np.integer) and every >= 1):
        raise ConfigError(f"`record.every` must be a positive integer; got {every!r}.")
    steps, every = int(steps), int(every)
    grid = steps // every + 1 + (steps % every > 0)
    if not (isinstance(count, int | np.integer) and 2 <= count <= grid):
        raise ConfigError(
            f"`record.snapshot_count` must be an integer in [2, {grid}] (the snapshots lie on "
            f"the {grid} record steps of `record.every` = {every} up to `dynamics.steps` = "
            f"{steps}, t = 0 and the last step included); got {count!r}."
        )
    if spacing not in SPACINGS:
        raise ConfigError(
            f"`record.snapshot_spacing` must be one of {list(SPACINGS)}; got {spacing!r}."
        )
    count = int(count)
    if spacing == "linear":
        points = np.linspace(0.0, steps, count)
    else:  # count <= grid, so count > 2 means steps > every
        points = np.geomspace(every, steps, count - 1) if count > 2 else np.zeros(0)
    out = {0, steps}
    for x in points.tolist():
        g = every * round(x / every)
        out.add(steps if g >= steps or steps - x < abs(x - g) else g)
    return tuple(sorted(out))


def default_chunk(steps: int, every: int, snapshot_every: int | None = None) -> int:
    """Steps per compiled chunk: about 1000 steps, a multiple of `every`, dividing snapshots."""
    chunk = every * max(1, round(1000 / every))
    if snapshot_every:
        chunk = math.gcd(chunk, snapshot_every)
    return max(every, min(chunk, every * math.ceil(steps / every)))
