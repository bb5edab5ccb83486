"""`global_convergence`: over-parameterized students reach the teacher (Chizat-Bach 2018)."""

from __future__ import annotations

from typing import Annotated

import matplotlib.pyplot as plt
import numpy as np
from annotated_types import Ge
from pydantic import Field, model_validator

from ..config import Config
from ..diagnostics import wasserstein2
from ..errors import ConfigError
from ..plots import save_figure
from ..study import CheckSpec, Experiment, Params, Run, Study, check

CLAIM = """\
H. Yang's overview "Mean-field analysis of neural networks", Theorems 3.4-3.5, after
Chizat and Bach 2018 ("On the global convergence of gradient descent for over-parameterized
models using optimal transport", Theorem 3.3) and Rotskoff and Vanden-Eijnden ("Trainability
and accuracy of neural networks: an interacting particle system approach", Propositions
3.4-3.5): under technical assumptions, if the mean-field gradient flow of a two-layer network
started from a full-support law converges, its limit is a global minimizer, and the
m-particle flow follows it as m -> infinity; so wide (over-parameterized) students trained by
gradient descent reach the global minimum, while a student with as many neurons as the
teacher (m = k) need not. Those results train the output weights; here they are fixed to 1
(the network of "Mean field models for neural networks in teacher-student setting", eq. 1),
so the experiment tests the conclusion on a model the theorems do not literally cover.

Setup: exact population risk (closed form), x ~ N(0, I_d), f = (1/m) sum_j relu(w_j . x)
(no bias, output weights fixed to 1); teacher f* = sum_i alpha_i relu(c_i . x) with k unit
directions c_i drawn from teacher_seed and alpha_i proportional to i; students of widths
m = factor * k (width_factors), w ~ `model.init.w` (every direction present); m = k from
narrow_seeds initializations (seeds seed, seed + 1, ...); Euler up to t = steps * dt.

Statistic: L(T) / L(0), the final over the initial population risk, per run.
Reported: W2 on the unit sphere with the output weights as mass (relu(w . x) is
1-homogeneous, so only this projection is identifiable): a neuron (a_j, w_j) with a_j > 0 is
the point w_j/|w_j| with mass a_j |w_j| / m, the teacher atom i the point c_i/|c_i| with mass
alpha_i |c_i|, both normalized; mass on a_j <= 0 is `negative_mass_fraction`.

Checks: overparameterized_reach_zero: L(T) / L(0) <= tolerance for every m >= overparameterized
* k; narrow_need_not: the fraction of the m = k runs with L(T) / L(0) <= tolerance is < 1 (at
least one narrow student stays at a non-global stationary point).
"""


class GlobalConvergenceParams(Params):
    k: int = Field(6, ge=1, description="teacher neurons (unit directions from teacher_seed)")
    teacher_seed: int = Field(1, description="RNG seed of the teacher's directions")
    width_factors: tuple[Annotated[int, Ge(1)], ...] = Field(
        (1, 4, 32, 128), min_length=1, description="student widths m = factor * k"
    )
    overparameterized: int = Field(32, ge=1, description="widths m >= this * k must reach 0")
    tolerance: float = Field(1e-3, gt=0, lt=1, description='"zero loss": L(T)/L(0) <= this')
    narrow_seeds: int = Field(4, ge=1, description="initializations of the m = k student")

    @model_validator(mode="after")
    def _widths(self):
        if 1 not in self.width_factors or max(self.width_factors) < self.overparameterized:
            raise ValueError(
                "`experiment.params.width_factors` must contain 1 (m = k) and a factor >= "
                f"`overparameterized` ({self.overparameterized}); got {list(self.width_factors)}"
            )
        return self

    def check_config(self, cfg: Config) -> None:
        got = (cfg.data.population is not None, cfg.model.activation, cfg.model.bias)
        if got != (True, "relu", False):
            raise ConfigError(
                "global_convergence needs `data.population` set, `model.activation: relu` and "
                f"`model.bias: false`; got (population set, activation, bias) = {got}."
            )


