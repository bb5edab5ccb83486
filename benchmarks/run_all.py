"""Run every benchmark, one after the other, then re-render the README tables.

Each script runs in a fresh process (imports, JAX start-up and compilation are its own)
and never concurrently with another: they time things. Each writes
``results/<script>_<tag>.json`` (``JOBS`` names the exceptions), with the options of the
runs the READMEs quote; ``tag`` is ``cpu<N>`` (N = os.cpu_count()) or, when JAX sees a
GPU, the GPU's model (``h100``, as the stored ``*_h100.json``), unless ``--tag`` says.
After a script ends its JSON gets a ``_run_all`` stamp (date, load averages, command,
wall time, exit code). A script that fails is logged and the others still run; the exit
code is then 1.

    .venv/bin/python benchmarks/run_all.py                          # everything (hours on 2 cores)
    .venv/bin/python benchmarks/run_all.py --only pde,kernels --tag cpu2
    .venv/bin/python benchmarks/run_all.py --quick --only startup,online   # a smoke run
    .venv/bin/python benchmarks/run_all.py --dry-run                # print the commands

``--quick`` passes each script's quick options (``--quick`` where it has one, small sizes
otherwise) and writes into a temporary folder unless ``--out-dir`` is given; the tables
are then rendered from that folder into ``<out-dir>/README.md``, and the README itself is
re-rendered only from ``benchmarks/results``. Each script's output is logged to
``runs/bench/<tag>/<name>.log`` (``<out-dir>/logs`` for another out-dir), with a summary
``run_all.log`` there.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"


@dataclass(frozen=True)
class Job:
    """One benchmark run: ``script`` (in benchmarks/) with the options ``args`` (a shell
    word list); on a GPU with ``gpu_args`` instead where given; with ``--quick``,
    ``quick`` instead. ``out``: the result's file name (``{stem}`` the script's,
    ``{tag}`` the machine tag)."""

    name: str
    script: str
    args: str = ""
    gpu_args: str | None = None
    quick: str = ""
    out: str = "{stem}_{tag}.json"


# in the order they run; the options are those of the stored runs the READMEs quote
# fmt: off
JOBS: tuple[Job, ...] = (
    Job("step", "bench_step.py", gpu_args="--steps 2000 --no-startup",
        quick="--sizes small --steps 20 --dtypes float32 --no-startup"),
    Job("population", "bench_population.py", quick="--dtypes float32"),
    Job("transport", "bench_transport.py", quick="--quick"),
    Job("sweep", "bench_sweep.py", quick="--quick --sections seeds,kernel"),
    Job("sweep_chaos", "bench_sweep.py", args="--sections chaos --chaos default",
        quick="--quick --sections chaos", out="bench_sweep_chaos_{tag}.json"),
    Job("deep", "bench_deep.py", args="--steps 20 --rounds 3",
        quick="--steps 10 --rounds 1 --dtypes float32"),
    Job("adaptive", "bench_adaptive.py", quick="--quick"),
    Job("online", "bench_online.py", args="--steps 40000 --rounds 7",
        quick="--steps 2000 --langevin-steps 2000 --rounds 1 --dtypes float32"),
    Job("kernels", "bench_kernels.py", args="--n 10000 --rounds 2",
        quick="--n 500 --n-test 100 --rounds 1"),
    Job("pde", "bench_pde.py", quick="--quick"),
    Job("pde_1thread", "bench_pde.py", args="--single-thread",
        quick="--quick --single-thread", out="bench_pde_{tag}_1thread.json"),
    Job("report", "bench_report.py", args="--rounds 3",
        quick="--width 1000 --snapshots 10 --rounds 1"),
    Job("animate", "bench_animate.py",
        quick="--particles 1000 --snapshots 10 --max-frames 10 --repeat 1"),
    Job("sharding", "bench_sharding.py", args="--rounds 4",
        gpu_args="--platform gpu --counts {gpu_counts} --rounds 4",
        quick="--counts 1,2 --m 1024 --m-per-device 512 --steps 5 --rounds 1"),
    Job("startup", "bench_startup.py", quick="--rounds 1"),
    Job("sinkhorn", "bench_sinkhorn.py", quick="--quick"),
)
# fmt: on


@dataclass(frozen=True)
class Machine:
    platform: str  # "cpu" or "gpu"
    device_kind: str = ""
    device_count: int = 1


def detect_machine(python: str) -> Machine:
    """What JAX sees, asked in a subprocess (this process must not hold the GPU while the
    benchmarks run); CPU if JAX does not start."""
    code = (
        "import jax; d = jax.devices(); "
        "print(jax.default_backend()); print(len(d)); print(d[0].device_kind)"
    )
    try:
        res = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=300, check=True
        )
        backend, count, kind = res.stdout.strip().splitlines()[-3:]
    except (subprocess.SubprocessError, OSError, ValueError):
        return Machine("cpu")
    return Machine("gpu" if backend in ("gpu", "cuda", "rocm") else "cpu", kind, int(count))


def machine_tag(machine: Machine, cpu_count: int | None = None) -> str:
    """``cpu<N>``; on a GPU its model in lower case (``NVIDIA H100 80GB HBM3`` -> ``h100``),
    ``gpu`` when the name has no model number."""
    if machine.platform != "gpu":
        return f"cpu{cpu_count or os.cpu_count() or 1}"
    name = re.sub(r"\b(NVIDIA|Tesla|GeForce|AMD|Instinct|Radeon)\b", " ", machine.device_kind)
    m = re.search(r"\b([A-Za-z]{1,3}\d{1,4}[A-Za-z]?)\b", name)
    return m.group(1).lower() if m else "gpu"


def command(job: Job, *, python: str, out_dir: Path, tag: str, machine: Machine, quick: bool):
    """The command line of one job and its result's path."""
    if quick:
        args = job.quick
    elif machine.platform == "gpu" and job.gpu_args is not None:
        args = job.gpu_args
    else:
        args = job.args
    counts = ",".join(str(2**k) for k in range(8) if 2**k <= machine.device_count)
    args = shlex.split(args.replace("{gpu_counts}", counts))
    out = out_dir / job.out.format(stem=Path(job.script).stem, tag=tag)
    return [python, _show(HERE / job.script), *args, "--out", _show(out)], out


