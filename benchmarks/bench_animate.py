"""`mfnn.animate.animate_run` at report size: 100 snapshots of 10^4 particles.

A synthetic run directory is written the way a run writes it (``config.yaml`` of a real
config: a two-layer ReLU network on R with bias, mean-field, a 3-atom teacher; one
``snapshots/step_XXXXXXXX.npz`` per snapshot with ``a``, ``w``, ``b``): the particles start
from the config's initial laws and drift towards the teacher's atoms (breakpoints and
slope changes gather), with a little noise, so the frames change the way a run's do.

Timed (best of ``--repeat`` calls; wall clock, and the process's CPU time, which a
shared machine's load disturbs less): ``animate_run`` as the report calls it (reading the
config and the snapshots, drawing, encoding), and its parts: reading the snapshots, and
`mfnn.animate.write_animation` (drawing + encoding). The import of `mfnn.animate` (jax and
matplotlib included) is timed once, in this process. Printed: seconds, the file's size,
its frame count; written as JSON to ``--out``.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_animate.py                       # GIF, 10^4 x 100
    .venv/bin/python benchmarks/bench_animate.py --fmt mp4              # needs ffmpeg
    .venv/bin/python benchmarks/bench_animate.py --particles 100000 --out /tmp/a.json
"""

from __future__ import annotations

import time

_t0 = time.perf_counter()
import mfnn.animate as animate  # noqa: E402

IMPORT_S = time.perf_counter() - _t0

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from mfnn import config  # noqa: E402
from mfnn.rundir import list_snapshots, snapshot_path  # noqa: E402

TEACHER = {"w": [[1.0], [-1.0], [2.0]], "b": [0.5, 0.0, -1.0], "alpha": [0.4, 0.3, 0.3]}


def make_run(run_dir: Path, particles: int, snapshots: int, every: int = 10) -> Path:
    """A run directory with ``snapshots`` snapshots of ``particles`` ReLU neurons."""
    raw = {
        "model": {"width": particles, "activation": "relu", "bias": True},
        "data": {"target": "teacher", "teacher": TEACHER, "inputs": {"dim": 1}},
        "dynamics": {"dt": 0.05, "steps": every * (snapshots - 1)},
        "record": {"every": every, "snapshot_every": every},
    }
    cfg = config.load(raw)
    (run_dir / "snapshots").mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config.dump(cfg))
    rng = np.random.default_rng(0)
    a0 = rng.normal(size=particles)
    w0 = rng.normal(size=particles)
    b0 = rng.uniform(-1.0, 1.0, size=particles)
    k = rng.integers(0, len(TEACHER["w"]), size=particles)
    w_t = np.asarray(TEACHER["w"])[k, 0] * np.sign(a0)
    b_t = np.asarray(TEACHER["b"])[k] * np.sign(a0)
    for i in range(snapshots):
        s = 1.0 - np.exp(-4.0 * i / max(snapshots - 1, 1))  # 0 -> ~1
        noise = 0.05 * rng.normal(size=(3, particles))
        np.savez(
            snapshot_path(run_dir, i * every),
            a=(a0 + noise[0]).astype(np.float64),
            w=((1 - s) * w0 + s * w_t + noise[1])[:, None],
            b=(1 - s) * b0 + s * b_t + noise[2],
        )
    return run_dir


def best(fn, repeat: int) -> tuple[float, float, object]:
    """(best wall seconds, this process's CPU seconds in that call, the last result)."""
    runs, out = [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        runs.append((time.perf_counter() - t0, time.process_time() - c0))
    wall, cpu = min(runs)
    return wall, cpu, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=10_000)
    parser.add_argument("--snapshots", type=int, default=100)
    parser.add_argument("--max-frames", type=int, default=100)
    parser.add_argument("--fmt", choices=animate.FORMATS, default="gif")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--keep", type=Path, default=None, help="build the run here, keep it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = make_run(args.keep or Path(tmp) / "run", args.particles, args.snapshots)
        kw = {"max_frames": args.max_frames, "fmt": args.fmt}
        total, cpu, path = best(lambda: animate.animate_run(run_dir, **kw), args.repeat)
        snaps = list_snapshots(run_dir)
        steps = sorted(snaps)
        steps = [steps[i] for i in animate._even_indices(len(steps), args.max_frames)]
        read, _, frames = best(lambda: [animate._read(snaps[s]) for s in steps], args.repeat)
        sc = animate.scene(run_dir, last=frames[-1])
        times = [s * 0.05 for s in steps]
        out = Path(tmp) / f"again{path.suffix}"
        draw, _, _ = best(lambda: animate.write_animation(sc, frames, times, out), args.repeat)
        size = path.stat().st_size
        n_frames = len(steps)
        if path.suffix == ".gif":
            from PIL import Image

            with Image.open(path) as im:
                n_frames = im.n_frames
    result = {
        "particles": args.particles,
        "snapshots": args.snapshots,
        "frames": n_frames,
        "format": path.suffix[1:],
        "animate_run_s": round(total, 3),
        "animate_run_cpu_s": round(cpu, 3),
        "read_snapshots_s": round(read, 3),
        "draw_and_encode_s": round(draw, 3),
        "import_s": round(IMPORT_S, 3),
        "bytes": size,
        "megabytes": round(size / 2**20, 2),
        "pixels": [int(v * animate.DPI) for v in animate.PANEL_INCHES],
        "cores": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg()[0],
        "machine": platform.platform(),
    }
    print(
        f"{args.snapshots} snapshots of {args.particles} particles -> {n_frames} frames "
        f"{result['format']}: animate_run {total:.2f} s ({cpu:.2f} s CPU; read {read:.2f} s, "
        f"draw + encode "
        f"{draw:.2f} s), {size / 2**20:.2f} MB; import {IMPORT_S:.2f} s "
        f"({result['cores']} cores, load {result['load_average']:.1f})"
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
