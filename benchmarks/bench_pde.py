"""Grid cells x steps per second of mfnn's finite-volume PDE solver against plain NumPy.

The problem: the mean-field PDE of a two-layer tanh network (mean field, output weights
fixed at 1) under the quadrature population risk of a two-neuron teacher,
f*(x) = (tanh(2 x + 0.5) + tanh(-x)) / 2, x ~ N(0, 1) by a K = 64 node Gauss-Hermite
rule, L2 weight lambda = 0.1, diffusion D = 0.01 and birth-death rate alpha = 1 (the whole
right-hand side of `mfnn.pde.solver`), ``explicit`` scheme, dt = half the stable step of
the initial density. A 1-D grid holds w (phi = tanh(w x), box [-4, 4]); a 2-D grid holds
(w, b) (phi = tanh(w x + b), box [-4, 4]^2). Start: a smooth positive density (a Gaussian
times 1 + 0.5 sin 3 w).

Timed (the compilation and a warm-up call not timed; round-robin, best of the rounds):

- mfnn: `FokkerPlanck.step` in `jax.lax.fori_loop` under one `equinox.filter_jit`,
  `jax.block_until_ready` on the result;
- numpy: `numpy_pde.NumpyFokkerPlanck.run`, the same scheme in plain NumPy (same fluxes,
  same SSP-RK2, the first variation by two matrix-vector products).

Reported: cells x steps / s for each (grid, flux, dtype), and mfnn / numpy from the same
run. Before timing, both take 10 steps on each problem and their difference is printed
(max |rho_mfnn - rho_numpy| / max |rho|: round-off, ~1e-16 in float64).

Cost of the first variation (float64, MUSCL, 1-D, a ReLU network): mfnn's seconds per
step and per first variation, and NumPy's per first variation, against the number of
cells C, with the quadrature energy (K = 64 nodes, two matrix-vector products, O(C K))
and with the closed-form `KernelEnergy` (a C x C matrix, O(C^2)); fitted exponents p of
time ~ C^p over the larger sizes and between consecutive sizes; without --quick also
against K at fixed C = 16384.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_pde.py --out benchmarks/results/bench_pde_cpu2.json
    .venv/bin/python benchmarks/bench_pde.py --quick          # < ~60 s
    .venv/bin/python benchmarks/bench_pde.py --single-thread  # one BLAS / XLA thread

See benchmarks/README.md for the numbers.
"""

from __future__ import annotations

import os
import sys

if "--single-thread" in sys.argv[1:]:  # before NumPy's BLAS and XLA start their threads
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    ).strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from numpy_pde import NumpyFokkerPlanck  # noqa: E402

from mfnn import GaussianInputs, Teacher, TwoLayer  # noqa: E402
from mfnn.objectives import PopulationRisk  # noqa: E402
from mfnn.pde import FokkerPlanck, Grid, grid_energy  # noqa: E402

NODES = 64
L2, DIFFUSION, RATE = 0.1, 0.01, 1.0
BOX = 4.0
FLUXES = ("muscl", "upwind")
DTYPES = ("float64", "float32")
SIZES = {  # cells per axis
    "quick": [(4096,), (256, 256)],
    "full": [(1024,), (4096,), (16384,), (64, 64), (128, 128), (256, 256)],
}
SCALING_CELLS = {
    "quick": {"sampled": [1024, 4096, 16384, 65536], "kernel": [1024, 2048, 4096]},
    "full": {
        "sampled": [256, 1024, 4096, 16384, 65536, 262144],
        "kernel": [256, 512, 1024, 2048, 4096, 8192],
    },
}
FIT_FROM = {"sampled": 4096, "kernel": 1024}  # the exponent is fitted over C >= this
K_SWEEP = {"quick": [], "full": [16, 64, 256]}  # nodes at fixed C (full only)
K_SWEEP_CELLS = 16384


