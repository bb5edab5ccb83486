"""A real `mfnn sweep` process and its spawned workers: SIGINT/SIGTERM stop it (exit 130, a
table, queued points not run, running ones interrupted), kill -9 of it takes its workers
with it, and the same command then finishes the sweep (each point once, no step twice).

Linux only: worker pids are read from /proc/<pid>/task/*/children."""

import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads worker pids from /proc"
)

# a point compiles and runs for seconds (20000 steps, a checkpoint every 1000): a signal
# sent when the first point's directory appears lands while that point runs
CONFIG = {
    "model": {"width": 256, "activation": "tanh", "bias": False},
    "data": {"target": "sign", "n_train": 64, "n_test": 0},
    "dynamics": {"dt": 0.01, "steps": 20000},
    "record": {"every": 500, "chunk": 1000},
}
SEEDS = "0..5"  # six points, two workers: at least three are still queued at the signal
START_S = 90  # spawn, imports and the first build on a loaded 2-core machine take ~20 s


def _command(tmp_path, out, seeds=SEEDS):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(CONFIG))
    return [sys.executable, "-m", "mfnn.cli", "sweep", str(path), "--grid", f"seed={seeds}"] + [
        "--out",
        str(out),
        "--workers",
        "2",
    ]


def _start(cmd):
    """The sweep in its own session (the test signals it, or its group, alone).

    A shell that starts jobs in the background makes them ignore SIGINT, and the ignore is
    inherited (the sweep respects it): only then is the child given the default handler
    (a preexec_fn forks the JAX-threaded test process, which JAX warns against).
    """
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    return subprocess.Popen(
        cmd,
        start_new_session=True,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if ignored else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_first_point(proc, out):
    deadline = time.time() + START_S
    while not list((out / "points").glob("*/summary.json")):
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended early ({proc.returncode}): {proc.stderr.read()}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"no point started within {START_S} s")
        time.sleep(0.02)


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(path) as fh:
                kids |= {int(x) for x in fh.read().split()}
        except OSError:
            pass
    return kids


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by its new parent, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _summary(out, name):
    path = out / "points" / name / "summary.json"
    return json.loads(path.read_text())["status"] if path.is_file() else None


def _assert_ended(out, name):
    """A started run says it was interrupted (or completed), never ``running``; a point
    stopped while it was being built or opened has no summary.json, and no recorded row
    (metrics.csv at most its header)."""
    status = _summary(out, name)
    if status is None:
        metrics = out / "points" / name / "metrics.csv"
        assert not metrics.exists() or len(metrics.read_text().splitlines()) <= 1, name
    else:
        assert status in ("interrupted", "completed"), (name, status)


def _table(out):
    with open(out / "table.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize(
    ("sig", "to_group"),
    [
        ("SIGINT", False),  # to the sweep process alone: it forwards it to its workers
        # as a terminal's Ctrl-C (the whole process group), and SIGTERM: the slow tier
        pytest.param("SIGINT", True, marks=pytest.mark.slow),
        pytest.param("SIGTERM", False, marks=pytest.mark.slow),
    ],
)
def test_a_signal_stops_the_sweep(tmp_path, sig, to_group):
    out = tmp_path / "s"
    proc = _start(_command(tmp_path, out))
    try:
        _wait_for_first_point(proc, out)
        t0 = time.time()
        if to_group:
            os.killpg(proc.pid, getattr(signal, sig))
        else:
            os.kill(proc.pid, getattr(signal, sig))
        stdout, stderr = proc.communicate(timeout=60)
        took = time.time() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert took < 20, took
    last = stderr.strip().splitlines()[-1]
    assert "interrupted" in last and "run the same command again" in last, stderr
    assert "Traceback" not in stderr, stderr
    rows = _table(out)
    names = [r["point"] for r in rows]
    assert len(names) == len(set(names)) == 6
    # no point finished twice (the progress lines, one a finished point)
    finished = [ln.split("] ", 1)[1].split(":")[0] for ln in stdout.splitlines() if "] " in ln]
    assert len(finished) == len(set(finished)), stdout
    statuses = {r["point"]: r["status"] for r in rows}
    assert set(statuses.values()) <= {"completed", "interrupted", "cancelled"}, statuses
    assert list(statuses.values()).count("cancelled") >= 3, statuses  # queued, not run
    assert "interrupted" in statuses.values(), statuses
    for name, status in statuses.items():
        if status == "cancelled":  # never started: no run directory
            assert not (out / "points" / name).exists(), name
        else:
            _assert_ended(out, name)


