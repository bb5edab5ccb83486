"""Strong and weak scaling of one run whose particles are split across devices.

Problem: the full-batch two-layer step of `benchmarks/bench_step.py` (ReLU, mean_field
scaling, bias on, `Euler`, dt = 1e-3, square loss on x ~ N(0, I_d), y = sign(x_1)),
run by ``mfnn.simulate(..., devices=N)`` (`mfnn.sharding`: the particle axis split over
N devices, the data replicated, the sum over particles an all-reduce).

- strong scaling: m fixed, N = 1, 2, 4, ... devices; ideal speed-up N;
- weak scaling: m = m_1 N (the same particles per device); ideal: constant steps/s
  (efficiency = steps/s on N devices / steps/s of m_1 on one); its speed-up column is
  against one device running the same m.

Each device count runs in its own subprocess (JAX fixes its devices when it starts). On
a CPU the subprocess gets N host devices from
``XLA_FLAGS=--xla_force_host_platform_device_count=N``: they share the machine's cores,
so on a 2-core machine this shows the overhead of the split (partial sums, all-reduce,
N programs on 2 cores), not a speed-up. On a machine with N accelerators the subprocess
uses the first N real devices (``--platform gpu``).

Per row: steps/s of the loop (``loop``: the rate `simulate` reports to its progress
callback, the compiled chunk and its records, without the fixed cost of a call) and of the
whole call (``wall``: placement, the step-0 record, the gather of the final particles),
best of ``--rounds`` timed calls after a compiling one; the time of that first call
(compile + run); speed-up and efficiency against one device; and ``agree``, the largest
difference of the final particles from the one-device run, relative to their largest
entry (float32 round-off: ~1e-6; float64: ~1e-15).

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_sharding.py --out benchmarks/results/bench_sharding_cpu2.json
    python benchmarks/bench_sharding.py --platform gpu --counts 1,2,4,8 \\
        --m 1048576 --m-per-device 1048576 --n 4096 --d 16 --steps 200 --out gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
DT = 1e-3


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())


# ---------------------------------------------------------------- the worker side
def _worker(count: int, cases: list[dict], rounds: int, dtype: str, folder: Path) -> dict:
    """Time every case on ``count`` devices; save the final particles to ``folder``."""
    import jax

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    import mfnn
    from mfnn import DataSet, EmpiricalRisk, Euler, FullBatch, GradientFlow, Recorder, TwoLayer

    out = {
        "devices_seen": [str(d) for d in jax.devices()],
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "mfnn": mfnn.__version__,
        "rows": [],
    }
    for case in cases:
        n, m, d, steps = case["n"], case["m"], case["d"], case["steps"]
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, d)).astype(dtype)
        theta = rng.standard_normal((m, d + 2)).astype(dtype)
        data = DataSet(jnp.asarray(x), jnp.asarray(np.sign(x[:, 0])))
        net = TwoLayer(d=d, activation="relu", scaling="mean_field")
        flow = GradientFlow(net, EmpiricalRisk(data), FullBatch(data))
        rates: list[float] = []

        def call(flow=flow, theta=theta, steps=steps, rates=rates):
            return mfnn.simulate(
                flow, Euler(), theta, dt=DT, steps=steps, key=jax.random.key(0),
                recorder=Recorder(every=steps), chunk=steps, devices=count, guard=None,
                progress=lambda p: rates.append(p["steps_per_s"]),
            )  # fmt: skip

        t0 = time.perf_counter()
        traj = call()
        first_call_s = time.perf_counter() - t0  # compiles, then runs once
        walls, loops = [], []
        for _ in range(rounds):
            rates.clear()
            t0 = time.perf_counter()
            traj = call()
            walls.append(time.perf_counter() - t0)
            loops.append(rates[-1])
        name = f"m{m}_N{count}.npy"
        np.save(folder / name, np.asarray(traj.final))
        out["rows"].append(
            case | {
                "devices": count, "dtype": dtype, "first_call_s": first_call_s,
                "steps_per_s_wall": steps / min(walls), "steps_per_s_loop": max(loops),
                "final": name, "final_loss": float(traj["loss"][-1]),
            }
        )  # fmt: skip
    return out


# ---------------------------------------------------------------- the parent side
def _run_worker(count, cases, args, folder: Path) -> dict:
    env = dict(os.environ)
    if args.platform == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
    spec = json.dumps({"count": count, "cases": cases, "rounds": args.rounds,
                       "dtype": args.dtype, "folder": str(folder)})  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(HERE), "--worker", spec], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker on {count} devices failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--platform", choices=["cpu", "gpu"], default="cpu",
        help="cpu: N forced host devices; gpu: the first N real devices",
    )  # fmt: skip
    parser.add_argument("--counts", default="1,2,4", help="device counts, e.g. 1,2,4,8")
    parser.add_argument("--m", type=int, default=16384, help="strong scaling: the fixed m")
    parser.add_argument("--m-per-device", type=int, default=4096, help="weak scaling: m / N")
    parser.add_argument("--n", type=int, default=1024, help="training points (full batch)")
    parser.add_argument("--d", type=int, default=16, help="input dimension")
    parser.add_argument("--steps", type=int, default=40, help="steps per timed call")
    parser.add_argument("--rounds", type=int, default=3, help="timed calls (best kept)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--out", type=Path, help="write every number as JSON")
    args = parser.parse_args(argv)

    if args.worker:
        spec = json.loads(args.worker)
        res = _worker(spec["count"], spec["cases"], spec["rounds"], spec["dtype"],
                      Path(spec["folder"]))  # fmt: skip
        print(json.dumps(res))
        return 0

    import numpy as np

    counts = [int(c) for c in args.counts.split(",")]
    if 1 not in counts:
        counts = [1, *counts]
    start = {"loadavg": _loadavg(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    timed, workers = {}, {}  # (N, m) -> the worker's row
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for count in counts:
            sizes = {args.m, args.m_per_device * count}
            if count == 1:  # the one-device reference of every m (agreement, weak rows)
                sizes |= {args.m_per_device * c for c in counts}
            sizes = sorted(sizes)
            cases = [{"n": args.n, "d": args.d, "steps": args.steps, "m": m} for m in sizes]
            print(f"{count} device(s): m = {sizes} ...", flush=True)
            res = _run_worker(count, cases, args, folder)
            workers[count] = {k: v for k, v in res.items() if k != "rows"}
            for r in res["rows"]:
                timed[count, r["m"]] = r
        # agreement with the one-device run of the same m (its final particles)
        for (_, m), r in timed.items():
            if (1, m) in timed:
                a = np.load(folder / r["final"])
                b = np.load(folder / timed[1, m]["final"])
                r["agree"] = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    rows = []
    for count in counts:
        strong = timed[count, args.m] | {"mode": "strong"}
        one = timed[1, args.m]["steps_per_s_loop"]
        strong["speedup"] = strong["steps_per_s_loop"] / one
        strong["efficiency"] = strong["speedup"] / count
        weak = timed[count, args.m_per_device * count] | {"mode": "weak"}
        # weak: the same work per device: ideally the one-device rate, efficiency 1
        weak["efficiency"] = (
            weak["steps_per_s_loop"] / timed[1, args.m_per_device]["steps_per_s_loop"]
        )
        # and its speed-up against one device holding all m of it
        weak["speedup"] = weak["steps_per_s_loop"] / timed[1, weak["m"]]["steps_per_s_loop"]
        rows += [strong, weak]
    for r in [*timed.values(), *rows]:
        r.pop("final", None)

    print(
        f"\n{'mode':>6} {'N':>3} {'m':>8} {'loop st/s':>10} {'wall st/s':>10} "
        f"{'speedup':>8} {'eff.':>6} {'1st call s':>10} {'agree':>9}"
    )
    for r in sorted(rows, key=lambda r: (r["mode"], r["devices"])):
        print(
            f"{r['mode']:>6} {r['devices']:>3} {r['m']:>8} {r['steps_per_s_loop']:>10.1f} "
            f"{r['steps_per_s_wall']:>10.1f} {r.get('speedup', float('nan')):>8.2f} "
            f"{r.get('efficiency', float('nan')):>6.2f} {r['first_call_s']:>10.2f} "
            f"{r.get('agree', float('nan')):>9.2g}"
        )
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "bench_platform": args.platform,
            "workers": {str(k): v for k, v in workers.items()},
            "loadavg_start": start["loadavg"],
            "loadavg_end": _loadavg(),
            "time": start["time"],
        },
        "problem": "two-layer relu, mean_field, bias, full batch, Euler, dt 1e-3, y = sign(x_1)",
        "args": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k != "worker"
        },  # fmt: skip
        "rows": rows,
        # every timed (N, m), the one-device references of the weak sizes included
        "timed": sorted(timed.values(), key=lambda r: (r["devices"], r["m"])),
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
