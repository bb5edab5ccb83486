"""Experiments as declarations, and the one runner that carries them out.

An experiment reproduces a claim of the theory. It declares five things and writes no
orchestration:

- **params**: a pydantic model (`Params`) with types, defaults, bounds and descriptions,
  read from ``experiment.params`` of the config (errors name `experiment.params.<key>`);
- **plan**: params -> named sub-runs, each a config to simulate (`Run`) or a library
  computation whose result is kept as JSON (`Call`);
- **analysis**: the finished sub-runs -> statistics (a dict; keys starting with ``_`` are
  for figures only and stay out of the summary);
- **checks**: statistics -> pass/fail, each with the statistic's value and the rule with
  its threshold (`check`); every check is declared (`CheckSpec`) so that
  ``mfnn experiments NAME`` can list them before anything runs;
- **figures**: statistics -> PNG files.

`run_study` owns the rest: the experiment directory, the sub-run configs, reusing a
sub-run that finished with the same config (and continuing an interrupted one with
``resume``), status, the summary and timing. Every check of every sub-run (for instance
a sub-run's ``energy_identity``) counts in the verdict as ``<run>/<check>``, unless the
experiment declares it informational and says why; the summary states the reason next
to the check.

Experiment directory::

    OUT/config.yaml           the experiment's config (params included), mfnn version
    OUT/summary.json          status, passed, checks, statistics, runs, params, claim, timing
    OUT/runs/<name>/          one run directory a sub-run (`mfnn.runs`), or result.json
    OUT/inputs/<name>.npz     input files the plan wrote (initial particles, data)
    OUT/figures/*.png
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import hashlib
import json
import time
import typing
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Generic, TypeVar

import annotated_types
import numpy as np
import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict

from . import __version__
from .config import Config, dump, format_validation_error, parse_yaml, set_path, validate
from .errors import ConfigError
from .rundir import (
    STATUS_RANK,
    RunLock,
    atomic_savez,
    atomic_write_text,
    check,
    list_snapshots,
    read_json,
    read_metrics,
    run_dir_status,
    write_json,
)

__all__ = [
    "Call",
    "CallResult",
    "CheckSpec",
    "Experiment",
    "Params",
    "Run",
    "RunResult",
    "Study",
    "check",
    "run_study",
]


class Params(BaseModel):
    """The typed parameters of an experiment (``experiment.params`` in its config).

    Subclass it with pydantic fields: a type, a default, bounds and a ``description``
    (which ``mfnn experiments NAME`` prints). Unknown keys are refused. Override
    `check_config` for rules that tie the params to the rest of the config.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def check_config(self, cfg: Config) -> None:
        """Refuse a config this experiment cannot run (a `ConfigError` naming the field);
        the default accepts every config."""
        del cfg


P = TypeVar("P", bound=Params)


# ---------------------------------------------------------------------------- the plan


@dataclasses.dataclass(frozen=True)
class Run:
    """A sub-run: simulate ``config`` into ``runs/<name>/`` (an ordinary run directory).

    Attributes:
        config: the sub-run's config (`Study.sub_config` derives it from the
            experiment's).
        customize: optional ``Built -> Built``, for a sub-run that needs objects a config
            cannot state (a stacked coupling system, a custom start); applied whenever
            the sub-run is built, for the run and for the analysis alike.
        figures: write the sub-run's own figures (`mfnn.plots.run_figures`); an
            experiment with many sub-runs turns them off.
    """

    config: Config
    customize: Callable[[Any], Any] | None = None
    figures: bool = True


