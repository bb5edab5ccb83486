"""Sweeps: grid parsing, one run directory a point, a resumable sweep that does not recompute
finished points, failed points reported (not fatal), local processes and a real Dask
LocalCluster on loopback, bad input refused before any compute."""

import json
import os
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from mfnn.cli import app
from mfnn.errors import ConfigError
from mfnn.sweep import expand, parse_grid, read_table, run_sweep, seed_batches
from tiers import first_by_default

RAW = {
    "model": {"width": 8, "activation": "tanh", "bias": False},
    "data": {"target": "sign", "n_train": 16, "n_test": 0},
    "dynamics": {"dt": 0.1, "steps": 20},
    "record": {"every": 10},
}


def test_parse_grid_and_expand():
    grid = parse_grid(["model.width=4,8", "seed=0..2", "dynamics.dt=1e-2"])
    assert grid == {"model.width": [4, 8], "seed": [0, 1, 2], "dynamics.dt": [0.01]}
    points = expand(grid)
    assert len(points) == 6 and len({n for n, _ in points}) == 6
    assert points[0][1] == {"model.width": 4, "seed": 0, "dynamics.dt": 0.01}


@pytest.mark.parametrize(
    ("specs", "match"),
    [
        ([], "empty"),
        (["model.width"], "key=v1,v2"),
        (["model.width="], "no values"),
        (["seed=3..1"], "a <= b"),
        (["seed=0,1", "seed=2"], "twice"),
    ],
)
def test_bad_grids_are_refused(specs, match):
    with pytest.raises(ConfigError, match=match):
        parse_grid(specs)


def test_unknown_key_is_refused_before_any_run(tmp_path):
    with pytest.raises(ConfigError, match="model.widht"):
        run_sweep(RAW, {"model.widht": [4, 8]}, tmp_path / "s", workers=1, progress=False)
    assert not (tmp_path / "s" / "points").exists()


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    grid = {"model.width": [4, 16], "seed": [0, 1]}
    return out, grid, run_sweep(RAW, grid, out, workers=1, progress=False)


def test_sweep_writes_a_run_directory_a_point_and_one_table(swept):
    out, grid, table = swept
    assert [r["status"] for r in table] == ["completed"] * 4
    rows = read_table(out)
    assert len(rows) == 4 and {"model.width", "seed", "final_loss", "wall_s"} <= set(rows[0])
    for r in rows:
        d = out / "points" / r["point"]
        assert json.loads((d / "summary.json").read_text())["status"] == "completed"
        assert float(r["final_loss"]) == pytest.approx(
            json.loads((d / "summary.json").read_text())["final_loss"]
        )
    # the points really differ: each width/seed its own run
    assert len({r["final_loss"] for r in rows}) == 4
    assert json.loads((out / "sweep.json").read_text())["grid"] == grid
    assert (out / "figures" / "sweep.png").stat().st_size > 5000


def test_sweep_resumes_without_recomputing(swept):
    out, grid, _ = swept
    mtimes = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("points/*/metrics.csv")}
    # one point was interrupted: only it runs again (from its checkpoint)
    victim = next(iter(mtimes))
    path = out / "points" / victim / "summary.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"status": "interrupted"}))
    table = run_sweep(RAW, grid, out, workers=1, progress=False)
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("points/*/metrics.csv")}
    for name, t in mtimes.items():
        assert (after[name] == t) == (name != victim), name
    assert all(r["status"] == "completed" for r in table)
    assert sum(bool(r.get("reused")) for r in table) == 3


def test_a_failed_point_is_reported_not_fatal(tmp_path):
    # the second point reads a particle file that does not exist: it fails at build time
    grid = {"model.init.path": [None, str(tmp_path / "missing.npz")]}
    table = run_sweep(RAW, grid, tmp_path / "s", workers=1, progress=False)
    assert [r["status"] for r in table] == ["completed", "failed"]
    assert "missing.npz" in table[1]["message"]
    assert [r["status"] for r in read_table(tmp_path / "s")] == ["completed", "failed"]


@pytest.mark.slow  # spawns worker processes that each import JAX and compile
def test_local_processes_match_serial(swept, tmp_path):
    out, grid, serial = swept
    par = run_sweep(RAW, grid, tmp_path / "p", workers=2, progress=False)
    assert [r["final_loss"] for r in par] == [r["final_loss"] for r in serial]


