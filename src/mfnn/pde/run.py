r"""`dynamics.kind: pde`: the grid solver through a run directory.

The same files as a particle run (`mfnn.runs`): config.yaml, metrics.csv (flushed every
chunk), snapshots/step_*.npz (the density: ``density`` of shape ``cells``, the grid's
``low``, ``high``, ``cells``, ``t``), checkpoint.npz (``density``, ``step``; atomic), and
summary.json. Resume continues from the checkpoint bit-identically.

Recorded columns at t = k dt (rho_k the density):

- ``loss``: R(rho_k) (and ``test_loss`` on the test set, if any);
- ``energy``: E = R + (lambda/2) int |theta|^2 drho;
- ``entropy`` H = -int rho log rho and ``free_energy`` F = E - H / beta (diffusion only);
- ``dissipation``: -dF/dt of the grid system (`mfnn.pde.solver.FokkerPlanck.dissipation`);
- ``energy_residual``: (F(rho_{k+1}) - F(rho_k)) / dt + dissipation(rho_k), rho_{k+1} one
  step of the scheme: O(dt) (and O(h^p) against the continuum identity);
- ``energy_rel_residual``: energy_residual / dissipation;
- ``jump_dissipation``: alpha int (Phi - <Phi>)^2 rho (birth-death only);
- ``mass_error``: int rho - 1 (round-off), ``min_density``: min_i rho_i (>= 0),
  ``boundary_mass``: the mass fraction in the outer cell layer, ``cfl``: the stability number.

A record with cfl > 1, a negative or non-finite density, or (on a grid truncating R^D)
boundary_mass > ``dynamics.grid.boundary_tol`` ends the run as ``diverged``; the density
of the last good chunk is kept as the checkpoint and the final snapshot.

Summary checks: ``energy_identity`` (median |energy_rel_residual| <= 0.1, as for
particles), ``mass_conservation`` (max |mass_error| <= 1e-10) and ``positivity``
(min density >= 0).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import __version__
from ..build import Built, build, init_laws
from ..config import Config, GridSpec, dump
from ..errors import ConfigError
from ..measure import atomic_savez
from ..rundir import (
    RunLock,
    RunWriter,
    atomic_write_text,
    check,
    read_metrics,
    snapshot_path,
    write_json,
)
from ..trajectory import snapshot_steps
from .energy import SampledEnergy, grid_energy
from .grid import Grid
from .solver import FokkerPlanck

MASS_TOL = 1e-10


@dataclasses.dataclass
class PdeBuilt:
    """A pde run built from its config: the particle build (model, objective, data) and the
    grid, solver, initial density, test energy (or None), dt, steps, record interval."""

    config: Config
    particles: Built
    grid: Grid
    solver: FokkerPlanck
    rho0: jax.Array
    test: SampledEnergy | None
    dt: float
    steps: int
    every: int
    chunk: int
    snapshot_every: int
    snapshot_steps: tuple[int, ...] = ()  # of `record.snapshot_count`, besides snapshot_every

    @property
    def model(self):
        return self.particles.model


def _axes(value, n, default):
    if value is None:
        return [default] * n
    return [float(value)] * n if not isinstance(value, list) else [float(v) for v in value]


def make_grid(cfg: Config, dim: int) -> Grid:
    """The grid of ``cfg.dynamics.grid`` for particles of ``dim`` coordinates."""
    gs = cfg.dynamics.grid or GridSpec()
    cells = [gs.cells] if isinstance(gs.cells, int) else list(gs.cells)
    if len(cells) != dim:
        raise ConfigError(
            f"`dynamics.grid.cells` has {len(cells)} axes but a particle of this model has "
            f"D = {dim} coordinates; give one number of cells per coordinate (D = 1 or 2)."
        )
    dom = cfg.dynamics.domain
    radius = None
    if dom is None:
        low, high = _axes(gs.low, dim, -4.0), _axes(gs.high, dim, 4.0)
    elif dom.kind == "box":
        low, high = [dom.low] * dim, [dom.high] * dim
    else:
        radius = dom.radius
        low, high = [-radius] * dim, [radius] * dim
    return Grid(low, high, cells, bounded=dom is not None, radius=radius)


def _initial_density(cfg: Config, built: Built, grid: Grid, dtype) -> jax.Array:
    model, init = built.model, cfg.model.init
    if init.path is not None:
        theta = np.asarray(built.theta0)
        return grid.density_of_points(theta, dtype=dtype)
    by_block = init_laws(init)
    laws = []
    for blk in model.present_blocks:
        laws += [by_block[blk]] * (model.d if blk == "w" else 1)
    if grid.masked:  # a 2-D ball: its radial fold is not a product; keep the law inside
        whole = Grid(grid.low, grid.high, grid.cells)
        rho = whole.density_of_laws(laws, dtype)  # renormalised over the box
        outside = 1.0 - float(np.sum(np.asarray(rho)[grid.inside()]) * grid.volume)
        tol = (cfg.dynamics.grid or GridSpec()).boundary_tol
        if outside > tol:
            raise ConfigError(
                f"the initial law puts {outside:.3g} of its mass outside the ball of radius "
                f"{grid.radius} (more than `dynamics.grid.boundary_tol` = {tol:g}); particles "
                "there are reflected in at the first step, which the grid cannot follow: "
                "narrow `model.init` or enlarge `dynamics.domain.radius`."
            )
    # bounded: the law of the reflected start (particles outside are folded in at once)
    return grid.density_of_laws(laws, dtype, fold=grid.bounded)


def build_pde(cfg: Config, base=None) -> PdeBuilt:
    """Build a `dynamics.kind: pde` run (`ConfigError` for what a grid cannot hold)."""
    built = build(cfg, base)
    cfg = built.config
    dtype = built.theta0.dtype
    model = built.model
    grid = make_grid(cfg, model.dim)
    energy = grid_energy(built.objective, model, grid, dtype)
    dyn = cfg.dynamics
    gs = dyn.grid or GridSpec()
    diffusion = 0.0 if dyn.langevin is None else 1.0 / dyn.langevin.beta
    rate = 0.0 if dyn.birth_death is None else dyn.birth_death.rate
    solver = FokkerPlanck(grid, energy, diffusion, rate, gs.flux, gs.scheme)
    rho0 = _initial_density(cfg, built, grid, dtype)
    if not grid.bounded:
        edge = float(grid.boundary_mass(rho0))
        if edge > gs.boundary_tol:
            raise ConfigError(
                f"the initial density puts {edge:.3g} of its mass in the outer cells of the "
                f"grid [{grid.low}, {grid.high}], which truncates R^{grid.dim} (at most "
                f"`dynamics.grid.boundary_tol` = {gs.boundary_tol:g}): widen "
                "`dynamics.grid.low/high`."
            )
    cfl = float(solver.cfl(rho0, dyn.dt))
    if cfl > 1:
        stable = float(solver.stable_dt(rho0))
        hint = " or `dynamics.grid.scheme: imex`" if gs.scheme == "explicit" and diffusion else ""
        raise ConfigError(
            f"`dynamics.dt` = {dyn.dt:g} is unstable on this grid: the stability number is "
            f"{cfl:.3g} > 1 at t = 0 (positivity needs dt <= {stable:.3g}, set by the "
            f"velocity, the diffusion 2D/h^2 and the reaction rate). Use `dynamics.dt` <= "
            f"{0.9 * stable:.3g}, fewer cells{hint}."
        )
    test = None
    if built.test is not None:
        x, y = built.test.x, built.test.y
        test = SampledEnergy(
            features=model.features(grid.centers(dtype), x).astype(dtype),
            y=y.astype(dtype),
            weights=jnp.full((x.shape[0],), 1.0 / x.shape[0], dtype),
            confinement=jnp.zeros(grid.size, dtype),
        )
    every = cfg.record.every
    chunk = cfg.record.chunk or max(every, (dyn.steps // (20 * every)) * every)
    rec, at = cfg.record, ()
    if rec.snapshot_count is not None:  # those steps only (snapshot_every = steps: the last)
        at = snapshot_steps(dyn.steps, every, rec.snapshot_count, rec.snapshot_spacing)
    snap = rec.snapshot_every or (
        dyn.steps if at else max(every, (dyn.steps // (10 * every)) * every)
    )
    return PdeBuilt(cfg, built, grid, solver, rho0, test, dyn.dt, dyn.steps, every, chunk, snap, at)


# ---------------------------------------------------------------------------- loop


def metric_names(pb: PdeBuilt) -> list[str]:
    names = ["loss"] + (["test_loss"] if pb.test is not None else []) + ["energy"]
    if float(pb.solver.diffusion) > 0:
        names += ["beta", "entropy", "free_energy"]
    names += ["dissipation", "energy_residual", "energy_rel_residual"]
    if float(pb.solver.rate) > 0:
        names += ["jump_dissipation"]
    return names + ["mass_error", "min_density", "boundary_mass", "cfl"]


def _metrics(solver: FokkerPlanck, test, rho, dt) -> dict:
    mass = solver.mass_of(rho)
    nxt = solver.step(rho, dt)
    f0, f1 = solver.free_energy(rho), solver.free_energy(nxt)
    diss, jump = solver.dissipation(rho)
    residual = (f1 - f0) / dt + diss
    out = {
        "loss": solver.energy.risk(mass),
        "energy": solver.energy.energy(mass),
        "entropy": solver.entropy(rho),
        "free_energy": f0,
        "dissipation": diss,
        "energy_residual": residual,
        "energy_rel_residual": residual / jnp.maximum(jnp.abs(diss), 1e-300),
        "jump_dissipation": jump,
        "mass_error": solver.grid.mass(rho) - 1.0,
        "min_density": jnp.min(rho),
        "boundary_mass": solver.grid.boundary_mass(rho),
        "cfl": solver.cfl(rho, dt),
    }
    if test is not None:
        out["test_loss"] = test.risk(mass)
    return out


@eqx.filter_jit
def _advance(solver: FokkerPlanck, test, rho, dt, n_rec: int, every: int):
    """n_rec records, ``every`` steps apart: (final rho, metrics at each record's end)."""

    def segment(r, _):
        r = jax.lax.fori_loop(0, every, lambda i, q: solver.step(q, dt), r)
        return r, _metrics(solver, test, r, dt)

    return jax.lax.scan(segment, rho, None, length=n_rec)


@eqx.filter_jit
def _metrics_now(solver, test, rho, dt):
    return _metrics(solver, test, rho, dt)


def _bad(row: dict, pb: PdeBuilt) -> str | None:
    """Why a record ends the run, or None."""
    tol = (pb.config.dynamics.grid or GridSpec()).boundary_tol
    values = [row[k] for k in ("loss", "energy", "dissipation", "mass_error", "cfl")]
    if not all(math.isfinite(v) for v in values):
        return "the density became NaN/inf"
    if row["cfl"] > 1:
        return (
            f"the stability number reached {row['cfl']:.3g} > 1 (the velocity grew as the "
            "density moved): use a smaller `dynamics.dt` or fewer cells"
        )
    if row["min_density"] < -1e-12:
        return f"the density became negative ({row['min_density']:.3g})"
    if not pb.grid.bounded and row["boundary_mass"] > tol:
        return (
            f"{row['boundary_mass']:.3g} of the mass reached the outer cells of the grid, "
            f"which truncates R^{pb.grid.dim} (`dynamics.grid.boundary_tol` = {tol:g}): widen "
            "`dynamics.grid.low/high`"
        )
    return None


class _Writer(RunWriter):
    """`mfnn.rundir.RunWriter` (metrics rows flushed, resume cuts rows past the checkpoint)
    with density snapshots and checkpoints instead of particles."""

    def __init__(self, run_dir: Path, fields: list[str], pb: PdeBuilt):
        super().__init__(run_dir, pb.model, fields)
        self.pb = pb

    def snapshot(self, step: int, rho) -> None:
        g = self.pb.grid
        atomic_savez(
            snapshot_path(self.run_dir, step),
            density=np.asarray(rho),
            low=np.asarray(g.low),
            high=np.asarray(g.high),
            cells=np.asarray(g.cells),
            t=np.asarray(step * self.pb.dt),
        )

    def checkpoint(self, step: int, rho) -> None:
        atomic_savez(
            self.run_dir / "checkpoint.npz", density=np.asarray(rho), step=np.asarray(step)
        )


def read_density(path) -> tuple[Grid, np.ndarray, float]:
    """(grid, density, t) of a pde snapshot file."""
    with np.load(path) as z:
        grid = Grid(z["low"], z["high"], z["cells"])
        return grid, np.asarray(z["density"]), float(z["t"])


def _load_density(run_dir: Path, pb: PdeBuilt) -> tuple[int, jax.Array]:
    """(step, density) of ``run_dir/checkpoint.npz`` (`ConfigError` if unreadable)."""
    path = run_dir / "checkpoint.npz"
    try:
        with np.load(path) as z:
            rho = jnp.asarray(z["density"], pb.rho0.dtype)
            step = int(z["step"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{str(path)!r} cannot be read as a grid checkpoint ({exc}).") from exc
    if rho.shape != pb.rho0.shape:
        raise ConfigError(
            f"{str(path)!r} holds a density of shape {rho.shape}, not {pb.rho0.shape}."
        )
    return step, rho


def execute_pde(
    cfg: Config,
    run_dir,
    *,
    resume: bool = False,
    progress: bool = True,
    label: str = "run",
    base=None,
    make_figures: bool = True,
    from_scratch: bool = False,
) -> tuple[np.ndarray, PdeBuilt, dict]:
    """Run (or resume) a pde run into ``run_dir``: (final density, built, summary)."""
    run_dir = Path(run_dir)
    with RunLock(run_dir):
        return _execute(cfg, run_dir, resume, progress, label, base, make_figures, from_scratch)


def _execute(cfg, run_dir, resume, progress, label, base, make_figures, from_scratch):
    from ..runs import progress_printer, resume_state

    pb = build_pde(cfg, base)
    t0 = time.perf_counter()
    point = (
        resume_state(run_dir, pb.config, from_scratch, load=lambda d: _load_density(d, pb))
        if resume
        else None
    )
    names = metric_names(pb)
    writer = _Writer(run_dir, names, pb)
    writer.start(None if point is None else point[0])
    stamped = pb.config.model_copy(update={"mfnn_version": __version__})
    atomic_write_text(run_dir / "config.yaml", dump(stamped))
    write_json(run_dir / "summary.json", {"status": "running", "checks": {}})
    beta = 0.0 if cfg.dynamics.langevin is None else cfg.dynamics.langevin.beta
    show = progress_printer(label) if progress else None
    solver, test, dt = pb.solver, pb.test, pb.dt
    dt_arr = jnp.asarray(dt, pb.rho0.dtype)
    status, message = "completed", None

    def row_of(step, values, i=None):
        row = {k: float(v if i is None else v[i]) for k, v in values.items()}
        return {"step": step, "t": step * dt, "beta": beta, **row}

    if point is None:
        step, rho = 0, pb.rho0
        first = row_of(0, _metrics_now(solver, test, rho, dt_arr))
        writer.on_records([first])
        writer.snapshot(0, rho)
        writer.checkpoint(0, rho)
    else:
        step, rho = point
    last_loss = float("nan")
    try:
        while step < pb.steps:
            todo = min(pb.chunk, pb.steps - step)
            cut = next((s for s in pb.snapshot_steps if s > step), pb.steps)
            if cut < step + todo:  # toward a snapshot step in powers of two of records: few
                n = (cut - step) // pb.every  # compiled lengths, a pure function of `step`
                todo = pb.every * (1 << (n.bit_length() - 1))
            n_rec, rest = divmod(todo, pb.every)
            new_rows, bad = [], None
            if n_rec:
                out, values = _advance(solver, test, rho, dt_arr, n_rec, pb.every)
                for i in range(n_rec):
                    row = row_of(step + (i + 1) * pb.every, values, i)
                    new_rows.append(row)
                    if (bad := _bad(row, pb)) is not None:
                        break
            else:
                out = rho
            if rest and bad is None:
                out, values = _advance(solver, test, out, dt_arr, 1, rest)
                row = row_of(step + todo, values, 0)
                new_rows.append(row)
                bad = _bad(row, pb)
            writer.on_records(new_rows)
            if bad is not None:
                at = new_rows[-1]["step"]
                status = "diverged"
                message = (
                    f"diverged at step {at} (t = {at * dt:g}): {bad}. The density of step "
                    f"{step}, the last chunk within the bounds, is kept as the final state."
                )
                writer.snapshot(step, rho)
                break
            rho, step = out, step + todo
            last_loss = new_rows[-1]["loss"]
            if step % pb.snapshot_every == 0 or step == pb.steps or step in pb.snapshot_steps:
                writer.snapshot(step, rho)
            writer.checkpoint(step, rho)
            if show is not None:
                rate = step / max(time.perf_counter() - t0, 1e-9)
                eta = (pb.steps - step) / max(rate, 1e-9)
                show({"step": step, "steps": pb.steps, "t": step * dt, "loss": last_loss,
                      "steps_per_s": rate, "eta_s": eta})  # fmt: skip
    except KeyboardInterrupt:
        status = "interrupted"
        message = f"interrupted at step {step} (t = {step * dt:g}); continue it with `mfnn resume`."
    metrics = read_metrics(run_dir)
    summary = pde_summary(pb, metrics, status, message, step, time.perf_counter() - t0)
    write_json(run_dir / "summary.json", summary)
    if make_figures and metrics and status != "interrupted":
        from ..plots_pde import pde_figures

        pde_figures(run_dir, metrics, pb)
    return np.asarray(rho), pb, summary


def pde_summary(pb: PdeBuilt, metrics: dict, status, message, step, wall) -> dict:
    checks = {}
    if metrics:
        rel = np.abs(metrics["energy_rel_residual"][1:])
        rel = rel[np.isfinite(rel)]
        if rel.size:
            med = float(np.median(rel))
            checks["energy_identity"] = check(
                med, "median |energy_rel_residual| <= 0.1", med <= 0.1
            )
        err = float(np.max(np.abs(metrics["mass_error"])))
        checks["mass_conservation"] = check(err, f"max |mass - 1| <= {MASS_TOL:g}", err <= MASS_TOL)
        low = float(np.min(metrics["min_density"]))
        checks["positivity"] = check(low, "min density >= 0", low >= 0)
    last = {k: float(v[-1]) for k, v in metrics.items() if k != "step"} if metrics else {}
    return {
        "status": status,
        "message": message,
        "final_loss": last.get("loss"),
        "final_step": int(step),
        "final_t": step * pb.dt,
        "final": last,
        "grid": {
            "cells": list(pb.grid.cells),
            "low": list(pb.grid.low),
            "high": list(pb.grid.high),
            "bounded": pb.grid.bounded,
            "flux": pb.solver.flux,
            "scheme": pb.solver.scheme,
        },  # fmt: skip
        "wall_s": wall,
        "checks": checks,
    }
