"""Named experiments: a config, the run(s), an analysis with pass/fail checks of a claim."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from ..config import Config, parse_yaml
from ..errors import ConfigError
from ..runs import write_json

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
