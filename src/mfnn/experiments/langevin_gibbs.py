"""`langevin_gibbs`: the mean-field Langevin particles reach the Gibbs fixed point
rho* proportional to exp(-beta [dR/dmu[rho*](theta) + lambda |theta|^2 / 2])."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..config import Config, validate
from ..diagnostics.entropy import knn_entropy
from ..errors import ConfigError
from ..plots import plt, save_figure  # plots selects the Agg backend
from ..stats import KOLMOGOROV_MEAN, ks_distance, window
from ..study import CheckSpec, Experiment, Params, Run, Study, check
from .common import check_plain_langevin

CLAIM = """\
Mean-field Langevin dynamics d theta = [v(theta) - lambda theta] dt + sqrt(2/beta) dB is
the Wasserstein gradient flow of F(mu) = R(mu) + (lambda/2) int |theta|^2 dmu + (1/beta)
int rho log rho, and the particle law converges to its unique minimizer, the Gibbs fixed
point rho*(theta) proportional to exp(-beta [dR/dmu[rho*](theta) + lambda |theta|^2 / 2])
(Mei, Montanari and Nguyen 2018, "A mean field view of the landscape of two-layer neural
networks", Theorem 4; H. Yang, "Mean-field analysis of neural networks").

(a) Known answer (runs/gaussian, params.gaussian). R == 0 (`data.target: zero`), theta =
w in R^D, so each particle is an Ornstein-Uhlenbeck process and rho* = N(0, I/(beta
lambda)); start w uniform on [low, high]^D (shifted, not Gaussian). Euler-Maruyama with
step dt is a Gaussian AR(1) with stationary variance v_EM = 1/(beta lambda (1 - lambda dt
/ 2)): the variance checks use v_EM and gaussian_em_bias bounds v_EM - 1/(beta lambda) in
standard errors, so the continuous-time law passes too. Statistics of the final
(i.i.d.) particles per coordinate i: mean_i, s_i^2 (ddof 1), SE(mean) = s_i / sqrt(m),
SE(var) = sqrt((m4_i - sigma_i^4) / m) (central moments with 1/m). The recorded free
energy F = E - H_kNN / beta (Kozachenko-Leonenko entropy) over the last `plateau`
fraction of the run is compared with the exact minimum F* = -(D / (2 beta)) log(2 pi /
(beta lambda)), within |b| + 3 s: b and s the bias and standard deviation of the same
estimator on calibration_draws exact samples of N(0, v_EM I) of the same m and D.

(b) Teacher-student in d = 1 (runs/teacher_m<m>, one per width). Exact population risk
(Gauss-Hermite quadrature, x ~ N(0, 1)); student f = (1/m) sum_j sigma(w_j x), sigma(z)
= exp(-z^2/2), no bias, a == 1, so theta = w in R; teacher 0.6 sigma(x) + 0.4 sigma(2x);
lambda > 0 makes exp(-beta Phi) normalizable (sigma is bounded). At the end, Phi(w) =
objective.first_variation(model, theta_T, w) on `grid` points spanning the particles
+- 5 / sqrt(beta lambda), rho_Gibbs = exp(-beta Phi) / Z with its CDF by the trapezoid
rule, and KS = sup_w |ECDF_m(w) - CDF(w)|, held to ks_c / sqrt(m): ks_c = 1.95 is the
0.999 quantile of Kolmogorov's (1933) law of sqrt(m) KS for i.i.d. draws, so the
tolerance shrinks like m^(-1/2). Bookkeeping: -Phi' is the drift the run used and Phi
contains lambda w^2 / 2. Negative control: the widest run against the Gibbs law without
dR/dmu, N(0, 1/(beta lambda)), must be farther than the tolerance. Reported: sqrt(m) KS
at each plateau snapshot (mean 0.87 for i.i.d. draws) and beta (max F - min F). The start
w ~ uniform[-3, 3] is symmetric: for an even sigma rho* is bimodal (modes near +-1.1) and
mass crosses the barrier at 0 only on a Kramers time much longer than 1/lambda, so a
one-sided start does not reach rho* within the run.

Each sub-run's energy_identity checks the drift part (the recorder's residual uses the
drift step alone): O(dt), exactly lambda dt / 2 in the Gaussian run.
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

    @field_validator("high")
    @classmethod
    def _above_low(cls, high, info):
        if "low" in info.data and not high > info.data["low"]:
            raise ValueError(f"must be > low = {info.data['low']} (the uniform start); got {high}")
        return high

    @field_validator("dt")
    @classmethod
    def _stable(cls, dt, info):
        if "l2" in info.data and not info.data["l2"] * dt < 1:
            raise ValueError(
                f"must satisfy l2 dt < 1 (a stable EM chain); got l2 dt = {info.data['l2'] * dt:g}"
            )
        return dt