# ------------------------------------------------------------------------ problems
def make_energy(grid: Grid, activation: str = "tanh", method: str = "quadrature", nodes=NODES):
    """The grid energy (float64) of a two-neuron teacher's population risk."""
    two_d = grid.dim == 2
    net = TwoLayer(d=1, activation=activation, bias=two_d, train_output=False)
    if method == "closed_form":  # the closed-form kernel: no teacher bias
        teacher = Teacher([[2.0], [-1.0]], activation=activation)
    else:
        teacher = Teacher([[2.0], [-1.0]], b=[0.5, 0.0], activation=activation)
    objective = PopulationRisk.make(
        teacher, GaussianInputs(1), method, model=net, nodes=nodes, l2=L2
    )
    return eqx.filter_jit(grid_energy)(objective, net, grid)


def cast(tree, dtype):
    """Every floating array of ``tree`` in ``dtype``."""
    return jax.tree_util.tree_map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)


def initial(grid: Grid) -> np.ndarray:
    """A smooth positive density of mass 1: exp(-|theta - 0.3|^2) (1 + 0.5 sin 3 theta_1)."""
    c = np.asarray(grid.centers()).reshape(*grid.cells, grid.dim)
    rho = np.exp(-np.sum((c - 0.3) ** 2, axis=-1)) * (1 + 0.5 * np.sin(3 * c[..., 0]))
    return rho / (rho.sum() * grid.volume)


def make_grid(cells) -> Grid:
    return Grid((-BOX,) * len(cells), (BOX,) * len(cells), cells)


def make_problem(cells, flux, dtype, energy=None):
    """(mfnn FokkerPlanck, NumPy twin, rho0 (numpy, dtype), dt)."""
    grid = make_grid(cells)
    energy = make_energy(grid) if energy is None else energy
    fp = FokkerPlanck(
        grid, cast(energy, dtype), diffusion=DIFFUSION, rate=RATE, flux=flux, scheme="explicit"
    )
    rho0 = initial(grid).astype(dtype)
    dt = float(0.5 * eqx.filter_jit(lambda f, r: f.stable_dt(r))(fp, jnp.asarray(rho0)))
    return fp, NumpyFokkerPlanck.from_mfnn(fp), rho0, dt


# ------------------------------------------------------------------------- loops
@eqx.filter_jit
def mfnn_loop(fp: FokkerPlanck, rho, dt, steps):
    """``steps`` (traced: one compile for every count) steps of ``fp`` from rho."""
    return jax.lax.fori_loop(0, steps, lambda i, r: fp.step(r, dt), rho)


@eqx.filter_jit
def phi_loop(energy, mass, steps):
    """``steps`` first variations in a chain m <- m + 1e-30 Phi(m) (the chain keeps XLA
    from hoisting them out of the loop; 1e-30 leaves m unchanged to round-off)."""
    return jax.lax.fori_loop(
        0, steps, lambda i, m: m + 1e-30 * energy.first_variation(m).astype(m.dtype), mass
    )


def mfnn_timer(fp, rho0, dt):
    rho, dtj = jnp.asarray(rho0), jnp.asarray(dt, rho0.dtype)

    def call(steps):
        return jax.block_until_ready(mfnn_loop(fp, rho, dtj, jnp.asarray(steps)))

    return call


def numpy_timer(ref: NumpyFokkerPlanck, rho0, dt):
    return lambda steps: ref.run(rho0, dt, steps)


def numpy_phi_timer(ref: NumpyFokkerPlanck, mass):
    mass = np.asarray(mass)

    def call(n):
        for _ in range(n):
            ref.first_variation(mass)

    return call


def seconds(fn, steps) -> float:
    t0 = time.perf_counter()
    fn(steps)
    return time.perf_counter() - t0


