"""`langevin_temperature`: the risk of the mean-field Langevin minimizer falls as the
inverse temperature beta grows, lambda -> 0 alongside (Mei-Montanari-Nguyen 2018, the
weak-regularization limit of the free energy)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from annotated_types import Gt, MinLen
from pydantic import Field

from ..config import Config
from ..stats import loglog_fit
from ..study import CheckSpec, Experiment, Params, Run, Study, check
from ..style import COLORS, DYNAMICS_COLORS
from .common import Increasing, check_plain_langevin, require

Betas = Annotated[tuple[Annotated[float, Gt(0)], ...], Increasing, MinLen(4)]
CLAIM = """\
Mean-field Langevin dynamics d theta = [v(theta) - lambda theta] dt + sqrt(2/beta) dB
converges to the unique minimizer rho_beta of the free energy F_beta(mu) = R(mu) +
(lambda/2) int |theta|^2 dmu + (1/beta) int rho log rho (Mei, Montanari and Nguyen 2018,
"A mean field view of the landscape of two-layer neural networks", Theorem 4); as beta ->
infinity with lambda -> 0 (the weak-regularization limit) the risk of rho_beta approaches
inf R. Provable at fixed lambda: adding F_b1(rho_b1) <= F_b1(rho_b2) and F_b2(rho_b2) <=
F_b2(rho_b1) for b1 < b2 shows that the entropy of rho_beta and its energy E = R +
(lambda/2) M_2 do not increase with beta (energy_monotone, checked when p = 0); R alone
follows only while (lambda/2) M_2 does not dominate, and with lambda fixed it stops at the
regularized minimizer's level. So lambda_i = objective.l2 (beta_i / beta_1)^(-p), p =
l2_exponent.

Setup: exact population risk (quadrature, x ~ N(0, 1)); student f = (1/m) sum_j
tanh(w_j x), output weights fixed to 1 (theta = w in R), w ~ N(0, 1); teacher 0.3
delta_{-1.5} + 0.7 delta_{1}. One Euler-Maruyama run per beta_i from the same start with
the same noise stream (common random numbers: the runs differ by beta and lambda only).