class GibbsParams(Params):
    widths: tuple[int, ...] = Field(
        (256, 4096), min_length=1, description="student widths of part (b): distinct, >= 8"
    )
    ks_c: float = Field(1.95, gt=0, description="KS tolerance ks_c / sqrt(m)")
    grid: int = Field(4001, ge=101, description="odd number of points of the Phi grid")
    z: float = Field(3.0, gt=0, description="(a): mean and variance within z SE")
    em_bias_se: float = Field(0.25, gt=0, description="(a): bound on the EM variance bias, in SE")
    plateau: float = Field(0.5, gt=0, le=1, description="the last fraction of a run")
    flatness: float = Field(0.1, gt=0, description="(a): bound on the relative spread of F")
    calibration_draws: int = Field(16, ge=2, description="(a): exact draws calibrating F_kNN")
    gaussian: GaussianParams = Field(GaussianParams(), description="part (a)")

    @field_validator("widths")
    @classmethod
    def _distinct(cls, widths):
        if len(set(widths)) != len(widths) or min(widths) < 8:
            raise ValueError(f"must be distinct widths >= 8; got {list(widths)}")
        return widths

    @field_validator("grid")
    @classmethod
    def _odd(cls, grid):
        if grid % 2 == 0:
            raise ValueError(f"must be odd (a midpoint); got {grid}")
        return grid

    def check_config(self, cfg: Config) -> None:
        pop, m = cfg.data.population, cfg.model
        if pop is None or pop.dim != 1 or pop.method == "monte_carlo":
            raise ConfigError(
                "langevin_gibbs needs the exact population risk in dimension 1: "
                "`data.population: {inputs: gaussian, dim: 1, method: quadrature}` (or "
                f"closed_form; monte_carlo adds a noise of its own); got {pop!r}."
            )
        if m.bias or m.train_output or m.scaling != "mean_field" or m.init.path is not None:
            raise ConfigError(
                "langevin_gibbs compares a 1-D density: `model.bias: false`, "
                "`model.train_output: false`, `model.scaling: mean_field`, the start from "
                f"`model.init.w` (no `path`); got bias {m.bias}, train_output "
                f"{m.train_output}, scaling {m.scaling!r}, path {m.init.path!r}."
            )
        check_plain_langevin(
            cfg,
            "langevin_gibbs",
            schedule_reason="the Gibbs law of one temperature",
            l2_reason="exp(-beta Phi) of a bounded unit is normalizable only with lambda > 0",
        )


# ------------------------------------------------------------------ statistics


def gibbs_on_grid(potential: np.ndarray, grid: np.ndarray, beta: float):
    """rho = exp(-beta Phi) / Z on ``grid`` and its CDF (trapezoid rule), from Phi on it.

    Example:
        >>> g = np.linspace(-8.0, 8.0, 4001)
        >>> rho, cdf = gibbs_on_grid(0.5 * g**2, g, 1.0)   # N(0, 1)
        >>> round(float(rho[2000]), 4), round(float(np.interp(1.0, g, cdf)), 4)
        (0.3989, 0.8413)
    """
    u = np.exp(-beta * (potential - potential.min()))
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (u[1:] + u[:-1]) * np.diff(grid))])
    return u / cum[-1], cum / cum[-1]


def coordinate_stats(w: np.ndarray, target_var: float) -> dict[str, list[float]]:
    """Per column of ``w`` (m, D): mean, s^2 (ddof 1), SE(mean) = s / sqrt(m),
    SE(var) = sqrt((m4 - sigma^4) / m) (m4 and sigma^2 central moments with 1/m), and the
    z-scores |mean| / SE(mean) and |s^2 - target_var| / SE(var).

    Example:
        >>> s = coordinate_stats(np.array([[0.0], [0.0], [0.0], [4.0]]), 4.0)
        >>> s["mean"], s["var"], s["se_var"], s["z_var"]
        ([1.0], [4.0], [1.7320508075688772], [0.0])
    """
    m, mean, var = w.shape[0], w.mean(0), w.var(0, ddof=1)
    se_mean, se_var = np.sqrt(var / m), np.sqrt((((w - mean) ** 4).mean(0) - w.var(0) ** 2) / m)
    z_mean, z_var = np.abs(mean) / se_mean, np.abs(var - target_var) / se_var
    out = {"mean": mean, "var": var, "se_mean": se_mean, "se_var": se_var}
    return {k: v.tolist() for k, v in (out | {"z_mean": z_mean, "z_var": z_var}).items()}


