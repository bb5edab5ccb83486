"""Gradient-descent steps/s of mfnn against hand-written loops and the machine's GEMM rate.

Problem: a two-layer ReLU network, mean_field scaling, bias on, full-batch gradient flow
stepped with Euler (plain gradient descent, dt = 1e-3), square loss on x ~ N(0, I_d),
y = sign(x_1). For each (n, m, d) and dtype the script measures, in the same run:

- GEMM: the jitted matmuls of one step, forward (n, d) x (d, m) and backward
  (m, n) x (n, d), each in its faster orientation; a step costs about 4 n m d flops, so
  the GEMM-bound step rate is 1 / (t_forward + t_backward);
- square GEMM: a jitted 2048 x 2048 x 2048 matmul and NumPy's, the faster of the two: the
  machine's GEMM rate, the roofline a step's 4 n m d flops are measured against;
- peers (the reference of every "/best" ratio is the fastest of them):
  numpy: a hand-written NumPy step (forward, residual, backward by hand);
  jax: the same step in jax.numpy, scanned K times in one jit + lax.scan (no mfnn code),
  with w stored (m, d) as in numpy, and again with w stored (d, m) (XLA's fast GEMM
  orientation on CPU; the layout mfnn's loop uses);
  jax_grad: jax.grad of the loss (w stored (d, m)) in the same jit + lax.scan;
  torch, torch_compile: torch autograd of the loss and the same with the loss under
  torch.compile (skipped with a note when torch is not installed);
- mfnn unblocked: mfnn's step with tiling off (``EmpiricalRisk(tile=n)``), to show what
  the tiled pass (`mfnn.models.base.tiled_pullback`) gains;
- mfnn: ``mfnn.simulate`` with ``Recorder(every=steps)`` (records at step 0 and at the
  end only) and with the default ``Recorder(every=10)``; the first call compiles, later
  calls (same shapes, steps and every: the same compiled chunk) are timed;
- to locate mfnn's cost: mfnn's own Euler step in a hand-written lax.scan, and one
  jitted `Recorder` call.

Methods are timed round-robin, best of the rounds. It prints steps/s, each as a fraction
of the GEMM-bound rate, mfnn / best peer, and GF/s (4 n m d flops a step) as a fraction of
the square GEMM rate; it also times ``import jax`` +
``import mfnn``, the first compile of a small run (in fresh subprocesses) and
``mfnn run sign --quick``.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_step.py                 # all sizes, 10-12 min on 2 cores
    .venv/bin/python benchmarks/bench_step.py --sizes small   # first size only, ~1.5 min
    .venv/bin/python benchmarks/bench_step.py --steps 50 --out bench.json

See benchmarks/README.md for how to read the table.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import mfnn  # noqa: E402
from mfnn import DataSet, EmpiricalRisk, Euler, FullBatch, GradientFlow, Recorder, TwoLayer  # noqa: E402

try:  # optional peers: torch autograd and torch.compile
    import torch  # noqa: E402
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

DT = 1e-3
DTYPES = ("float32", "float64")

# (n, m, d) and defaults: "steps" for the jax loops, mfnn's step in a scan and mfnn with
# every=steps; "steps10" for mfnn with every=10; "numpy" steps (also the torch peers');
# "rounds": every method is timed once per round, round-robin, and the best round is kept.
SIZES = [
    dict(n=1024, m=1024, d=16, steps=300, steps10=300, numpy=20, rounds=3),
    dict(n=4096, m=4096, d=32, steps=40, steps10=40, numpy=3, rounds=2),
    dict(n=16384, m=8192, d=64, steps=10, steps10=10, numpy=1, rounds=2),
]


# --------------------------------------------------------------------------- problem
def make_problem(n: int, m: int, d: int, dtype: str, seed: int = 0):
    """x (n, d), y (n,), particles theta (m, 1 + d + 1) = (a, w, b) rows, as numpy."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(dtype)
    y = np.sign(x[:, 0]).astype(dtype)
    a = rng.standard_normal(m)
    w = rng.standard_normal((m, d)) / np.sqrt(d)
    b = 0.1 * rng.standard_normal(m)
    theta = np.concatenate([a[:, None], w, b[:, None]], axis=1).astype(dtype)
    return x, y, theta