def _show(path: Path) -> str:
    """A path relative to the repository root when it lies inside it."""
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def select(jobs: tuple[Job, ...], only: str | None, skip: str | None) -> list[Job]:
    names = [j.name for j in jobs]
    picked = set(names)
    for flag, value in (("--only", only), ("--skip", skip)):
        if value is None:
            continue
        given = {s.strip() for s in value.split(",") if s.strip()}
        unknown = given - set(names)
        if unknown:
            raise SystemExit(
                f"{flag}: unknown {', '.join(sorted(unknown))} (known: {', '.join(names)})"
            )
        picked = picked & given if flag == "--only" else picked - given
    return [j for j in jobs if j.name in picked]


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def run_one(cmd: list[str], log: Path) -> tuple[int, float]:
    """Run ``cmd`` from the repository root; its output goes to the console and ``log``."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as f:
        f.write("$ " + shlex.join(cmd) + "\n")
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                f.write(line)
            code = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
    return code, time.perf_counter() - start


def stamp(out: Path, info: dict) -> bool:
    """Add ``info`` as ``_run_all`` to the result's JSON object (atomically)."""
    try:
        doc = json.loads(out.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(doc, dict):
        return False
    doc["_run_all"] = info
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, out)
    return True


def _tables():
    spec = importlib.util.spec_from_file_location("bench_tables", HERE / "tables.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", help="result file tag (default: cpu<N> or the GPU model)")
    parser.add_argument("--only", help="comma-separated job names (see --list)")
    parser.add_argument("--skip", help="comma-separated job names to leave out")
    parser.add_argument("--quick", action="store_true", help="each script's smoke options")
    parser.add_argument("--out-dir", type=Path, help="where the JSON goes")
    parser.add_argument("--log-dir", type=Path, help="where each script's output goes")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--list", action="store_true", help="print the job names")
    parser.add_argument("--no-tables", action="store_true", help="do not re-render tables")
    parser.add_argument(
        "--platform",
        choices=("cpu", "gpu"),
        help="skip detection (it starts JAX in a subprocess): the GPU options, and the tag",
    )
    parser.add_argument("--python", default=sys.executable, help="the interpreter to run")
    args = parser.parse_args(argv)
    if args.list:
        for j in JOBS:
            print(f"{j.name:<12} {j.script} {j.args}")
        return 0
    jobs = select(JOBS, args.only, args.skip)
    if args.platform == "cpu":
        machine = Machine("cpu")
    elif args.platform == "gpu" and args.dry_run:
        machine = Machine("gpu")
    else:
        machine = detect_machine(args.python)
        if args.platform == "gpu":
            machine = Machine("gpu", machine.device_kind, machine.device_count)
    tag = args.tag or machine_tag(machine)
    if not re.fullmatch(r"[\w.-]+", tag):
        parser.error(f"--tag must be letters, digits, '_', '-', '.', got {tag!r}")
    if args.out_dir is not None:
        out_dir = args.out_dir
    elif args.quick:
        out_dir = Path(tempfile.mkdtemp(prefix="mfnn-bench-quick-"))
    else:
        out_dir = RESULTS
    default_out = out_dir.resolve() == RESULTS.resolve()
    log_dir = args.log_dir or (ROOT / "runs" / "bench" / tag if default_out else out_dir / "logs")
    cmds = [
        (j, *command(j, python=args.python, out_dir=out_dir, tag=tag, machine=machine,
                     quick=args.quick))
        for j in jobs
    ]  # fmt: skip
    if args.dry_run:
        for _, cmd, _ in cmds:
            print(shlex.join(cmd))
        return 0

    out_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"{len(cmds)} benchmark(s), tag {tag}, results in {out_dir}, logs in {log_dir}")
    summary = []
    for job, cmd, out in cmds:
        print(f"\n=== {job.name}: {shlex.join(cmd)}", flush=True)
        before = out.stat().st_mtime_ns if out.exists() else None
        info = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "tag": tag,
            "command": cmd[1:],
            "quick": args.quick,
            "cpu_count": os.cpu_count(),
            "load_start": _loadavg(),
        }
        code, wall = run_one(cmd, log_dir / f"{job.name}.log")
        written = out.exists() and out.stat().st_mtime_ns != before
        info |= {"load_end": _loadavg(), "wall_s": round(wall, 2), "exit_code": code}
        if written:
            stamp(out, info)
        if code == 0 and not written:
            code = -1  # exited cleanly but wrote no result: count it as failed
        summary.append((job.name, code, wall, _show(out) if written else "(no result)"))
        print(f"=== {job.name}: exit {code}, {wall:.1f} s", flush=True)

    lines = [f"{n:<12} exit {c:>3}  {w:8.1f} s  {o}" for n, c, w, o in summary]
    (log_dir / "run_all.log").write_text(
        f"run_all {time.strftime('%Y-%m-%d %H:%M:%S')} tag {tag}\n" + "\n".join(lines) + "\n"
    )
    print("\n" + "\n".join(lines))
    failed = [n for n, c, _, _ in summary if c != 0]
    if failed:
        print(f"failed: {', '.join(failed)} (logs in {log_dir})")

    if not args.no_tables:
        tables = _tables()
        readme = tables.READMES[0]
        if default_out:
            code = tables.main([])
        else:  # never rewrite the README from another folder: render a copy there
            code = tables.main(
                ["--results", str(out_dir), "--readme", str(readme), "--out",
                 str(out_dir / "README.md")]
            )  # fmt: skip
        if code:
            print(f"tables: exit {code}")
            failed.append("tables")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
