"""The adaptive integrator against Euler at equal accuracy, on a flow with a plateau.

Problem: the population gradient flow (closed-form risk, x ~ N(0, I_4)) of a student
f = (1/m) sum_j erf(w_j . x) (no bias, a == 1) learning the teacher
f* = sum_i alpha_i erf(c_i . x), c_i = 2 e_i (i = 1..3), alpha = (0.4, 0.35, 0.25), from a
small start w_j ~ N(0, 0.01^2 I). The loss falls fast while the students are nearly
linear, then sits on a plateau (all students near one direction: t ~ 2..25 for m = 64),
then drops again as the students split between the teacher's atoms: the regime where a
fixed step is either too small for the plateau or too large for the transitions.

For each target relative accuracy eps in (1e-4, 1e-6, 1e-8), at time T, in the same run:

- the reference: one adaptive solve (tsit5) at rtol = 1e-12, atol = 1e-14 (its own error
  is estimated by the solve at rtol = 1e-11 and printed);
- Euler (plain gradient descent, `mfnn.Euler`, a compiled loop): dt halved from 0.5
  until |theta_dt(T) - theta_ref(T)|_F / |theta_ref(T)|_F <= eps, one velocity
  evaluation a step, each run timed once after compilation; past a step budget (2^21
  steps, 2^17 with --quick) the dt that reaches eps is extrapolated from the last run
  (first order: the printed slope of the last halving checks it) and its time from that
  run's time per step (marked "~");
- adaptive (`mfnn.integrators.adaptive_solve`, tsit5): the loosest rtol = 10^-k
  (atol = rtol / 100) that reaches eps: accepted and rejected internal steps, velocity
  evaluations and the wall time of the solve (compiled once: the tolerance is traced).

Adaptive times are the best of 3 calls after compilation. The load of a shared machine
moves single times by up to 2x; the evaluation counts do not move. The script also
prints the internal steps the adaptive solve takes in each phase (fast start, plateau,
escape) at rtol 1e-8: the plateau's length costs few steps.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_adaptive.py            # m = 64, T = 100: ~5 min on 2 cores
    .venv/bin/python benchmarks/bench_adaptive.py --quick    # m = 32, T = 40: < 1 min
    .venv/bin/python benchmarks/bench_adaptive.py --out results/bench_adaptive_cpu2.json
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

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from mfnn import Euler, config  # noqa: E402
from mfnn.build import build  # noqa: E402
from mfnn.integrators import adaptive_solve  # noqa: E402

TARGETS = (1e-4, 1e-6, 1e-8)
RTOLS = tuple(10.0**-k for k in range(3, 12))


def problem(m: int):
    """The flow and the initial particles (m, 4), built from a config (seed 0)."""
    cfg = config.load(
        {
            "model": {
                "width": m,
                "activation": "erf",
                "bias": False,
                "train_output": False,
                "init": {"w": {"law": "gaussian", "std": 0.01}},
            },
            "data": {
                "population": {"inputs": "gaussian", "dim": 4, "method": "closed_form"},
                "teacher": {
                    "w": [[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]],
                    "alpha": [0.4, 0.35, 0.25],
                },
            },
        }
    )
    built = build(cfg)
    return built.dynamics, built.theta0


@eqx.filter_jit
def _euler(flow, theta, dt, n):
    model, key = flow.model, jax.random.key(0)

    def body(i, s):
        return Euler().step(flow, s, i, dt, key)[0]

    return model.from_blocks(jax.lax.fori_loop(0, n, body, model.to_blocks(theta)))


def best_time(fn, rounds: int = 3):
    out = jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best, out


def rel_error(x, ref) -> float:
    return float(np.linalg.norm(np.asarray(x) - ref) / np.linalg.norm(ref))


def euler_runs(flow, theta, T, ref, budget, worst):
    """Euler from dt = 0.5, halving, until the error is below ``worst`` or the budget."""
    jax.block_until_ready(_euler(flow, theta, jnp.asarray(T), jnp.asarray(1)))  # compile
    runs, n = [], max(1, round(T / 0.5))
    while True:
        dt = T / n
        t0 = time.perf_counter()
        end = jax.block_until_ready(_euler(flow, theta, jnp.asarray(dt), jnp.asarray(n)))
        wall = time.perf_counter() - t0
        err = rel_error(end, ref)
        runs.append({"steps": n, "dt": dt, "error": err, "wall_s": wall})
        print(f"  euler dt = {dt:.3g}: {n} steps, error {err:.3g}, {wall:.3g} s", flush=True)
        if err <= worst or 2 * n > budget:
            return runs
        n *= 2


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="m = 32, T = 40, small budget")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    m, T, budget = (32, 40.0, 2**17) if args.quick else (64, 100.0, 2**21)
    flow, theta = problem(m)
    risk = flow.exact().full_velocity  # (v, R) at theta
    print(f"erf student m = {m} on a 3-atom teacher, d = 4, T = {T:g}")

    t_ref, (ref, ref_stats) = best_time(
        lambda: adaptive_solve(flow, theta, T, rtol=1e-12, atol=1e-14), rounds=1
    )
    ref = np.asarray(ref)
    check, _ = adaptive_solve(flow, theta, T, rtol=1e-11, atol=1e-13)
    ref_err = rel_error(check, ref)
    print(f"reference: {ref_stats}, {t_ref:.2f} s; |rtol 1e-11 - ref| / |ref| = {ref_err:.2g}")

    # the phases of the flow at rtol 1e-8: loss at the window ends, internal steps per window
    phases, th, t = [], theta, 0.0
    for end_t in (2.0, 25.0 if T > 25 else T / 2, T):
        th, st = adaptive_solve(flow, th, end_t - t, rtol=1e-8, atol=1e-10)
        phases.append({"from": t, "to": end_t, "loss": float(risk(th)[1])} | {k: st[k] for k in st})
        t = end_t
    print(f"loss at t = 0: {float(risk(theta)[1]):.4g}")
    for p in phases:
        print(
            f"  t in [{p['from']:g}, {p['to']:g}]: loss {p['loss']:.4g} at the end, "
            f"{p['accepted']} accepted + {p['rejected']} rejected steps"
        )

    # Euler: errors and wall times by halving dt; the time per step of the longest run
    runs = euler_runs(flow, theta, T, ref, budget, min(TARGETS))
    t_step = runs[-1]["wall_s"] / runs[-1]["steps"]
    slope = float(np.log(runs[-2]["error"] / runs[-1]["error"]) / np.log(2.0))
    print(f"euler: {1e6 * t_step:.3g} us a step; order from the last halving {slope:.3f}")

    # adaptive: the loosest tolerance reaching each target
    adaptive = []
    for rtol in RTOLS:
        wall, (end, st) = best_time(lambda r=rtol: adaptive_solve(flow, theta, T, r, r / 100))
        adaptive.append({"rtol": rtol, "error": rel_error(end, ref), "wall_s": wall} | st)

    rows = []
    for eps in TARGETS:
        hit = next((r for r in runs if r["error"] <= eps), None)
        if hit is not None:
            e_steps, e_dt, e_s, extrapolated = hit["steps"], hit["dt"], hit["wall_s"], False
        else:  # first order from the last run, at its time per step
            last = runs[-1]
            e_dt = last["dt"] * eps / last["error"]
            e_steps, extrapolated = int(np.ceil(T / e_dt)), True
            e_s = e_steps * t_step
        a = next((r for r in adaptive if r["error"] <= eps), None)
        rows.append(
            {
                "target": eps,
                "euler_dt": e_dt,
                "euler_steps": e_steps,
                "euler_s": e_s,
                "euler_extrapolated": extrapolated,
                "adaptive": a,
            }
        )
    print()
    print(
        f"{'target':>7} | {'Euler dt':>9} {'steps':>11} {'time s':>9} | {'rtol':>6} "
        f"{'steps':>6} {'evals':>6} {'time s':>8} {'error':>8} | {'evals ratio':>11} "
        f"{'time ratio':>10}"
    )
    for r in rows:
        a, mark = r["adaptive"], "~" if r["euler_extrapolated"] else " "
        steps = a["accepted"] + a["rejected"]
        print(
            f"{r['target']:>7.0e} | {r['euler_dt']:>9.2e} {mark}{r['euler_steps']:>10d} "
            f"{mark}{r['euler_s']:>8.3g} | {a['rtol']:>6.0e} {steps:>6d} {a['evaluations']:>6d} "
            f"{a['wall_s']:>8.3g} {a['error']:>8.2g} | "
            f"{r['euler_steps'] / a['evaluations']:>11.3g} {r['euler_s'] / a['wall_s']:>10.3g}"
        )
    result = {
        "machine": {
            "platform": platform.platform(),
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
        },
        "m": m,
        "T": T,
        "reference": {"stats": ref_stats, "wall_s": t_ref, "self_error": ref_err},
        "phases": phases,
        "euler_step_s": t_step,
        "euler_runs": runs,
        "euler_last_order": slope,
        "adaptive_runs": adaptive,
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
