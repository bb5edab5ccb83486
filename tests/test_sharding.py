"""Particles sharded across devices (`mfnn.sharding`): the same trajectory as one device.

JAX fixes its device count when it starts, so the sharded runs happen in a subprocess
with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` on the CPU: this file, run as a
script (`_device_checks`), does every check once and prints the numbers as JSON; the
tests below assert on them. The split of a sum over particles into per-device partial
sums plus an all-reduce changes only the order of the additions, so in float64 the runs
agree with one device to round-off (1e-12 relative here); the noise of a Langevin run is
a function of the key and the global shape only, so it agrees too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from mfnn.errors import ConfigError
from mfnn.sharding import ParticleSharding, check_width, device_count, particle_sharding

RTOL = 1e-12  # float64 round-off of a reordered sum, accumulated over 100 steps
HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]


# ------------------------------------------------------------- the subprocess side


def _problem(m: int, l2: float = 0.0):
    """A two-layer mean-field gradient flow, full batch, float64: n = 128, d = 3."""
    import jax.numpy as jnp

    from mfnn import DataSet, EmpiricalRisk, FullBatch, GradientFlow, TwoLayer

    n, d = 128, 3
    x = jax.random.normal(jax.random.key(0), (n, d), jnp.float64)
    data = DataSet(x, jnp.tanh(2.0 * x[:, 0]) - 0.5 * x[:, 1] * x[:, 2])
    net = TwoLayer(d=d, activation="tanh", scaling="mean_field")
    theta = jax.random.normal(jax.random.key(1), (m, net.dim), jnp.float64)
    return GradientFlow(net, EmpiricalRisk(data, l2), FullBatch(data)), theta


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _device_checks() -> dict:
    """Every sharded check, in one process of 4 host devices; the numbers as a dict."""
    import jax.numpy as jnp

    from mfnn import Euler, EulerMaruyama, Langevin, Recorder, State, Temperature, simulate

    out: dict = {"devices": len(jax.devices())}
    flow, theta = _problem(64)
    rec = Recorder(every=10)
    run = dict(dt=0.2, steps=100, key=jax.random.key(2), recorder=rec, chunk=50)

    # gradient flow: 1 and 4 devices (2: the CLI check, slow)
    base = simulate(flow, Euler(), theta, **run)
    out["gf_loss_drop"] = float(base["loss"][-1] / base["loss"][0])
    for n in (4,):
        traj = simulate(flow, Euler(), theta, devices=n, **run)
        out[f"gf_loss_rel_{n}"] = _rel(traj["loss"], base["loss"])
        out[f"gf_final_rel_{n}"] = _rel(traj.final, base.final)
        out[f"gf_rows_{n}"] = len(traj["loss"]) == len(base["loss"])
        out[f"gf_status_{n}"] = traj.status
        sharding = traj.state.theta.sharding
        shards = traj.state.theta.addressable_shards
        out[f"gf_spec_{n}"] = [str(s) for s in sharding.spec]
        out[f"gf_shard_rows_{n}"] = sorted(int(s.data.shape[0]) for s in shards)
        out[f"gf_shard_devices_{n}"] = len({s.device for s in shards})
        out[f"gf_final_is_numpy_{n}"] = isinstance(traj.final, np.ndarray)

    # a resume of the sharded run from its step-50 checkpoint: bit-identical
    half = simulate(flow, Euler(), theta, devices=4, **(run | {"steps": 50}))
    full = simulate(flow, Euler(), theta, devices=4, **run)
    state = State(np.asarray(half.final), theta, 50, run["key"])
    rest = simulate(flow, Euler(), theta, devices=4, state=state, **run)
    out["resume_max_abs"] = float(np.max(np.abs(rest.final - full.final)))

    # Langevin (Euler-Maruyama): the same noise whatever the device count
    noisy = Langevin(_problem(64, l2=0.1)[0], Temperature(50.0))
    lrun = run | {"steps": 60, "chunk": 30}
    lbase = simulate(noisy, EulerMaruyama(), theta, **lrun)
    lsharded = simulate(noisy, EulerMaruyama(), theta, devices=4, **lrun)
    other = simulate(noisy, EulerMaruyama(), theta, **(lrun | {"key": jax.random.key(3)}))
    out["lan_loss_rel"] = _rel(lsharded["loss"], lbase["loss"])
    out["lan_final_rel"] = _rel(lsharded.final, lbase.final)
    out["lan_other_key_rel"] = _rel(other.final, lbase.final)  # the noise matters

    # the block layout placed directly: the particle axis (last) split 4 ways
    place = particle_sharding("all", 64)
    blocks = place.blocks(flow.model.to_blocks(jnp.asarray(theta)))
    out["blocks_shard_cols"] = [
        sorted({int(s.data.shape[-1]) for s in leaf.addressable_shards})
        for leaf in jax.tree.leaves(blocks)
    ]
    out["replicated_x_full"] = all(
        s.data.shape == flow.sampler.data.x.shape
        for s in place.replicated(flow).sampler.data.x.addressable_shards
    )

    # refusals: m not a multiple of the count, more devices than there are
    for name, kwargs in (("err_width", {"devices": 4}), ("err_count", {"devices": 5})):
        try:
            simulate(flow, Euler(), theta[:62], **(run | kwargs))
            out[name] = None
        except ConfigError as exc:
            out[name] = str(exc)
    return out


def _run_checks(count: int, entry: str) -> dict:
    """Run this file as a script (``entry``) under ``count`` forced host devices."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={count}"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, str(HERE), entry],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------- sharded runs (4)