def calibrate(fn, target: float, start: int = 2, cap: int = 1_000_000) -> int:
    """Steps for one call of ``fn`` to last about ``target`` seconds (warm-up included)."""
    fn(start)  # compiles (mfnn) / warms the caches
    n = start
    while True:
        t = seconds(fn, n)
        if t > 0.2 * target or n >= cap:
            return max(1, min(cap, round(n * target / max(t, 1e-9))))
        n *= 8


def interleaved(points: list[dict], rounds: int) -> None:
    """Time every point's timers once per round, the points round-robin, so that the
    ``rounds`` samples of a point lie minutes apart and a slow phase of a shared machine
    does not hit all of them; stores the samples (seconds per step) and their minimum."""
    for p in points:
        p["samples"] = {k: [] for k in p["timers"]}
    for i in range(rounds):
        for p in points:
            for k, fn in p["timers"].items():
                p["samples"][k].append(seconds(fn, p["steps"][k]) / p["steps"][k])
        print(f"  round {i + 1}/{rounds} done", flush=True)
    for p in points:
        p["best"] = {k: min(v) for k, v in p["samples"].items()}
        del p["timers"]


# ----------------------------------------------------------------------- sections
def agreement(cells, flux, dtype, energy, steps=10) -> float:
    """max |rho_mfnn - rho_numpy| / max |rho| after ``steps`` steps."""
    fp, ref, rho0, dt = make_problem(cells, flux, dtype, energy)
    ours = np.asarray(mfnn_timer(fp, rho0, dt)(steps))
    theirs = ref.run(rho0, dt, steps)
    assert theirs.dtype == np.dtype(dtype), theirs.dtype
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def throughput_point(cells, flux, dtype, energy, target) -> dict:
    """The timers of one (grid, flux, dtype), calibrated (compiled, warmed up)."""
    fp, ref, rho0, dt = make_problem(cells, flux, dtype, energy)
    timers = {"mfnn": mfnn_timer(fp, rho0, dt), "numpy": numpy_timer(ref, rho0, dt)}
    steps = {k: calibrate(fn, target) for k, fn in timers.items()}
    return {
        "cells": list(cells),
        "flux": flux,
        "dtype": dtype,
        "dt": dt,
        "steps": steps,
        "timers": timers,
    }


def throughput_row(p) -> dict:
    size = int(np.prod(p["cells"]))
    rate = {k: size / v for k, v in p["best"].items()}
    return {
        "cells": p["cells"],
        "C": size,
        "K": NODES,
        "flux": p["flux"],
        "dtype": p["dtype"],
        "dt": p["dt"],
        "steps": p["steps"],
        "seconds_per_step": p["best"],
        "seconds_per_step_samples": p["samples"],
        "cell_steps_per_s": rate,
        "mfnn_over_numpy": rate["mfnn"] / rate["numpy"],
    }


def fit_exponent(cs, ts, from_c) -> float:
    """p in t ~ C^p: least-squares slope of log t on log C over C >= from_c."""
    keep = [(c, t) for c, t in zip(cs, ts, strict=True) if c >= from_c]
    if len(keep) < 2:
        return float("nan")
    c, t = np.array(keep, float).T
    return float(np.polyfit(np.log(c), np.log(t), 1)[0])


def local_exponents(xs, ts) -> list[float]:
    """Slopes of log t on log x between consecutive sizes."""
    return [
        float(np.log(ts[i + 1] / ts[i]) / np.log(xs[i + 1] / xs[i])) for i in range(len(xs) - 1)
    ]


