"""W2 tools at scale: exact (assignment / network simplex), Sinkhorn divergence, sliced.

Two problems in D = 10, both from N(a, A) and N(b, B) (random means, covariances with
eigenvalues in about [0.3, 4]):

- ``independent``: x and y are independent samples of n points. The hard, typical case
  (two particle clouds not related by a map); the exact W2 is known only where an exact
  solver can run (n <= 5000), and the approximations are compared with it there.
- ``brenier``: y = T(x), T(x) = b + M (x - a) the optimal Gaussian map (M symmetric
  positive definite), rows of y shuffled. T is the gradient of a convex function, so the
  pairing x_i -> T(x_i) is optimal between the two empirical measures: the exact
  W2^2 = (1/n) sum_i |x_i - T(x_i)|^2 is KNOWN at every size, 1e6 points included. It is
  an EASY case for the solvers (the entropic plan is nearly the permutation already at
  the default epsilon in D = 10), so its times are not representative.

Sections (each number measured in the same run):

- exact: ``w2_exact`` (``scipy.optimize.linear_sum_assignment``) and POT's network simplex
  (``ot.emd2``, uniform weights), float64 on the host, n = 1000 and 5000;
- sinkhorn: ``w2_sinkhorn`` (debiased S_eps, default epsilon = 0.01 x spread, tol = 1e-3,
  max_iter = 2000) to convergence: independent n = 1000, 5000, 10^4 (relative error
  against exact where exact ran), brenier n = 10^4 (against the known value); at n = 10^5
  one pass over the kernel (the unit of work, the cost formed on the fly in row blocks) is
  timed and the time to converge extrapolated with the iterations of the largest
  independent run (marked "~"; an iteration is at most 4 passes: 2 for the cross
  problem, 1 for each symmetric one);
- sliced: ``w2_sliced`` (128 directions), independent n = 1000, 5000 against exact,
  brenier n = 10^6 against the known value. SW2 <= W2 is a lower bound, so the ratio
  SW2 / W2 is reported, not an error.

Sinkhorn and sliced run in ``--dtype`` (float32 by default, the precision used at scale).
Times: the best of 2 calls for small runs; a single call (compilation included, a few
seconds, also shown as "1st call") for large ones. The machine's load average at the
start is stored: on a shared machine absolute times are loose; compare within one run.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_transport.py --quick     # < 1 min on 2 cores
    .venv/bin/python benchmarks/bench_transport.py --out benchmarks/results/x.json
    .venv/bin/python benchmarks/bench_transport.py --sections exact,sliced
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import ot  # noqa: E402
from scipy.linalg import sqrtm  # noqa: E402
from scipy.spatial.distance import cdist  # noqa: E402

from mfnn.diagnostics import transport  # noqa: E402
from mfnn.diagnostics.transport import w2_exact, w2_sinkhorn, w2_sliced  # noqa: E402

D = 10
FULL = {
    "exact": (1000, 5000),
    "sinkhorn": (
        ("independent", 1000),
        ("independent", 5000),
        ("independent", 10_000),
        ("brenier", 10_000),
    ),
    "sinkhorn_pass": (100_000,),
    "sliced": (("independent", 1000), ("independent", 5000), ("brenier", 1_000_000)),
}
QUICK = {
    "exact": (500, 1000),
    "sinkhorn": (("independent", 500), ("independent", 1000), ("brenier", 2000)),
    "sinkhorn_pass": (10_000,),
    "sliced": (("independent", 1000), ("brenier", 100_000)),
}
TOL = 1e-3
MAX_ITER = 2000
N_PROJECTIONS = 128


def make_pair(kind: str, n: int, seed: int = 0):
    """(x, y, w2) for the problem ``kind``; w2 the exact W2 for brenier, else None."""
    rng = np.random.default_rng(seed)
    g, h = rng.standard_normal((D, D)), rng.standard_normal((D, D))
    A = g @ g.T / D + 0.5 * np.eye(D)
    B = h @ h.T / D + 0.3 * np.eye(D)
    a, b = rng.standard_normal(D), rng.standard_normal(D)
    x = a + rng.standard_normal((n, D)) @ np.linalg.cholesky(A).T
    if kind == "independent":
        y = b + rng.standard_normal((n, D)) @ np.linalg.cholesky(B).T
        return x, y, None
    ra = np.real(sqrtm(A))
    ria = np.linalg.inv(ra)
    M = ria @ np.real(sqrtm(ra @ B @ ra)) @ ria
    tx = b + (x - a) @ M.T
    w2 = float(np.sqrt(np.mean(np.sum((x - tx) ** 2, axis=1))))
    return x, tx[rng.permutation(n)], w2


def timed(fn, repeats: int = 1):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        jax.block_until_ready(out)
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_exact(kind: str, n: int) -> dict:
    x, y, known = make_pair(kind, n)
    rep = 2 if n <= 1000 else 1
    t_lsa, v_lsa = timed(lambda: w2_exact(x, y), rep)

    def simplex():
        u = np.full(n, 1.0 / n)
        return float(np.sqrt(ot.emd2(u, u, cdist(x, y, "sqeuclidean"), numItermax=10**8)))

    t_emd, v_emd = timed(simplex, rep)
    row = {
        "problem": kind,
        "n": n,
        "assignment": {"s": t_lsa, "w2": v_lsa},
        "network_simplex": {"s": t_emd, "w2": v_emd},
        "simplex_over_assignment": t_emd / t_lsa,
        "solvers_rel_diff": abs(v_emd - v_lsa) / v_lsa,
    }
    if known is not None:
        row["w2_known"] = known
        row["rel_err_vs_known"] = max(abs(v_lsa - known), abs(v_emd - known)) / known
    return row


def bench_sinkhorn(kind: str, n: int, dtype, exact: dict) -> dict:
    x, y, known = make_pair(kind, n)
    xd, yd = x.astype(dtype), y.astype(dtype)
    t0 = time.perf_counter()
    res = w2_sinkhorn(xd, yd, tol=TOL, max_iter=MAX_ITER, warn=False)
    first = time.perf_counter() - t0
    t = first
    if n <= 1000:  # a second, compiled call
        t, res = timed(lambda: w2_sinkhorn(xd, yd, tol=TOL, max_iter=MAX_ITER, warn=False))
    ref = known if known is not None else exact.get((kind, n), {}).get("w2")
    row = {
        "problem": kind,
        "n": n,
        "dtype": str(np.dtype(dtype)),
        "s": t,
        "s_first_call": first,
        "w2": res.value,
        "converged": res.converged,
        "iterations": res.iterations,
        "marginal_error": res.error,
        "epsilon": res.epsilon,
        "dense_cost": n * n <= transport._DENSE_MAX_ELEMENTS,
        "w2_reference": ref,
        "reference": "known" if known is not None else ("exact" if ref else None),
        "rel_err": abs(res.value - ref) / ref if ref else None,
    }
    if (kind, n) in exact:
        row["exact_s"] = exact[(kind, n)]["s"]
        row["s_over_exact"] = t / row["exact_s"]
    return row


def bench_sinkhorn_pass(n: int, dtype, iterations: int | None, source: str | None) -> dict:
    """One log-sum-exp pass over the (n, n) kernel, cost formed on the fly in blocks."""
    x, y, _ = make_pair("independent", n)
    centre = 0.5 * (x.mean(0) + y.mean(0))
    xd, yd = jnp.asarray(x - centre, dtype), jnp.asarray(y - centre, dtype)
    rows = int(max(1, min(n, transport._BLOCK_ELEMENTS // n)))
    spread = 0.5 * (np.mean(np.sum((x - centre) ** 2, 1)) + np.mean(np.sum((y - centre) ** 2, 1)))
    eps = jnp.asarray(0.01 * spread, dtype)  # the default epsilon of w2_sinkhorn
    loga = jnp.full((n,), -np.log(n), dtype)
    t0 = time.perf_counter()
    one_pass = (
        jax.jit(lambda a: transport._softmin_blocks(xd, yd, a, eps, rows)).lower(loga).compile()
    )
    t_compile = time.perf_counter() - t0
    t, _ = timed(lambda: one_pass(loga))
    row = {
        "problem": "independent",
        "n": n,
        "dtype": str(np.dtype(dtype)),
        "pass_s": t,
        "compile_s": t_compile,
        "block_rows": rows,
        "entries_per_s": n * n / t,
    }
    if iterations:
        # per iteration at most 4 passes (cross: 2; each symmetric problem: 1), + 1 final
        row["iterations_assumed"] = iterations
        row["iterations_from"] = source
        row["extrapolated_s"] = (4 * iterations + 1) * t
    return row


def bench_sliced(kind: str, n: int, dtype, exact: dict) -> dict:
    x, y, known = make_pair(kind, n)
    xd, yd = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    key = jax.random.key(0)
    t0 = time.perf_counter()
    v = float(w2_sliced(xd, yd, key, N_PROJECTIONS))
    first = time.perf_counter() - t0
    t = first
    if n <= 100_000:
        t, _ = timed(lambda: w2_sliced(xd, yd, key, N_PROJECTIONS))
    v2 = float(w2_sliced(xd, yd, jax.random.key(1), N_PROJECTIONS)) if n <= 100_000 else None
    ref = known if known is not None else exact.get((kind, n), {}).get("w2")
    return {
        "problem": kind,
        "n": n,
        "dtype": str(np.dtype(dtype)),
        "n_projections": N_PROJECTIONS,
        "s": t,
        "s_first_call": first,
        "sw2": v,
        "sw2_other_key": v2,
        "w2_reference": ref,
        "reference": "known" if known is not None else ("exact" if ref else None),
        "sw2_over_w2": v / ref if ref else None,
        "other_key_over_w2": v2 / ref if (ref and v2) else None,
    }


def _fmt(v, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:>{width}{spec}}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, < 1 min")
    parser.add_argument("--dtype", default="float32", help="Sinkhorn and sliced dtype")
    parser.add_argument("--sections", default="exact,sinkhorn,sliced")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    sections = set(args.sections.split(","))
    dtype = np.dtype(args.dtype)
    t_start = time.perf_counter()
    result: dict = {
        "machine": {
            "platform": platform.platform(),
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "cpu_count": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
        },
        "mode": "quick" if args.quick else "full",
        "D": D,
        "settings": {"tol": TOL, "max_iter": MAX_ITER, "n_projections": N_PROJECTIONS},
    }
    exact: dict = {}
    if "exact" in sections:
        result["exact"] = []
        print(f"exact W2 (float64, host), D = {D}")
        print(
            f"{'problem':>12} {'n':>8} {'assign s':>9} {'simplex s':>10} {'simplex/assign':>14} "
            f"{'W2':>8} {'rel diff':>9} {'vs known':>9}"
        )
        for n in sizes["exact"]:
            for kind in ("independent", "brenier"):
                r = bench_exact(kind, n)
                result["exact"].append(r)
                exact[(kind, n)] = r["assignment"]
                print(
                    f"{kind:>12} {n:>8} {r['assignment']['s']:>9.3g} "
                    f"{r['network_simplex']['s']:>10.3g} {r['simplex_over_assignment']:>14.3g} "
                    f"{r['assignment']['w2']:>8.4g} {r['solvers_rel_diff']:>9.1e} "
                    f"{_fmt(r.get('rel_err_vs_known'), '.1e', 9)}",
                    flush=True,
                )
    if "sinkhorn" in sections:
        result["sinkhorn"] = []
        print(f"\nSinkhorn divergence ({dtype}), tol = {TOL:g}, default epsilon")
        print(
            f"{'problem':>12} {'n':>8} {'s':>9} {'1st call':>9} {'iters':>6} {'conv':>5} "
            f"{'eps':>7} {'rel err':>9} {'vs':>6} {'s/exact':>8}"
        )
        for kind, n in sizes["sinkhorn"]:
            r = bench_sinkhorn(kind, n, dtype, exact)
            result["sinkhorn"].append(r)
            print(
                f"{kind:>12} {n:>8} {r['s']:>9.3g} {r['s_first_call']:>9.3g} "
                f"{r['iterations']:>6d} {str(r['converged']):>5} {r['epsilon']:>7.3g} "
                f"{_fmt(r['rel_err'], '.1e', 9)} {str(r['reference']):>6} "
                f"{_fmt(r.get('s_over_exact'), '.3g', 8)}",
                flush=True,
            )
        indep = [r for r in result["sinkhorn"] if r["problem"] == "independent"]
        its = indep[-1]["iterations"] if indep else None
        source = f"independent n = {indep[-1]['n']}" if indep else None
        result["sinkhorn_pass"] = []
        for n in sizes["sinkhorn_pass"]:
            r = bench_sinkhorn_pass(n, dtype, its, source)
            result["sinkhorn_pass"].append(r)
            line = f"{n:>21} one pass {r['pass_s']:.3g} s ({r['entries_per_s']:.3g} entries/s)"
            if "extrapolated_s" in r:
                line += f"; to converge ~{r['extrapolated_s']:.3g} s (~{its} its, {source})"
            print(line, flush=True)
    if "sliced" in sections:
        result["sliced"] = []
        print(f"\nsliced W2 ({dtype}), {N_PROJECTIONS} directions")
        print(
            f"{'problem':>12} {'n':>8} {'s':>9} {'1st call':>9} {'SW2/W2':>8} {'other key':>10} "
            f"{'vs':>6}"
        )
        for kind, n in sizes["sliced"]:
            r = bench_sliced(kind, n, dtype, exact)
            result["sliced"].append(r)
            print(
                f"{kind:>12} {n:>8} {r['s']:>9.3g} {r['s_first_call']:>9.3g} "
                f"{_fmt(r['sw2_over_w2'], '.4f', 8)} {_fmt(r['other_key_over_w2'], '.4f', 10)} "
                f"{str(r['reference']):>6}",
                flush=True,
            )
    result["wall_s"] = time.perf_counter() - t_start
    print(f"\ntotal {result['wall_s']:.1f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
