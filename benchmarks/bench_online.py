"""Online SGD on a tiny teacher-student problem: mfnn against a hand-written jit + scan loop.

Problem (the soft committee machine of Saad and Solla 1995 in mfnn's convention): a
student of m = 2 erf units at input scale 1/sqrt 2 (g(z) = erf(z/sqrt 2)), no bias, output
weights fixed (a = 1), mean-field scaling (f = (1/m) sum_j g(w_j . x)), a teacher of the
same kind with 2 units, x ~ N(0, I_d) with d = 1000, one fresh sample per step (B = 1),
SGD step theta <- theta + dt v with v = -m grad R of the sample's square loss, dt = 0.5/d.
Each step costs O(m d) flops: the loop's overhead is the cost.

Timed in the same process, round-robin, best of the rounds, compilation not timed:

- plain: the loop a user writes: w (m, d), for each step k the key fold_in(key, k), x from
  it, y = teacher(x), jax.grad of the sample loss, w <- w - dt m grad; K steps in one
  jit + lax.scan;
- mfnn: `mfnn.simulate` of the built config with records only at step 0 and at the end
  (every = steps), and with records every 1000 steps (overlaps included). mfnn draws the
  batches of 64 consecutive steps in one vectorised call (`mfnn.loop.prefetch_steps`).

Reported: steps/s, microseconds per step of each, mfnn's per-step overhead (mfnn - plain;
negative when mfnn's step is cheaper) and the cost of one record.

A second part times a tiny full-batch Langevin run (`--langevin`, the noisy loop's
overhead): m = 16 or 256 particles of a two-layer tanh network with bias on n = 64 or 256
points in d = 2 (y = tanh(x_1)), l2 = 0.01, beta = 100, Euler-Maruyama with dt = 0.01,
float32 and float64, records at the ends only:

- plain: theta (m, D) <- theta - dt m grad E(theta) + sqrt(2 dt / beta) xi_k with
  xi_k = normal(fold_in(key, k)) (E = R + (l2/2) mean_j |theta_j|^2), K steps in one
  jit + lax.scan;
- mfnn: `mfnn.simulate` of `Langevin` with `EulerMaruyama`, which draws the noise of 64
  consecutive steps in one vectorised call (`mfnn.loop.prefetch_steps`), and of the same
  flow without noise (`Euler`): the difference is what mfnn's noise costs a step.

The two loops draw different (equally distributed) noise; with beta = 1e30 (no noise to
round-off) the script checks that they take the same steps (max |difference| after 100
steps).

Both draw the same x at each step (the same fold_in of the run's key) and take the same
steps: the script checks max |w_mfnn - w_plain| after 100 steps. Usage:

    .venv/bin/python benchmarks/bench_online.py                     # d = 1000, float32 and 64
    .venv/bin/python benchmarks/bench_online.py --steps 20000 --rounds 3 --out FILE.json
    .venv/bin/python benchmarks/bench_online.py --no-langevin      # online SGD only

See benchmarks/README.md for the numbers.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import mfnn  # noqa: E402
from mfnn import config, loop  # noqa: E402
from mfnn.build import build  # noqa: E402
from mfnn.recorder import Recorder  # noqa: E402

S = 1.0 / np.sqrt(2.0)


def make_config(d: int, dtype: str, steps: int, every: int, overlaps: bool):
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(2, d)) / np.sqrt(d)
    raw = {
        "dtype": dtype,
        "model": {"width": 2, "activation": "erf", "activation_scale": float(S), "bias": False,
                  "train_output": False, "init": {"w": {"law": "gaussian", "std": 1e-3}}},
        "data": {"population": {"inputs": "gaussian", "dim": d, "method": "monte_carlo",
                                "eval_samples": 64},
                 "teacher": {"w": teacher.tolist()}},
        "dynamics": {"kind": "sgd", "sampling": "online", "batch_size": 1, "dt": 0.5 / d,
                     "steps": steps},
        "record": {"every": every, "overlaps": overlaps},
    }  # fmt: skip
    return config.load(raw, [])


def plain_loop(teacher_w, dt: float, steps: int, sample):
    """K online-SGD steps in one jit + lax.scan; ``sample(key, step)`` -> x (1, d)."""
    m = 2

    def f(w, x):
        return jnp.mean(jax.scipy.special.erf(S * (x @ w.T)), axis=1)

    def loss(w, x, y):
        return 0.5 * jnp.mean((f(w, x) - y) ** 2)

    tw = teacher_w

    @jax.jit
    def run(w, key):
        def body(w, k):
            x = sample(key, k)
            y = jnp.mean(jax.scipy.special.erf(S * (x @ tw.T)), axis=1)
            return w - dt * m * jax.grad(loss)(w, x, y), None

        return jax.lax.scan(body, w, jnp.arange(steps))[0]

    return run


def best_time(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times)


def time_steps(fns: dict, steps: int, rounds: int, out: dict) -> dict:
    """Compile each of ``fns`` (runs of ``steps`` steps), then time them round-robin, best
    of ``rounds``; ``out`` gets each one's steps/s and us/step. Returns the best times (s)."""
    for fn in fns.values():  # compile
        jax.block_until_ready(fn())
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            best[k] = min(best[k], best_time(fn, 1))
    for k, t in best.items():
        out[f"{k}_steps_per_s"] = steps / t
        out[f"{k}_us_per_step"] = 1e6 * t / steps
    return best


