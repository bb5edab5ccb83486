"""`pde_vs_particles`: m particles against the mean-field PDE itself (the grid solver),
W2 and the risk gap shrinking like m^(-1/2), for the plain, the reflected and the
birth-death flows."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
from annotated_types import Ge
from pydantic import Field, PositiveFloat

from ..config import Config
from ..rundir import list_snapshots
from ..stats import loglog_fit
from ..study import CheckSpec, Experiment, Params, Run, Study, check
from .common import Distinct, Increasing, fixed_output_units, require

Widths = Annotated[tuple[Annotated[int, Ge(2)], ...], Increasing]
Times = Annotated[tuple[PositiveFloat, ...], Increasing]
Case = Literal["free", "ball", "birth_death"]
Cases = Annotated[tuple[Case, ...], Distinct]
CLAIM = """\
The mean-field limit of m particles is the PDE d rho/dt = div(rho grad Phi[rho]) + (1/beta)
Laplacian rho [- alpha (Phi - <Phi>) rho] (Mei, Montanari and Nguyen 2018; Chizat and Bach
2018; Rotskoff, Jelassi, Bruna and Vanden-Eijnden 2019 for the birth-death term), and m
particles are its Lagrangian discretization: started i.i.d. from rho_0, the empirical
measure mu_m(t) approaches rho(t) at every fixed t (propagation of chaos, Sznitman 1991).
Here rho(t) is not a large reference cloud (`chaos`) but the finite-volume solution of the
PDE (`mfnn.pde`, second order in the cell width h).

Rates. In 1-D, W2 is exact through quantile functions (`mfnn.pde.compare`). For m i.i.d.
draws from rho, E W2^2(mu_m, rho) <= 2 J_2(rho) / (m + 1), J_2 = int F (1 - F) / f
(Bobkov and Ledoux 2019, Theorem 5.1): W2 ~ m^(-1/2), up to a factor (log log m)^(1/2)
for Gaussian tails (a slope change below 0.05 over two decades of m). At t > 0 the
particles are within O(m^(-1/2)) of i.i.d. draws from rho(t) in RMS coupling distance
(Mei, Montanari and Nguyen 2018, Theorem 3), so the slope of log W against log m is -1/2;
the grid and time-step errors add a floor, which must stay below W at the largest m. The
risk gap R(mu_m) - R(rho) = <f - y, f_m - f> + (1/2) ||f_m - f||^2 is a fluctuation of
size m^(-1/2) (first term) plus a bias O(1/m) (second): its slope lies in [-1, -1/2],
-1/2 while ||f - y|| >> m^(-1/2).

Setup: 1-D teacher-student regression, f = (1/m) sum_j tanh(w_j x) (theta = w in R,
output weights fixed), exact population risk (quadrature on x ~ U[-2, 2]), small l2 and
a Langevin temperature; w ~ N(0, 1/4). In the ball case the particles that start outside
are reflected in at the first step, so the PDE starts from the folded law
(`mfnn.pde.grid.Grid.density_of_laws`, ``fold``), not the truncated one (which would leave
a floor W ~ 0.04 at every m). Cases: ``free`` (R), ``ball`` (the interval
[-r, r], particles reflected, the PDE with a no-flux boundary) and ``birth_death`` (rate
alpha: particles jump, the PDE gains the reaction term). Per case one pde sub-run and,
for every width m, `replicas` particle runs with independent draws.

