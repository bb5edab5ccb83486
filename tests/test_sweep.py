"""Sweeps: grid parsing, one run directory a point, a resumable sweep that does not recompute
finished points, failed points reported (not fatal), local processes and a real Dask
LocalCluster on loopback, bad input refused before any compute."""

import json
import time

import pytest
from typer.testing import CliRunner

from mfnn.cli import app
from mfnn.errors import ConfigError
from mfnn.sweep import expand, parse_grid, read_table, run_sweep

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