@pytest.fixture(scope="module")
def checks() -> dict:
    return _run_checks(4, "checks")


def test_four_host_devices_are_seen(checks):
    assert checks["devices"] == 4
    assert checks["gf_loss_drop"] < 0.5  # the flow really moves: agreement is not trivial


@pytest.mark.parametrize("n", [4])
def test_gradient_flow_agrees_with_one_device(checks, n):
    assert checks[f"gf_rows_{n}"] and checks[f"gf_status_{n}"] == "completed"
    assert checks[f"gf_loss_rel_{n}"] <= RTOL
    assert checks[f"gf_final_rel_{n}"] <= RTOL


@pytest.mark.parametrize("n", [4])
def test_the_loop_ran_sharded(checks, n):
    """The state the loop returns is split along the particle axis, m / n rows a device;
    the final particles come back to the host whole."""
    assert checks[f"gf_spec_{n}"][0] == "particles"
    assert checks[f"gf_shard_rows_{n}"] == [64 // n] * n
    assert checks[f"gf_shard_devices_{n}"] == n
    assert checks[f"gf_final_is_numpy_{n}"]


def test_sharded_resume_is_bit_identical(checks):
    assert checks["resume_max_abs"] == 0.0


def test_langevin_noise_does_not_depend_on_the_sharding(checks):
    assert checks["lan_loss_rel"] <= RTOL
    assert checks["lan_final_rel"] <= RTOL
    assert checks["lan_other_key_rel"] > 1e-3  # another key moves the particles visibly


def test_placement_of_blocks_and_replicated_leaves(checks):
    # TwoLayer blocks: a (m,), w^T (d, m), b (m,): each split into 4 groups of 16 columns
    assert checks["blocks_shard_cols"] == [[16]] * 3
    assert checks["replicated_x_full"]


def test_sharded_refusals_name_devices(checks):
    assert "`devices` (4) must divide" in checks["err_width"] and "m = 62" in checks["err_width"]
    assert "`devices` must be at most" in checks["err_count"] and "(4," in checks["err_count"]
    assert "got 5" in checks["err_count"]


# ------------------------------------------------------------------ in process (1)


@pytest.mark.parametrize("bad", [0, -2, True, 2.5, "alll", "2"])
def test_device_count_refuses_bad_requests(bad):
    with pytest.raises(ConfigError, match=r"`devices` must be a positive integer"):
        device_count(bad)


def test_device_count_resolves_all_and_refuses_too_many():
    n = len(jax.devices())
    assert device_count("all") == n and device_count(None) == 1 and device_count(1) == 1
    with pytest.raises(ConfigError, match=rf"at most the number of devices JAX sees \({n}"):
        device_count(n + 1)


def test_check_width():
    check_width(64, 4)
    check_width(7, 1)
    with pytest.raises(ConfigError, match=r"`devices` \(4\) must divide .* got m = 6\b"):
        check_width(6, 4)


def test_one_device_takes_the_plain_path():
    assert particle_sharding(1, 63) is None and particle_sharding(None) is None
    if len(jax.devices()) == 1:
        assert particle_sharding("all", 63) is None
    else:  # pragma: no cover - a multi-device test process
        assert isinstance(particle_sharding("all"), ParticleSharding)


def test_simulate_refuses_too_many_devices_before_compiling():
    from mfnn import Euler, simulate

    flow, theta = _problem(8)
    with pytest.raises(ConfigError, match=r"`devices` must be at most"):
        simulate(flow, Euler(), theta, dt=0.1, steps=1, key=jax.random.key(0), devices=99)


def _cfg(**top):
    from mfnn import config

    sets = [f"{k}={v}" for k, v in top.pop("set", {}).items()]
    raw = {"data": {"target": "sign", "n_train": 8, "n_test": 0}, "model": {"width": 6}}
    return config.load(raw | top, sets)


def test_config_key_devices():
    from mfnn import config

    assert _cfg().devices == 1 and "devices" not in config.dump(_cfg())  # old dumps match
    assert _cfg(set={"devices": "all"}).devices == "all"
    assert "devices: 2" in config.dump(_cfg(devices=2))
    for bad in (0, -1, "every", 1.5, None):
        with pytest.raises(ConfigError, match=r"`devices` must be a positive integer"):
            _cfg(devices=bad)


def test_build_checks_devices_against_the_machine_and_the_width():
    from mfnn.build import build

    assert build(_cfg()).devices == 1
    assert build(_cfg(devices="all")).devices == len(jax.devices())
    with pytest.raises(ConfigError, match=r"`devices` must be at most"):
        build(_cfg(devices=len(jax.devices()) + 1))


def test_a_grid_run_refuses_devices():
    from mfnn.sharding import check_particle_run

    check_particle_run("pde", 1)
    with pytest.raises(ConfigError, match=r"`dynamics.kind: pde` .* got devices = 'all'"):
        check_particle_run("pde", "all")


# ------------------------------------------------------- the CLI on 2 devices (slow)


def _cli_checks() -> dict:
    """`mfnn run examples/sharded.yaml --set devices=all` against devices=1 (2 devices)."""
    import tempfile

    from typer.testing import CliRunner

    from mfnn.cli import app
    from mfnn.rundir import read_metrics

    out: dict = {"devices": len(jax.devices())}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for devices in ("1", "all"):
            where = Path(tmp) / devices
            args = ["run", str(ROOT / "examples" / "sharded.yaml"), "--out", str(where)]
            args += ["--set", f"devices={devices}", "--set", "model.width=256"]
            args += ["--set", "dynamics.steps=200", "--set", "dtype=float64"]
            args += ["--no-progress", "--no-report"]
            res = CliRunner().invoke(app, args)
            out[f"exit_{devices}"] = res.exit_code
            runs[devices] = read_metrics(where)
            out[f"saved_{devices}"] = (where / "config.yaml").read_text()
        out["loss_rel"] = _rel(runs["all"]["loss"], runs["1"]["loss"])
        out["rows"] = len(runs["all"]["loss"])
    return out


@pytest.mark.slow  # a subprocess that compiles two runs of the example: ~30 s on 2 cores
def test_cli_run_with_devices_all_on_two_host_devices():
    res = _run_checks(2, "cli")
    assert res["devices"] == 2 and res["exit_1"] == 0 and res["exit_all"] == 0
    assert res["rows"] > 2 and res["loss_rel"] <= RTOL
    assert "devices: all" in res["saved_all"] and "devices" not in res["saved_1"]


def test_a_run_may_continue_on_another_device_count(tmp_path):
    """`same_config` ignores `devices` (the trajectory does not depend on it beyond
    round-off), and still tells a changed number apart."""
    from mfnn import config
    from mfnn.rundir import same_config

    (tmp_path / "config.yaml").write_text(config.dump(_cfg(devices=2)))
    assert same_config(tmp_path, _cfg())
    assert same_config(tmp_path, _cfg(devices="all"))
    assert not same_config(tmp_path, _cfg(seed=5))


if __name__ == "__main__":  # the subprocess side: `python tests/test_sharding.py checks`
    from mfnn.cache import enable_compilation_cache

    jax.config.update("jax_enable_x64", True)
    enable_compilation_cache()  # as the suite's own processes do (tests/conftest.py)
    result = _cli_checks() if sys.argv[1:] == ["cli"] else _device_checks()
    print(json.dumps(result))