Statistics at each t in `times` (and t = 0): W(m, t) = RMS over replicas of W2(mu_m(t),
rho(t)) and G(m, t) = RMS over replicas of |R(mu_m(t)) - R(rho(t))|, and the log-log
slopes against m. Checks per case: |slope of W + 1/2| <= w2_slope_tolerance, slope of G
in [-1 - gap_slope_margin, -1/2 + gap_slope_margin], W(m_max, T) <= w2_max and W
decreasing along the widths at every t.
"""


class GridParams(Params):
    """The grid of the pde sub-runs (`dynamics.grid`): cells of width ``cell_width`` on
    [low, high], or on [-r, r] for the ball (the same h in every case, so the diffusion's
    stability limit dt <= h^2 beta / 2 is the same)."""

    cell_width: float = Field(0.025, gt=0, description="h, the width of a cell")
    low: float = Field(-5.0, description="left end of the grid (cases without a domain)")
    high: float = Field(5.0, description="right end of the grid (cases without a domain)")
    flux: Literal["upwind", "muscl"] = Field("muscl", description="the face flux")
    scheme: Literal["explicit", "imex"] = Field("explicit", description="the time scheme")

    def cells(self, case: str, radius: float) -> int:
        """round(length / h) cells (at least 16)."""
        length = 2 * radius if case == "ball" else self.high - self.low
        return max(16, round(length / self.cell_width))


class PdeVsParticlesParams(Params):
    widths: Widths = Field((100, 1000, 10000, 100000), min_length=3, description="m")
    replicas: int = Field(8, ge=1, description="independent particle runs per width")
    times: Times = Field((1.0, 2.0, 4.0), min_length=1, description="on the snapshot grid")
    cases: Cases = Field(("free", "ball", "birth_death"), min_length=1, description="flows")
    slope_cases: Cases = Field(
        ("free", "ball", "birth_death"), description="cases whose slopes are checked"
    )
    ball_radius: float = Field(1.0, gt=0, description="r of the `ball` case")
    birth_death_rate: float = Field(1.0, gt=0, description="alpha of the `birth_death` case")
    grid: GridParams = Field(default_factory=GridParams, description="the pde grid")
    w2_slope_tolerance: float = Field(0.15, gt=0, lt=0.5, description="|slope of W + 1/2|")
    gap_slope_margin: float = Field(0.2, gt=0, lt=0.5, description="G slope interval margin")
    w2_max: float = Field(0.03, gt=0, description="W(m_max, T) <= this")

    def check_config(self, cfg: Config) -> None:
        dyn, pop, every = cfg.dynamics, cfg.data.population, cfg.record.every
        k = [t / dyn.dt for t in self.times]
        grid = all(abs(v - round(v)) <= 1e-9 * v and round(v) % every == 0 for v in k)
        name = "pde_vs_particles"
        fixed_output_units(cfg, name, "a particle is theta = w in R, the PDE is 1-D")
        require(
            name,
            ("model.init.path", "unset (every run draws its particles from `model.init`)",
             cfg.model.init.path is None, cfg.model.init.path),
            ("data.population", "a 1-D exact risk (method quadrature or closed_form, dim 1)",
             pop is not None and pop.method != "monte_carlo" and pop.dim == 1, pop),
            ("dynamics.kind", "gradient_flow (the particle side; each case adds its pde run)",
             dyn.kind == "gradient_flow", dyn.kind),
            ("dynamics.domain`, `dynamics.birth_death", "unset (the cases set them)",
             dyn.domain is None and dyn.birth_death is None, (dyn.domain, dyn.birth_death)),
            ("experiment.params.times", f"multiples of dynamics.dt * record.every = "
             f"{dyn.dt * every:g} up to the end", grid and max(k) <= dyn.steps, self.times),
            ("experiment.params.grid", "low < high", self.grid.low < self.grid.high,
             (self.grid.low, self.grid.high)),
        )  # fmt: skip


def run_name(case: str, m: int, r: int) -> str:
    """The particle sub-run of width m, replica r, in ``case``."""
    return f"{case}-m{m}-r{r}"


def _case_changes(p: PdeVsParticlesParams, case: str) -> dict[str, Any]:
    if case == "ball":
        return {"dynamics.domain": {"kind": "ball", "radius": p.ball_radius}}
    if case == "birth_death":
        return {"dynamics.birth_death": {"rate": p.birth_death_rate}}
    return {}


def plan(s: Study[PdeVsParticlesParams]) -> dict[str, Run]:
    """Per case: ``pde-<case>`` (the grid, dynamics.kind pde) and ``<case>-m<m>-r<r>``
    (width m, seed = seed + 1 + r * len(widths) + i: independent draws for every width
    and replica), with snapshots at every statistic time."""
    p, cfg = s.params, s.config
    steps = [round(t / cfg.dynamics.dt) for t in p.times]
    snap = math.gcd(*steps)
    g = p.grid
    runs = {}
    for case in p.cases:
        changes = _case_changes(p, case) | {"record.snapshot_every": snap}
        grid = {"cells": g.cells(case, p.ball_radius), "flux": g.flux, "scheme": g.scheme}
        if case != "ball":
            grid |= {"low": g.low, "high": g.high}
        pde = changes | {
            "dynamics.kind": "pde",
            "dynamics.integrator": "euler",  # the grid steps itself (`dynamics.grid.scheme`)
            "dynamics.grid": grid,
            "record.entropy_k": None,
        }
        runs[f"pde-{case}"] = Run(s.sub_config(f"pde-{case}", pde), figures=False)
        for r in range(p.replicas):
            for i, m in enumerate(p.widths):
                seed = cfg.seed + 1 + r * len(p.widths) + i
                sub = changes | {"model.width": m, "seed": seed}
                name = run_name(case, m, r)
                runs[name] = Run(s.sub_config(name, sub), figures=False)
    return runs


def _case_statistics(p: PdeVsParticlesParams, case: str, runs, times) -> dict[str, Any]:
    """W and G (lists over widths) at each time, from the snapshots and the records."""
    from ..pde.compare import loss_gap, w2_particles_grid
    from ..pde.run import read_density

    pde = runs[f"pde-{case}"]
    grid_snaps, w2, gap = list_snapshots(pde.dir), {}, {}
    for t in times:
        step = round(t / pde.dt)
        grid, rho, _ = read_density(grid_snaps[step])
        rho = rho / (rho.sum() * grid.volume)  # round-off only (mass_conservation checks it)
        w_rows, g_rows = [], []
        for m in p.widths:
            reps = [runs[run_name(case, m, r)] for r in range(p.replicas)]
            w = [w2_particles_grid(rr.particles(step), grid, rho) for rr in reps]
            g = [
                loss_gap(rr.metrics["t"], rr.metrics["loss"], pde.metrics["t"],
                         pde.metrics["loss"], [t])[0]
                for rr in reps
            ]  # fmt: skip
            w_rows.append(float(np.sqrt(np.mean(np.square(w)))))
            g_rows.append(float(np.sqrt(np.mean(np.square(g)))))
        w2[f"{t:g}"], gap[f"{t:g}"] = w_rows, g_rows
    fits = {
        "w2": {t: loglog_fit(p.widths, v) for t, v in w2.items()},
        "loss_gap": {t: loglog_fit(p.widths, v) for t, v in gap.items()},
    }
    return {
        "w2": w2,
        "loss_gap": gap,
        "slopes": {k: {t: f.slope for t, f in d.items()} for k, d in fits.items()},
        "slope_ci95": {k: {t: list(f.ci) for t, f in d.items()} for k, d in fits.items()},
        "pde_loss": {
            f"{t:g}": float(np.interp(t, pde.metrics["t"], pde.metrics["loss"])) for t in times
        },  # fmt: skip
    }


def analyze(s: Study[PdeVsParticlesParams], runs) -> dict[str, Any]:
    p = s.params
    times = [0.0, *p.times]
    missing = []
    for name, r in runs.items():
        have = set(r.snapshot_steps()) if r.status == "completed" else set()
        lost = [t for t in times if round(t / r.dt) not in have]
        if lost:
            missing.append(f"{name} (t = {lost}; {r.summary.get('message')})")
    if missing:  # a diverged (or cut) run: nothing to compare, say so
        return {"missing": missing}
    cases = {case: _case_statistics(p, case, runs, times) for case in p.cases}
    return {
        "widths": list(p.widths),
        "replicas": p.replicas,
        "times": times,
        "cases": cases,
    }


def evaluate(s: Study[PdeVsParticlesParams], stats: dict[str, Any]) -> dict[str, dict]:
    """The checks of the CLAIM from the summary's statistics (tests doctor them)."""
    if "missing" in stats:
        rule = f"every sub-run completes with its snapshots (missing: {stats['missing']})"
        return {"run_completed": check(False, rule, False)}
    p, checks = s.params, {}
    tol, margin, widths = p.w2_slope_tolerance, p.gap_slope_margin, stats["widths"]
    lo, hi = -1.0 - margin, -0.5 + margin
    T = f"{p.times[-1]:g}"
    for case, c in stats["cases"].items():
        for t in (f"{t:g}" for t in p.times) if case in p.slope_cases else ():
            v = c["slopes"]["w2"][t]
            rule = f"|slope of log W(m, t={t}) vs log m + 1/2| <= {tol:g} ({case})"
            checks[f"w2_slope_{case}_t{t}"] = check(v, rule, bool(abs(v + 0.5) <= tol))
            v = c["slopes"]["loss_gap"][t]
            rule = f"slope of log G(m, t={t}) vs log m in [{lo:g}, {hi:g}] ({case})"
            checks[f"loss_gap_slope_{case}_t{t}"] = check(v, rule, bool(lo <= v <= hi))
        v = c["w2"][T][-1]
        rule = f"W(m={widths[-1]}, t={T}) <= {p.w2_max:g} ({case}: particles near the PDE)"
        checks[f"w2_small_{case}"] = check(v, rule, bool(v <= p.w2_max))
        ratios = [b / a for row in c["w2"].values() for a, b in zip(row, row[1:], strict=False)]
        v = float(max(ratios))
        rule = f"max over t and consecutive widths of W(m_next, t) / W(m, t) < 1 ({case})"
        checks[f"w2_decreasing_{case}"] = check(v, rule, bool(v < 1.0))
    return checks


