"""`global_convergence`: over-parameterized students reach the teacher (Chizat-Bach 2018)."""

from __future__ import annotations

from typing import Annotated

import matplotlib.pyplot as plt
import numpy as np
from annotated_types import Ge
from pydantic import Field, model_validator

from ..config import Config
from ..diagnostics.teacher import sphere_w2
from ..plots import log_curves, save_figure
from ..study import CheckSpec, Experiment, Params, Run, Study, check
from .common import require

CLAIM = """\
H. Yang's overview "Mean-field analysis of neural networks", Theorems 3.4-3.5, after
Chizat and Bach 2018 ("On the global convergence of gradient descent for over-parameterized
models using optimal transport", Theorem 3.3) and Rotskoff and Vanden-Eijnden ("Trainability
and accuracy of neural networks: an interacting particle system approach", Propositions
3.4-3.5): under technical assumptions, if the mean-field gradient flow of a two-layer network
started from a full-support law converges, its limit is a global minimizer, and the
m-particle flow follows it as m -> infinity; so wide students reach the global minimum,
while a student with as many neurons as the teacher (m = k) need not. Those results train
the output weights; here they are fixed to 1 (the network of "Mean field models for neural
networks in teacher-student setting", eq. 1), a model the theorems do not literally cover.

Setup: exact population risk, x ~ N(0, I_d), f = (1/m) sum_j relu(w_j . x), teacher
f* = sum_i alpha_i relu(c_i . x) (k unit c_i from teacher_seed, alpha_i ~ i), widths
m = factor * k from a full-support w ~ `model.init.w`, m = k from narrow_seeds starts; Euler.

Statistic: L(T) / L(0) per run. Reported: the student's W2 to the teacher on the unit sphere,
output weights as mass (`mfnn.diagnostics.sphere_w2`; relu is 1-homogeneous).
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
        require(
            "global_convergence",
            ("data.population`, `model.activation`, `model.bias", "set, relu, false",
             got == (True, "relu", False), got),
        )  # fmt: skip


def teacher_atoms(k: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k unit directions (rows) from a seeded Gaussian, and alpha_i = i / sum(1..k)."""
    c = np.random.default_rng(seed).standard_normal((k, d))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    alpha = np.arange(1, k + 1, dtype=float)
    return c, alpha / alpha.sum()


def plan(s: Study[GlobalConvergenceParams]) -> dict[str, Run]:
    p = s.params
    c, alpha = teacher_atoms(p.k, s.config.data.population.dim, p.teacher_seed)
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
    t = next(iter(runs.values())).config.data.teacher  # every run has the planned teacher
    c, alpha, per_run, curves = np.asarray(t.w), np.asarray(t.alpha), {}, {}
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
    teacher = {"c": c.tolist(), "alpha": alpha.tolist()}
    return {"teacher": teacher, "runs": per_run, "_curves": curves}


def evaluate(s: Study[GlobalConvergenceParams], stats: dict) -> dict:
    p, runs = s.params, stats["runs"].values()
    worst = max(r["loss_ratio"] for r in runs if r["width"] >= p.overparameterized * p.k)
    narrow = [r["loss_ratio"] <= p.tolerance for r in runs if r["width"] == p.k]
    frac = float(np.mean(narrow))
    over = f"max over m >= {p.overparameterized} k of L(T) / L(0) <= {p.tolerance:g}"
    few = f"fraction of the {len(narrow)} m = k runs with L(T) / L(0) <= {p.tolerance:g} is < 1"
    return {
        "overparameterized_reach_zero": check(worst, over, worst <= p.tolerance),
        "narrow_need_not": check(frac, few, frac < 1),
    }


def figures(s: Study[GlobalConvergenceParams], stats: dict, runs) -> list:
    """L(t) / L(0) of every run (named m<width>[_s<seed>]), with the tolerance."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    curves = {
        f"{k}: W2 on the sphere {r['w2_sphere']:.2f}": stats["_curves"][k]
        for k, r in stats["runs"].items()
    }
    log_curves(ax, curves, level=s.params.tolerance, xlabel="t", title="L(t) / L(0)")
    return [save_figure(fig, s.figure_path("global_convergence.png"))]


GLOBAL_CONVERGENCE = Experiment(
    name="global_convergence",
    summary="wide ReLU students reach zero loss, m = k need not (Chizat-Bach 2018, Thm 3.3)",
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
