"""`boltzmann_fixed_point`: the Gibbs state rho_beta solved on a grid is where the
mean-field Langevin flow goes, PDE and particles alike, and its risk falls with beta."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from annotated_types import Gt, MinLen
from pydantic import Field

from ..config import Config, dump, load, parse_yaml
from ..stats import loglog_fit
from ..study import Call, CheckSpec, Experiment, Params, Run, Study, check
from ..style import DYNAMICS_COLORS
from .common import Increasing, check_plain_langevin, require

Betas = Annotated[tuple[Annotated[float, Gt(0)], ...], Increasing, MinLen(3)]
CLAIM = """\
The free energy F(rho) = R(rho) + (lambda/2) int |theta|^2 drho + (1/beta) int rho log rho
has a unique minimiser, the Boltzmann (Gibbs) fixed point

    rho_beta = exp(-beta Phi[rho_beta]) / Z,   Phi = dR/drho + (lambda/2) |theta|^2,

and the mean-field Langevin dynamics d theta = [v(theta) - lambda theta] dt + sqrt(2/beta) dB
converges to it (Mei, Montanari and Nguyen 2018, "A mean field view of the landscape of
two-layer neural networks", Theorem 4; Hu, Ren, Siska and Szpruch 2021, "Mean-field
Langevin dynamics and energy landscape of neural networks"). The fixed point is solved
on the grid (`mfnn.pde.boltzmann`: damped Picard, then Newton-GMRES; residual = relative
sup norm of rho - G(rho)); the same problem then runs as the PDE on that grid
(`dynamics.kind: pde`) and as m particles (Euler-Maruyama), and both approach rho_beta:
F(rho_t) stays above F(rho_beta) and its gap closes, the Kolmogorov-Smirnov distance of
the PDE density and of the pooled late particle snapshots to rho_beta is small, and the
particles' time-averaged energy E = R + (lambda/2) M_2 approaches E(rho_beta). Finally the
risk R(rho_beta) is computed at equilibrium for a grid of beta with lambda_i = lambda
(beta_i / beta_1)^(-p) (the langevin_temperature question without time averages): its
log-log slope against beta is the exponent. With p = 1 (beta lambda fixed) R(rho_beta)
falls at every step of the grid; with p = 1/2 the confinement lambda = O(beta^-1/2) sets a
floor and R(rho_beta) rises again between beta = 300 and 1000 (7.3e-5 -> 8.2e-5, grid
converged), which the time-averaged particle runs of `langevin_temperature` do not show.

Setup: theta = w in R (fixed output weights), tanh units, exact population risk by
quadrature for x ~ N(0, 1), teacher 0.3 delta_{-1.5} + 0.7 delta_{1}.
"""


class BoltzmannParams(Params):
    cells: int = Field(480, ge=16, description="grid cells of [low, high]")
    low: float = Field(-6.0, description="grid: left end")
    high: float = Field(6.0, description="grid: right end")
    pde_dt: float = Field(0.004, gt=0, description="time step of the PDE run")
    betas: Betas = Field((10.0, 30.0, 100.0, 300.0, 1000.0), description="the equilibrium sweep")
    l2_exponent: float = Field(1.0, ge=0, le=1, description="p: lambda_i = l2 (b_i/b_1)^(-p)")
    residual_tol: float = Field(1e-10, gt=0, description="fixed-point residual <= this")
    gap_ratio: float = Field(0.01, gt=0, description="(F_T - F*) / (F_0 - F*) <= this (PDE)")
    ks_pde: float = Field(0.01, gt=0, description="KS(rho_T, rho_beta) <= this")
    ks_particles: float = Field(0.06, gt=0, description="KS(late particles, rho_beta) <= this")
    energy_gap: float = Field(0.1, gt=0, description="|E_bar(particles) / E(rho_beta) - 1| <= this")
    average: float = Field(0.5, gt=0, le=1, description="the late fraction of the particle run")
    slope_margin: float = Field(0.3, gt=0, description="slope of log R(rho_b) vs log b <= -this")

    def check_config(self, cfg: Config) -> None:
        name, pop = "boltzmann_fixed_point", cfg.data.population
        check_plain_langevin(
            cfg,
            name,
            schedule_reason="the Gibbs state of one temperature",
            l2_reason="the confinement makes the Gibbs law normalizable",
        )
        require(
            name,
            ("experiment.params.high", "> low", self.high > self.low, (self.low, self.high)),
            ("data.population", "quadrature or closed_form (an exact risk)",
             pop is not None and pop.method != "monte_carlo", pop),
            ("model", "a two-layer mean-field network with one coordinate per neuron "
             "(bias false, train_output false, data dim 1)",
             cfg.model.kind == "two_layer" and not cfg.model.bias
             and not cfg.model.train_output and pop is not None and pop.dim == 1,
             cfg.model.kind),
        )  # fmt: skip

    def l2(self, cfg: Config) -> list[float]:
        return [cfg.objective.l2 * (b / self.betas[0]) ** -self.l2_exponent for b in self.betas]


def pde_changes(p: BoltzmannParams, cfg: Config) -> dict[str, Any]:
    """The config changes that make the experiment's particle config its PDE run (the same
    final time T = steps dt, at the PDE's own time step)."""
    steps = max(1, round(cfg.dynamics.steps * cfg.dynamics.dt / p.pde_dt))
    every = max(1, round(cfg.record.every * cfg.dynamics.dt / p.pde_dt))
    return {
        "dynamics.kind": "pde",
        "dynamics.integrator": "euler",
        "dynamics.dt": p.pde_dt,
        "dynamics.steps": steps,
        "record.every": every,
        "record.snapshot_every": None,
        "record.entropy_k": None,
        "dynamics.grid": {"cells": p.cells, "low": p.low, "high": p.high, "flux": "muscl"},
    }


def equilibrium(config: str, betas: list[float], l2: list[float], beta: float) -> dict:
    """The Gibbs state of the PDE config (YAML text) at ``beta`` and R(rho_b) for each
    (betas[i], l2[i]): residuals, free energy, risk, energy, density and its CDF."""
    from ..pde.boltzmann import boltzmann
    from ..pde.energy import grid_energy
    from ..pde.run import build_pde

    cfg = load(parse_yaml(config))
    pb = build_pde(cfg)
    sol = boltzmann(pb.solver.energy, pb.grid, beta)
    mass = pb.solver.mass_of(sol.rho)
    out = {
        "residual": sol.residual,
        "iterations": sol.iterations,
        "free_energy": float(pb.solver.free_energy(sol.rho)),
        "risk": float(pb.solver.energy.risk(mass)),
        "energy": float(pb.solver.energy.energy(mass)),
        "density": np.asarray(sol.rho).tolist(),
        "sweep": [],
    }
    for b, lam in zip(betas, l2, strict=True):
        objective = pb.particles.objective
        energy = grid_energy(
            type(objective).make(
                objective.teacher, objective.inputs, objective.method,
                nodes=objective.nodes, dtype=mass.dtype, l2=lam,
            ) if objective.method != "closed_form" else objective,
            pb.model, pb.grid, mass.dtype,
        )  # fmt: skip
        s = boltzmann(energy, pb.grid, b)
        m = s.rho.reshape(-1) * pb.grid.volume
        out["sweep"].append(
            {"beta": b, "l2": lam, "residual": s.residual, "risk": float(energy.risk(m))}
        )
    return out


def plan(s: Study[BoltzmannParams]) -> dict[str, Run | Call]:
    p = s.params
    pde = s.sub_config("pde", pde_changes(p, s.config))
    return {
        "equilibrium": Call(
            equilibrium,
            {
                "config": dump(pde),
                "betas": list(p.betas),
                "l2": p.l2(s.config),
                "beta": s.config.dynamics.langevin.beta,
            },
        ),  # fmt: skip
        "pde": Run(pde),
        "particles": Run(s.sub_config("particles")),
    }


def ks(cdf_a: np.ndarray, cdf_b: np.ndarray) -> float:
    """sup |F_a - F_b| over the grid's edges (both CDFs given at the edges)."""
    return float(np.max(np.abs(cdf_a - cdf_b)))


def _cdf_of_density(rho: np.ndarray, h: float) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(rho) * h])