def gaussian_free_energy(dim: int, beta: float, l2: float, var: float) -> float:
    """F(N(0, var I_D)) = (lambda/2) D var - (D / (2 beta)) log(2 pi e var); at
    var = 1/(beta lambda) the minimum -(D / (2 beta)) log(2 pi / (beta lambda)).

    Example:
        >>> round(gaussian_free_energy(2, 1.0, 1.0, 1.0), 4)   # -log(2 pi)
        -1.8379
    """
    return 0.5 * l2 * dim * var - dim / (2 * beta) * math.log(2 * math.pi * math.e * var)


def gibbs_ks(flow, theta, beta: float, points: int):
    """KS distance between the particles ``theta`` (m, 1) and exp(-beta Phi) / Z, Phi their
    own first variation (``flow.objective``), on ``points`` points spanning the particles
    +- 5 / sqrt(beta lambda). Returns (KS, grid, Gibbs density on grid, its CDF)."""
    w = np.asarray(theta[:, 0])
    pad = 5.0 / math.sqrt(beta * float(flow.objective.l2))
    grid = np.linspace(w.min() - pad, w.max() + pad, points)
    phi = flow.objective.first_variation(flow.model, theta, jnp.asarray(grid, theta.dtype)[:, None])
    rho, cdf = gibbs_on_grid(np.asarray(phi), grid, beta)
    return ks_distance(w, grid, cdf), grid, rho, cdf


def potential_consistency(flow, theta, grid: np.ndarray) -> tuple[float, float]:
    """Two bookkeeping errors of Phi = objective.first_variation on a 1-D problem:
    max |Phi - Phi_{l2=0} - lambda w^2/2| / max |Phi| on ``grid`` (the L2 term is in Phi),
    and max_j |v(w_j) + Phi'(w_j)| / max_j |v(w_j)| (-Phi' is the drift ``flow`` moves the
    particles ``theta`` (m, 1) with)."""
    objective, model = flow.objective, flow.model
    pts = jnp.asarray(grid, theta.dtype)[:, None]
    phi = np.asarray(objective.first_variation(model, theta, pts))
    phi0 = np.asarray(dataclasses.replace(objective, l2=0.0).first_variation(model, theta, pts))
    l2_term = 0.5 * float(objective.l2) * grid**2
    l2_err = float(np.max(np.abs(phi - phi0 - l2_term)) / np.max(np.abs(phi)))
    # Phi at a row of q depends on that row only: the gradient of the sum is Phi' per row
    grad = jax.grad(lambda q: jnp.sum(objective.first_variation(model, theta, q)))(theta)
    v, _ = flow.full_velocity(theta)
    return l2_err, float(jnp.max(jnp.abs(v + grad)) / jnp.max(jnp.abs(v)))


# ------------------------------------------------------------------ plan and analysis


def plan(s: Study[GibbsParams]) -> dict[str, Run]:
    g, cfg = s.params.gaussian, s.config
    init = {"w": {"law": "uniform", "low": g.low, "high": g.high}}
    model = {"width": g.width, "activation": cfg.model.activation, "init": init}
    dynamics = {"integrator": "euler_maruyama", "dt": g.dt, "steps": g.steps}
    gaussian = {
        "name": f"{s.name}-gaussian",
        "seed": cfg.seed,
        "dtype": cfg.dtype,
        "model": model | {"bias": False, "train_output": False},
        "data": {"target": "zero", "inputs": {"dim": g.dim}},
        "objective": {"l2": g.l2},
        "dynamics": dynamics | {"langevin": {"beta": g.beta}},
        "record": {"every": g.every, "entropy_k": cfg.record.entropy_k or 1},
    }
    runs = {"gaussian": Run(validate(gaussian))}
    for m in s.params.widths:
        runs[f"teacher_m{m}"] = Run(s.sub_config(f"teacher_m{m}", {"model.width": m}))
    return runs


