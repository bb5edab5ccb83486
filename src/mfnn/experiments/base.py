"""Named experiments: a config, the run(s), an analysis with pass/fail checks of a claim."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..config import Config


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
        return yaml.safe_load(text.read_text())

    def run(self, cfg: Config, out: Path, *, resume: bool = False, progress: bool = True):
        return self.runner(cfg, Path(out), resume=resume, progress=progress)
