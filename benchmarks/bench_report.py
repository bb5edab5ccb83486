"""How long a report takes: `mfnn report RUN_DIR` on a run with 100 snapshots of 10^4
particles (the issue's target: under 10 s on 2 cores), and the size of what it writes.

    python benchmarks/bench_report.py [--width 10000] [--snapshots 100] [--out results.json]

The run is a real one (`mfnn.runs.execute`: a two-layer ReLU network with bias fitting
sign(x), d = 1, so the animation is the breakpoint view); the report is timed as the
command a user types (a fresh process: imports included) and, in process, its two parts
(the page with its inline metric charts, the animation). Each timing is the best of ``--rounds``.
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


def make_run(out: Path, width: int, snapshots: int) -> Path:
    from mfnn import config, runs

    every = 10
    steps = every * snapshots
    raw = {
        "name": "bench_report",
        "model": {"width": width, "activation": "relu", "bias": True},
        "data": {"target": "sign", "n_train": 256, "n_test": 0},
        "dynamics": {"dt": 0.05, "steps": steps},
        "record": {"every": every, "snapshot_every": every},
    }
    runs.execute(config.load(raw), out, progress=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=10_000)
    parser.add_argument("--snapshots", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from mfnn.report import write_report

    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp) / "run", args.width, args.snapshots)
        n_snap = len(list((run / "snapshots").glob("*.npz")))
        mfnn = Path(sys.executable).with_name("mfnn")
        env = dict(os.environ, MFNN_REPORT="on")
        cli, inproc, page_only = [], [], []
        for _ in range(args.rounds):
            t = time.perf_counter()
            subprocess.run([str(mfnn), "report", str(run)], check=True, env=env,
                           capture_output=True)  # fmt: skip
            cli.append(time.perf_counter() - t)
            t = time.perf_counter()
            write_report(run)
            inproc.append(time.perf_counter() - t)
            t = time.perf_counter()
            write_report(run, animate=False)
            page_only.append(time.perf_counter() - t)
        anim = next((run / "report").glob("particles.*"))
        result = {
            "machine": f"{platform.node()} ({os.cpu_count()} cpus)",
            "width": args.width,
            "snapshots": n_snap,
            "mfnn_report_cli_s": min(cli),
            "write_report_s": min(inproc),
            "page_without_animation_s": min(page_only),
            "animation_s": min(inproc) - min(page_only),
            "animation_file": anim.name,
            "animation_bytes": anim.stat().st_size,
            "report_html_bytes": (run / "report.html").stat().st_size,
            "rounds": args.rounds,
        }
    print(json.dumps(result, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
