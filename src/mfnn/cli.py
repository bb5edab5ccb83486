"""The `mfnn` command: a thin layer over config -> build -> simulate -> run directory.

mfnn [--debug] run [NAME | CONFIG.yaml] [--quick] [--set key=value ...] [--out DIR]
mfnn resume DIR [--from-scratch]
mfnn sweep [NAME | CONFIG.yaml] --grid key=v1,v2 [--grid seed=0..4] [--out DIR] [--workers N]
           [--dask ADDRESS] [--batch-seeds]
mfnn experiments [NAME]
mfnn hessian RUN_DIR [--step K] [--top k] [--dense | --lanczos]
mfnn report PATH [--no-animate] [--format auto|gif|mp4]
mfnn gallery DIR

`run`, `resume` and `sweep` write the directory's report.html at the end (`mfnn.report`);
`--no-report`, or the environment variable MFNN_REPORT=off, skips it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import ConfigError, MfnnError, did_you_mean

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="mfnn: simulate, check and show the mean-field theory of neural networks.",
    pretty_exceptions_enable=False,
)

EXIT = {"completed": 0, "diverged": 1, "failed": 1, "crashed": 1, "interrupted": 130}

# --debug: show the traceback under every error message
_DEBUG = {"on": False}

# the console script (`main`) turns JAX's persistent compilation cache on, at the start of
# a command that may compile: importing JAX (`mfnn.cache`) costs seconds, which a listing
# (`mfnn experiments`, `--help`) does not pay
_CACHE = {"wanted": False}
_NO_COMPILE = frozenset({"experiments"})

_REPORT_HELP = "write report.html in the directory at the end (env MFNN_REPORT=off: skip)"


def _report_default() -> bool:
    """Reports are on unless the environment says MFNN_REPORT=off (or 0, no, false)."""
    return os.environ.get("MFNN_REPORT", "on").strip().lower() not in ("off", "0", "no", "false")


def _write_report(out: Path, wanted: bool | None) -> None:
    """Write ``out``'s report.html after a run or a sweep and print its path. A report
    that cannot be written is a warning: the run's own files are already complete."""
    if not (_report_default() if wanted is None else wanted):
        return
    if not ((out / "summary.json").is_file() or (out / "sweep.json").is_file()):
        return
    from .report import write_report

    try:
        page = write_report(out)
    except Exception as exc:  # noqa: BLE001 - the run's results stand without a report
        typer.secho(
            f"warning: no report written ({type(exc).__name__}: {exc}); try `mfnn report "
            f"{out}` (or --debug).",
            fg=typer.colors.YELLOW,
            err=True,
        )
        if _DEBUG["on"]:
            raise
        return
    typer.echo(f"report: {page}")


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="show the Python traceback under an error message")
    ] = False,
) -> None:
    """mfnn: simulate, check and show the mean-field theory of neural networks."""
    _DEBUG["on"] = debug


