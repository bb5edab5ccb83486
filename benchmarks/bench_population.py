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

The closed form is blocked over particle pairs (`PopulationRisk.block`, chosen by
`mfnn.objectives.population.pair_block`): each block of rows takes its share of the risk
and its gradient against all m particles in O(block m) memory. The script also times the
unblocked form (the whole m x m kernel, ``block=m``) at the same widths, checks that both
agree, and compiles the closed-form velocity at m = 10^5 to report its buffer memory
(compile only); ``--wide`` times blocked steps at m = 16384 and 10^5 too (about 20 s and
10-15 min in float64 on 2 cores: O(m^2 d) work).

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_population.py            # ~2 min on 2 cores
    .venv/bin/python benchmarks/bench_population.py --out pop.json
    .venv/bin/python benchmarks/bench_population.py --wide --dtypes float32
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
WIDE = (16384, 10**5)
EPS = (1e-2, 1e-3)
MAX_NM = 2**27


def _loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (Linux), to judge how shared the machine was."""
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def best_time(fn, rounds: int = 5) -> float:
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def problem(m: int, dtype):
    rng = np.random.default_rng(0)
    c = rng.standard_normal((K, D))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    alpha = np.arange(1, K + 1) / np.arange(1, K + 1).sum()
    teacher = Teacher(c, alpha, activation="relu")
    net = TwoLayer(d=D, activation="relu", bias=False, train_output=False)
    theta = jnp.asarray(rng.standard_normal((m, D)) / np.sqrt(D), dtype)
    return teacher, net, theta


def closed_form(teacher, net, dtype, block=None) -> PopulationRisk:
    return PopulationRisk.make(
        teacher, GaussianInputs(D), "closed_form", model=net, dtype=dtype, block=block
    )


def bench(m: int, dtype) -> dict:
    teacher, net, theta = problem(m, dtype)
    exact = closed_form(teacher, net, dtype)
    whole = closed_form(teacher, net, dtype, block=m)
    step = jax.jit(lambda th: exact.velocity(net, th))
    step_whole = jax.jit(lambda th: whole.velocity(net, th))
    jax.block_until_ready((step(theta), step_whole(theta)))
    t_exact = t_whole = float("inf")
    for _ in range(5):  # round-robin, best of 5
        t_exact = min(t_exact, best_time(lambda: step(theta), rounds=1))
        t_whole = min(t_whole, best_time(lambda: step_whole(theta), rounds=1))
    v, r = step(theta)
    vw, rw = step_whole(theta)
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
        "block": exact._block(m, dtype),
        "unblocked_s": t_whole,
        "unblocked_over_blocked": t_whole / t_exact,
        "blocked_vs_unblocked": float(jnp.max(jnp.abs(v - vw)) / jnp.max(jnp.abs(vw))),
        "risk_blocked_vs_unblocked": abs(float(r - rw)) / abs(float(rw)),
        "risk": risk,
        "mc_check": {"mean_2^16": mc_mean, "se": s / 2**8},
        "eps": {},
    }

    def mc_time(n: int) -> float:
        xs = jax.random.normal(jax.random.key(2), (n, D), dtype)
        ys = teacher(xs).astype(dtype)
        # the Monte Carlo step as simulate takes it: the fused velocity in block layout
        blocks_f = jax.jit(
            lambda th: weighted_velocity(net, net.to_blocks(th), xs, ys, None, jnp.asarray(0.0))
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


def wide(m: int, dtype, run: bool) -> dict:
    """The blocked closed-form velocity at width m: its compiled buffer memory (and, with
    ``run``, the time of one step); the whole m x m kernel would take m^2 itemsize bytes."""
    teacher, net, _ = problem(8, dtype)
    exact = closed_form(teacher, net, dtype)
    spec = jax.ShapeDtypeStruct((m, D), dtype)
    compiled = jax.jit(lambda th: exact.velocity(net, th)).lower(spec).compile()
    memory = compiled.memory_analysis()
    row = {
        "m": m,
        "dtype": str(jnp.dtype(dtype)),
        "block": exact._block(m, dtype),
        "temp_bytes": int(memory.temp_size_in_bytes),
        "kernel_bytes": m * m * jnp.dtype(dtype).itemsize,
    }
    if run:
        theta = problem(m, dtype)[2]
        jax.block_until_ready(compiled(theta))
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(theta))
        row["closed_form_s"] = time.perf_counter() - t0
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--wide", action="store_true", help="time m = 16384 and 10^5 too")
    args = parser.parse_args(argv)
    load_start = _loadavg()
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
    print(
        f"\n{'m':>6} {'dtype':>8} {'block':>6} {'blocked ms':>11} {'whole ms':>10} "
        f"{'whole/blocked':>13} {'rel diff v':>10}"
    )
    for r in rows:
        print(
            f"{r['m']:>6} {r['dtype']:>8} {r['block']:>6} {1e3 * r['closed_form_s']:>11.4g} "
            f"{1e3 * r['unblocked_s']:>10.4g} {r['unblocked_over_blocked']:>13.2f} "
            f"{r['blocked_vs_unblocked']:>10.1e}"
        )
    wide_rows = [wide(m, jnp.dtype(dt), args.wide) for dt in args.dtypes.split(",") for m in WIDE]
    print(f"\n{'m':>7} {'dtype':>8} {'block':>6} {'buffers MB':>10} {'m x m MB':>10} {'step s':>8}")
    for r in wide_rows:
        step_s = f"{r['closed_form_s']:.3g}" if "closed_form_s" in r else "-"
        print(
            f"{r['m']:>7} {r['dtype']:>8} {r['block']:>6} {r['temp_bytes'] / 1e6:>10.1f} "
            f"{r['kernel_bytes'] / 1e6:>10.0f} {step_s:>8}"
        )
    result = {
        "machine": {
            "platform": platform.platform(),
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
        },
        "loadavg_start": load_start,
        "loadavg_end": _loadavg(),
        "d": D,
        "k": K,
        "rows": rows,
        "wide": wide_rows,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
