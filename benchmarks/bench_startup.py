"""Cold start: what a user waits for before the first step, as ratios to `import jax`.

Every command runs in a fresh interpreter, round-robin with the baseline, ``--rounds``
times; the median wall time of each is kept and divided by the median of the baseline
``python -c "import jax"`` of the same run (so a loaded machine moves both):

- ``mfnn --help`` and ``mfnn experiments`` (a listing: no JAX is imported), and
  ``mfnn experiments sign`` (one experiment's claim, params and checks);
- a tiny run, ``mfnn run CONFIG`` (the teacher_sgd example at m = 64, 100 steps, no report),
  first with an empty persistent compilation cache (``MFNN_CACHE_DIR`` a new folder:
  everything compiles) and then repeated with the same cache (the compiled programs are
  read back from disk), and the repeated run with the cache turned off
  (``MFNN_CACHE_DIR=off``: what the cache saves).

Targets (issue 17): ``mfnn experiments`` <= 1.0x, a repeated tiny run <= 3.0x.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_startup.py                   # ~2 min on 2 cores
    .venv/bin/python benchmarks/bench_startup.py --rounds 3 --out benchmarks/results/x.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.width=64", "dynamics.steps=100", "record.every=10", "record.snapshot_every=50"]
TARGETS = {"experiments": 1.0, "tiny_run_repeated": 3.0}


def mfnn_command() -> str:
    exe = Path(sys.executable).parent / "mfnn"
    found = str(exe) if exe.exists() else shutil.which("mfnn")
    if found is None:
        raise SystemExit("no `mfnn` command next to this Python or on PATH: pip install -e .")
    return found


def wall(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from start to exit of ``argv``; raises if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}:\n{tail}")
    return elapsed


def commands(tmp: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (argv, environment). The tiny runs write into ``tmp``."""
    mfnn = mfnn_command()
    base = {**os.environ, "MFNN_REPORT": "off"}
    warm = {**base, "MFNN_CACHE_DIR": str(tmp / "cache")}
    off = {**base, "MFNN_CACHE_DIR": "off"}
    run = [mfnn, "run", str(ROOT / "examples" / "teacher_sgd.yaml"), "--no-progress"]
    run += ["--no-report", "--overwrite"]
    run += [a for s in TINY for a in ("--set", s)]
    return {
        "import_jax": ([sys.executable, "-c", "import jax"], base),
        "help": ([mfnn, "--help"], base),
        "experiments": ([mfnn, "experiments"], base),
        "experiments_sign": ([mfnn, "experiments", "sign"], base),
        "tiny_run_repeated": ([*run, "--out", str(tmp / "warm")], warm),
        "tiny_run_no_cache": ([*run, "--out", str(tmp / "off")], off),
    }


def bench(rounds: int, log) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        cmds = commands(tmp)
        argv, env = cmds["tiny_run_repeated"]
        out = {"tiny_run_first_s": wall([*argv[:-1], str(tmp / "first")], env)}  # fills cache
        log(f"tiny run, empty cache: {out['tiny_run_first_s']:.2f} s")
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for r in range(rounds):
            for name, (argv, env) in cmds.items():
                times[name].append(wall(argv, env))
            log(
                f"round {r + 1}/{rounds}: "
                + ", ".join(f"{k} {v[-1]:.2f}" for k, v in times.items())
            )
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["import_jax"]
    out |= {f"{k}_s": v for k, v in med.items()}
    out["tiny_run_first_ratio"] = out["tiny_run_first_s"] / base
    out |= {f"{k}_ratio": v / base for k, v in med.items() if k != "import_jax"}
    out["targets"] = {k: {"ratio": out[f"{k}_ratio"], "target": t, "met": out[f"{k}_ratio"] <= t}
                      for k, t in TARGETS.items()}  # fmt: skip
    out["times"] = times
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="round-robin rounds (median)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    meta = {"machine": platform.platform(), "python": platform.python_version(),
            "date": time.ctime(), "load": list(os.getloadavg()), "rounds": args.rounds}  # fmt: skip
    result = bench(args.rounds, lambda s: print(s, flush=True))
    print(f"\nmedian of {args.rounds} rounds, as ratios to `python -c 'import jax'` "
          f"({result['import_jax_s']:.2f} s):")  # fmt: skip
    for key in ("help", "experiments", "experiments_sign", "tiny_run_repeated",
                "tiny_run_no_cache", "tiny_run_first"):  # fmt: skip
        target = TARGETS.get(key)
        mark = "" if target is None else f"  (target <= {target}x)"
        print(f"  {key:<20} {result[key + '_s']:6.2f} s  {result[key + '_ratio']:5.2f}x{mark}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "result": result}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
