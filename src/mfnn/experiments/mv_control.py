"""`mv_control`: the optimal control of the entropic regime on a 1-D grid, against the
greedy McKean-Vlasov flow and the Schroedinger bridge (Tzen-Raginsky 2020)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from annotated_types import Gt, Le, MinLen
from pydantic import Field, model_validator

from ..config import Config, validate
from ..study import Call, CheckSpec, Experiment, Params, Study, check
from .common import Increasing, fixed_output_units, require

NAME = "mv_control"
CLAIM = """\
Tzen and Raginsky 2020, "A mean-field theory of lazy training in two-layer neural nets:
entropic regularization and controlled McKean-Vlasov dynamics". R~ = 2R the unhalved risk,
gamma_tau = N(0, tau), F_{beta,tau}(mu) = (1/2) R~(mu) + (tau/beta) KL(mu || gamma_tau),
Psi = d[(1/2) R~]/dmu. The controlled SDE dW = u dt + sqrt(tau) dB, W_0 = 0, with cost
J(u) = E[(1/2) int_0^1 |u|^2 dt] + (beta/2) R~(Law W_1) has the optimal control u* = -grad V,
V solving the HJB dV/dt = -(tau/2) V'' + (1/2)|V'|^2, V(., 1) = beta Psi(.; mu_1), the law
solving the FP d rho/dt = (rho V')' + (tau/2) rho'' from delta_0; then W_1 ~ mu* (the
minimiser, d mu*/d gamma_tau ∝ exp(-(beta/tau) Psi(.; mu*))), inf J = beta F(mu*), the
control cost is tau KL(mu* || gamma_tau), and the controlled process is the Schroedinger
bridge (Foellmer process) from delta_0 to mu*. The greedy McKean-Vlasov flow dW = -beta
grad Psi(W; Law W) dt + sqrt(tau) dB has a different drift and does not end at mu*.

Setup: f = int erf(w x) dmu(w), x ~ N(0, 1) (population risk by Gauss-Hermite
quadrature), the erf teacher of `data.teacher`; a particle is w in R. Everything is
computed on grids of [-half_width, half_width] at two resolutions (`mfnn.pde.control`): mu*
by the Boltzmann solver (Phi = Psi + w^2/(2 beta) at inverse temperature beta/tau), the
FP/HJB system by Cole-Hopf and upwind finite volumes with damped sweeps on the terminal
law, the greedy flow by `mfnn.pde.solver`, the bridge by iterative proportional fitting.
Both flows start from a discrete delta (the cell of w = 0); time steps ~ cells (dt ~ h).

Statistics: W2 (1-D quantile formula on the cell centres) and KL of the controlled
terminal law to mu* at both resolutions (first order in h: they must shrink); the cost
identity |J - beta F(mu*)| / beta F(mu*); W2 of the bridge's marginals to the FP/HJB
marginals at `times`, and the bridge's cost tau KL against the control cost; the relative
L2(rho_t) distance between u*(., t) and the greedy drift -beta Psi'(.; rho_t^greedy), at
`times` and over space-time (they must differ); W2 of the greedy terminal law to mu*
(farther than the controlled one).
"""

Times = Annotated[tuple[Annotated[float, Gt(0), Le(1)], ...], Increasing, MinLen(2)]
Cells = Annotated[tuple[Annotated[int, Field(ge=21, le=2001)], ...], Increasing]


class MvControlParams(Params):
    beta: float = Field(1.0, gt=0, le=10, description="beta of F_{beta,tau}; drift scale")
    tau: float = Field(0.25, gt=0, le=4, description="gamma_tau = N(0, tau); noise sqrt(tau) dB")
    half_width: float = Field(3.0, gt=0, description="the grid [-half_width, half_width]")
    cells: Cells = Field(
        (121, 241), min_length=2, max_length=2, description="two resolutions, odd, increasing"
    )
    steps_per_cell: float = Field(2.0, gt=0, le=20, description="time steps = this x cells")
    damping: float = Field(0.5, gt=0, le=1, description="damped sweeps on the terminal law")
    fixed_point_tol: float = Field(1e-10, gt=0, lt=1e-3, description="sweep residual to reach")
    max_sweeps: int = Field(300, ge=1, description="sweeps at most")
    times: Times = Field((0.25, 0.5, 0.75, 1.0), description="marginals compared at these t")
    w2_tol: float = Field(0.05, gt=0, description="W2(rho_1, mu*) at the finer grid <= this")
    refinement: float = Field(0.8, gt=0, lt=1, description="fine <= this x coarse (W2, KL)")
    cost_tol: float = Field(0.05, gt=0, lt=1, description="relative cost errors <= this")
    bridge_tol: float = Field(0.05, gt=0, description="max_t W2(SB_t, rho_t) fine <= this")
    control_gap: float = Field(0.1, gt=0, lt=1, description="rel. L2 of u* - greedy >= this")
    greedy_margin: float = Field(2.0, ge=1, description="W2 greedy >= this x W2 controlled")

    @model_validator(mode="after")
    def _odd_cells(self) -> MvControlParams:
        if any(n % 2 == 0 for n in self.cells):
            raise ValueError(
                f"`experiment.params.cells` must be odd (w = 0, where both flows start, is "
                f"then a cell centre); got {list(self.cells)}"
            )
        return self

    def check_config(self, cfg: Config) -> None:
        m, pop = cfg.model, cfg.data.population
        fixed_output_units(cfg, NAME, "a particle is w in R, on a 1-D grid")
        require(
            NAME,
            ("model.trainable", "unset (a particle is w)", m.trainable is None, m.trainable),
            ("data.population", "{inputs: gaussian, dim: 1, method: quadrature or "
             "closed_form} (w in R, risks without sampling noise)",
             pop is not None and pop.dim == 1 and pop.method != "monte_carlo",
             pop and pop.model_dump(mode="json")),
            ("data.teacher", "set (the target f*)", cfg.data.teacher is not None, None),
            ("objective.l2", "0 (the entropic term tau/beta KL(mu || gamma_tau) is the "
             "only regularization)", cfg.objective.l2 == 0, cfg.objective.l2),
        )  # fmt: skip


# ------------------------------------------------------------------ the plan


def _rel_l2(u, b, rho):
    """sqrt(int rho |u - b|^2 / int rho |u|^2) with the face density of rho (last axis)."""
    face = 0.5 * (rho[..., :-1] + rho[..., 1:])
    num = np.sum(face * (u - b) ** 2, axis=-1)
    den = np.sum(face * u**2, axis=-1)
    return num, den


def solve_resolution(config: dict, cells: int, params: dict) -> dict:
    """Every grid computation at one resolution (JSON-ready): mu*, the FP/HJB solution,
    the greedy flow, the bridge, and their statistics (module `CLAIM`)."""
    import jax.numpy as jnp

    from ..build import build, enable_dtype
    from ..pde import Grid, grid_energy
    from ..pde import control as C

    raw = dict(config)
    raw.pop("experiment", None)
    raw.pop("mfnn_version", None)
    cfg = validate(raw)
    enable_dtype(cfg.dtype)
    p = MvControlParams.model_validate(params)
    built = build(cfg)
    grid = Grid([-p.half_width], [p.half_width], [cells])
    energy = grid_energy(built.objective, built.model, grid)
    beta, tau, steps = p.beta, p.tau, int(round(p.steps_per_cell * cells))
    gibbs = C.entropic_gibbs(energy, grid, beta, tau)
    mu = np.asarray(gibbs.rho)
    ctrl = C.solve_control(
        energy, grid, beta, tau, steps, damping=p.damping, tol=p.fixed_point_tol,
        max_sweeps=p.max_sweeps,
    )  # fmt: skip
    greedy, greedy_cfl = C.greedy_mckean_vlasov(energy, grid, beta, tau, steps)
    idx = [int(round(t * steps)) for t in p.times]
    sb = C.schrodinger_bridge(grid, C.point_mass(grid), mu, tau, p.times)
    free = C.entropic_free_energy(energy, grid, beta, tau, mu)
    drift = C.greedy_drift(energy, grid, beta, greedy)  # (N + 1, n - 1)
    num, den = _rel_l2(ctrl.u, drift, ctrl.rho)
    rel_t = np.sqrt(num[idx] / den[idx])
    inner = slice(1, steps + 1)  # t > 0: at t = 0 the law is the delta
    space_time = float(np.sqrt(np.sum(num[inner]) / np.sum(den[inner])))
    bf = beta * free["F"]
    return {
        "cells": cells,
        "steps": steps,
        "h": grid.h[0],
        "w": grid.axis(0).tolist(),
        "times": list(p.times),
        "mu_star": mu.tolist(),
        "rho_control": ctrl.rho[idx].tolist(),
        "rho_greedy": greedy[idx].tolist(),
        "rho_bridge": sb.rho.tolist(),
        "u_star": ctrl.u[idx].tolist(),
        "greedy_drift": drift[idx].tolist(),
        "V": ctrl.V[[0, *idx]].tolist(),
        "gibbs_residual": gibbs.residual,
        "boundary_mass": float(grid.boundary_mass(jnp.asarray(mu))),
        "sweeps": ctrl.sweeps,
        "fixed_point_residual": ctrl.residual,
        "cfl_control": ctrl.cfl,
        "cfl_greedy": greedy_cfl,
        "w2_control": C.w2_grid(grid, ctrl.rho[-1], mu),
        "kl_control": float(C.kl_grid(grid, ctrl.rho[-1], mu)),
        "w2_greedy": C.w2_grid(grid, greedy[-1], mu),
        "kl_greedy": float(C.kl_grid(grid, greedy[-1], mu)),
        "J": ctrl.J,
        "control_cost": ctrl.control_cost,
        "terminal_cost": ctrl.terminal_cost,
        "beta_F": bf,
        "tau_kl": tau * free["kl"],
        "risk_mu_star": free["risk"],
        "cost_rel_error": abs(ctrl.J - bf) / abs(bf),
        "control_cost_rel_error": abs(ctrl.control_cost - tau * free["kl"]) / (tau * free["kl"]),
        "bridge_cost": sb.cost,
        "bridge_cost_rel_error": abs(sb.cost - ctrl.control_cost) / sb.cost,
        "bridge_iterations": sb.iterations,
        "bridge_marginal_error": sb.marginal_error,
        "bridge_w2": [C.w2_grid(grid, sb.rho[i], ctrl.rho[k]) for i, k in enumerate(idx)],
        "drift_rel_l2": rel_t.tolist(),
        "drift_rel_l2_space_time": space_time,
    }


def _name(cells: int) -> str:
    """The computation at one resolution.

    Example:
        >>> _name(121)
        'grid121'
    """
    return f"grid{cells}"


def plan(s: Study[MvControlParams]) -> dict[str, Call]:
    cfg = s.config.model_dump(mode="json")
    params = s.params.model_dump(mode="json")
    return {
        _name(n): Call(solve_resolution, {"config": cfg, "cells": n, "params": params})
        for n in s.params.cells
    }


# ------------------------------------------------------------------ statistics

SCALARS = (
    "h", "steps", "sweeps", "fixed_point_residual", "gibbs_residual", "boundary_mass",
    "cfl_control", "cfl_greedy", "w2_control", "kl_control", "w2_greedy", "kl_greedy", "J",
    "control_cost", "terminal_cost", "beta_F", "tau_kl", "risk_mu_star", "cost_rel_error",
    "control_cost_rel_error", "bridge_cost", "bridge_cost_rel_error", "bridge_iterations",
    "bridge_marginal_error", "bridge_w2", "drift_rel_l2", "drift_rel_l2_space_time",
)  # fmt: skip


def analyze(s: Study[MvControlParams], runs) -> dict:
    p = s.params
    per = {n: runs[_name(n)].value for n in p.cells}
    coarse, fine = (per[n] for n in p.cells)
    return {
        "final_loss": fine["risk_mu_star"],
        "beta": p.beta,
        "tau": p.tau,
        "cells": list(p.cells),
        "resolutions": {str(n): {k: v[k] for k in SCALARS} for n, v in per.items()},
        "w2_control": [coarse["w2_control"], fine["w2_control"]],
        "kl_control": [coarse["kl_control"], fine["kl_control"]],
        "w2_greedy": fine["w2_greedy"],
        "cost_rel_error": fine["cost_rel_error"],
        "bridge_w2_max": max(fine["bridge_w2"]),
        "bridge_cost_rel_error": fine["bridge_cost_rel_error"],
        "drift_rel_l2": fine["drift_rel_l2"],
        "drift_rel_l2_space_time": fine["drift_rel_l2_space_time"],
        "fixed_point_residual": max(v["fixed_point_residual"] for v in per.values()),
        "cfl_max": max(max(v["cfl_control"], v["cfl_greedy"]) for v in per.values()),
        "_fine": fine,
    }


# ------------------------------------------------------------------ checks


def evaluate(s: Study[MvControlParams], stats: dict) -> dict:
    p, checks = s.params, {}
    (w_c, w_f), (k_c, k_f) = stats["w2_control"], stats["kl_control"]
    n_c, n_f = stats["cells"]
    rule = f"W2(rho_1^control, mu*) on {n_f} cells <= {p.w2_tol:g}"
    checks["terminal_w2"] = check(w_f, rule, w_f <= p.w2_tol)
    for key, fine, coarse, what in (("w2", w_f, w_c, "W2"), ("kl", k_f, k_c, "KL")):
        ratio = fine / coarse if coarse > 0 else float("inf")
        rule = (
            f"{what}(rho_1^control, mu*) on {n_f} cells / on {n_c} cells <= {p.refinement:g} "
            "(the discretization error shrinks with h)"
        )
        checks[f"{key}_refines"] = check(ratio, rule, ratio <= p.refinement)
    c = stats["cost_rel_error"]
    rule = f"|J - beta F(mu*)| / beta F(mu*) on {n_f} cells <= {p.cost_tol:g}"
    checks["cost_identity"] = check(c, rule, c <= p.cost_tol)
    b = stats["bridge_w2_max"]
    rule = f"max over t in {list(p.times)} of W2(SB_t, rho_t^control) <= {p.bridge_tol:g}"
    checks["bridge_marginals"] = check(b, rule, b <= p.bridge_tol)
    bc = stats["bridge_cost_rel_error"]
    rule = f"|tau KL(pi_SB || R_01) - E int |u*|^2 / 2| / tau KL <= {p.cost_tol:g}"
    checks["bridge_cost"] = check(bc, rule, bc <= p.cost_tol)
    d = stats["drift_rel_l2_space_time"]
    rule = (
        "space-time relative L2(rho_t) distance of u* and the greedy drift -beta Psi'(.; "
        f"rho_t^greedy) over t in (0, 1] >= {p.control_gap:g} (they must differ)"
    )
    checks["control_differs"] = check(d, rule, d >= p.control_gap)
    g = stats["w2_greedy"] / w_f if w_f > 0 else float("inf")
    rule = f"W2(rho_1^greedy, mu*) / W2(rho_1^control, mu*) >= {p.greedy_margin:g}"
    checks["greedy_farther"] = check(g, rule, g >= p.greedy_margin)
    r = stats["fixed_point_residual"]
    rule = f"max over grids of the McKean-Vlasov sweep residual <= {p.fixed_point_tol:g}"
    checks["fixed_point"] = check(r, rule, r <= p.fixed_point_tol)
    cfl = stats["cfl_max"]
    checks["stable"] = check(cfl, "max CFL number of the upwind steps <= 1", cfl <= 1)
    return checks


# ------------------------------------------------------------------ figures


def figures(s: Study[MvControlParams], stats: dict, runs) -> list:
    from ..plots import plt, save_figure

    f = stats["_fine"]
    w, times = np.asarray(f["w"]), f["times"]
    face = 0.5 * (w[:-1] + w[1:])
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(times)))
    fig, ax = plt.subplots(1, 3, figsize=(17, 5.0), layout="constrained")
    for col, t, rc, rg, rb in zip(
        colors, times, f["rho_control"], f["rho_greedy"], f["rho_bridge"], strict=True
    ):
        ax[0].plot(w, rc, color=col, label=f"controlled t = {t:g}")
        ax[0].plot(w, rg, "--", color=col, lw=0.9)
        ax[0].plot(w[::6], np.asarray(rb)[::6], ".", color=col, ms=3)
    ax[0].plot(w, f["mu_star"], "k:", lw=1.2, label="mu*")
    ax[0].set(xlabel="w", ylabel="density", title="marginals: FP/HJB (solid), greedy (dashed), "
              "bridge (dots)")  # fmt: skip
    for col, t, u, b in zip(colors, times, f["u_star"], f["greedy_drift"], strict=True):
        ax[1].plot(face, u, color=col, label=f"u* t = {t:g}")
        ax[1].plot(face, b, "--", color=col, lw=0.9)
    ax[1].set(
        xlabel="w",
        ylabel="drift u(w, t)",
        title="optimal control u* (solid) vs greedy drift (dashed)",
    )
    for col, t, v in zip(plt.cm.magma(np.linspace(0, 0.8, len(f["V"]))), [0.0, *times], f["V"],
                         strict=True):  # fmt: skip
        ax[2].plot(w, v, color=col, label=f"t = {t:g}")
    ax[2].set(xlabel="w", ylabel="V(w, t)", title="value function (V(., 1) = beta Psi(.; mu*))")
    for a in ax:
        a.legend(fontsize=7)
    fig.suptitle(
        "the optimal control reaches mu* at cost beta F(mu*) and is the Schroedinger bridge; "
        "the greedy McKean-Vlasov flow does not reach mu*"
    )
    return [save_figure(fig, s.figure_path("mv_control.png"))]


MV_CONTROL = Experiment(
    name=NAME,
    summary="the optimal control of the entropic regime (FP/HJB, Cole-Hopf) reaches mu* with "
    "cost beta F(mu*) and equals the Schroedinger bridge; the greedy McKean-Vlasov flow "
    "does not (Tzen-Raginsky 2020)",
    claim=CLAIM,
    params=MvControlParams,
    quick=("experiment.params.cells=[61,121]",),
    checks=(
        CheckSpec("terminal_w2", "W2(rho_1^control, mu*) at the finer grid <= w2_tol"),
        CheckSpec("w2_refines", "W2 fine / W2 coarse <= refinement"),
        CheckSpec("kl_refines", "KL fine / KL coarse <= refinement"),
        CheckSpec("cost_identity", "|J - beta F(mu*)| / beta F(mu*) at the finer grid <= cost_tol"),
        CheckSpec(
            "bridge_marginals", "max_t W2(SB_t, rho_t^control) at the finer grid <= bridge_tol"
        ),
        CheckSpec("bridge_cost", "|tau KL(SB) - control cost| / tau KL(SB) <= cost_tol"),
        CheckSpec("control_differs", "space-time rel. L2 of u* - greedy drift >= control_gap"),
        CheckSpec("greedy_farther", "W2(greedy_1, mu*) / W2(control_1, mu*) >= greedy_margin"),
        CheckSpec("fixed_point", "max sweep residual <= fixed_point_tol"),
        CheckSpec("stable", "max CFL number of the upwind steps <= 1"),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