def figures(s: Study[PdeVsParticlesParams], stats: dict[str, Any], runs) -> list:
    """pde_vs_particles.png: W(m, t) and G(m, t) against m, one column per case; and per
    case an animation of the PDE's density next to the particles of the largest width
    (every replica pooled) at every snapshot both have (`density_vs_particles`)."""
    from ..plots import loglog_fits, plt, save_figure

    if "missing" in stats:
        return []
    cases, widths = stats["cases"], stats["widths"]
    fig, ax = plt.subplots(
        2, len(cases), figsize=(5 * len(cases), 8.4), squeeze=False, layout="constrained"
    )
    colors = plt.cm.viridis(np.linspace(0.1, 0.85, len(stats["times"])))
    for j, (case, c) in enumerate(cases.items()):
        for i, key in enumerate(("w2", "loss_gap")):
            series = [
                (f"t = {t}", v, col) for (t, v), col in zip(c[key].items(), colors, strict=True)
            ]
            loglog_fits(ax[i, j], widths, series, guide=(-0.5, "m^-1/2"))
        ax[0, j].set(
            xlabel="particles m", ylabel="W2(mu_m(t), rho(t))", title=f"{case}: W2 to the PDE"
        )
        ax[1, j].set(
            xlabel="particles m", ylabel="risk gap |R(mu_m) - R(rho)|", title=f"{case}: risk gap"
        )
    fig.suptitle(
        "m particles approach the grid solution of their mean-field PDE: W2 and the risk gap "
        "fall like m^(-1/2)"
    )
    out = [save_figure(fig, s.figure_path("pde_vs_particles.png"))]
    return out + [_density_animation(s, case, runs, widths[-1]) for case in cases]


