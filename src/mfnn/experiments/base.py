"""Named experiments: a config, the run(s), an analysis with pass/fail checks of a claim."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config, parse_yaml
from ..errors import ConfigError
from ..rundir import write_json

# the status of an experiment is the worst of its runs'
STATUS_RANK = {"completed": 0, "interrupted": 1, "diverged": 2, "failed": 3}


def experiment_params(cfg: Config, name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """``experiment.params`` merged over ``defaults``; a key ``defaults`` lacks is refused
    (`ConfigError` naming `experiment.params` and the keys the experiment takes)."""
    given = dict(cfg.experiment.params)
    unknown = set(given) - set(defaults)
    if unknown:
        raise ConfigError(
            f"`experiment.params` of {name} takes {sorted(defaults)}; got unknown "
            f"{sorted(unknown)}."
        )
    return defaults | given


# ------------------------------------------------------------------ parameter checks


def is_number(x) -> bool:
    """A finite real number given as an int or a float (a bool is not a number).

    Example:
        >>> is_number(2), is_number(0.5), is_number(True), is_number(float("inf"))
        (True, True, False, False)
    """
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def is_integer(x) -> bool:
    """An int that is not a bool.

    Example:
        >>> is_integer(3), is_integer(3.0), is_integer(False)
        (True, False, False)
    """
    return isinstance(x, int) and not isinstance(x, bool)


def number_param(
    p: dict[str, Any],
    key: str,
    prefix: str = "experiment.params",
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
) -> float:
    """``p[key]`` as a float when it is a finite number within the bounds given (``above``
    and ``below`` strict, ``at_least`` and ``at_most`` inclusive); else a `ConfigError`
    naming `` `prefix.key` ``, the rule and the value received.

    Example:
        >>> number_param({"rate": 2}, "rate", above=0)
        2.0
        >>> number_param({"rate": 0}, "rate", above=0, at_most=1)
        Traceback (most recent call last):
        ...
        mfnn.errors.ConfigError: `experiment.params.rate` must be a number in (0, 1]; got 0.
    """
    v = p[key]
    ok = is_number(v)
    if ok and above is not None:
        ok = v > above
    if ok and at_least is not None:
        ok = v >= at_least
    if ok and below is not None:
        ok = v < below
    if ok and at_most is not None:
        ok = v <= at_most
    if not ok:
        raise ConfigError(
            f"`{prefix}.{key}` must be {_rule(above, at_least, below, at_most)}; got {v!r}."
        )
    return float(v)


def _rule(above, at_least, below, at_most) -> str:
    """The words of `number_param`'s rule: "a number in (0, 1]", "a number > 0", ..."""
    lo = (above, "(", ">") if above is not None else (at_least, "[", ">=")
    hi = (below, ")", "<") if below is not None else (at_most, "]", "<=")
    if lo[0] is not None and hi[0] is not None:
        return f"a number in {lo[1]}{lo[0]:g}, {hi[0]:g}{hi[1]}"
    if lo[0] is not None:
        return f"a number {lo[2]} {lo[0]:g}"
    if hi[0] is not None:
        return f"a number {hi[2]} {hi[0]:g}"
    return "a finite number"


def integer_param(
    p: dict[str, Any], key: str, prefix: str = "experiment.params", *, at_least: int = 1
) -> int:
    """``p[key]`` when it is an integer >= ``at_least``; else a `ConfigError` naming
    `` `prefix.key` `` and the value received.

    Example:
        >>> integer_param({"seeds": 0}, "seeds")
        Traceback (most recent call last):
        ...
        mfnn.errors.ConfigError: `experiment.params.seeds` must be an integer >= 1; got 0.
    """
    v = p[key]
    if not (is_integer(v) and v >= at_least):
        raise ConfigError(f"`{prefix}.{key}` must be an integer >= {at_least}; got {v!r}.")
    return v


# ------------------------------------------------------------------ statistics


def loglog_fit(x, y) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line log y = slope log x + intercept;
    (nan, nan) unless there are two points or more and every y is > 0 and finite.

    Example:
        >>> slope, icpt = loglog_fit([1, 2, 4], [3.0, 1.5, 0.75])
        >>> round(slope, 12), round(math.exp(icpt), 12)
        (-1.0, 3.0)
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 2 or not np.all(np.isfinite(y) & (y > 0)):
        return float("nan"), float("nan")
    slope, icpt = np.polyfit(np.log(x), np.log(y), 1)
    return float(slope), float(icpt)


def loglog_slope(x, y) -> float:
    """The slope of `loglog_fit`: nan unless every y is > 0 and finite.

    Example:
        >>> round(loglog_slope([1, 10, 100], [2.0, 0.2, 0.02]), 12)
        -1.0
    """
    return loglog_fit(x, y)[0]


def write_summary(
    out: Path,
    name: str,
    statuses: dict[str, str],
    checks: dict[str, dict],
    figures: list[Path],
    claim: str,
    t0: float,
    **fields: Any,
) -> dict[str, Any]:
    """Write ``out/summary.json`` of an experiment and return it.

    Keys: experiment, status (the worst of the runs': completed < interrupted < diverged
    < failed), the experiment's own ``fields`` (final_loss, runs, ...), checks, passed (all
    checks passed), figures (relative to ``out``), claim, wall_s (since ``t0``, a
    `time.perf_counter` reading).
    """
    summary = {
        "experiment": name,
        "status": max(statuses.values(), key=STATUS_RANK.__getitem__),
        **fields,
        "checks": checks,
        "passed": all(c["passed"] for c in checks.values()),
        "figures": [str(Path(f).relative_to(out)) for f in figures],
        "claim": claim,
        "wall_s": time.perf_counter() - t0,
    }
    write_json(Path(out) / "summary.json", summary)
    return summary


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A claim of the theory, reproduced by ``mfnn run NAME``.

    Attributes:
        name: the CLI name.
        summary: one line for ``mfnn experiments``.
        claim: the claim and the statistics its checks use (thresholds stated).
        quick: ``--set``-style overrides for ``--quick`` (under a minute on 2 cores,
            the checks still evaluated).
        runner: ``runner(cfg, out_dir, resume, progress) -> summary dict``; writes the
            experiment directory (sub-runs, figures, summary.json).
    """

    name: str
    summary: str
    claim: str
    quick: tuple[str, ...]
    runner: Callable[..., dict[str, Any]]

    def default_config(self) -> dict[str, Any]:
        text = resources.files("mfnn.experiments").joinpath("configs", f"{self.name}.yaml")
        return parse_yaml(text.read_text())

    def run(self, cfg: Config, out: Path, *, resume: bool = False, progress: bool = True):
        return self.runner(cfg, Path(out), resume=resume, progress=progress)
