"""Gradient-descent steps/s of mfnn's deep models against a plain jax.grad + lax.scan loop.

Problems (tanh, mean-field, full-batch gradient flow stepped with Euler, dt = 1e-3, square
loss on n = 256 inputs x ~ N(0, I_d) and targets y = a random vanilla ResNet's output):

- wide-ResNet, L = 16 blocks of N = 1024 units, d = 8:
  X^{l+1} = X^l + (1/(L N)) sum_j tanh(theta_j^l X^l), velocity -L N dE/dtheta;
- ensemble-ResNet, N = 1024 ResNets of depth L = 8, d = 4:
  f = (1/N) sum_j X^L_{theta_j}, velocity -N dE/dtheta_j.

For each problem and dtype, timed round-robin in one process (best of the rounds, the
compilation not timed):

- plain: the loop a user writes the obvious way: parameters as an (L, N, d, d) array, the
  layers in `lax.scan` with `jnp.einsum`, `jax.grad` of the loss, K Euler steps in one
  `jit` + `lax.scan`;
- mfnn: `mfnn.simulate` with `Recorder(every=steps)` (records at step 0 and at the end),
  and with the default `Recorder(every=10)`.

It checks that both take the same steps (max |difference| / max |movement| after 5
steps) and prints steps/s and mfnn / plain. Usage (from the repository root):

    .venv/bin/python benchmarks/bench_deep.py                   # both problems, 2 dtypes
    .venv/bin/python benchmarks/bench_deep.py --steps 20 --out benchmarks/results/x.json

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
from mfnn import DataSet, EmpiricalRisk, Euler, FullBatch, GradientFlow, Recorder  # noqa: E402
from mfnn.models import EnsembleResNet, WideResNet  # noqa: E402

DT = 1e-3
N_DATA = 256
PROBLEMS = {
    "wide_resnet": {"L": 16, "N": 1024, "d": 8},
    "ensemble_resnet": {"L": 8, "N": 1024, "d": 4},
}


def make_problem(kind: str, dtype: str, seed: int = 0):
    """(model, rows theta, x, y): a teacher ResNet's outputs as targets."""
    p = PROBLEMS[kind]
    L, N, d = p["L"], p["N"], p["d"]
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_DATA, d))
    teacher = rng.normal(size=(L, d, d))
    y = x.copy()
    for layer in teacher:
        y = y + np.tanh(y @ layer.T) / L
    if kind == "wide_resnet":
        model = WideResNet(d=d, depth=L, activation="tanh")
        theta = 0.5 * rng.normal(size=(L * N, d * d))
    else:
        model = EnsembleResNet(d=d, depth=L, activation="tanh")
        theta = 0.5 * rng.normal(size=(N, L * d * d))
    cast = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    return model, cast(theta), cast(x), cast(y)


# ------------------------------------------------------------------------ plain loop
def plain_params(kind: str, theta):
    """The rows as the (L, N, d, d) array a user would hold."""
    p = PROBLEMS[kind]
    L, N, d = p["L"], p["N"], p["d"]
    if kind == "wide_resnet":
        return theta.reshape(L, N, d, d)
    return jnp.swapaxes(theta.reshape(N, L, d, d), 0, 1)


def plain_loss(kind: str, params, x, y):
    L = params.shape[0]
    if kind == "wide_resnet":

        def layer(z, p):  # z (n, d), p (N, d, d)
            return z + jnp.mean(jnp.tanh(jnp.einsum("jab,nb->nja", p, z)), axis=1) / L, None

        out = jax.lax.scan(layer, x, params)[0]
    else:

        def layer(z, p):  # z (N, n, d), p (N, d, d): every ResNet on every input
            return z + jnp.tanh(jnp.einsum("jab,jnb->jna", p, z)) / L, None

        z0 = jnp.broadcast_to(x, (params.shape[1], *x.shape))
        out = jnp.mean(jax.lax.scan(layer, z0, params)[0], axis=0)
    return 0.5 * jnp.mean(jnp.sum((out - y) ** 2, axis=1))


