"""`chaos`: propagation of chaos measured by the synchronous coupling."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, field_validator

from ..build import Built, init_laws
from ..config import Config
from ..diagnostics.transport import w2_exact
from ..dynamics.tracers import Replicas, Stack, Tracers
from ..errors import ConfigError
from ..measure import sample_particles
from ..stats import loglog_fit
from ..study import CheckSpec, Experiment, Params, Run, Study, check

CLAIM = """\
Propagation of chaos (Sznitman 1991; Mei, Montanari and Nguyen 2018, Theorem 3; Chizat and
Bach 2018, Theorem 2.6). Draw m particles theta_j(0) i.i.d. from rho_0 and move them twice:
(i) by their own empirical field (the m-particle gradient flow), giving theta_j(t) and
f_m(t); (ii) by the field of the limit measure mu(t), d theta~_j/dt =
-grad dR/dmu[mu(t)](theta~_j) (McKean-Vlasov particles, i.i.d. with law mu(t)). This
synchronous coupling has, at every fixed t,
    E (1/m) sum_j |theta_j(t) - theta~_j(t)|^2 = O(1/m),   ||f_m(t) - f(t)||_L2 = O(m^-1/2).
W2 between the m-particle measure and an INDEPENDENT m-sample of mu(t) cannot show this in
dimension D > 4: two independent clouds are W2 ~ m^(-1/D) apart (Fournier and Guillin
2015), already at t = 0.

