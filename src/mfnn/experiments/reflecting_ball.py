"""`reflecting_ball`: particles confined to a ball by normal reflection still reach the
teacher inside it, and stop on the wall only where the free flow pushes outward
(teacher-student paper, section 2.1)."""

from __future__ import annotations

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field

from ..config import Config
from ..errors import ConfigError
from ..plots import save_figure
from ..rundir import list_snapshots
from ..study import CheckSpec, Experiment, Params, Run, Study, check

CLAIM = """\
"Mean field models for neural networks in teacher-student setting", section 2.1: on a
bounded parameter domain the particles follow normal reflection at the boundary (the
mean-field PDE gets a no-flux Neumann condition) and the mass is conserved. With the teacher
inside the domain the reflected flow still reaches zero loss. With the teacher outside, it
stops at a constrained stationary point: every particle that rests on the wall is held there
because the free velocity v = -grad dE/drho at it is an outward normal (tangential part 0,
normal part >= 0: the first-order condition of the constrained problem), and the particles
inside have v = 0.

Setup: exact population risk (closed form), x ~ N(0, I_2), f = (1/m) sum_j relu(w_j . x)
(no bias, output weights 1), teacher rho* = 0.6 delta_c1 + 0.4 delta_c2 of `data.teacher`
scaled by inside_scale (inside the ball |w| <= R of `dynamics.domain`) and by outside_scale
(outside it), students uniform on the square inscribed in the ball, the same start in both.

Statistics: r_max = max over snapshots and particles of |w_j| / R; the particle count and
finiteness of every snapshot; L(0), L(T). At the last snapshot, with v_j the free velocity,
n_j = w_j / |w_j|, and the wall set B = {j : R - |w_j| <= dt |v_j|} (a particle held by the
wall bounces within one step of it): kappa = sqrt(sum_B |v_j - (v_j.n_j) n_j|^2 +
min(v_j.n_j, 0)^2) / sqrt(sum_B |v_j|^2) (0 at a constrained stationary point) and
held = sum_B max(v_j.n_j, 0)^2 / sum_j |v_j|^2 (the share of the free flow's speed^2 the
wall stops; the rest belongs to particles still moving).

Checks: invariant_within_ball_<run> (r_max <= 1 + 1e-9) and invariant_mass_<run> hold by
construction of the reflection (they fail only if it is broken); boundary_reached:
r_max >= 0.999 in the inside run (the wall is active); loss_to_zero_inside:
L(T) / L(0) <= 1e-3; outside_keeps_a_floor: L(T, outside) >= 100 L(T, inside);
wall_stationary_outside: kappa <= 0.01; wall_holds_outside: held >= 0.9.
"""


class ReflectingBallParams(Params):
    inside_scale: float = Field(1.0, gt=0, description="teacher neurons times this: inside")
    outside_scale: float = Field(2.0, gt=0, description="teacher neurons times this: outside")
    kappa: float = Field(0.01, gt=0, description="wall_stationary: kappa <= this")
    held: float = Field(0.9, gt=0, le=1, description="wall_holds: held >= this")

    def check_config(self, cfg: Config) -> None:
        dom, t = cfg.dynamics.domain, cfg.data.teacher
        if dom is None or dom.kind != "ball":
            raise ConfigError(
                "reflecting_ball needs `dynamics.domain: {kind: ball, radius: R}`; got "
                f"{dom and dom.model_dump()}."
            )
        if cfg.data.population is None or t is None or t.w is None:
            raise ConfigError(
                "reflecting_ball needs `data.population` and an inline `data.teacher.w`; got "
                f"population {cfg.data.population!r}, teacher {t!r}."
            )
        if cfg.model.train_output or cfg.model.bias:
            raise ConfigError(
                "reflecting_ball's particles are w alone: `model.train_output` and "
                f"`model.bias` must be false; got {cfg.model.train_output}, {cfg.model.bias}."
            )


def wall_stats(w: np.ndarray, v: np.ndarray, radius: float, dt: float) -> dict[str, float]:
    """The wall statistics of particles w (m, d) with free velocities v (m, d) in the ball
    |w| <= radius (centered at 0): see the claim (kappa, held), with ``on_wall`` = |B| and
    ``interior_rms_speed`` = sqrt(mean_{j not in B} |v_j|^2).

    Example:
        >>> w = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.2]])
        >>> out = wall_stats(w, np.array([[0.5, 0.0], [0.0, 0.5], [0.0, 0.0]]), 1.0, 0.1)
        >>> out["kappa"], out["held"], out["on_wall"]
        (0.0, 1.0, 2)
        >>> wall_stats(w, np.array([[0.0, 0.5], [0.5, 0.0], [0.0, 0.0]]), 1.0, 0.1)["kappa"]
        1.0
    """
    r = np.linalg.norm(w, axis=1)
    speed2 = (v * v).sum(1)
    on = radius - r <= dt * np.sqrt(speed2) + 1e-9 * radius
    n = w / np.where(r > 0, r, 1.0)[:, None]
    vn = (v * n).sum(1)
    off_normal = ((v - vn[:, None] * n) ** 2).sum(1) + np.minimum(vn, 0.0) ** 2
    wall = float(speed2[on].sum())
    return {
        "kappa": float(np.sqrt(off_normal[on].sum() / wall)) if wall > 0 else np.nan,
        "held": float((np.maximum(vn, 0.0) ** 2)[on].sum() / speed2.sum()),
        "on_wall": int(on.sum()),
        "interior_rms_speed": float(np.sqrt(speed2[~on].mean())) if (~on).any() else 0.0,
        "free_rms_speed": float(np.sqrt(speed2.mean())),
    }