def split(theta):
    return theta[:, 0], theta[:, 1:-1], theta[:, -1]


# ------------------------------------------------------------------------------ GEMM
def gemm_timers(n: int, m: int, d: int, dtype: str) -> dict:
    """The two GEMMs of a step, jitted and compiled, each in both orientations (XLA's speed
    depends on it): forward (n, d) x (d, m) or (m, d) x (d, n), backward (m, n) x (n, d) or
    (d, n) x (n, m). Returns name -> zero-argument callable that runs and blocks."""
    kx, kw, kz = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(kx, (n, d), dtype)
    w = jax.random.normal(kw, (m, d), dtype)
    dz = jax.random.normal(kz, (n, m), dtype)
    gemms = {
        "gemm_fwd_xwT": (lambda x, w: x @ w.T, (x, w)),
        "gemm_fwd_wxT": (lambda x, w: w @ x.T, (x, w)),
        "gemm_bwd_dzTx": (lambda dz, x: dz.T @ x, (dz, x)),
        "gemm_bwd_xTdz": (lambda dz, x: x.T @ dz, (dz, x)),
    }
    timers = {}
    for name, (fn, args) in gemms.items():
        compiled = jax.jit(fn).lower(*args).compile()
        compiled(*args).block_until_ready()  # first touch of the output buffers
        timers[name] = lambda c=compiled, a=args: c(*a).block_until_ready()
    return timers


SQUARE = 2048


def square_gemm_timers(dtype: str, size: int = SQUARE) -> dict:
    """The machine's GEMM rate: a jitted (size, size) x (size, size) matmul and NumPy's
    (its own BLAS). Returns name -> zero-argument callable that runs and blocks."""
    ka, kb = jax.random.split(jax.random.key(3))
    a = jax.random.normal(ka, (size, size), dtype)
    b = jax.random.normal(kb, (size, size), dtype)
    compiled = jax.jit(lambda a, b: a @ b).lower(a, b).compile()
    compiled(a, b).block_until_ready()
    an, bn = np.asarray(a), np.asarray(b)
    out = np.empty_like(an)
    return {
        "square_xla": lambda: compiled(a, b).block_until_ready(),
        "square_numpy": lambda: np.matmul(an, bn, out=out),
    }


# ----------------------------------------------------------------------------- numpy
def numpy_step(a, w, b, x, y, dt):
    """One Euler step of the mean-field gradient flow, by hand, in place."""
    n, m = x.shape[0], a.shape[0]
    z = x @ w.T
    z += b
    active = z > 0
    h = np.maximum(z, 0, out=z)
    g = (h @ a / m - y) / n  # residual / n
    va = -(g @ h)
    del h, z
    dz = g[:, None] * a
    dz *= active
    del active
    vw = -(dz.T @ x)
    vb = -dz.sum(axis=0)
    a += dt * va
    w += dt * vw
    b += dt * vb


def numpy_timer(x, y, theta, steps: int):
    a, w, b = (np.ascontiguousarray(v) for v in split(theta.copy()))
    dt = x.dtype.type(DT)

    def run():
        for _ in range(steps):
            numpy_step(a, w, b, x, y, dt)

    return run


# ------------------------------------------------------------------------- plain jax
def jax_step(params, x, y):
    """The same step as `numpy_step`, in jax.numpy."""
    a, w, b = params
    n, m = x.shape[0], a.shape[0]
    z = x @ w.T + b
    h = jnp.maximum(z, 0)
    g = (h @ a / m - y) / n
    va = -(g @ h)
    dz = g[:, None] * a * (z > 0)
    vw = -(dz.T @ x)
    vb = -dz.sum(axis=0)
    return (a + DT * va, w + DT * vw, b + DT * vb)


