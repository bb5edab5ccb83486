"""`birth_death_speedup`: birth-death jumps speed up the mean-field descent against plain
transport from the same start (Rotskoff, Jelassi, Bruna and Vanden-Eijnden 2019)."""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from pydantic import Field, PositiveFloat

from ..config import Config
from ..stats import hitting_time, window_slope
from ..study import CheckSpec, Experiment, Params, Run, Study, check
from ..style import DYNAMICS_COLORS
from .common import Increasing, require

CLAIM = """\
Adding the birth-death term -alpha (dR/dmu - <dR/dmu>) rho to the mean-field transport
equation keeps its minimizers and adds a second dissipation, dR/dt = -int |grad dR/dmu|^2
drho - alpha int (dR/dmu - <dR/dmu>)^2 drho; from a full-support start the dynamics
converges globally, at the rate R(rho_t) - R* = O(1/t), and faster than transport alone
(Rotskoff, Jelassi, Bruna and Vanden-Eijnden 2019, "Neuron birth-death dynamics
accelerates gradient descent and converges asymptotically", ICML). A jump kills or
duplicates a particle at rate alpha |g|, g the centered first variation.

Setup: exact population risk (closed form), x ~ N(0, I_3), f = (1/m) sum_j erf(w_j . x),
teacher 0.7 erf(e_1 . x) + 0.3 erf(e_2 . x): R* = 0, and each teacher atom's mass must be
carried by a fraction of the particles, which transport can only move there and jumps can
teleport (erf is bounded: no norm makes up for missing mass). Start w_j ~ N(0, 0.5^2 I).
Runs from the same particles and key, Euler transport then the jump step: `transport` (the
control, alpha = 0), `birth_death` (alpha = dynamics.birth_death.rate) and, with
langevin_beta, `langevin_birth_death` (noise sqrt(2/beta) dB; reported, not checked).

Statistics of the recorded risk L (`mfnn.stats`, `mfnn.diagnostics.coupling`): T(run), the
first t with L <= target L(0); speedup = T(transport) / T(birth_death); the log-log slope of
L and `loss_gain` against the control over fit_window; `energy_ratio` up to T(birth_death);
`jump_noise_ratio` at each snapshot (reported): the theorem is about m = infinity and its
regime ends near where this ratio reaches 1, where the target and the windows end. The
O(1/t) slope bound alone does not separate the runs (the control meets it too); speedup and
loss_gain do (1 for the control). The sub-runs' energy_identity checks the transport step's
identity, energy_identity_jumps the identity with jumps.
"""


class SpeedupParams(Params):
    target: float = Field(1e-3, gt=0, lt=1, description="T(run): first t with L <= target L(0)")
    min_speedup: float = Field(1.5, gt=1, description="T(transport) / T(birth_death) >= this")
    fit_window: Annotated[tuple[PositiveFloat, PositiveFloat], Increasing] = Field(
        (10.0, 100.0), description="[t_a, t_b]: the slope and loss_gain window"
    )
    slope_margin: float = Field(0.2, ge=0, description="slope(birth_death) <= -1 + this")
    min_loss_gain: float = Field(1.5, gt=1, description="L_transport / L_birth_death >= this")
    energy_tolerance: float = Field(0.25, ge=0, description="|energy ratio - 1| <= this")
    langevin_beta: float | None = Field(None, gt=0, description="a third, noisy run (null: none)")

    def check_config(self, cfg: Config) -> None:
        dyn, pop = cfg.dynamics, cfg.data.population
        rate = None if dyn.birth_death is None else dyn.birth_death.rate
        require(
            "birth_death_speedup",
            ("dynamics.birth_death.rate", "> 0 (the transport control uses alpha = 0)",
             rate is not None and rate > 0, rate),
            ("dynamics.langevin", "unset (`experiment.params.langevin_beta` adds the noisy run)",
             dyn.langevin is None, dyn.langevin),
            ("dynamics.kind`, `data.population.method", "gradient_flow, closed_form or "
             "quadrature (an exact loss)", dyn.kind == "gradient_flow" and pop is not None
             and pop.method != "monte_carlo", (dyn.kind, pop and pop.method)),
        )  # fmt: skip


def plan(s: Study[SpeedupParams]) -> dict[str, Run]:
    alpha, beta = s.config.dynamics.birth_death.rate, s.params.langevin_beta
    rates = {"transport": 0.0, "birth_death": alpha}
    runs = {k: Run(s.sub_config(k, {"dynamics.birth_death.rate": a})) for k, a in rates.items()}
    if beta is not None:
        noisy = {"dynamics.langevin": {"beta": beta}, "dynamics.integrator": "euler_maruyama"}
        runs["langevin_birth_death"] = Run(s.sub_config("langevin_birth_death", noisy))
    return runs