Statistics (`mfnn.diagnostics.window_stats`): per run, time averages over t >= (1 -
average) T of the population risk R_bar, the energy E_bar and the free energy (kNN
entropy); the fit of log R_bar against log beta, the ratio of the grid's ends. Reported:
the slope's 95 % interval, `monotone` (R_bar falls at every step) and per run `drift` =
|R_late - R_early| / R_bar over the window's halves (at small m the risk fluctuates around
its plateau, correlated in time). Negative control: with p = 0 and lambda = 0.1 at every
beta, slope and ratio fail while energy_monotone holds.
"""


class TemperatureParams(Params):
    betas: Betas = Field((10.0, 30.0, 100.0, 300.0, 1000.0), description="increasing, a decade")
    l2_exponent: float = Field(0.5, ge=0, le=1, description="p: lambda_i = l2 (b_i / b_1)^(-p)")
    average: float = Field(0.5, gt=0, le=1, description="the averaged last fraction of a run")
    slope_margin: float = Field(0.3, gt=0, description="slope of log R_bar vs log beta <= -this")
    ratio: float = Field(10.0, ge=1, description="R_bar(beta_min) / R_bar(beta_max) >= this")

    def check_config(self, cfg: Config) -> None:
        pop, name, b = cfg.data.population, "langevin_temperature", self.betas
        require(
            name,
            ("experiment.params.betas", "a grid spanning a decade (beta_max / beta_min >= 10)",
             b[-1] / b[0] >= 10, b),
            ("data.population", "exact: method quadrature or closed_form (monte_carlo adds "
             "minibatch noise, a temperature of its own)",
             pop is not None and pop.method != "monte_carlo", pop),
            ("model.scaling", "mean_field", cfg.model.scaling == "mean_field", cfg.model.scaling),
        )  # fmt: skip
        check_plain_langevin(
            cfg,
            name,
            beta_note=" (beta is replaced by each `experiment.params.betas`)",
            schedule_reason="each run has one temperature",
            l2_reason="it is lambda at the smallest beta, and without the confinement the "
            "Gibbs law of a bounded unit is not normalizable",
        )

    def l2(self, cfg: Config) -> list[float]:
        """lambda_i = objective.l2 (beta_i / beta_1)^(-l2_exponent)."""
        return [cfg.objective.l2 * (b / self.betas[0]) ** -self.l2_exponent for b in self.betas]


def plan(s: Study[TemperatureParams]) -> dict[str, Run]:
    runs = {}
    for b, lam in zip(s.params.betas, s.params.l2(s.config), strict=True):
        changes = {"dynamics.langevin.beta": b, "objective.l2": lam}
        runs[f"beta{b:g}"] = Run(s.sub_config(f"beta{b:g}", changes))
    return runs


def analyze(s: Study[TemperatureParams], runs) -> dict:
    from ..diagnostics import window_stats

    p, per_run, keys = s.params, {}, ("loss", "energy", "free_energy", "entropy")
    for (name, r), b, lam in zip(runs.items(), p.betas, p.l2(s.config), strict=True):
        w = {k: window_stats(r.metrics["t"], r.metrics[k], p.average) for k in keys}
        per_run[name] = {
            "beta": b,
            "effective_beta": b * s.config.dynamics.langevin.drift_scale,
            "l2": lam,
            "window": w,
            "drift": abs(w["loss"]["late"] - w["loss"]["early"]) / w["loss"]["mean"],
            "quadrature_error": (r.summary.get("quadrature_error") or {}).get("final"),
        }
    win = [r["window"] for r in per_run.values()]
    risk = [w["loss"]["mean"] for w in win]
    fit, quad = loglog_fit(p.betas, risk), [r["quadrature_error"] for r in per_run.values()]
    q_rel = None if None in quad else max(q / r for q, r in zip(quad, risk, strict=True))
    return {
        "final_loss": risk[-1],
        "betas": list(p.betas),
        "l2": [r["l2"] for r in per_run.values()],
        "risk": risk,
        "energy": [w["energy"]["mean"] for w in win],
        "free_energy": [w["free_energy"]["mean"] for w in win],
        "slope": fit.slope,
        "slope_fit": fit.as_dict(),
        "monotone": bool(np.all(np.diff(risk) < 0)),
        "quadrature_rel": q_rel,
        "runs": per_run,
        "_fit": fit,
        "_t_from": win[0]["loss"]["t_from"],
    }


def evaluate(s: Study[TemperatureParams], stats: dict) -> dict:
    p, betas, risk = s.params, stats["betas"], stats["risk"]
    slope, ratio, q = stats["slope"], risk[0] / risk[-1], stats["quadrature_rel"]
    rule = f"slope of log R_bar against log beta <= -{p.slope_margin:g}"
    checks = {"slope": check(slope, rule, bool(slope <= -p.slope_margin))}
    rule = f"R_bar(beta={betas[0]:g}) / R_bar(beta={betas[-1]:g}) >= {p.ratio:g}"
    checks["ratio"] = check(ratio, rule, bool(ratio >= p.ratio))
    if p.l2_exponent == 0:  # lambda fixed: the provable statement, E non-increasing
        e = np.asarray(stats["energy"])
        worst = float(np.max(e[1:] / e[:-1]))
        rule = "max_i E_bar(beta_{i+1}) / E_bar(beta_i) <= 1 (lambda fixed: E(rho_beta) "
        checks["energy_monotone"] = check(worst, rule + "does not increase)", worst <= 1.0)
    if q is not None:
        rule = "max_beta |R_q - R_2q| / R_bar <= 0.1 (the rule resolves the risks)"
        checks["quadrature_resolved"] = check(q, rule, q <= 0.1)
    return checks


def figures(s: Study[TemperatureParams], stats: dict, runs) -> list:
    from ..plots import plt, save_figure

    betas, fit = np.asarray(stats["betas"]), stats["_fit"]
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    langevin = DYNAMICS_COLORS["langevin"]
    ax[0].loglog(betas, stats["risk"], "o-", color=langevin, label=r"$\bar R$ (time average)")
    ax[0].loglog(betas, stats["energy"], "s--", color=COLORS["init"], label=r"$\bar E$")
    ax[0].loglog(betas, fit(betas), "k:", label=f"fit of $\\bar R$: slope {fit.slope:.2f}")
    ax[0].set(
        xlabel=r"inverse temperature $\beta$",
        ylabel=r"time-averaged risk $\bar R$, energy $\bar E$",
        title=r"time averages against $\beta$",
    )
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(betas)))
    for col, b, r in zip(colors, betas, runs.values(), strict=True):
        ax[1].semilogy(r.metrics["t"], r.metrics["loss"], color=col, label=f"beta = {b:g}")
    ax[1].axvline(stats["_t_from"], color="k", ls="--", lw=0.8, label="averaging window")
    ax[1].set(xlabel="t", ylabel="population risk R(t)", title="risk over time")
    for a in ax:
        a.legend(fontsize=7)
    p = s.params.l2_exponent
    fig.suptitle(
        rf"the Langevin risk falls as $\beta$ grows, with $\lambda \propto \beta^{{-{p:g}}}$"
        if p > 0
        else r"at fixed $\lambda$ the Langevin energy does not increase with $\beta$"
    )
    return [save_figure(fig, s.figure_path("temperature.png"))]


LANGEVIN_TEMPERATURE = Experiment(
    name="langevin_temperature",
    summary="mean-field Langevin on a teacher-student task: the time-averaged risk falls "
    "as beta grows, lambda -> 0 alongside (Mei-Montanari-Nguyen 2018)",
    claim=CLAIM,
    params=TemperatureParams,
    quick=(
        "experiment.params.betas=[10,30,100,300]",
        "model.width=256",
        "dynamics.steps=3000",
        "record.every=75",
    ),
    checks=(
        CheckSpec("slope", "least-squares slope of log R_bar against log beta <= -slope_margin"),
        CheckSpec("ratio", "R_bar(beta_min) / R_bar(beta_max) >= ratio"),
        CheckSpec("quadrature_resolved", "max over runs of |R_q - R_2q| / R_bar <= 0.1 at the end"),
        CheckSpec(
            "energy_monotone", "only with l2_exponent = 0: max_i E_bar(b_{i+1}) / E_bar(b_i) <= 1"
        ),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