def teacher_atoms(k: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k unit directions (rows) from a seeded Gaussian, and alpha_i = i / sum(1..k)."""
    c = np.random.default_rng(seed).standard_normal((k, d))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    alpha = np.arange(1, k + 1, dtype=float)
    return c, alpha / alpha.sum()


def sphere_w2(theta: np.ndarray, c: np.ndarray, alpha: np.ndarray) -> tuple[float, float]:
    """W2 on the sphere with output weights as mass (see the claim), and the negative mass
    fraction, for particles theta = (a, w) (m, 1 + d) against rho* = sum alpha_i delta_{c_i}."""
    a, w = theta[:, 0], theta[:, 1:]
    norm = np.linalg.norm(w, axis=1)
    mass = np.abs(a) * norm
    pos = (a > 0) & (norm > 0)
    total = mass.sum()
    neg = float(mass[~pos].sum() / total) if total > 0 else 0.0
    if not pos.any():
        return float("nan"), neg
    cn = np.linalg.norm(c, axis=1)
    q = alpha * cn / (alpha * cn).sum()
    return wasserstein2(
        w[pos] / norm[pos, None], mass[pos] / mass[pos].sum(), c / cn[:, None], q
    ), neg


def _teacher(s: Study) -> tuple[np.ndarray, np.ndarray]:
    return teacher_atoms(s.params.k, s.config.data.population.dim, s.params.teacher_seed)


def plan(s: Study[GlobalConvergenceParams]) -> dict[str, Run]:
    p, (c, alpha) = s.params, _teacher(s)
    teacher = {"path": None, "w": c.tolist(), "alpha": alpha.tolist()}
    out = {}
    for factor in sorted(p.width_factors):
        m = factor * p.k
        for i in range(p.narrow_seeds if factor == 1 else 1):
            name = f"m{m}_s{i}" if factor == 1 else f"m{m}"
            changes = {"seed": s.config.seed + i, "model.width": m, "data.teacher": teacher}
            out[name] = Run(s.sub_config(name, changes))
    return out


def analyze(s: Study[GlobalConvergenceParams], runs) -> dict:
    c, alpha = _teacher(s)
    per_run, curves = {}, {}
    for name, r in runs.items():
        theta = r.particles("last")
        if not r.config.model.train_output:  # a == 1: the particle is w
            theta = np.concatenate([np.ones((theta.shape[0], 1)), theta], axis=1)
        w2, neg = sphere_w2(theta, c, alpha)
        loss = r.metrics["loss"]
        per_run[name] = {
            "width": r.config.model.width,
            "seed": r.config.seed,
            "loss_ratio": float(loss[-1] / loss[0]),
            "w2_sphere": w2,
            "negative_mass_fraction": neg,
        }
        curves[name] = (r.metrics["t"], loss / loss[0])
    return {"teacher": {"c": c.tolist(), "alpha": alpha.tolist()}, "runs": per_run} | {
        "_curves": curves
    }


def evaluate(s: Study[GlobalConvergenceParams], stats: dict) -> dict:
    p, runs = s.params, stats["runs"].values()
    worst = max(r["loss_ratio"] for r in runs if r["width"] >= p.overparameterized * p.k)
    frac = float(np.mean([r["loss_ratio"] <= p.tolerance for r in runs if r["width"] == p.k]))
    n_narrow = sum(r["width"] == p.k for r in runs)
    return {
        "overparameterized_reach_zero": check(
            worst,
            f"max over m >= {p.overparameterized} k of L(T) / L(0) <= {p.tolerance:g}",
            worst <= p.tolerance,
        ),
        "narrow_need_not": check(
            frac,
            f"fraction of the {n_narrow} m = k runs with L(T) / L(0) <= {p.tolerance:g} is < 1",
            frac < 1,
        ),
    }


def figures(s: Study[GlobalConvergenceParams], stats: dict, runs) -> list:
    tol = s.params.tolerance
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    for name, r in stats["runs"].items():
        t, ratio = stats["_curves"][name]
        ax[0].semilogy(t, np.maximum(ratio, 1e-18), label=name)
        ax[1].loglog(r["width"], max(r["loss_ratio"], 1e-18), "o", color="#c0392b")
        ax[2].semilogx(r["width"], r["w2_sphere"], "o", color="#2471a3")
    ax[0].axhline(tol, color="k", ls="--", lw=0.8)
    ax[0].set(xlabel="t", ylabel="L(t) / L(0)", title="population loss")
    ax[0].legend(fontsize=7)
    ax[1].axhline(tol, color="k", ls="--", lw=0.8, label=f"tolerance {tol:g}")
    ax[1].set(xlabel="width m", ylabel="L(T) / L(0)", title="final loss against width")
    ax[1].legend()
    ax[2].set(xlabel="width m", ylabel="W2 on the sphere", title="student vs teacher (mass)")
    fig.tight_layout()
    return [save_figure(fig, s.figure_path("global_convergence.png"))]


GLOBAL_CONVERGENCE = Experiment(
    name="global_convergence",
    summary="over-parameterized ReLU students reach zero population loss, m = k need not "
    "(Chizat-Bach 2018, Theorem 3.3)",
    claim=CLAIM,
    params=GlobalConvergenceParams,
    quick=(
        "experiment.params.width_factors=[1, 32]",
        "experiment.params.narrow_seeds=2",
        "dynamics.steps=4000",
        "record.every=100",
    ),
    checks=(
        CheckSpec(
            "overparameterized_reach_zero",
            "max over m >= overparameterized * k of L(T) / L(0) <= tolerance (1e-3)",
        ),
        CheckSpec("narrow_need_not", "fraction of the m = k runs reaching the tolerance < 1"),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
