"""`global_convergence`: over-parameterized students reach the teacher (Chizat-Bach 2018)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from annotated_types import Ge
from pydantic import Field, model_validator

from ..config import Config
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

Where a stuck student stops (`mfnn.diagnostics.hessian`): the m = k students run
narrow_steps steps, long enough to come to rest, and at their final particles the
eigenvalues of s H (H the Hessian of the risk in the k d particle coordinates, s = m: the
rates of the linearised flow) and the stationarity |v|_rms / (max|lambda| |theta|_rms)
classify the point. A stuck student (L(T)/L(0) > tolerance) at rest (stationarity <=
hessian_stationarity) with lambda_min(s H) > hessian_rtol max|lambda| sits at a strict,
spurious local minimum, as Safran and Shamir 2018 ("Spurious local minima are common in
two-layer ReLU neural networks", ICML) found for this network (output weights 1, Gaussian
inputs, k = m); one with lambda_min < -hessian_rtol max|lambda| at rest would be at a
saddle, which a gradient flow from a random start almost surely does not converge to
(Lee, Panageas, Piliouras, Simchowitz, Jordan and Recht 2019, "First-order methods almost
always avoid strict saddle points", Math. Programming 176). Starts that pass near a
saddle and leave it later are "not stationary" at T and count as neither.
"""


NARROW_IDENTITY = (
    "the m = k runs continue for narrow_steps steps, until they are at rest, for the Hessian "
    "test: one that reaches zero loss then sits at float64 round-off (L/L(0) ~ 1e-16) for "
    "most of its records, where the dissipation is round-off and the relative residual 0/0 "
    "(measured median 0.13-0.23 at t = 8000 for starts that converge by t = 4000, 1.0 at "
    "t = 20000, against <= 1e-3 while the loss falls); the identity counts on the wide runs"
)


class GlobalConvergenceParams(Params):
    k: int = Field(6, ge=1, description="teacher neurons (unit directions from teacher_seed)")
    teacher_seed: int = Field(1, description="RNG seed of the teacher's directions")
    width_factors: tuple[Annotated[int, Ge(1)], ...] = Field(
        (1, 4, 32, 128), min_length=1, description="student widths m = factor * k"
    )
    overparameterized: int = Field(32, ge=1, description="widths m >= this * k must reach 0")
    tolerance: float = Field(1e-3, gt=0, lt=1, description='"zero loss": L(T)/L(0) <= this')
    narrow_seeds: int = Field(4, ge=1, description="initializations of the m = k student")
    narrow_steps: int | None = Field(
        40000,
        ge=1,
        description="steps of the m = k students (None: dynamics.steps): long enough that a "
        "stuck one is at rest for the Hessian test",
    )
    hessian_stationarity: float = Field(
        1e-6, gt=0, description="at rest: |v|_rms / (max|lambda| |theta|_rms) <= this"
    )
    hessian_rtol: float = Field(
        1e-6, gt=0, description="eigenvalues of s H within this x max|lambda| of 0 are zero"
    )

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
            if factor == 1 and p.narrow_steps is not None:
                changes["dynamics.steps"] = p.narrow_steps
            out[name] = Run(s.sub_config(name, changes))
    return out


def analyze(s: Study[GlobalConvergenceParams], runs) -> dict:
    from ..diagnostics.teacher import sphere_w2

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
        if r.config.model.width == s.params.k:  # the m = k students: where do they stop?
            per_run[name]["hessian"] = _hessian_stats(s.params, r)
    teacher = {"c": c.tolist(), "alpha": alpha.tolist()}
    return {"teacher": teacher, "runs": per_run, "_curves": curves}


def _hessian_stats(p: GlobalConvergenceParams, r) -> dict:
    """The second-order test at a sub-run's final particles (N = m d, dense)."""
    from ..diagnostics.hessian import particle_hessian

    rep = particle_hessian(
        r.built.dynamics.exact(),
        r.particles("last"),
        k=3,
        method="dense",
        rtol=p.hessian_rtol,
        grad_rtol=p.hessian_stationarity,
    )
    return {
        "verdict": rep.verdict,
        "lambda_min": float(rep.smallest[0]),
        "lambda_max": float(rep.largest[0]),
        "smallest": [float(v) for v in rep.smallest],
        "n_negative": rep.n_negative,
        "stationarity": rep.stationarity,
        "velocity_rms": rep.velocity_rms,
        "n": rep.n,
        "wall_s": rep.wall_s,
    }


