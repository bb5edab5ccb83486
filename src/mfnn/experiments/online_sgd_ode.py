"""`online_sgd_ode`: mfnn's online SGD of a soft committee machine follows the
order-parameter ODE of Saad and Solla, plateau and escape included, with a gap that shrinks
like d^(-1/2)."""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from annotated_types import Ge, MinLen
from pydantic import Field

from ..config import Config
from ..stats import loglog_fit
from ..study import CheckSpec, Experiment, Params, Run, Study, check
from .common import Increasing, require

Dims = Annotated[tuple[Annotated[int, Ge(8)], ...], Increasing, MinLen(3)]
K = M = 2
S = 1.0 / math.sqrt(2.0)  # erf(z / sqrt 2): the committee machines' g

CLAIM = """\
Online SGD of a soft committee machine (K = 2 student units g(w_k . x), a teacher of M = 2
units, g(z) = erf(z / sqrt 2), x ~ N(0, I_d), one fresh sample per step) is, as d -> infinity,
the deterministic ODE of its order parameters Q = w w^T, R = w w*^T (T = w* w*^T fixed) in the
time alpha = steps / d (Saad and Solla 1995; Biehl and Schwarze 1995; Goldt, Advani, Saxe,
Krzakala and Zdeborova 2019): `mfnn.committee.OnlineSGDODE`, with the eta^2 term of the SGD
noise. From a small start the students first fall onto a symmetric plateau (both align with
the teachers' mean: eps_g stalls) and escape it when the small asymmetry grows; the finite-d
run fluctuates around the ODE by O(d^(-1/2)).

Setup, in mfnn's convention (`mfnn.committee.mfnn_learning_rates`): a mean-field two-layer
network f = (1/K) sum_k a_k erf(s w_k . x), s = 1/sqrt 2 (`model.activation_scale`), the
output weights frozen at a = K (`model.trainable: [w]`), so v = a/K = 1, no bias; the
teacher likewise (alpha_n a_n = 1/2 x 2: v* = 1, T = I): the committee machine of Saad and
Solla, f = sum_k g(W_k . x / sqrt d);
`dynamics.kind: sgd`, `sampling: online`, batch size B; dt = eta_w / (K d), so eta_w is the
same at every d and alpha = t / (d dt). The start has the same overlaps at every d
(R_0 = r0 below, Q_0 = R_0 R_0^T + q I, random directions: particle files written by the
plan), so the ODE is one curve. Each run records eps_g (the closed-form population risk)
and the overlaps (`record.overlaps`) every d/4 steps. Statistics: the RMS over alpha in
[0, alpha_max] and over `replicas` runs of eps_sim - eps_ode, and of the entries of
Q_sim - Q_ode and R_sim - R_ode; their log-log slopes against d (-1/2); at d_max the plateau
height (the mean of eps over `plateau`) and the escape time (the first alpha after the
plateau where eps < height / 4) of the runs against the ODE's; the same eps gap for the ODE
without its eta^2 term (a control: the noise term is needed).
"""

R0 = (0.05 * np.array([[1.0, 0.5], [0.6, 1.2]])).tolist()