def _cdf_of_points(points: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.sort(points), edges, side="right") / len(points)


def analyze(s: Study[BoltzmannParams], runs) -> dict:
    from ..pde.run import read_density

    p = s.params
    eq, pde, parts = runs["equilibrium"].value, runs["pde"], runs["particles"]
    rho_star = np.asarray(eq["density"])
    h = (p.high - p.low) / p.cells
    edges = np.linspace(p.low, p.high, p.cells + 1)
    cdf_star = _cdf_of_density(rho_star, h)
    f_star = eq["free_energy"]
    fe = pde.metrics["free_energy"]
    steps = sorted(pde.snapshot_steps())
    _, rho_t, _ = read_density(pde.dir / "snapshots" / f"step_{steps[-1]:08d}.npz")
    # particles: pool the snapshots of the late window
    psteps = parts.snapshot_steps()
    t_end = psteps[-1]
    late = [st for st in psteps if st >= (1 - p.average) * t_end]
    pooled = np.concatenate([parts.particles(st)[:, 0] for st in late])
    t = parts.metrics["t"]
    window = t >= (1 - p.average) * t[-1]
    e_bar = float(np.mean(parts.metrics["energy"][window]))
    sweep = eq["sweep"]
    fit = loglog_fit([r["beta"] for r in sweep], [r["risk"] for r in sweep])
    return {
        "final_loss": float(pde.metrics["loss"][-1]),
        "residual": eq["residual"],
        "sweep_residual": max(r["residual"] for r in sweep),
        "free_energy_star": f_star,
        "risk_star": eq["risk"],
        "energy_star": eq["energy"],
        "pde_min_gap": float(np.min(fe) - f_star),
        "pde_gap_ratio": float((fe[-1] - f_star) / (fe[0] - f_star)),
        "ks_pde": ks(_cdf_of_density(rho_t, h), cdf_star),
        "ks_particles": ks(_cdf_of_points(pooled, edges), cdf_star),
        "particles_pooled": int(pooled.size),
        "particles_energy": e_bar,
        "energy_gap": abs(e_bar / eq["energy"] - 1.0),
        "sweep": sweep,
        "slope": fit.slope,
        "slope_fit": fit.as_dict(),
        "monotone": bool(np.all(np.diff([r["risk"] for r in sweep]) < 0)),
        "_rho_star": rho_star,
        "_rho_t": rho_t,
        "_pooled": pooled,
        "_fit": fit,
    }