@dataclasses.dataclass(frozen=True)
class Call:
    """A library computation with JSON-ready ``inputs``: ``fn(**inputs)`` returns a
    JSON-ready dict, kept in ``runs/<name>/result.json`` and reused while the inputs (and
    the function's name) are unchanged."""

    fn: Callable[..., dict[str, Any]]
    inputs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def digest(self) -> str:
        text = json.dumps(
            {"fn": f"{self.fn.__module__}.{self.fn.__qualname__}", "inputs": self.inputs},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass
class RunResult:
    """A finished (or stopped) sub-run, read back lazily from its run directory."""

    name: str
    dir: Path
    config: Config
    summary: dict[str, Any]
    reused: bool
    customize: Callable[[Any], Any] | None = None

    @property
    def status(self) -> str:
        return self.summary.get("status", "failed")

    @functools.cached_property
    def metrics(self) -> dict[str, np.ndarray]:
        """metrics.csv as columns (`mfnn.rundir.read_metrics`)."""
        return read_metrics(self.dir)

    @functools.cached_property
    def built(self):
        """The objects of the sub-run (`mfnn.build.build`, then ``customize``)."""
        from .build import build

        built = build(self.config)
        return built if self.customize is None else self.customize(built)

    @property
    def model(self):
        return self.built.model

    @property
    def dt(self) -> float:
        return float(self.config.dynamics.dt)

    def snapshot_steps(self) -> list[int]:
        """The steps with a snapshot, increasing."""
        return sorted(list_snapshots(self.dir))

    def particles(self, step: int | str = "last") -> np.ndarray:
        """The particles (m, D) of the snapshot at ``step`` ("first", "last" or a step)."""
        from .measure import load_particles

        snaps = list_snapshots(self.dir)
        if not snaps:
            raise ConfigError(
                f"sub-run {self.name!r} has no snapshots in {str(self.dir)!r}; its config "
                "needs `record.snapshot_every` or `record.snapshot_count` for this analysis."
            )
        at = {"first": min(snaps), "last": max(snaps)}.get(step, step)  # type: ignore[arg-type]
        if at not in snaps:
            raise ConfigError(f"sub-run {self.name!r} has no snapshot at step {step!r}.")
        dtype = self.config.dtype
        return np.asarray(load_particles(snaps[at], self.model, dtype, field="snapshot"))


@dataclasses.dataclass
class CallResult:
    """The result of a `Call`: ``value`` is what the function returned."""

    name: str
    dir: Path
    value: dict[str, Any]
    summary: dict[str, Any]
    reused: bool

    @property
    def status(self) -> str:
        return self.summary.get("status", "failed")


Result = RunResult | CallResult


# -------------------------------------------------------------------------- the checks


@dataclasses.dataclass(frozen=True)
class CheckSpec:
    """A declared check: its name (a pattern with ``*`` for a family, e.g.
    ``coupling_slope_t*`` or ``*/energy_identity`` for a check of every sub-run), the rule
    it applies (statistic and threshold, in words), and, for a check that does not count
    in the verdict, the reason (``informational``)."""

    name: str
    rule: str
    informational: str | None = None

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.name)


ENERGY_IDENTITY = CheckSpec(
    "*/energy_identity",
    "each sub-run: median over records of |energy_rel_residual| <= 0.1 (the discrete energy "
    "dissipation identity dE/dt = -int |grad dE/dmu|^2 dmu holds to O(dt))",
)
"""The check every simulated sub-run writes (`mfnn.runs.single_summary`)."""

GRID_CHECKS = (
    CheckSpec(
        "*/mass_conservation",
        "each grid (pde) sub-run: max over records of |int rho - 1| <= 1e-10 (the "
        "finite-volume flux form conserves mass to round-off)",
    ),
    CheckSpec("*/positivity", "each grid (pde) sub-run: min over records of rho >= 0"),
)
"""The checks every `dynamics.kind: pde` sub-run writes besides the energy identity
(`mfnn.pde.run.pde_summary`)."""
GENERIC = (ENERGY_IDENTITY, *GRID_CHECKS)


# ------------------------------------------------------------------ the declaration


