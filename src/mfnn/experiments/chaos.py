"""`chaos`: propagation of chaos measured by the synchronous coupling."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from annotated_types import Ge
from pydantic import Field, PositiveFloat

from ..config import Config
from ..stats import loglog_fit
from ..study import CheckSpec, Experiment, Params, Run, Study, check
from .common import Increasing, require

if TYPE_CHECKING:
    from ..build import Built


Widths = Annotated[tuple[Annotated[int, Ge(2)], ...], Increasing]
Times = Annotated[tuple[PositiveFloat, ...], Increasing]
CLAIM = """\
Propagation of chaos (Sznitman 1991; Mei, Montanari and Nguyen 2018, Theorem 3; Chizat and
Bach 2018, Theorem 2.6). Draw m particles theta_j(0) i.i.d. from rho_0 and move them twice:
by their own empirical field (the m-particle gradient flow: theta_j(t), f_m(t)) and by the
field of the limit measure mu(t) (McKean-Vlasov tracers theta~_j(t), i.i.d. with law mu(t)).
This synchronous coupling has, at every fixed t,
    E (1/m) sum_j |theta_j(t) - theta~_j(t)|^2 = O(1/m),   ||f_m(t) - f(t)||_L2 = O(m^-1/2).
W2 to an INDEPENDENT m-sample of mu(t) cannot show this in dimension D > 4: independent
clouds are W2 ~ m^(-1/D) apart (Fournier and Guillin 2015), already at t = 0.