def jax_step_t(params, x, y):
    """The same step with the weights stored transposed, w^T (d, m): x @ w^T and x^T @ dz
    run in XLA's fast orientation (the layout mfnn's loop uses)."""
    a, w_t, b = params
    n, m = x.shape[0], a.shape[0]
    z = x @ w_t + b
    h = jnp.maximum(z, 0)
    g = (h @ a / m - y) / n
    va = -(g @ h)
    dz = g[:, None] * a * (z > 0)
    vw_t = -(x.T @ dz)
    vb = -dz.sum(axis=0)
    return (a + DT * va, w_t + DT * vw_t, b + DT * vb)


def jax_grad_step(params, x, y):
    """The same step by jax.grad of the loss (w stored (d, m)): v = -m grad."""
    m = params[0].shape[0]

    def loss(p):
        a, w_t, b = p
        f = jnp.maximum(x @ w_t + b, 0) @ a / m
        return 0.5 * jnp.mean((f - y) ** 2)

    grads = jax.grad(loss)(params)
    return tuple(p - DT * m * g for p, g in zip(params, grads, strict=True))


def jax_loop(steps: int, step=jax_step):
    @jax.jit
    def run(params, x, y):
        def body(p, _):
            return step(p, x, y), None

        params, _ = jax.lax.scan(body, params, None, length=steps)
        return params

    return run


def jax_timer(x, y, theta, steps: int, transposed: bool = False, step=None):
    """The hand-written loop, compiled ahead of time (compilation is not timed); with
    ``transposed`` the weights are stored (d, m) (`jax_step_t`, or ``step``)."""
    a, w, b = split(theta)
    params = tuple(jnp.asarray(np.ascontiguousarray(v)) for v in (a, w.T if transposed else w, b))
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    step = step or (jax_step_t if transposed else jax_step)
    run = jax_loop(steps, step).lower(params, xj, yj).compile()
    return lambda: jax.block_until_ready(run(params, xj, yj))


# ----------------------------------------------------------------------------- torch
def torch_stepper(x, y, theta, compiled: bool = False):
    """A torch step: autograd of the loss (under torch.compile with ``compiled``), then
    theta -= dt m grad in place (v = -m grad in mean_field). Returns (step, params)."""
    a, w, b = (torch.tensor(np.ascontiguousarray(v)).requires_grad_() for v in split(theta))
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
    m = a.shape[0]

    def loss_fn(a, w, b, x, y):
        f = torch.relu(x @ w.T + b) @ a / m
        return 0.5 * torch.mean((f - y) ** 2)

    fn = torch.compile(loss_fn) if compiled else loss_fn

    def step():
        grads = torch.autograd.grad(fn(a, w, b, xt, yt), (a, w, b))
        with torch.no_grad():
            for p, g in zip((a, w, b), grads, strict=True):
                p.sub_(DT * m * g)

    return step, (a, w, b)


def torch_timer(x, y, theta, steps: int, compiled: bool = False):
    """``steps`` torch steps; the first step (torch.compile's compilation) is made here."""
    step, _ = torch_stepper(x, y, theta.copy(), compiled)
    step()

    def run():
        for _ in range(steps):
            step()

    return run


# ------------------------------------------------------------------------------ mfnn
def make_flow(x, y, d: int, tile: int | None = None):
    """mfnn's flow; ``tile`` rows per tile of the full-batch pass (None: mfnn's choice,
    n: no tiling)."""
    data = DataSet(jnp.asarray(x), jnp.asarray(y))
    net = TwoLayer(d=d, activation="relu", scaling="mean_field", bias=True)
    return GradientFlow(net, EmpiricalRisk(data, tile=tile), FullBatch(data))