def _plateau(metrics: dict, fraction: float) -> np.ndarray:
    t = metrics["t"]
    return window(t, (1.0 - fraction) * t[-1], t[-1])


def analyze_gaussian(s: Study[GibbsParams], r) -> dict:
    p, g = s.params, s.params.gaussian
    v = 1.0 / (g.beta * g.l2)
    v_em = v / (1.0 - g.l2 * g.dt / 2.0)
    coords = coordinate_stats(r.particles("last"), v_em)
    se_var = np.asarray(coords["se_var"])
    coords["z_var_continuous"] = (np.abs(np.asarray(coords["var"]) - v) / se_var).tolist()
    # the same free-energy estimator on exact draws from the EM chain's stationary law
    f_em = gaussian_free_energy(g.dim, g.beta, g.l2, v_em)
    root = jax.random.fold_in(jax.random.key(s.config.seed), 0xCA1B)
    f_cal = []
    for i in range(p.calibration_draws):
        shape, dtype = (g.width, g.dim), jnp.dtype(s.config.dtype)
        x = math.sqrt(v_em) * jax.random.normal(jax.random.fold_in(root, i), shape, dtype)
        h = float(knn_entropy(x, r.config.record.entropy_k))
        f_cal.append(0.5 * g.l2 * float(jnp.mean(jnp.sum(x**2, -1))) - h / g.beta)
    mt = r.metrics
    keep = _plateau(mt, p.plateau)
    fe = mt["free_energy"][keep]
    return {
        "lambda_T": g.l2 * float(mt["t"][-1]),
        "initial_mean": r.particles("first").mean(0).tolist(),
        "v": v,
        "v_em": v_em,
        "em_bias_over_se": float((v_em - v) / se_var.max()),
        "coordinates": coords,
        "free_energy": {
            "F_star": gaussian_free_energy(g.dim, g.beta, g.l2, v),
            "F_em": f_em,
            "plateau_start": float(mt["t"][keep][0]),
            "plateau_mean": float(fe.mean()),
            "plateau_spread": float(fe.max() - fe.min()),
            "plateau_rel_spread": float(fe.max() - fe.min()) / abs(float(fe.mean())),
            "knn_bias": float(np.mean(f_cal) - f_em),
            "knn_sd": float(np.std(f_cal, ddof=1)),
            "draws": len(f_cal),
        },
    }


def analyze_teacher(s: Study[GibbsParams], r) -> tuple[dict, dict]:
    p, dyn = s.params, r.built.dynamics
    beta = float(dyn.beta(0.0))  # s beta: the temperature of the free energy
    theta = jnp.asarray(r.particles("last"))
    m = theta.shape[0]
    ks, grid, rho, _ = gibbs_ks(dyn.flow, theta, beta, p.grid)
    l2_err, drift_err = potential_consistency(dyn.flow, theta, grid)
    s2 = 1.0 / (beta * float(dyn.objective.l2))  # the control N(0, 1/(beta lambda))
    cdf_l2 = 0.5 * (1.0 + np.vectorize(math.erf)(grid / (2 * s2) ** 0.5))
    steps = r.snapshot_steps()
    late = {  # sqrt(m) KS at the plateau's snapshots, each against its own Phi
        str(k): math.sqrt(m) * gibbs_ks(dyn.flow, jnp.asarray(r.particles(k)), beta, p.grid)[0]
        for k in steps
        if k >= (1.0 - p.plateau) * steps[-1]
    }
    fe = r.metrics["free_energy"][_plateau(r.metrics, p.plateau)]
    stats = {
        "width": m,
        "beta": beta,
        "ks": ks,
        "sqrt_m_ks": math.sqrt(m) * ks,
        "ks_tolerance": p.ks_c / math.sqrt(m),
        "ks_l2_only_gaussian": ks_distance(theta[:, 0], grid, cdf_l2),
        "sqrt_m_ks_plateau_snapshots": late,
        "sqrt_m_ks_plateau_mean": float(np.mean(list(late.values()))),
        "kolmogorov_mean": KOLMOGOROV_MEAN,
        "free_energy_plateau_spread_nats": beta * float(fe.max() - fe.min()),
        "potential_drift_rel_err": drift_err,
        "l2_term_rel_err": l2_err,
    }
    return stats, {"w": np.asarray(theta[:, 0]), "grid": grid, "rho": rho, "s2": s2}