class OnlineSgdOdeParams(Params):
    dims: Dims = Field((250, 500, 1000, 2000), description="input dimensions d")
    replicas: int = Field(8, ge=1, description="independent runs per d")
    eta: float = Field(1.0, gt=0, description="committee learning rate eta_w")
    alpha_max: float = Field(80.0, gt=0, description="alpha = steps / d at the end")
    r0: list[list[float]] = Field(R0, description="R_0 (K x M) of the start")
    q0: float = Field(0.0025, gt=0, description="|w_k|^2 orthogonal to the teachers at t = 0")
    plateau: tuple[float, float] = Field((10.0, 25.0), description="alpha window of the plateau")
    slope_tolerance: float = Field(0.2, gt=0, lt=0.5, description="|slope + 1/2| <= this")
    plateau_tolerance: float = Field(0.05, gt=0, description="|height_sim/height_ode - 1|")
    escape_tolerance: float = Field(0.15, gt=0, description="|alpha_esc sim/ode - 1| <= this")
    noise_ratio: float = Field(2.0, gt=1, description="gap without eta^2 / gap with >= this")

    def check_config(self, cfg: Config) -> None:
        dyn = cfg.dynamics
        require(
            "online_sgd_ode",
            ("dynamics.kind", "sgd with `sampling: online` (fresh samples: the ODE's setting)",
             dyn.kind == "sgd" and dyn.sampling == "online", dyn.kind),
            ("dynamics.integrator", "euler (SGD)", dyn.integrator == "euler", dyn.integrator),
            ("model.activation", "erf", cfg.model.activation == "erf", cfg.model.activation),
            ("model.activation_scale", "1/sqrt 2 (the committee machines' g)",
             abs(cfg.model.activation_scale - S) < 1e-12, cfg.model.activation_scale),
            ("model.scaling", "mean_field", cfg.model.scaling == "mean_field",
             cfg.model.scaling),
            ("model.bias", "false", not cfg.model.bias, cfg.model.bias),
            ("model.trainable", "[w] (v fixed: the ODE of Saad and Solla)",
             cfg.model.train_output and cfg.model.trainable == ["w"], cfg.model.trainable),
            ("data.population.method", "closed_form (eps_g exactly)",
             cfg.data.population is not None and cfg.data.population.method == "closed_form",
             cfg.data.population),
            ("experiment.params.r0", f"a {K} x {M} matrix",
             np.shape(self.r0) == (K, M), self.r0),
            ("experiment.params.plateau", "0 <= start < end <= alpha_max",
             0 <= self.plateau[0] < self.plateau[1] <= self.alpha_max, self.plateau),
        )  # fmt: skip


def _start(d: int, seed: int, r0, q0: float) -> tuple[np.ndarray, np.ndarray]:
    """(w (K, d), w* (M, d)): teacher rows orthonormal (T = I) and student rows
    w_k = sum_n R0_kn w*_n + sqrt(q0) u_k (u_k orthonormal, orthogonal to the teachers), so
    R = R0 and Q = R0 R0^T + q0 I at every d; the directions are random."""
    basis = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, M + K)))[0].T
    w_star = basis[:M]
    return np.asarray(r0) @ w_star + math.sqrt(q0) * basis[M:], w_star


def _name(d: int, r: int) -> str:
    return f"d{d}-r{r}"