def mfnn_timer(flow, theta, steps: int, every: int):
    """``mfnn.simulate`` with ``Recorder(every)``; the first call (compilation) is made here
    and is not timed, the returned callable repeats the same call (same compiled chunk)."""
    theta = jnp.asarray(theta)
    key = jax.random.key(2)

    def call():
        return mfnn.simulate(
            flow, Euler(), theta, dt=DT, steps=steps, key=key, recorder=Recorder(every=every)
        )

    t0 = time.perf_counter()
    traj = call()  # simulate returns numpy arrays: it has synchronized when it returns
    info = {
        "first_call_s": time.perf_counter() - t0,
        "records": len(traj.steps),  # the step-0 record included
        "status": traj.status,
        "final_loss": float(traj["loss"][-1]),
    }
    if traj.status != "completed":
        raise RuntimeError(f"mfnn run did not complete: {traj.message}")
    return call, info


def mfnn_step_timer(flow, theta, steps: int):
    """mfnn's own Euler step, as `simulate` takes it (`Euler().step(flow, ...)` on the
    particles in the model's block layout), in a hand-written lax.scan: the cost of mfnn's
    velocity alone, without simulate's finiteness check and records."""
    state = flow.model.to_blocks(jnp.asarray(theta))
    key, dt = jax.random.key(2), jnp.asarray(DT, theta.dtype)

    def run(s):
        def body(t, k):
            return Euler().step(flow, t, k, dt, key)[0], None

        return jax.lax.scan(body, s, jnp.arange(steps))[0]

    compiled = eqx.filter_jit(run).lower(state).compile()
    return lambda: jax.block_until_ready(compiled(state))


def record_timer(flow, theta):
    """One jitted `Recorder` call: what each recorded step adds to a run."""
    theta = jnp.asarray(theta)
    key, dt = jax.random.key(2), jnp.asarray(DT, theta.dtype)
    rec = eqx.filter_jit(
        lambda th: Recorder(every=10)(flow, Euler(), th, theta, jnp.asarray(0), dt, key)
    )
    jax.block_until_ready(rec(theta))
    return lambda: jax.block_until_ready(rec(theta))


def check_agreement(dtype: str = "float64", steps: int = 5) -> dict:
    """numpy, plain jax and mfnn take the same steps: max |difference| / max |movement|."""
    n, m, d = 256, 128, 4
    x, y, theta = make_problem(n, m, d, dtype, seed=3)
    a, w, b = (np.ascontiguousarray(v) for v in split(theta.copy()))
    for _ in range(steps):
        numpy_step(a, w, b, x, y, x.dtype.type(DT))
    ref = np.concatenate([a[:, None], w, b[:, None]], axis=1)
    pj = jax_loop(steps)(tuple(jnp.asarray(v) for v in split(theta)), x, y)
    pj = np.concatenate([np.asarray(pj[0])[:, None], pj[1], np.asarray(pj[2])[:, None]], 1)
    a0, w0, b0 = split(theta)
    pt = jax_loop(steps, jax_step_t)(tuple(jnp.asarray(v) for v in (a0, w0.T, b0)), x, y)
    pt = np.concatenate([np.asarray(pt[0])[:, None], pt[1].T, np.asarray(pt[2])[:, None]], 1)
    pg = jax_loop(steps, jax_grad_step)(tuple(jnp.asarray(v) for v in (a0, w0.T, b0)), x, y)
    pg = np.concatenate([np.asarray(pg[0])[:, None], pg[1].T, np.asarray(pg[2])[:, None]], 1)
    traj = mfnn.simulate(
        make_flow(x, y, d), Euler(), jnp.asarray(theta), dt=DT, steps=steps, key=jax.random.key(0)
    )
    tiled = mfnn.simulate(
        make_flow(x, y, d, tile=48),
        Euler(),
        jnp.asarray(theta),
        dt=DT,
        steps=steps,
        key=jax.random.key(0),
    )
    scale = np.abs(ref - theta).max()  # compare the movement, not theta itself
    out = {
        "dtype": dtype,
        "steps": steps,
        "jax_vs_numpy": float(np.abs(pj - ref).max() / scale),
        "jax_t_vs_numpy": float(np.abs(pt - ref).max() / scale),
        "jax_grad_vs_numpy": float(np.abs(pg - ref).max() / scale),
        "mfnn_vs_numpy": float(np.abs(traj.final - ref).max() / scale),
        "mfnn_tiled_vs_numpy": float(np.abs(tiled.final - ref).max() / scale),
    }
    if torch is not None:
        step, params = torch_stepper(x, y, theta.copy())
        for _ in range(steps):
            step()
        pa, pw, pb = (p.detach().numpy() for p in params)
        tt = np.concatenate([pa[:, None], pw, pb[:, None]], axis=1)
        out["torch_vs_numpy"] = float(np.abs(tt - ref).max() / scale)
    return out