def analyze(s: Study[GibbsParams], runs) -> dict:
    per_run, fig = {"gaussian": analyze_gaussian(s, runs["gaussian"])}, {}
    for m in s.params.widths:
        per_run[f"teacher_m{m}"], fig[m] = analyze_teacher(s, runs[f"teacher_m{m}"])
    losses = [r.summary.get("final_loss") or 0.0 for r in runs.values()]
    return {"final_loss": max(losses), "runs": per_run, "_fig": fig}


# ------------------------------------------------------------------ checks


def evaluate(s: Study[GibbsParams], stats: dict) -> dict:
    p, runs, out = s.params, stats["runs"], {}

    def add(name, value, rule, passed):
        out[name] = check(value, rule, passed)

    g = runs["gaussian"]
    c, fe, z = g["coordinates"], g["free_energy"], p.z
    for i, (zm, zv) in enumerate(zip(c["z_mean"], c["z_var"], strict=True)):
        add(f"gaussian_mean_{i}", zm, f"|mean_{i}| / (s_{i} / sqrt(m)) <= {z:g}", zm <= z)
        rule = f"|s_{i}^2 - v_EM| / SE(var) <= {z:g} (v_EM = {g['v_em']:.6g})"
        add(f"gaussian_var_{i}", zv, rule, zv <= z)
    bias = g["em_bias_over_se"]
    rule = f"(v_EM - 1/(beta lambda)) / max SE(var) <= {p.em_bias_se:g}"
    add("gaussian_em_bias", bias, rule, bias <= p.em_bias_se)
    spread = fe["plateau_rel_spread"]
    rule = f"(max F - min F) / |mean F| <= {p.flatness:g} over t >= {fe['plateau_start']:g}"
    add("gaussian_free_energy_flat", spread, rule, spread <= p.flatness)
    gap, tol = abs(fe["plateau_mean"] - fe["F_star"]), abs(fe["knn_bias"]) + 3 * fe["knn_sd"]
    rule = (
        f"|mean F - F*| <= |b| + 3 s = {tol:.3g} (F* = {fe['F_star']:.6g}; kNN bias b = "
        f"{fe['knn_bias']:.3g}, s = {fe['knn_sd']:.3g} from {fe['draws']} exact draws)"
    )
    add("gaussian_free_energy_minimum", gap, rule, gap <= tol)
    for m in p.widths:
        r = runs[f"teacher_m{m}"]
        ks, tol = r["ks"], r["ks_tolerance"]
        drift, l2 = r["potential_drift_rel_err"], r["l2_term_rel_err"]
        add(f"ks_m{m}", ks, f"KS(ECDF, Gibbs CDF) <= {p.ks_c:g} / sqrt(m) = {tol:.4g}", ks <= tol)
        add(f"potential_is_drift_m{m}", drift, "max |v + Phi'| / max |v| <= 1e-8", drift <= 1e-8)
        rule = "max |Phi - Phi_{l2=0} - lambda w^2/2| / max |Phi| <= 1e-10"
        add(f"first_variation_has_l2_m{m}", l2, rule, l2 <= 1e-10)
    w = runs[f"teacher_m{max(p.widths)}"]
    ks, tol = w["ks_l2_only_gaussian"], w["ks_tolerance"]
    rule = f"KS against N(0, 1/(beta lambda)) at m = {w['width']} > {p.ks_c:g} / sqrt(m) = "
    add("control_l2_only_gaussian", ks, rule + f"{tol:.4g} (dR/dmu shapes rho*)", ks > tol)
    return out


# ------------------------------------------------------------------ figures


