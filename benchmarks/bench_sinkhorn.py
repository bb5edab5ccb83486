"""Sinkhorn divergence at scale: mfnn's ``w2_sinkhorn`` against ott-jax and POT.

The same clouds for every library: ``independent`` from ``bench_transport.py`` (x and y
independent samples of n points from N(a, A) and N(b, B) in D = 10), centred at their
joint mean, n = 10^3, 10^4, 10^5, uniform weights. Every library computes the same
number, the debiased Sinkhorn divergence (Feydy et al., AISTATS 2019, eq. 3)

    OT_eps(mu, nu) = min_{pi in Pi(p, q)} <pi, C> + eps KL(pi || p q^T),   C_ij = |x_i - y_j|^2,
    S_eps(mu, nu)  = OT_eps(mu, nu) - (OT_eps(mu, mu) + OT_eps(nu, nu)) / 2,

at one ABSOLUTE epsilon, EPS = 0.17 (about 0.01 x the spread of these clouds, the
default of ``w2_sinkhorn``; mean cost ~42, so mean cost / eps ~ 250), tolerance
TOL = 1e-3 on an L1 marginal error, at most MAX_ITER = 2000 iterations per problem:

- ``mfnn``: ``w2_sinkhorn(x, y, epsilon=EPS, tol=TOL, squared=True)``: log domain, the
  cost kept when n m <= 4M, else formed on the fly in row blocks of 128K numbers; eps
  annealed from the mean cost down to EPS (eps_k = max(EPS, mean_cost 0.7^k)),
  over-relaxation once the error is below 1e-3 (Lehmann et al. 2022), averaged updates
  for the symmetric terms. Stops when max(row, column) L1 marginal error <= TOL, read
  at every iteration (counted only once eps_k = EPS).
- ``ott``: ott-jax ``tools.sinkhorn_divergence.sinkhorn_divergence(PointCloud, x, y,
  epsilon=EPS, batch_size=..., solve_kwargs=dict(threshold=TOL, norm_error=1))``, its
  defaults otherwise: log domain, no eps schedule, no momentum on the cross term
  (``parallel_dual_updates`` + momentum 0.5 on the symmetric terms), error = L1 column
  marginal error after the f update (symmetric terms: the sum of both marginal
  errors), read every ``inner_iterations`` = 10 iterations. ``PointCloud`` without
  ``batch_size`` (the dense cost) at n = 10^3, with it (online: the cost formed on the
  fly for ``batch_size`` rows at a time) from 10^4.
- ``ott+sched``: the same with mfnn's warm start, ``Epsilon(EPS, init=mean_cost / EPS,
  decay=0.7)`` and ``min_iterations`` = the iteration at which eps reaches EPS (the
  error is not read before).
- ``pot``: POT ``ot.bregman.empirical_sinkhorn(x, y, EPS, isLazy=True, batchSize=...,
  stopThr=TOL)`` for each of the three problems (NumPy backend; the cost formed lazily
  in blocks of about 1M numbers): log domain, no warm start, error = L1 row marginal
  error after the g update, read every 10 iterations. POT's own
  ``empirical_sinkhorn_divergence`` combines the LINEAR costs <pi, C> of the three
  plans, a different number; S_eps is formed here from the dual potentials it returns
  (P = exp(f_i + g_j - C_ij / eps): OT_eps = eps (<p, f - log p> + <q, g - log q>),
  exact at the fixed point since the last g update makes the columns exact).

Every library thus solves the same problem to the same kind of criterion (an L1
marginal error <= 1e-3); they differ in which marginal they read and how often. The
values are compared with each other and, at n = 10^3, with references solved in
float64 by mfnn and by ott with tol 1e-7 and 2000 iterations (they stop at max_iter
with L1 errors ~5e-6 and ~1e-5, and agree with each other to 5e-8 relative).

Sections:

- solve: each library to convergence, float32 at n = 10^3 and 10^4, float64 at 10^3.
  Timed round-robin in one process (each library once per round, the best round kept);
  the first call (JAX compilation included) is reported separately and not a round.
  POT, which compiles nothing, is run once (its first call), also at 10^4, where it
  takes about half an hour on 2 shared cores (``--peers ott`` leaves POT out).
- pass: one log-sum-exp pass over the (n, n) kernel, the unit of work of an iteration,
  for each library's own kernel (mfnn ``_softmin_blocks`` / ``_softmin_dense``, ott
  ``update_potential`` on the same geometry as its solve, POT one iteration of its lazy
  loop / 2), float32, n = 10^3, 10^4, 10^5; mfnn's blocks also with 64 rows (ott's
  ``batch_size``) instead of its 128K numbers. POT at n > 10^4 is timed on 1000 source
  rows against all n target points and scaled by n / 1000 (marked "scaled"). Where a
  library did not solve at size n, its solve time is extrapolated as the solve time at
  its largest solved size times the ratio of pass times (the iteration counts barely
  depend on n at a fixed eps; marked "~").

Memory: the dense (n, n) float32 cost takes 4 n^2 bytes (4 MB at 10^3, 400 MB at 10^4,
40 GB at 10^5), so at 10^5 only the online / lazy variants run; they hold O(n D) plus
one block. The process's peak RSS is stored, not a per-library figure.

ott-jax is an optional dependency of this benchmark (``pip install ott-jax``): without
it the ott rows are skipped with a note. ott-jax 0.6.0 (the newest release) reads
``jax.interpreters.batching.is_vmappable`` in its online ``PointCloud``, which JAX 0.9
removed; the fix is on ott's main branch (ott-jax/ott issue 700, pull request 701) but
unreleased, so this script restores the attribute from ``jax._src`` before importing
ott (only if it is missing). Under ``jax_enable_x64`` with float32 clouds, ott also
needs ``epsilon`` as a Python float (a NumPy float64 makes its ``lax.cond`` branches
differ in dtype), and its adaptive ``Momentum`` fails the same way (not used here).

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_sinkhorn.py --quick   # ~1 min on 2 cores
    .venv/bin/python benchmarks/bench_sinkhorn.py --out benchmarks/results/bench_sinkhorn_cpu2.json
    .venv/bin/python benchmarks/bench_sinkhorn.py --peers ott   # without POT (~15 min)

The full run takes ~50 min on 2 shared cores (half of it POT's 10^4 solve).
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import argparse  # noqa: E402
import functools  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import ot  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_transport import D, make_pair  # noqa: E402

from mfnn.diagnostics import transport  # noqa: E402
from mfnn.diagnostics.transport import w2_sinkhorn  # noqa: E402

EPS = 0.17
TOL = 1e-3
MAX_ITER = 2000
REF_TOL = 1e-7
DECAY = 0.7  # mfnn's annealing factor, reused for ott+sched
OTT_BATCH = 64  # rows per online block of ott's PointCloud (the fastest of 8-1024 at 1e4)
MFNN_ALT_ROWS = 64  # mfnn's kernel also timed with blocks of this many rows (pass section)
POT_BLOCK = 1 << 20  # numbers per block of POT's lazy cost
POT_ROWS_SCALED = 1000  # POT pass at n > 1e4: this many source rows, scaled
FULL = {
    "solve": (("float32", 1000), ("float64", 1000), ("float32", 10_000)),
    "pass": (1000, 10_000, 100_000),
    "rounds": {1000: 3, 10_000: 1},
    "references": True,
    "pot_solve": True,
}
QUICK = {  # no float64 references, POT timed per pass only (its 10^3 solve takes 15-40 s)
    "solve": (("float32", 1000),),
    "pass": (1000, 10_000),
    "rounds": {1000: 2},
    "references": False,
    "pot_solve": False,
}


# ------------------------------------------------------------------ ott (optional)


def import_ott():
    """The ott-jax modules used here, or None (with the reason) when ott is not installed."""
    try:
        batching = importlib.import_module("jax.interpreters.batching")
        if not hasattr(batching, "is_vmappable"):  # ott-jax <= 0.6.0 on JAX >= 0.9
            private = importlib.import_module("jax._src.interpreters.batching")
            batching.is_vmappable = private.is_vmappable
        ott = importlib.import_module("ott")
        mods = {
            "version": ott.__version__,
            "pointcloud": importlib.import_module("ott.geometry.pointcloud"),
            "geometry": importlib.import_module("ott.geometry.geometry"),
            "epsilon_scheduler": importlib.import_module("ott.geometry.epsilon_scheduler"),
            "divergence": importlib.import_module("ott.tools.sinkhorn_divergence"),
        }
    except ImportError as err:
        return None, f"{err}"
    return mods, None


# ------------------------------------------------------------------ problem


def clouds(n: int):
    """The ``independent`` pair of bench_transport, centred at the joint mean (float64)."""
    x, y, _ = make_pair("independent", n)
    centre = 0.5 * (x.mean(0) + y.mean(0))
    return x - centre, y - centre


def mean_cost(x: np.ndarray, y: np.ndarray) -> float:
    """(1/(n m)) sum_ij |x_i - y_j|^2 = mean|x|^2 + mean|y|^2 - 2 mean(x).mean(y)."""
    return float(np.mean(np.sum(x**2, 1)) + np.mean(np.sum(y**2, 1)) - 2.0 * x.mean(0) @ y.mean(0))


def anneal_steps(eps: float, eps0: float, decay: float = DECAY) -> int:
    """The first k with eps0 decay^k <= eps: iterations of the warm start before eps is reached."""
    if eps0 <= eps:
        return 0
    return int(math.ceil(math.log(eps / eps0) / math.log(decay)))


def ot_eps_from_log_potentials(f, g, eps: float) -> float:
    """OT_eps from POT's log-scalings for uniform weights: eps (<p, f - log p> + <q, g - log q>).

    POT's plan is P_ij = exp(f_i + g_j - C_ij / eps); in the potentials F, G of
    P_ij = p_i q_j exp((F_i + G_j - C_ij) / eps), F = eps (f - log p), G = eps (g - log q),
    and the dual value <p, F> + <q, G> (total mass 1) is OT_eps at the fixed point.
    """
    f, g = np.asarray(f, np.float64), np.asarray(g, np.float64)
    return float(eps * (f.mean() + math.log(f.size) + g.mean() + math.log(g.size)))


def rel(a, b):
    return None if a is None or b is None else abs(a - b) / abs(b)


def block(fn):
    out = fn()
    jax.block_until_ready(out)
    return out


def timed(fn):
    t0 = time.perf_counter()
    out = block(fn)
    return time.perf_counter() - t0, out


# ------------------------------------------------------------------ solvers


def solver_mfnn(x, y, eps, tol=TOL):
    def run():
        r = w2_sinkhorn(x, y, epsilon=eps, tol=tol, max_iter=MAX_ITER, squared=True, warn=False)
        return {
            "value": r.value,
            "iterations": [r.iterations],  # the slowest of the three problems
            "error": r.error,
            "converged": r.converged,
        }

    return run


def solver_ott(mods, x, y, eps, *, batch_size, schedule: bool, tol=TOL):
    """ott's sinkhorn_divergence, jitted; ``schedule``: mfnn's eps warm start."""
    eps = float(eps)  # a NumPy float64 breaks ott's float32 path under x64
    mc = mean_cost(x, y)
    k_final = anneal_steps(eps, mc)
    kw = {"threshold": float(tol), "norm_error": 1, "max_iterations": MAX_ITER}
    if schedule:
        epsilon = mods["epsilon_scheduler"].Epsilon(eps, init=max(mc / eps, 1.0), decay=DECAY)
        kw["min_iterations"] = k_final
    else:
        epsilon = eps
    pc = mods["pointcloud"].PointCloud
    divergence = mods["divergence"].sinkhorn_divergence

    @jax.jit
    def solve(xd, yd, a, b):
        div, out = divergence(
            pc, xd, yd, a=a, b=b, epsilon=epsilon, batch_size=batch_size, solve_kwargs=kw
        )
        errs = []
        for e in out.errors:  # one entry per 10 iterations, -1 where not run
            e = e.reshape(e.shape[0], -1)[:, 0]
            k = jnp.sum(e != -1)
            errs.append(e[jnp.maximum(k - 1, 0)])
        return div, jnp.stack(out.n_iters), jnp.stack(errs), jnp.stack(out.converged)

    xd, yd = jnp.asarray(x), jnp.asarray(y)
    a = jnp.full((x.shape[0],), 1.0 / x.shape[0], x.dtype)
    b = jnp.full((y.shape[0],), 1.0 / y.shape[0], y.dtype)

    def run():
        div, its, errs, conv = jax.block_until_ready(solve(xd, yd, a, b))
        return {
            "value": float(div),
            "iterations": [int(i) for i in its],  # xy, xx, yy
            "error": float(jnp.max(errs)),
            "converged": bool(jnp.all(conv)),
        }

    return run


def solver_pot(x, y, eps, tol=TOL):
    """Three lazy POT solves; S_eps from the potentials."""

    def run():
        values, its, errs = [], [], []
        for u, v in ((x, y), (x, x), (y, y)):
            bs = int(max(1, min(u.shape[0], POT_BLOCK // v.shape[0])))
            f, g, log = ot.bregman.empirical_sinkhorn(
                u,
                v,
                eps,
                isLazy=True,
                batchSize=bs,
                numIterMax=MAX_ITER,
                stopThr=tol,
                log=True,
                warn=False,
            )
            values.append(ot_eps_from_log_potentials(f, g, eps))
            its.append(int(log["niter"]) + 1)
            errs.append(float(log["err"][-1]) if log["err"] else float("inf"))
        err = max(errs)
        return {
            "value": values[0] - 0.5 * (values[1] + values[2]),
            "iterations": its,
            "error": err,
            "converged": bool(err <= tol),
        }

    return run


# ------------------------------------------------------------------ passes


def pass_mfnn(x, y, eps, rows=None):
    """One pass of mfnn's kernel as w2_sinkhorn runs it (dense or row blocks); (fn, compile s).

    ``rows``: blocks of this many rows instead of w2_sinkhorn's choice (128K numbers).
    """
    n, m = x.shape[0], y.shape[0]
    xd, yd = jnp.asarray(x), jnp.asarray(y)
    loga = jnp.full((m,), -math.log(m), x.dtype)
    e = jnp.asarray(eps, x.dtype)
    if rows is None and n * m <= transport._DENSE_MAX_ELEMENTS:
        cost = block(lambda: jnp.maximum(jnp.sum((xd[:, None] - yd[None]) ** 2, -1), 0.0))
        fn = jax.jit(transport._softmin_dense)
        args, label = (cost, loga, e), "dense"
    else:
        rows = rows or int(max(1, min(n, transport._BLOCK_ELEMENTS // m)))
        fn = jax.jit(functools.partial(transport._softmin_blocks, rows=rows))
        args, label = (xd, yd, loga, e), f"blocks of {rows} rows"
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return (lambda: compiled(*args)), time.perf_counter() - t0, label


def pass_ott(mods, x, y, eps, batch_size):
    n, m = x.shape[0], y.shape[0]
    xd, yd = jnp.asarray(x), jnp.asarray(y)
    f, g = jnp.zeros((n,), x.dtype), jnp.zeros((m,), x.dtype)
    loga = jnp.full((n,), -math.log(n), x.dtype)
    eps = float(eps)
    if batch_size is None:  # the dense solve: the cost matrix is formed once
        cost = block(lambda: jnp.sum((xd[:, None] - yd[None]) ** 2, -1))

        def one(c, f, g, la):
            geom = mods["geometry"].Geometry(cost_matrix=c, epsilon=eps)
            return geom.update_potential(f, g, la, 0, axis=1)

        args, label = (cost, f, g, loga), "dense"
    else:

        def one(a, b, f, g, la):
            geom = mods["pointcloud"].PointCloud(a, b, epsilon=eps, batch_size=batch_size)
            return geom.update_potential(f, g, la, 0, axis=1)

        args, label = (xd, yd, f, g, loga), f"online, batch_size {batch_size}"
    t0 = time.perf_counter()
    compiled = jax.jit(one).lower(*args).compile()
    return (lambda: compiled(*args)), time.perf_counter() - t0, label


def pass_pot(x, y, eps):
    """POT's lazy loop, one iteration (2 passes) / 2; at n > 1e4 on 1000 source rows, scaled."""
    n = x.shape[0]
    scale = 1.0
    if n > 10_000:
        x = x[:POT_ROWS_SCALED]
        scale = n / POT_ROWS_SCALED
    bs = int(max(1, min(x.shape[0], y.shape[0], POT_BLOCK // y.shape[0])))

    def run():
        return ot.bregman.empirical_sinkhorn(
            x, y, eps, isLazy=True, batchSize=bs, numIterMax=1, warn=False
        )

    label = f"lazy, batchSize {bs}" + (f", scaled x{scale:g}" if scale != 1.0 else "")
    return run, 0.0, label, 0.5 * scale


# ------------------------------------------------------------------ sections


def run_solves(n, dtype, rounds, mods, peers) -> list[dict]:
    x64, y64 = clouds(n)
    x, y = x64.astype(dtype), y64.astype(dtype)
    batch = None if n * n <= transport._DENSE_MAX_ELEMENTS else OTT_BATCH
    solvers = [("mfnn", "", solver_mfnn(x, y, EPS))]
    if mods is not None:
        solvers.append(("ott", "", solver_ott(mods, x, y, EPS, batch_size=batch, schedule=False)))
        solvers.append(
            ("ott", "+sched", solver_ott(mods, x, y, EPS, batch_size=batch, schedule=True))
        )
    if "pot" in peers:
        solvers.append(("pot", "", solver_pot(x, y, EPS)))
    rows = {}
    for lib, variant, fn in solvers:  # first calls: compilation, not a round
        t, out = timed(fn)
        rows[lib + variant] = {
            "n": n,
            "dtype": str(np.dtype(dtype)),
            "library": lib,
            "variant": variant or "default",
            "s_first_call": t,
            "times": [],
            **out,
            "ott_batch_size": batch if lib == "ott" else None,
        }
        print(f"  first call {lib + variant:>10}: {t:8.3g} s", flush=True)
    for _ in range(rounds):
        for lib, variant, fn in solvers:
            if lib == "pot":  # no compilation: its first call is a round; one is enough
                continue
            t, _ = timed(fn)
            rows[lib + variant]["times"].append(t)
    out = []
    for row in rows.values():
        row["s"] = min(row["times"]) if row["times"] else row["s_first_call"]
        row["rounds"] = len(row["times"]) or 1
        out.append(row)
    ref = rows["mfnn"]["value"]
    for row in out:
        row["rel_diff_vs_mfnn"] = rel(row["value"], ref)
    return out


def references(n, mods) -> dict:
    x, y = clouds(n)
    ref = {"mfnn": solver_mfnn(x, y, EPS, tol=REF_TOL)()}
    if mods is not None:
        ref["ott"] = solver_ott(mods, x, y, EPS, batch_size=None, schedule=False, tol=REF_TOL)()
    return {"n": n, "dtype": "float64", "tol": REF_TOL, **ref}


def run_passes(n, mods, peers) -> list[dict]:
    x64, y64 = clouds(n)
    x, y = x64.astype(np.float32), y64.astype(np.float32)
    jobs = [("mfnn", *pass_mfnn(x, y, EPS), 1.0)]
    if n * n > transport._DENSE_MAX_ELEMENTS:  # the same kernel with larger blocks
        jobs.append((f"mfnn[{MFNN_ALT_ROWS} rows]", *pass_mfnn(x, y, EPS, MFNN_ALT_ROWS), 1.0))
    if mods is not None:
        batch = None if n * n <= transport._DENSE_MAX_ELEMENTS else OTT_BATCH
        jobs.append(("ott", *pass_ott(mods, x, y, EPS, batch), 1.0))
    if "pot" in peers:
        jobs.append(("pot", *pass_pot(x, y, EPS)))
    reps = 3 if n <= 10_000 else 1
    calls = 20 if n <= 1000 else 1  # calls per timing: short calls are at the mercy of the load
    best = {lib: float("inf") for lib, *_ in jobs}
    for _ in range(reps):  # round-robin
        for lib, fn, _c, _l, factor in jobs:
            t, _ = timed(lambda fn=fn: [block(fn) for _ in range(calls)])
            best[lib] = min(best[lib], t * factor / calls)
    return [
        {
            "n": n,
            "dtype": "float32",
            "library": lib,
            "kernel": label,
            "pass_s": best[lib],
            "compile_s": c,
            "entries_per_s": n * n / best[lib],
            "repeats": reps,
            "calls_per_repeat": calls,
        }
        for lib, _fn, c, label, _f in jobs
    ]


def extrapolate(solves: list[dict], passes: list[dict]) -> list[dict]:
    """Solve time at sizes not solved: solve(n_ref) x pass(n) / pass(n_ref), float32.

    Only from an n_ref solved with the cost formed on the fly (n_ref^2 > 4M): a solve
    that keeps the dense cost runs a different, cheaper kernel than the passes above it.
    """
    out = []
    pass_s = {(p["library"], p["n"]): p["pass_s"] for p in passes}
    keys = {(r["library"], r["variant"]) for r in solves}
    for lib, variant in sorted(keys):
        done = [r for r in solves if (r["library"], r["variant"]) == (lib, variant)]
        done = [r for r in done if r["dtype"] == "float32" and (lib, r["n"]) in pass_s]
        if not done:
            continue
        base = max(done, key=lambda r: r["n"])
        if base["n"] ** 2 <= transport._DENSE_MAX_ELEMENTS:
            continue
        for p in passes:
            if p["library"] != lib or p["n"] <= base["n"]:
                continue
            factor = p["pass_s"] / pass_s[(lib, base["n"])]
            out.append(
                {
                    "n": p["n"],
                    "library": lib,
                    "variant": variant,
                    "s_estimate": base["s"] * factor,
                    "from_n": base["n"],
                    "from_s": base["s"],
                    "pass_ratio": factor,
                    "iterations_at_from_n": base["iterations"],
                }
            )
    return out


def _fmt(v, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:>{width}{spec}}"


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10^3 solves, 10^4 passes")
    parser.add_argument("--sections", default="solve,pass")
    parser.add_argument("--peers", default="ott,pot", help="comma list of ott, pot")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    sections = set(args.sections.split(","))
    peers = set(args.peers.split(","))
    mods = None
    if "ott" in peers:
        mods, why = import_ott()
        if mods is None:
            print(f"note: ott-jax not importable ({why}); ott rows skipped (pip install ott-jax)")
    t_start = time.perf_counter()
    result: dict = {
        "machine": {
            "platform": platform.platform(),
            "backend": jax.default_backend(),
            "cpu_count": os.cpu_count(),
            "loadavg_start": _loadavg(),
        },
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "numpy": np.__version__,
            "pot": ot.__version__,
            "ott-jax": mods["version"] if mods else None,
        },
        "mode": "quick" if args.quick else "full",
        "settings": {
            "D": D,
            "problem": "independent (bench_transport.make_pair), centred",
            "epsilon": EPS,
            "tol": TOL,
            "max_iter": MAX_ITER,
            "reference_tol": REF_TOL,
            "ott_batch_size": OTT_BATCH,
            "pot_block_numbers": POT_BLOCK,
            "criteria": {
                "mfnn": "max(row, column) L1 marginal error <= tol, every iteration",
                "ott": "L1 column marginal error (symmetric: rows + columns) < tol, "
                "every 10 iterations",
                "pot": "L1 row marginal error <= tol, every 10 iterations",
            },
        },
    }
    solves: list[dict] = []
    if "solve" in sections:
        n_ref = min(n for _, n in plan["solve"])
        refs = None
        if plan["references"]:
            t0 = time.perf_counter()
            refs = result["references"] = references(n_ref, mods)
            print(
                f"reference n = {n_ref}, float64, tol {REF_TOL:g}: S_eps mfnn "
                f"{refs['mfnn']['value']:.9g}"
                + (f", ott {refs['ott']['value']:.9g}" if "ott" in refs else "")
                + f" ({time.perf_counter() - t0:.1f} s)"
            )
        solve_peers = peers if plan["pot_solve"] else peers - {"pot"}
        if "pot" in peers and not plan["pot_solve"]:
            print("note: --quick skips POT's solves (15-40 s at 10^3); its passes are timed")
        print(f"\nS_eps, eps = {EPS:g} (absolute), tol = {TOL:g} (L1 marginal), D = {D}")
        for dtype, n in plan["solve"]:
            print(f"n = {n}, {dtype}", flush=True)
            rows = run_solves(n, np.dtype(dtype), plan["rounds"][n], mods, solve_peers)
            for r in rows:
                r["rel_err_vs_reference"] = (
                    rel(r["value"], refs["mfnn"]["value"]) if refs and n == n_ref else None
                )
            solves += rows
        result["solves"] = solves
        print(
            f"\n{'n':>7} {'dtype':>8} {'library':>10} {'s':>8} {'1st call':>9} "
            f"{'iters xy/xx/yy':>15} {'error':>8} {'conv':>5} {'S_eps':>11} "
            f"{'vs mfnn':>8} {'vs ref':>8}"
        )
        for r in solves:
            its = "/".join(str(i) for i in r["iterations"])
            name = r["library"] + r["variant"].replace("default", "")
            print(
                f"{r['n']:>7} {r['dtype']:>8} {name:>10} "
                f"{r['s']:>8.3g} {r['s_first_call']:>9.3g} {its:>15} {r['error']:>8.2g} "
                f"{str(r['converged']):>5} {r['value']:>11.7g} "
                f"{_fmt(r['rel_diff_vs_mfnn'], '.1e', 8)} "
                f"{_fmt(r['rel_err_vs_reference'], '.1e', 8)}",
                flush=True,
            )
    if "pass" in sections:
        passes: list[dict] = []
        print("\none log-sum-exp pass over the (n, n) kernel, float32")
        print(f"{'n':>7} {'library':>15} {'pass s':>9} {'entries/s':>10} {'compile s':>9}  kernel")
        for n in plan["pass"]:
            for p in run_passes(n, mods, peers):
                passes.append(p)
                print(
                    f"{p['n']:>7} {p['library']:>15} {p['pass_s']:>9.3g} "
                    f"{p['entries_per_s']:>10.3g} {p['compile_s']:>9.3g}  {p['kernel']}",
                    flush=True,
                )
        result["passes"] = passes
        if solves:
            result["extrapolated"] = extrapolate(solves, passes)
            print("\nsolve time where not run: solve(n_ref) x pass(n) / pass(n_ref)")
            if not result["extrapolated"]:
                print("  none: no solve with the cost formed on the fly (n >= 10^4) to scale")
            for e in result["extrapolated"]:
                name = e["library"] + e["variant"].replace("default", "")
                print(
                    f"{e['n']:>7} {name:>10} ~{e['s_estimate']:.3g} s "
                    f"(from n = {e['from_n']}: {e['from_s']:.3g} s x {e['pass_ratio']:.3g})"
                )
    result["machine"]["loadavg_end"] = _loadavg()
    result["machine"]["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["wall_s"] = time.perf_counter() - t_start
    print(
        f"\ntotal {result['wall_s']:.1f} s; load {result['machine']['loadavg_start']} -> "
        f"{result['machine']['loadavg_end']}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