# ----------------------------------------------------------------------- start-up cost
IMPORT_SNIPPET = """
import json, time
t0 = time.perf_counter()
import jax
t1 = time.perf_counter()
import mfnn
t2 = time.perf_counter()
print(json.dumps({"import_jax_s": t1 - t0, "import_mfnn_s": t2 - t1}))
"""

COMPILE_SNIPPET = """
import json, time
t0 = time.perf_counter()
import jax, jax.numpy as jnp
import mfnn
from mfnn import DataSet, EmpiricalRisk, Euler, FullBatch, GradientFlow, TwoLayer
t1 = time.perf_counter()
x = jax.random.normal(jax.random.key(0), (256, 4))
data = DataSet(x, jnp.sign(x[:, 0]))
flow = GradientFlow(TwoLayer(d=4), EmpiricalRisk(data), FullBatch(data))
theta = jax.random.normal(jax.random.key(1), (256, 6))
def go():
    t = time.perf_counter()
    mfnn.simulate(flow, Euler(), theta, dt=1e-3, steps=100, key=jax.random.key(2))
    return time.perf_counter() - t
first, second = go(), go()
print(json.dumps({"import_s": t1 - t0, "first_run_s": first, "second_run_s": second,
                  "compile_s": first - second}))
"""


def run_snippet(snippet: str, tries: int = 2) -> dict:
    """Run ``snippet`` in a fresh interpreter ``tries`` times; keep the fastest (by wall)."""
    best: dict | None = None
    for _ in range(tries):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", snippet], capture_output=True, text=True, timeout=600
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1:]}
        out = json.loads(proc.stdout.strip().splitlines()[-1]) | {"process_wall_s": wall}
        if best is None or wall < best["process_wall_s"]:
            best = out
    return best or {}


def bench_cli() -> dict:
    """Wall time of ``mfnn run sign --quick`` into a temporary directory."""
    exe = Path(sys.executable).parent / "mfnn"
    cmd = str(exe) if exe.exists() else shutil.which("mfnn")
    if cmd is None:
        return {"skipped": "no `mfnn` command found"}
    with tempfile.TemporaryDirectory() as tmp:
        argv = [cmd, "run", "sign", "--quick", "--no-progress", "--out", f"{tmp}/run"]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as err:
            return {"skipped": f"{type(err).__name__}: {err}"}
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"skipped": f"exit code {proc.returncode}", "tail": tail, "wall_s": wall}
    return {"wall_s": wall, "command": " ".join(argv[:4])}


# ----------------------------------------------------------------------------- driver
PEERS = ("numpy", "jax", "jax_t", "jax_grad", "torch", "torch_compile")


