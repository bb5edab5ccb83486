"""`sign`: mean-field training moves features to the jump of sign(x); ntk does not."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ..study import CheckSpec, Experiment, Params, Run, Study, check

CLAIM = """\
Fitting sign(x) on [-1, 1] with a two-layer ReLU network, mean-field training moves the
ReLU breakpoints -b/w of the neurons that matter towards the jump at 0 (feature
learning), while the neural tangent (ntk) scaling keeps them where they started (lazy
training) and its particles move much less (Chizat, Oyallon and Bach 2019, "On lazy
training in differentiable programming"; Mei, Montanari and Nguyen 2018).

Setup: the same width, data and initial particles in both scalings; gradient descent
(Euler) on the empirical risk.

Statistic: C_r(mu) = the fraction of significant neurons (|a_j w_j| >= s mean_k |a_k w_k|,
s = significance) whose breakpoint satisfies |b_j / w_j| < r (r = radius); the relative
movement |theta(T) - theta(0)|_F / |theta(0)|_F.
"""


class SignParams(Params):
    scalings: tuple[Literal["mean_field", "ntk"], ...] = Field(
        ("mean_field", "ntk"), min_length=1, description="the scalings to train, one run each"
    )
    radius: float = Field(0.25, gt=0, description="r: C_r counts breakpoints with |-b/w| < r")
    significance: float = Field(
        0.1, ge=0, description="s: a neuron is significant when |a w| >= s mean |a w|"
    )


def plan(s: Study[SignParams]) -> dict[str, Run]:
    return {sc: Run(s.sub_config(sc, {"model.scaling": sc})) for sc in s.params.scalings}


def analyze(s: Study[SignParams], runs) -> dict:
    import jax.numpy as jnp

    from ..diagnostics import breakpoint_concentration, breakpoints, relative_movement

    p = s.params
    xs = np.linspace(-1, 1, 801)
    curves, per_run = {}, {}
    for sc, r in runs.items():
        theta0, theta = r.particles("first"), r.particles("last")
        bp0, mass0 = breakpoints(r.model, theta0)
        bp, mass = breakpoints(r.model, theta)
        x = jnp.asarray(xs[:, None], theta.dtype)
        c0 = breakpoint_concentration(r.model, theta0, p.radius, p.significance)
        c = breakpoint_concentration(r.model, theta, p.radius, p.significance)
        curves[sc] = {
            "t": r.snapshot_steps()[-1] * r.dt,
            "f0": np.asarray(r.model.predict(jnp.asarray(theta0), x)),
            "f": np.asarray(r.model.predict(jnp.asarray(theta), x)),
            "bp0": bp0[mass0 >= p.significance * mass0.mean()],
            "bp": bp[mass >= p.significance * mass.mean()],
            "C0": c0,
            "C": c,
            "metrics": r.metrics,
        }
        per_run[sc] = {"C_initial": c0, "C_final": c, "movement": relative_movement(theta, theta0)}
    first = runs.get("mean_field", next(iter(runs.values())))
    return {"final_loss": first.summary.get("final_loss"), "runs": per_run, "_curves": curves}


def evaluate(s: Study[SignParams], stats: dict) -> dict:
    runs, checks = stats["runs"], {}
    if "mean_field" in runs:
        r = runs["mean_field"]
        need = max(2 * r["C_initial"], 0.5)
        checks["mean_field_concentrates"] = check(
            r["C_final"],
            f"C_r(mean_field, T) >= max(2 C_r(0), 0.5) = {need:.3g}",
            r["C_final"] >= need,
        )
    if "ntk" in runs:
        r = runs["ntk"]
        bound = 1.5 * r["C_initial"]
        checks["ntk_does_not_concentrate"] = check(
            r["C_final"], f"C_r(ntk, T) <= 1.5 C_r(0) = {bound:.3g}", r["C_final"] <= bound
        )
    if {"ntk", "mean_field"} <= set(runs):
        ratio = runs["ntk"]["movement"] / max(runs["mean_field"]["movement"], 1e-300)
        checks["ntk_moves_less"] = check(
            ratio, "movement(ntk) / movement(mean_field) <= 0.2", ratio <= 0.2
        )
    return checks


def figures(s: Study[SignParams], stats: dict, runs) -> list:
    from ..plots import sign_figures

    xs = np.linspace(-1, 1, 801)
    return sign_figures(s.out / "figures", stats["_curves"], xs, np.sign(xs), s.params.radius)


SIGN = Experiment(
    name="sign",
    summary="fit sign(x): mean_field moves ReLU breakpoints to the jump, ntk stays lazy",
    claim=CLAIM,
    params=SignParams,
    quick=(
        "model.width=512",
        "data.n_train=256",
        "data.n_test=512",
        "dynamics.steps=3000",
        "record.snapshot_every=500",
    ),
    checks=(
        CheckSpec("mean_field_concentrates", "C_r(mean_field, T) >= max(2 C_r(0), 0.5)"),
        CheckSpec("ntk_does_not_concentrate", "C_r(ntk, T) <= 1.5 C_r(0)"),
        CheckSpec("ntk_moves_less", "movement(ntk) / movement(mean_field) <= 0.2"),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
