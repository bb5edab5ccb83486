"""What a simulation carries and returns: its state, its trajectory, its chunk plan."""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol

import numpy as np

from ._typing import Key, Particles


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
