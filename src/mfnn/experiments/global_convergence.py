"""`global_convergence`: over-parameterized students reach the teacher (seed 001 Thm 3.4-3.5)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..config import Config, dump  # noqa: E402
from ..diagnostics import wasserstein2  # noqa: E402
from ..errors import ConfigError  # noqa: E402
from ..plots import save_figure  # noqa: E402
from ..rundir import (  # noqa: E402
    atomic_write_text,
    check,
    list_snapshots,
    read_metrics,
    run_dir_status,
)
from ..runs import execute  # noqa: E402
from .base import (  # noqa: E402
    Experiment,
    experiment_params,
    write_summary,
)

CLAIM = """\
Seed 001, Theorems 3.4-3.5: if the mean-field gradient flow of a two-layer network
started from a full-support law converges, its limit is a global minimizer; so wide
(over-parameterized) students trained by gradient descent reach the global minimum,
while a student with as many neurons as the teacher (m = k) need not.
Setup (seed 002's network, eq. 1): exact population risk (closed form), x ~ N(0, I_d),
d = 5, f = (1/m) sum_j relu(w_j . x) (no bias, output weights fixed to 1); teacher
f* = sum_i alpha_i relu(c_i . x) with k = 6 unit directions c_i drawn from
experiment.params.teacher_seed and alpha_i proportional to i; students of widths
m = factor * k (experiment.params.width_factors) with w ~ N(0, 0.45^2 I) (every direction
present); m = k is run from experiment.params.narrow_seeds initializations (seeds
seed, seed + 1, ...); Euler dt = 0.5 up to t = steps * dt.

Statistic: L(T) / L(0), the final over the initial population risk, per run.
W2 (reported, not checked): the measures are compared on the unit sphere with the output
weights as MASS: a student neuron (a_j, w_j) with a_j > 0 (here a_j = 1) is the point
w_j/|w_j| with mass a_j |w_j| / m, the teacher atom i the point c_i/|c_i| with mass
alpha_i |c_i|; both normalized to probability measures (relu(w.x) is 1-homogeneous, so
only this projection is identifiable); mass on a_j < 0 is `negative_mass_fraction`.

Checks (summary.json):
- overparameterized_reach_zero: L(T) / L(0) <= tolerance (1e-3) for every m >= 32 k;
- narrow_need_not: the fraction of the m = k runs with L(T) / L(0) <= tolerance is < 1
  (at least one narrow student stays at a non-global stationary point).
"""

DEFAULTS = {
    "k": 6,
    "teacher_seed": 1,
    "width_factors": [1, 4, 32, 128],
    "overparameterized": 32,
    "tolerance": 1e-3,
    "narrow_seeds": 4,
}


def _params(cfg: Config) -> dict[str, Any]:
    p = experiment_params(cfg, "global_convergence", DEFAULTS)
    for key in ("k", "overparameterized", "narrow_seeds"):
        if not isinstance(p[key], int) or p[key] < 1:
            raise ConfigError(
                f"`experiment.params.{key}` must be a positive integer; got {p[key]!r}."
            )
    wf = p["width_factors"]
    if not (isinstance(wf, list) and wf and all(isinstance(f, int) and f >= 1 for f in wf)):
        raise ConfigError(
            f"`experiment.params.width_factors` must be a list of positive integers; got {wf!r}."
        )
    if 1 not in wf or max(wf) < p["overparameterized"]:
        raise ConfigError(
            "`experiment.params.width_factors` must contain 1 (m = k) and a factor >= "
            f"`overparameterized` ({p['overparameterized']}); got {wf!r}."
        )
    if not (isinstance(p["tolerance"], int | float) and 0 < p["tolerance"] < 1):
        raise ConfigError(
            f"`experiment.params.tolerance` must be in (0, 1); got {p['tolerance']!r}."
        )
    if cfg.data.population is None or cfg.model.activation != "relu" or cfg.model.bias:
        raise ConfigError(
            "global_convergence needs `data.population` and a relu student without bias."
        )
    return p


def teacher_atoms(k: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k unit directions (rows) from a seeded Gaussian, and alpha_i = i / sum(1..k)."""
    c = np.random.default_rng(seed).standard_normal((k, d))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    alpha = np.arange(1, k + 1, dtype=float)
    return c, alpha / alpha.sum()


def sphere_w2(theta: np.ndarray, c: np.ndarray, alpha: np.ndarray) -> tuple[float, float]:
    """W2 on the sphere with output weights as mass (see CLAIM) and the negative mass."""
    a, w = theta[:, 0], theta[:, 1:]
    norm = np.linalg.norm(w, axis=1)
    mass = np.abs(a) * norm
    pos = (a > 0) & (norm > 0)
    total = mass.sum()
    neg = float(mass[~pos].sum() / total) if total > 0 else 0.0
    if not pos.any():
        return float("nan"), neg
    p = mass[pos] / mass[pos].sum()
    cn = np.linalg.norm(c, axis=1)
    q = alpha * cn / (alpha * cn).sum()
    return wasserstein2(w[pos] / norm[pos, None], p, c / cn[:, None], q), neg


def _figure(out: Path, res: dict, tol: float) -> list[Path]:
    fig_dir = out / "figures"
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    for name, r in res.items():
        t, loss = r["metrics"]["t"], r["metrics"]["loss"]
        ax[0].semilogy(t, np.maximum(loss / loss[0], 1e-18), label=name)
        ax[1].loglog(r["m"], max(r["ratio"], 1e-18), "o", color="#c0392b")
        ax[2].semilogx(r["m"], r["w2"], "o", color="#2471a3")
    ax[0].axhline(tol, color="k", ls="--", lw=0.8)
    ax[0].set(xlabel="t", ylabel="L(t) / L(0)", title="population loss")
    ax[0].legend(fontsize=7)
    ax[1].axhline(tol, color="k", ls="--", lw=0.8, label=f"tolerance {tol:g}")
    ax[1].set(xlabel="width m", ylabel="L(T) / L(0)", title="final loss against width")
    ax[1].legend()
    ax[2].set(xlabel="width m", ylabel="W2 on the sphere", title="student vs teacher (mass)")
    fig.tight_layout()
    return [save_figure(fig, fig_dir / "global_convergence.png")]


def run_global_convergence(
    cfg: Config, out: Path, *, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    t0 = time.perf_counter()
    p = _params(cfg)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump(cfg))
    d = cfg.data.population.dim
    c, alpha = teacher_atoms(p["k"], d, p["teacher_seed"])
    res, statuses, runs_summary = {}, {}, {}
    plan = []  # (name, width, seed)
    for factor in sorted(p["width_factors"]):
        m = factor * p["k"]
        seeds = range(p["narrow_seeds"]) if factor == 1 else range(1)
        plan += [(f"m{m}" + (f"_s{i}" if factor == 1 else ""), m, cfg.seed + i) for i in seeds]
    for name, m, seed in plan:
        sub = cfg.model_copy(deep=True)
        sub.name = f"{cfg.name or 'global_convergence'}-{name}"
        sub.seed = seed
        sub.model.width = m
        sub.data.teacher.path = None
        sub.data.teacher.w = c.tolist()
        sub.data.teacher.alpha = alpha.tolist()
        sub.experiment.params = {}
        run_dir = out / "runs" / name
        if resume and run_dir_status(run_dir, sub) == "completed":
            summary = json.loads((run_dir / "summary.json").read_text())
        else:
            _, _, summary = execute(sub, run_dir, resume=resume, progress=progress, label=name)
        statuses[name] = summary["status"]
        metrics = read_metrics(run_dir)
        snaps = list_snapshots(run_dir)
        z = np.load(snaps[max(snaps)])
        w = z["w"]
        a = z["a"] if "a" in z else np.ones(w.shape[0])
        theta = np.concatenate([a[:, None], w], axis=1)
        ratio = float(metrics["loss"][-1] / metrics["loss"][0])
        w2, neg = sphere_w2(theta, c, alpha)
        res[name] = {"m": m, "metrics": metrics, "ratio": ratio, "w2": w2, "neg": neg}
        runs_summary[name] = {
            k: summary.get(k) for k in ("status", "final_loss", "final_t", "message")
        } | {
            "width": m,
            "seed": seed,
            "loss_ratio": ratio,
            "w2_sphere": w2,
            "negative_mass_fraction": neg,
        }

    k, tol = p["k"], p["tolerance"]
    over = [r["ratio"] for r in res.values() if r["m"] >= p["overparameterized"] * k]
    narrow = [r["ratio"] for r in res.values() if r["m"] == k]
    worst = max(over)
    checks = {
        "overparameterized_reach_zero": check(
            worst,
            f"max over m >= {p['overparameterized']} k of L(T) / L(0) <= {tol:g}",
            worst <= tol,
        ),
    }
    frac = float(np.mean([r <= tol for r in narrow]))
    checks["narrow_need_not"] = check(
        frac,
        f"fraction of the {len(narrow)} m = k runs with L(T) / L(0) <= {tol:g} is < 1",
        frac < 1,
    )
    figures = _figure(out, res, tol)
    return write_summary(
        out,
        "global_convergence",
        statuses,
        checks,
        figures,
        CLAIM,
        t0,
        final_loss=min(float(r["metrics"]["loss"][-1]) for r in res.values()),
        teacher={"c": c.tolist(), "alpha": alpha.tolist()},
        runs=runs_summary,
    )


GLOBAL_CONVERGENCE = Experiment(
    name="global_convergence",
    summary="over-parameterized ReLU students reach zero population loss, m = k need not "
    "(seed 001 Thm 3.4-3.5)",
    claim=CLAIM,
    quick=(
        "experiment.params.width_factors=[1, 32]",
        "experiment.params.narrow_seeds=2",
        "dynamics.steps=4000",
        "record.every=100",
    ),
    runner=run_global_convergence,
)