Setup: teacher-student regression on a fixed training set (x ~ N(0, I_4), a 3-neuron tanh
teacher), mean_field students (1/m) sum_j a_j tanh(w_j . x + b_j), D = 6. The limit is a
reference cloud of M = model.width particles whose field moves the tracers (`Tracers`).
Each width m has R_m = max(min_replicas, particles_per_width // m) replicas, drawn
independently of the reference and run both as m-particle systems (`Replicas`) and as
tracers from the same points; copies of the widest tracers follow a nested reference (the
first M/2 reference particles). One compiled loop (`Stack`, sub-run `coupling`), Euler.

Statistics at each t in `times` (and t = 0 for F and W; `mfnn.diagnostics.coupling`): C(m, t)
the mean coupling distance, F(m, t) the RMS function distance to f_M on the test inputs,
W(m, t) the RMS W2 to independent m-samples of the reference, and their log-log slopes
against m (95% CIs). e_M(t), the coupling distance of the nested half's tracers to the
reference's, is the M-reference's own squared error (variance sigma^2 (2/M - 1/M) =
sigma^2 / M); share(t) = e_M / C(m_max, t) bends the coupling slope by at most
log(1 + share) / log(m_max / m_min) (a reference of 2 m_max fails reference_error).
L_M(T) / L_M(0) places T past the kernel phase.
"""


class ChaosParams(Params):
    widths: Widths = Field((16, 32, 64, 128, 256, 512), min_length=3, description="m")
    particles_per_width: int = Field(4096, ge=1, description="R_m = max(min_replicas, this // m)")
    min_replicas: int = Field(32, ge=2, description="the fewest replicas of a width")
    times: Times = Field((5.0, 10.0, 15.0), min_length=1, description="on the record grid")
    slope_tolerance: float = Field(0.15, gt=0, lt=1, description="|slope - claim| <= this")
    reference_share: float = Field(0.2, gt=0, le=1, description="e_M / C(m_max, t) <= this")
    loss_drop: float = Field(0.1, gt=0, le=1, description="L_M(T) / L_M(0) <= this")
    w2_margin: float = Field(0.15, ge=0, lt=0.5, description="slope of W >= -1/2 + this")
    w2_replicas: int = Field(8, ge=1, description="replicas per width for W")

    def check_config(self, cfg: Config) -> None:
        M, dyn, data, every = cfg.model.width or 0, cfg.dynamics, cfg.data, cfg.record.every
        k = [t / dyn.dt for t in self.times]
        grid = all(abs(v - round(v)) <= 1e-9 * v and round(v) % every == 0 for v in k)
        flows = (dyn.kind, dyn.langevin, dyn.birth_death) == ("gradient_flow", None, None)
        require(
            "chaos",
            ("model.init.path", "unset (the reference is drawn from `model.init`)",
             cfg.model.init.path is None, cfg.model.init.path),
            ("model.width", f"even, >= 2 * {self.widths[-1]} and >> it (the reference M)",
             M >= 2 * self.widths[-1] and M % 2 == 0, M),
            ("experiment.params.times", f"multiples of dynamics.dt * record.every = "
             f"{dyn.dt * every:g} up to the end", grid and max(k) <= dyn.steps, self.times),
            ("model.scaling", "mean_field", cfg.model.scaling == "mean_field", cfg.model.scaling),
            ("dynamics.kind`, `dynamics.langevin`, `dynamics.birth_death",
             "gradient_flow, unset, unset (deterministic flows)", flows, dyn.kind),
            ("data.population`, `data.target", "unset, not zero (an empirical risk)",
             data.population is None and data.target != "zero", data.target),
            ("data.n_test", ">= 1 (F is an L2 norm on the test inputs)",
             data.test_path is not None or data.n_test >= 1, data.n_test),
        )  # fmt: skip


def layout(p: ChaosParams, M: int) -> dict[str, Any]:
    """The replicas R_m of each width, the row ranges of the coupling run's state and the
    `Stack` sizes. Rows: the reference (M), the tracers of each width (R_m m, replica major),
    the nested half reference (M/2), copies of the widest tracers, the m-systems of each
    width. Parts: `Tracers` of the reference, of the half reference, `Replicas` of each width.

    Example:
        >>> lay = layout(ChaosParams(widths=(2, 4, 8), particles_per_width=8, min_replicas=2), 16)
        >>> lay["replicas"], lay["sizes"], lay["tracers"][4], lay["systems"][2]
        ({2: 4, 4: 2, 8: 2}, [48, 24, 8, 8, 16], (24, 32), (72, 80))
    """
    n, wide = len(p.widths), p.widths[-1]
    reps = {m: max(p.min_replicas, p.particles_per_width // m) for m in p.widths}
    rows = [reps[m] * m for m in p.widths]
    ends = list(itertools.accumulate([*rows, M // 2, reps[wide] * wide, *rows], initial=M))
    spans = list(zip(ends[:-1], ends[1:], strict=True))
    return {
        "replicas": reps,
        "reference": (0, M),
        "tracers": dict(zip(p.widths, spans[:n], strict=True)),
        "half_reference": spans[n],
        "half_tracers": spans[n + 1],
        "systems": dict(zip(p.widths, spans[n + 2 :], strict=True)),
        "sizes": [M + sum(rows), M // 2 + rows[-1], *rows],
        "rows": ends[-1],
    }


def couple(built: Built, lay: dict[str, Any]) -> Built:
    """``built`` with the coupling run's `Stack` and initial rows (as in `layout`): the
    reference is ``built.theta0``; the tracers of width m are R_m m i.i.d. draws from rho_0
    with the key fold_in(fold_in(key(seed), 1000), m), independent of the reference; the
    half reference and the m-systems are copies (the same initial points)."""
    import jax
    import jax.numpy as jnp

    from ..build import init_laws
    from ..dynamics.tracers import Replicas, Stack, Tracers
    from ..measure import sample_particles

    cfg, flow, ref = built.config, built.dynamics, jnp.asarray(built.theta0)
    M, sizes, laws = ref.shape[0], lay["sizes"], init_laws(cfg.model.init)
    root = jax.random.fold_in(jax.random.key(cfg.seed), 1000)
    draws = [
        sample_particles(built.model, reps * m, laws, jax.random.fold_in(root, m), ref.dtype)
        for m, reps in lay["replicas"].items()
    ]
    tracers = (Tracers(flow, sizes[0] - M), Tracers(flow, sizes[1] - M // 2))
    parts = (*tracers, *(Replicas(flow, reps) for reps in lay["replicas"].values()))
    theta0 = jnp.concatenate([ref, *draws, ref[: M // 2], draws[-1], *draws])
    return dataclasses.replace(built, dynamics=Stack(parts, tuple(sizes)), theta0=theta0)


def plan(s: Study[ChaosParams]) -> dict[str, Run]:
    p, cfg = s.params, s.config
    lay = layout(p, cfg.model.width)
    steps = [round(t / cfg.dynamics.dt) for t in p.times]
    # experiment.params of the sub-run: what fixes the stacked state (a change makes it stale)
    fixed = {"widths": list(p.widths), "replicas": list(lay["replicas"].values())}
    fixed["sizes"] = lay["sizes"]
    changes = {"record.snapshot_every": math.gcd(*steps), "experiment.params": fixed}
    customize = functools.partial(couple, lay=lay)
    return {"coupling": Run(s.sub_config("coupling", changes), customize=customize)}


def snapshot_statistics(r, p: ChaosParams, lay: dict, step: int, rng) -> dict[str, Any]:
    """`synchronous_coupling` of each width (lists) at one snapshot; e_M and its share."""
    from ..diagnostics import coupling_distance, synchronous_coupling

    state = r.particles(step)
    ref, out = state[slice(*lay["reference"])], {}
    for m in p.widths:
        shape = (lay["replicas"][m], m, state.shape[1])
        sys_, tr = (state[slice(*lay[k][m])].reshape(shape) for k in ("systems", "tracers"))
        stats = synchronous_coupling(r.model, sys_, tr, ref, r.built.test.x, rng, p.w2_replicas)
        for key, value in stats.items():
            out.setdefault(key, []).append(value)
    wide = state[slice(*lay["tracers"][p.widths[-1]])]
    err = float(coupling_distance(state[slice(*lay["half_tracers"])], wide))
    c = out["coupling"][-1]
    return out | {"reference_error": err, "reference_share": err / c if c > 0 else math.nan}


def analyze(s: Study[ChaosParams], runs) -> dict[str, Any]:
    p, r = s.params, runs["coupling"]
    lay = layout(p, s.config.model.width)
    want = {0.0: 0, **{t: round(t / r.dt) for t in p.times}}
    missing = [t for t, k in want.items() if k not in set(r.snapshot_steps())]
    if missing:  # a diverged (or cut) run: nothing to fit, say so
        return {"missing_times": missing, "message": r.summary.get("message")}
    rng = np.random.default_rng(s.config.seed)
    per_t = {t: snapshot_statistics(r, p, lay, k, rng) for t, k in want.items()}
    fitted = ("coupling", "function", "w2_independent", "w2_tracers")
    fits = {k: {f"{t:g}": loglog_fit(p.widths, v[k]) for t, v in per_t.items()} for k in fitted}
    mt = r.metrics
    loss = {f"{t:g}": float(np.interp(t, mt["t"], mt["loss"])) for t in want}
    loss0 = float(mt["loss"][0])
    kept = [k for k in per_t[0.0] if not k.startswith("reference")]  # the lists over widths
    return {
        "final_loss": float(mt["loss"][-1]),
        "M": s.config.model.width,
        "D": r.model.dim,
        "widths": list(p.widths),
        "replicas": list(lay["replicas"].values()),
        "times": list(want),
        "loss": loss,
        "loss_ratio": loss[f"{p.times[-1]:g}"] / loss0 if loss0 > 0 else math.nan,
        "statistics": {k: {f"{t:g}": v[k] for t, v in per_t.items()} for k in kept},
        "slopes": {k: {t: f.slope for t, f in d.items()} for k, d in fits.items()},
        "slope_ci95": {k: {t: list(f.ci) for t, f in d.items()} for k, d in fits.items()},
        "reference_error": {f"{t:g}": per_t[t]["reference_error"] for t in p.times},
        "reference_share": {f"{t:g}": per_t[t]["reference_share"] for t in p.times},
        "runs": {"coupling": {"rows": lay["rows"], "sizes": lay["sizes"]}},
        "_per_t": per_t,
    }


def evaluate(s: Study[ChaosParams], stats: dict[str, Any]) -> dict[str, dict]:
    """The checks of the CLAIM from the summary's statistics (tests doctor them)."""
    if "missing_times" in stats:
        missing = f"missing t = {stats['missing_times']}: {stats.get('message')}"
        return {"run_completed": check(False, f"the run reaches every time ({missing})", False)}
    p, slopes, checks = s.params, stats["slopes"], {}
    tol, floor, share = p.slope_tolerance, -0.5 + p.w2_margin, p.reference_share
    for t in (f"{t:g}" for t in p.times):
        for key, claim, what in (("coupling", -1.0, "C"), ("function", -0.5, "F")):
            v = slopes[key][t]
            rule = f"|slope of log {what}(m, t={t}) vs log m - ({claim:g})| <= {tol:g}"
            checks[f"{key}_slope_t{t}"] = check(v, rule, abs(v - claim) <= tol)
        v = stats["reference_share"][t]
        rule = f"e_M / C(m_max, t={t}) <= {share:g} (the reference's own error is small)"
        checks[f"reference_error_t{t}"] = check(v, rule, v <= share)
    for t in ["0", *(f"{t:g}" for t in p.times)]:
        v = slopes["w2_independent"][t]
        rule = f"slope of log W(m, t={t}) vs log m >= {floor:g} (-1/D = {-1 / stats['D']:.3g})"
        checks[f"w2_independent_slope_t{t}"] = check(v, rule, v >= floor)
    v = stats["loss_ratio"]
    rule = f"L_M(T) / L_M(0) <= {p.loss_drop:g} (T is in the nonlinear regime)"
    checks["nonlinear_regime"] = check(v, rule, v <= p.loss_drop)
    return checks


def figures(s: Study[ChaosParams], stats: dict[str, Any], runs) -> list:
    """coupling.png: C (dotted: e_M) and F against m at each t; W at t = 0 and T against the
    RMS coupling and W2 to the tracer cloud at T."""
    from ..plots import loglog_fits, plt, save_figure

    if "missing_times" in stats:
        return []
    per_t, widths, T = stats["_per_t"], s.params.widths, s.params.times[-1]
    colors = dict(zip(per_t, plt.cm.viridis(np.linspace(0.1, 0.85, len(per_t))), strict=True))
    fig, ax = plt.subplots(1, 3, figsize=(16, 5.1), layout="constrained")
    times = [t for t in per_t if t > 0]
    loglog_fits(ax[0], widths, [(f"t = {t:g}", per_t[t]["coupling"], colors[t]) for t in times])
    for t in times:
        ax[0].axhline(per_t[t]["reference_error"], color=colors[t], ls=":", lw=1)
    series = [(f"t = {t:g}", v["function"], colors[t]) for t, v in per_t.items()]
    loglog_fits(ax[1], widths, series, guide=(-0.5, "slope -1/2"))
    series = [
        ("W, t = 0", per_t[0.0]["w2_independent"], "#e59866"),
        (f"W, t = {T:g}", per_t[T]["w2_independent"], "#c0392b"),
        ("RMS coupling", np.sqrt(per_t[T]["coupling_w2_replicas"]), "#2471a3"),
        ("W2 to the tracer cloud", per_t[T]["w2_tracers"], "#27ae60"),
    ]
    loglog_fits(ax[2], widths, series, guide=(-1.0 / stats["D"], "m^(-1/D)"))
    ax[0].set(
        xlabel="width m",
        ylabel="coupling distance C(m, t)",
        title="coupling (dotted: reference error e_M)",
    )
    ax[1].set(xlabel="width m", ylabel="||f_m(t) - f_M(t)||_L2", title="function distance")
    ax[2].set(
        xlabel="width m",
        ylabel="distance between clouds (W2, RMS coupling)",
        title="independent clouds: the sampling floor",
    )
    fig.suptitle(
        "propagation of chaos: coupling O(1/m), function distance O(m^-1/2); "
        "W2 of independent clouds stalls near m^(-1/D)"
    )
    return [save_figure(fig, s.figure_path("coupling.png"))]


CHAOS = Experiment(
    name="chaos",
    summary="propagation of chaos: synchronous coupling O(1/m), function distance "
    "O(m^-1/2), W2 of independent clouds stuck near m^(-1/D)",
    claim=CLAIM,
    params=ChaosParams,
    quick=(
        "model.width=2048",
        "experiment.params.widths=[8, 16, 32, 64, 128]",
        "experiment.params.particles_per_width=1024",
        "experiment.params.min_replicas=8",
        "experiment.params.times=[2.0, 4.0, 6.0, 10.0]",
        "dynamics.steps=50",
    ),
    checks=(
        CheckSpec("coupling_slope_t*", "|slope of log C(m, t) vs log m + 1| <= slope_tolerance"),
        CheckSpec("function_slope_t*", "|slope of log F(m, t) vs log m + 1/2| <= slope_tolerance"),
        CheckSpec("reference_error_t*", "share(t) = e_M(t) / C(m_max, t) <= reference_share"),
        CheckSpec("w2_independent_slope_t*", "slope of log W(m, t) vs log m >= -1/2 + w2_margin"),
        CheckSpec("nonlinear_regime", "L_M(T) / L_M(0) <= loss_drop"),
        CheckSpec("run_completed", "reported only when the coupling run misses a statistic time"),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
