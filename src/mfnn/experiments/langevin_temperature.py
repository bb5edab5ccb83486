"""`langevin_temperature`: the risk of the mean-field Langevin minimizer falls as the
inverse temperature beta grows, lambda -> 0 alongside (Mei-Montanari-Nguyen 2018, the
weak-regularization limit of the free energy)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from pydantic import Field, field_validator  # noqa: E402

from ..config import Config  # noqa: E402
from ..errors import ConfigError  # noqa: E402
from ..plots import save_figure  # noqa: E402
from ..stats import loglog_fit, tail_mean  # noqa: E402
from ..study import CheckSpec, Experiment, Params, Run, Study, check  # noqa: E402
from .common import check_plain_langevin  # noqa: E402

CLAIM = """\
The mean-field Langevin dynamics d theta = [v(theta) - lambda theta] dt + sqrt(2/beta) dB
converges to the unique minimizer rho_beta of the free energy F_beta(mu) = R(mu) +
(lambda/2) int |theta|^2 dmu + (1/beta) int rho log rho (Mei, Montanari and Nguyen 2018,
"A mean field view of the landscape of two-layer neural networks", Theorem 4), and as
beta -> infinity with lambda -> 0 (the weak-regularization limit) the risk of rho_beta
approaches inf R. Provable at fixed lambda: adding F_b1(rho_b1) <= F_b1(rho_b2) and
F_b2(rho_b2) <= F_b2(rho_b1) for b1 < b2 shows that the entropy of rho_beta and its energy
E = R + (lambda/2) M_2 do not increase with beta; the risk R alone follows only while the
(lambda/2) M_2 part does not dominate. With lambda fixed the risk stops falling at the
lambda-regularized minimizer's level, so lambda decreases alongside beta: lambda_i =
objective.l2 (beta_i / beta_1)^(-p), p = l2_exponent (p = 0 holds lambda fixed, and then
the check energy_monotone is added).

Setup: exact population risk by Gauss-Hermite quadrature, x ~ N(0, 1); student
f = (1/m) sum_j tanh(w_j x), no bias, output weights fixed to 1 (theta = w in R),
w ~ N(0, 1); teacher rho* = 0.3 delta_{-1.5} + 0.7 delta_{1} (tanh units). One
Euler-Maruyama run per beta_i of `betas` (increasing, at least 4 values spanning at least a
decade), each from the same start with the same noise stream (common random numbers: the
runs differ by beta and lambda only).