def bench(d: int, dtype: str, steps: int, rounds: int) -> dict:
    out = {"d": d, "dtype": dtype, "steps": steps}
    b_end = build(make_config(d, dtype, steps, steps, False))
    b_rec = build(make_config(d, dtype, steps, 1000, True))
    sampler = b_end.dynamics.sampler
    dt = b_end.dt
    tw = jnp.asarray(b_end.objective.teacher.w, b_end.theta0.dtype)

    def sample(key, k):
        return sampler(key, k)[0]

    plain = plain_loop(tw, dt, steps, sample)
    w0 = b_end.model.split(b_end.theta0)[1]

    def run_mfnn(b):
        return lambda: mfnn.simulate(b.dynamics, b.integrator, b.theta0, dt=b.dt, steps=b.steps,
                                     key=b.key, recorder=b.recorder).state.theta  # fmt: skip

    # agreement after 100 steps
    short = plain_loop(tw, dt, 100, sample)
    w_plain = np.asarray(short(w0, b_end.key))
    b100 = build(make_config(d, dtype, 100, 100, False))
    theta = mfnn.simulate(b100.dynamics, b100.integrator, b100.theta0, dt=b100.dt, steps=100,
                          key=b100.key, recorder=Recorder(every=100)).state.theta  # fmt: skip
    out["agreement"] = float(np.max(np.abs(np.asarray(b100.model.split(theta)[1]) - w_plain)))
    fns = {"plain": lambda: plain(w0, b_end.key), "mfnn": run_mfnn(b_end),
           "mfnn_records": run_mfnn(b_rec)}  # fmt: skip
    best = time_steps(fns, steps, rounds, out)
    # per-step overhead of mfnn over the plain loop (negative: mfnn's step is cheaper), and
    # what one record adds (records every 1000 steps against records at the ends only)
    out["overhead_us_per_step"] = out["mfnn_us_per_step"] - out["plain_us_per_step"]
    out["records"] = steps // 1000
    out["us_per_record"] = 1e6 * (best["mfnn_records"] - best["mfnn"]) / (steps // 1000)
    out["prefetch_steps"] = loop.prefetch_steps(b_end.dynamics, b_end.key, b_end.theta0)
    out["mfnn_over_plain"] = out["mfnn_steps_per_s"] / out["plain_steps_per_s"]
    out["mfnn_records_over_plain"] = out["mfnn_records_steps_per_s"] / out["plain_steps_per_s"]
    return out


LANGEVIN_SIZES = ((16, 64), (256, 256))  # (m, n) of the Langevin part
L2, BETA, DT_LANGEVIN = 0.01, 100.0, 0.01


def langevin_problem(m: int, n: int, dtype: str, beta: float = BETA):
    """(flow, Langevin, theta0, x, y): the tiny full-batch Langevin run of the module doc."""
    x = jax.random.normal(jax.random.key(0), (n, 2), dtype)
    y = jnp.tanh(x[:, 0])
    data = mfnn.DataSet(x, y)
    model = mfnn.TwoLayer(d=2, activation="tanh", bias=True)
    flow = mfnn.GradientFlow(model, mfnn.EmpiricalRisk(data, l2=L2), mfnn.FullBatch(data))
    theta = jax.random.normal(jax.random.key(1), (m, model.dim), dtype)
    return flow, mfnn.Langevin(flow, mfnn.Temperature(beta)), theta, x, y


def plain_langevin(x, y, beta: float, dt: float, steps: int):
    """K Euler-Maruyama steps of the mean-field Langevin dynamics, theta rows [a, w, b]."""

    def energy(th):
        a, w, b = th[:, 0], th[:, 1:3], th[:, 3]
        f = jnp.mean(a * jnp.tanh(x @ w.T + b), axis=1)
        return 0.5 * jnp.mean((f - y) ** 2) + 0.5 * L2 * jnp.mean(jnp.sum(th**2, axis=1))

    @jax.jit
    def run(theta, key):
        m = theta.shape[0]
        sigma = jnp.sqrt(2.0 * dt / beta).astype(theta.dtype)

        def body(th, k):
            xi = jax.random.normal(jax.random.fold_in(key, k), th.shape, th.dtype)
            return th - (dt * m) * jax.grad(energy)(th) + sigma * xi, None

        return jax.lax.scan(body, theta, jnp.arange(steps))[0]

    return run


def bench_langevin(m: int, n: int, dtype: str, steps: int, rounds: int) -> dict:
    out = {"m": m, "n": n, "d": 2, "dtype": dtype, "steps": steps}
    flow, lang, theta, x, y = langevin_problem(m, n, dtype)
    key = jax.random.key(3)

    def run_mfnn(dyn, integ, k=steps):
        return lambda: mfnn.simulate(dyn, integ, theta, dt=DT_LANGEVIN, steps=k, key=key,
                                     recorder=Recorder(every=k)).state.theta  # fmt: skip

    # agreement: no noise (beta = 1e30), 100 steps
    _, cold, _, _, _ = langevin_problem(m, n, dtype, beta=1e30)
    a = np.asarray(run_mfnn(cold, mfnn.EulerMaruyama(), 100)())
    b = np.asarray(plain_langevin(x, y, 1e30, DT_LANGEVIN, 100)(theta, key))
    out["agreement"] = float(np.max(np.abs(a - b)))
    plain = plain_langevin(x, y, BETA, DT_LANGEVIN, steps)
    fns = {"plain": lambda: plain(theta, key), "mfnn": run_mfnn(lang, mfnn.EulerMaruyama()),
           "mfnn_flow": run_mfnn(flow, mfnn.Euler())}  # fmt: skip
    time_steps(fns, steps, rounds, out)
    out["mfnn_over_plain"] = out["mfnn_steps_per_s"] / out["plain_steps_per_s"]
    out["noise_us_per_step"] = out["mfnn_us_per_step"] - out["mfnn_flow_us_per_step"]
    out["prefetch_steps"] = loop.prefetch_steps(lang, key, theta)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--langevin-steps", type=int, default=20000)
    parser.add_argument("--no-langevin", action="store_true", help="skip the Langevin part")
    args = parser.parse_args()
    rows = []
    for dtype in args.dtypes.split(","):
        r = bench(args.d, dtype, args.steps, args.rounds)
        rows.append(r)
        print(f"d = {r['d']} {dtype}: plain {r['plain_steps_per_s']:,.0f} steps/s, mfnn "
              f"{r['mfnn_steps_per_s']:,.0f} ({r['mfnn_over_plain']:.2f}x), with records every "
              f"1000 {r['mfnn_records_steps_per_s']:,.0f} ({r['mfnn_records_over_plain']:.2f}x); "
              f"per step: plain {r['plain_us_per_step']:.1f} us, mfnn "
              f"{r['mfnn_us_per_step']:.1f} us (overhead {r['overhead_us_per_step']:+.1f} us), "
              f"a record {r['us_per_record']:.0f} us; batches of {r['prefetch_steps']} steps "
              f"drawn at once; max |w difference| after 100 steps {r['agreement']:.1e}",
              flush=True)  # fmt: skip
    langevin = []
    for dtype in [] if args.no_langevin else args.dtypes.split(","):
        for m, n in LANGEVIN_SIZES:
            r = bench_langevin(m, n, dtype, args.langevin_steps, args.rounds)
            langevin.append(r)
            print(f"Langevin m = {m}, n = {n} {dtype}: plain {r['plain_us_per_step']:.1f} us/step, "
                  f"mfnn {r['mfnn_us_per_step']:.1f} ({r['mfnn_over_plain']:.2f}x), mfnn without "
                  f"noise {r['mfnn_flow_us_per_step']:.1f} (noise {r['noise_us_per_step']:+.1f} "
                  f"us/step); noise of {r['prefetch_steps']} steps drawn at once; max |theta "
                  f"difference| without noise after 100 steps {r['agreement']:.1e}",
                  flush=True)  # fmt: skip
    if args.out is not None:
        meta = {"machine": platform.platform(), "processor": platform.processor(),
                "jax": jax.__version__, "mfnn": mfnn.__version__, "date": time.ctime(),
                "load": list(__import__("os").getloadavg())}  # fmt: skip
        doc = {"meta": meta, "rows": rows, "langevin": langevin}
        args.out.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
