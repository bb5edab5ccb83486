"""Kernel regression with the analytic NTK at n = 10^4 training points: mfnn.kernels against
the same formulas written the obvious way, in NumPy and in op-by-op jax.numpy.

Problem: x ~ N(0, I_d), d = 30, y = (x_1)^2 (a single-index target), relu units with bias,
a, b ~ N(0, 1), w ~ N(0, I/d): the NTK Theta(x, x') (arc-cosine kernels of orders 0 and 1,
Cho and Saul 2009) of n training points and l = 1000 test points, then the ridge
predictor Theta(x*, X) (K + n mu I)^{-1} y (mu = 1e-3). Timed, best of the rounds:

- mfnn: `mfnn.kernels.ntk` (one compiled program per shape: the elementwise formulas fuse)
  and `mfnn.kernels.kernel_ridge` (one LU solve);
- numpy: the same closed forms in NumPy, np.linalg.solve;
- jax, op by op: the same formulas in jax.numpy without jit, jnp.linalg.solve.

It checks that the three predictions agree (max relative difference) and prints the
seconds of each phase and the ratios. Usage:

    .venv/bin/python benchmarks/bench_kernels.py                 # n = 10^4 (about 2-4 min)
    .venv/bin/python benchmarks/bench_kernels.py --n 2000 --rounds 2
    .venv/bin/python benchmarks/bench_kernels.py --out benchmarks/results/bench_kernels_cpu2.json
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import mfnn  # noqa: E402
from mfnn.kernels import kernel_ridge, ntk  # noqa: E402

RIDGE = 1e-3


def ntk_formula(xp, x, x2, w_std, b_std, a_std):
    """The relu NTK with a, w, b trained, in the array module ``xp`` (numpy or jax.numpy)."""
    s11 = w_std**2 * xp.sum(x * x, -1)[:, None] + b_std**2
    s22 = w_std**2 * xp.sum(x2 * x2, -1)[None, :] + b_std**2
    s12 = w_std**2 * (x @ x2.T) + b_std**2
    norm = xp.sqrt(s11 * s22)
    c = xp.clip(s12 / norm, -1.0, 1.0)
    t = xp.arccos(c)
    value = norm * (xp.sqrt(1.0 - c * c) + (np.pi - t) * c) / (2 * np.pi)
    deriv = (np.pi - t) / (2 * np.pi)
    return value + a_std**2 * deriv * (x @ x2.T + 1.0)


def timed(fn, rounds):
    best, out = float("inf"), None
    for _ in range(rounds):
        t = time.perf_counter()
        out = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t)
    return best, out


def run(n: int, n_test: int, d: int, rounds: int) -> dict:
    rng = np.random.default_rng(0)
    x, xt = rng.normal(size=(n, d)), rng.normal(size=(n_test, d))
    y = x[:, 0] ** 2
    w_std, b_std, a_std = 1 / np.sqrt(d), 1.0, 1.0
    kw = dict(activation="relu", a_std=a_std, w_std=w_std, b_std=b_std)
    xj, xtj, yj = jnp.asarray(x), jnp.asarray(xt), jnp.asarray(y)
    out = {"n": n, "n_test": n_test, "d": d}

    def mfnn_gram():
        return ntk(xj, **kw), ntk(xtj, xj, **kw)

    def numpy_gram():
        return ntk_formula(np, x, x, w_std, b_std, a_std), ntk_formula(
            np, xt, x, w_std, b_std, a_std
        )

    def jax_gram():
        return (ntk_formula(jnp, xj, xj, w_std, b_std, a_std),
                ntk_formula(jnp, xtj, xj, w_std, b_std, a_std))  # fmt: skip

    mfnn_gram()  # compile
    preds = {}
    for name, gram, solve in (
        ("mfnn", mfnn_gram, lambda k, ks: kernel_ridge(k, yj, ks, RIDGE)),
        ("numpy", numpy_gram,
         lambda k, ks: ks @ np.linalg.solve(k + n * RIDGE * np.eye(n), y)),
        ("jax_op_by_op", jax_gram,
         lambda k, ks: ks @ jnp.linalg.solve(k + n * RIDGE * jnp.eye(n), yj)),
    ):  # fmt: skip
        t_gram, (k, ks) = timed(gram, rounds)
        solve(k, ks)  # compile / warm
        t_solve, pred = timed(lambda k=k, ks=ks, solve=solve: solve(k, ks), rounds)
        out[f"{name}_gram_s"], out[f"{name}_solve_s"] = t_gram, t_solve
        out[f"{name}_total_s"] = t_gram + t_solve
        preds[name] = np.asarray(pred)
        del k, ks
    ref = preds["numpy"]
    out["max_rel_difference"] = {
        k: float(np.max(np.abs(v - ref)) / np.max(np.abs(ref))) for k, v in preds.items()
    }
    out["test_error_over_R0"] = float(np.mean((ref - xt[:, 0] ** 2) ** 2) / np.mean(xt[:, 0] ** 4))
    for other in ("numpy", "jax_op_by_op"):
        out[f"speedup_vs_{other}"] = out[f"{other}_total_s"] / out["mfnn_total_s"]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--d", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    r = run(args.n, args.n_test, args.d, args.rounds)
    for name in ("mfnn", "numpy", "jax_op_by_op"):
        print(f"{name:13s} gram {r[f'{name}_gram_s']:7.2f} s  solve {r[f'{name}_solve_s']:7.2f} s"
              f"  total {r[f'{name}_total_s']:7.2f} s", flush=True)  # fmt: skip
    print(f"mfnn speed-up: {r['speedup_vs_numpy']:.2f}x vs numpy, "
          f"{r['speedup_vs_jax_op_by_op']:.2f}x vs op-by-op jax; agreement "
          f"{r['max_rel_difference']}; test error / R0 {r['test_error_over_R0']:.3f}")  # fmt: skip
    if args.out is not None:
        meta = {"machine": platform.platform(), "jax": jax.__version__, "mfnn": mfnn.__version__,
                "date": time.ctime(), "load": list(os.getloadavg())}  # fmt: skip
        args.out.write_text(json.dumps({"meta": meta, "result": r}, indent=1))


if __name__ == "__main__":
    main()
