"""`dynamics.kind: pde` through a run directory: files, resume, checks and bad input."""

import numpy as np
import pytest

from mfnn import config, runs
from mfnn.errors import ConfigError
from mfnn.pde.run import build_pde, read_density
from mfnn.rundir import list_snapshots, read_json, read_metrics
from pde_configs import PDE_1D

BASE = PDE_1D


def cfg_of(*overrides, raw=None):
    return config.load(config.merge(BASE, raw or {}), list(overrides))


def test_a_pde_run_writes_the_contract_and_passes_its_checks(tmp_path):
    _, pb, summary = runs.execute(cfg_of(), tmp_path / "r", progress=False)
    assert summary["status"] == "completed", summary
    assert all(c["passed"] for c in summary["checks"].values()), summary["checks"]
    m = read_metrics(tmp_path / "r")
    assert list(m["step"]) == list(range(0, 201, 20))
    for key in ("loss", "energy", "free_energy", "entropy", "dissipation", "cfl"):
        assert np.all(np.isfinite(m[key])), key
    assert np.all(np.diff(m["free_energy"]) < 0)  # the flow decreases F
    assert np.max(np.abs(m["mass_error"])) < 1e-13
    snaps = list_snapshots(tmp_path / "r")
    assert 0 in snaps and 200 in snaps
    grid, rho, t = read_density(snaps[200])
    assert t == pytest.approx(0.8) and rho.shape == (120,)
    assert grid.mass(rho) == pytest.approx(1.0, abs=1e-13)
    assert (tmp_path / "r" / "figures" / "density.png").is_file()
    assert read_json(tmp_path / "r" / "summary.json")["grid"]["flux"] == "muscl"


def test_an_interrupted_pde_run_resumes_bit_identically(tmp_path, monkeypatch):
    _, _, whole = runs.execute(cfg_of(), tmp_path / "whole", progress=False, make_figures=False)
    from mfnn.pde import run as pde_run

    calls = {"n": 0}
    original = pde_run._Writer.checkpoint

    def interrupting(self, step, rho):
        original(self, step, rho)
        calls["n"] += 1
        if calls["n"] == 3:  # after the step-80 checkpoint
            raise KeyboardInterrupt

    monkeypatch.setattr(pde_run._Writer, "checkpoint", interrupting)
    _, _, cut = runs.execute(cfg_of(), tmp_path / "cut", progress=False, make_figures=False)
    assert cut["status"] == "interrupted" and cut["final_step"] == 80
    monkeypatch.setattr(pde_run._Writer, "checkpoint", original)
    rho, _, again = runs.execute(
        cfg_of(), tmp_path / "cut", resume=True, progress=False, make_figures=False
    )
    assert again["status"] == "completed"
    a, b = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "cut")
    assert list(a["step"]) == list(b["step"])  # each row once
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    _, final, _ = read_density(list_snapshots(tmp_path / "whole")[200])
    np.testing.assert_array_equal(rho, final)


def test_a_2d_ball_with_birth_death_keeps_mass_inside(tmp_path):
    raw = {
        "model": {"train_output": True, "init": {"a": {"std": 0.5}, "w": {"std": 0.5}}},
        "dynamics": {
            "grid": {"cells": [16, 16], "flux": "upwind"},
            "domain": {"kind": "ball", "radius": 3.0},
            "birth_death": {"rate": 1.0},
            "langevin": None,
            "dt": 0.005,
            "steps": 40,
        },
        "objective": {"l2": 0.0},
        "record": {"every": 10, "chunk": 20},
    }
    raw_cfg = config.merge(BASE, raw)
    raw_cfg["dynamics"]["grid"].pop("low")
    raw_cfg["dynamics"]["grid"].pop("high")
    del raw_cfg["dynamics"]["langevin"]
    rho, pb, summary = runs.execute(config.load(raw_cfg), tmp_path / "b", progress=False)
    assert summary["status"] == "completed", summary
    assert summary["checks"]["mass_conservation"]["passed"]
    inside = pb.grid.inside()
    assert not inside.all() and np.all(rho[~inside] == 0)
    m = read_metrics(tmp_path / "b")
    assert "jump_dissipation" in m and np.all(m["jump_dissipation"] >= 0)


def test_unstable_dt_is_refused_with_the_stable_bound():
    with pytest.raises(ConfigError, match=r"`dynamics.dt` = 0.5 is unstable.*imex"):
        build_pde(cfg_of("dynamics.dt=0.5"))
    build_pde(cfg_of("dynamics.dt=0.05", "dynamics.grid.scheme=imex", "dynamics.grid.flux=upwind"))


def test_a_grid_that_cannot_hold_the_measure_is_refused():
    with pytest.raises(ConfigError, match="outer cells.*widen `dynamics.grid.low/high`"):
        build_pde(cfg_of("dynamics.grid.low=-1", "dynamics.grid.high=1"))


def test_a_run_that_reaches_the_edge_of_the_grid_ends_diverged(tmp_path):
    # no confinement, strong diffusion: the density spreads to the edge of [-2.5, 2.5]
    cfg = cfg_of(
        "dynamics.grid.low=-2.5", "dynamics.grid.high=2.5", "dynamics.langevin.beta=1",
        "objective.l2=0", "dynamics.steps=200", "dynamics.dt=0.01",
        "dynamics.grid.scheme=imex",
    )  # fmt: skip
    _, _, summary = runs.execute(cfg, tmp_path / "e", progress=False, make_figures=False)
    assert summary["status"] == "diverged"
    assert "outer cells" in summary["message"] and "widen" in summary["message"]


@pytest.mark.parametrize(
    ("overrides", "raw", "match"),
    [
        ((), {"model": {"bias": True}}, "D = 2 coordinates"),
        ((), {"model": {"bias": True, "train_output": True}}, "D = 3 coordinates"),
        ((), {"model": {"scaling": "ntk"}}, "mean_field"),
        ((), {"dynamics": {"integrator": "heun"}}, "dynamics.grid.scheme"),
        ((), {"dynamics": {"langevin": {"schedule": "log"}}}, "constant temperature"),
        ((), {"model": {"init": {"w": {"law": "constant"}}}}, "point mass"),
    ],
)
def test_bad_input_names_the_field(overrides, raw, match):
    with pytest.raises(ConfigError, match=match):
        build_pde(cfg_of(*overrides, raw=raw))


def test_grid_options_need_kind_pde():
    with pytest.raises(ConfigError, match="`dynamics.grid` is the grid of `dynamics.kind: pde`"):
        config.load(config.merge(BASE, {"dynamics": {"kind": "gradient_flow"}}))


def _cli(*args):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "mfnn.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "examples"


def test_the_cli_refuses_an_unstable_dt(tmp_path):
    from typer.testing import CliRunner

    from mfnn.cli import app

    args = ["run", str(EXAMPLES / "pde_langevin_1d.yaml"), "--set", "dynamics.dt=1.0",
            "--out", str(tmp_path / "bad")]  # fmt: skip
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 2, res.output
    assert "`dynamics.dt` = 1 is unstable" in res.output and "Traceback" not in res.output


@pytest.mark.slow  # two subprocesses, 45 s
@pytest.mark.parametrize("name", ["pde_langevin_1d", "pde_2d_birth_death"])
def test_the_cli_runs_the_examples(tmp_path, name):
    proc = _cli("run", EXAMPLES / f"{name}.yaml", "--set", "dynamics.steps=20",
                "--set", "record.every=10", "--out", tmp_path / name)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert read_json(tmp_path / name / "summary.json")["status"] == "completed"