def _verdict(p: GlobalConvergenceParams, h: dict) -> str:
    """The verdict of `mfnn.diagnostics.hessian.classify` from the stored numbers."""
    from ..diagnostics.hessian import classify

    tol = p.hessian_rtol * max(abs(h["lambda_min"]), abs(h["lambda_max"]))
    return classify(
        h["lambda_min"],
        h["lambda_max"],
        h["stationarity"],
        tol=tol,
        grad_rtol=p.hessian_stationarity,
    )


def evaluate(s: Study[GlobalConvergenceParams], stats: dict) -> dict:
    p, runs = s.params, stats["runs"].values()
    worst = max(r["loss_ratio"] for r in runs if r["width"] >= p.overparameterized * p.k)
    narrow = [r["loss_ratio"] <= p.tolerance for r in runs if r["width"] == p.k]
    frac = float(np.mean(narrow))
    over = f"max over m >= {p.overparameterized} k of L(T) / L(0) <= {p.tolerance:g}"
    few = f"fraction of the {len(narrow)} m = k runs with L(T) / L(0) <= {p.tolerance:g} is < 1"
    stuck = [
        _verdict(p, r["hessian"])
        for r in runs
        if r["width"] == p.k and r["loss_ratio"] > p.tolerance
    ]
    minima = sum(v == "minimum" for v in stuck)
    saddles = sum(v in ("saddle", "maximum") for v in stuck)
    of = f"number of the {len(stuck)} stuck m = k runs (L(T) / L(0) > {p.tolerance:g})"
    rest = f"stationarity <= {p.hessian_stationarity:g}, lambda_min(s H)"
    spurious = f"{of} at a strict local minimum ({rest} > {p.hessian_rtol:g} max|lambda|) >= 1"
    no_saddle = f"{of} at a saddle ({rest} < -{p.hessian_rtol:g} max|lambda|) == 0"
    return {
        "overparameterized_reach_zero": check(worst, over, worst <= p.tolerance),
        "narrow_need_not": check(frac, few, frac < 1),
        "stuck_narrow_spurious_minimum": check(minima, spurious, minima >= 1),
        "stuck_narrow_no_saddle": check(saddles, no_saddle, saddles == 0),
    }


def figures(s: Study[GlobalConvergenceParams], stats: dict, runs) -> list:
    """L(t) / L(0) of every run (named m<width>[_s<seed>]), with the tolerance."""
    from ..plots import log_curves, plt, save_figure

    fig, ax = plt.subplots(figsize=(6.5, 4.8), layout="constrained")
    curves = {
        f"{k}: W2 on the sphere {r['w2_sphere']:.2f}"
        + (f", {r['hessian']['verdict']}" if "hessian" in r else ""): stats["_curves"][k]
        for k, r in stats["runs"].items()
    }
    log_curves(
        ax,
        curves,
        level=s.params.tolerance,
        xlabel="t",
        ylabel="population risk L(t) / L(0)",
        title=f"L(t) / L(0) (dotted: tolerance {s.params.tolerance:g})",
    )
    fig.suptitle("wide students reach zero loss; students as narrow as the teacher need not")
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
        CheckSpec(
            "stuck_narrow_spurious_minimum",
            "at least one m = k run above the tolerance ends at rest (stationarity <= "
            "hessian_stationarity, 1e-6) at a strict local minimum: lambda_min(s H) > "
            "hessian_rtol (1e-6) x max|lambda|",
        ),
        CheckSpec(
            "stuck_narrow_no_saddle",
            "no m = k run above the tolerance ends at rest at a saddle (lambda_min(s H) < "
            "-hessian_rtol x max|lambda|)",
        ),
        CheckSpec(
            "*_s*/energy_identity",
            "each m = k run: median over records of |energy_rel_residual| <= 0.1",
            informational=NARROW_IDENTITY,
        ),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