def curve_stats(p: SpeedupParams, t: np.ndarray, loss: np.ndarray) -> dict[str, float]:
    """One run's loss curve: L(0), T(run) (`mfnn.stats.hitting_time`, log scale), the
    slope over fit_window and the late slope over [t_b, t_end] (nan if t_end <= 2 t_b)."""
    a, b = p.fit_window
    return {
        "initial_loss": float(loss[0]),
        "T_target": hitting_time(t, loss, p.target * float(loss[0]), scale="log"),
        "slope": window_slope(t, loss, a, b),
        "late_slope": window_slope(t, loss, b, float(t[-1])) if t[-1] > 2 * b else math.nan,
    }


def analyze(s: Study[SpeedupParams], runs) -> dict:
    import jax.numpy as jnp

    from ..diagnostics import energy_ratio, jump_noise_ratio, loss_gain

    p, per_run, starts = s.params, {}, {}
    for name, r in runs.items():
        clouds, m = {k: r.particles(k) for k in r.snapshot_steps()}, r.config.model.width
        starts[name] = clouds.get(0)
        ok = bool(clouds) and all(c.shape[0] == m and np.isfinite(c).all() for c in clouds.values())
        per_run[name] = {
            "alpha": r.config.dynamics.birth_death.rate,
            "langevin_beta": p.langevin_beta if name.startswith("langevin") else None,
            **curve_stats(p, r.metrics["t"], r.metrics["loss"]),
            "particles_ok": ok and bool(np.all(np.isfinite(r.metrics["loss"]))),
        }
    tr, bd, r = per_run["transport"], per_run["birth_death"], runs["birth_death"]
    lt, lb = runs["transport"].metrics, r.metrics
    t_end = bd["T_target"] if math.isfinite(bd["T_target"]) else float(lb["t"][-1])
    steps = [k for k in r.snapshot_steps() if k > 0]
    noise = [jump_noise_ratio(r.built.dynamics, jnp.asarray(r.particles(k))) for k in steps]
    noise_t = [k * r.dt for k in steps]
    bd["energy_ratio"] = energy_ratio(lb, t_end)
    bd["noise_ratio"] = {
        "t": noise_t,
        "value": noise,
        "at_T_target": float(np.interp(t_end, noise_t, noise)) if noise else None,
        "first_t_above_1": next((t for t, v in zip(noise_t, noise, strict=True) if v >= 1), None),
    }
    same = all(x is not None and np.array_equal(x, starts["transport"]) for x in starts.values())
    control = np.interp(lb["t"], lt["t"], lt["loss"])
    return {
        "final_loss": float(lb["loss"][-1]),
        "L_target": p.target * tr["initial_loss"],
        "speedup": tr["T_target"] / bd["T_target"] if bd["T_target"] > 0 else math.nan,
        "loss_gain": loss_gain(lb["t"], control, lb["loss"], *p.fit_window),
        "T_target": {name: v["T_target"] for name, v in per_run.items()},
        "slopes": {name: v["slope"] for name, v in per_run.items()},
        "same_start": same,
        "runs": per_run,
    }


def evaluate(s: Study[SpeedupParams], stats: dict) -> dict:
    p, (a, b), bd = s.params, s.params.fit_window, stats["runs"]["birth_death"]
    speedup, gain, slope = stats["speedup"], stats["loss_gain"], bd["slope"]
    window, out = f"over t in [{a:g}, {b:g}]", {}
    rule = f"T(transport) / T(birth_death) >= {p.min_speedup:g}, T: first L <= {p.target:g} L(0)"
    out["speedup"] = check(speedup, rule, speedup >= p.min_speedup)
    rule = f"slope of log L(birth_death) vs log t {window} <= {-1 + p.slope_margin:g} (O(1/t))"
    out["rate_birth_death"] = check(slope, rule, slope <= -1 + p.slope_margin)
    rule = f"geometric mean of L(transport) / L(birth_death) {window} >= {p.min_loss_gain:g}"
    out["loss_gain"] = check(gain, rule, gain >= p.min_loss_gain)
    ratio, tol = bd["energy_ratio"], p.energy_tolerance
    rule = f"|dE / int -(dissipation + jump_dissipation) dt - 1| <= {tol:g} over t <= "
    rule += f"{ratio['t_end']:.4g}"
    out["energy_identity_jumps"] = check(
        ratio["with_jumps"], rule, abs(ratio["with_jumps"] - 1) <= tol
    )
    same = stats["same_start"]
    out["same_start"] = check(same, "the step-0 particles of all runs are identical", same)
    for name, r in stats["runs"].items():
        ok = r["particles_ok"]
        out[f"particles_{name}"] = check(ok, "every snapshot: m particles, all finite", ok)
    return out