def figures(s: Study[GibbsParams], stats: dict, runs) -> list:
    r, g = runs["gaussian"], stats["runs"]["gaussian"]
    w0, w, v, fe = r.particles("first"), r.particles("last"), g["v"], g["free_energy"]
    f_star, tol = fe["F_star"], abs(fe["knn_bias"]) + 3 * fe["knn_sd"]
    fig, ax = plt.subplots(1, 2, figsize=(12, 4))
    lim = 1.05 * max(np.abs(w).max(), np.abs(w0).max())
    bins, xs = np.linspace(-lim, lim, 81), np.linspace(-lim, lim, 400)
    for i, col in enumerate(plt.cm.tab10(np.arange(w.shape[1]))):
        ax[0].hist(w[:, i], bins, density=True, alpha=0.35, color=col, label=f"w_{i}, t = T")
        ax[0].hist(w0[:, i], bins, density=True, histtype="step", color=col, ls=":")
    ax[0].plot(xs, np.exp(-(xs**2) / (2 * v)) / math.sqrt(2 * math.pi * v), "k-", lw=1.5)
    ax[0].plot([], [], "k-", label=r"$N(0, 1/(\beta\lambda))$")
    ax[0].plot([], [], "k:", label="start (uniform)")
    ax[0].set(xlabel="w_i", ylabel="density", title="R = 0: particles against the Gibbs law")
    t, f = r.metrics["t"], r.metrics["free_energy"]
    ax[1].plot(t, f, color="#2471a3", label="F (kNN entropy)")
    ax[1].axhline(f_star, color="k", lw=1, label="F* (exact)")
    ax[1].axhspan(f_star - tol, f_star + tol, color="#f5b041", alpha=0.3, label="F* +- (|b| + 3 s)")
    ax[1].axvline(fe["plateau_start"], color="#7f8c8d", ls="--", lw=0.8, label="plateau")
    lo = min(f.min(), f_star - 2 * tol)
    ax[1].set(
        xlabel="t",
        ylabel="F",
        title="free energy",
        ylim=(lo - 0.1 * abs(lo), 4 * f_star - 3 * lo + 0.5),
    )
    for a in ax:
        a.legend(fontsize=8)
    paths = [save_figure(fig, s.figure_path("gaussian.png"))]

    widths = sorted(s.params.widths)
    fig, axes = plt.subplots(1, len(widths) + 1, figsize=(5.2 * (len(widths) + 1), 4))
    for ax_, m in zip(axes, widths, strict=False):
        d, st, mt = stats["_fig"][m], stats["runs"][f"teacher_m{m}"], runs[f"teacher_m{m}"].metrics
        gauss = np.exp(-(d["grid"] ** 2) / (2 * d["s2"])) / math.sqrt(2 * math.pi * d["s2"])
        ax_.hist(d["w"], 80 if m >= 1024 else 40, density=True, alpha=0.45, color="#c0392b")
        ax_.plot(d["grid"], d["rho"], "k-", lw=1.5, label=r"$\rho_{Gibbs} \propto e^{-\beta\Phi}$")
        ax_.plot(d["grid"], gauss, "--", color="#2471a3", lw=1, label=r"$N(0, 1/(\beta\lambda))$")
        title = f"m = {m}: KS = {st['ks']:.3g} (tol {st['ks_tolerance']:.3g})"
        ax_.set(
            xlabel="w", ylabel="density", title=title, xlim=(d["w"].min() - 0.3, d["w"].max() + 0.3)
        )
        ax_.legend(fontsize=8)
        axes[-1].plot(mt["t"], mt["free_energy"], label=f"m = {m}")
    axes[-1].set(xlabel="t", ylabel="F", title="free energy (teacher runs)")
    axes[-1].legend(fontsize=8)
    return [*paths, save_figure(fig, s.figure_path("teacher.png"))]


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
        CheckSpec("gaussian_mean_*", "(a) |mean_i| / (s_i / sqrt(m)) <= z (3)"),
        CheckSpec("gaussian_var_*", "(a) |s_i^2 - v_EM| / SE(var) <= z (3)"),
        CheckSpec(
            "gaussian_em_bias", "(a) (v_EM - 1/(beta lambda)) / max SE(var) <= em_bias_se (0.25)"
        ),
        CheckSpec(
            "gaussian_free_energy_flat", "(a) plateau (max F - min F) / |mean F| <= flatness (0.1)"
        ),
        CheckSpec(
            "gaussian_free_energy_minimum",
            "(a) |plateau mean F - F*| <= |b| + 3 s (kNN bias b, sd s on exact draws)",
        ),
        CheckSpec("ks_m*", "(b) KS(particles, exp(-beta Phi) / Z) <= ks_c / sqrt(m) (1.95)"),
        CheckSpec("potential_is_drift_m*", "(b) max |v + Phi'| / max |v| <= 1e-8"),
        CheckSpec(
            "first_variation_has_l2_m*",
            "(b) max |Phi - Phi_{l2=0} - lambda w^2/2| <= 1e-10 max |Phi|",
        ),
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