def plan(s: Study[OnlineSgdOdeParams]) -> dict[str, Run]:
    p, cfg, runs = s.params, s.config, {}
    for d in p.dims:
        dt = p.eta / (K * d)  # eta_w = K d dt at s = 1/sqrt 2
        steps = int(round(p.alpha_max * d))
        for r in range(p.replicas):
            seed = cfg.seed + 1000 * r + d
            w, w_star = _start(d, seed, p.r0, p.q0)
            name = _name(d, r)
            change = {
                "model.width": K,
                "model.init.path": str(s.input_file(f"init-{name}", w=w, a=np.full(K, K))),
                "data.teacher": {"path": str(s.input_file(f"teacher-{name}", w=w_star,
                                                          a=np.full(M, M)))},
                "data.population.dim": d, "dynamics.dt": dt, "dynamics.steps": steps,
                "record.every": max(d // 4, 1), "record.overlaps": True, "seed": seed,
            }  # fmt: skip
            runs[name] = Run(s.sub_config(name, change), figures=False)
    return runs


def _series(run, d: int) -> dict[str, np.ndarray]:
    m = run.metrics
    return {
        "alpha": np.asarray(m["step"], float) / d,
        "eps": np.asarray(m["loss"], float),
        "Q": np.stack([m["Q_1_1"], m["Q_1_2"], m["Q_2_2"]], -1).astype(float),
        "R": np.stack([m["R_1_1"], m["R_1_2"], m["R_2_1"], m["R_2_2"]], -1).astype(float),
    }


def _ode(p: OnlineSgdOdeParams, alphas, batch: int, noise: bool = True):
    """eps_g, Q (entries 11, 12, 22) and R (11, 12, 21, 22) of the ODE at ``alphas``."""
    from ..committee import OnlineSGDODE, OrderParameters

    r0 = np.asarray(p.r0)
    one = np.ones(K)  # v = a / K with a = K; the teacher's alpha_n a_n = (1/M) M
    op0 = OrderParameters(r0 @ r0.T + p.q0 * np.eye(K), r0, np.eye(M), one, np.ones(M))
    traj = OnlineSGDODE(p.eta, 0.0, batch, False, sgd_noise=noise).solve(op0, alphas)
    q = np.asarray(traj.Q)
    return {
        "alpha": np.asarray(alphas, float),
        "eps": np.asarray(traj.eps_g),
        "Q": np.stack([q[:, 0, 0], q[:, 0, 1], q[:, 1, 1]], -1),
        "R": np.asarray(traj.R).reshape(len(q), -1),
    }


def _escape(alpha, eps, plateau) -> tuple[float, float]:
    """(plateau height: mean eps over the window; the first alpha after it with eps <
    height / 4, nan if never)."""
    inside = (alpha >= plateau[0]) & (alpha <= plateau[1])
    height = float(np.mean(eps[inside]))
    after = np.nonzero((alpha > plateau[1]) & (eps < height / 4))[0]
    return height, float(alpha[after[0]]) if after.size else float("nan")


def analyze(s: Study[OnlineSgdOdeParams], runs) -> dict:
    p = s.params
    batch = int(s.config.dynamics.batch_size)
    first = _series(runs[_name(p.dims[0], 0)], p.dims[0])
    out: dict = {"dims": list(p.dims), "gap_eps": [], "gap_Q": [], "gap_R": [],
                 "gap_eps_no_noise": []}  # fmt: skip
    curves = {}
    for d in p.dims:
        series = [_series(runs[_name(d, r)], d) for r in range(p.replicas)]
        alpha = series[0]["alpha"]
        ode = _ode(p, alpha, batch)
        bare = _ode(p, alpha, batch, noise=False)
        eps = np.stack([x["eps"] for x in series])
        out["gap_eps"].append(float(np.sqrt(np.mean((eps - ode["eps"]) ** 2))))
        out["gap_Q"].append(float(np.sqrt(np.mean([(x["Q"] - ode["Q"]) ** 2 for x in series]))))
        out["gap_R"].append(float(np.sqrt(np.mean([(x["R"] - ode["R"]) ** 2 for x in series]))))
        out["gap_eps_no_noise"].append(float(np.sqrt(np.mean((eps - bare["eps"]) ** 2))))
        curves[d] = {"alpha": alpha, "eps": eps, "ode": ode["eps"], "bare": bare["eps"]}
    for key in ("eps", "Q", "R"):
        fit = loglog_fit(p.dims, out[f"gap_{key}"])
        out[f"slope_{key}"], out[f"slope_{key}_fit"] = fit.slope, fit.as_dict()
    top = curves[p.dims[-1]]
    ode_height, ode_escape = _escape(top["alpha"], top["ode"], p.plateau)
    sims = [_escape(top["alpha"], e, p.plateau) for e in top["eps"]]
    out["plateau_ode"], out["escape_ode"] = ode_height, ode_escape
    out["plateau_sim"] = float(np.mean([h for h, _ in sims]))
    out["escape_sim"] = float(np.mean([a for _, a in sims]))
    out["plateau_ratio"] = out["plateau_sim"] / ode_height
    out["escape_ratio"] = out["escape_sim"] / ode_escape
    out["noise_term_ratio"] = out["gap_eps_no_noise"][-1] / out["gap_eps"][-1]
    out["eps_start"] = float(first["eps"][0])
    out["_curves"] = curves
    return out


def evaluate(s: Study[OnlineSgdOdeParams], stats: dict) -> dict:
    p, out = s.params, {}
    for key in ("eps", "Q", "R"):
        slope = stats[f"slope_{key}"]
        out[f"gap_slope_{key}"] = check(
            slope, f"|slope of log RMS(sim - ODE) of {key} vs log d + 1/2| <= "
            f"{p.slope_tolerance:g}", bool(abs(slope + 0.5) <= p.slope_tolerance))  # fmt: skip
    ratio = stats["plateau_ratio"]
    out["plateau_height"] = check(
        ratio, f"|plateau height sim / ODE - 1| <= {p.plateau_tolerance:g} at d_max",
        bool(abs(ratio - 1) <= p.plateau_tolerance))  # fmt: skip
    esc = stats["escape_ratio"]
    out["plateau_escape"] = check(
        esc, f"|escape alpha sim / ODE - 1| <= {p.escape_tolerance:g} at d_max",
        bool(np.isfinite(esc) and abs(esc - 1) <= p.escape_tolerance))  # fmt: skip
    nr = stats["noise_term_ratio"]
    out["noise_term_needed"] = check(
        nr, f"gap to the ODE without its eta^2 term / gap to the ODE >= {p.noise_ratio:g} "
        "at d_max", bool(nr >= p.noise_ratio))  # fmt: skip
    return out


def figures(s: Study[OnlineSgdOdeParams], stats: dict, runs) -> list:
    from ..plots import plt, save_figure

    fig, ax = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    dims = stats["dims"]
    colors = plt.cm.viridis(np.linspace(0.1, 0.85, len(dims)))
    for d, c in zip(dims, colors, strict=True):
        cur = stats["_curves"][d]
        for i, e in enumerate(cur["eps"]):
            ax[0].semilogy(cur["alpha"], e, color=c, lw=0.8, alpha=0.7,
                           label=f"mfnn, d = {d}" if i == 0 else None)  # fmt: skip
    top = stats["_curves"][dims[-1]]
    ax[0].semilogy(top["alpha"], top["ode"], "k--", lw=1.5, label="ODE (Saad-Solla)")
    ax[0].semilogy(top["alpha"], top["bare"], ":", color="#c0392b", label="ODE without eta^2")
    ax[0].axvspan(*s.params.plateau, color="0.9", zorder=0)
    ax[0].set(
        xlabel="alpha = steps / d",
        ylabel="generalisation error eps_g",
        title="online SGD, K = M = 2",
    )
    ax[0].legend(fontsize=7)
    d = np.asarray(dims)
    for key, mark in (("eps", "o-"), ("Q", "s-"), ("R", "^-")):
        ax[1].loglog(d, stats[f"gap_{key}"], mark,
                     label=f"{key}: slope {stats[f'slope_{key}']:.2f}")  # fmt: skip
    ax[1].set(xlabel="input dimension d", ylabel="RMS(simulation - ODE)", title="gap to the ODE")
    ax[1].legend(fontsize=8)
    fig.suptitle(
        "online SGD of a soft committee machine follows the Saad-Solla ODE, plateau and "
        "escape included, with a gap O(d^-1/2)"
    )
    return [save_figure(fig, s.figure_path("online_sgd_ode.png"))]


ONLINE_SGD_ODE = Experiment(
    name="online_sgd_ode",
    summary="online SGD of a soft committee machine follows the Saad-Solla order-parameter "
    "ODE, plateau and escape included, with a gap O(d^-1/2)",
    claim=CLAIM,
    params=OnlineSgdOdeParams,
    quick=(
        "experiment.params.dims=[200, 400, 800]",
        "experiment.params.replicas=4",
        "experiment.params.alpha_max=65",
        "experiment.params.escape_tolerance=0.25",
        "experiment.params.plateau_tolerance=0.1",
        "experiment.params.slope_tolerance=0.3",
    ),
    checks=(
        CheckSpec(
            "gap_slope_*",
            "|slope of log RMS(sim - ODE) vs log d + 1/2| <= slope_tolerance (eps_g, Q, R)",
        ),
        CheckSpec("plateau_height", "|plateau height sim / ODE - 1| <= plateau_tolerance"),
        CheckSpec("plateau_escape", "|escape alpha sim / ODE - 1| <= escape_tolerance"),
        CheckSpec("noise_term_needed", "gap without the eta^2 term / gap >= noise_ratio"),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
