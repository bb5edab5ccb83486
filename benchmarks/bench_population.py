"""Closed-form population step against Monte Carlo at equal accuracy of the risk.

Problem: a ReLU teacher with k = 4 unit neurons (alpha_i ~ i) in d = 32, x ~ N(0, I_d);
students f = (1/m) sum_j relu(w_j . x) (no bias, a == 1, w ~ N(0, I/d)) for
m in {256, 1024, 4096}. For each m and dtype the script measures, in the same run:

- closed form: one jitted full velocity of `PopulationRisk(method="closed_form")`
  (exact risk and velocity, O(m^2 d + m k d));
- Monte Carlo: the risk estimate (1/N) sum_i (1/2)(f(x_i) - f*(x_i))^2 has relative
  standard error s / (sqrt(N) R), s^2 the variance of (1/2)(f - f*)^2 (measured on 2^16
  fresh samples). The sample count that matches a relative accuracy eps is
  N(eps) = (s / (eps R))^2; the script times one jitted Monte Carlo velocity on N
  samples (the step of online SGD with batch N, O(N m d)) at N(eps) when it fits in
  memory (N m <= 2^27), else at the largest N that fits and scales the time linearly
  (marked "~").

It prints, for eps = 1e-2 and 1e-3: N(eps), the Monte Carlo step time and its ratio to
the closed-form step time. The closed form's own error is float rounding (~1e-15 in
float64), which no affordable N reaches.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_population.py            # ~1 min on 2 cores
    .venv/bin/python benchmarks/bench_population.py --out pop.json
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from mfnn import GaussianInputs, Teacher, TwoLayer  # noqa: E402
from mfnn.objectives import PopulationRisk  # noqa: E402
from mfnn.objectives.risk import weighted_velocity  # noqa: E402

D, K = 32, 4
WIDTHS = (256, 1024, 4096)
EPS = (1e-2, 1e-3)
MAX_NM = 2**27


def best_time(fn, rounds: int = 5) -> float:
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def bench(m: int, dtype) -> dict:
    rng = np.random.default_rng(0)
    c = rng.standard_normal((K, D))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    alpha = np.arange(1, K + 1) / np.arange(1, K + 1).sum()
    teacher = Teacher(c, alpha, activation="relu")
    net = TwoLayer(d=D, activation="relu", bias=False, train_output=False)
    theta = jnp.asarray(rng.standard_normal((m, D)) / np.sqrt(D), dtype)
    exact = PopulationRisk.make(teacher, GaussianInputs(D), "closed_form", model=net, dtype=dtype)
    step = jax.jit(lambda th: exact.velocity(net, th))
    t_exact = best_time(lambda: step(theta))
    risk = float(exact.risk(net, theta))
    # variance of (1/2)(f - f*)^2 from fresh samples
    x = jax.random.normal(jax.random.key(1), (2**16, D), dtype)
    sq = 0.5 * (net.predict(theta, x) - teacher(x)) ** 2
    s = float(jnp.std(sq))
    mc_mean = float(jnp.mean(sq))
    row = {
        "m": m,
        "dtype": str(jnp.dtype(dtype)),
        "closed_form_s": t_exact,
        "risk": risk,
        "mc_check": {"mean_2^16": mc_mean, "se": s / 2**8},
        "eps": {},
    }

    def mc_time(n: int) -> float:
        xs = jax.random.normal(jax.random.key(2), (n, D), dtype)
        ys = teacher(xs).astype(dtype)
        # the Monte Carlo step as simulate takes it: the fused velocity in block layout
        blocks_f = jax.jit(
            lambda th: weighted_velocity(
                net, net.to_blocks(th), net.from_blocks, xs, ys, None, 0.0, True
            )
        )
        return best_time(lambda: blocks_f(theta), rounds=3)

    for eps in EPS:
        need = int(np.ceil((s / (eps * risk)) ** 2))
        cap = max(1, MAX_NM // m)
        n = min(need, cap)
        t = mc_time(n) * (need / n)
        row["eps"][f"{eps:g}"] = {
            "samples": need,
            "timed_samples": n,
            "extrapolated": need > n,
            "mc_s": t,
            "mc_over_closed_form": t / t_exact,
        }
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = [bench(m, jnp.dtype(dt)) for dt in args.dtypes.split(",") for m in WIDTHS]
    head = f"{'m':>6} {'dtype':>8} {'closed ms':>10} {'risk':>9}"
    for eps in EPS:
        head += f" | eps={eps:g}: {'N':>9} {'MC ms':>10} {'MC/closed':>9}"
    print(head)
    for r in rows:
        line = f"{r['m']:>6} {r['dtype']:>8} {1e3 * r['closed_form_s']:>10.3g} {r['risk']:>9.3g}"
        for eps in EPS:
            e = r["eps"][f"{eps:g}"]
            mark = "~" if e["extrapolated"] else " "
            line += (
                f" | {'':>9}{e['samples']:>10d} {mark}{1e3 * e['mc_s']:>9.3g} "
                f"{e['mc_over_closed_form']:>9.3g}"
            )
        print(line)
    result = {
        "machine": {
            "platform": platform.platform(),
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
        },
        "d": D,
        "k": K,
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
