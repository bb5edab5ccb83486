"""Run directories: the file contract, resume bit for bit, divergence, interruption."""

import json

import numpy as np
import pytest

from mfnn import config, rundir, runs
from mfnn.measure import load_particles
from tiers import first_by_default

SMALL = [
    "model.width=24",
    "data.n_train=64",
    "data.n_test=32",
    "dynamics.dt=0.05",
    "dynamics.steps=95",
    "record.every=10",
    "record.chunk=30",
]


def small(*extra):
    return config.load({}, SMALL + list(extra))


def test_run_directory_contract(tmp_path):
    traj, built, summary = runs.execute(small(), tmp_path, progress=False)
    files = {p.name for p in tmp_path.iterdir()}
    assert {
        "config.yaml",
        "metrics.csv",
        "snapshots",
        "checkpoint.npz",
        "summary.json",
        "figures",
    } <= files
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["step", "t", "loss"]
    assert {"test_loss", "dissipation", "energy_residual", "movement"} <= set(header)
    m = rundir.read_metrics(tmp_path)
    # rows at 0, every, 2 every, ... and the last step (95 is not a multiple of 10)
    assert m["step"].tolist() == list(range(0, 91, 10)) + [95]
    np.testing.assert_allclose(m["t"], m["step"] * 0.05)
    snaps = rundir.list_snapshots(tmp_path)
    assert min(snaps) == 0 and max(snaps) == 95
    # a snapshot is a particle file: it can start a new run
    theta = load_particles(snaps[95], built.model)
    np.testing.assert_array_equal(theta, traj.final)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["status"] == "completed" and s["final_loss"] == pytest.approx(m["loss"][-1])
    assert s["checks"]["energy_identity"]["passed"] is True
    assert set(s["checks"]["energy_identity"]) == {"value", "expected", "passed"}
    cfg = config.read_yaml(tmp_path / "config.yaml")
    assert cfg["mfnn_version"] and cfg["model"]["width"] == 24
    # loss column is the risk of the particles at that step
    risk = built.dynamics.objective.risk(built.model, theta)
    assert float(risk) == pytest.approx(m["loss"][-1], rel=1e-12)
    assert (tmp_path / "figures" / "run.png").stat().st_size > 1000


def test_snapshot_starts_a_new_run(tmp_path):
    runs.execute(small(), tmp_path / "a", progress=False)
    snap = rundir.list_snapshots(tmp_path / "a")[95]
    cfg = small(f"model.init.path={snap}", "dynamics.steps=10")
    _, built, _ = runs.execute(cfg, tmp_path / "b", progress=False)
    assert built.theta0.shape == (24, 3)
    m = rundir.read_metrics(tmp_path / "b")
    assert m["loss"][0] == pytest.approx(rundir.read_metrics(tmp_path / "a")["loss"][-1], rel=1e-12)


class Stop(Exception):
    pass