COLORS = {  # each run in the colour of its dynamics (`mfnn.style.DYNAMICS_COLORS`)
    "transport": DYNAMICS_COLORS["gradient_flow"],
    "birth_death": DYNAMICS_COLORS["birth_death"],
    "langevin_birth_death": DYNAMICS_COLORS["langevin"],
}


def figures(s: Study[SpeedupParams], stats: dict, runs) -> list:
    """speedup.png: the loss of each run (dotted: T(run)), -dE/dt against the dissipation with
    and without the jump term, the finite-m noise ratio."""
    from ..plots import plt, save_figure

    p, (a, b), level = s.params, s.params.fit_window, stats["L_target"]
    bd, m = stats["runs"]["birth_death"], runs["birth_death"].metrics
    fig, ax = plt.subplots(1, 3, figsize=(18, 5.1), layout="constrained")
    for name, r in runs.items():
        t, loss, st = r.metrics["t"], r.metrics["loss"], stats["runs"][name]
        pos, col = (t > 0) & (loss > 0), COLORS[name]
        label = f"{name} (alpha = {st['alpha']:g}; slope on [{a:g}, {b:g}]: {st['slope']:.2f})"
        ax[0].loglog(t[pos], loss[pos], color=col, label=label)
        if math.isfinite(st["T_target"]):
            ax[0].axvline(st["T_target"], color=col, ls=":", lw=1)
    ax[0].axhline(level, color="k", lw=0.8, ls="--", label=f"L_target = {p.target:g} L(0)")
    ref_t = np.array([a, float(runs["transport"].metrics["t"][-1])])
    ax[0].loglog(ref_t, 3 * level * ref_t[0] / ref_t, "k-.", lw=0.8, label="slope -1 (O(1/t))")
    ax[0].set(xlabel="t", ylabel="population risk L(t)", title="loss: transport vs birth-death")
    mid, drop = 0.5 * (m["t"][1:] + m["t"][:-1]), -np.diff(m["energy"]) / np.diff(m["t"])
    both, own = m["dissipation"] + m["jump_dissipation"], m["dissipation"]
    total = "dissipation + jumps'"
    ax[1].loglog(mid, (both[1:] + both[:-1]) / 2, c=COLORS["birth_death"], lw=1, label=total)
    ax[1].loglog(
        mid, (own[1:] + own[:-1]) / 2, "--", c=COLORS["transport"], lw=1, label="transport's"
    )
    ax[1].loglog(mid, np.where(drop > 0, drop, np.nan), ".", ms=3, c="#c0392b", label="-dE/dt")
    ax[1].set(xlabel="t", ylabel="rate of energy decrease", title="energy identity with jumps")
    ax[2].loglog(
        bd["noise_ratio"]["t"], bd["noise_ratio"]["value"], "o-", ms=3, color=COLORS["birth_death"]
    )
    ax[2].axhline(1.0, color="k", lw=0.8)
    ax[2].set(xlabel="t", ylabel="resampling energy / jump dissipation", title="finite-m noise")
    for axis in ax[:2]:
        if math.isfinite(bd["T_target"]):
            axis.axvline(bd["T_target"], color=COLORS["birth_death"], ls=":", lw=1)
        axis.legend(fontsize=7)
    fig.suptitle(
        "birth-death jumps reach the loss level sooner than transport alone; the loss falls "
        "like O(1/t)"
    )
    return [save_figure(fig, s.figure_path("speedup.png"))]


BIRTH_DEATH_SPEEDUP = Experiment(
    name="birth_death_speedup",
    summary="birth-death jumps reach a loss level faster than plain transport from the same "
    "start, O(1/t) (Rotskoff-Jelassi-Bruna-Vanden-Eijnden 2019)",
    claim=CLAIM,
    params=SpeedupParams,
    quick=("model.width=128", "dynamics.steps=2500", "experiment.params.langevin_beta=null"),
    checks=(
        CheckSpec("speedup", "T(transport) / T(birth_death) >= min_speedup (control: 1)"),
        CheckSpec(
            "rate_birth_death",
            "log-log slope of L on fit_window <= -1 + slope_margin (the control meets it too)",
        ),
        CheckSpec(
            "loss_gain",
            "geometric mean of L(transport) / L(birth_death) on fit_window >= min_loss_gain "
            "(control: 1)",
        ),
        CheckSpec("energy_identity_jumps", "|energy ratio - 1| <= energy_tolerance"),
        CheckSpec("same_start", "invariant of the setup: the runs' step-0 particles are equal"),
        CheckSpec("particles_*", "every snapshot of the run holds m finite particles"),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