def _density_animation(s: Study[PdeVsParticlesParams], case: str, runs, m: int):
    """figures/density_vs_particles_CASE.gif (or .mp4): rho(t) of the pde sub-run and the
    pooled replicas of width m at their common snapshot steps."""
    from ..animate import density_vs_particles
    from ..pde.run import read_density

    pde = runs[f"pde-{case}"]
    reps = [runs[run_name(case, m, r)] for r in range(s.params.replicas)]
    snaps = list_snapshots(pde.dir)
    steps = sorted(set(snaps).intersection(*(set(r.snapshot_steps()) for r in reps)))
    rhos, parts, times = [], [], []
    for step in steps:
        grid, rho, _ = read_density(snaps[step])
        rhos.append(rho / (rho.sum() * grid.volume))
        parts.append(np.concatenate([r.particles(step) for r in reps]))
        times.append(step * pde.dt)
    return density_vs_particles(
        grid, rhos, parts, times, s.figure_path(f"density_vs_particles_{case}"),
        title=f"{case}: the PDE's density and m = {m} particles x {len(reps)} replicas",
        label=f"m = {m}, {len(reps)} replicas",
    )  # fmt: skip


PDE_VS_PARTICLES = Experiment(
    name="pde_vs_particles",
    summary="m particles against the grid solution of the mean-field PDE: W2 and the risk "
    "gap fall like m^(-1/2) (plain, reflected and birth-death flows)",
    claim=CLAIM,
    params=PdeVsParticlesParams,
    quick=(
        "experiment.params.widths=[30, 100, 300]",
        "experiment.params.replicas=8",
        "experiment.params.times=[0.5, 1.0]",
        "experiment.params.grid.cell_width=0.05",
        "experiment.params.w2_max=0.06",
        "dynamics.dt=0.004",
        "dynamics.steps=250",
        "record.every=25",
    ),
    checks=(
        CheckSpec("w2_slope_*", "|slope of log W(m, t) vs log m + 1/2| <= w2_slope_tolerance"),
        CheckSpec(
            "loss_gap_slope_*",
            "slope of log G(m, t) vs log m in [-1 - gap_slope_margin, -1/2 + gap_slope_margin]",
        ),
        CheckSpec("w2_small_*", "W(m_max, T) <= w2_max"),
        CheckSpec("w2_decreasing_*", "W(m, t) decreases along the widths at every t"),
        CheckSpec("run_completed", "reported only when a sub-run misses a statistic time"),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
