"""Snapshot times for an animation: `record.snapshot_count` and `record.snapshot_spacing`.

The step formula on known cases, the config errors, the chunk plan (splits at the
snapshot steps in powers of two, few compiled shapes, resume = suffix), and real runs:
snapshots exactly at the predicted steps, a resume bit for bit with log spacing, the same
numbers as a run without snapshots, a seed batch, the W2 reference monitor and a pde run.
"""

import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfnn import (
    DataSet,
    EmpiricalRisk,
    Euler,
    FullBatch,
    GradientFlow,
    Recorder,
    TwoLayer,
    config,
    rundir,
    runs,
    simulate,
    simulate_batch,
)
from mfnn.errors import ConfigError
from mfnn.trajectory import ChunkPlan, default_chunk, snapshot_steps
from pde_configs import pde_1d
from tiers import first_by_default

# ------------------------------------------------------------------ the step formula


def _nearest_on_grid(x: float, steps: int, every: int) -> int:
    """The nearest point of {0, every, 2 every, ...} within [0, steps] and ``steps``, by
    brute force over the whole grid (the grid small in these cases, no ties in them)."""
    grid = np.unique(np.r_[np.arange(0, steps + 1, every), steps])
    return int(grid[np.argmin(np.abs(grid - x))])


@pytest.mark.parametrize(
    "steps, every, count, spacing, expected",
    [
        (1000, 10, 5, "linear", (0, 250, 500, 750, 1000)),
        (95, 10, 4, "linear", (0, 30, 60, 95)),  # 31.7, 63.3 -> 30, 60; last = steps
        (100, 20, 3, "linear", (0, 40, 100)),  # 50 / 20 = 2.5: half to even -> 40
        (25, 10, 4, "linear", (0, 10, 20, 25)),  # 8.3, 16.7 -> 10, 20
        (95, 10, 11, "linear", (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)),  # all records
        (1000, 10, 5, "log", (0, 10, 50, 220, 1000)),  # geomspace 10, 46.4, 215.4, 1000
        (195, 5, 12, "log", (0, 5, 10, 15, 20, 30, 45, 65, 95, 135, 195)),  # 12 -> 11
        (1000, 10, 2, "linear", (0, 1000)),
        (1000, 10, 2, "log", (0, 1000)),
        (7, 10, 2, "log", (0, 7)),  # steps < every: the grid is {0, steps}
    ],
)
def test_snapshot_steps_known_cases(steps, every, count, spacing, expected):
    assert snapshot_steps(steps, every, count, spacing) == expected


@pytest.mark.parametrize("steps, every", [(1000, 10), (40_000, 10), (997, 7)])
def test_log_steps_are_the_rounded_geometric_sequence_without_duplicates(steps, every):
    got = snapshot_steps(steps, every, 60, "log")
    points = np.geomspace(every, steps, 59)
    expected = {0, steps} | {_nearest_on_grid(x, steps, every) for x in points}
    assert got == tuple(sorted(expected))
    assert len(got) < 60  # the early points share records
    assert all(s % every == 0 for s in got[:-1]) and got[-1] == steps
    assert all(b > a for a, b in zip(got, got[1:], strict=False))
    # the late points keep their ratio (steps / every)^(1 / 58)
    ratio = (steps / every) ** (1 / 58)
    assert got[-2] / got[-1] == pytest.approx(1 / ratio, rel=every / got[-2])


def test_linear_steps_match_linspace_on_the_grid():
    steps, every = 4321, 8
    got = snapshot_steps(steps, every, 33)
    expected = {_nearest_on_grid(x, steps, every) for x in np.linspace(0, steps, 33)}
    assert got == tuple(sorted(expected)) and len(got) == 33


@pytest.mark.parametrize(
    "args, field",
    [
        ((100, 10, 1, "linear"), "`record.snapshot_count`"),
        ((100, 10, 12, "linear"), "`record.snapshot_count`"),  # 11 record steps
        ((100, 10, 5, "cubic"), "`record.snapshot_spacing`"),
        ((0, 10, 5, "linear"), "`dynamics.steps`"),
        ((100, 0, 5, "linear"), "`record.every`"),
    ],
)
def test_snapshot_steps_refuses_bad_arguments(args, field):
    with pytest.raises(ConfigError, match=field):
        snapshot_steps(*args)