def bench_size(cfg: dict, dtype: str, steps: int | None, log, use_torch: bool = True) -> dict:
    """Prepare (and compile) every method, then time them round-robin, best of the rounds."""
    n, m, d = cfg["n"], cfg["m"], cfg["d"]
    s_big = steps or cfg["steps"]
    s_10 = max(10, 10 * -(-steps // 10)) if steps else cfg["steps10"]
    s_np = min(steps, cfg["numpy"]) if steps else cfg["numpy"]
    tag = f"[{n}x{m}x{d} {dtype}]"
    x, y, theta = make_problem(n, m, d, dtype)
    flow = make_flow(x, y, d)

    log(f"{tag} compiling: GEMMs, peers, mfnn step, mfnn every={s_big} and every=10 runs")
    timers = gemm_timers(n, m, d, dtype) | square_gemm_timers(dtype)
    timers["numpy"] = numpy_timer(x, y, theta, s_np)
    timers["jax"] = jax_timer(x, y, theta, s_big)
    timers["jax_t"] = jax_timer(x, y, theta, s_big, transposed=True)
    timers["jax_grad"] = jax_timer(x, y, theta, s_big, transposed=True, step=jax_grad_step)
    steps_of = {"numpy": s_np, "jax": s_big, "jax_t": s_big, "jax_grad": s_big}
    if use_torch and torch is not None:
        timers["torch"] = torch_timer(x, y, theta, s_np)
        log(f"{tag} torch.compile (first call compiles)")
        timers["torch_compile"] = torch_timer(x, y, theta, s_np, compiled=True)
        steps_of |= {"torch": s_np, "torch_compile": s_np}
    timers["mfnn_step"] = mfnn_step_timer(flow, theta, s_big)
    timers["mfnn_step_unblocked"] = mfnn_step_timer(make_flow(x, y, d, tile=n), theta, s_big)
    timers["mfnn_big"], info_big = mfnn_timer(flow, theta, s_big, s_big)
    timers["mfnn_10"], info_10 = mfnn_timer(flow, theta, s_10, 10)
    timers["record"] = record_timer(flow, theta)
    steps_of |= {"mfnn_step": s_big, "mfnn_step_unblocked": s_big, "mfnn_big": s_big}
    steps_of["mfnn_10"] = s_10

    best = dict.fromkeys(timers, float("inf"))
    for r in range(cfg["rounds"]):
        log(f"{tag} timing round {r + 1}/{cfg['rounds']}")
        for name, fn in timers.items():  # round-robin: every method sees the same machine
            # the square GEMMs are short: three calls a round, so that one slow call does
            # not set the roofline
            for _ in range(3 if name.startswith("square") else 1):
                t0 = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)

    t_fwd = min(best["gemm_fwd_xwT"], best["gemm_fwd_wxT"])
    t_bwd = min(best["gemm_bwd_dzTx"], best["gemm_bwd_xTdz"])
    bound = 1.0 / (t_fwd + t_bwd)
    row: dict = {"n": n, "m": m, "d": d, "dtype": dtype, "rounds": cfg["rounds"]}
    row["flops_per_step"] = flops = 4.0 * n * m * d
    row["gemm"] = {k.removeprefix("gemm_") + "_s": v for k, v in best.items() if "gemm" in k}
    row["gemm"] |= {
        "t_fwd_s": t_fwd,
        "t_bwd_s": t_bwd,
        "fwd_gflops": flops / 2 / t_fwd / 1e9,
        "bwd_gflops": flops / 2 / t_bwd / 1e9,
        "gflops": flops / (t_fwd + t_bwd) / 1e9,
        "bound_steps_per_s": bound,
    }
    sq_flops = 2.0 * SQUARE**3
    square = {k: sq_flops / best[k] / 1e9 for k in ("square_xla", "square_numpy")}
    row["square_gemm"] = {"size": SQUARE} | {k + "_gflops": v for k, v in square.items()}
    row["square_gemm"]["gflops"] = sq = max(square.values())
    for name, k in steps_of.items():
        row[name] = {"steps": k, "time_s": best[name], "steps_per_s": k / best[name]}
        row[name]["frac_gemm"] = row[name]["steps_per_s"] / bound
        row[name]["gflops"] = row[name]["steps_per_s"] * flops / 1e9
        row[name]["frac_square"] = row[name]["gflops"] / sq
    row["mfnn_big"] |= {"every": s_big} | info_big
    row["mfnn_10"] |= {"every": 10} | info_10
    row["record_s"] = best["record"]
    row["record_over_step"] = best["record"] * row["mfnn_step"]["steps_per_s"]
    # simulate every=steps with its records (step 0 and the last step) taken out
    big = row["mfnn_big"]
    loop_s = big["time_s"] - big["records"] * row["record_s"]
    big["loop_steps_per_s"] = big["steps"] / loop_s if loop_s > 0 else float("nan")
    big["loop_frac_gemm"] = big["loop_steps_per_s"] / bound
    peers = {k: row[k]["steps_per_s"] for k in PEERS if k in row}
    row["best_peer"] = max(peers, key=peers.get)
    row["best_plain_steps_per_s"] = plain = peers[row["best_peer"]]
    row["mfnn_step_over_best"] = row["mfnn_step"]["steps_per_s"] / plain
    row["mfnn_step_over_unblocked"] = (
        row["mfnn_step"]["steps_per_s"] / row["mfnn_step_unblocked"]["steps_per_s"]
    )
    row["mfnn_loop_over_best"] = big["loop_steps_per_s"] / plain
    row["mfnn_big_over_best"] = big["steps_per_s"] / plain
    row["mfnn_10_over_best"] = row["mfnn_10"]["steps_per_s"] / plain
    return row


def rate(r: dict, key: str = "steps_per_s", frac: str = "frac_gemm") -> str:
    return f"{r[key]:.4g} ({r[frac]:.2f})"


def print_table(console: Console, rows: list[dict]) -> None:
    table = Table(
        title="GD steps/s (in brackets: fraction of the GEMM-bound step rate)",
        title_justify="left",
    )
    columns = (
        "n x m x d",
        "dtype",
        "GEMM GF/s",
        "bound st/s",
        "numpy",
        "jax scan",
        "jax scan (d,m)",
        "mfnn every=S",
        "mfnn every=10",
        "mfnn/best",
        "mfnn10/best",
    )
    for name in columns:
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(
            f"{r['n']}x{r['m']}x{r['d']}",
            r["dtype"],
            f"{r['gemm']['gflops']:.1f}",
            f"{r['gemm']['bound_steps_per_s']:.4g}",
            rate(r["numpy"]),
            rate(r["jax"]),
            rate(r["jax_t"]),
            rate(r["mfnn_big"]),
            rate(r["mfnn_10"]),
            f"{r['mfnn_big_over_best']:.2f}",
            f"{r['mfnn_10_over_best']:.2f}",
        )
    console.print(table)
    detail = Table(
        title="Where mfnn's time goes (steps/s; ratio to the best plain loop)",
        title_justify="left",
    )
    columns = (
        "n x m x d",
        "dtype",
        "steps np/jax/S/10",
        "mfnn step in scan",
        "simulate w/o records",
        "record ms",
        "records S/10",
    )
    for name in columns:
        detail.add_column(name, justify="right")
    for r in rows:
        big, ten = r["mfnn_big"], r["mfnn_10"]
        detail.add_row(
            f"{r['n']}x{r['m']}x{r['d']}",
            r["dtype"],
            f"{r['numpy']['steps']}/{r['jax']['steps']}/{big['steps']}/{ten['steps']}",
            f"{r['mfnn_step']['steps_per_s']:.4g} ({r['mfnn_step_over_best']:.2f})",
            f"{big['loop_steps_per_s']:.4g} ({r['mfnn_loop_over_best']:.2f})",
            f"{1e3 * r['record_s']:.3g}",
            f"{big['records']}/{ten['records']}",
        )
    console.print(detail)
    roof = Table(
        title="Roofline: GF/s at 4 n m d flops a step (in brackets: fraction of the square "
        "GEMM rate); mfnn's step in a scan against each peer",
        title_justify="left",
    )
    columns = ("n x m x d", "dtype", "square GEMM", "mfnn step", "mfnn unblocked")
    columns += tuple(k for k in PEERS if any(k in r for r in rows)) + ("best peer", "mfnn/best")
    for name in columns:
        roof.add_column(name, justify="right")
    for r in rows:
        cells = [f"{r['n']}x{r['m']}x{r['d']}", r["dtype"], f"{r['square_gemm']['gflops']:.1f}"]
        for k in ("mfnn_step", "mfnn_step_unblocked") + PEERS:
            if k in columns or k.startswith("mfnn"):
                cells.append(rate(r[k], "gflops", "frac_square") if k in r else "-")
        cells += [r["best_peer"], f"{r['mfnn_step_over_best']:.2f}"]
        roof.add_row(*cells)
    console.print(roof)


def _loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (Linux), to judge how shared the machine was."""
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", choices=("small", "all"), default="all")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="steps of the jax loop and of mfnn at every size (default: per size); "
        "mfnn every=10 runs this rounded up to a multiple of 10, numpy at most its default",
    )
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated")
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up timings")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch peers")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    dtypes = [t.strip() for t in args.dtypes.split(",") if t.strip()]
    if not set(dtypes) <= set(DTYPES):
        parser.error(f"--dtypes must be among {DTYPES}")

    console = Console()
    if not console.is_terminal:  # piped: do not squeeze the tables into 80 columns
        console = Console(width=160)

    def log(msg: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')} {msg}[/dim]")

    sizes = SIZES[:1] if args.sizes == "small" else SIZES
    t_start = time.perf_counter()
    result: dict = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "jax_backend": jax.default_backend(),
            "devices": [str(dev) for dev in jax.devices()],
            "numpy": np.__version__,
            "torch": None if torch is None else torch.__version__,
            "torch_threads": None if torch is None else torch.get_num_threads(),
            "mfnn": mfnn.__version__,
            "loadavg_start": _loadavg(),
        },
        "dt": DT,
        "agreement": [check_agreement("float64"), check_agreement("float32")],
        "rows": [],
    }
    if torch is None and not args.no_torch:
        log("torch is not installed: the torch autograd and torch.compile peers are skipped")
    for agree in result["agreement"]:
        others = ", ".join(
            f"{k.removesuffix('_vs_numpy')} {v:.1e}" for k, v in agree.items() if "_vs_" in k
        )
        log(
            f"agreement after {agree['steps']} steps ({agree['dtype']}) with numpy: {others} "
            "(max abs difference / max movement)"
        )
    for cfg in sizes:
        for dtype in dtypes:
            result["rows"].append(bench_size(cfg, dtype, args.steps, log, not args.no_torch))
    if not args.no_startup:
        log("start-up: import, first compile, mfnn run sign --quick (subprocesses)")
        result["startup"] = {
            "import": run_snippet(IMPORT_SNIPPET),
            "first_compile": run_snippet(COMPILE_SNIPPET),
            "cli_sign_quick": bench_cli(),
        }
    result["total_s"] = time.perf_counter() - t_start
    result["machine"]["loadavg_end"] = _loadavg()

    print_table(console, result["rows"])
    if "startup" in result:
        st = result["startup"]
        imp, comp, cli = st["import"], st["first_compile"], st["cli_sign_quick"]
        if "error" not in imp:
            console.print(
                f"import jax {imp['import_jax_s']:.2f} s + import mfnn {imp['import_mfnn_s']:.2f} s"
                f" (python -c process: {imp['process_wall_s']:.2f} s)"
            )
        else:
            console.print(f"import timing failed: {imp['error']}")
        if "error" not in comp:
            console.print(
                f"small run (n=m=256, d=4, 100 steps, float32): first call "
                f"{comp['first_run_s']:.2f} s, second {comp['second_run_s']:.3f} s -> compile "
                f"~{comp['compile_s']:.2f} s; process {comp['process_wall_s']:.2f} s"
            )
        else:
            console.print(f"first-compile timing failed: {comp['error']}")
        if "wall_s" in cli and "skipped" not in cli:
            console.print(f"mfnn run sign --quick: {cli['wall_s']:.1f} s wall")
        else:
            console.print(f"mfnn run sign --quick: skipped ({cli.get('skipped')})")
    console.print(f"total benchmark time {result['total_s']:.0f} s")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
