"""One writer per run directory, honest status after a crash, resume that drops nothing."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from mfnn import config, rundir, runs
from mfnn.cli import app
from mfnn.errors import ConfigError
from mfnn.rundir import RunDirBusy, RunLock, lock_holder, run_dir_status

SMALL = ["model.width=8", "data.n_train=16", "data.n_test=8", "dynamics.steps=60",
         "record.every=10", "record.chunk=20"]  # fmt: skip


def small(*extra):
    return config.load({}, SMALL + list(extra))


def hold_lock_in_child(run_dir):
    """A child process that holds the directory's lock as `RunLock` does (an exclusive
    flock on RUN_DIR/lock holding its pid and host) and waits, killed by the test. It does
    not import mfnn (no JAX start-up); the kill test below runs the real `RunLock`."""
    code = (
        "import fcntl, json, os, socket, sys, time; "
        f"d = {str(run_dir)!r}; os.makedirs(d, exist_ok=True); "
        "fd = os.open(os.path.join(d, 'lock'), os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); "
        "os.write(fd, json.dumps({'pid': os.getpid(), 'host': socket.gethostname()}).encode()); "
        "print('held', flush=True); time.sleep(600)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_second_writer_is_refused_naming_the_holder(tmp_path):
    with RunLock(tmp_path) as lock:
        assert not lock.stale
        holder = lock_holder(tmp_path)
        assert holder["pid"] == os.getpid() and holder["host"]
        with pytest.raises(RunDirBusy, match=f"in use by process {os.getpid()} on"):
            RunLock(tmp_path).acquire()  # another open file: flock refuses it even here
    assert lock_holder(tmp_path) is None
    with RunLock(tmp_path) as again:  # released cleanly: not stale
        assert not again.stale


def test_a_dead_holders_lock_is_taken_over_and_reported_as_crashed(tmp_path):
    child = hold_lock_in_child(tmp_path)
    rundir.write_json(tmp_path / "summary.json", {"status": "running", "checks": {}})
    assert lock_holder(tmp_path)["pid"] == child.pid
    assert run_dir_status(tmp_path) == "running"  # alive: really running
    child.kill()
    child.wait(timeout=10)
    assert lock_holder(tmp_path) is None
    assert run_dir_status(tmp_path) == "crashed"  # negative control above: the live one
    with RunLock(tmp_path) as lock:
        assert lock.stale  # its claim was never cleared


def test_out_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        RunLock(f).acquire()


def test_resume_without_checkpoint_refuses_then_keeps_rows_aside(tmp_path):
    cfg = small()
    runs.execute(cfg, tmp_path, progress=False)
    rows = (tmp_path / "metrics.csv").read_text()
    (tmp_path / "checkpoint.npz").unlink()  # as a run killed before its first checkpoint
    with pytest.raises(ConfigError, match="--from-scratch") as info:
        runs.execute(cfg, tmp_path, resume=True, progress=False)
    assert "7 recorded rows" in str(info.value)
    assert (tmp_path / "metrics.csv").read_text() == rows  # nothing dropped
    _, _, s = runs.execute(cfg, tmp_path, resume=True, progress=False, from_scratch=True)
    assert s["status"] == "completed"
    (kept,) = (tmp_path / "previous").iterdir()
    assert (kept / "metrics.csv").read_text() == rows
    assert (tmp_path / "metrics.csv").read_text() == rows  # deterministic: the same rows


def test_corrupt_checkpoint_names_the_file(tmp_path):
    cfg = small()
    runs.execute(cfg, tmp_path, progress=False)
    (tmp_path / "checkpoint.npz").write_bytes(b"not a zip file")
    with pytest.raises(ConfigError, match="checkpoint.npz' cannot be read") as info:
        runs.execute(cfg, tmp_path, resume=True, progress=False)
    assert "--from-scratch" in str(info.value) and "allow_pickle" not in str(info.value)


def test_another_configs_rows_are_moved_aside_not_dropped(tmp_path):
    runs.execute(small(), tmp_path, progress=False)
    rows = (tmp_path / "metrics.csv").read_text()
    runs.execute(small("seed=5"), tmp_path, resume=True, progress=False)
    (kept,) = (tmp_path / "previous").iterdir()
    assert (kept / "metrics.csv").read_text() == rows
    assert (tmp_path / "metrics.csv").read_text() != rows


runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_resume_from_scratch_and_damaged_files(tmp_path):
    out = tmp_path / "run"
    runs.execute(small(), out, progress=False)
    (out / "checkpoint.npz").unlink()  # killed before its first checkpoint:
    rundir.write_json(out / "summary.json", {"status": "running"})
    res = cli("resume", out, "--no-progress")
    assert res.exit_code == 2 and "--from-scratch" in res.output and res.exception is not None
    assert isinstance(res.exception, SystemExit)
    res = cli("resume", out, "--no-progress", "--from-scratch")
    assert res.exit_code == 0, res.output
    # a damaged summary.json: said, then rewritten by the resumed run
    rundir.write_json(out / "summary.json", {"status": "running"})
    (out / "summary.json").write_text("{not json")
    res = cli("resume", out, "--no-progress")
    assert res.exit_code == 0 and "damaged" in res.output
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"
    # a damaged config.yaml: a message naming it
    (out / "config.yaml").write_text("model: [unclosed")
    res = cli("resume", out)
    assert res.exit_code == 2 and "config.yaml" in res.output


def test_cli_out_is_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    res = cli("run", "sign", "--quick", "--out", f)
    assert res.exit_code == 2 and "is a file" in res.output
    assert isinstance(res.exception, SystemExit)


def test_cli_internal_error_is_one_paragraph_and_debug_shows_the_traceback(tmp_path, monkeypatch):
    import mfnn.experiments as experiments

    class Broken(dict):
        def items(self):
            raise RuntimeError("boom")

    monkeypatch.setattr(experiments, "EXPERIMENTS", Broken(sign=1))
    res = cli("experiments")
    assert res.exit_code == 1 and "internal error RuntimeError: boom" in res.output
    assert "Traceback" not in res.output and "--debug" in res.output
    res = cli("--debug", "experiments")
    assert res.exit_code == 1 and "Traceback" in res.output


def test_cli_nothing_written_is_not_announced(tmp_path, monkeypatch):
    """A run that fails before writing anything does not point at an empty folder."""
    import mfnn.runs as runs_mod

    def fail(*a, **k):
        raise RuntimeError("before any file")

    monkeypatch.setattr(runs_mod, "execute", fail)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {width: 8}\ndynamics: {steps: 10}\n")
    res = cli("run", cfg, "--out", tmp_path / "o", "--no-progress")
    assert res.exit_code == 1 and "before any file" in res.output
    assert "What was written so far" not in res.output


@pytest.mark.parametrize("case", ["resume", "second_run"])
def test_two_writers_on_one_directory(tmp_path, case):
    """A second `mfnn` on a directory that a live run holds is refused (exit 2, the
    holder named) and leaves its files alone: no row twice."""
    out = tmp_path / "run"
    child = hold_lock_in_child(out)
    try:
        cfg = tmp_path / "c.yaml"
        cfg.write_text("model: {width: 8}\n")
        args = ["resume", out] if case == "resume" else ["run", cfg, "--out", out, "--overwrite"]
        if case == "resume":
            (out / "config.yaml").write_text(config.dump(small()))
        else:
            (out / "metrics.csv").write_text("step,t\n0,0.0\n")
        res = cli(*args)
        assert res.exit_code == 2 and f"in use by process {child.pid}" in res.output
        if case == "second_run":
            assert (out / "metrics.csv").read_text() == "step,t\n0,0.0\n"  # not replaced
    finally:
        child.kill()
        child.wait(timeout=10)


def test_study_directory_is_locked(tmp_path):
    from mfnn.experiments import EXPERIMENTS

    exp = EXPERIMENTS["sign"]
    child = hold_lock_in_child(tmp_path)
    try:
        cfg = config.load(exp.default_config(), list(exp.quick))
        with pytest.raises(RunDirBusy):
            exp.run(cfg, tmp_path, progress=False)
    finally:
        child.kill()
        child.wait(timeout=10)


@pytest.mark.slow  # three `mfnn` processes: 30-60 s on 2 cores
def test_kill_during_a_run_then_resume_loses_and_repeats_nothing(tmp_path):
    """Real processes: kill -9 mid-run leaves `running` -> read as crashed; `mfnn resume`
    says so and finishes; every recorded step appears once, and the rows equal those of
    an uninterrupted run."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model: {width: 64}\ndata: {n_train: 256, n_test: 16}\n"
        "dynamics: {dt: 0.02, steps: 20000}\nrecord: {every: 100, chunk: 500}\n"
    )
    out = tmp_path / "run"
    mfnn = [sys.executable, "-m", "mfnn.cli"]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    quiet = {"stderr": subprocess.DEVNULL, "stdout": subprocess.DEVNULL}
    child = subprocess.Popen(
        mfnn + ["run", str(cfg), "--out", str(out), "--no-progress"], env=env, **quiet
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoint.npz").is_file():
        time.sleep(0.2)
    child.kill()
    child.wait(timeout=10)
    assert (out / "checkpoint.npz").is_file(), "no checkpoint within 120 s"
    if run_dir_status(out) == "completed":
        pytest.skip("the run finished before the kill")
    assert run_dir_status(out) == "crashed"
    res = subprocess.run(mfnn + ["resume", str(out), "--no-progress"], env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "crashed" in res.stderr
    m = rundir.read_metrics(out)
    assert list(m["step"]) == list(range(0, 20001, 100))
    ref = subprocess.run(mfnn + ["run", str(cfg), "--out", str(tmp_path / "ref"), "--no-progress"],
                         env=env, capture_output=True, timeout=300)  # fmt: skip
    assert ref.returncode == 0
    np.testing.assert_array_equal(m["loss"], rundir.read_metrics(tmp_path / "ref")["loss"])