# ------------------------------------------------------------------- config errors

SMALL = [
    "model.width=24",
    "data.n_train=64",
    "data.n_test=32",
    "dynamics.dt=0.05",
    "dynamics.steps=195",
    "record.every=5",
    "record.chunk=30",
]


def small(*extra):
    return config.load({}, SMALL + list(extra))


def test_config_takes_count_and_spacing():
    rec = small("record.snapshot_count=12", "record.snapshot_spacing=log").record
    assert (rec.snapshot_count, rec.snapshot_spacing) == (12, "log")
    assert small().record.snapshot_spacing == "linear"


def test_count_and_every_together_is_an_error_naming_both():
    with pytest.raises(ConfigError) as info:
        small("record.snapshot_count=5", "record.snapshot_every=10")
    msg = str(info.value)
    assert "`record.snapshot_count`" in msg and "`record.snapshot_every`" in msg, msg


def test_log_spacing_without_count_says_to_set_the_count():
    with pytest.raises(ConfigError) as info:
        small("record.snapshot_spacing=log")
    msg = str(info.value)
    assert "`record.snapshot_spacing: log`" in msg and "set `record.snapshot_count`" in msg, msg


@pytest.mark.parametrize("value", ["1", "0", "41"])  # 195 // 5 + 1 = 40 record steps
def test_count_out_of_range_is_an_error_naming_the_field(value):
    with pytest.raises(ConfigError, match=r"`record.snapshot_count`"):
        small(f"record.snapshot_count={value}")
    assert small("record.snapshot_count=40").record.snapshot_count == 40


def test_unknown_spacing_is_an_error_naming_the_field():
    with pytest.raises(ConfigError, match=r"`record.snapshot_spacing`"):
        small("record.snapshot_count=5", "record.snapshot_spacing=quadratic")


# ------------------------------------------------------------------- the chunk plan


def _check_covers(plan: ChunkPlan) -> list[int]:
    """The segments tile [0, steps); return their end steps."""
    segs = plan.segments()
    ends, s = [], 0
    for start, n_rec, every in segs:
        assert start == s and n_rec >= 1
        s = start + n_rec * every
        ends.append(s)
    assert s == plan.steps
    return ends


def test_plan_without_snapshots_is_the_chunk_plan_of_before():
    assert ChunkPlan(95, 10, 30).segments() == [(0, 3, 10), (30, 3, 10), (60, 3, 10), (90, 1, 5)]
    assert ChunkPlan(95, 10, 30).segments(60) == [(60, 3, 10), (90, 1, 5)]


def test_plan_with_snapshots_at_the_ends_only_is_the_plan_without():
    for steps, every, chunk in [(95, 10, 30), (1000, 10, 1000), (2337, 3, 120)]:
        plain = ChunkPlan(steps, every, chunk).segments()
        ends = snapshot_steps(steps, every, 2, "log")
        assert ends == (0, steps)
        assert ChunkPlan(steps, every, chunk, ends).segments() == plain