def plain_loop(kind: str, steps: int):
    def run(params, x, y):
        scale = params.shape[1] * (params.shape[0] if kind == "wide_resnet" else 1)

        def body(p, _):
            return p - DT * scale * jax.grad(lambda q: plain_loss(kind, q, x, y))(p), None

        return jax.lax.scan(body, params, None, length=steps)[0]

    return jax.jit(run)


def plain_timer(kind, theta, x, y, steps):
    params = plain_params(kind, theta)
    run = plain_loop(kind, steps).lower(params, x, y).compile()
    return lambda: jax.block_until_ready(run(params, x, y))


# ------------------------------------------------------------------------------ mfnn
def mfnn_timer(model, theta, x, y, steps: int, every: int):
    data = DataSet(x, y)
    flow = GradientFlow(model, EmpiricalRisk(data), FullBatch(data))
    key = jax.random.key(2)

    def call():
        return mfnn.simulate(
            flow, Euler(), theta, dt=DT, steps=steps, key=key, recorder=Recorder(every=every)
        )

    traj = call()  # compiles
    if traj.status != "completed":
        raise RuntimeError(f"mfnn run did not complete: {traj.message}")
    return call


def agreement(kind: str, dtype: str = "float64", steps: int = 5) -> float:
    """max |theta_mfnn - theta_plain| / max |theta_plain - theta_0| after ``steps`` steps."""
    model, theta, x, y = make_problem(kind, dtype)
    data = DataSet(x, y)
    flow = GradientFlow(model, EmpiricalRisk(data), FullBatch(data))
    traj = mfnn.simulate(flow, Euler(), theta, dt=DT, steps=steps, key=jax.random.key(2))
    ours = plain_params(kind, jnp.asarray(traj.final))
    plain = plain_loop(kind, steps)(plain_params(kind, theta), x, y)
    moved = jnp.max(jnp.abs(plain - plain_params(kind, theta)))
    return float(jnp.max(jnp.abs(ours - plain)) / moved)


def bench(kind: str, dtype: str, steps: int, rounds: int) -> dict:
    model, theta, x, y = make_problem(kind, dtype)
    timers = {
        "plain": plain_timer(kind, theta, x, y, steps),
        "mfnn": mfnn_timer(model, theta, x, y, steps, steps),
        "mfnn_every10": mfnn_timer(model, theta, x, y, steps, 10),
    }
    best = {k: float("inf") for k in timers}
    for _ in range(rounds):  # round-robin: the machine's drift hits every method alike
        for k, fn in timers.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    rates = {k: steps / v for k, v in best.items()}
    return {
        "problem": kind,
        **PROBLEMS[kind],
        "n": N_DATA,
        "dtype": dtype,
        "steps": steps,
        "steps_per_s": rates,
        "mfnn_over_plain": rates["mfnn"] / rates["plain"],
        "mfnn_every10_over_plain": rates["mfnn_every10"] / rates["plain"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON")
    args = parser.parse_args(argv)
    rows = []
    agree = {k: agreement(k) for k in args.problems.split(",")}
    print("agreement (max |mfnn - plain| / max |movement|, 5 steps, float64):", agree)
    for kind in args.problems.split(","):
        for dtype in args.dtypes.split(","):
            r = bench(kind, dtype, args.steps, args.rounds)
            rows.append(r)
            s = r["steps_per_s"]
            print(
                f"{kind:16s} {dtype}  plain {s['plain']:8.2f}  mfnn {s['mfnn']:8.2f} "
                f"({r['mfnn_over_plain']:.2f}x)  mfnn every=10 {s['mfnn_every10']:8.2f} "
                f"({r['mfnn_every10_over_plain']:.2f}x) steps/s"
            )
    if args.out is not None:
        info = {
            "machine": platform.platform(),
            "processor": platform.processor(),
            "devices": [str(d) for d in jax.devices()],
            "jax": jax.__version__,
            "agreement": agree,
            "rows": rows,
        }
        args.out.write_text(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