Statistics: per run, time averages over the records with t >= (1 - average) T of the
population risk (R_bar), the energy (E_bar) and the free energy (F_bar, kNN entropy). The
checks fit log R_bar against log beta (slope), compare the ends of the grid (ratio), ask
the quadrature to resolve the risks, and with p = 0 ask E_bar not to increase. Reported,
not checked: the slope's 95 % interval, `monotone` (R_bar falls at every step) and per run
`drift` = |R_late - R_early| / R_bar over the window's halves (at small m the risk
fluctuates around its plateau, correlated in time, so the halves differ without a trend).
With the premise removed (p = 0, lambda = 0.1 at every beta) slope and ratio fail while
energy_monotone holds, as the argument above says.
"""


class TemperatureParams(Params):
    betas: tuple[float, ...] = Field(
        (10.0, 30.0, 100.0, 300.0, 1000.0),
        min_length=4,
        description="inverse temperatures, one run each: > 0, increasing, spanning >= a decade",
    )
    l2_exponent: float = Field(
        0.5, ge=0, le=1, description="p: lambda_i = objective.l2 (beta_i / beta_1)^(-p)"
    )
    average: float = Field(
        0.5, gt=0, le=1, description="time-average over the last `average` fraction of a run"
    )
    slope_margin: float = Field(0.3, gt=0, description="slope of log R_bar vs log beta <= -this")
    ratio: float = Field(10.0, ge=1, description="R_bar(beta_min) / R_bar(beta_max) >= this")

    @field_validator("betas")
    @classmethod
    def _grid(cls, betas: tuple[float, ...]) -> tuple[float, ...]:
        if not all(b > 0 for b in betas):
            raise ValueError(f"`experiment.params.betas` must be > 0; got {list(betas)}")
        if any(b <= a for a, b in zip(betas, betas[1:], strict=False)):
            raise ValueError(
                "`experiment.params.betas` must increase strictly (the fit and the ratio "
                f"compare the coldest with the hottest run); got {list(betas)}. Sort it"
            )
        if betas[-1] / betas[0] < 10:
            raise ValueError(
                "`experiment.params.betas` must span at least a decade (beta_max / beta_min "
                f">= 10); got {list(betas)}"
            )
        return betas

    def check_config(self, cfg: Config) -> None:
        if cfg.data.population is None or cfg.data.population.method == "monte_carlo":
            raise ConfigError(
                "langevin_temperature needs the exact population risk: `data.population` "
                "with `method: quadrature` or `closed_form` (monte_carlo adds minibatch "
                "noise, a temperature of its own)."
            )
        if cfg.model.scaling != "mean_field":
            raise ConfigError(
                "`model.scaling` must be mean_field for langevin_temperature; "
                f"got {cfg.model.scaling!r}."
            )
        check_plain_langevin(
            cfg,
            "langevin_temperature",
            beta_note=" (beta is replaced by each `experiment.params.betas`)",
            schedule_reason="each run has one temperature",
            l2_reason="it is lambda at the smallest beta, and without the confinement the "
            "Gibbs law of a bounded unit is not normalizable",
        )

    def l2(self, cfg: Config) -> list[float]:
        """lambda_i = objective.l2 (beta_i / beta_1)^(-l2_exponent)."""
        b0 = self.betas[0]
        return [float(cfg.objective.l2) * (b / b0) ** (-self.l2_exponent) for b in self.betas]


def run_name(beta: float) -> str:
    """The sub-run of one temperature.

    Example:
        >>> run_name(10.0), run_name(0.5), run_name(1000.0)
        ('beta10', 'beta0.5', 'beta1000')
    """
    return f"beta{beta:g}"


def window_stats(metrics: dict[str, np.ndarray], average: float) -> dict[str, float]:
    """Time averages over the window t >= (1 - average) T (`mfnn.stats.tail_mean`): the
    risk, energy, free energy and entropy, and the risk over the window's two halves
    (early, late: the drift of the plateau).

    Example:
        >>> t = np.arange(5.0)
        >>> s = window_stats({"t": t, "loss": t, "energy": t, "free_energy": t,
        ...                   "entropy": t}, 0.5)
        >>> s["risk"], s["risk_early"], s["risk_late"], s["records"], s["t_from"]
        (3.0, 2.0, 3.5, 3, 2.0)
    """
    t, loss = metrics["t"], metrics["loss"]
    keep = np.nonzero(t >= (1.0 - average) * t[-1])[0]
    half = len(keep) // 2
    early = keep[:half] if half else keep
    out = {
        "risk": tail_mean(t, loss, average),
        "risk_early": float(loss[early].mean()),
        "risk_late": float(loss[keep[half:]].mean()),
        "records": int(len(keep)),
        "t_from": float(t[keep[0]]),
    }
    for key in ("energy", "free_energy", "entropy"):
        if key in metrics:
            out[key] = tail_mean(t, metrics[key], average)
    return out


def plan(s: Study[TemperatureParams]) -> dict[str, Run]:
    return {
        run_name(b): Run(
            s.sub_config(run_name(b), {"dynamics.langevin.beta": b, "objective.l2": lam})
        )
        for b, lam in zip(s.params.betas, s.params.l2(s.config), strict=True)
    }


def analyze(s: Study[TemperatureParams], runs) -> dict:
    p = s.params
    betas, per_run, win, curves = list(p.betas), {}, [], []
    for b, lam in zip(betas, p.l2(s.config), strict=True):
        r = runs[run_name(b)]
        w = window_stats(r.metrics, p.average)
        win.append(w)
        curves.append((r.metrics["t"], r.metrics["loss"]))
        per_run[run_name(b)] = {
            "beta": b,
            "effective_beta": b * s.config.dynamics.langevin.drift_scale,
            "l2": lam,
            "window": w,
            "drift": abs(w["risk_late"] - w["risk_early"]) / w["risk"],
            "quadrature_error": (r.summary.get("quadrature_error") or {}).get("final"),
        }
    risk = np.array([w["risk"] for w in win])
    fit = loglog_fit(betas, risk)
    quad = [r["quadrature_error"] for r in per_run.values()]
    return {
        "final_loss": float(risk[-1]),
        "betas": betas,
        "l2": [r["l2"] for r in per_run.values()],
        "risk": risk.tolist(),
        "energy": [w["energy"] for w in win],
        "free_energy": [w["free_energy"] for w in win],
        "slope": fit.slope,
        "slope_fit": fit.as_dict(),
        "monotone": bool(np.all(np.diff(risk) < 0)),
        "quadrature_rel": None
        if any(q is None for q in quad)
        else max(q / w["risk"] for q, w in zip(quad, win, strict=True)),
        "runs": per_run,
        "_curves": curves,
        "_fit": fit,
        "_t_from": win[0]["t_from"],
    }


def evaluate(s: Study[TemperatureParams], stats: dict) -> dict:
    p, betas, risk = s.params, stats["betas"], stats["risk"]
    slope, ratio = stats["slope"], risk[0] / risk[-1]
    checks = {
        "slope": check(
            slope,
            f"slope of log R_bar against log beta <= -{p.slope_margin:g}",
            bool(slope <= -p.slope_margin),
        ),
        "ratio": check(
            ratio,
            f"R_bar(beta={betas[0]:g}) / R_bar(beta={betas[-1]:g}) >= {p.ratio:g}",
            bool(ratio >= p.ratio),
        ),
    }
    if p.l2_exponent == 0:  # lambda fixed: the provable statement, E non-increasing
        e = np.asarray(stats["energy"])
        worst = float(np.max(e[1:] / e[:-1]))
        checks["energy_monotone"] = check(
            worst,
            "max_i E_bar(beta_{i+1}) / E_bar(beta_i) <= 1 (lambda fixed: E(rho_beta) does "
            "not increase with beta)",
            worst <= 1.0,
        )
    if stats["quadrature_rel"] is not None:
        q = stats["quadrature_rel"]
        checks["quadrature_resolved"] = check(
            q, "max_beta |R_q - R_2q| / R_bar <= 0.1 (the rule resolves the risks)", q <= 0.1
        )
    return checks


def figures(s: Study[TemperatureParams], stats: dict, runs) -> list:
    betas = np.asarray(stats["betas"])
    risk, energy, free = (np.asarray(stats[k]) for k in ("risk", "energy", "free_energy"))
    fit = stats["_fit"]
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.2))
    ax[0].loglog(betas, risk, "o-", color="#c0392b", label=r"$\bar R$ (time average)")
    ax[0].loglog(
        betas, energy, "s--", color="#7f8c8d", ms=4, label=r"$\bar E = \bar R + \lambda M_2/2$"
    )
    # F changes sign across the grid: |F| on log axes, open markers where F < 0
    ax[0].loglog(betas, np.abs(free), "-", color="#2471a3", lw=1)
    pos = free > 0
    ax[0].loglog(betas[pos], free[pos], "o", color="#2471a3", label=r"$\bar F = \bar E - H/\beta$")
    ax[0].loglog(betas[~pos], -free[~pos], "o", mfc="none", color="#2471a3", label=r"$-\bar F$")
    ax[0].loglog(betas, fit(betas), "k:", lw=1, label=f"fit of $\\bar R$: slope {fit.slope:.2f}")
    ax[0].set(xlabel=r"$\beta$", title=r"time averages against $\beta$ (log-log)")
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(betas)))
    for col, b, (t, loss) in zip(colors, betas, stats["_curves"], strict=True):
        ax[1].semilogy(t, loss, color=col, label=f"beta = {b:g}")
    ax[1].axvline(stats["_t_from"], color="k", ls="--", lw=0.8, label="averaging window")
    ax[1].set(xlabel="t", ylabel="population risk", title="risk over time")
    for a in ax:
        a.legend(fontsize=7)
    fig.tight_layout()
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
        CheckSpec(
            "quadrature_resolved",
            "max over runs of |R_q - R_2q| / R_bar <= 0.1 at the end (quadrature only)",
        ),
        CheckSpec(
            "energy_monotone",
            "only with l2_exponent = 0: max_i E_bar(beta_{i+1}) / E_bar(beta_i) <= 1",
        ),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