def test_plan_properties_on_random_snapshot_sets():
    """Tiles [0, steps); ends at every snapshot step and chunk boundary; records per
    segment: a whole chunk or a power of two below it (or the last short step); the plan
    from a chunk boundary is the full plan's tail (a resume)."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        every = int(rng.integers(1, 6))
        chunk = every * int(rng.integers(1, 40))
        steps = int(rng.integers(1, 30 * chunk))
        grid = np.arange(0, steps + 1, every)
        snaps = tuple(int(v) for v in rng.choice(grid, size=min(len(grid), 9), replace=False))
        plan = ChunkPlan(steps, every, chunk, (*snaps, steps))
        full = plan.segments()
        ends = set(_check_covers(plan))
        assert (set(snaps) - {0}) | set(range(chunk, steps, chunk)) <= ends
        c = chunk // every
        for _, n_rec, e in full:
            if e == every:
                assert n_rec == c or (n_rec < c and n_rec & (n_rec - 1) == 0), (n_rec, c)
            else:  # the last, shorter step to `steps`
                assert n_rec == 1 and e < every
        for b in range(chunk, steps, chunk):
            assert plan.segments(b) == [seg for seg in full if seg[0] >= b]


def test_plan_splits_at_snapshot_steps_in_powers_of_two():
    plan = ChunkPlan(100, 10, 50, (0, 30, 100))
    assert plan.segments() == [(0, 2, 10), (20, 1, 10), (30, 2, 10), (50, 5, 10)]
    plan = ChunkPlan(195, 5, 30, snapshot_steps(195, 5, 12, "log"))
    ends = _check_covers(plan)
    assert set(plan.snapshots) - {0} <= set(ends)
    assert set(range(30, 195, 30)) <= set(ends)  # checkpoints stay at chunk boundaries
    for start, n_rec, every in plan.segments():
        assert every == 5 and (n_rec == 6 or n_rec & (n_rec - 1) == 0), (start, n_rec)


@pytest.mark.parametrize("spacing", ["log", "linear"])
def test_plan_of_a_long_run_compiles_few_shapes(spacing):
    """A long run with 60 snapshots: the distinct (n_rec, every) <= log2(chunk/every) + 2
    (the bound of the binary decomposition; an unsplit interval per snapshot would give
    one shape each)."""
    steps, every = 200_000, 10
    chunk = default_chunk(steps, every)
    plan = ChunkPlan(steps, every, chunk, snapshot_steps(steps, every, 60, spacing))
    ends = _check_covers(plan)
    assert set(plan.snapshots) - {0} <= set(ends)
    shapes = {(n, e) for _, n, e in plan.segments()}
    assert len(shapes) <= math.log2(chunk / every) + 2, sorted(shapes)
    # a resume from any chunk boundary runs the rest of the same segments
    full = plan.segments()
    for b in range(0, steps, 7 * chunk):
        assert plan.segments(b) == [seg for seg in full if seg[0] >= b]


# -------------------------------------------------------------------- real runs


def test_a_run_writes_snapshots_exactly_at_the_predicted_steps(tmp_path):
    cfg = small("record.snapshot_count=12", "record.snapshot_spacing=log")
    predicted = snapshot_steps(195, 5, 12, "log")
    traj, built, s = runs.execute(cfg, tmp_path / "log", progress=False, make_figures=False)
    assert s["status"] == "completed" and built.snapshot_steps == predicted
    assert tuple(rundir.list_snapshots(tmp_path / "log")) == predicted
    # the rows are those of a run without snapshots (every record, once)
    m = rundir.read_metrics(tmp_path / "log")
    assert m["step"].tolist() == list(range(0, 196, 5))
    linear = small("record.snapshot_count=4")
    runs.execute(linear, tmp_path / "lin", progress=False, make_figures=False)
    assert tuple(rundir.list_snapshots(tmp_path / "lin")) == (0, 65, 130, 195)


@pytest.mark.parametrize(
    "extra", first_by_default([[], ["dynamics.kind=sgd", "dynamics.batch_size=16"]])
)
def test_snapshots_do_not_change_the_numbers(tmp_path, extra):
    """The same run with and without log-spaced snapshots: the scan split into pieces of
    powers of two gives the same rows and final particles (to 1e-12; measured: identical
    on the CPU in float64)."""
    with_snaps = small(*extra, "record.snapshot_count=12", "record.snapshot_spacing=log")
    a, _, _ = runs.execute(with_snaps, tmp_path / "a", progress=False, make_figures=False)
    b, _, _ = runs.execute(small(*extra), tmp_path / "b", progress=False, make_figures=False)
    scale = np.max(np.abs(b.final))
    assert np.max(np.abs(a.final - b.final)) <= 1e-12 * scale
    ma, mb = rundir.read_metrics(tmp_path / "a"), rundir.read_metrics(tmp_path / "b")
    assert ma["step"].tolist() == mb["step"].tolist()
    for k in ("loss", "test_loss", "energy", "movement"):
        np.testing.assert_allclose(ma[k], mb[k], rtol=1e-12, atol=1e-300)
    # the snapshot at the last step is the final state
    snaps = rundir.list_snapshots(tmp_path / "a")
    np.testing.assert_array_equal(np.load(snaps[195])["a"], a.final[:, 0])


def test_resume_with_log_spacing_is_bit_identical(tmp_path, monkeypatch):
    cfg = small("record.snapshot_count=12", "record.snapshot_spacing=log")
    runs.execute(cfg, tmp_path / "full", progress=False, make_figures=False)

    original = rundir.RunWriter.on_checkpoint

    def interrupt_after_60(self, state):
        original(self, state)
        if state.step == 60:
            raise KeyboardInterrupt

    monkeypatch.setattr(rundir.RunWriter, "on_checkpoint", interrupt_after_60)
    _, _, s = runs.execute(cfg, tmp_path / "cut", progress=False, make_figures=False)
    assert s["status"] == "interrupted" and s["final_step"] == 60
    assert max(rundir.list_snapshots(tmp_path / "cut")) == 45  # the last one before 60
    monkeypatch.setattr(rundir.RunWriter, "on_checkpoint", original)
    _, _, s = runs.execute(cfg, tmp_path / "cut", resume=True, progress=False, make_figures=False)
    assert s["status"] == "completed"
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert (full / "metrics.csv").read_bytes() == (cut / "metrics.csv").read_bytes()
    fs, cs = rundir.list_snapshots(full), rundir.list_snapshots(cut)
    assert tuple(fs) == tuple(cs) == snapshot_steps(195, 5, 12, "log")
    for step in fs:
        a, b = np.load(fs[step]), np.load(cs[step])
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def _flow(seed: int, m: int = 13):
    """A tiny full-batch flow and its particles; m = 13, D = 4: shapes no other test uses."""
    x = jax.random.normal(jax.random.key(seed), (21, 2))
    data = DataSet(x, jnp.sign(x[:, 0]))
    flow = GradientFlow(TwoLayer(d=2, activation="tanh"), EmpiricalRisk(data), FullBatch(data))
    return flow, jax.random.normal(jax.random.key(100 + seed), (m, 4))


def test_simulate_compiles_one_program_per_segment_shape(caplog):
    flow, theta = _flow(0)
    steps, every, chunk = 128, 2, 16
    at = snapshot_steps(steps, every, 12, "log")  # 11 steps: 0, 2, 4, 6, 10, 16, 24, ...
    shapes = {(n, e) for _, n, e in ChunkPlan(steps, every, chunk, at).segments()}
    assert len(shapes) <= math.log2(chunk / every) + 2
    with caplog.at_level(logging.WARNING), jax.log_compiles(True):
        traj = simulate(
            flow, Euler(), theta, dt=0.01, steps=steps, key=jax.random.key(1),
            recorder=Recorder(every=every), chunk=chunk, snapshot_steps=at,
        )  # fmt: skip
    assert tuple(traj.snapshots) == at
    compiles = [r for r in caplog.records if "Compiling jit(advance)" in r.getMessage()]
    assert len(compiles) == len(shapes) == 4, len(compiles)  # 1, 2, 4 and 8 records


def test_simulate_and_a_seed_batch_keep_the_snapshot_steps():
    (f0, t0), (f1, t1) = _flow(2), _flow(3)
    keys = [jax.random.key(4), jax.random.key(5)]
    at = snapshot_steps(24, 3, 5)  # (0, 6, 12, 18, 24): one segment shape, 2 records
    kw = dict(dt=0.05, steps=24, chunk=12, snapshot_steps=at)
    batch = simulate_batch(
        [f0, f1], Euler(), [t0, t1], key=keys, recorder=[Recorder(3), Recorder(3)], **kw
    )
    one = simulate(f1, Euler(), t1, key=keys[1], recorder=Recorder(3), **kw)
    assert tuple(one.snapshots) == at
    for traj in batch:
        assert tuple(traj.snapshots) == at
    for step in at:
        np.testing.assert_allclose(batch[1].snapshots[step], one.snapshots[step], rtol=1e-10)
    np.testing.assert_array_equal(one.snapshots[24], one.final)


def test_a_seed_batch_sweep_writes_the_snapshot_steps_of_every_point(tmp_path):
    from mfnn.sweep import run_sweep

    raw = {
        "model": {"width": 12},
        "data": {"n_train": 32, "n_test": 16},
        "dynamics": {"dt": 0.05, "steps": 60},
        "record": {"every": 3, "chunk": 30, "snapshot_count": 5},  # 0, 15, 30, 45, 60
    }
    rows = run_sweep(raw, {"seed": [0, 1]}, tmp_path, workers=1, progress=False,
                     batch_seeds=True)  # fmt: skip
    at = snapshot_steps(60, 3, 5)
    assert [r["batched"] for r in rows] == [True, True]
    for r in rows:
        assert tuple(rundir.list_snapshots(tmp_path / "points" / r["point"])) == at


def test_simulate_refuses_off_grid_steps_and_both_kinds_of_snapshots():
    flow, theta = _flow(0)
    kw = dict(dt=0.01, steps=20, key=jax.random.key(1), recorder=Recorder(every=4))
    with pytest.raises(ConfigError, match=r"record grid.*\[6\]"):
        simulate(flow, Euler(), theta, snapshot_steps=[0, 6, 20], **kw)
    with pytest.raises(ConfigError, match=r"`record.snapshot_count`.*`record.snapshot_every`"):
        simulate(flow, Euler(), theta, snapshot_steps=[0, 8], snapshot_every=8, **kw)


def test_w2_reference_reads_log_spaced_snapshots(tmp_path):
    """A run compared with its twin whose snapshots are log spaced: w2_reference is 0 at
    each snapshot time and NaN at the records between."""
    ref = tmp_path / "ref"
    runs.execute(
        small("record.snapshot_count=8", "record.snapshot_spacing=log"), ref,
        progress=False, make_figures=False,
    )  # fmt: skip
    at = snapshot_steps(195, 5, 8, "log")
    twin = config.load({"record": {"w2": {"reference": str(ref)}}}, SMALL)
    runs.execute(twin, tmp_path / "twin", progress=False, make_figures=False)
    m = rundir.read_metrics(tmp_path / "twin")
    for step, value in zip(m["step"].tolist(), m["w2_reference"].tolist(), strict=True):
        if step in at:
            assert value == pytest.approx(0.0, abs=1e-12), step
        else:
            assert math.isnan(value), step


PDE = pde_1d(
    {
        "dynamics": {"grid": {"cells": 60}},
        "record": {"every": 10, "chunk": 40, "snapshot_count": 6, "snapshot_spacing": "log"},
    }
)


def test_a_pde_run_writes_its_snapshots_at_the_steps_and_resumes_bit_identically(
    tmp_path, monkeypatch
):
    from mfnn.pde import run as pde_run

    at = snapshot_steps(200, 10, 6, "log")  # (0, 10, 20, 50, 90, 200)
    _, _, whole = runs.execute(config.load(PDE), tmp_path / "whole", progress=False,
                               make_figures=False)  # fmt: skip
    assert whole["status"] == "completed"
    assert tuple(rundir.list_snapshots(tmp_path / "whole")) == at
    assert rundir.read_metrics(tmp_path / "whole")["step"].tolist() == list(range(0, 201, 10))

    original, calls = pde_run._Writer.checkpoint, []

    def interrupting(self, step, rho):
        original(self, step, rho)
        calls.append(step)
        if step == 40:  # between the snapshots 20 and 50, after a piece of 2 records
            raise KeyboardInterrupt

    monkeypatch.setattr(pde_run._Writer, "checkpoint", interrupting)
    _, _, cut = runs.execute(config.load(PDE), tmp_path / "cut", progress=False,
                             make_figures=False)  # fmt: skip
    assert cut["status"] == "interrupted" and cut["final_step"] == 40
    assert calls == [0, 10, 20, 40]  # 0 -> 10 -> 20: 1 record each; 20 -> 50: 2 + 1
    monkeypatch.setattr(pde_run._Writer, "checkpoint", original)
    runs.execute(config.load(PDE), tmp_path / "cut", resume=True, progress=False,
                 make_figures=False)  # fmt: skip
    w, c = tmp_path / "whole", tmp_path / "cut"
    assert (w / "metrics.csv").read_bytes() == (c / "metrics.csv").read_bytes()
    fw, fc = rundir.list_snapshots(w), rundir.list_snapshots(c)
    assert tuple(fc) == at
    for step in at:
        np.testing.assert_array_equal(np.load(fw[step])["density"], np.load(fc[step])["density"])