def _fail(message: str, code: int = 2) -> None:
    """Print one paragraph (and the traceback with ``--debug``) and exit with ``code``:
    2 for bad input (the field, the rule, the value), 1 for an internal error."""
    if _DEBUG["on"] and sys.exc_info()[0] is not None:
        import traceback

        traceback.print_exc()
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _guarded(command):
    """A command that reports every error as one paragraph: `MfnnError` (bad input) exits
    2; anything else is an internal error, exit 1, with the hint to rerun with
    ``--debug``; Ctrl-C exits 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        if _CACHE["wanted"] and command.__name__ not in _NO_COMPILE:
            from .cache import enable_compilation_cache

            enable_compilation_cache()
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            typer.secho("interrupted.", fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(EXIT["interrupted"]) from None
        except MfnnError as exc:
            _fail(str(exc))
        except MemoryError:
            _fail("out of memory: the problem is too large for this machine (reduce "
                  "`model.width`, the data size or `dynamics.steps`).")  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - never a bare traceback
            _fail(
                f"internal error {type(exc).__name__}: {exc}. This is a bug in mfnn; rerun "
                "with `mfnn --debug ...` for the traceback and report it.",
                code=1,
            )

    return wrapper


def _has_files(path: Path) -> bool:
    """Whether ``path`` is a directory holding anything but its lock file."""
    return path.is_dir() and any(p.name != "lock" for p in path.iterdir())


def _sigterm(signum, frame):  # SIGTERM (and SIGINT) end a run as Ctrl-C does
    from .interrupts import interrupt

    interrupt(signum, frame)


def _warn_empty(target: str) -> None:
    typer.secho(
        f"warning: {target} is empty: every key takes its default (`mfnn experiments "
        "sign` and README.md show a complete config).",
        fg=typer.colors.YELLOW,
        err=True,
    )


def _resolve_target(target: str | None):
    """(raw config dict, experiment or None, base folder for relative paths)."""
    from . import config as cfgmod

    if target is None:
        from .experiments import DEFAULT as target
    path = Path(target)
    try:
        is_file = path.is_file()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise ConfigError(
            f"`mfnn run` takes a named experiment or a YAML config file; {target[:60]!r}... "
            f"is neither ({exc.strerror}). `mfnn experiments` lists the names."
        ) from None
    if is_file and "experiment" not in (raw := cfgmod.read_yaml(path) or {}):
        # a plain config file: the experiments (and their imports) are not needed
        if not raw:
            _warn_empty(target)
        return raw, None, path.parent
    from .experiments import EXPERIMENTS

    if target in EXPERIMENTS and not is_file:
        exp = EXPERIMENTS[target]
        return exp.default_config(), exp, None
    if path.suffix in (".yaml", ".yml") or is_file:
        raw = cfgmod.read_yaml(path)
        if not raw:
            _warn_empty(target)
        name = (
            (raw.get("experiment") or {}).get("name")
            if isinstance(raw.get("experiment"), dict)
            else None
        )
        if name is not None:
            if not isinstance(name, str):
                raise ConfigError(
                    f"`experiment.name` must be the name of an experiment (a string); got "
                    f"{str(name)[:60]!r}. `mfnn experiments` lists them."
                )
            if name not in EXPERIMENTS:
                raise ConfigError(
                    f"`experiment.name` must be a named experiment; got {name!r}. "
                    f"{did_you_mean(name, EXPERIMENTS)}"
                )
            exp = EXPERIMENTS[name]
            return cfgmod.merge(exp.default_config(), raw), exp, path.parent
        return raw, None, path.parent
    raise ConfigError(
        f"`mfnn run` takes a named experiment or a YAML config file; got {target!r}, which is "
        f"neither. {did_you_mean(target, EXPERIMENTS)} (`mfnn experiments` lists them.)"
    )


# a plain config's --quick: at most this many steps (an experiment declares its own quick)
QUICK_STEPS = 1000


def quick_overrides(raw: dict, exp) -> list[str]:
    """The overrides ``--quick`` adds: an experiment's declared quick variant, or for a
    plain config its step count capped at `QUICK_STEPS`."""
    if exp is not None:
        return list(exp.quick)
    steps = (raw.get("dynamics") or {}).get("steps", 2000)
    if isinstance(steps, int | float) and not isinstance(steps, bool) and steps > QUICK_STEPS:
        return [f"dynamics.steps={QUICK_STEPS}"]
    return []


def _report(summary: dict, out: Path) -> int:
    status = summary.get("status", "failed")
    checks = summary.get("checks", {})
    for name, c in checks.items():
        if c.get("informational"):
            mark, color = "INFO", typer.colors.BLUE
        else:
            mark = "PASS" if c["passed"] else "FAIL"
            color = typer.colors.GREEN if c["passed"] else typer.colors.RED
        value = c["value"]
        shown = f"{value:.4g}" if isinstance(value, float) else value
        typer.secho(f"  [{mark}] {name}: {shown}  ({c['expected']})", fg=color)
    if summary.get("message") and status != "completed":
        typer.secho(summary["message"], fg=typer.colors.YELLOW, err=True)
    for sub in (summary.get("runs") or {}).values():
        if sub.get("status") not in (None, "completed") and sub.get("message"):
            typer.secho(sub["message"], fg=typer.colors.YELLOW, err=True)
    if "experiment" in summary:
        counted = [c for c in checks.values() if not c.get("informational")]
        held = sum(bool(c["passed"]) for c in counted)
        verdict = "claim held" if summary.get("passed") else "claim NOT held"
        typer.echo(f"{status}: {verdict} ({held}/{len(counted)} checks)  ->  {out}")
        if status == "completed" and not summary.get("passed"):
            return 1
    else:
        typer.echo(f"{status}: final_loss={summary.get('final_loss')}  ->  {out}")
    return EXIT.get(status, 1)


def _execute(
    cfg, exp, out: Path, resume: bool, progress: bool, base, built=None, from_scratch=False
) -> int:
    # the handlers are the run's, and given back after it (an in-process caller, e.g. a
    # test through typer's CliRunner, keeps its own)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, _sigterm)
    if before[signal.SIGINT] is signal.default_int_handler:
        signal.signal(signal.SIGINT, _sigterm)  # Python's own would be lost in a gc callback
    try:
        return _execute_run(cfg, exp, out, resume, progress, base, built, from_scratch)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _execute_run(cfg, exp, out: Path, resume: bool, progress: bool, base, built, from_scratch):
    from .runs import execute

    try:
        if exp is not None:
            summary = exp.run(cfg, out, resume=resume, progress=progress)
        else:
            _, _, summary = execute(
                cfg,
                out,
                resume=resume,
                progress=progress,
                base=base,
                built=built,
                from_scratch=from_scratch,
                predictions=True,  # the CLI's build is the config's own, not a customised one
            )
    except MfnnError:
        raise
    except KeyboardInterrupt:
        typer.secho(
            f"interrupted; continue with `mfnn resume {out}`", fg=typer.colors.YELLOW, err=True
        )
        return EXIT["interrupted"]
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported as a failed run, files kept
        kept = f" What was written so far is in {out}." if _has_files(out) else ""
        typer.secho(f"run failed: {type(exc).__name__}: {exc}.{kept}", fg=typer.colors.RED,
                    err=True)  # fmt: skip
        if _DEBUG["on"]:
            import traceback

            traceback.print_exc()
        return EXIT["failed"]
    return _report(summary, out)


@app.command()
@_guarded
def run(
    target: Annotated[
        str | None, typer.Argument(help="named experiment or CONFIG.yaml (default: sign)")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override: key.sub=value (repeatable)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="run directory (default: runs/NAME-TIME)")
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="reduced version: under a minute, checks still run")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="replace an existing run directory")
    ] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    report: Annotated[bool | None, typer.Option("--report/--no-report", help=_REPORT_HELP)] = None,
) -> None:
    """Run a named experiment or a config file and write a run directory (and its
    report.html)."""
    import shutil

    from . import config as cfgmod

    try:
        raw, exp, base = _resolve_target(target)
        overrides = list(set_ or [])
        if quick:
            overrides = quick_overrides(raw, exp) + overrides
        cfg = cfgmod.load(raw, overrides)
        name = cfg.name or (exp.name if exp else Path(target).stem if target else "run")
        if out is None:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            out = Path("runs") / f"{name}{'-quick' if quick else ''}-{stamp}"
        if out.exists() and not out.is_dir():
            raise ConfigError(
                f"`--out` {str(out)!r} is a file, not a directory; give a folder path."
            )
        if _has_files(out):
            if not overwrite:
                raise ConfigError(
                    f"`--out` {str(out)!r} already holds files; continue it with "
                    f"`mfnn resume {out}`, pass `--overwrite`, or choose another directory."
                )
            from .rundir import check_not_busy

            check_not_busy(out)  # never replace a directory another process writes
            shutil.rmtree(out)
        # what can be refused is refused here, before any compute: a plain run is built
        # (once: the run uses these objects), an experiment's params are validated
        built = None
        if exp is None:
            from .build import build

            built = build(cfg, base)
        else:
            exp.validate_params(cfg)
    except MfnnError as exc:
        _fail(str(exc))
    typer.echo(f"mfnn run {name}{' (quick)' if quick else ''} -> {out}", err=True)
    try:
        code = _execute(cfg, exp, out, False, progress, base, built)
    except MfnnError as exc:
        _fail(str(exc))
    _write_report(out, report)
    raise typer.Exit(code)


@app.command()
@_guarded
def resume(
    run_dir: Annotated[Path, typer.Argument(help="a run or experiment directory")],
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    from_scratch: Annotated[
        bool,
        typer.Option(
            "--from-scratch",
            help="start again from step 0 when there is no checkpoint to continue from "
            "(the rows so far are moved to previous/, not dropped)",
        ),
    ] = False,
    report: Annotated[bool | None, typer.Option("--report/--no-report", help=_REPORT_HELP)] = None,
) -> None:
    """Continue an interrupted or crashed run from its last checkpoint (bit-identical to no
    interruption)."""
    from .experiments import EXPERIMENTS
    from .rundir import LOCK, check_not_busy, load_run_config, run_dir_status

    try:
        cfg = load_run_config(run_dir)
        check_not_busy(run_dir)
        exp = EXPERIMENTS.get(cfg.experiment.name) if cfg.experiment.name else None
        status = run_dir_status(run_dir)
        if status == "completed" and exp is None:
            typer.echo(f"{run_dir} is already completed; nothing to do.")
            raise typer.Exit(0)
        if status == "crashed":
            try:
                pid = json.loads((run_dir / LOCK).read_text()).get("pid", "?")
            except (OSError, ValueError):
                pid = "?"
            typer.secho(
                f"{run_dir} was left `running` by a process that died (pid {pid}): crashed. "
                "Continuing from its last checkpoint.",
                fg=typer.colors.YELLOW,
                err=True,
            )
        elif status == "corrupt":
            typer.secho(
                f"{run_dir}/summary.json is damaged; it is rewritten when the run ends. "
                "Continuing from the last checkpoint.",
                fg=typer.colors.YELLOW,
                err=True,
            )
        code = _execute(cfg, exp, run_dir, True, progress, None, from_scratch=from_scratch)
    except MfnnError as exc:
        _fail(str(exc))
    _write_report(run_dir, report)
    raise typer.Exit(code)


@app.command()
@_guarded
def sweep(
    target: Annotated[str, typer.Argument(help="named experiment or CONFIG.yaml")],
    grid: Annotated[
        list[str] | None,
        typer.Option("--grid", help="key=v1,v2 or key=a..b (repeatable): the grid's axes"),
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override of the base config (repeatable)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="sweep directory (default: runs/sweep-NAME-TIME)")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="each point in its quick version")] = False,
    workers: Annotated[int, typer.Option("--workers", help="local processes in parallel")] = 2,
    dask: Annotated[
        str | None, typer.Option("--dask", help="submit the points to this Dask scheduler")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    batch_seeds: Annotated[
        bool,
        typer.Option(
            "--batch-seeds/--no-batch-seeds",
            help="run the points that differ only in seed together, vmapped in one process "
            "(plain runs only; off by default: no gain measured on CPU, see `mfnn.sweep`)",
        ),
    ] = False,
    report: Annotated[bool | None, typer.Option("--report/--no-report", help=_REPORT_HELP)] = None,
) -> None:
    """Run a grid of configs: one run directory a point, one table (resumable: run the same
    command again to finish a sweep; finished points are skipped), and a report."""
    from . import config as cfgmod
    from .sweep import SweepInterrupted, parse_grid, run_sweep

    try:
        raw, exp, base = _resolve_target(target)
        overrides = list(set_ or [])
        if quick:  # as `mfnn run --quick`: an experiment's quick variant, else capped steps
            overrides = quick_overrides(raw, exp) + overrides
        raw = cfgmod.apply_overrides(raw, overrides)
        if exp is not None:
            raw.setdefault("experiment", {})["name"] = exp.name
        axes = parse_grid(list(grid or []))
        name = Path(target).stem if not exp else exp.name
        if out is None:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            out = Path("runs") / f"sweep-{name}-{stamp}"
        typer.echo(f"mfnn sweep {name} -> {out}", err=True)
        table = run_sweep(
            raw,
            axes,
            out,
            workers=workers,
            dask_address=dask,
            base=base,
            progress=progress,
            batch_seeds=batch_seeds,
        )
    except MfnnError as exc:
        _fail(str(exc))
    except SweepInterrupted as stop:  # SIGINT or SIGTERM: the table holds what finished
        rows = stop.rows
        count = {s: sum(r.get("status") == s for r in rows) for s in ("completed", "cancelled")}
        typer.secho(
            f"sweep interrupted: {count['completed']}/{len(rows)} points completed, "
            f"{count['cancelled']} not started -> {out}/table.csv; to continue, run the same "
            "command again (finished points are skipped).",
            fg=typer.colors.YELLOW,
            err=True,
        )
        _write_report(out, report)
        raise typer.Exit(EXIT["interrupted"]) from None
    failed = [r["point"] for r in table if r.get("status") != "completed"]
    typer.echo(f"{len(table) - len(failed)}/{len(table)} points completed -> {out}/table.csv")
    _write_report(out, report)
    for p in failed:
        row = next(r for r in table if r["point"] == p)
        typer.secho(f"  {p}: {row.get('status')}: {row.get('message', '')}", fg=typer.colors.RED)
    raise typer.Exit(1 if failed else 0)


@app.command()
@_guarded
def experiments(
    name: Annotated[
        str | None, typer.Argument(help="an experiment: print its claim, params and checks")
    ] = None,
) -> None:
    """List the named experiments, or describe one (claim, params with types and defaults,
    checks with their thresholds)."""
    from .experiments import EXPERIMENTS

    if name is not None:
        if name not in EXPERIMENTS:
            _fail(f"no experiment named {name!r}. {did_you_mean(name, EXPERIMENTS)}")
        typer.echo(EXPERIMENTS[name].describe())
        return
    width = max(len(n) for n in EXPERIMENTS)
    for key, exp in EXPERIMENTS.items():
        typer.echo(f"{key:<{width}}  {exp.summary}")


@app.command()
@_guarded
def hessian(
    run_dir: Annotated[
        Path, typer.Argument(help="a run directory (an experiment's sub-run: OUT/runs/NAME)")
    ],
    step: Annotated[
        int | None,
        typer.Option("--step", help="the snapshot's step (default: the last, the final particles)"),
    ] = None,
    top: Annotated[int, typer.Option("--top", help="eigenvalues reported at each end")] = 6,
    dense: Annotated[
        bool | None,
        typer.Option(
            "--dense/--lanczos",
            help="every eigenvalue from the dense Hessian, or the --top extremes by Lanczos "
            "(default: dense when N = m x trainable columns <= 2000)",
        ),
    ] = None,
) -> None:
    """The Hessian of the energy in particle space at a run's final particles (or the
    snapshot of --step): the eigenvalues of s H (the rates of the linearised flow, s =
    m^(2 gamma - 1)), the gradient norm and a verdict (minimum, degenerate, saddle, maximum,
    not stationary). Writes RUN_DIR/hessian.json."""
    from .diagnostics.hessian import hessian_of_run
    from .rundir import write_json

    method = "auto" if dense is None else ("dense" if dense else "lanczos")
    try:
        report, where = hessian_of_run(run_dir, step, k=top, method=method)
    except MfnnError as exc:
        _fail(str(exc))
    typer.echo(f"{run_dir}: step {where['step']} (t = {where['t']:g})")
    typer.echo(report.format())
    out = Path(run_dir) / "hessian.json"
    write_json(out, where | report.to_dict())
    typer.echo(f"-> {out}")


@app.command("report")
@_guarded
def report_(
    path: Annotated[Path, typer.Argument(help="a run, sweep or experiment directory")],
    animate: Annotated[
        bool,
        typer.Option("--animate/--no-animate", help="animate the snapshots of each run"),
    ] = True,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="animation file: auto (MP4 when ffmpeg is on PATH, else GIF), gif, mp4"
        ),
    ] = "auto",
) -> None:
    """Write PATH/report.html: claim, checks, metrics, figures, animation of the particles,
    sub-runs (each with its own report), config, versions and timing. Self-contained: open
    it in a browser, no network needed."""
    from .report import write_report

    try:
        page = write_report(path, animate=animate, fmt=fmt)
    except MfnnError as exc:
        _fail(str(exc))
    typer.echo(f"report: {page}")


@app.command()
@_guarded
def gallery(
    root: Annotated[Path, typer.Argument(help="a folder holding experiment directories")],
    animate: Annotated[
        bool,
        typer.Option("--animate/--no-animate", help="animate runs whose report is written now"),
    ] = True,
) -> None:
    """Write DIR/index.html: one card per experiment directory under DIR (claim, verdict,
    a thumbnail, time taken), each linking its report (written first where missing)."""
    from .report import write_gallery

    try:
        page = write_gallery(root, animate=animate)
    except MfnnError as exc:
        _fail(str(exc))
    typer.echo(f"gallery: {page}")


def main() -> None:
    _CACHE["wanted"] = True  # turned on by the command (`_guarded`), not for a listing
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - outside any command (e.g. argument parsing)
        if "--debug" in sys.argv[1:]:
            raise
        typer.secho(
            f"error: internal error {type(exc).__name__}: {exc}; rerun with `mfnn --debug ...`.",
            fg=typer.colors.RED,
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