def test_dask_local_cluster_on_loopback(swept, tmp_path):
    distributed = pytest.importorskip("distributed")
    out, grid, serial = swept
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",  # a real TCP scheduler on loopback, not the in-process transport
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        table = run_sweep(
            RAW, grid, tmp_path / "d", dask_address=cluster.scheduler_address, progress=False
        )
    assert [r["final_loss"] for r in table] == [r["final_loss"] for r in serial]


@pytest.mark.slow  # waits for the connection timeout
def test_unreachable_dask_address_fails_fast(tmp_path):
    pytest.importorskip("distributed")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="could not reach a Dask scheduler"):
        run_sweep(RAW, {"seed": [0]}, tmp_path / "d", dask_address="tcp://127.0.0.1:9")
    assert time.perf_counter() - t0 < 20


def test_cli_sweep(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(RAW))
    out = tmp_path / "s"
    args = ["sweep", str(path), "--grid", "seed=0..1", "--out", str(out), "--workers", "1"]
    res = CliRunner().invoke(app, [*args, "--no-progress"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "2/2 points completed" in res.output
    res = CliRunner().invoke(app, ["sweep", str(path), "--out", str(tmp_path / "e")])
    assert res.exit_code == 2 and "--grid" in res.output


# ---- seed batches: points that differ only in `seed`, integrated together (vmap) ----

BATCH_RAW = {**RAW, "data": {"target": "sign", "n_train": 16, "n_test": 8}}
DYNAMICS = {
    "gradient_flow": {},
    "sgd_epochs": {"dynamics": {"kind": "sgd", "sampling": "epochs", "batch_size": 4}},
    "langevin": {
        "dynamics": {"integrator": "euler_maruyama", "langevin": {"beta": 50.0}},
        "objective": {"l2": 0.1},
    },
}
# (E(theta_{k+1}) - E(theta_k)) / dt + dissipation cancels O(1) terms down to O(dt): an
# absolute round-off of 1e-16 in E is a relative 1e-10 there, so these get an absolute
# tolerance on the scale of E / dt instead of rtol
RESIDUALS = ("energy_residual", "energy_rel_residual")


def _raw(kind: str) -> dict:
    raw = json.loads(json.dumps(BATCH_RAW))
    for section, values in DYNAMICS[kind].items():
        raw[section] = raw.get(section, {}) | values
    return raw


def _assert_same_run(a, b, rtol=1e-10):
    """Two run directories hold the same run: files, metrics columns, summary keys, and
    metrics equal to float64 round-off (rtol 1e-10)."""
    from mfnn.rundir import read_metrics

    def files(d):  # a run directory's `lock` (one writer at a time) is no part of the run
        return sorted(p.name for p in d.iterdir() if p.name != "lock")

    assert files(a) == files(b)
    assert sorted(p.name for p in (a / "snapshots").iterdir()) == sorted(
        p.name for p in (b / "snapshots").iterdir()
    )
    assert (a / "metrics.csv").read_text().splitlines()[0] == (
        b / "metrics.csv"
    ).read_text().splitlines()[0]
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa.keys() == sb.keys() and sa["status"] == sb["status"] == "completed"
    ma, mb = read_metrics(a), read_metrics(b)
    np.testing.assert_array_equal(ma["step"], mb["step"])
    scale = np.max(np.abs(mb["energy"])) / float(yaml_dt(a))
    for k in ma:
        if k in RESIDUALS:
            np.testing.assert_allclose(ma[k], mb[k], rtol=0, atol=1e-10 * scale, err_msg=k)
        else:
            np.testing.assert_allclose(ma[k], mb[k], rtol=rtol, atol=0, err_msg=k)
    ca, cb = np.load(a / "checkpoint.npz"), np.load(b / "checkpoint.npz")
    np.testing.assert_allclose(ca["theta"], cb["theta"], rtol=rtol, atol=1e-14)


def yaml_dt(run_dir) -> float:
    from mfnn.rundir import load_run_config

    return load_run_config(run_dir).dynamics.dt


@pytest.mark.parametrize(
    "kind",
    first_by_default(list(DYNAMICS)),  # gradient_flow by default
)
def test_batched_points_match_unbatched_runs(kind, tmp_path):
    raw, grid = _raw(kind), {"seed": [0, 1, 2]}
    batched = run_sweep(raw, grid, tmp_path / "b", workers=1, progress=False, batch_seeds=True)
    plain = run_sweep(raw, grid, tmp_path / "u", workers=1, progress=False, batch_seeds=False)
    assert [r["batched"] for r in batched] == [True] * 3
    assert [r["batched"] for r in plain] == [False] * 3
    for r in batched:
        _assert_same_run(
            tmp_path / "b" / "points" / r["point"], tmp_path / "u" / "points" / r["point"]
        )
    # the seeds really differ (data, particles and keys all come from the seed)
    assert len({r["final_loss"] for r in batched}) == 3


@pytest.fixture(scope="module")
def seed_sweeps(tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds")
    grid = {"seed": [0, 1, 2, 3]}
    kw = {"workers": 1, "progress": False}
    return (
        out,
        grid,
        run_sweep(BATCH_RAW, grid, out / "b", batch_seeds=True, **kw),
        run_sweep(BATCH_RAW, grid, out / "u", batch_seeds=False, **kw),
    )


def test_seed_sweep_table_is_the_same_with_and_without_batching(seed_sweeps):
    out, _, _, _ = seed_sweeps
    tb, tu = read_table(out / "b"), read_table(out / "u")
    assert [r["batched"] for r in tb] == ["True"] * 4 and [r["batched"] for r in tu] == [
        "False"
    ] * 4
    assert set(tb[0]) == set(tu[0])
    for rb, ru in zip(tb, tu, strict=True):
        assert rb["point"] == ru["point"] and rb["status"] == ru["status"] == "completed"
        for k in rb:
            if k.startswith("final_") and k.removeprefix("final_") not in RESIDUALS:
                assert float(rb[k]) == pytest.approx(float(ru[k]), rel=1e-10, abs=0), k


def test_batched_sweep_resumes_without_recomputing(seed_sweeps):
    out, grid, _, _ = seed_sweeps
    d = out / "b"
    mtimes = {p.parent.name: p.stat().st_mtime_ns for p in d.glob("points/*/metrics.csv")}
    table = run_sweep(BATCH_RAW, grid, d, workers=1, progress=False, batch_seeds=True)
    assert all(r.get("reused") for r in table)
    assert [r["batched"] for r in table] == [True] * 4  # as the earlier table said
    # two points were interrupted: only they run again, together, from their checkpoints
    victims = sorted(mtimes)[:2]
    for v in victims:
        path = d / "points" / v / "summary.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | {"status": "interrupted"}))
    table = run_sweep(BATCH_RAW, grid, d, workers=1, progress=False, batch_seeds=True)
    after = {p.parent.name: p.stat().st_mtime_ns for p in d.glob("points/*/metrics.csv")}
    for name, t in mtimes.items():
        assert (after[name] == t) == (name not in victims), name
    assert sum(bool(r.get("reused")) for r in table) == 2
    assert all(r["status"] == "completed" for r in table)
    for v in victims:  # still the same run as the unbatched one
        _assert_same_run(d / "points" / v, out / "u" / "points" / v)


def test_a_batched_point_resumes_as_an_ordinary_run(seed_sweeps, tmp_path):
    import shutil

    from mfnn.config import load
    from mfnn.runs import execute

    out, _, rows, _ = seed_sweeps
    src = out / "b" / "points" / rows[0]["point"]
    shutil.copytree(src, tmp_path / "r")
    (tmp_path / "r" / "summary.json").write_text(json.dumps({"status": "interrupted"}))
    _, _, summary = execute(
        load(BATCH_RAW, ["seed=0"]), tmp_path / "r", resume=True, progress=False, make_figures=False
    )
    assert summary["status"] == "completed"
    assert json.loads((src / "summary.json").read_text()).keys() == summary.keys()
    _assert_same_run(tmp_path / "r", out / "u" / "points" / rows[0]["point"])


@pytest.mark.slow
def test_width_grid_is_not_batched_but_runs(tmp_path):
    table = run_sweep(
        BATCH_RAW,
        {"model.width": [4, 16]},
        tmp_path / "w",
        workers=1,
        progress=False,
        batch_seeds=True,
    )
    assert [r["status"] for r in table] == ["completed"] * 2
    assert [r["batched"] for r in table] == [False, False]
    # width x seed: the seeds of each width form a batch, each matching its unbatched run
    grid = {"model.width": [4, 16], "seed": [0, 1]}
    kw = {"workers": 1, "progress": False}
    both = run_sweep(BATCH_RAW, grid, tmp_path / "b", batch_seeds=True, **kw)
    run_sweep(BATCH_RAW, grid, tmp_path / "u", batch_seeds=False, **kw)
    assert [r["batched"] for r in both] == [True] * 4
    for r in both:
        _assert_same_run(
            tmp_path / "b" / "points" / r["point"], tmp_path / "u" / "points" / r["point"]
        )


def test_seed_batches_group_and_split():
    points = expand({"model.width": [4, 8], "seed": [0, 1, 2, 3]})
    plain = {n: True for n, _ in points}
    assert [len(b) for b in seed_batches(points, plain)] == [4, 4]
    assert [len(b) for b in seed_batches(points, plain, parts=2)] == [2, 2, 2, 2]
    assert seed_batches(points, dict.fromkeys(plain, False)) == []  # named experiments
    assert (
        seed_batches(
            expand({"model.width": [4, 8]}), {"model.width=4": True, "model.width=8": True}
        )
        == []
    )
    assert seed_batches(expand({"seed": [0]}), {"seed=0": True}) == []  # a batch of one is none


@pytest.mark.slow  # two sweeps of three points
def test_a_failing_batch_falls_back_to_single_points(tmp_path):
    # quadratic activation, dt = 2: seed 1 becomes NaN at step 5, seeds 0 and 2 complete
    raw = json.loads(json.dumps(RAW))
    raw["model"]["activation"] = "quadratic"
    raw["dynamics"] = {"dt": 2.0, "steps": 60}
    grid = {"seed": [0, 1, 2]}
    kw = {"workers": 1, "progress": False}
    table = run_sweep(raw, grid, tmp_path / "b", batch_seeds=True, **kw)
    plain = run_sweep(raw, grid, tmp_path / "u", batch_seeds=False, **kw)
    assert [r["status"] for r in table] == [r["status"] for r in plain]
    assert [r["status"] for r in table] == ["completed", "diverged", "completed"]
    assert table[1]["message"] == plain[1]["message"] and "NaN/inf at step" in table[1]["message"]
    assert [r["batched"] for r in table] == [False] * 3
    assert all("BatchDiverged" in r["batch_error"] for r in table)
    assert [r["final_loss"] for r in table] == [r["final_loss"] for r in plain]


def test_a_batch_that_raises_falls_back(tmp_path, monkeypatch):
    import importlib

    def broken(*args, **kwargs):
        raise RuntimeError("no batch today")

    # (the module, not the function `mfnn.simulate` the package re-exports)
    monkeypatch.setattr(importlib.import_module("mfnn.simulate"), "simulate_batch", broken)
    table = run_sweep(
        BATCH_RAW, {"seed": [0, 1]}, tmp_path / "s", workers=1, progress=False, batch_seeds=True
    )
    assert [r["status"] for r in table] == ["completed"] * 2
    assert [r["batched"] for r in table] == [False] * 2
    assert all("no batch today" in r["batch_error"] for r in table)


def test_bad_batch_input_names_the_field(tmp_path):
    import jax.numpy as jnp

    from mfnn.simulate import stack

    with pytest.raises(ConfigError, match="`--batch-seeds` must be true or false; got 'yes'"):
        run_sweep(RAW, {"seed": [0, 1]}, tmp_path / "s", batch_seeds="yes", progress=False)
    with pytest.raises(ConfigError, match="`--workers` must be a positive integer; got 0"):
        run_sweep(RAW, {"seed": [0, 1]}, tmp_path / "s", workers=0, progress=False)
    with pytest.raises(ConfigError, match="`seed`"):
        run_sweep(RAW, {"seed": ["a", "b"]}, tmp_path / "s", batch_seeds=True, progress=False)
    assert not (tmp_path / "s" / "points").exists()
    with pytest.raises(ConfigError, match="must share shapes"):
        stack([jnp.zeros(3), jnp.zeros(4)])


def test_simulate_batch_refuses_members_at_different_steps(key):
    import jax
    import jax.numpy as jnp

    from mfnn import DataSet, EmpiricalRisk, Euler, FullBatch, GradientFlow, State, TwoLayer
    from mfnn.simulate import simulate_batch

    x = jnp.linspace(-1.0, 1.0, 8)[:, None]
    data = DataSet(x, jnp.sign(x[:, 0]))
    flow = GradientFlow(
        TwoLayer(d=1, activation="tanh", bias=False), EmpiricalRisk(data), FullBatch(data)
    )
    theta = jax.random.normal(key, (4, 2))
    states = [State(theta, theta, 0, key), State(theta, theta, 10, key)]
    with pytest.raises(ConfigError, match="different steps"):
        simulate_batch(
            [flow, flow], Euler(), [theta, theta], dt=0.1, steps=20, key=[key, key], state=states
        )


def test_cli_sweep_batch_seeds(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(RAW))
    out = tmp_path / "s"
    args = ["sweep", str(path), "--grid", "seed=0..1", "--out", str(out), "--workers", "1"]
    res = CliRunner().invoke(app, [*args, "--batch-seeds", "--no-progress"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert [r["batched"] for r in read_table(out)] == ["True", "True"]


def test_release_if_crowded_drops_compiled_code():
    """Past the mapping limit the compiled code is dropped (a function compiles again);
    below it nothing happens."""
    import jax
    import jax.numpy as jnp

    from mfnn.sweep import release_if_crowded

    f = jax.jit(lambda x: x + 1)
    f(jnp.ones(3))
    assert f._cache_size() == 1
    assert release_if_crowded(limit=10**9) is False and f._cache_size() == 1
    with open("/proc/self/maps", "rb") as fh:
        count = sum(1 for _ in fh)
    assert release_if_crowded(limit=count // 2) is True
    assert f._cache_size() == 0


# ---- refused grids and `--out`, --quick, kept rows, an interrupted serial sweep ----


@pytest.mark.parametrize(
    ("specs", "match"),
    [
        (["seed=1,1"], "repeats the value 1"),
        (["model.activation=tanh,relu,tanh"], "repeats the value 'tanh'"),
        (["k=[1"], r"`--grid k=\.\.\.`: the value '\[1' is not valid YAML"),
        (["k={"], "not valid YAML"),
    ],
)
def test_repeated_and_malformed_grid_values_are_refused(specs, match):
    with pytest.raises(ConfigError, match=match):
        parse_grid(specs)


def test_a_grid_beyond_the_limit_is_refused_before_it_is_built():
    from mfnn.sweep import MAX_POINTS, grid_size

    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"10000000001 points .* at most {MAX_POINTS}"):
        parse_grid(["seed=0..10000000000"])
    # the product of the counts, each axis small
    with pytest.raises(ConfigError, match=r"20000 points \(seed: 1000 x model.width: 20\)"):
        parse_grid(["seed=0..999", "model.width=1..20"])
    assert time.perf_counter() - t0 < 1.0  # nothing was materialised
    assert grid_size({"seed": 10**10, "model.width": [4, 8]}) == 2 * 10**10
    assert len(parse_grid([f"seed=1..{MAX_POINTS}"])["seed"]) == MAX_POINTS  # the limit itself


def test_run_sweep_refuses_a_big_grid_before_expanding(tmp_path, monkeypatch):
    import mfnn.sweep as sweep

    def never(grid):
        raise AssertionError("expanded")

    monkeypatch.setattr(sweep, "expand", never)
    grid = {"seed": list(range(200)), "model.width": list(range(1, 101))}
    with pytest.raises(ConfigError, match="20000 points"):
        run_sweep(RAW, grid, tmp_path / "s", workers=1, progress=False)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("grid", "match"),
    [
        # 8 and 8.0 are two names but one validated config (`model.width` is an integer)
        ({"model.width": [8, 8.0]}, "model.width=8 and model.width=8.0 give one config"),
        ({"dynamics.dt": [0.1, "1e-1"]}, "give one config"),
        # two values, one directory name: two writers on one run directory
        ({"name": ["a b", "a_b"]}, "one directory name 'name=a_b'"),
    ],
)
def test_points_that_collide_are_refused_before_any_run(tmp_path, grid, match):
    with pytest.raises(ConfigError, match=match):
        run_sweep(RAW, grid, tmp_path / "s", workers=1, progress=False)
    assert not (tmp_path / "s" / "points").exists()


def test_cli_refuses_repeated_values_and_bad_yaml_without_traceback(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(RAW))
    for grid, match in [
        ("seed=1,1", "repeats the value 1"),
        ("model.width=100,1e2", "give one config"),
        ("k=[1", "--grid k="),
        ("seed=0..10000000000", "10000000001 points"),
    ]:
        out = tmp_path / "s"
        res = CliRunner().invoke(app, ["sweep", str(path), "--grid", grid, "--out", str(out)])
        assert res.exit_code == 2, (grid, res.output)
        assert match in res.output and "Traceback" not in res.output, res.output
        assert not (out / "points").exists()


def test_out_that_is_a_file_or_not_writable_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(RAW))
    a_file = tmp_path / "f"
    a_file.write_text("x")
    for out, match in [(a_file, "is a file, not a directory"), (a_file / "s", "is a file, so")]:
        res = CliRunner().invoke(app, ["sweep", str(path), "--grid", "seed=0", "--out", str(out)])
        assert res.exit_code == 2 and "`--out`" in res.output and match in res.output, res.output
        assert "Traceback" not in res.output
    # a directory this user cannot write to (the check itself; root may write anywhere)
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(ConfigError, match="`--out` .* is not writable"):
        run_sweep(RAW, {"seed": [0]}, tmp_path / "ro" / "s", workers=1, progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_out_in_a_read_only_directory_exits_2(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(RAW))
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    res = CliRunner().invoke(app, ["sweep", str(path), "--grid", "seed=0", "--out", str(ro / "s")])
    assert res.exit_code == 2 and "`--out`" in res.output and "not writable" in res.output


def test_cli_sweep_quick_caps_the_steps_of_a_plain_config(tmp_path):
    from mfnn.cli import QUICK_STEPS

    raw = json.loads(json.dumps(RAW))
    raw["dynamics"]["steps"] = QUICK_STEPS + 200
    raw["record"]["every"] = 100
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(raw))
    out = tmp_path / "s"
    args = ["sweep", str(path), "--grid", "seed=0", "--out", str(out), "--quick", "--no-progress"]
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "points" / "seed=0" / "summary.json").read_text())
    assert summary["final_step"] == QUICK_STEPS  # as `mfnn run --quick` on this config


def test_table_keeps_earlier_points_outside_the_grid(tmp_path):
    out = tmp_path / "s"
    kw = {"workers": 1, "progress": False}
    first = run_sweep(RAW, {"seed": [0, 1]}, out, **kw)
    second = run_sweep(RAW, {"seed": [1, 2]}, out, **kw)
    assert [r["point"] for r in second] == ["seed=1", "seed=2"]  # the current grid's rows
    rows = {r["point"]: r for r in read_table(out)}
    assert [r["point"] for r in read_table(out)] == ["seed=1", "seed=2", "seed=0"]
    assert {p: r["in_grid"] for p, r in rows.items()} == {
        "seed=0": "False",
        "seed=1": "True",
        "seed=2": "True",
    }
    # the earlier row is kept as it was (its final loss and status)
    assert float(rows["seed=0"]["final_loss"]) == pytest.approx(first[0]["final_loss"], rel=1e-12)
    assert rows["seed=0"]["status"] == "completed"
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["points"] == {"seed=1": {"seed": 1}, "seed=2": {"seed": 2}}
    assert manifest["earlier_points"] == {"seed=0": {"seed": 0}}
    # back in the grid: reused, and the others become the earlier points
    third = run_sweep(RAW, {"seed": [0]}, out, **kw)
    assert third[0]["reused"] and third[0]["in_grid"] is True
    assert {r["point"]: r["in_grid"] for r in read_table(out)} == {
        "seed=0": "True",
        "seed=1": "False",
        "seed=2": "False",
    }
    assert json.loads((out / "sweep.json").read_text())["earlier_points"] == {
        "seed=1": {"seed": 1},
        "seed=2": {"seed": 2},
    }


SLOW_RAW = {  # a point that compiles and runs for a second or more (the interrupt lands in it)
    "model": {"width": 128, "activation": "tanh", "bias": False},
    "data": {"target": "sign", "n_train": 64, "n_test": 0},
    "dynamics": {"dt": 0.01, "steps": 30000},
    "record": {"every": 500, "chunk": 1000},
}


@pytest.fixture(autouse=True)
def _python_sigint():
    """Each test here starts with Python's own SIGINT handler (and gets the previous one
    back): a handler or SIG_IGN left by an earlier test in the same worker process would
    otherwise decide whether the sweep installs its own, and the interrupt tests with it."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _interrupt_when(path, sig=None):
    """Send this process ``sig`` (SIGINT) from a thread once ``path`` exists."""
    import signal
    import threading

    def watch():
        deadline = time.time() + 60
        while not path.exists() and time.time() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), sig or signal.SIGINT)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_an_interrupted_serial_sweep_writes_its_table_and_stops(tmp_path):
    """SIGINT in the first point (in this process, workers=1): that point ends
    ``interrupted`` (summary and row), the others are ``cancelled`` without a directory,
    the table is written and `SweepInterrupted` raised; a rerun finishes the sweep."""
    import signal

    from mfnn.sweep import SweepInterrupted

    out = tmp_path / "s"
    grid = {"seed": [0, 1, 2]}
    before = signal.getsignal(signal.SIGINT)
    thread = _interrupt_when(out / "points" / "seed=0" / "summary.json")
    with pytest.raises(SweepInterrupted) as info:
        run_sweep(SLOW_RAW, grid, out, workers=1, progress=False)
    thread.join(timeout=5)
    assert signal.getsignal(signal.SIGINT) is before  # the handlers are given back
    assert [r["status"] for r in info.value.rows] == ["interrupted", "cancelled", "cancelled"]
    assert [r["status"] for r in read_table(out)] == ["interrupted", "cancelled", "cancelled"]
    summary = json.loads((out / "points" / "seed=0" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert not (out / "points" / "seed=1").exists() and not (out / "points" / "seed=2").exists()
    table = run_sweep(SLOW_RAW, {"seed": [0]}, out, workers=1, progress=False)
    assert table[0]["status"] == "completed" and not table[0].get("reused")


def test_an_interrupted_dask_sweep_cancels_its_futures(tmp_path):
    distributed = pytest.importorskip("distributed")
    from mfnn.sweep import SweepInterrupted

    out = tmp_path / "d"
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        thread = _interrupt_when(out / "points" / "seed=0" / "summary.json")
        with pytest.raises(SweepInterrupted) as info:
            run_sweep(
                SLOW_RAW,
                {"seed": [0, 1, 2]},
                out,
                dask_address=cluster.scheduler_address,
                progress=False,
            )
        thread.join(timeout=5)
    statuses = [r["status"] for r in info.value.rows]
    # the first point ran on (a Dask task cannot be interrupted); the queued ones were not run
    assert statuses[0] in ("completed", "cancelled") and statuses[1:] == ["cancelled"] * 2
    assert [r["status"] for r in read_table(out)] == statuses
    assert not (out / "points" / "seed=2").exists()


def test_a_point_stopped_before_its_first_checkpoint_starts_over(tmp_path):
    """Rows but no checkpoint (a point stopped in its first chunk): running the sweep again
    completes it from step 0, each step once (the old rows are moved to previous/)."""
    from mfnn.rundir import read_metrics

    out = tmp_path / "s"
    run_sweep(RAW, {"seed": [0, 1]}, out, workers=1, progress=False)
    d = out / "points" / "seed=0"
    (d / "checkpoint.npz").unlink()
    (d / "summary.json").write_text(json.dumps({"status": "interrupted", "checks": {}}))
    table = run_sweep(RAW, {"seed": [0, 1]}, out, workers=1, progress=False)
    assert [r["status"] for r in table] == ["completed"] * 2
    steps = list(read_metrics(d)["step"])
    assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == RAW["dynamics"]["steps"]
    assert (d / "previous").is_dir()
