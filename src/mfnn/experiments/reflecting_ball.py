"""`reflecting_ball`: particles confined to a ball by normal reflection still reach the
teacher inside it, and stop on the wall only where the free flow pushes outward
(teacher-student paper, section 2.1)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ..config import Config
from ..rundir import list_snapshots
from ..study import CheckSpec, Experiment, Params, Run, Study, check
from ..style import color_of
from .common import require

CLAIM = """\
"Mean field models for neural networks in teacher-student setting", section 2.1: on a
bounded domain the particles follow normal reflection at the boundary (a no-flux Neumann
condition for the mean-field PDE) and the mass is conserved. With the teacher inside the
domain the reflected flow still reaches zero loss; with it outside, the flow stops at a
constrained stationary point: each particle resting on the wall is held there because its
free velocity -grad dE/drho is an outward normal, and the particles inside are at rest.

Setup: exact population risk, x ~ N(0, I_2), f = (1/m) sum_j relu(w_j . x), the teacher of
`data.teacher` scaled by inside_scale (inside the ball |w| <= R of `dynamics.domain`) and by
outside_scale (outside it), the same students, uniform on the square inscribed in the ball.

Statistics: r_max = max over snapshots and particles of |w_j| / R and the count of finite
particles (invariants of the reflection); L(0), L(T); at the end of the outside run kappa
(the tangential-or-inward share of the free velocity on the wall) and held (the share of
the free flow's speed^2 the wall stops) of `mfnn.diagnostics.wall_stats`.
"""


class ReflectingBallParams(Params):
    inside_scale: float = Field(1.0, gt=0, description="teacher neurons times this: inside")
    outside_scale: float = Field(2.0, gt=0, description="teacher neurons times this: outside")
    kappa: float = Field(0.01, gt=0, description="wall_stationary: kappa <= this")
    held: float = Field(0.9, gt=0, le=1, description="wall_holds: held >= this")

    def check_config(self, cfg: Config) -> None:
        dom, t, m = cfg.dynamics.domain, cfg.data.teacher, cfg.model
        require(
            "reflecting_ball",
            ("dynamics.domain", "{kind: ball, radius: R}", dom is not None and dom.kind == "ball",
             dom and dom.model_dump()),
            ("data.population`, `data.teacher.w", "set, inline",
             cfg.data.population is not None and t is not None and t.w is not None,
             (cfg.data.population, t)),
            ("model.train_output`, `model.bias", "false, false (a particle is w)",
             not (m.train_output or m.bias), (m.train_output, m.bias)),
        )  # fmt: skip


def plan(s: Study[ReflectingBallParams]) -> dict[str, Run]:
    w, p = s.config.data.teacher.w, s.params
    scales = {"inside": p.inside_scale, "outside": p.outside_scale}
    return {
        k: Run(s.sub_config(k, {"data.teacher.w": [[a * x for x in row] for row in w]}))
        for k, a in scales.items()
    }


def analyze(s: Study[ReflectingBallParams], runs) -> dict:
    import jax.numpy as jnp

    from ..diagnostics.teacher import wall_stats

    radius = s.config.dynamics.domain.radius
    per_run, figs = {}, {}
    for name, r in runs.items():
        snaps, m, teacher = list_snapshots(r.dir), r.config.model.width, r.config.data.teacher
        clouds = [np.load(snaps[k])["w"] for k in sorted(snaps)]
        v, _ = r.built.dynamics.full_velocity(jnp.asarray(clouds[-1]))
        per_run[name] = {
            "teacher_norms": np.linalg.norm(np.asarray(teacher.w, float), axis=1).tolist(),
            "r_max": max(float(np.linalg.norm(w, axis=1).max()) / radius for w in clouds),
            "counts_ok": all(w.shape[0] == m and np.isfinite(w).all() for w in clouds),
            "initial_loss": float(r.metrics["loss"][0]),
            "final_loss": float(r.metrics["loss"][-1]),
        } | wall_stats(clouds[-1], np.asarray(v), radius, r.dt)
        figs[name] = {"w0": clouds[0], "w": clouds[-1], "t": max(snaps) * r.dt, "teacher": teacher}
        figs[name]["metrics"] = r.metrics
    return {"radius": radius, "runs": per_run, "_figs": figs}


def evaluate(s: Study[ReflectingBallParams], stats: dict) -> dict:
    p, runs, checks = s.params, stats["runs"], {}
    within = "max_t max_j |w_j| / R <= 1 + 1e-9 (by construction)"
    mass = "every snapshot holds the m particles, all finite"
    for name, r in runs.items():
        checks[f"invariant_within_ball_{name}"] = check(r["r_max"], within, r["r_max"] <= 1 + 1e-9)
        checks[f"invariant_mass_{name}"] = check(r["counts_ok"], mass, r["counts_ok"])
    inside, outside = runs["inside"], runs["outside"]
    r_max, k, held = inside["r_max"], outside["kappa"], outside["held"]
    ratio = inside["final_loss"] / max(inside["initial_loss"], 1e-300)
    floor = outside["final_loss"] / max(inside["final_loss"], 1e-300)
    stationary = f"kappa <= {p.kappa:g} ({outside['on_wall']} particles on the wall)"
    return checks | {
        "boundary_reached": check(r_max, "max_t max_j |w_j| / R >= 0.999 (inside)", r_max >= 0.999),
        "loss_to_zero_inside": check(ratio, "L(T) / L(0) <= 1e-3 (inside)", ratio <= 1e-3),
        "outside_keeps_a_floor": check(floor, "L(T, outside) / L(T, inside) >= 100", floor >= 100),
        "wall_stationary_outside": check(k, stationary, bool(np.isfinite(k) and k <= p.kappa)),
        "wall_holds_outside": check(held, f"held >= {p.held:g}", held >= p.held),
    }


def figures(s: Study[ReflectingBallParams], stats: dict, runs) -> list:
    """The particles at t = 0 and T in each run, with the wall and the teacher; the losses."""
    from ..plots import COLORS, log_curves, plt, save_figure

    radius, figs = stats["radius"], stats["_figs"]
    student = color_of(s.config.model.scaling)
    fig, axes = plt.subplots(
        1, len(figs) + 1, figsize=(5.2 * (len(figs) + 1), 5.0), layout="constrained"
    )
    circle = radius * np.exp(1j * np.linspace(0, 2 * np.pi, 400))
    for ax, (name, r) in zip(axes, figs.items(), strict=False):
        ax.plot(circle.real, circle.imag, "k-", lw=1, label="|w| = R")
        ax.scatter(*r["w0"][:, :2].T, s=6, c=COLORS["init"], alpha=0.5, label="t = 0")
        ax.scatter(*r["w"][:, :2].T, s=8, c=student, label=f"t = {r['t']:g}")
        c, alpha = np.asarray(r["teacher"].w), np.asarray(r["teacher"].alpha)
        ax.scatter(*c[:, :2].T, s=400 * alpha, marker="*", c=COLORS["teacher"])
        ax.set(
            aspect="equal",
            title=f"teacher (stars) {name}",
            xlabel="student weight w_1",
            ylabel="student weight w_2",
        )
        ax.legend(loc="lower left", fontsize=7)
    curves = {name: (r["metrics"]["t"], r["metrics"]["loss"]) for name, r in figs.items()}
    log_curves(axes[-1], curves, xlabel="t", ylabel="population risk L(t)", title="loss")
    fig.suptitle(
        "reflected at the wall: zero loss with the teacher inside; "
        "with it outside, particles rest on the wall"
    )
    return [save_figure(fig, s.figure_path("reflecting_ball.png"))]


BY_CONSTRUCTION = "holds by construction of the normal reflection (`mfnn.domains.Ball.reflect`)"
REFLECTING_BALL = Experiment(
    name="reflecting_ball",
    summary="reflected at a ball, students reach a teacher inside and rest on the wall only "
    "where pushed outward (teacher-student paper, s.2.1)",
    claim=CLAIM,
    params=ReflectingBallParams,
    quick=("model.width=96", "dynamics.steps=1200", "record.snapshot_every=100"),
    checks=(
        CheckSpec("invariant_within_ball_*", f"r_max <= 1 + 1e-9: {BY_CONSTRUCTION}"),
        CheckSpec("invariant_mass_*", f"m finite particles per snapshot: {BY_CONSTRUCTION}"),
        CheckSpec("boundary_reached", "r_max >= 0.999 in the inside run"),
        CheckSpec("loss_to_zero_inside", "L(T) / L(0) <= 1e-3 with the teacher inside"),
        CheckSpec("outside_keeps_a_floor", "L(T, outside) / L(T, inside) >= 100"),
        CheckSpec("wall_stationary_outside", "kappa <= 0.01 at the end of the outside run"),
        CheckSpec("wall_holds_outside", "held >= 0.9 at the end of the outside run"),
        CheckSpec(
            "outside/energy_identity",
            "median |energy_rel_residual| <= 0.1",
            informational="the recorder's identity steps theta + dt v without the reflection "
            "and counts the free dissipation int |grad dE/drho|^2, so with the particles held "
            "on the wall it measures the free flow at those points, not the reflected run, "
            "whose energy no longer changes there",
        ),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
