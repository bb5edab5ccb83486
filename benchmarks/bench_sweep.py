"""Sweeps: serial points, local processes, and seed batches (vmap) against each other.

Sections (each ratio measured in the same run):

- ``seeds``: ``mfnn sweep CONFIG --grid seed=0..7`` over a plain teacher-student run
  (mean_field tanh student, m = 512 particles, no bias, fixed output weights; a 3-neuron
  tanh teacher in d = 4; n_train = 512, n_test = 256; full-batch gradient flow, Euler,
  dt = 0.05, 400 steps, a record every 20), float64, four ways:
  ``serial`` (--workers 1), ``processes`` (--workers 2: two spawned processes),
  ``batch`` (--workers 1 --batch-seeds: the 8 seeds vmapped in one process) and
  ``batch x2`` (--workers 2 --batch-seeds: two processes, a batch of 4 each). Each is
  the wall time of a fresh ``mfnn sweep`` process (imports, JAX start-up, compilation
  and file output included: what a user waits for), modes round-robin, the best of
  ``--rounds`` kept. Agreement: max relative difference of the batched final losses
  from the serial ones (float64 round-off expected, not bit identity).
- ``kernel``: where the time of a batch goes, in one process: one compiled chunk of
  400 steps (`mfnn.loop.advance`, the chunk `simulate` runs) for one seed, times 8,
  against the same chunk vmapped over the 8 seeds (`mfnn.loop.advance_batch`, what
  `simulate_batch` runs), compilation excluded, best of 3; at m = n = 128 and 512.
- ``chaos``: the issue's case, ``mfnn sweep chaos --quick --grid seed=0..3`` with
  ``--workers 1`` against ``--workers 2`` (a named experiment: its points are never
  batched; each runs its own vmapped replicas). One round (minutes). ``--chaos default``
  runs the experiment's default config instead of ``--quick``: in quick mode a point
  computes for ~2.5 s after ~20 s of compilation, which a serial sweep pays once and
  every process pays again; the default config computes longer per point.

The machine's load average at the start and end is stored: this benchmark runs whole
processes and uses both cores, so another job on the machine moves every number; compare
the ratios within one run.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_sweep.py --out benchmarks/results/bench_sweep_cpu2.json
    .venv/bin/python benchmarks/bench_sweep.py --quick          # ~2 min on 2 cores
    .venv/bin/python benchmarks/bench_sweep.py --sections seeds,kernel
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import mfnn  # noqa: E402
from mfnn.build import build  # noqa: E402
from mfnn.config import load  # noqa: E402
from mfnn.loop import advance, advance_batch, stack  # noqa: E402
from mfnn.sweep import read_table  # noqa: E402

MFNN = [sys.executable, "-m", "mfnn.cli"]


def teacher_config(m: int, n: int, steps: int) -> dict:
    """The plain run of the ``seeds`` section (a dict, as a YAML file would give)."""
    return {
        "seed": 0,
        "dtype": "float64",
        "model": {
            "width": m,
            "activation": "tanh",
            "scaling": "mean_field",
            "bias": False,
            "train_output": False,
        },
        "data": {
            "target": "teacher",
            "teacher": {
                "w": [[2.0, 0.0, 0.0, 0.0], [-1.0, 1.5, 0.0, 0.0], [0.0, -2.0, 1.0, 0.0]],
                "alpha": [0.5, 0.3, 0.2],
            },
            "inputs": {"law": "gaussian", "dim": 4, "std": 1.0},
            "n_train": n,
            "n_test": 256,
        },
        "dynamics": {"kind": "gradient_flow", "dt": 0.05, "steps": steps},
        "record": {"every": 20},
    }


def run_cli(args: list[str]) -> float:
    """Wall time of one ``mfnn`` process (raises if it fails)."""
    t0 = time.perf_counter()
    res = subprocess.run([*MFNN, *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"mfnn {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
    return wall


SEED_MODES = {
    "serial": ["--workers", "1", "--no-batch-seeds"],
    "processes": ["--workers", "2", "--no-batch-seeds"],
    "batch": ["--workers", "1", "--batch-seeds"],
    "batch x2": ["--workers", "2", "--batch-seeds"],
}


def bench_seeds(m: int, n: int, steps: int, seeds: int, rounds: int, tmp: Path) -> dict:
    cfg = tmp / "teacher.yaml"
    cfg.write_text(json.dumps(teacher_config(m, n, steps)))
    times: dict[str, list[float]] = {k: [] for k in SEED_MODES}
    tables: dict[str, list[dict]] = {}
    for r in range(rounds):
        for mode, flags in SEED_MODES.items():
            out = tmp / f"seeds-{mode.replace(' ', '')}-{r}"
            grid = ["--grid", f"seed=0..{seeds - 1}"]
            times[mode].append(run_cli(["sweep", str(cfg), *grid, "--out", str(out), *flags]))
            tables[mode] = read_table(out)
            print(f"  round {r} {mode:>10}: {times[mode][-1]:6.1f} s", flush=True)
    best = {k: min(v) for k, v in times.items()}
    serial = np.array([float(row["final_loss"]) for row in tables["serial"]])
    agree = {}
    for mode in SEED_MODES:
        loss = np.array([float(row["final_loss"]) for row in tables[mode]])
        agree[mode] = float(np.max(np.abs(loss - serial) / np.abs(serial)))
        assert all(row["status"] == "completed" for row in tables[mode]), mode
    batched = {mode: [row["batched"] for row in tables[mode]] for mode in SEED_MODES}
    return {
        "config": {"m": m, "n_train": n, "steps": steps, "seeds": seeds, "rounds": rounds},
        "wall_s": best,
        "all_wall_s": times,
        "speedup_over_serial": {k: best["serial"] / v for k, v in best.items()},
        "batch_over_processes": best["processes"] / best["batch"],
        "final_loss_max_rel_diff_vs_serial": agree,
        "batched_column": batched,
    }


def bench_kernel(m: int, seeds: int, steps: int = 400, repeats: int = 3) -> dict:
    """One chunk for one seed (x seeds) against the chunk vmapped over the seeds."""
    cfg = teacher_config(m, m, steps)
    built = [build(load(cfg, [f"seed={s}"])) for s in range(seeds)]
    b0, every = built[0], 20
    dt = jnp.asarray(b0.dt)
    start, bad = jnp.asarray(0), jnp.asarray(-1)

    def single():
        outs = [
            advance(
                b.dynamics,
                b.integrator,
                b.recorder,
                b.theta0,
                b.theta0,
                start,
                dt,
                b.key,
                bad,
                steps // every,
                every,
                True,
            )
            for b in built
        ]
        jax.block_until_ready(outs)

    dyn = stack([b.dynamics for b in built])
    rec = stack([b.recorder for b in built])
    theta = jnp.stack([b.theta0 for b in built])
    keys = jnp.stack([b.key for b in built])

    def batched():
        out = advance_batch(
            dyn,
            b0.integrator,
            rec,
            theta,
            theta,
            start,
            dt,
            keys,
            jnp.full(seeds, -1),
            steps // every,
            every,
            True,
        )
        jax.block_until_ready(out)

    result = {}
    for name, fn in (("single_x_seeds", single), ("vmap", batched)):
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        result[name] = {"s": best, "first_call_s": first}
    result["vmap_over_single"] = result["vmap"]["s"] / result["single_x_seeds"]["s"]
    return {"m": m, "n_train": m, "steps": steps, "seeds": seeds, **result}


def bench_chaos(seeds: int, tmp: Path, quick: bool = True) -> dict:
    times = {}
    flag = ["--quick"] if quick else []
    for workers in (1, 2):
        out = tmp / f"chaos-{workers}"
        args = ["sweep", "chaos", *flag, "--grid", f"seed=0..{seeds - 1}"]
        times[workers] = run_cli([*args, "--workers", str(workers), "--out", str(out)])
        rows = read_table(out)
        print(f"  chaos workers {workers}: {times[workers]:6.1f} s", flush=True)
        assert all(row["status"] == "completed" for row in rows), rows
    return {
        "command": " ".join(["mfnn sweep chaos", *flag, f"--grid seed=0..{seeds - 1} --workers N"]),
        "wall_s": {"workers_1": times[1], "workers_2": times[2]},
        "speedup_workers_2": times[1] / times[2],
        "point_wall_s_serial": [float(r["wall_s"]) for r in read_table(tmp / "chaos-1")],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, ~2 min")
    parser.add_argument("--sections", default="seeds,kernel,chaos")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the seeds section")
    parser.add_argument(
        "--chaos",
        choices=("quick", "default"),
        default="quick",
        help="the chaos points' settings: --quick (compile-bound) or the default config",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    m, steps, seeds = (256, 200, 4) if args.quick else (512, 400, 8)
    result: dict = {
        "machine": {
            "platform": platform.platform(),
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "cpu_count": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
        },
        "versions": {"mfnn": mfnn.__version__, "jax": jax.__version__},
        "mode": "quick" if args.quick else "full",
    }
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "seeds" in sections:
            print(f"seeds: {seeds} seeds, m = n = {m}, {steps} steps (fresh `mfnn sweep` each)")
            r = bench_seeds(m, m, steps, seeds, 1 if args.quick else args.rounds, tmp)
            result["seeds"] = r
            for mode, s in r["wall_s"].items():
                diff = r["final_loss_max_rel_diff_vs_serial"][mode]
                print(
                    f"  {mode:>10}: {s:6.1f} s  x{r['speedup_over_serial'][mode]:.2f} vs serial"
                    f"  (final loss max rel diff {diff:.1e})"
                )
        if "kernel" in sections:
            result["kernel"] = []
            print(f"\nkernel: one 400-step chunk, {seeds} seeds one by one vs vmapped")
            for mk in (128,) if args.quick else (128, 512):
                k = bench_kernel(mk, seeds)
                result["kernel"].append(k)
                print(
                    f"  m = n = {mk:>4}: single x {seeds} {k['single_x_seeds']['s']:.3f} s, "
                    f"vmap {k['vmap']['s']:.3f} s  (vmap / single {k['vmap_over_single']:.2f})"
                )
        if "chaos" in sections:
            n_chaos = 2 if args.quick else 4
            flag = "--quick " if args.chaos == "quick" else ""
            print(f"\nchaos: mfnn sweep chaos {flag}--grid seed=0..{n_chaos - 1}")
            c = bench_chaos(n_chaos, tmp, quick=args.chaos == "quick")
            result["chaos"] = c
            print(f"  workers 2 / workers 1 speedup: {c['speedup_workers_2']:.2f}")
    result["load_average_at_end"] = os.getloadavg()
    result["total_s"] = time.perf_counter() - t_start
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\n-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
