"""Real run, experiment and sweep directories for the report tests (small and fast).

Each holds strings meant to break a page that forgets to escape: the run's config name is an
<img onerror=...> element (a name cannot hold '/'), the experiment's claim another, and its
params a <script> element; a page that executed any of them sets ``window.__pwned``.
"""

from pathlib import Path

from pydantic import Field

from mfnn import config, runs
from mfnn.plots import plt, save_figure
from mfnn.study import CheckSpec, Experiment, Params, Run, check
from mfnn.sweep import run_sweep

EVIL_NAME = "<img src=x onerror=window.__pwned=1>"
EVIL_PARAM = "<script>window.__pwned = 3</script>"
EVIL_CLAIM = 'A claim <img src=x onerror="window.__pwned = 2"> & more'

TINY = {
    "name": EVIL_NAME,
    "seed": 0,
    "model": {"width": 32, "activation": "relu", "bias": True},
    "data": {"target": "sign", "n_train": 32, "n_test": 16},
    "dynamics": {"dt": 0.1, "steps": 60},
    "record": {"every": 10, "snapshot_every": 10},
}


def make_run(out: Path) -> Path:
    """A completed two-layer ReLU run (d = 1, with bias) with 7 snapshots."""
    runs.execute(config.load(TINY), out, progress=False)
    return out


class ReportParams(Params):
    widths: tuple[int, ...] = Field((8, 16), description="one run a width")
    note: str = Field("", description="free text, shown in the report")


def _plan(s):
    return {f"m{m}": Run(s.sub_config(f"m{m}", {"model.width": m})) for m in s.params.widths}


def _analyze(s, results):
    return {"losses": {n: float(r.metrics["loss"][-1]) for n, r in results.items()}}


def _evaluate(s, stats):
    worst = max(stats["losses"].values())
    return {
        "loss_finite": check(worst, "max final loss < inf", worst < float("inf")),
        "impossible": check(worst, "max final loss <= 0 (fails on purpose)", worst <= 0.0),
    }


def _figures(s, stats, results):
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(list(range(len(stats["losses"]))), list(stats["losses"].values()), "o")
    ax.set(xlabel="run", ylabel="final risk", title="final risk of each width")
    return [save_figure(fig, s.figure_path("overview.png"))]


REPORT_EXPERIMENT = Experiment(
    name="report_toy",
    summary="a toy for the report tests",
    claim=EVIL_CLAIM + "\n\nSecond paragraph of the claim.",
    params=ReportParams,
    quick=(),
    checks=(
        CheckSpec("loss_finite", "max final loss < inf"),
        CheckSpec("impossible", "max final loss <= 0"),
        CheckSpec("m16/energy_identity", "informational", informational="a stated reason"),
    ),
    plan=_plan,
    analyze=_analyze,
    evaluate=_evaluate,
    figures=_figures,
)


def make_experiment(out: Path) -> Path:
    """A toy experiment with two sub-runs, a figure, a passing, a failing and an
    informational check."""
    raw = config.merge(
        TINY,
        {
            "name": "report_toy",
            "dynamics": {"steps": 30},
            "experiment": {"params": {"note": EVIL_PARAM}},
        },
    )
    REPORT_EXPERIMENT.run(config.load(raw), out, progress=False)
    return out


def make_sweep(out: Path) -> Path:
    """A 2-point sweep (in this process)."""
    raw = config.merge(TINY, {"name": "sweep_toy", "dynamics": {"steps": 20}})
    run_sweep(raw, {"model.width": [8, 16]}, out, workers=1, progress=False)
    return out


def local_links(page: Path) -> list[Path]:
    """The files every href and src of ``page`` points to (relative links resolved
    against the page's folder; fragments and remote addresses left out)."""
    from html.parser import HTMLParser
    from urllib.parse import unquote, urlparse

    found: list[str] = []

    class Links(HTMLParser):
        def handle_starttag(self, tag, attrs):
            for key, value in attrs:
                if key in ("href", "src") and value:
                    found.append(value)

    Links().feed(page.read_text())
    out = []
    for link in found:
        parsed = urlparse(link)
        if parsed.scheme or link.startswith("#"):
            out.append(Path("REMOTE:" + link))  # a report must have none: the test says so
            continue
        out.append((page.parent / unquote(parsed.path)).resolve())
    return out


def shared_dirs(tmp_path_factory, dest: Path) -> dict[str, Path]:
    """A copy in ``dest`` of the run, the experiment (under ``gallery/``) and the sweep,
    each with its report (animations included) and the gallery page. They are built once
    per test session, by the first xdist worker that asks (a file lock on pytest's
    shared temporary folder); every caller gets its own copy, so no test sees another
    one's writes."""
    import shutil

    from filelock import FileLock

    from mfnn import report

    base = tmp_path_factory.getbasetemp()
    if base.name.startswith("popen-gw"):  # an xdist worker: the session's folder is above
        base = base.parent
    shared = base / "report_dirs"
    with FileLock(str(shared) + ".lock"):
        if not (shared / "done").is_file():
            shutil.rmtree(shared, ignore_errors=True)
            run = make_run(shared / "run")
            exp = make_experiment(shared / "gallery" / "report_toy")
            sweep = make_sweep(shared / "sweep")
            for d in (run, exp, sweep):
                report.write_report(d)
            report.write_gallery(shared / "gallery")
            (shared / "done").write_text("ok")
    shutil.copytree(shared, dest, dirs_exist_ok=True)
    return {
        "run": dest / "run",
        "experiment": dest / "gallery" / "report_toy",
        "sweep": dest / "sweep",
    }
