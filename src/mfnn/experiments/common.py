"""Config rules that several experiments share."""

from __future__ import annotations

from ..config import Config
from ..errors import ConfigError


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
    if dyn.langevin.schedule != "constant":
        raise ConfigError(
            f"`dynamics.langevin.schedule` must be constant for {name} ({schedule_reason}); "
            f"got {dyn.langevin.schedule!r}."
        )
    if dyn.kind != "gradient_flow" or dyn.birth_death is not None or dyn.domain is not None:
        raise ConfigError(
            f"{name} runs the plain mean-field Langevin dynamics: `dynamics.kind: "
            "gradient_flow`, no `dynamics.birth_death`, no `dynamics.domain`."
        )
    if not cfg.objective.l2 > 0:
        raise ConfigError(
            f"`objective.l2` must be > 0 for {name}: {l2_reason}; got {cfg.objective.l2!r}."
        )
    if cfg.record.entropy_k == 0:
        raise ConfigError(f"`record.entropy_k` must not be 0: {name} reports the free energy.")
