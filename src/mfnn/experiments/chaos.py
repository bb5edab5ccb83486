"""`chaos`: propagation of chaos measured by the synchronous coupling (seed 000's mean-field
limit theorem, seed 001 Theorem 2.3; THEORY.md section 7)."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..build import build  # noqa: E402
from ..config import Config, ExperimentSpec, LawSpec, dump  # noqa: E402
from ..diagnostics.transport import w2_exact  # noqa: E402
from ..dynamics.tracers import Replicas, Stack, Tracers  # noqa: E402
from ..errors import ConfigError  # noqa: E402
from ..measure import Constant, Gaussian, Uniform, load_particles, sample_particles  # noqa: E402
from ..plots import save_figure, width_axis  # noqa: E402
from ..rundir import (  # noqa: E402
    atomic_write_text,
    check,
    list_snapshots,
    read_metrics,
    run_dir_status,
    write_json,
)
from ..runs import execute  # noqa: E402
from .base import (  # noqa: E402
    Experiment,
    experiment_params,
    integer_param,
    is_integer,
    is_number,
    loglog_slope,
    number_param,
    write_summary,
)

CLAIM = """\
Propagation of chaos (seed 000, mean-field limit theorem; seed 001, Theorem 2.3 after
Chizat-Bach and Mei-Montanari-Nguyen; THEORY.md section 7). Draw m particles theta_j(0)
i.i.d. from rho_0 and move them twice: (i) by their own empirical field (the ordinary
m-particle gradient flow), giving theta_j(t) and f_m(t); (ii) by the field of the limit
measure mu(t), d theta~_j/dt = -grad dR/dmu[mu(t)](theta~_j) (the McKean-Vlasov particles,
i.i.d. with law mu(t)). This synchronous coupling has
    E (1/m) sum_j |theta_j(t) - theta~_j(t)|^2 = O(1/m),   ||f_m(t) - f(t)||_L2 = O(m^-1/2)
at every fixed t. W2 between the m-particle measure and an INDEPENDENT m-sample of mu(t)
cannot show this in dimension D > 4: it is bounded below by the sampling floor of two
independent clouds, which decays like m^(-1/D) (already at t = 0, where mu_m(0) and mu(0)
differ by sampling alone).

