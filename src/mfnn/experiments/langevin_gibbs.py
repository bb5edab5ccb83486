"""`langevin_gibbs`: the mean-field Langevin particles reach the Gibbs fixed point
rho* proportional to exp(-beta [dR/dmu[rho*](theta) + lambda |theta|^2 / 2])."""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from annotated_types import Ge
from pydantic import BaseModel, ConfigDict, Field

from ..config import Config, validate
from ..stats import KOLMOGOROV_MEAN
from ..study import CheckSpec, Experiment, Params, Run, Study, check
from ..style import COLORS, DYNAMICS_COLORS
from .common import Distinct, check_plain_langevin, fixed_output_units, require

Widths = Annotated[tuple[Annotated[int, Ge(8)], ...], Distinct]
CLAIM = """\
Mean-field Langevin dynamics d theta = [v(theta) - lambda theta] dt + sqrt(2/beta) dB is
the Wasserstein gradient flow of F(mu) = R(mu) + (lambda/2) int |theta|^2 dmu + (1/beta)
int rho log rho; the particle law converges to its unique minimizer, the Gibbs fixed point
rho* proportional to exp(-beta Phi), Phi = dR/dmu[rho*] + lambda |theta|^2 / 2 (Mei,
Montanari and Nguyen 2018, "A mean field view of the landscape of two-layer neural
networks", Theorem 4; H. Yang, "Mean-field analysis of neural networks"). The formulas
are those of `mfnn.diagnostics.gibbs`.

(a) Known answer (runs/gaussian, params.gaussian): R == 0, theta = w in R^D, so each
particle is an Ornstein-Uhlenbeck process and rho* = N(0, I/(beta lambda)); the start is
uniform on [low, high]^D. The variance checks use Euler-Maruyama's stationary variance
v_EM = 1/(beta lambda (1 - lambda dt/2)) and bound its bias in standard errors, so the
continuous-time law passes too. The final (i.i.d.) particles' mean and variance per
coordinate are compared in standard errors; the recorded free energy F = E - H_kNN/beta
(Kozachenko-Leonenko entropy) over the last `plateau` fraction with the exact minimum F*,
within |b| + 3 s, the bias and spread of the same estimator on calibration_draws exact
samples of N(0, v_EM I) of the same m and D.

(b) Teacher-student in d = 1 (runs/teacher_m<m>): exact population risk (quadrature,
x ~ N(0, 1)), student f = (1/m) sum_j sigma(w_j x), sigma(z) = exp(-z^2/2), a == 1
(theta = w in R), teacher 0.6 sigma(x) + 0.4 sigma(2x), lambda > 0 (exp(-beta Phi) is
normalizable). At the end, Phi of the particles' own measure on `grid` points, and their
KS distance to exp(-beta Phi)/Z within ks_c / sqrt(m): ks_c = 1.95 is the 0.999 quantile
of Kolmogorov's (1933) law of sqrt(m) KS for i.i.d. draws (its mean 0.87 is reported with
sqrt(m) KS at each plateau snapshot). -Phi' must be the run's drift, and Phi must hold
lambda w^2/2. Negative control: the widest run against the Gibbs law without dR/dmu. The
start w ~ uniform[-3, 3] is symmetric: sigma is even, rho* bimodal, and mass crosses the
barrier at 0 only on a Kramers time much longer than 1/lambda.

Each sub-run's energy_identity checks the drift step alone: O(dt), lambda dt / 2 in (a).
"""


