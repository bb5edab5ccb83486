"""Population-risk runs from a config: each method end to end, the recorded loss is the
population risk, a reflecting ball keeps the particles inside, and bad configs fail
with the field named."""

import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mfnn import config, rundir, runs
from mfnn.build import build
from mfnn.cli import app
from tiers import first_by_default

TEACHER = {"w": [[1.0, 0.0], [0.0, 1.0]], "alpha": [0.7, 0.3]}


def cfg_for(method, **extra):
    raw = {
        "model": {"width": 16, "activation": "relu", "bias": False, "train_output": False},
        "data": {
            "population": {
                "inputs": "gaussian",
                "dim": 2,
                "method": method,
                "nodes": 32,
                "samples": 256,
                "eval_samples": 4096,
            },
            "teacher": TEACHER,
        },
        "dynamics": {"dt": 0.5, "steps": 60},
        "record": {"every": 20},
    }
    for key, value in extra.items():
        node = raw
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return config.load(raw)


@pytest.mark.parametrize("method", first_by_default(["closed_form", "quadrature", "monte_carlo"]))
def test_population_run_records_the_population_risk(tmp_path, method):
    cfg = cfg_for(method)
    traj, built, summary = runs.execute(cfg, tmp_path, progress=False)
    assert summary["status"] == "completed"
    m = rundir.read_metrics(tmp_path)
    assert m["loss"][-1] < 0.5 * m["loss"][0]  # it learns
    # the recorded loss is the exact population risk of the snapshot (closed form)
    exact = build(cfg_for("closed_form")).dynamics.objective
    last = rundir.list_snapshots(tmp_path)[60]
    theta = jnp.asarray(np.load(last)["w"])
    r = float(exact.risk(built.model, theta))
    if method == "closed_form":
        assert abs(m["loss"][-1] - r) <= 1e-12 * r
    elif method == "quadrature":  # relu's kink: error ~1/nodes; |R_q - R_2q| is about half
        q = summary["quadrature_error"]
        assert q["nodes"] == 32 and 0 < q["final"] < 1e-3
        assert abs(m["loss"][-1] - r) <= 3 * q["final"]
    else:  # 4096 evaluation samples: a few per cent
        assert abs(m["loss"][-1] - r) <= 0.2 * r
    assert "test_loss" not in m


def test_reflecting_ball_keeps_particles_inside(tmp_path):
    cfg = cfg_for(
        "closed_form",
        **{
            "dynamics.domain": {"kind": "ball", "radius": 1.2},
            "model.init": {"w": {"law": "uniform", "low": -0.8, "high": 0.8}},
        },
    )
    traj, built, summary = runs.execute(cfg, tmp_path, progress=False)
    assert summary["status"] == "completed"
    for path in rundir.list_snapshots(tmp_path).values():
        w = np.load(path)["w"]
        assert w.shape == (16, 2)  # mass conserved
        assert np.all(np.linalg.norm(w, axis=1) <= 1.2 + 1e-12)
    m = rundir.read_metrics(tmp_path)
    assert m["loss"][-1] < 0.5 * m["loss"][0]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["data.population.method=quadrature", "data.population.dim=4"], "data.population"),
        (["model.bias=true"], "model.bias"),
        (["model.activation=tanh"], "closed_form"),
        (["data.population.dim=3"], "data.teacher.w"),
        (["data.population.method=simpson"], "data.population.method"),
        (["dynamics.domain.kind=sphere"], "dynamics.domain.kind"),
    ],
)
def test_bad_population_configs_fail_cleanly(tmp_path, overrides, field):
    raw = cfg_for("closed_form").model_dump(exclude_none=True)
    raw["dynamics"]["domain"] = {"kind": "ball", "radius": 2.0}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    args = ["run", str(path), "--out", str(tmp_path / "run"), "--no-progress"]
    for o in overrides:
        args += ["--set", o]
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 2, res.output
    assert field in res.output and "Traceback" not in res.output


def test_teacher_file_is_read(tmp_path):
    np.savez(
        tmp_path / "teacher.npz", w=np.array([[1.0, 0.0], [0.0, 1.0]]), alpha=np.array([0.5, 0.5])
    )
    cfg = cfg_for("closed_form", **{"data.teacher": {"path": str(tmp_path / "teacher.npz")}})
    built = build(cfg)
    np.testing.assert_array_equal(built.dynamics.objective.teacher.alpha, [0.5, 0.5])
    np.savez(tmp_path / "bad.npz", w=np.ones((2, 2)), alpha=np.array([0.8, 0.8]))
    bad = cfg_for("closed_form", **{"data.teacher": {"path": str(tmp_path / "bad.npz")}})
    with pytest.raises(config.ConfigError, match="data.teacher.alpha"):
        build(bad)