Setup: teacher-student regression on n_train = 128 inputs x ~ N(0, I_4) (a fixed training
set: the empirical risk is the energy, the same for every system), a 3-neuron tanh
teacher with bias and output weights, students f = (1/m) sum_j a_j tanh(w_j . x + b_j)
(mean_field; a particle is (a, w, b), D = d + 2 = 6), rho_0: a ~ N(0, 1), w ~ N(0, I),
b ~ U(-1, 1). The limit mu(t) is represented by a reference cloud of M = model.width =
16384 particles run with the same flow (mfnn.dynamics.tracers.Tracers: its rows move by
their own M-particle field; the tracers by the reference's field and do not act on it).
For each width m in experiment.params.widths (16 .. 512), R_m = max(min_replicas,
particles_per_width // m) independent replicas (4096 particles per width, at least 32
replicas) are drawn independently of the reference and run as ordinary m-particle
systems (mfnn.dynamics.tracers.Replicas, vmapped) and as tracers of the reference. A
second reference made of the first M/2 reference particles (nested) carries copies of
the tracers of the widest m. Everything is stepped in one compiled loop
(mfnn.dynamics.tracers.Stack, run directory runs/coupling): explicit Euler, the same
dt = 0.2 for all systems, T = 15 (75 steps; 123k rows in all).

Statistics at each time t in experiment.params.times (5, 10, 15; t = 0 also for F and
W2):
- coupling C(m, t) = mean over replicas of (1/m) sum_j |theta_j(t) - theta~_j(t)|^2;
- function distance F(m, t) = sqrt(mean over replicas of ||f_m(t) - f_M(t)||^2), the
  L2(P) norm on the n_test = 1024 test inputs (fresh x ~ N(0, I_4));
- W(m, t) = sqrt(mean over w2_replicas (8) replicas of W2^2(mu_m(t), nu_m(t))), nu_m(t)
  the uniform measure on m reference particles drawn without replacement (independent
  of the m-system); exact W2 of equal-size uniform clouds by assignment
  (mfnn.diagnostics.w2_exact); W2(mu_m(t), tracer cloud) is reported too;
- slopes: least-squares slopes of log C, log F, log W against log m;
- reference error e_M(t) = mean over the tracers of the widest m of
  |theta~^{M/2}_j(t) - theta~^M_j(t)|^2. With the nested half, the field errors give
  E e_M = sigma^2 (2/M - 1/M) = sigma^2 / M: the squared error of the M-reference's own
  tracers (to first order). share(t) = e_M(t) / C(m_max, t). The measured C(m, t) is the
  coupling to the limit plus e_M, so share s at m_max bends the fitted slope by at most
  log(1 + s) / log(m_max / m_min) (0.05 for s = 0.2 over m = 16..512).

Checks (summary.json):
- coupling_slope_t<t>: |slope of C(., t) + 1| <= experiment.params.slope_tolerance (0.15);
- function_slope_t<t>: |slope of F(., t) + 1/2| <= slope_tolerance;
- reference_error_t<t>: share(t) <= experiment.params.reference_share (0.2);
- w2_independent_slope_t<t> (t = 0 and each time): slope of W(., t) >= -1/2 +
  experiment.params.w2_margin (0.15): independent clouds decay visibly slower than the
  coupling (theory: -1/D = -0.17 asymptotically);
- nonlinear_regime: L_M(T) / L_M(0) <= experiment.params.loss_drop (0.1): the last time
  is past the linear (kernel) phase;
- energy_identity: the coupling run's median |energy_rel_residual| (the reference part)
  <= 0.1.

Measured with this code (default config, 60 s on 2 shared cores; seeds 0 / 1 / 2):
- coupling slopes at t = 5, 10, 15: -0.99, -0.98, -0.96 / -1.02, -0.98, -0.93 /
  -1.02, -1.00, -0.96; function-distance slopes -0.51, -0.50, -0.51 / -0.50, -0.49,
  -0.50 / -0.51, -0.49, -0.50 (t = 0, pure sampling: -0.48 to -0.50);
- share e_M / C(512, t) <= 0.03 / 0.07 / 0.02 (M / m_max = 32). The share is about
  c m_max / M with c = 0.6 .. 2.2 here, so M must exceed m_max by a factor 10 or more for
  the reference not to bend the slopes; M = 2 m_max gives 0.2-0.3 (the failing test);
- W2 of independent clouds: slope -0.18 at t = 0 (theory -1/D = -0.17), -0.22 .. -0.26
  later; at m = 512 it is 9-17 times the RMS coupling distance (3.9-6.4 at m = 16). W2 to
  the replica's own tracer cloud (<= the RMS coupling) has slope -0.44;
- L_M(15) / L_M(0) = 0.022 (0.76 -> 0.017); energy identity residual 0.013.
The fitted coupling slope flattens with t: at t = 20 it is -0.94 / -0.91 / -0.92
(M = 16384). m C(m, t) still grows with m there (7.5 at m = 16 to ~10 at m = 512, seeds 0-2
with M = 8192): the next term of the expansion in 1/sqrt(m) is not yet negligible at
m = 16 late in the run, which is why T = 15. With M = 8192 and 16 replicas at the two
largest widths the t = 20 slopes were -0.89 / -0.91 / -0.93 (share up to 0.08): a bigger
reference and more replicas buy about 0.03. A replica's coupling has a coefficient of
variation of about 0.7 (the field error of m particles is one random field shared by all
of them), which is why each width carries thousands of particles' worth of replicas: a
prototype with 2 to 6 replicas per width had slopes off by up to 0.3.
Quick mode (M = 2048, m = 8..128, 1024 particles per width, at least 8 replicas, times
2, 4, 6, 10, T = 10; the same tolerances): seeds 0-3 give coupling slopes in
[-1.10, -0.91], function slopes in [-0.54, -0.46], shares <= 0.14, W2 slopes at t = 0
-0.16 .. -0.19, L_M(10) / L_M(0) = 0.036 .. 0.059. The tests' failing cases: M = 128
with m up to 64 (share 0.22 and 0.31: reference_error fails; the function slope at
t = 10 flattens to -0.39), t = 1 (the linear phase:
nonlinear_regime fails), and doctored slopes.
"""

DEFAULTS: dict[str, Any] = {
    "widths": [16, 32, 64, 128, 256, 512],
    "particles_per_width": 4096,
    "min_replicas": 32,
    "times": [5.0, 10.0, 15.0],
    "slope_tolerance": 0.15,
    "reference_share": 0.2,
    "loss_drop": 0.1,
    "w2_margin": 0.15,
    "w2_replicas": 8,
}


def _params(cfg: Config) -> dict[str, Any]:
    """experiment.params merged over DEFAULTS and validated (ConfigError names the key)."""
    p = experiment_params(cfg, "chaos", DEFAULTS)
    widths = p["widths"]
    if not (
        isinstance(widths, list)
        and len(widths) >= 3
        and all(is_integer(m) and m >= 2 for m in widths)
        and all(a < b for a, b in zip(widths, widths[1:], strict=False))
    ):
        raise ConfigError(
            "`experiment.params.widths` must be an increasing list of at least 3 integers "
            f">= 2 (the m of the slope fits, e.g. [16, 32, 64, 128]); got {widths!r}."
        )
    M = cfg.model.width
    if M is None or cfg.model.init.path is not None:
        raise ConfigError(
            "chaos draws the reference from the laws of `model.init` with `model.width` "
            "particles (M); `model.init.path` must be unset."
        )
    if M < 2 * widths[-1] or M % 2:
        raise ConfigError(
            f"`model.width` (the reference size M) must be even and at least twice the "
            f"largest width ({widths[-1]}), and should be >> it; got {M}."
        )
    for key, low in (("particles_per_width", 1), ("min_replicas", 2), ("w2_replicas", 1)):
        integer_param(p, key, at_least=low)
    times = p["times"]
    dt, steps, every = cfg.dynamics.dt, cfg.dynamics.steps, cfg.record.every
    if not (
        isinstance(times, list)
        and times
        and all(is_number(t) and t > 0 for t in times)
        and all(a < b for a, b in zip(times, times[1:], strict=False))
    ):
        raise ConfigError(
            f"`experiment.params.times` must be an increasing list of times t > 0; got {times!r}."
        )
    for t in times:
        k = t / dt
        if abs(k - round(k)) > 1e-9 * max(1.0, k) or round(k) % every or round(k) > steps:
            raise ConfigError(
                f"`experiment.params.times`: each t must be a multiple of "
                f"`dynamics.dt` * `record.every` = {dt * every:g} and at most "
                f"`dynamics.steps` * `dynamics.dt` = {steps * dt:g}; got {t!r}."
            )
    number_param(p, "slope_tolerance", above=0, below=1)
    for key in ("reference_share", "loss_drop"):
        number_param(p, key, above=0, at_most=1)
    number_param(p, "w2_margin", at_least=0, below=0.5)
    if cfg.model.scaling != "mean_field":
        raise ConfigError(
            "chaos is the mean-field limit: `model.scaling` must be mean_field; got "
            f"{cfg.model.scaling!r}."
        )
    dyn = cfg.dynamics
    if dyn.kind != "gradient_flow" or dyn.langevin is not None or dyn.birth_death is not None:
        raise ConfigError(
            "chaos couples deterministic flows: `dynamics.kind: gradient_flow` without "
            "`dynamics.langevin` or `dynamics.birth_death`."
        )
    if cfg.data.population is not None or cfg.data.target == "zero":
        raise ConfigError(
            "chaos uses an empirical risk with a test set (`data.target: teacher` or sign, "
            "`data.n_test` > 0): remove `data.population` (its closed form costs O(M^2) a step)."
        )
    if cfg.data.test_path is None and cfg.data.n_test < 1:
        raise ConfigError(
            "`data.n_test` must be >= 1: the function distance is an L2 norm on test inputs."
        )
    return p


# ----------------------------------------------------------------- layout


def replicas(p: dict[str, Any]) -> dict[int, int]:
    """R_m = max(min_replicas, particles_per_width // m) for each width m.

    Example:
        >>> replicas({"widths": [8, 64, 512], "particles_per_width": 1024, "min_replicas": 4})
        {8: 128, 64: 16, 512: 4}
    """
    return {m: max(p["min_replicas"], p["particles_per_width"] // m) for m in p["widths"]}


def layout(p: dict[str, Any], M: int) -> dict[str, Any]:
    """The row ranges of the coupling run's state and the `Stack` sizes.

    Parts: 0: `Tracers` (M reference rows, then the tracers of every width, replica
    major); 1: `Tracers` (the first M/2 reference particles, then copies of the tracers
    of the widest m); 2..: `Replicas` of each width (the same initial points as its
    tracers).

    Example:
        >>> lay = layout({"widths": [2, 4], "particles_per_width": 8, "min_replicas": 2}, 16)
        >>> lay["sizes"], lay["tracers"][4], lay["systems"][2]
        ([32, 16, 8, 8], (24, 32), (48, 56))
    """
    reps = replicas(p)
    widths = p["widths"]
    rows = {m: reps[m] * m for m in widths}
    out: dict[str, Any] = {"replicas": reps, "tracers": {}, "systems": {}}
    out["reference"] = (0, M)
    start = M
    for m in widths:
        out["tracers"][m] = (start, start + rows[m])
        start += rows[m]
    wide = widths[-1]
    out["half_reference"] = (start, start + M // 2)
    start += M // 2
    out["half_tracers"] = (start, start + rows[wide])
    start += rows[wide]
    for m in widths:
        out["systems"][m] = (start, start + rows[m])
        start += rows[m]
    out["sizes"] = [
        M + sum(rows.values()),
        M // 2 + rows[wide],
        *(rows[m] for m in widths),
    ]
    out["rows"] = start
    return out


def _law(spec: LawSpec):
    if spec.law == "gaussian":
        return Gaussian(spec.mean, spec.std)
    if spec.law == "uniform":
        return Uniform(spec.low, spec.high)
    return Constant(spec.value)


def initial_state(cfg: Config, built, p: dict[str, Any], lay: dict[str, Any]) -> jax.Array:
    """The coupling run's initial rows: the reference (``built.theta0``, M rows), the
    tracers of each width (R_m m i.i.d. draws from rho_0 with the key
    fold_in(fold_in(key(seed), 1000), m), independent of the reference), the nested half
    reference, copies of the widest tracers, and the m-systems (the tracers' copies)."""
    model = built.model
    laws = {blk: _law(getattr(cfg.model.init, blk)) for blk in ("a", "w", "b")}
    root = jax.random.fold_in(jax.random.key(cfg.seed), 1000)
    ref = jnp.asarray(built.theta0)
    M = ref.shape[0]
    draws = {}
    for m in p["widths"]:
        n = lay["replicas"][m] * m
        draws[m] = sample_particles(model, n, laws, jax.random.fold_in(root, m), ref.dtype)
    wide = p["widths"][-1]
    parts = [ref, *(draws[m] for m in p["widths"]), ref[: M // 2], draws[wide]]
    parts += [draws[m] for m in p["widths"]]
    return jnp.concatenate(parts)


def coupling_dynamics(flow, p: dict[str, Any], lay: dict[str, Any]) -> Stack:
    """`Stack` of the reference with all tracers, the half reference with the widest
    tracers, and the `Replicas` of each width, all from one ``flow``."""
    widths = p["widths"]
    sizes = lay["sizes"]
    M = lay["reference"][1]
    parts = (
        Tracers(flow, sizes[0] - M),
        Tracers(flow, sizes[1] - M // 2),
        *(Replicas(flow, lay["replicas"][m]) for m in widths),
    )
    return Stack(parts, tuple(sizes))


# ----------------------------------------------------------------- statistics


def _predict(model, theta: np.ndarray, x) -> np.ndarray:
    """f_m on x for each replica: theta (R, m, D) -> (R, n)."""
    fn = jax.vmap(lambda t: model.predict(t, x))
    return np.asarray(fn(jnp.asarray(theta)))


def time_statistics(
    state: np.ndarray,
    model,
    x_test,
    p: dict[str, Any],
    lay: dict[str, Any],
    rng: np.random.Generator,
    with_coupling: bool = True,
) -> dict[str, Any]:
    """The statistics of one snapshot ``state`` (rows as in `layout`) of the coupling run.

    Returns lists over ``p["widths"]``: ``coupling`` C(m) (the mean over replicas of
    (1/m) sum_j |theta_j - theta~_j|^2), ``coupling_rse`` (its relative standard error
    over replicas), ``function`` F(m) (root mean over replicas of the mean over
    ``x_test`` of (f_m - f_M)^2), ``w2_independent`` (root mean W2^2 to independent
    m-samples of the reference, over the first ``w2_replicas`` replicas), ``w2_tracers``
    (the same to each replica's own tracer cloud; 0 unless ``with_coupling``) and
    ``coupling_w2_replicas`` (C over those replicas); and the scalars
    ``reference_error`` e_M and ``reference_share`` e_M / C(m_max).
    """
    widths = p["widths"]
    ref = state[slice(*lay["reference"])]
    dim = state.shape[1]
    f_ref = np.asarray(model.predict(jnp.asarray(ref), x_test))
    out: dict[str, Any] = {k: [] for k in ("coupling", "coupling_rse", "function")}
    out |= {"w2_independent": [], "w2_tracers": [], "coupling_w2_replicas": []}
    for m in widths:
        r = lay["replicas"][m]
        sys_ = state[slice(*lay["systems"][m])].reshape(r, m, dim)
        tr = state[slice(*lay["tracers"][m])].reshape(r, m, dim)
        per = np.mean(np.sum((sys_ - tr) ** 2, axis=-1), axis=1)  # (R,)
        mean = float(per.mean())
        out["coupling"].append(mean)
        rse = float(per.std(ddof=1) / mean / math.sqrt(r)) if mean > 0 else float("nan")
        out["coupling_rse"].append(rse)
        f = _predict(model, sys_, x_test)
        out["function"].append(float(np.sqrt(np.mean((f - f_ref[None, :]) ** 2))))
        w_ind, w_tr = [], []
        for k in range(min(r, p["w2_replicas"])):
            sample = ref[rng.choice(ref.shape[0], m, replace=False)]
            w_ind.append(w2_exact(sys_[k], sample, squared=True))
            if with_coupling:
                w_tr.append(w2_exact(sys_[k], tr[k], squared=True))
        out["w2_independent"].append(float(np.sqrt(np.mean(w_ind))))
        out["w2_tracers"].append(float(np.sqrt(np.mean(w_tr))) if w_tr else 0.0)
        # the coupling of the same replicas: W2 to the tracer cloud is at most its root
        out["coupling_w2_replicas"].append(float(per[: len(w_ind)].mean()))
    wide = widths[-1]
    half = state[slice(*lay["half_tracers"])]
    full = state[slice(*lay["tracers"][wide])]
    err = float(np.mean(np.sum((half - full) ** 2, axis=-1)))
    out["reference_error"] = err
    c_wide = out["coupling"][-1]
    out["reference_share"] = err / c_wide if c_wide > 0 else float("nan")
    return out


def slopes(stats: dict[float, dict[str, Any]], widths) -> dict[str, dict[float, float]]:
    """Fitted log-log slopes against m of C, F, W (independent clouds) and W2 to the
    tracers, at each time (C and the tracer W2 are identically 0 at t = 0: nan)."""
    keys = ("coupling", "function", "w2_independent", "w2_tracers")
    return {k: {t: loglog_slope(widths, s[k]) for t, s in stats.items()} for k in keys}


def build_checks(
    stats: dict[float, dict[str, Any]],
    fitted: dict[str, dict[float, float]],
    p: dict[str, Any],
    loss_ratio: float,
    energy_median: float | None,
    dim: int,
) -> dict[str, dict]:
    """The checks of the CLAIM from the statistics (pure: tests doctor its inputs)."""
    tol, times = p["slope_tolerance"], p["times"]
    checks = {}
    for t in times:
        s = fitted["coupling"][t]
        checks[f"coupling_slope_t{t:g}"] = check(
            s,
            f"|slope of log C(m, t={t:g}) against log m + 1| <= {tol:g} (claim: C = O(1/m))",
            math.isfinite(s) and abs(s + 1.0) <= tol,
        )
    for t in times:
        s = fitted["function"][t]
        checks[f"function_slope_t{t:g}"] = check(
            s,
            f"|slope of log ||f_m - f_M||(t={t:g}) against log m + 1/2| <= {tol:g} "
            "(claim: O(m^-1/2))",
            math.isfinite(s) and abs(s + 0.5) <= tol,
        )
    share = p["reference_share"]
    for t in times:
        v = stats[t]["reference_share"]
        checks[f"reference_error_t{t:g}"] = check(
            v,
            f"e_M / C(m_max, t={t:g}) <= {share:g} (the M-reference's own error, from the "
            "nested M/2 reference, is small against the widest coupling)",
            math.isfinite(v) and v <= share,
        )
    bound = -0.5 + p["w2_margin"]
    for t in [0.0, *times]:
        s = fitted["w2_independent"][t]
        checks[f"w2_independent_slope_t{t:g}"] = check(
            s,
            f"slope of log W2(mu_m, independent m-sample of mu_M)(t={t:g}) against log m >= "
            f"{bound:g} (flatter than the coupling's -1/2; theory -1/D = {-1.0 / dim:.3g})",
            math.isfinite(s) and s >= bound,
        )
    drop = p["loss_drop"]
    checks["nonlinear_regime"] = check(
        loss_ratio,
        f"L_M(T) / L_M(0) <= {drop:g} (the last time is in the nonlinear regime)",
        math.isfinite(loss_ratio) and loss_ratio <= drop,
    )
    if energy_median is not None:
        checks["energy_identity"] = check(
            energy_median,
            "median |energy_rel_residual| of the reference part <= 0.1",
            energy_median <= 0.1,
        )
    return checks


# ----------------------------------------------------------------- the run


def _sub_config(cfg: Config, p: dict[str, Any], lay: dict[str, Any]) -> Config:
    sub = cfg.model_copy(deep=True)
    sub.name = f"{cfg.name or 'chaos'}-coupling"
    # the plain run's config plus what fixes the stacked state (a change makes it stale)
    sub.experiment = ExperimentSpec(
        params={
            "widths": list(p["widths"]),
            "replicas": [lay["replicas"][m] for m in p["widths"]],
            "sizes": list(lay["sizes"]),
        }
    )
    steps = [round(t / cfg.dynamics.dt) for t in p["times"]]
    sub.record.snapshot_every = math.gcd(*steps)
    return sub


def _run_coupling(cfg, sub, p, lay, run_dir: Path, resume: bool, progress: bool):
    """Run (or resume, or reuse) the stacked coupling run in ``run_dir`` with
    `mfnn.runs.execute` (the run directory contract: config.yaml, metrics.csv of the
    reference part, snapshots of the whole state, checkpoint.npz, summary.json)."""
    built = build(sub)
    if resume and run_dir_status(run_dir, sub) == "completed":
        return built, json.loads((run_dir / "summary.json").read_text())
    stacked = dataclasses.replace(
        built,
        dynamics=coupling_dynamics(built.dynamics, p, lay),
        theta0=initial_state(cfg, built, p, lay),
    )
    _, _, summary = execute(
        sub,
        run_dir,
        resume=resume,
        progress=progress,
        label="coupling",
        make_figures=False,
        built=stacked,
    )
    summary["rows"] = lay["rows"]
    write_json(run_dir / "summary.json", summary)
    return built, summary


def _figures(out: Path, res: dict[str, Any], p: dict[str, Any], dim: int) -> list[Path]:
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    widths = np.asarray(p["widths"], float)
    stats, fitted, times = res["stats"], res["slopes"], p["times"]
    colors = plt.cm.viridis(np.linspace(0.1, 0.85, len(times)))
    paths = []

    def fit_line(ax, y, s, color):
        if math.isfinite(s):
            c = np.mean(np.log(y) - s * np.log(widths))
            ax.loglog(widths, np.exp(c) * widths**s, "--", color=color, lw=1)

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax = axes[0]
    for t, col in zip(times, colors, strict=True):
        c = np.asarray(stats[t]["coupling"])
        err = c * np.asarray(stats[t]["coupling_rse"])
        ax.errorbar(widths, c, yerr=err, fmt="o", color=col, ms=4, capsize=2)
        fit_line(ax, c, fitted["coupling"][t], col)
        ax.axhline(stats[t]["reference_error"], color=col, ls=":", lw=1)
        ax.plot([], [], "o--", color=col, label=f"t = {t:g}: slope {fitted['coupling'][t]:.2f}")
    ax.plot([], [], ":", color="k", label="reference error e_M (nested M/2)")
    c0 = np.asarray(stats[times[-1]]["coupling"])
    ax.loglog(widths, 3 * c0[0] * (widths / widths[0]) ** -1.0, color="k", lw=0.8, alpha=0.5)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="m",
        ylabel=r"$(1/m)\sum_j |\theta_j(t) - \tilde\theta_j(t)|^2$",
        title="synchronous coupling (grey: slope -1)",
    )
    width_axis(ax, p["widths"])
    ax.legend(fontsize=7)
    ax = axes[1]
    allt = [0.0, *times]
    fcolors = plt.cm.magma(np.linspace(0.1, 0.8, len(allt)))
    for t, col in zip(allt, fcolors, strict=True):
        f = np.asarray(stats[t]["function"])
        ax.loglog(widths, f, "o", color=col, ms=4)
        fit_line(ax, f, fitted["function"][t], col)
        ax.plot([], [], "o--", color=col, label=f"t = {t:g}: slope {fitted['function'][t]:.2f}")
    f0 = np.asarray(stats[0.0]["function"])
    ax.loglog(widths, 2 * f0[0] * (widths / widths[0]) ** -0.5, color="k", lw=0.8, alpha=0.5)
    ax.set(
        xlabel="m",
        ylabel=r"$\|f_m(t) - f_M(t)\|_{L^2(P)}$",
        title="function distance (grey: slope -1/2)",
    )
    width_axis(ax, p["widths"])
    ax.legend(fontsize=7)
    ax = axes[2]
    mt = res["metrics"]
    keep = mt["loss"] > 0
    ax.semilogy(
        mt["t"][keep], mt["loss"][keep], color="#2471a3", label=f"reference, M = {res['M']}"
    )
    for t, col in zip(times, colors, strict=True):
        ax.axvline(t, color=col, ls=":", lw=1)
    ax.set(xlabel="t", ylabel="training risk L_M(t)", title="the flow (statistic times dotted)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(save_figure(fig, fig_dir / "coupling.png"))

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, t in zip(axes, (0.0, times[-1]), strict=True):
        s = stats[t]
        w = np.asarray(s["w2_independent"])
        ax.loglog(
            widths,
            w,
            "s-",
            color="#c0392b",
            label=f"W2, independent clouds: slope {fitted['w2_independent'][t]:.2f}",
        )
        if t > 0:
            rms = np.sqrt(np.asarray(s["coupling_w2_replicas"]))
            ax.loglog(
                widths,
                rms,
                "o-",
                color="#2471a3",
                label=f"RMS coupling (same replicas): slope {loglog_slope(widths, rms):.2f}",
            )
            wt = np.asarray(s["w2_tracers"])
            ax.loglog(
                widths,
                wt,
                "^-",
                color="#27ae60",
                ms=4,
                label=f"W2 to the tracer cloud: slope {fitted['w2_tracers'][t]:.2f}",
            )
        ax.loglog(
            widths,
            w[0] * (widths / widths[0]) ** (-1.0 / dim),
            "k:",
            lw=1,
            label=f"m^(-1/D), D = {dim}",
        )
        ax.loglog(
            widths, w[0] * (widths / widths[0]) ** -0.5, "k--", lw=0.8, alpha=0.6, label="m^(-1/2)"
        )
        ax.set(xlabel="m", ylabel="distance", title=f"t = {t:g}")
        width_axis(ax, p["widths"])
        ax.legend(fontsize=7)
    fig.suptitle("W2 between independent clouds measures the sampling floor, not the dynamics")
    fig.tight_layout()
    paths.append(save_figure(fig, fig_dir / "w2_independent.png"))
    return paths


def run_chaos(
    cfg: Config, out: Path, *, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    t0 = time.perf_counter()
    p = _params(cfg)
    M = cfg.model.width
    lay = layout(p, M)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump(cfg))
    sub = _sub_config(cfg, p, lay)
    run_dir = out / "runs" / "coupling"
    built, summary = _run_coupling(cfg, sub, p, lay, run_dir, resume, progress)
    statuses = {"coupling": summary["status"]}
    metrics = read_metrics(run_dir)
    model = built.model
    x_test = built.test.x
    snaps = list_snapshots(run_dir)
    dt = built.dt
    want = {0.0: 0, **{t: round(t / dt) for t in p["times"]}}
    missing = [t for t, k in want.items() if k not in snaps]
    if missing:  # a diverged (or cut) run: say so in the summary, nothing to fit
        msg = summary.get("message")
        checks = {
            "run_completed": check(
                summary["status"],
                f"the coupling run reaches every statistic time (missing t = {missing}: {msg})",
                False,
            )
        }
        return write_summary(out, "chaos", statuses, checks, [], CLAIM, t0, M=M)
    rng = np.random.default_rng(cfg.seed)
    stats = {}
    for t, k in want.items():
        state = np.asarray(load_particles(snaps[k], model))
        stats[t] = time_statistics(state, model, x_test, p, lay, rng, with_coupling=t > 0)
    fitted = slopes(stats, p["widths"])
    loss = metrics["loss"]
    t_last = p["times"][-1]
    loss_at = {t: float(np.interp(t, metrics["t"], loss)) for t in want}
    loss_ratio = loss_at[t_last] / float(loss[0]) if loss[0] > 0 else float("nan")
    energy = summary.get("checks", {}).get("energy_identity", {}).get("value")
    dim = model.dim
    checks = build_checks(stats, fitted, p, loss_ratio, energy, dim)
    res = {"stats": stats, "slopes": fitted, "metrics": metrics, "M": M}
    figures = _figures(out, res, p, dim)
    table = {
        key: {f"{t:g}": stats[t][key] for t in want}
        for key in ("coupling", "coupling_rse", "function", "w2_independent", "w2_tracers")
    }
    return write_summary(
        out,
        "chaos",
        statuses,
        checks,
        figures,
        CLAIM,
        t0,
        final_loss=float(loss[-1]),
        M=M,
        D=dim,
        widths=p["widths"],
        replicas=[lay["replicas"][m] for m in p["widths"]],
        times=[0.0, *p["times"]],
        loss={f"{t:g}": v for t, v in loss_at.items()},
        loss_ratio=loss_ratio,
        statistics=table,
        slopes={k: {f"{t:g}": v for t, v in d.items()} for k, d in fitted.items()},
        reference_error={f"{t:g}": stats[t]["reference_error"] for t in p["times"]},
        reference_share={f"{t:g}": stats[t]["reference_share"] for t in p["times"]},
        runs={
            "coupling": {k: summary.get(k) for k in ("status", "message", "final_t", "wall_s")}
            | {"rows": lay["rows"], "sizes": lay["sizes"]}
        },
    )


CHAOS = Experiment(
    name="chaos",
    summary="propagation of chaos: synchronous coupling O(1/m), function distance "
    "O(m^-1/2), W2 of independent clouds stuck at m^(-1/D) (seed 001 Thm 2.3)",
    claim=CLAIM,
    quick=(
        "model.width=2048",
        "experiment.params.widths=[8, 16, 32, 64, 128]",
        "experiment.params.particles_per_width=1024",
        "experiment.params.min_replicas=8",
        "experiment.params.times=[2.0, 4.0, 6.0, 10.0]",
        "dynamics.steps=50",
    ),
    runner=run_chaos,
)