class GaussianParams(BaseModel):
    """Part (a): the Ornstein-Uhlenbeck run (R == 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dim: int = Field(2, ge=1, le=6, description="D (the kNN entropy's bias grows with D)")
    width: int = Field(4096, ge=16, description="m")
    beta: float = Field(1.0, gt=0, description="inverse temperature")
    l2: float = Field(1.0, gt=0, description="lambda: rho* = N(0, I / (beta lambda))")
    dt: float = Field(0.01, gt=0, description="Euler-Maruyama step, l2 dt < 1")
    steps: int = Field(2000, ge=1)
    every: int = Field(50, ge=1, description="record interval in steps")
    low: float = Field(1.0, description="start: uniform on [low, high]^D")
    high: float = Field(3.0, description="start: uniform on [low, high]^D, > low")


class GibbsParams(Params):
    widths: Widths = Field((256, 4096), min_length=1, description="(b): distinct widths")
    ks_c: float = Field(1.95, gt=0, description="KS tolerance ks_c / sqrt(m)")
    grid: int = Field(4001, ge=101, description="odd number of points of the Phi grid")
    z: float = Field(3.0, gt=0, description="(a): mean and variance within z SE")
    em_bias_se: float = Field(0.25, gt=0, description="(a): bound on the EM variance bias, in SE")
    plateau: float = Field(0.5, gt=0, le=1, description="the last fraction of a run")
    flatness: float = Field(0.1, gt=0, description="(a): bound on the relative spread of F")
    calibration_draws: int = Field(16, ge=2, description="(a): exact draws calibrating F_kNN")
    gaussian: GaussianParams = Field(GaussianParams(), description="part (a)")

    def check_config(self, cfg: Config) -> None:
        g, pop, name = self.gaussian, cfg.data.population, "langevin_gibbs"
        exact_1d = pop is not None and pop.dim == 1 and pop.method != "monte_carlo"
        require(
            name,
            ("experiment.params.gaussian.high", f"> low = {g.low}", g.high > g.low, g.high),
            ("experiment.params.gaussian.dt", "< 1 / l2 (a stable chain)", g.l2 * g.dt < 1, g.dt),
            ("experiment.params.grid", "odd (a midpoint)", self.grid % 2 == 1, self.grid),
            ("data.population", "exact in dimension 1: `{inputs: gaussian, dim: 1, method: "
             "quadrature}` or closed_form", exact_1d, pop),
            ("model.init.path", "unset (the start from `model.init.w`)",
             cfg.model.init.path is None, cfg.model.init.path),
        )  # fmt: skip
        fixed_output_units(cfg, name, "theta = w, one coordinate: a 1-D density")
        check_plain_langevin(
            cfg,
            name,
            schedule_reason="the Gibbs law of one temperature",
            l2_reason="exp(-beta Phi) of a bounded unit is normalizable only with lambda > 0",
        )


def plan(s: Study[GibbsParams]) -> dict[str, Run]:
    g, cfg = s.params.gaussian, s.config
    init = {"w": {"law": "uniform", "low": g.low, "high": g.high}}
    model = {"width": g.width, "activation": cfg.model.activation, "init": init}
    gaussian = {
        "name": f"{s.name}-gaussian",
        "seed": cfg.seed,
        "dtype": cfg.dtype,
        "model": model | {"bias": False, "train_output": False},
        "data": {"target": "zero", "inputs": {"dim": g.dim}},
        "objective": {"l2": g.l2},
        "dynamics": {"integrator": "euler_maruyama", "dt": g.dt, "steps": g.steps}
        | {"langevin": {"beta": g.beta}},
        "record": {"every": g.every, "entropy_k": cfg.record.entropy_k or 1},
    }
    runs = {"gaussian": Run(validate(gaussian))}
    for m in s.params.widths:
        runs[f"teacher_m{m}"] = Run(s.sub_config(f"teacher_m{m}", {"model.width": m}))
    return runs


def analyze_gaussian(s: Study[GibbsParams], r) -> dict:
    import jax

    from ..diagnostics import gibbs

    p, g, t = s.params, s.params.gaussian, r.metrics["t"]
    ou = gibbs.ou_stationary_stats(r.particles("last"), g.beta, g.l2, g.dt)
    root = jax.random.fold_in(jax.random.key(s.config.seed), 0xCA1B)
    f_em, bias, sd = gibbs.knn_free_energy_bias(
        root, ou["v_em"], (g.width, g.dim), g.beta, g.l2, r.config.record.entropy_k,
        p.calibration_draws, s.config.dtype,
    )  # fmt: skip
    fe = gibbs.window_stats(t, r.metrics["free_energy"], p.plateau)
    return ou | {
        "lambda_T": g.l2 * float(t[-1]),
        "initial_mean": r.particles("first").mean(0).tolist(),
        "free_energy": {
            "F_star": gibbs.gaussian_free_energy(g.dim, g.beta, g.l2, ou["v"]),
            "F_em": f_em,
            "plateau_start": fe["t_from"],
            "plateau_mean": fe["mean"],
            "plateau_spread": fe["max"] - fe["min"],
            "plateau_rel_spread": (fe["max"] - fe["min"]) / abs(fe["mean"]),
            "knn_bias": bias,
            "knn_sd": sd,
            "draws": p.calibration_draws,
        },
    }


def analyze_teacher(s: Study[GibbsParams], r) -> tuple[dict, dict]:
    import jax.numpy as jnp

    from ..diagnostics import gibbs

    p, dyn = s.params, r.built.dynamics
    beta = float(dyn.beta(0.0))  # s beta: the temperature of the free energy
    theta = jnp.asarray(r.particles("last"))
    m, steps = theta.shape[0], r.snapshot_steps()
    ks, ks_l2, grid, rho = gibbs.gibbs_ks(dyn.flow, theta, beta, p.grid)
    l2_err, drift_err = gibbs.potential_consistency(dyn.flow, theta, grid)
    late = {  # sqrt(m) KS at the plateau's snapshots, each against its own Phi
        str(k): math.sqrt(m)
        * gibbs.gibbs_ks(dyn.flow, jnp.asarray(r.particles(k)), beta, p.grid)[0]
        for k in steps
        if k >= (1.0 - p.plateau) * steps[-1]
    }
    fe = gibbs.window_stats(r.metrics["t"], r.metrics["free_energy"], p.plateau)
    stats = {
        "width": m,
        "beta": beta,
        "ks": ks,
        "sqrt_m_ks": math.sqrt(m) * ks,
        "ks_tolerance": p.ks_c / math.sqrt(m),
        "ks_l2_only_gaussian": ks_l2,
        "sqrt_m_ks_plateau_snapshots": late,
        "sqrt_m_ks_plateau_mean": float(np.mean(list(late.values()))),
        "kolmogorov_mean": KOLMOGOROV_MEAN,
        "free_energy_plateau_spread_nats": beta * (fe["max"] - fe["min"]),
        "potential_drift_rel_err": drift_err,
        "l2_term_rel_err": l2_err,
    }
    s2 = 1.0 / (beta * float(dyn.objective.l2))  # the control N(0, 1/(beta lambda))
    return stats, {"w": np.asarray(theta[:, 0]), "grid": grid, "rho": rho, "s2": s2}


def analyze(s: Study[GibbsParams], runs) -> dict:
    per_run, fig = {"gaussian": analyze_gaussian(s, runs["gaussian"])}, {}
    for m in s.params.widths:
        per_run[f"teacher_m{m}"], fig[m] = analyze_teacher(s, runs[f"teacher_m{m}"])
    losses = [r.summary.get("final_loss") or 0.0 for r in runs.values()]
    return {"final_loss": max(losses), "runs": per_run, "_fig": fig}


def evaluate(s: Study[GibbsParams], stats: dict) -> dict:
    p, runs, out = s.params, stats["runs"], {}
    g = runs["gaussian"]
    c, fe, z = g["coordinates"], g["free_energy"], p.z
    for i, (zm, zv) in enumerate(zip(c["z_mean"], c["z_var"], strict=True)):
        out[f"gaussian_mean_{i}"] = check(zm, f"|mean_{i}| / (s_{i} / sqrt(m)) <= {z:g}", zm <= z)
        rule = f"|s_{i}^2 - v_EM| / SE(var) <= {z:g} (v_EM = {g['v_em']:.6g})"
        out[f"gaussian_var_{i}"] = check(zv, rule, zv <= z)
    bias = g["em_bias_over_se"]
    rule = f"(v_EM - 1/(beta lambda)) / max SE(var) <= {p.em_bias_se:g}"
    out["gaussian_em_bias"] = check(bias, rule, bias <= p.em_bias_se)
    spread = fe["plateau_rel_spread"]
    rule = f"(max F - min F) / |mean F| <= {p.flatness:g} over t >= {fe['plateau_start']:g}"
    out["gaussian_free_energy_flat"] = check(spread, rule, spread <= p.flatness)
    gap, tol = abs(fe["plateau_mean"] - fe["F_star"]), abs(fe["knn_bias"]) + 3 * fe["knn_sd"]
    rule = (
        f"|mean F - F*| <= |b| + 3 s = {tol:.3g} (F* = {fe['F_star']:.6g}; kNN bias b = "
        f"{fe['knn_bias']:.3g}, s = {fe['knn_sd']:.3g} from {fe['draws']} exact draws)"
    )
    out["gaussian_free_energy_minimum"] = check(gap, rule, gap <= tol)
    for m in p.widths:
        r = runs[f"teacher_m{m}"]
        ks, tol = r["ks"], r["ks_tolerance"]
        drift, l2 = r["potential_drift_rel_err"], r["l2_term_rel_err"]
        rule = f"KS(ECDF, Gibbs CDF) <= {p.ks_c:g} / sqrt(m) = {tol:.4g}"
        out[f"ks_m{m}"] = check(ks, rule, ks <= tol)
        rule = "max |v + Phi'| / max |v| <= 1e-8"
        out[f"potential_is_drift_m{m}"] = check(drift, rule, drift <= 1e-8)
        rule = "max |Phi - Phi_{l2=0} - lambda w^2/2| / max |Phi| <= 1e-10"
        out[f"first_variation_has_l2_m{m}"] = check(l2, rule, l2 <= 1e-10)
    w = runs[f"teacher_m{max(p.widths)}"]
    ks, tol = w["ks_l2_only_gaussian"], w["ks_tolerance"]
    rule = f"KS against N(0, 1/(beta lambda)) at m = {w['width']} > {p.ks_c:g} / sqrt(m) = "
    rule += f"{tol:.4g} (dR/dmu shapes rho*)"
    out["control_l2_only_gaussian"] = check(ks, rule, ks > tol)
    return out


def figures(s: Study[GibbsParams], stats: dict, runs) -> list:
    from ..plots import plt, save_figure

    r, g = runs["gaussian"], stats["runs"]["gaussian"]
    w, v, fe = r.particles("last"), g["v"], g["free_energy"]
    fig, ax = plt.subplots(1, 3, figsize=(16, 4.5), layout="constrained")
    xs = np.linspace(-4 * math.sqrt(v), 4 * math.sqrt(v), 400)
    for i in range(w.shape[1]):
        ax[0].hist(w[:, i], 60, density=True, alpha=0.35, label=f"w_{i}, t = T")
    ax[0].plot(xs, np.exp(-(xs**2) / (2 * v)) / math.sqrt(2 * math.pi * v), "k-", label="rho*")
    ax[0].set(
        xlabel="particle coordinate w_i", ylabel="density", title="(a) R = 0: N(0, I/(beta lambda))"
    )
    for m, col in zip(sorted(s.params.widths), plt.cm.tab10.colors, strict=False):
        d = stats["_fig"][m]
        ax[1].hist(d["w"], 60, density=True, histtype="step", color=col, label=f"m = {m}")
        ax[1].plot(d["grid"], d["rho"], "-", color=col, lw=1.5)
    gauss = np.exp(-(d["grid"] ** 2) / (2 * d["s2"])) / math.sqrt(2 * math.pi * d["s2"])
    ax[1].plot(d["grid"], gauss, "k--", lw=1, label="control N(0, 1/(beta lambda))")
    ax[1].set(
        xlabel="student weight w",
        ylabel="density",
        title=r"(b) particles and $e^{-\beta\Phi}/Z$ (lines)",
    )
    f_star, tol = fe["F_star"], abs(fe["knn_bias"]) + 3 * fe["knn_sd"]
    ax[2].plot(
        r.metrics["t"],
        r.metrics["free_energy"],
        color=DYNAMICS_COLORS["langevin"],
        label="F (kNN entropy)",
    )
    ax[2].axhspan(f_star - tol, f_star + tol, color="#f5b041", alpha=0.4, label="F* +- (|b| + 3 s)")
    ax[2].axvline(fe["plateau_start"], color=COLORS["init"], ls="--", lw=0.8, label="plateau")
    ax[2].set(
        xlabel="t",
        ylabel=r"free energy $F = E - H/\beta$",
        title="(a) free energy",
        ylim=(f_star - 1, f_star + 3),
    )
    for a in ax:
        a.legend(fontsize=8)
    fig.suptitle(
        r"Langevin particles reach the Gibbs fixed point $\rho^* \propto e^{-\beta\Phi}$ "
        "(a: R = 0, b: a 1-D teacher)"
    )
    return [save_figure(fig, s.figure_path("gibbs.png"))]


LANGEVIN_GIBBS = Experiment(
    name="langevin_gibbs",
    summary="mean-field Langevin particles reach the Gibbs fixed point exp(-beta (dR/dmu + "
    "lambda |w|^2/2)): N(0, I/(beta lambda)) when R = 0, and a 1-D teacher-student law",
    claim=CLAIM,
    params=GibbsParams,
    quick=(
        "experiment.params.widths=[256,1024]",
        "experiment.params.gaussian.width=2048",
        "experiment.params.gaussian.steps=1200",
        "experiment.params.gaussian.every=40",
        "dynamics.steps=4000",
        "record.every=100",
        "record.snapshot_every=400",
    ),
    checks=(
        CheckSpec("gaussian_mean_*", "(a) |mean_i| / (s_i / sqrt(m)) <= z"),
        CheckSpec("gaussian_var_*", "(a) |s_i^2 - v_EM| / SE(var) <= z"),
        CheckSpec("gaussian_em_bias", "(a) (v_EM - 1/(beta lambda)) / max SE(var) <= em_bias_se"),
        CheckSpec("gaussian_free_energy_flat", "(a) (max F - min F) / |mean F| <= flatness"),
        CheckSpec("gaussian_free_energy_minimum", "(a) |plateau mean F - F*| <= |b| + 3 s"),
        CheckSpec("ks_m*", "(b) KS(particles, exp(-beta Phi) / Z) <= ks_c / sqrt(m)"),
        CheckSpec("potential_is_drift_m*", "(b) max |v + Phi'| / max |v| <= 1e-8"),
        CheckSpec("first_variation_has_l2_m*", "(b) |Phi - Phi_{l2=0} - lambda w^2/2| <= 1e-10"),
        CheckSpec(
            "control_l2_only_gaussian",
            "(b) negative control: KS(widest run, N(0, 1/(beta lambda))) > ks_c / sqrt(m)",
        ),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