Setup: teacher-student regression on a fixed training set (x ~ N(0, I_4), a 3-neuron tanh
teacher); mean_field students f = (1/m) sum_j a_j tanh(w_j . x + b_j), a particle is
(a, w, b), D = 6; rho_0 from `model.init`. The limit mu(t) is a reference cloud of
M = model.width particles; `mfnn.dynamics.tracers.Tracers` moves the tracers by the
reference's field without acting on it. For each width m in `widths`,
R_m = max(min_replicas, particles_per_width // m) replicas drawn independently of the
reference run as m-particle systems (`Replicas`) and as tracers from the same initial
points. A nested reference (the first M/2 reference particles) carries copies of the
widest tracers. One compiled loop (`Stack`, sub-run `coupling`), explicit Euler.

Statistics at each t in `times` (t = 0 too for F and W):
- C(m, t) = mean over replicas of (1/m) sum_j |theta_j(t) - theta~_j(t)|^2;
- F(m, t) = sqrt(mean over replicas of ||f_m(t) - f_M(t)||^2), L2 on the test inputs;
- W(m, t) = sqrt(mean over `w2_replicas` replicas of W2^2(mu_m(t), nu_m(t))), nu_m(t)
  m reference particles drawn without replacement (exact W2 by assignment);
- slopes: least-squares slopes of log C, log F, log W against log m, with 95% CIs;
- e_M(t) = mean over the widest tracers of |theta~^{M/2}_j(t) - theta~^M_j(t)|^2: the
  nested half's field error has variance sigma^2 (2/M - 1/M) = sigma^2 / M, the squared
  error of the M-reference's own tracers; share(t) = e_M(t) / C(m_max, t). A share s bends
  the coupling slope by at most log(1 + s) / log(m_max / m_min).

Checks (thresholds are params): the slopes of C and F within slope_tolerance of -1 and
-1/2; share(t) <= reference_share (M large enough not to bend them); W's slope >= -1/2 +
w2_margin (flatter than the coupling's); L_M(T) / L_M(0) <= loss_drop (T is past the
kernel phase). A reference only twice the widest m (share 0.2-0.3) fails reference_error.
"""


class ChaosParams(Params):
    widths: tuple[int, ...] = Field(
        (16, 32, 64, 128, 256, 512), min_length=3, description="m: increasing widths >= 2"
    )
    particles_per_width: int = Field(
        4096, ge=1, description="R_m = max(min_replicas, particles_per_width // m) replicas"
    )
    min_replicas: int = Field(32, ge=2, description="the fewest replicas of a width")
    times: tuple[float, ...] = Field(
        (5.0, 10.0, 15.0),
        min_length=1,
        description="statistic times t > 0, increasing multiples of dynamics.dt * record.every",
    )
    slope_tolerance: float = Field(0.15, gt=0, lt=1, description="|slope - claim| <= this")
    reference_share: float = Field(0.2, gt=0, le=1, description="e_M / C(m_max, t) <= this")
    loss_drop: float = Field(0.1, gt=0, le=1, description="L_M(T) / L_M(0) <= this")
    w2_margin: float = Field(
        0.15, ge=0, lt=0.5, description="W2 slope of independent clouds >= -1/2 + this"
    )
    w2_replicas: int = Field(8, ge=1, description="replicas per width for the W2 statistics")

    @field_validator("widths", "times")
    @classmethod
    def _increasing(cls, v: tuple, info) -> tuple:
        widths = info.field_name == "widths"
        bounded = v[0] >= 2 if widths else v[0] > 0
        if not bounded or any(a >= b for a, b in zip(v[:-1], v[1:], strict=True)):
            rule = ">= 2" if widths else "> 0"
            raise ValueError(f"must be strictly increasing, each {rule}; got {list(v)}")
        return v

    def check_config(self, cfg: Config) -> None:
        M, wide, dyn, data = cfg.model.width, self.widths[-1], cfg.dynamics, cfg.data
        if cfg.model.init.path is not None:
            raise ConfigError(
                "chaos draws the reference from the laws of `model.init`: `model.init.path` "
                f"must be unset; got {cfg.model.init.path!r}."
            )
        if M is None or M < 2 * wide or M % 2:
            raise ConfigError(
                f"`model.width` (the reference size M) must be even and at least twice the "
                f"largest width ({wide}), and should be >> it; got {M}."
            )
        for t in self.times:
            k = t / dyn.dt
            if abs(k - round(k)) > 1e-9 * k or round(k) % cfg.record.every or k > dyn.steps:
                raise ConfigError(
                    f"`experiment.params.times`: each t must be a multiple of `dynamics.dt` * "
                    f"`record.every` = {dyn.dt * cfg.record.every:g} and at most "
                    f"`dynamics.steps` * `dynamics.dt` = {dyn.steps * dyn.dt:g}; got {t!r}."
                )
        if cfg.model.scaling != "mean_field":
            raise ConfigError(
                "chaos is the mean-field limit: `model.scaling` must be mean_field; got "
                f"{cfg.model.scaling!r}."
            )
        if dyn.kind != "gradient_flow" or dyn.langevin or dyn.birth_death:
            raise ConfigError(
                "chaos couples deterministic flows: `dynamics.kind: gradient_flow` without "
                f"`dynamics.langevin` or `dynamics.birth_death`; got kind {dyn.kind!r}."
            )
        if data.population is not None or data.target == "zero":
            raise ConfigError(
                "chaos needs an empirical risk: remove `data.population` (its closed form "
                f"costs O(M^2) a step) and use a target other than zero; got {data.target!r}."
            )
        if data.test_path is None and data.n_test < 1:
            raise ConfigError(
                "`data.n_test` must be >= 1: the function distance is an L2 norm on test "
                f"inputs; got {data.n_test}."
            )


# ------------------------------------------------------------------------- layout


def layout(p: ChaosParams, M: int) -> dict[str, Any]:
    """The replicas R_m = max(min_replicas, particles_per_width // m) of each width, the
    row ranges of the coupling run's state and the `Stack` sizes.

    Parts: 0: `Tracers` (M reference rows, then the tracers of every width, replica
    major); 1: `Tracers` (the first M/2 reference particles, then copies of the tracers
    of the widest m); 2..: `Replicas` of each width (the same initial points as its
    tracers).

    Example:
        >>> lay = layout(ChaosParams(widths=(2, 4, 8), particles_per_width=8, min_replicas=2), 16)
        >>> lay["replicas"], lay["sizes"], lay["tracers"][4], lay["systems"][2]
        ({2: 4, 4: 2, 8: 2}, [48, 24, 8, 8, 16], (24, 32), (72, 80))
    """
    reps = {m: max(p.min_replicas, p.particles_per_width // m) for m in p.widths}
    rows = {m: reps[m] * m for m in p.widths}
    wide = p.widths[-1]
    out: dict[str, Any] = {"replicas": reps, "reference": (0, M), "tracers": {}, "systems": {}}
    start = M

    def take(n: int) -> tuple[int, int]:
        nonlocal start
        start += n
        return start - n, start

    for m in p.widths:
        out["tracers"][m] = take(rows[m])
    out["half_reference"] = take(M // 2)
    out["half_tracers"] = take(rows[wide])
    for m in p.widths:
        out["systems"][m] = take(rows[m])
    out["sizes"] = [M + sum(rows.values()), M // 2 + rows[wide], *rows.values()]
    out["rows"] = start
    return out


def couple(built: Built, p: ChaosParams, lay: dict[str, Any]) -> Built:
    """``built`` with the coupling run's dynamics and initial rows (as in `layout`).

    The `Stack` of the reference with all tracers, the nested half reference with copies
    of the widest tracers, and the `Replicas` of each width. Rows: the reference
    (``built.theta0``, M rows), the tracers of each width (R_m m i.i.d. draws from rho_0
    with the key fold_in(fold_in(key(seed), 1000), m), independent of the reference), the
    first M/2 reference rows, copies of the widest tracers, and the m-systems (copies of
    the tracers: the same initial points)."""
    cfg, flow, ref = built.config, built.dynamics, jnp.asarray(built.theta0)
    M, sizes, laws = ref.shape[0], lay["sizes"], init_laws(cfg.model.init)
    root = jax.random.fold_in(jax.random.key(cfg.seed), 1000)
    draws = [
        sample_particles(
            built.model, lay["replicas"][m] * m, laws, jax.random.fold_in(root, m), ref.dtype
        )
        for m in p.widths
    ]
    parts = (
        Tracers(flow, sizes[0] - M),
        Tracers(flow, sizes[1] - M // 2),
        *(Replicas(flow, lay["replicas"][m]) for m in p.widths),
    )
    theta0 = jnp.concatenate([ref, *draws, ref[: M // 2], draws[-1], *draws])
    return dataclasses.replace(built, dynamics=Stack(parts, tuple(sizes)), theta0=theta0)


def plan(s: Study[ChaosParams]) -> dict[str, Run]:
    p, cfg = s.params, s.config
    lay = layout(p, cfg.model.width)
    steps = [round(t / cfg.dynamics.dt) for t in p.times]
    # experiment.params of the sub-run: what fixes the stacked state (a change makes it stale)
    fixed = {"widths": list(p.widths), "replicas": list(lay["replicas"].values())}
    changes = {
        "record.snapshot_every": math.gcd(*steps),
        "experiment.params": fixed | {"sizes": lay["sizes"]},
    }
    customize = functools.partial(couple, p=p, lay=lay)
    return {"coupling": Run(s.sub_config("coupling", changes), customize=customize)}


# --------------------------------------------------------------------- statistics


def time_statistics(
    state: np.ndarray,
    model,
    x_test,
    p: ChaosParams,
    lay: dict[str, Any],
    rng: np.random.Generator,
    with_coupling: bool = True,
) -> dict[str, Any]:
    """The statistics of one snapshot ``state`` (rows as in `layout`) of the coupling run.

    Returns lists over the widths: ``coupling`` C(m) = mean over replicas of
    (1/m) sum_j |theta_j - theta~_j|^2, ``coupling_rse`` (its relative standard error over
    replicas), ``function`` F(m) (root mean over replicas of the mean over ``x_test`` of
    (f_m - f_M)^2), ``w2_independent`` (root mean W2^2 to independent m-samples of the
    reference, over the first ``w2_replicas`` replicas), ``w2_tracers`` (the same to each
    replica's own tracer cloud; 0 unless ``with_coupling``) and ``coupling_w2_replicas``
    (C over those replicas); and the scalars ``reference_error`` e_M and
    ``reference_share`` e_M / C(m_max).
    """
    ref = state[slice(*lay["reference"])]
    dim = state.shape[1]
    f_ref = np.asarray(model.predict(jnp.asarray(ref), x_test))
    predict = jax.vmap(lambda t: model.predict(t, x_test))
    keys = ("coupling", "coupling_rse", "function", "w2_independent", "w2_tracers")
    out: dict[str, Any] = {k: [] for k in (*keys, "coupling_w2_replicas")}
    for m in p.widths:
        r = lay["replicas"][m]
        sys_ = state[slice(*lay["systems"][m])].reshape(r, m, dim)
        tr = state[slice(*lay["tracers"][m])].reshape(r, m, dim)
        per = np.mean(np.sum((sys_ - tr) ** 2, axis=-1), axis=1)  # (R,)
        mean = float(per.mean())
        out["coupling"].append(mean)
        rse = float(per.std(ddof=1) / mean / math.sqrt(r)) if mean > 0 else float("nan")
        out["coupling_rse"].append(rse)
        f = np.asarray(predict(jnp.asarray(sys_)))
        out["function"].append(float(np.sqrt(np.mean((f - f_ref[None, :]) ** 2))))
        w_ind, w_tr = [], []
        for k in range(min(r, p.w2_replicas)):
            sample = ref[rng.choice(ref.shape[0], m, replace=False)]
            w_ind.append(w2_exact(sys_[k], sample, squared=True))
            if with_coupling:
                w_tr.append(w2_exact(sys_[k], tr[k], squared=True))
        out["w2_independent"].append(float(np.sqrt(np.mean(w_ind))))
        out["w2_tracers"].append(float(np.sqrt(np.mean(w_tr))) if w_tr else 0.0)
        # the coupling of the same replicas: W2 to the tracer cloud is at most its root
        out["coupling_w2_replicas"].append(float(per[: len(w_ind)].mean()))
    half = state[slice(*lay["half_tracers"])]
    full = state[slice(*lay["tracers"][p.widths[-1]])]
    err = float(np.mean(np.sum((half - full) ** 2, axis=-1)))
    c_wide = out["coupling"][-1]
    out["reference_error"] = err
    out["reference_share"] = err / c_wide if c_wide > 0 else float("nan")
    return out


def analyze(s: Study[ChaosParams], runs) -> dict[str, Any]:
    p, r = s.params, runs["coupling"]
    lay = layout(p, s.config.model.width)
    want = {0.0: 0, **{t: round(t / r.dt) for t in p.times}}
    have = set(r.snapshot_steps())
    missing = [t for t, k in want.items() if k not in have]
    if missing:  # a diverged (or cut) run: nothing to fit, say so
        return {"missing_times": missing, "message": r.summary.get("message")}
    model, x_test = r.model, r.built.test.x
    rng = np.random.default_rng(s.config.seed)
    per_t = {
        t: time_statistics(r.particles(k), model, x_test, p, lay, rng, with_coupling=t > 0)
        for t, k in want.items()
    }
    fits = {
        key: {f"{t:g}": loglog_fit(p.widths, v[key]) for t, v in per_t.items()}
        for key in ("coupling", "function", "w2_independent", "w2_tracers")
    }
    mt = r.metrics
    loss_at = {f"{t:g}": float(np.interp(t, mt["t"], mt["loss"])) for t in want}
    loss0 = float(mt["loss"][0])
    by_time = {k: {f"{t:g}": v[k] for t, v in per_t.items()} for k in per_t[0.0]}
    return {
        "final_loss": float(mt["loss"][-1]),
        "M": s.config.model.width,
        "D": model.dim,
        "widths": list(p.widths),
        "replicas": list(lay["replicas"].values()),
        "times": list(want),
        "loss": loss_at,
        "loss_ratio": loss_at[f"{p.times[-1]:g}"] / loss0 if loss0 > 0 else float("nan"),
        "statistics": {k: by_time[k] for k in (*by_time,) if not k.startswith("reference")},
        "slopes": {k: {t: f.slope for t, f in d.items()} for k, d in fits.items()},
        "slope_ci95": {k: {t: list(f.ci) for t, f in d.items()} for k, d in fits.items()},
        "reference_error": {f"{t:g}": per_t[t]["reference_error"] for t in p.times},
        "reference_share": {f"{t:g}": per_t[t]["reference_share"] for t in p.times},
        "runs": {"coupling": {"rows": lay["rows"], "sizes": lay["sizes"]}},
        "_per_t": per_t,
        "_metrics": mt,
    }


def evaluate(s: Study[ChaosParams], stats: dict[str, Any]) -> dict[str, dict]:
    """The checks of the CLAIM from the summary's statistics (tests doctor them)."""
    p, slopes, checks = s.params, stats.get("slopes"), {}
    if "missing_times" in stats:
        missing = f"missing t = {stats['missing_times']}: {stats.get('message')}"
        return {"run_completed": check(False, f"the run reaches every time ({missing})", False)}
    ts, tol, bound = [f"{t:g}" for t in p.times], p.slope_tolerance, -0.5 + p.w2_margin
    for t in ts:
        for key, claim, what in (("coupling", -1.0, "C(m, t)"), ("function", -0.5, "F(m, t)")):
            v = slopes[key][t]
            checks[f"{key}_slope_t{t}"] = check(
                v,
                f"|slope of log {what} against log m - ({claim:g})| <= {tol:g} at t = {t}",
                math.isfinite(v) and abs(v - claim) <= tol,
            )
        v = stats["reference_share"][t]
        checks[f"reference_error_t{t}"] = check(
            v,
            f"e_M / C(m_max, t={t}) <= {p.reference_share:g} (the M-reference's own error, "
            "from the nested M/2 reference, is small against the widest coupling)",
            math.isfinite(v) and v <= p.reference_share,
        )
    for t in ["0", *ts]:
        v = slopes["w2_independent"][t]
        checks[f"w2_independent_slope_t{t}"] = check(
            v,
            f"slope of log W(m, t={t}) (W2 to an independent m-sample of mu_M) against log m "
            f">= {bound:g} (flatter than the coupling's -1/2; theory -1/D = "
            f"{-1.0 / stats['D']:.3g})",
            math.isfinite(v) and v >= bound,
        )
    v = stats["loss_ratio"]
    checks["nonlinear_regime"] = check(
        v,
        f"L_M(T) / L_M(0) <= {p.loss_drop:g} (the last time is in the nonlinear regime)",
        math.isfinite(v) and v <= p.loss_drop,
    )
    return checks


def figures(s: Study[ChaosParams], stats: dict[str, Any], runs) -> list:
    """coupling.png (C, F and the reference's loss), w2_independent.png (W against the
    coupling at t = 0 and T)."""
    from ..plots import loglog_fits, plt, save_figure

    if "missing_times" in stats:
        return []
    per_t, widths, times = stats["_per_t"], s.params.widths, s.params.times
    colors = dict(zip(times, plt.cm.viridis(np.linspace(0.1, 0.85, len(times))), strict=True))
    fig, ax = plt.subplots(1, 3, figsize=(16, 4.8))
    loglog_fits(ax[0], widths, [(f"t = {t:g}", per_t[t]["coupling"], c) for t, c in colors.items()])
    for t, c in colors.items():
        ax[0].axhline(per_t[t]["reference_error"], color=c, ls=":", lw=1)
    ax[0].set(xlabel="m", ylabel="C(m, t)", title="coupling (dotted: reference error e_M)")
    fcolors = plt.cm.magma(np.linspace(0.1, 0.8, len(per_t)))
    series = [
        (f"t = {t:g}", v["function"], c) for (t, v), c in zip(per_t.items(), fcolors, strict=True)
    ]
    loglog_fits(ax[1], widths, series, guide=(-0.5, "slope -1/2"))
    ax[1].set(xlabel="m", ylabel="||f_m(t) - f_M(t)||", title="function distance")
    mt = stats["_metrics"]
    keep = mt["loss"] > 0
    ax[2].semilogy(mt["t"][keep], mt["loss"][keep], label=f"reference, M = {stats['M']}")
    for t, c in colors.items():
        ax[2].axvline(t, color=c, ls=":", lw=1)
    ax[2].set(xlabel="t", ylabel="training risk L_M(t)", title="the flow (statistic times)")
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    paths = [save_figure(fig, s.figure_path("coupling.png"))]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, t in zip(axes, (0.0, times[-1]), strict=True):
        v = per_t[t]
        series = [("W2, independent clouds", v["w2_independent"], "#c0392b")]
        if t > 0:
            series += [
                ("RMS coupling", np.sqrt(v["coupling_w2_replicas"]), "#2471a3"),
                ("W2 to the tracer cloud", v["w2_tracers"], "#27ae60"),
            ]
        loglog_fits(ax, widths, series, guide=(-1.0 / stats["D"], "m^(-1/D)"))
        ax.set(xlabel="m", ylabel="distance", title=f"t = {t:g}")
    fig.suptitle("W2 between independent clouds measures the sampling floor, not the dynamics")
    fig.tight_layout()
    return paths + [save_figure(fig, s.figure_path("w2_independent.png"))]


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
