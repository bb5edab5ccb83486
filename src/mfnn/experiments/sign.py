"""`sign`: mean-field training moves features to the jump of sign(x); ntk does not (seed 000)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..build import build
from ..config import Config, dump
from ..diagnostics import breakpoint_concentration, breakpoints, relative_movement
from ..measure import load_particles
from ..plots import sign_figures
from ..runs import (
    atomic_write_text,
    check,
    execute,
    list_snapshots,
    read_metrics,
    run_dir_status,
)
from .base import Experiment, write_summary

CLAIM = """\
Seed 000 (THEORY.md section 8): fitting sign(x) on [-1, 1], mean_field training moves the
ReLU breakpoints -b/w of the neurons that matter towards the jump at 0 (feature learning);
ntk keeps them where they started (lazy), and its particles move much less.

Statistic: C_r(mu) = fraction of significant neurons (|a_j w_j| >= s * mean_k |a_k w_k|,
s = experiment.significance = 0.1) whose breakpoint satisfies |b_j / w_j| < r
(r = experiment.radius = 0.25). Movement: |theta(T) - theta(0)|_F / |theta(0)|_F.

Checks (summary.json):
- mean_field_concentrates: C_r(mean_field, T) >= max(2 C_r(0), 0.5)
- ntk_does_not_concentrate: C_r(ntk, T) <= 1.5 C_r(0)
- ntk_moves_less: movement(ntk) / movement(mean_field) <= 0.2
- energy_identity_<scaling>: median |energy_rel_residual| <= 0.1 in each run
"""


def _final_particles(run_dir: Path, model, dtype):
    snaps = list_snapshots(run_dir)
    first, last = min(snaps), max(snaps)
    return (
        load_particles(snaps[first], model, dtype, field="snapshot"),
        load_particles(snaps[last], model, dtype, field="snapshot"),
        last,
    )


def run_sign(
    cfg: Config, out: Path, *, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump(cfg))
    ex = cfg.experiment
    res: dict[str, dict[str, Any]] = {}
    statuses = {}
    runs_summary = {}
    for sc in ex.scalings:
        sub = cfg.model_copy(deep=True)
        sub.model.scaling = sc
        sub.name = f"{cfg.name or 'sign'}-{sc}"
        run_dir = out / "runs" / sc
        if resume and run_dir_status(run_dir, sub) == "completed":
            built = build(sub)
            summary = json.loads((run_dir / "summary.json").read_text())
        else:
            _, built, summary = execute(sub, run_dir, resume=resume, progress=progress, label=sc)
        statuses[sc] = summary["status"]
        runs_summary[sc] = {
            k: summary.get(k) for k in ("status", "final_loss", "final_t", "message")
        }
        model = built.model
        theta0, theta, last = _final_particles(run_dir, model, built.theta0.dtype)
        metrics = read_metrics(run_dir)
        xs = jnp.linspace(-1, 1, 801, dtype=theta.dtype)[:, None]
        bp0, mass0 = breakpoints(model, theta0)
        bp, mass = breakpoints(model, theta)
        res[sc] = {
            "t": last * built.dt,
            "f0": np.asarray(model.predict(theta0, xs)),
            "f": np.asarray(model.predict(theta, xs)),
            "bp0": bp0[mass0 >= ex.significance * mass0.mean()],
            "bp": bp[mass >= ex.significance * mass.mean()],
            "C0": breakpoint_concentration(model, theta0, ex.radius, ex.significance),
            "C": breakpoint_concentration(model, theta, ex.radius, ex.significance),
            "movement": relative_movement(theta, theta0),
            "metrics": metrics,
            "checks": summary.get("checks", {}),
        }
        runs_summary[sc].update(
            C_initial=res[sc]["C0"], C_final=res[sc]["C"], movement=res[sc]["movement"]
        )

    checks = {}
    if "mean_field" in res:
        r = res["mean_field"]
        need = max(2 * r["C0"], 0.5)
        checks["mean_field_concentrates"] = check(
            r["C"], f"C_r(mean_field, T) >= max(2 C_r(0), 0.5) = {need:.3g}", r["C"] >= need
        )
    if "ntk" in res:
        r = res["ntk"]
        checks["ntk_does_not_concentrate"] = check(
            r["C"], f"C_r(ntk, T) <= 1.5 C_r(0) = {1.5 * r['C0']:.3g}", r["C"] <= 1.5 * r["C0"]
        )
    if "ntk" in res and "mean_field" in res:
        ratio = res["ntk"]["movement"] / max(res["mean_field"]["movement"], 1e-300)
        checks["ntk_moves_less"] = check(
            ratio, "movement(ntk) / movement(mean_field) <= 0.2", ratio <= 0.2
        )
    for sc, r in res.items():
        if "energy_identity" in r["checks"]:
            checks[f"energy_identity_{sc}"] = r["checks"]["energy_identity"]

    xs = np.linspace(-1, 1, 801)
    figures = sign_figures(out / "figures", res, xs, np.sign(xs), ex.radius)
    return write_summary(
        out,
        "sign",
        statuses,
        checks,
        figures,
        CLAIM,
        t0,
        final_loss=runs_summary.get("mean_field", next(iter(runs_summary.values())))["final_loss"],
        runs=runs_summary,
    )


SIGN = Experiment(
    name="sign",
    summary="fit sign(x): mean_field moves ReLU breakpoints to the jump, ntk stays lazy (seed 000)",
    claim=CLAIM,
    quick=(
        "model.width=512",
        "data.n_train=256",
        "data.n_test=512",
        "dynamics.steps=3000",
        "record.snapshot_every=500",
    ),
    runner=run_sign,
)