@dataclasses.dataclass(frozen=True)
class Experiment(Generic[P]):
    """A claim of the theory, reproduced by ``mfnn run NAME``.

    Attributes:
        name: the CLI name; the default config is ``experiments/configs/NAME.yaml``.
        summary: one line for ``mfnn experiments``.
        claim: the claim, its setup, its statistics and their thresholds, citing the
            published work.
        params: the `Params` model of ``experiment.params``.
        quick: ``--set``-style overrides for ``--quick`` (under a minute on 2 cores, with
            every check still evaluated).
        checks: the declared checks (`CheckSpec`), in the order they are reported.
        plan: ``Study -> {name: Run | Call}``, in the order to run them.
        analyze: ``(Study, {name: RunResult | CallResult}) -> statistics``.
        evaluate: ``(Study, statistics) -> {check name: check(...)}``.
        figures: ``(Study, statistics, results) -> [paths]`` (optional).
    """

    name: str
    summary: str
    claim: str
    params: type[P]
    quick: tuple[str, ...]
    checks: tuple[CheckSpec, ...]
    plan: Callable[[Study[P]], Mapping[str, Run | Call]]
    analyze: Callable[[Study[P], Mapping[str, Result]], dict[str, Any]]
    evaluate: Callable[[Study[P], dict[str, Any]], dict[str, dict[str, Any]]]
    figures: Callable[[Study[P], dict[str, Any], Mapping[str, Result]], list[Path]] | None = None

    def default_config(self) -> dict[str, Any]:
        """The experiment's default config (a raw dict, before validation)."""
        text = resources.files("mfnn.experiments").joinpath("configs", f"{self.name}.yaml")
        return parse_yaml(text.read_text())

    def validate_params(self, cfg: Config) -> P:
        """``cfg.experiment.params`` as this experiment's `Params`, checked against ``cfg``."""
        try:
            params = self.params.model_validate(dict(cfg.experiment.params))
        except pydantic.ValidationError as err:
            raise ConfigError(
                format_validation_error(err, prefix=("experiment", "params"), schema=self.params)
            ) from None
        params.check_config(cfg)
        return params

    def spec(self, check_name: str) -> CheckSpec | None:
        """The declared spec a produced check name falls under (None: undeclared)."""
        for spec in (*self.checks, *GENERIC):
            if spec.matches(check_name):
                return spec
        return None

    def run(
        self, cfg: Config, out: str | Path, *, resume: bool = False, progress: bool = True
    ) -> dict[str, Any]:
        """`run_study` of this experiment."""
        return run_study(self, cfg, Path(out), resume=resume, progress=progress)

    def describe(self) -> str:
        """The claim, the params (type, default, description) and the checks, as text."""
        lines = [f"{self.name}: {self.summary}", "", self.claim.rstrip(), "", "Params:"]
        lines += _describe_params(self.params, "  ")
        lines += ["", "Checks:"]
        for spec in (*self.checks, *GENERIC):
            lines.append(f"  {spec.name}: {spec.rule}")
            if spec.informational:
                lines.append(f"      informational (not in the verdict): {spec.informational}")
        lines += ["", f"Quick (--quick): {' '.join(self.quick) or '(none)'}"]
        return "\n".join(lines)


def _describe_params(model: type[BaseModel], indent: str) -> list[str]:
    """One entry a field (type, default, description, bounds); nested models expanded."""
    lines = []
    for key, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        ann = field.annotation
        nested = isinstance(ann, type) and issubclass(ann, BaseModel)
        shown = "" if nested else f" = {default!r}"
        lines.append(f"{indent}{key}: {_type_name(ann)}{shown}")
        if field.description:
            lines.append(f"{indent}    {field.description}")
        bounds = [b for b in (_bound(m) for m in field.metadata) if b]
        if bounds:
            lines.append(f"{indent}    ({', '.join(bounds)})")
        if nested:
            lines += _describe_params(ann, indent + "    ")
    return lines


def _type_name(ann) -> str:
    """A readable annotation: ``float``, ``tuple[Literal['a', 'b'], ...]``."""
    if isinstance(ann, type) and not typing.get_args(ann):
        return ann.__name__
    return str(ann).replace("typing.", "")


_BOUNDS = (
    (annotated_types.Gt, lambda m: f"> {m.gt}"),
    (annotated_types.Ge, lambda m: f">= {m.ge}"),
    (annotated_types.Lt, lambda m: f"< {m.lt}"),
    (annotated_types.Le, lambda m: f"<= {m.le}"),
    (annotated_types.MinLen, lambda m: f"length >= {m.min_length}"),
    (annotated_types.MaxLen, lambda m: f"length <= {m.max_length}"),
)


def _bound(meta) -> str:
    """Words for a pydantic constraint (``Gt(gt=0)`` -> ``> 0``; a validator function: the
    first line of its docstring)."""
    for kind, words in _BOUNDS:
        if isinstance(meta, kind):
            return words(meta)
    if isinstance(meta, AfterValidator) and meta.func.__doc__:
        return meta.func.__doc__.strip().splitlines()[0]
    return str(meta)


# ----------------------------------------------------------------------- the context