def evaluate(s: Study[BoltzmannParams], stats: dict) -> dict:
    p = s.params
    res = max(stats["residual"], stats["sweep_residual"])
    tol = 1e-9 * max(abs(stats["free_energy_star"]), 1.0)
    out = {
        "fixed_point_residual": check(
            res, f"max residual |rho - G(rho)|_inf / |rho|_inf <= {p.residual_tol:g}",
            res <= p.residual_tol,
        ),
        "minimum_along_flow": check(
            stats["pde_min_gap"], f"min_t F(rho_t) - F(rho_beta) >= -{tol:.1e}",
            stats["pde_min_gap"] >= -tol,
        ),
        "pde_gap": check(
            stats["pde_gap_ratio"], f"(F(rho_T) - F*) / (F(rho_0) - F*) <= {p.gap_ratio:g}",
            stats["pde_gap_ratio"] <= p.gap_ratio,
        ),
        "ks_pde": check(
            stats["ks_pde"], f"KS(rho_T, rho_beta) <= {p.ks_pde:g}", stats["ks_pde"] <= p.ks_pde
        ),
        "ks_particles": check(
            stats["ks_particles"], f"KS(late particles pooled, rho_beta) <= {p.ks_particles:g}",
            stats["ks_particles"] <= p.ks_particles,
        ),
        "particles_energy": check(
            stats["energy_gap"], f"|E_bar(particles) / E(rho_beta) - 1| <= {p.energy_gap:g}",
            stats["energy_gap"] <= p.energy_gap,
        ),
        "risk_exponent": check(
            stats["slope"], f"slope of log R(rho_beta) against log beta <= -{p.slope_margin:g} "
            "and R(rho_beta) decreasing", bool(stats["slope"] <= -p.slope_margin
                                               and stats["monotone"]),
        ),
    }  # fmt: skip
    return out


