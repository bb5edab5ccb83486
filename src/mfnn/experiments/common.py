"""What several experiments share: typed-parameter rules, config rules, and `filter_jit`
(equinox's, compiled on first call: declaring an experiment imports no JAX).

Parameter rules are pydantic validators to put in an ``Annotated`` type; their messages
say the rule and the value, and the runner names the field (`experiment.params.<key>`).
Config rules go in `mfnn.study.Params.check_config` through `require`.

Example:
    >>> from typing import Annotated
    >>> from pydantic import Field
    >>> from mfnn.study import Params
    >>> class P(Params):
    ...     widths: Annotated[tuple[int, ...], Increasing] = Field((8, 16))
    >>> P(widths=(8, 32)).widths
    (8, 32)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import AfterValidator

from ..config import Config
from ..errors import ConfigError


def _distinct(values: Sequence[Any]) -> Sequence[Any]:
    """no value repeated"""
    if len(set(values)) != len(values):
        raise ValueError(f"must not repeat a value; got {list(values)}")
    return values


def _increasing(values: Sequence[Any]) -> Sequence[Any]:
    """strictly increasing"""
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"must increase strictly; got {list(values)}")
    return values


def filter_jit(fn: Callable) -> Callable:
    """``equinox.filter_jit(fn)``, made at the first call: a module-level jitted function
    whose module imports no JAX until the function runs. The one jitted function is kept,
    so its compilation cache lives as long as the module, as with the decorator itself."""
    jitted: list[Callable] = []

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if not jitted:
            import equinox as eqx

            jitted.append(eqx.filter_jit(fn))
        return jitted[0](*args, **kwargs)

    return call


Distinct = AfterValidator(_distinct)
"""A sequence parameter whose entries are all different."""

Increasing = AfterValidator(_increasing)
"""A sequence parameter that increases strictly (a grid of widths, times, temperatures)."""


def require(experiment: str, *rules: tuple[str, str, bool, Any]) -> None:
    """Refuse the first rule that does not hold: each rule is (field, what it must be,
    whether it holds, the value received), and the `ConfigError` reads
    "`field` must be <rule> for <experiment>; got <value>.".

    Example:
        >>> require("demo", ("model.bias", "false", True, False))
        >>> require("demo", ("model.width", ">= 16", False, 8))
        Traceback (most recent call last):
        ...
        mfnn.errors.ConfigError: `model.width` must be >= 16 for demo; got 8.
    """
    for field, rule, holds, got in rules:
        if not holds:
            raise ConfigError(f"`{field}` must be {rule} for {experiment}; got {got!r}.")


def fixed_output_units(cfg: Config, experiment: str, why: str) -> None:
    """The student f = (1/m) sum_j sigma(w_j . x): no bias, output weights fixed to 1, the
    mean-field scaling (the units of the teacher-student models); ``why`` completes the
    message."""
    m = cfg.model
    units = (m.bias, m.train_output, m.scaling)
    require(
        experiment,
        (
            "model.bias`, `model.train_output`, `model.scaling",
            f"false, false, mean_field ({why})",
            units == (False, False, "mean_field"),
            units,
        ),
    )


def check_plain_langevin(
    cfg: Config, name: str, *, schedule_reason: str, l2_reason: str, beta_note: str = ""
) -> None:
    """The dynamics the Langevin experiments need: Euler-Maruyama with `dynamics.langevin`
    at a constant temperature, a plain gradient flow (no birth-death, no domain),
    `objective.l2` > 0 (the confinement that makes the Gibbs law normalizable) and the
    entropy recorded (the free energy is reported). A `ConfigError` naming the field
    otherwise; ``name`` is the experiment's, the reasons complete its messages."""
    dyn = cfg.dynamics
    if dyn.langevin is None or dyn.integrator != "euler_maruyama":
        raise ConfigError(
            f"{name} needs the Langevin noise: `dynamics.integrator: euler_maruyama` and "
            f"`dynamics.langevin: {{beta: ...}}`{beta_note}."
        )
    plain = dyn.kind == "gradient_flow" and dyn.birth_death is None and dyn.domain is None
    require(
        name,
        ("dynamics.langevin.schedule", f"constant ({schedule_reason})",
         dyn.langevin.schedule == "constant", dyn.langevin.schedule),
        ("dynamics.kind`, `dynamics.birth_death`, `dynamics.domain",
         "gradient_flow, unset, unset (the plain mean-field Langevin dynamics)", plain,
         (dyn.kind, dyn.birth_death, dyn.domain)),
        ("objective.l2", f"> 0 ({l2_reason})", cfg.objective.l2 > 0, cfg.objective.l2),
        ("record.entropy_k", "unset or >= 1 (the free energy is reported)",
         cfg.record.entropy_k != 0, cfg.record.entropy_k),
    )  # fmt: skip
