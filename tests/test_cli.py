"""The `mfnn` command: runs, resume, experiments list, and clean errors (no traceback)."""

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mfnn.cli import app

runner = CliRunner()

TINY = {
    "model": {"width": 16},
    "data": {"n_train": 32, "n_test": 16},
    "dynamics": {"dt": 0.05, "steps": 40},
    "record": {"every": 10},
}


def write_config(path, cfg=TINY):
    path.write_text(yaml.safe_dump(cfg))
    return path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_experiments_lists_sign():
    res = invoke("experiments")
    assert res.exit_code == 0
    assert res.stdout.startswith("sign ")
    # claims cite published work; "seed" means only the RNG seed
    assert "seed 00" not in res.stdout


def test_run_config_with_set_and_out(tmp_path):
    cfg = write_config(tmp_path / "c.yaml")
    out = tmp_path / "run"
    res = invoke(
        "run", cfg, "--set", "model.width=12", "--set", "seed=3", "--out", out, "--no-progress"
    )
    assert res.exit_code == 0, res.output
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["model"]["width"] == 12 and resolved["seed"] == 3
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"
    assert "completed" in res.stdout


def test_out_directory_is_not_clobbered(tmp_path):
    cfg = write_config(tmp_path / "c.yaml")
    out = tmp_path / "run"
    assert invoke("run", cfg, "--out", out, "--no-progress").exit_code == 0
    res = invoke("run", cfg, "--out", out, "--no-progress")
    assert res.exit_code == 2 and "mfnn resume" in res.output
    assert invoke("run", cfg, "--out", out, "--overwrite", "--no-progress").exit_code == 0


def test_bad_inputs_exit_nonzero_without_traceback(tmp_path):
    cfg = write_config(tmp_path / "c.yaml")
    cases = [
        (["--set", "model.widht=3"], "Did you mean `model.width`"),
        (["--set", "model.width=-3"], "`model.width`"),
        (["--set", "dynamics.dt=0"], "`dynamics.dt`"),
        (["--set", "model.activation=foo"], "relu"),
        (["--set", f"model.init.path={tmp_path / 'missing.npz'}"], "does not exist"),
        (["--set", f"data.path={tmp_path / 'missing.npz'}"], "does not exist"),
    ]
    for args, needle in cases:
        res = invoke("run", cfg, *args, "--out", tmp_path / "never", "--no-progress")
        assert res.exit_code == 2, (args, res.output)
        assert needle in res.output and "Traceback" not in res.output
        assert not (tmp_path / "never").exists()  # failed before any compute or output
    res = invoke("run", "no_such_experiment")
    assert res.exit_code == 2 and "`mfnn experiments`" in res.output


def test_width_disagreeing_with_particle_file(tmp_path):
    p = tmp_path / "p.npz"
    np.savez(p, a=np.ones(5), w=np.ones((5, 1)), b=np.zeros(5))
    cfg = write_config(
        tmp_path / "c.yaml", {**TINY, "model": {"width": 16, "init": {"path": str(p)}}}
    )
    res = invoke("run", cfg, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "holds 5 particles" in res.output


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.uniform(-1, 1, (20, 2)), y=rng.normal(size=20))
    cfg = write_config(tmp_path / "c.yaml", {**TINY, "data": {"path": "data.npz"}})
    res = invoke("run", cfg, "--out", tmp_path / "o", "--no-progress")
    assert res.exit_code == 0, res.output


def test_diverged_run_exits_nonzero_with_advice(tmp_path):
    cfg = write_config(
        tmp_path / "c.yaml",
        {
            **TINY,
            "model": {"width": 16, "activation": "quadratic"},
            "dynamics": {"dt": 500.0, "steps": 200},
        },
    )
    res = invoke("run", cfg, "--out", tmp_path / "o", "--no-progress")
    assert res.exit_code == 1
    assert "diverged" in res.output and "`dynamics.dt` <=" in res.output


def test_resume_command(tmp_path):
    cfg = write_config(tmp_path / "c.yaml")
    out = tmp_path / "run"
    assert invoke("run", cfg, "--out", out, "--no-progress").exit_code == 0
    res = invoke("resume", out)
    assert res.exit_code == 0 and "already completed" in res.output
    res = invoke("resume", tmp_path / "nothing")
    assert res.exit_code == 2 and "not a run directory" in res.output


@pytest.mark.slow  # a subprocess run interrupted by SIGINT: ~50 s on 2 cores
def test_sigint_then_resume_matches_uninterrupted_run(tmp_path):
    """A real interrupt (SIGINT) mid-run, then `mfnn resume`: same files as no interruption."""
    import os
    import signal
    import subprocess
    import sys
    import time

    # big enough that the run lasts seconds after its first checkpoint (no race with SIGINT)
    cfg = {**TINY, "model": {"width": 1024}, "dynamics": {"dt": 0.01, "steps": 20000}}
    cfg["data"] = {"n_train": 128, "n_test": 16}
    cfg["record"] = {"every": 100, "chunk": 1000}
    path = write_config(tmp_path / "c.yaml", cfg)
    mfnn = [sys.executable, "-m", "mfnn.cli"]
    full = subprocess.run([*mfnn, "run", path, "--out", tmp_path / "full", "--no-progress"])
    assert full.returncode == 0
    # a shell that starts jobs in the background makes them ignore SIGINT, and the ignore
    # is inherited: give the child the default handler so Python raises KeyboardInterrupt
    proc = subprocess.Popen(
        [*mfnn, "run", path, "--out", tmp_path / "cut", "--no-progress"],
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while not (tmp_path / "cut" / "checkpoint.npz").exists() and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 0 < summary["final_step"] < 20000
    res = subprocess.run([*mfnn, "resume", tmp_path / "cut", "--no-progress"])
    assert res.returncode == 0
    a = (tmp_path / "full" / "metrics.csv").read_bytes()
    b = (tmp_path / "cut" / "metrics.csv").read_bytes()
    assert a == b
    fa, fb = (
        np.load(tmp_path / "full" / "checkpoint.npz"),
        np.load(tmp_path / "cut" / "checkpoint.npz"),
    )
    np.testing.assert_array_equal(fa["theta"], fb["theta"])


def test_empty_config_file_warns(tmp_path):
    cfg = tmp_path / "empty.yaml"
    cfg.write_text("# nothing here\n")
    res = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "o"), "--quick",
                              "--set", "model.width=8", "--set", "dynamics.steps=10",
                              "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "is empty: every key takes its default" in res.output