@dataclasses.dataclass
class Study(Generic[P]):
    """What the plan, the analysis, the checks and the figures of an experiment receive.

    Attributes:
        experiment: the declaration.
        config: the experiment's config.
        params: its validated params.
        out: the experiment directory.
        resume: continue interrupted sub-runs from their checkpoints.
        progress: print progress lines.
    """

    experiment: Experiment[P]
    config: Config
    params: P
    out: Path
    resume: bool = False
    progress: bool = True

    @property
    def name(self) -> str:
        return self.config.name or self.experiment.name

    def sub_config(self, name: str, changes: Mapping[str, Any] | None = None) -> Config:
        """The config of sub-run ``name``: the experiment's config with ``changes``
        (dotted keys -> values, e.g. ``{"model.scaling": "ntk"}``) applied and validated,
        as a plain run (no ``experiment`` section), named ``<experiment>-<name>``."""
        raw = self.config.model_dump(mode="json")
        raw.pop("experiment", None)
        raw.pop("mfnn_version", None)
        raw["name"] = f"{self.name}-{name}"
        for key, value in (changes or {}).items():
            set_path(raw, key, value)
        return validate(raw)

    def input_file(self, name: str, **arrays: np.ndarray) -> Path:
        """Write ``inputs/<name>-<digest>.npz`` (atomically; the digest is of the arrays'
        content, so a sub-run whose config names the file is reused only with the same
        inputs) and return its path (absolute)."""
        arrays = {k: np.asarray(v) for k, v in sorted(arrays.items())}
        h = hashlib.sha256()
        for k, v in arrays.items():
            h.update(f"{k}:{v.dtype.str}:{v.shape}".encode())
            h.update(np.ascontiguousarray(v).tobytes())
        path = (self.out / "inputs" / f"{name}-{h.hexdigest()[:12]}.npz").resolve()
        if not path.is_file():
            atomic_savez(path, **arrays)
        return path

    def figure_path(self, filename: str) -> Path:
        return self.out / "figures" / filename

    # ------------------------------------------------------------------ sub-runs
    def realize(self, name: str, item: Run | Call) -> Result:
        """Run one planned item, or reuse it when it finished with the same inputs."""
        if isinstance(item, Run):
            return self._run(name, item)
        if isinstance(item, Call):
            return self._call(name, item)
        raise TypeError(
            f"the plan of {self.experiment.name} maps {name!r} to {type(item).__name__}; "
            "plan entries are `Run` or `Call`."
        )

    def _run(self, name: str, item: Run) -> RunResult:
        from .runs import execute

        run_dir = self.out / "runs" / name
        if run_dir_status(run_dir, item.config) == "completed":
            return RunResult(
                name,
                run_dir,
                item.config,
                read_json(run_dir / "summary.json"),
                True,
                item.customize,
            )
        result = RunResult(name, run_dir, item.config, {}, False, item.customize)
        _, built, summary = execute(
            item.config,
            run_dir,
            resume=self.resume,
            progress=self.progress,
            label=name,
            built=result.built,
            make_figures=item.figures,
            from_scratch=True,  # a sub-run that cannot continue restarts, old rows kept aside
            predictions=item.customize is None,  # a customised build stacks several systems
        )
        result.summary = summary
        return result

    def _call(self, name: str, item: Call) -> CallResult:
        run_dir = self.out / "runs" / name
        path = run_dir / "result.json"
        digest = item.digest()
        if path.is_file():
            saved = read_json(path)
            if saved.get("digest") == digest and saved.get("status") == "completed":
                return CallResult(name, run_dir, saved["value"], saved, True)
        t0 = time.perf_counter()
        value = item.fn(**item.inputs)
        summary = {
            "status": "completed",
            "digest": digest,
            "fn": f"{item.fn.__module__}.{item.fn.__qualname__}",
            "inputs": dict(item.inputs),
            "wall_s": time.perf_counter() - t0,
            "value": value,
        }
        write_json(path, summary)
        return CallResult(name, run_dir, value, summary, False)


# ------------------------------------------------------------------------ the runner


def _run_entry(result: Result) -> dict[str, Any]:
    s = result.summary
    entry = {"status": result.status, "reused": result.reused, "wall_s": s.get("wall_s")}
    if isinstance(result, RunResult):
        entry.update({k: s.get(k) for k in ("final_loss", "final_t", "message") if k in s})
    return entry


def _worst(statuses) -> str:
    return max(
        statuses, key=lambda s: STATUS_RANK.get(s, STATUS_RANK["failed"]), default="completed"
    )


def collect_checks(
    experiment: Experiment, own: Mapping[str, dict], results: Mapping[str, Result]
) -> tuple[dict[str, dict], dict[str, str]]:
    """All the checks of a study: the experiment's own, then every sub-run's as
    ``<run>/<check>``, each marked with the reason when its spec is informational.

    Returns (checks, {check: reason} for the informational ones).

    Raises:
        RuntimeError: a check the experiment does not declare (a declaration that has
            drifted from the code).
    """
    out: dict[str, dict] = {}
    for name, c in own.items():
        out[name] = dict(c)
    for run, result in results.items():
        for name, c in (result.summary.get("checks") or {}).items():
            out[f"{run}/{name}"] = dict(c)
    reasons = {}
    for name, c in out.items():
        spec = experiment.spec(name)
        if spec is None:
            raise RuntimeError(
                f"experiment {experiment.name} produced the check {name!r}, which none of its "
                f"CheckSpecs declares ({[s.name for s in experiment.checks]})."
            )
        if spec.informational:
            c["informational"] = spec.informational
            reasons[name] = spec.informational
    return out, reasons


