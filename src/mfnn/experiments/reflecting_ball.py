"""`reflecting_ball`: particles confined to a ball by normal reflection (seed 002 s.2.1)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..build import build  # noqa: E402
from ..config import Config, dump  # noqa: E402
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
    write_summary,
)

CLAIM = """\
THEORY.md section 5 (seed 002, section 2.1): on a bounded parameter domain, particles that
leave it are reflected (normal reflection) and the mass is conserved; with the teacher
inside the domain the flow still reaches zero loss. Setup: exact population risk
(closed form), inputs N(0, I_2), ReLU units without bias and with a == 1, teacher
rho* = 0.6 delta_c1 + 0.4 delta_c2 inside the ball |theta| <= R (R = 1.5), students
uniform on the square inscribed in the ball. Control: the same teacher scaled by
experiment.params.outside_scale (= 2) so that every c_i lies outside the ball.

Statistics, from the snapshots (every record.snapshot_every steps) and metrics.csv:
r_max = max over snapshots and particles of |theta_j| / R; the particle count and
finiteness of every snapshot; L(0), L(T) the population risk at the start and the end.

Checks (summary.json):
- within_ball_<run>: r_max <= 1 + 1e-9 in both runs (no particle ever outside);
- mass_conserved_<run>: every snapshot holds the m particles, all finite;
- boundary_reached: r_max >= 0.999 in the inside run (the ball is active, not vacuous);
- loss_to_zero_inside: L(T) / L(0) <= 1e-3 with the teacher inside;
- outside_keeps_a_floor: L(T) outside >= 100 L(T) inside (confinement binds).
"""


def _params(cfg: Config) -> dict[str, float]:
    p = {"inside_scale": 1.0, "outside_scale": 2.0} | dict(cfg.experiment.params)
    for key in ("inside_scale", "outside_scale"):
        if not isinstance(p[key], int | float) or not p[key] > 0:
            raise ConfigError(
                f"`experiment.params.{key}` must be a positive number (the factor applied to "
                f"the teacher's neurons); got {p[key]!r}."
            )
    unknown = set(p) - {"inside_scale", "outside_scale"}
    if unknown:
        raise ConfigError(
            f"`experiment.params` of reflecting_ball takes inside_scale and outside_scale; "
            f"got unknown {sorted(unknown)}."
        )
    if cfg.dynamics.domain is None or cfg.dynamics.domain.kind != "ball":
        raise ConfigError(
            "reflecting_ball needs `dynamics.domain: {kind: ball, radius: R}`; got "
            f"{cfg.dynamics.domain!r}."
        )
    if cfg.data.population is None or cfg.data.teacher is None:
        raise ConfigError("reflecting_ball needs `data.population` and `data.teacher`.")
    return p


def _figures(out: Path, res: dict, radius: float) -> list[Path]:
    fig_dir = out / "figures"
    paths = []
    fig, axes = plt.subplots(1, len(res), figsize=(5.2 * len(res), 5))
    axes = np.atleast_1d(axes)
    circle = np.linspace(0, 2 * np.pi, 400)
    for ax, (name, r) in zip(axes, res.items(), strict=True):
        ax.plot(radius * np.cos(circle), radius * np.sin(circle), "k-", lw=1, label="|w| = R")
        ax.scatter(*r["w0"][:, :2].T, s=6, c="#7f8c8d", alpha=0.5, label="t = 0")
        ax.scatter(*r["w"][:, :2].T, s=8, c="#c0392b", label=f"t = {r['t']:g}")
        ax.scatter(
            *r["teacher"][:, :2].T,
            s=400 * r["alpha"],
            marker="*",
            c="#2471a3",
            edgecolors="k",
            label="teacher (size ~ alpha)",
        )
        ax.set(
            aspect="equal",
            title=f"{name}: teacher {'inside' if name == 'inside' else 'outside'}",
            xlabel="w_1",
            ylabel="w_2",
        )
        ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    paths.append(save_figure(fig, fig_dir / "particles.png"))
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, r in res.items():
        m = r["metrics"]
        ax[0].semilogy(m["t"], np.where(m["loss"] > 0, m["loss"], np.nan), label=name)
        ax[1].plot(r["snap_t"], r["r_max_t"], label=name)
    ax[0].set(xlabel="t", ylabel="population risk", title="loss")
    ax[1].axhline(1.0, color="k", lw=0.8)
    ax[1].set(xlabel="t", ylabel="max_j |w_j| / R", title="largest particle radius")
    for a in ax:
        a.legend()
    fig.tight_layout()
    paths.append(save_figure(fig, fig_dir / "loss_radius.png"))
    return paths


def run_reflecting_ball(
    cfg: Config, out: Path, *, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    t0 = time.perf_counter()
    params = _params(cfg)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump(cfg))
    radius = cfg.dynamics.domain.radius
    res, statuses, runs_summary = {}, {}, {}
    for name in ("inside", "outside"):
        sub = cfg.model_copy(deep=True)
        sub.name = f"{cfg.name or 'reflecting_ball'}-{name}"
        scale = params[f"{name}_scale"]
        teacher = sub.data.teacher
        if teacher.w is not None:
            teacher.w = [[scale * v for v in row] for row in teacher.w]
        sub.experiment.params = {}
        run_dir = out / "runs" / name
        if resume and run_dir_status(run_dir, sub) == "completed":
            built = build(sub)
            summary = json.loads((run_dir / "summary.json").read_text())
        else:
            _, built, summary = execute(sub, run_dir, resume=resume, progress=progress, label=name)
        statuses[name] = summary["status"]
        m = sub.model.width
        snaps = list_snapshots(run_dir)
        radii, counts_ok, snap_t = [], True, []
        for step, path in sorted(snaps.items()):
            w = np.load(path)["w"]
            counts_ok &= w.shape[0] == m and bool(np.all(np.isfinite(w)))
            radii.append(float(np.linalg.norm(w, axis=1).max()) / radius)
            snap_t.append(step * built.dt)
        first, last = min(snaps), max(snaps)
        metrics = read_metrics(run_dir)
        obj = built.dynamics.objective
        res[name] = {
            "w0": np.load(snaps[first])["w"],
            "w": np.load(snaps[last])["w"],
            "t": last * built.dt,
            "teacher": np.asarray(obj.teacher.w),
            "alpha": np.asarray(obj.teacher.alpha),
            "r_max": max(radii),
            "r_max_t": radii,
            "snap_t": snap_t,
            "counts_ok": counts_ok,
            "loss0": float(metrics["loss"][0]),
            "loss": float(metrics["loss"][-1]),
            "metrics": metrics,
        }
        runs_summary[name] = {
            k: summary.get(k) for k in ("status", "final_loss", "final_t", "message")
        } | {
            "teacher_norms": np.linalg.norm(res[name]["teacher"], axis=1).tolist(),
            "r_max": res[name]["r_max"],
            "initial_loss": res[name]["loss0"],
        }

    checks = {}
    for name, r in res.items():
        checks[f"within_ball_{name}"] = check(
            r["r_max"], "max_t max_j |theta_j| / R <= 1 + 1e-9", r["r_max"] <= 1 + 1e-9
        )
        checks[f"mass_conserved_{name}"] = check(
            r["counts_ok"], "every snapshot holds the m particles, all finite", r["counts_ok"]
        )
    inside, outside = res["inside"], res["outside"]
    checks["boundary_reached"] = check(
        inside["r_max"],
        "max_t max_j |theta_j| / R >= 0.999 (inside run)",
        inside["r_max"] >= 0.999,
    )
    ratio = inside["loss"] / max(inside["loss0"], 1e-300)
    checks["loss_to_zero_inside"] = check(ratio, "L(T) / L(0) <= 1e-3 (inside)", ratio <= 1e-3)
    floor = outside["loss"] / max(inside["loss"], 1e-300)
    checks["outside_keeps_a_floor"] = check(
        floor, "L(T, outside) / L(T, inside) >= 100", floor >= 100
    )
    figures = _figures(out, res, radius)
    return write_summary(
        out,
        "reflecting_ball",
        statuses,
        checks,
        figures,
        CLAIM,
        t0,
        final_loss=inside["loss"],
        runs=runs_summary,
    )


REFLECTING_BALL = Experiment(
    name="reflecting_ball",
    summary="particles reflected at a ball keep their mass inside and still reach zero loss "
    "(seed 002 s.2.1)",
    claim=CLAIM,
    quick=("model.width=96", "dynamics.steps=1200", "record.snapshot_every=100"),
    runner=run_reflecting_ball,
)