def cost_point(grid, energy, target) -> dict:
    """Timers of mfnn's seconds per MUSCL step and per first variation, and of the NumPy
    twin's per first variation (OpenBLAS matrix-vector products), float64, 1-D."""
    fp = FokkerPlanck(grid, energy, diffusion=DIFFUSION, rate=RATE, flux="muscl")
    rho0 = initial(grid)
    dt = float(0.5 * eqx.filter_jit(lambda f, r: f.stable_dt(r))(fp, jnp.asarray(rho0)))
    mass = jnp.asarray(rho0.reshape(-1) * grid.volume)
    timers = {
        "step": mfnn_timer(fp, rho0, dt),
        "first_variation": lambda n: jax.block_until_ready(phi_loop(energy, mass, jnp.asarray(n))),
        "numpy_first_variation": numpy_phi_timer(NumpyFokkerPlanck.from_mfnn(fp), mass),
    }
    steps = {k: calibrate(fn, target) for k, fn in timers.items()}
    return {"C": grid.size, "steps": steps, "timers": timers}


def cost_row(p) -> dict:
    return {"C": p["C"], "steps": p["steps"], **p["best"], "samples": p["samples"]}


def scaling(mode, target, rounds) -> dict:
    points = {"sampled": [], "kernel": [], "k_sweep": []}
    for kind in ("sampled", "kernel"):
        method = "quadrature" if kind == "sampled" else "closed_form"
        for c in SCALING_CELLS[mode][kind]:
            grid = make_grid((c,))
            points[kind].append(cost_point(grid, make_energy(grid, "relu", method), target))
    for k in K_SWEEP[mode]:
        grid = make_grid((K_SWEEP_CELLS,))
        p = cost_point(grid, make_energy(grid, "relu", "quadrature", k), target)
        p["K"] = k
        points["k_sweep"].append(p)
    interleaved([p for v in points.values() for p in v], rounds)

    out = {"fit_from": FIT_FROM}
    for kind in ("sampled", "kernel"):
        rows = [cost_row(p) for p in points[kind]]
        for row in rows:
            print(
                f"  {kind:8s} C = {row['C']:7d}: {1e6 * row['step']:10.1f} us/step, first "
                f"variation {1e6 * row['first_variation']:10.1f} us (numpy "
                f"{1e6 * row['numpy_first_variation']:10.1f} us)",
                flush=True,
            )
        cs = [r["C"] for r in rows]
        out[kind] = {"rows": rows}
        for col in ("step", "first_variation", "numpy_first_variation"):
            ts = [r[col] for r in rows]
            out[kind][f"exponent_{col}"] = fit_exponent(cs, ts, FIT_FROM[kind])
            out[kind][f"local_exponents_{col}"] = local_exponents(cs, ts)
        print(
            f"  {kind}: time ~ C^p over C >= {FIT_FROM[kind]}: p = "
            f"{out[kind]['exponent_step']:.2f} (step), "
            f"{out[kind]['exponent_first_variation']:.2f} (first variation), "
            f"{out[kind]['exponent_numpy_first_variation']:.2f} (numpy first variation); "
            "between consecutive sizes (step): "
            + ", ".join(f"{p:.2f}" for p in out[kind]["local_exponents_step"]),
            flush=True,
        )
    common = sorted(set(SCALING_CELLS[mode]["sampled"]) & set(SCALING_CELLS[mode]["kernel"]))
    by = {k: {r["C"]: r for r in out[k]["rows"]} for k in ("sampled", "kernel")}
    out["kernel_over_sampled"] = {
        str(c): by["kernel"][c]["step"] / by["sampled"][c]["step"] for c in common
    }
    print(
        "  kernel / sampled, seconds per step: "
        + ", ".join(f"C = {c}: {v:.1f}x" for c, v in out["kernel_over_sampled"].items()),
        flush=True,
    )
    if points["k_sweep"]:
        sweep = [{"K": p["K"], **cost_row(p)} for p in points["k_sweep"]]
        for row in sweep:
            print(
                f"  sampled C = {K_SWEEP_CELLS}, K = {row['K']:4d}: "
                f"{1e6 * row['step']:9.1f} us/step, first variation "
                f"{1e6 * row['first_variation']:9.1f} us (numpy "
                f"{1e6 * row['numpy_first_variation']:9.1f} us)",
                flush=True,
            )
        ks = [r["K"] for r in sweep]
        out["k_sweep"] = {"C": K_SWEEP_CELLS, "rows": sweep}
        for col in ("step", "first_variation", "numpy_first_variation"):
            out["k_sweep"][f"exponent_{col}"] = fit_exponent(ks, [r[col] for r in sweep], 0)
        print(
            "  time ~ K^p: p = {exponent_step:.2f} (step), {exponent_first_variation:.2f} "
            "(first variation), {exponent_numpy_first_variation:.2f} (numpy first "
            "variation)".format(**out["k_sweep"]),
            flush=True,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two sizes, short timings (<60 s)")
    parser.add_argument("--rounds", type=int, default=None, help="best of (default 2/5)")
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON")
    parser.add_argument(
        "--single-thread",
        action="store_true",
        help="one thread for NumPy's BLAS and XLA's matrix products (stable on a shared "
        "machine; read from sys.argv before the imports)",
    )
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    rounds = args.rounds or (2 if args.quick else 5)
    target = 0.1 if args.quick else 0.4  # seconds per timed call
    start = time.perf_counter()
    load0 = os.getloadavg()
    threads = "one thread" if args.single_thread else "default threads"
    print(
        f"{mode}, {threads}: best of {rounds} rounds; load average {load0[0]:.2f} on "
        f"{os.cpu_count()} CPUs"
    )

    energies = {cells: make_energy(make_grid(cells)) for cells in SIZES[mode]}
    agree = {}
    for cells in SIZES[mode][:1] + [c for c in SIZES[mode] if len(c) == 2][:1]:
        for flux in FLUXES:
            for dtype in DTYPES:
                key = f"{'x'.join(map(str, cells))}/{flux}/{dtype}"
                agree[key] = agreement(cells, flux, dtype, energies[cells])
    print("agreement, max |mfnn - numpy| / max |rho| after 10 steps:", flush=True)
    for k, v in agree.items():
        print(f"  {k:22s} {v:.1e}")

    print("calibrating and compiling the throughput problems", flush=True)
    points = [
        throughput_point(cells, flux, dtype, energies[cells], target)
        for cells in SIZES[mode]
        for flux in FLUXES
        for dtype in DTYPES
    ]
    interleaved(points, rounds)
    rows = [throughput_row(p) for p in points]
    print(f"{'cells':>10s} {'flux':6s} {'dtype':7s} {'mfnn':>10s} {'numpy':>10s}  mfnn/numpy")
    for r in rows:
        s = r["cell_steps_per_s"]
        print(
            f"{'x'.join(map(str, r['cells'])):>10s} {r['flux']:6s} {r['dtype']:7s} "
            f"{s['mfnn']:10.3g} {s['numpy']:10.3g}  {r['mfnn_over_numpy']:6.2f}x",
            flush=True,
        )
    del points
    del energies
    print("cost of the first variation (float64, muscl, 1-D, mfnn):", flush=True)
    cost = scaling(mode, target, rounds)
    load1 = os.getloadavg()
    wall = time.perf_counter() - start
    print(f"wall {wall:.1f} s; load average {load1[0]:.2f} at the end")
    if args.out is not None:
        info = {
            "machine": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "load_average_start": load0,
            "load_average_end": load1,
            "devices": [str(d) for d in jax.devices()],
            "jax": jax.__version__,
            "numpy": np.__version__,
            "mode": mode,
            "single_thread": args.single_thread,
            "env": {
                k: os.environ.get(k)
                for k in ("XLA_FLAGS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
            },
            "rounds": rounds,
            "target_seconds_per_call": target,
            "problem": {
                "K": NODES,
                "l2": L2,
                "diffusion": DIFFUSION,
                "rate": RATE,
                "box": [-BOX, BOX],
                "scheme": "explicit",
            },
            "agreement": agree,
            "throughput": rows,
            "scaling": cost,
            "wall_seconds": wall,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