@pytest.mark.slow  # 24 s: the default tier keeps the SIGINT case above
def test_kill_9_of_the_sweep_takes_its_workers_with_it(tmp_path):
    out = tmp_path / "s"
    proc = _start(_command(tmp_path, out, "0..3"))
    try:
        _wait_for_first_point(proc, out)
        workers = _children(proc.pid)
        assert len(workers) >= 2, workers  # two workers (and multiprocessing's tracker)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        t0 = time.time()
        while any(_alive(p) for p in workers) and time.time() - t0 < 10:
            time.sleep(0.05)
        left = [p for p in workers if _alive(p)]
    finally:
        for p in workers:  # leave nothing behind if the test fails
            if _alive(p):
                os.kill(p, signal.SIGKILL)
    assert not left, f"workers still running 10 s after kill -9 of the sweep: {left}"
    for d in (out / "points").iterdir():
        _assert_ended(out, d.name)


@pytest.mark.slow  # a kill -9, then the whole sweep again: ~40 s on 2 cores
def test_after_kill_9_the_same_command_finishes_the_sweep(tmp_path):
    out = tmp_path / "s"
    cmd = _command(tmp_path, out, "0..3")
    proc = _start(cmd)
    _wait_for_first_point(proc, out)
    workers = _children(proc.pid)
    time.sleep(2)  # some steps into the first points
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    t0 = time.time()
    while any(_alive(p) for p in workers) and time.time() - t0 < 10:
        time.sleep(0.05)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    rows = _table(out)
    assert [r["status"] for r in rows] == ["completed"] * 4
    finished = [ln for ln in again.stdout.splitlines() if ": completed" in ln]
    assert len(finished) == 4, again.stdout  # each point once
    for r in rows:
        with open(out / "points" / r["point"] / "metrics.csv", newline="") as fh:
            steps = [int(row["step"]) for row in csv.DictReader(fh)]
        assert steps == sorted(set(steps)), r["point"]  # no step twice
        assert steps[0] == 0 and steps[-1] == CONFIG["dynamics"]["steps"]
        assert _summary(out, r["point"]) == "completed"


def _spawn_worker(code: str):
    """python A, whose child B runs ``code`` (B's parent: A); returns (A, B's pid)."""
    inner = f"import os, sys, time\n{code}\nprint('ready', flush=True)\ntime.sleep(60)\n"
    outer = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-c', {inner!r}], stdout=subprocess.PIPE)\n"
        "assert p.stdout.readline().strip() == b'ready'\n"
        "print(p.pid, flush=True)\n"
        "p.wait()\n"
    )
    a = subprocess.Popen(
        [sys.executable, "-c", outer], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    return a, int(a.stdout.readline())


@pytest.mark.slow  # two interpreters importing mfnn
@pytest.mark.parametrize("pdeathsig", [True, False])
def test_a_worker_exits_when_its_parent_dies(pdeathsig):
    """PR_SET_PDEATHSIG, and without it the watchdog thread (polling os.getppid())."""
    off = "" if pdeathsig else "sweep._die_with_parent = lambda: False\n"
    a, b = _spawn_worker(f"import mfnn.sweep as sweep\n{off}sweep._worker_init(os.getppid())")
    try:
        assert _alive(b)
        os.kill(a.pid, signal.SIGKILL)
        a.wait(timeout=10)
        t0 = time.time()
        while _alive(b) and time.time() - t0 < 10:
            time.sleep(0.05)
        assert not _alive(b), f"the worker outlived its parent by {time.time() - t0:.1f} s"
    finally:
        if _alive(b):
            os.kill(b, signal.SIGKILL)


@pytest.mark.slow  # an interpreter importing mfnn
def test_a_worker_whose_parent_died_before_prctl_exits():
    """The race: the recorded parent pid is no longer the parent when prctl runs."""
    code = "import os, sys\nimport mfnn.sweep as sweep\nsweep._worker_init(os.getppid() + 10**6)"
    res = subprocess.run(
        [sys.executable, "-c", code + "\nprint('alive')"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1 and "alive" not in res.stdout, res