@pytest.mark.parametrize(
    "extra",
    first_by_default(
        [
            [],
            ["dynamics.kind=sgd", "dynamics.batch_size=16", "dynamics.sampling=epochs"],
            ["dynamics.kind=sgd", "dynamics.batch_size=8", "dynamics.sampling=online"]
            + ["dtype=float32"],
            ["dynamics.integrator=heun"],
        ]
    ),
)
def test_resume_is_bit_identical(tmp_path, monkeypatch, extra):
    cfg = small(*extra, "record.snapshot_every=30")
    runs.execute(cfg, tmp_path / "full", progress=False)

    original = rundir.RunWriter.on_checkpoint

    def interrupt_after_60(self, state):
        original(self, state)
        if state.step == 60:
            raise KeyboardInterrupt

    monkeypatch.setattr(rundir.RunWriter, "on_checkpoint", interrupt_after_60)
    _, _, s = runs.execute(cfg, tmp_path / "cut", progress=False)
    assert s["status"] == "interrupted" and s["final_step"] == 60
    assert max(rundir.list_snapshots(tmp_path / "cut")) == 60
    monkeypatch.setattr(rundir.RunWriter, "on_checkpoint", original)
    _, _, s = runs.execute(cfg, tmp_path / "cut", resume=True, progress=False)
    assert s["status"] == "completed"
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert (full / "metrics.csv").read_bytes() == (cut / "metrics.csv").read_bytes()
    fs, cs = rundir.list_snapshots(full), rundir.list_snapshots(cut)
    assert list(fs) == list(cs) == [0, 30, 60, 90, 95]
    for step in fs:
        a, b = np.load(fs[step]), np.load(cs[step])
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_divergence_keeps_what_was_written(tmp_path):
    cfg = small("dynamics.dt=200.0", "model.activation=quadratic", "dynamics.steps=300")
    traj, _, s = runs.execute(cfg, tmp_path, progress=False)
    assert s["status"] == "diverged"
    assert "`dynamics.dt` <=" in s["message"]  # NaN/inf at step 4, before the first record
    div = s["divergence"]
    m = rundir.read_metrics(tmp_path)
    assert np.all(np.isfinite(m["loss"]))
    bad_step = s["final_step"]
    assert m["step"][-1] <= bad_step == div["kept_step"] < div["step"] < 300
    assert len(set(m["step"])) == len(m["step"])  # no row twice
    assert (tmp_path / div["kept_file"]).is_file()
    snaps = rundir.list_snapshots(tmp_path)
    assert bad_step in snaps  # the last finite state is saved
    last = np.load(snaps[bad_step])
    assert all(np.all(np.isfinite(last[k])) for k in last)


def test_resume_of_completed_run_changes_nothing(tmp_path):
    cfg = small()
    runs.execute(cfg, tmp_path, progress=False)
    before = (tmp_path / "metrics.csv").read_bytes()
    _, _, s = runs.execute(cfg, tmp_path, resume=True, progress=False)
    assert s["status"] == "completed"
    assert (tmp_path / "metrics.csv").read_bytes() == before


def test_resume_drops_a_row_cut_mid_write(tmp_path, monkeypatch):
    """A kill while a row is half written leaves e.g. '2' of '20,...'; resume drops it."""
    cfg = small()
    runs.execute(cfg, tmp_path / "full", progress=False)
    original = rundir.RunWriter.on_checkpoint

    def cut_after_30(self, state):
        original(self, state)
        if state.step == 30:
            with open(self.metrics_path, "a") as fh:
                fh.write("6")  # the start of the row of step 60, cut
            raise KeyboardInterrupt

    monkeypatch.setattr(rundir.RunWriter, "on_checkpoint", cut_after_30)
    runs.execute(cfg, tmp_path / "cut", progress=False)
    monkeypatch.setattr(rundir.RunWriter, "on_checkpoint", original)
    runs.execute(cfg, tmp_path / "cut", resume=True, progress=False)
    assert (tmp_path / "cut" / "metrics.csv").read_bytes() == (
        tmp_path / "full" / "metrics.csv"
    ).read_bytes()


def test_resume_does_not_reuse_a_run_of_another_config(tmp_path):
    from mfnn.rundir import run_dir_status, same_config

    raw = {
        "model": {"width": 8, "activation": "tanh", "bias": False},
        "data": {"target": "sign", "n_train": 16, "n_test": 0},
        "dynamics": {"dt": 0.1, "steps": 20},
        "record": {"every": 10},
    }
    cfg = config.load(raw)
    runs.execute(cfg, tmp_path, progress=False)
    assert same_config(tmp_path, cfg) and run_dir_status(tmp_path, cfg) == "completed"
    other = config.load(raw, ["dynamics.steps=40"])
    assert not same_config(tmp_path, other) and run_dir_status(tmp_path, other) == "stale"
    # resuming with the other config starts over instead of continuing the checkpoint
    traj, _, summary = runs.execute(other, tmp_path, resume=True, progress=False)
    assert summary["status"] == "completed" and traj.steps[0] == 0
    assert rundir.read_metrics(tmp_path)["step"].tolist() == [0, 10, 20, 30, 40]
    # a fresh shorter run in the same directory leaves none of the longer run's files
    runs.execute(cfg, tmp_path, progress=False)
    assert max(rundir.list_snapshots(tmp_path)) == 20