def figures(s: Study[BoltzmannParams], stats: dict, runs) -> list:
    from ..plots import plt, save_figure

    p = s.params
    x = np.linspace(p.low, p.high, p.cells + 1)
    x = 0.5 * (x[1:] + x[:-1])
    pde_color, particles = DYNAMICS_COLORS["pde"], DYNAMICS_COLORS["langevin"]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    ax[0].plot(x, stats["_rho_star"], "k-", lw=2, label=r"$\rho_\beta$ (fixed point)")
    ax[0].plot(x, stats["_rho_t"], "--", color=pde_color, label=r"PDE $\rho_T$")
    ax[0].hist(
        stats["_pooled"],
        bins=80,
        density=True,
        alpha=0.35,
        color=particles,
        label="Langevin particles (late)",
    )
    ax[0].set(xlabel=r"weight $w$", ylabel="density", title="Gibbs state, PDE and particles")
    pde = runs["pde"]
    gap = pde.metrics["free_energy"] - stats["free_energy_star"]
    ax[1].semilogy(pde.metrics["t"], np.where(gap > 0, gap, np.nan), color=pde_color)
    ax[1].set(xlabel="t", ylabel=r"$F(\rho_t) - F(\rho_\beta)$", title="free-energy gap (PDE)")
    betas = np.array([r["beta"] for r in stats["sweep"]])
    ax[2].loglog(betas, [r["risk"] for r in stats["sweep"]], "ko-", label=r"$R(\rho_\beta)$")
    ax[2].loglog(betas, stats["_fit"](betas), "k:", label=f"slope {stats['slope']:.2f}")
    ax[2].set(
        xlabel=r"inverse temperature $\beta$",
        ylabel=r"risk $R(\rho_\beta)$",
        title="risk at equilibrium",
    )
    for a in (ax[0], ax[2]):
        a.legend(fontsize=8)
    fig.suptitle(
        r"the Gibbs fixed point $\rho_\beta$ minimises F: the PDE and the particles reach it, "
        r"and its risk falls with $\beta$"
    )
    return [save_figure(fig, s.figure_path("boltzmann.png"))]


BOLTZMANN_FIXED_POINT = Experiment(
    name="boltzmann_fixed_point",
    summary="the Gibbs fixed point rho = exp(-beta Phi[rho]) / Z solved on a grid is the "
    "minimum of F along the Langevin flow (PDE and particles), and its risk falls with beta "
    "(Mei-Montanari-Nguyen 2018)",
    claim=CLAIM,
    params=BoltzmannParams,
    quick=(
        "experiment.params.cells=240",
        "experiment.params.betas=[10,30,100]",
        "experiment.params.pde_dt=0.008",
        "experiment.params.gap_ratio=0.05",
        "experiment.params.ks_pde=0.03",
        "experiment.params.ks_particles=0.1",
        "experiment.params.energy_gap=0.3",
        "model.width=256",
        "dynamics.steps=1500",
        "record.every=50",
        "record.snapshot_every=250",
    ),
    checks=(
        CheckSpec("fixed_point_residual", "the solver's residual <= residual_tol at every beta"),
        CheckSpec("minimum_along_flow", "F(rho_t) >= F(rho_beta) along the PDE run"),
        CheckSpec("pde_gap", "(F(rho_T) - F*) / (F(rho_0) - F*) <= gap_ratio"),
        CheckSpec("ks_pde", "KS distance of the final PDE density to rho_beta <= ks_pde"),
        CheckSpec("ks_particles", "KS of the pooled late particle snapshots <= ks_particles"),
        CheckSpec("particles_energy", "|E_bar(particles)/E(rho_beta) - 1| <= energy_gap"),
        CheckSpec("risk_exponent", "slope of log R(rho_beta) vs log beta <= -slope_margin"),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