def verdict(checks: Mapping[str, dict]) -> bool:
    """True when every check that counts (not informational) passed, and one does."""
    counted = [c for c in checks.values() if not c.get("informational")]
    return bool(counted) and all(bool(c["passed"]) for c in counted)


def run_study(
    experiment: Experiment[P],
    cfg: Config,
    out: Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Carry out ``experiment`` with ``cfg`` into the directory ``out``; return the summary.

    Sub-runs that finished with the same config are reused (not recomputed); with
    ``resume`` an interrupted sub-run continues from its checkpoint. If a sub-run is
    interrupted the study stops there, with status ``interrupted`` and no checks (run
    ``mfnn resume OUT`` to go on). The summary's ``status`` is the worst of the sub-runs'
    (completed < interrupted < diverged < failed); ``passed`` is true when every check
    that counts passed.

    The study holds ``out``'s `mfnn.rundir.RunLock` throughout (one writer at a time);
    a sub-run that cannot continue (stopped before its first checkpoint) restarts with
    its old rows moved to ``previous/``.
    """
    params = experiment.validate_params(cfg)
    with RunLock(out):
        return _run_study_locked(experiment, cfg, Path(out), params, resume, progress)


def _run_study_locked(experiment, cfg, out: Path, params, resume, progress) -> dict[str, Any]:
    t0 = time.perf_counter()
    study = Study(experiment, cfg, params, out, resume, progress)
    out.mkdir(parents=True, exist_ok=True)
    stamped = cfg.model_copy(update={"mfnn_version": __version__})
    atomic_write_text(out / "config.yaml", dump(stamped))
    base = {"experiment": experiment.name, "params": params.model_dump(mode="json")}
    write_json(out / "summary.json", base | {"status": "running", "checks": {}})
    try:
        plan = experiment.plan(study)
        results: dict[str, Result] = {}
        for name, item in plan.items():
            results[name] = study.realize(name, item)
            if results[name].status == "interrupted":
                break
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        message = f"{type(exc).__name__}: {exc}" if status == "failed" else "interrupted"
        write_json(
            out / "summary.json", base | {"status": status, "message": message, "checks": {}}
        )
        raise
    t_runs = time.perf_counter()
    runs = {name: _run_entry(r) for name, r in results.items()}
    status = _worst(r.status for r in results.values())
    if status == "interrupted" or len(results) < len(plan):
        summary = base | {
            "status": "interrupted",
            "message": f"interrupted; continue it with `mfnn resume {out}`.",
            "runs": runs,
            "checks": {},
            "passed": False,
            "headline": experiment.summary,
            "claim": experiment.claim,
            "wall_s": time.perf_counter() - t0,
        }
        write_json(out / "summary.json", summary)
        return summary
    from .build import enable_dtype

    enable_dtype(cfg.dtype)  # the analysis runs at the config's precision even when no
    # sub-run was built in this process (all reused)
    stats = experiment.analyze(study, results)
    own = experiment.evaluate(study, stats)
    t_analysis = time.perf_counter()
    figures = [] if experiment.figures is None else experiment.figures(study, stats, results)
    t_figures = time.perf_counter()
    checks, informational = collect_checks(experiment, own, results)
    for name, extra in (stats.get("runs") or {}).items():
        runs.setdefault(name, {}).update(extra)
    public = {k: v for k, v in stats.items() if not k.startswith("_") and k != "runs"}
    summary = (
        base
        | {"status": status, "passed": verdict(checks)}
        | public
        | {
            "runs": runs,
            "checks": checks,
            "informational": informational,
            "figures": [str(Path(f).relative_to(out)) for f in figures],
            "headline": experiment.summary,
            "claim": experiment.claim,
            "timing": {
                "runs_s": t_runs - t0,
                "reused": sorted(n for n, r in results.items() if r.reused),
                "analysis_s": t_analysis - t_runs,
                "figures_s": t_figures - t_analysis,
            },
            "wall_s": time.perf_counter() - t0,
        }
    )
    write_json(out / "summary.json", summary)
    return summary