def plan(s: Study[ReflectingBallParams]) -> dict[str, Run]:
    w = s.config.data.teacher.w
    out = {}
    for name in ("inside", "outside"):
        scale = getattr(s.params, f"{name}_scale")
        teacher = [[scale * x for x in row] for row in w]
        out[name] = Run(s.sub_config(name, {"data.teacher.w": teacher}))
    return out


def analyze(s: Study[ReflectingBallParams], runs) -> dict:
    radius = s.config.dynamics.domain.radius
    per_run, figs = {}, {}
    for name, r in runs.items():
        snaps = list_snapshots(r.dir)
        clouds = [np.load(snaps[k])["w"] for k in sorted(snaps)]
        m = r.config.model.width
        radii = [float(np.linalg.norm(w, axis=1).max()) / radius for w in clouds]
        ok = all(w.shape[0] == m and np.isfinite(w).all() for w in clouds)
        v, _ = r.built.dynamics.full_velocity(jnp.asarray(clouds[-1]))
        teacher = np.asarray(r.config.data.teacher.w, float)
        per_run[name] = {
            "teacher_norms": np.linalg.norm(teacher, axis=1).tolist(),
            "r_max": max(radii),
            "counts_ok": bool(ok),
            "initial_loss": float(r.metrics["loss"][0]),
            "final_loss": float(r.metrics["loss"][-1]),
        } | wall_stats(clouds[-1], np.asarray(v), radius, r.dt)
        figs[name] = {
            "w0": clouds[0],
            "w": clouds[-1],
            "t": max(snaps) * r.dt,
            "snap_t": np.asarray(sorted(snaps), float) * r.dt,
            "radii": radii,
            "teacher": teacher,
            "alpha": np.asarray(r.config.data.teacher.alpha, float),
            "metrics": r.metrics,
        }
    return {"radius": radius, "runs": per_run, "_figs": figs}


def evaluate(s: Study[ReflectingBallParams], stats: dict) -> dict:
    p, runs, checks = s.params, stats["runs"], {}
    for name, r in runs.items():
        checks[f"invariant_within_ball_{name}"] = check(
            r["r_max"],
            "max_t max_j |w_j| / R <= 1 + 1e-9 (by construction)",
            r["r_max"] <= 1 + 1e-9,
        )
        checks[f"invariant_mass_{name}"] = check(
            r["counts_ok"], "every snapshot holds the m particles, all finite", r["counts_ok"]
        )
    inside, outside = runs["inside"], runs["outside"]
    checks["boundary_reached"] = check(
        inside["r_max"], "max_t max_j |w_j| / R >= 0.999 (inside run)", inside["r_max"] >= 0.999
    )
    ratio = inside["final_loss"] / max(inside["initial_loss"], 1e-300)
    checks["loss_to_zero_inside"] = check(ratio, "L(T) / L(0) <= 1e-3 (inside)", ratio <= 1e-3)
    floor = outside["final_loss"] / max(inside["final_loss"], 1e-300)
    checks["outside_keeps_a_floor"] = check(
        floor, "L(T, outside) / L(T, inside) >= 100", floor >= 100
    )
    k, held = outside["kappa"], outside["held"]
    checks["wall_stationary_outside"] = check(
        k,
        f"kappa (tangential or inward share of the free velocity on the wall) <= {p.kappa:g} "
        f"({outside['on_wall']} particles on the wall)",
        bool(np.isfinite(k) and k <= p.kappa),
    )
    checks["wall_holds_outside"] = check(
        held, f"held (share of sum |v_j|^2 stopped by the wall) >= {p.held:g}", held >= p.held
    )
    return checks


def figures(s: Study[ReflectingBallParams], stats: dict, runs) -> list:
    radius, figs = stats["radius"], stats["_figs"]
    fig, axes = plt.subplots(1, len(figs), figsize=(5.2 * len(figs), 5))
    circle = np.linspace(0, 2 * np.pi, 400)
    for ax, (name, r) in zip(np.atleast_1d(axes), figs.items(), strict=True):
        ax.plot(radius * np.cos(circle), radius * np.sin(circle), "k-", lw=1, label="|w| = R")
        ax.scatter(*r["w0"][:, :2].T, s=6, c="#7f8c8d", alpha=0.5, label="t = 0")
        ax.scatter(*r["w"][:, :2].T, s=8, c="#c0392b", label=f"t = {r['t']:g}")
        ax.scatter(*r["teacher"][:, :2].T, s=400 * r["alpha"], marker="*", c="#2471a3")
        ax.set(aspect="equal", title=f"{name}: teacher (stars) {name}", xlabel="w_1", ylabel="w_2")
        ax.legend(loc="lower left", fontsize=7)
    paths = [save_figure(fig, s.figure_path("particles.png"))]
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, r in figs.items():
        loss = r["metrics"]["loss"]
        ax[0].semilogy(r["metrics"]["t"], np.where(loss > 0, loss, np.nan), label=name)
        ax[1].plot(r["snap_t"], r["radii"], label=name)
    ax[0].set(xlabel="t", ylabel="population risk", title="loss")
    ax[1].axhline(1.0, color="k", lw=0.8)
    ax[1].set(xlabel="t", ylabel="max_j |w_j| / R", title="largest particle radius")
    for a in ax:
        a.legend()
    fig.tight_layout()
    return [*paths, save_figure(fig, s.figure_path("loss_radius.png"))]


BY_CONSTRUCTION = "holds by construction of the normal reflection (`mfnn.domains.Ball.reflect`)"
REFLECTING_BALL = Experiment(
    name="reflecting_ball",
    summary="particles reflected at a ball keep their mass inside, reach zero loss with the "
    "teacher inside, and rest on the wall only where pushed outward (teacher-student paper "
    "s.2.1)",
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
