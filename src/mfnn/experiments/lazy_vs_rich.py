"""`lazy_vs_rich`: how far particles and the tangent kernel move against the width m, under
ntk, a general gamma and mean_field scaling (seed 000's table; THEORY.md sections 1, 7)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..build import build  # noqa: E402
from ..config import Config, ExperimentSpec, LawSpec, dump  # noqa: E402
from ..diagnostics import relative_movement  # noqa: E402
from ..diagnostics.kernel import kernel_change  # noqa: E402
from ..errors import ConfigError  # noqa: E402
from ..measure import atomic_savez, load_particles  # noqa: E402
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
    experiment_params,
    is_integer,
    is_number,
    loglog_slope,
    number_param,
    write_summary,
)

CLAIM = """\
Seed 000's table and THEORY.md section 7 (lazy vs rich), with the time scaling of THEORY.md
section 1: f = m^(-gamma) sum_j phi(x; theta_j) and d theta_j/dt = -m^(2 gamma - 1) dR/dtheta_j
(gamma = 1/2 ntk, 1 mean_field, experiment.params.gamma = 3/4 for the general curve).

Derivation. With R = (1/(2n)) sum_i r_i^2, r_i = f(x_i) - y_i,
    d theta_j/dt = -m^(gamma - 1) (1/n) sum_i r_i grad phi(x_i; theta_j),
    df(x)/dt = -m^(2 gamma - 1) K(x, X) r / n = -(1/m) sum_j k_j(x, X) r / n,
with K the tangent kernel (`mfnn.diagnostics.kernel.tangent_kernel`) and
k_j(x, x') = grad phi(x; theta_j) . grad phi(x'; theta_j). The function therefore moves O(1)
in O(1) time in every scaling (r = O(1) up to T, checked below) and each particle moves
O(m^(gamma - 1)):
    movement = |theta(T) - theta(0)|_F / |theta(0)|_F = O(m^(gamma - 1)),
    predicted log-log slope gamma - 1: -1/2 (ntk), -1/4 (gamma = 3/4), 0 (mean_field).
The kernel: m^(2 gamma - 1) K = (1/m) sum_j k_j, so its change is
(1/m) sum_j [Dk(theta_j)[dtheta_j] + O(|dtheta_j|^2)]. The first-order term is cubic in phi
(dtheta_j carries one grad phi, Dk two), hence odd under a -> -a; the initial law is
invariant under a -> -a (exactly for the paired start below, in law for a Gaussian a) and r
does not depend on j to leading order, so that term averages out (an i.i.d. start leaves a
fluctuation O(m^(gamma - 1) m^(-1/2))), and the second-order term, whose mean is positive
(da_j^2 sigma'(z) sigma'(z') (x x' + 1) among others), leads:
    kernel change = ||K_T - K_0||_F / ||K_0||_F = O(m^(2 (gamma - 1))),
    predicted slope 2 (gamma - 1): -1 (ntk), -1/2 (gamma = 3/4), 0 (mean_field).
THEORY.md section 7's "O(m^-1/2) under ntk" for the kernel is the general upper bound
(Jacot, Gabriel, Hongler 2018; Chizat, Oyallon, Bach 2019); it is attained only when the
start has no such sign symmetry: with experiment.params.init = skewed (below) the first-order
term survives and the ntk kernel slope moves towards -1/2 (measured below). The O(1/m)
change of the NTK under Gaussian starts is the rate Dyer and Gur-Ari derive ("Asymptotics of
wide networks from Feynman diagrams", ICLR 2020).

Setup (configs/lazy_vs_rich.yaml): d = 1, n = 64 inputs x ~ U[-1, 1], a smooth teacher
(three tanh units), softplus units with bias (a smooth ReLU; softplus is not odd, so
(w, b) -> -(w, b) is no symmetry of phi), Euler with dt = 0.05 to T = 10 for every width m
in experiment.params.widths (64 .. 16384) and seed in experiment.params.seeds (0, 1, 2), in
each scaling of experiment.params.scalings (ntk, general, mean_field). The experiment draws
the initial particles itself (numpy, seeded by (seed, m), from the config's laws
a ~ N(0, 1), w ~ N(0, 1), b ~ U(-1, 1)) into init/m<m>_s<seed>.npz; the three scalings start
from the same file. experiment.params.init:
- paired (default): m/2 draws and their mirrors (-a, w, b): f_0 = 0 in every scaling (the
  symmetrized start of Chizat-Oyallon-Bach), the same function for the three scalings;
- iid: m i.i.d. draws; the ntk start then carries an O(1) random function whose realization
  changes with m and seed, which makes the ntk curve noisy;
- skewed: m/3 draws of (w, b), each carried by three particles with a = (-1, -1, 2)/sqrt(2):
  f_0 = 0 again, but E a^3 != 0, so no sign symmetry (widths must be multiples of 3).

Statistics at T, for each scaling, width and seed (snapshots at steps 0 and T): movement
(`mfnn.diagnostics.relative_movement`), kernel change on the n training inputs
(`mfnn.diagnostics.kernel.kernel_change`), L(0), L(T). For each scaling the means over seeds
at each width and the least-squares slope of log(mean) against log m (the per-seed slopes'
standard deviation is reported in `stats`).

Checks (summary.json), tol = experiment.params.slope_tolerance (0.15; quick run 0.2):
- movement_slope_<scaling>: |slope - (gamma - 1)| <= tol;
- kernel_slope_<scaling>: |slope - 2 (gamma - 1)| <= tol (fails with init: skewed: the
  premise, a sign-symmetric start, is gone);
- ordering_at_largest_m (when all three scalings run): at the largest m, movement and kernel
  change are strictly increasing from ntk to general to mean_field (ntk moves least);
- function_moves_<scaling>: max over widths and seeds of L(T) / L(0) <=
  experiment.params.loss_ratio (0.25): f moved O(1) by time T at every width (the time
  scaling's premise; a run too short fails here);
- energy_identity: every sub-run's median |energy_rel_residual| <= 0.1 (`mfnn.runs`).
table.md (and summary.json `table`): one row per scaling with the measured movement, kernel
change and train loss at the largest m and the fitted slopes next to their predictions:
seed 000's comparison table, from numbers.

Measured with this code (default config: 45 runs, 141 s on 2 shared cores; quick: widths
64, 256, 1024, one seed, 27 s):
- slopes movement / kernel change, fitted (predicted):
  ntk -0.512 (-0.5) / -1.009 (-1); general -0.260 (-0.25) / -0.504 (-0.5);
  mean_field -0.010 (0) / -0.006 (0); per-seed slope std about 0.02. Quick: ntk -0.497 /
  -0.940, general -0.245 / -0.432, mean_field 0.009 / 0.072;
- at m = 16384: movement 0.0051 / 0.058 / 0.60, kernel change 6.1e-5 / 0.0078 / 0.78,
  L(T) 0.0256 / 0.0256 / 0.0212 (L(0) = 0.21; max L(T)/L(0) 0.16). ntk and general reach the
  same loss: for every gamma < 1 the m -> infinity limit is the same kernel flow (f_0 = 0 and
  the same s K), general only gets there more slowly (m^(gamma - 1)); mean_field follows its
  own nonlinear flow;
- init: skewed (widths 96 .. 24576): movement slopes -0.496 / -0.244 / 0.002 (unchanged);
  kernel slopes -0.627 (ntk: check fails; local slopes between successive widths -0.71,
  -0.67, -0.58, -0.54, towards THEORY.md's -1/2) and -0.411 for general (towards -1/4);
- init: iid: movement slopes -0.477 / -0.238 / 0.006, kernel -0.866 / -0.449 / 0.007 with a
  per-seed ntk kernel slope std of 0.24, and function_moves fails for ntk and general (the
  random f_0 sets L(0): max L(T)/L(0) = 0.29): why paired is the default.
"""

SCALINGS = ("ntk", "general", "mean_field")

DEFAULTS: dict[str, Any] = {
    "widths": [64, 256, 1024, 4096, 16384],
    "seeds": [0, 1, 2],
    "gamma": 0.75,
    "scalings": list(SCALINGS),
    "init": "paired",
    "slope_tolerance": 0.15,
    "loss_ratio": 0.25,
}
INITS = ("paired", "iid", "skewed")
TARGETS = ("sign", "teacher")
GROUP = {"paired": 2, "skewed": 3}  # particles sharing one draw of (w, b)
# output weights of a skewed triple: sum 0 (f_0 = 0), mean square 1, sum of cubes 6 / 2^1.5
SKEWED_A = np.array([-1.0, -1.0, 2.0]) / np.sqrt(2.0)


def _int_list(p: dict, key: str, minimum: int, at_least: int) -> list[int]:
    v = p[key]
    ok = (
        isinstance(v, list | tuple)
        and len(v) >= at_least
        and all(is_integer(x) and x >= minimum for x in v)
        and len(set(v)) == len(v)
    )
    if not ok:
        raise ConfigError(
            f"`experiment.params.{key}` must be a list of at least {at_least} distinct "
            f"integers >= {minimum}; got {v!r}."
        )
    return sorted(v)


def _params(cfg: Config) -> dict[str, Any]:
    """experiment.params merged over DEFAULTS and validated (ConfigError names the key)."""
    p = experiment_params(cfg, "lazy_vs_rich", DEFAULTS)
    if p["init"] not in INITS:
        raise ConfigError(
            f"`experiment.params.init` must be one of {list(INITS)}; got {p['init']!r}."
        )
    p["widths"] = _int_list(p, "widths", 2, 3)
    copies = GROUP.get(p["init"], 1)
    if any(m % copies for m in p["widths"]):
        raise ConfigError(
            f"`experiment.params.widths` must be multiples of {copies} with "
            f"`experiment.params.init: {p['init']}` (groups of {copies} particles share (w, b)); "
            f"got {p['widths']}."
        )
    p["seeds"] = _int_list(p, "seeds", 0, 1)
    g = p["gamma"]
    if not (is_number(g) and 0.5 < g < 1):
        raise ConfigError(
            "`experiment.params.gamma` (the general curve, between ntk's 1/2 and mean_field's "
            f"1) must be a number in (0.5, 1); got {g!r}."
        )
    sc = p["scalings"]
    if not (
        isinstance(sc, list | tuple) and sc and set(sc) <= set(SCALINGS) and len(set(sc)) == len(sc)
    ):
        raise ConfigError(
            f"`experiment.params.scalings` must be a non-empty list of distinct entries of "
            f"{list(SCALINGS)}; got {sc!r}."
        )
    p["scalings"] = [s for s in SCALINGS if s in sc]
    number_param(p, "slope_tolerance", above=0)
    number_param(p, "loss_ratio", above=0, at_most=1)
    dyn = cfg.dynamics
    if dyn.kind != "gradient_flow" or dyn.langevin is not None or dyn.birth_death is not None:
        raise ConfigError(
            "lazy_vs_rich compares plain gradient flows: `dynamics.kind: gradient_flow` without "
            "`dynamics.langevin` or `dynamics.birth_death`."
        )
    if dyn.domain is not None:
        raise ConfigError("lazy_vs_rich needs free particles: remove `dynamics.domain`.")
    if cfg.objective.l2 != 0:
        raise ConfigError(
            f"`objective.l2` must be 0 for lazy_vs_rich (the claim is about the risk's flow); "
            f"got {cfg.objective.l2}."
        )
    data = cfg.data
    if data.population is not None or data.path is not None or data.target not in TARGETS:
        raise ConfigError(
            "lazy_vs_rich needs a sampled training set (the kernel is taken on its inputs): "
            "`data.target: sign` or `teacher` with `data.inputs`, without `data.population` "
            f"or `data.path`; got target {data.target!r}, population "
            f"{data.population is not None}, path {data.path!r}."
        )
    if not cfg.model.train_output:
        raise ConfigError(
            "lazy_vs_rich needs output weights (`model.train_output: true`): the paired and "
            "skewed starts act on a."
        )
    if cfg.model.init.path is not None:
        raise ConfigError(
            "lazy_vs_rich draws the initial particles itself at every width: remove "
            "`model.init.path` (the laws `model.init.a`, `.w`, `.b` are used)."
        )
    if dyn.steps % cfg.record.every:
        raise ConfigError(
            f"`record.every` must divide `dynamics.steps` ({dyn.steps}) so that T is recorded; "
            f"got {cfg.record.every}."
        )
    return p


def gamma_of(scaling: str, gamma: float) -> float:
    """The exponent gamma of each curve: ntk 1/2, general ``gamma``, mean_field 1."""
    return {"ntk": 0.5, "general": float(gamma), "mean_field": 1.0}[scaling]


def predicted_slopes(g: float) -> tuple[float, float]:
    """(movement, kernel change) log-log slopes against m: gamma - 1 and 2 (gamma - 1).

    Example:
        >>> [predicted_slopes(g) for g in (0.5, 0.75, 1.0)]
        [(-0.5, -1.0), (-0.25, -0.5), (0.0, 0.0)]
    """
    return g - 1.0, 2.0 * (g - 1.0)


# ----------------------------------------------------------------- initial particles


def _draw(law: LawSpec, rng: np.random.Generator, shape) -> np.ndarray:
    if law.law == "gaussian":
        return law.mean + law.std * rng.standard_normal(shape)
    if law.law == "uniform":
        return rng.uniform(law.low, law.high, shape)
    return np.full(shape, law.value, float)


def initial_particles(cfg: Config, m: int, seed: int, init: str) -> dict[str, np.ndarray]:
    """The particle file (a, w, b) of width m for one seed (numpy, seeded by (seed, m)).

    paired: m/2 draws from the config's laws and their mirrors (-a, w, b), so that
    f_0 = m^(-gamma) sum_j phi(x; theta_j) = 0 exactly; iid: m draws; skewed: m/3 draws
    of (w, b), each carried by three particles with a = (-1, -1, 2) / sqrt(2): again
    f_0 = 0, but the law of a is not symmetric (E a^3 != 0).
    """
    rng = np.random.default_rng([seed, m])
    copies = GROUP.get(init, 1)
    k = m // copies
    ini, d = cfg.model.init, cfg.data.inputs.dim
    a = _draw(ini.a, rng, (k,))
    w = _draw(ini.w, rng, (k, d))
    b = _draw(ini.b, rng, (k,))
    if init == "paired":
        a = np.concatenate([a, -a])
    elif init == "skewed":
        a = np.repeat(SKEWED_A, k)
    w, b = np.concatenate([w] * copies), np.concatenate([b] * copies)
    out = {"a": a, "w": w}
    if cfg.model.bias:
        out["b"] = b
    return out


# ----------------------------------------------------------------- runs


def _sub_config(cfg: Config, scaling: str, gamma: float, m: int, seed: int, init: Path):
    sub = cfg.model_copy(deep=True)
    label = f"{scaling}_m{m}_s{seed}"
    sub.name = f"{cfg.name or 'lazy_vs_rich'}-{label}"
    sub.experiment = ExperimentSpec()  # a plain run directory, resumable on its own
    sub.seed = seed
    if scaling == "general":
        sub.model.gamma = gamma
        sub.model.scaling = "general"
    else:
        sub.model.scaling = scaling
        sub.model.gamma = None
    sub.model.width = m
    sub.model.init.path = str(init.resolve())
    sub.record.snapshot_every = sub.dynamics.steps  # theta(0) and theta(T)
    return sub, label


def _run_one(sub: Config, run_dir: Path, label: str, resume: bool, progress: bool):
    if resume and run_dir_status(run_dir, sub) == "completed":
        return build(sub), json.loads((run_dir / "summary.json").read_text())
    _, built, summary = execute(
        sub, run_dir, resume=resume, progress=progress, label=label, make_figures=False
    )
    return built, summary


def _measure(run_dir: Path, built) -> dict[str, Any]:
    snaps = list_snapshots(run_dir)
    dtype = built.theta0.dtype
    theta0 = load_particles(snaps[min(snaps)], built.model, dtype, field="snapshot")
    theta = load_particles(snaps[max(snaps)], built.model, dtype, field="snapshot")
    metrics = read_metrics(run_dir)
    x = built.train.x
    f0 = np.asarray(built.model.predict(theta0, x))
    f = np.asarray(built.model.predict(theta, x))
    y = np.asarray(built.train.y)
    return {
        "movement": relative_movement(theta, theta0),
        "kernel_change": kernel_change(built.model, theta0, theta, x),
        "initial_loss": float(metrics["loss"][0]),
        "final_loss": float(metrics["loss"][-1]),
        "function_change": float(np.linalg.norm(f - f0) / np.linalg.norm(y)),
        "t": metrics["t"],
        "loss": metrics["loss"],
        "movement_t": metrics["movement"],
        "final_t": max(snaps) * built.dt,
    }


# ----------------------------------------------------------------- table and figures

COLORS = {"ntk": "#2471a3", "general": "#7d3c98", "mean_field": "#c0392b"}


def _label(sc: str, g: float) -> str:
    return f"general (gamma = {g:g})" if sc == "general" else f"{sc} (gamma = {g:g})"


def comparison_table(stats: dict[str, dict], widths: list[int]) -> dict[str, Any]:
    """Seed 000's lazy-vs-rich table from the measured numbers (rows: the scalings)."""
    big = widths[-1]
    columns = [
        "scaling",
        "gamma",
        f"movement (m={big})",
        "movement slope (predicted)",
        f"kernel change (m={big})",
        "kernel slope (predicted)",
        f"train loss L(T) (m={big})",
        "L(T) / L(0)",
    ]
    rows, lines = [], []
    for sc, s in stats.items():
        row = {
            "scaling": sc,
            "gamma": s["gamma"],
            "movement": s["movement"][-1],
            "movement_slope": s["movement_slope"],
            "movement_slope_predicted": s["movement_predicted"],
            "kernel_change": s["kernel_change"][-1],
            "kernel_slope": s["kernel_slope"],
            "kernel_slope_predicted": s["kernel_predicted"],
            "final_loss": s["final_loss"][-1],
            "loss_ratio": s["loss_ratio"][-1],
        }
        rows.append(row)
        lines.append(
            f"| {sc} | {row['gamma']:g} | {row['movement']:.3g} | "
            f"{row['movement_slope']:.3f} ({row['movement_slope_predicted']:g}) | "
            f"{row['kernel_change']:.3g} | "
            f"{row['kernel_slope']:.3f} ({row['kernel_slope_predicted']:g}) | "
            f"{row['final_loss']:.3g} | {row['loss_ratio']:.3g} |"
        )
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    markdown = (
        "Lazy vs rich (seed 000), measured at T with the time scaling of THEORY.md s.1; "
        "means over seeds; slopes are log-log fits against m.\n\n" + head + "\n".join(lines) + "\n"
    )
    return {"columns": columns, "rows": rows, "markdown": markdown}


def _figures(out: Path, stats: dict, runs: dict, widths: list[int], seeds: list[int]):
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    ms = np.asarray(widths, float)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, key, title in (
        (axes[0], "movement", "|theta(T) - theta(0)| / |theta(0)|"),
        (axes[1], "kernel_change", "||K_T - K_0||_F / ||K_0||_F"),
    ):
        for sc, s in stats.items():
            c = COLORS[sc]
            for seed in seeds:
                ax.loglog(
                    ms,
                    [runs[f"{sc}_m{m}_s{seed}"][key] for m in widths],
                    ".",
                    color=c,
                    alpha=0.35,
                    ms=4,
                )
            mean = np.asarray(s[key])
            stem = "movement" if key == "movement" else "kernel"
            slope, pred = s[f"{stem}_slope"], s[f"{stem}_predicted"]
            ax.loglog(ms, mean, "o", color=c, label=f"{_label(sc, s['gamma'])}")
            if math.isfinite(slope):
                c0 = np.mean(np.log(mean) - slope * np.log(ms))
                ax.loglog(
                    ms, np.exp(c0) * ms**slope, "-", color=c, lw=1.5, label=f"fit {slope:.3f}"
                )
                cp = np.mean(np.log(mean) - pred * np.log(ms))
                ax.loglog(
                    ms,
                    np.exp(cp) * ms**pred,
                    "--",
                    color=c,
                    lw=1,
                    alpha=0.7,
                    label=f"pred {pred:g}",
                )
        ax.set(xlabel="width m", ylabel=title, title=f"{key.replace('_', ' ')} at T")
        ax.legend(fontsize=7, ncol=1)
    fig.tight_layout()
    paths.append(save_figure(fig, fig_dir / "scaling_laws.png"))

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    seed = seeds[0]
    for sc in stats:
        for i, m in enumerate(widths):
            r = runs[f"{sc}_m{m}_s{seed}"]
            alpha = 0.3 + 0.7 * (i + 1) / len(widths)
            label = _label(sc, stats[sc]["gamma"]) if i == len(widths) - 1 else None
            t = np.asarray(r["t"])
            axes[0].semilogy(t, r["loss"], color=COLORS[sc], alpha=alpha, label=label)
            pos = t > 0
            axes[1].loglog(t[pos], np.asarray(r["movement_t"])[pos], color=COLORS[sc], alpha=alpha)
        axes[1].plot([], [], color=COLORS[sc], label=_label(sc, stats[sc]["gamma"]))
    axes[0].set(xlabel="t", ylabel="train loss", title=f"loss, every width (seed {seed})")
    axes[1].set(
        xlabel="t",
        ylabel="relative movement",
        title="movement along training (darker: wider)",
    )
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(save_figure(fig, fig_dir / "training.png"))
    return paths


# ----------------------------------------------------------------- runner


def run_lazy_vs_rich(
    cfg: Config, out: Path, *, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Run every (seed, width, scaling) into ``out/runs/<scaling>_m<m>_s<seed>`` (completed
    sub-runs are reused with ``resume``), then write table.md, figures/ and summary.json
    (see CLAIM). Returns the summary."""
    t0 = time.perf_counter()
    p = _params(cfg)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump(cfg))
    widths, seeds, scalings = p["widths"], p["seeds"], p["scalings"]
    runs: dict[str, dict[str, Any]] = {}
    statuses, energy = {}, {}
    for seed in seeds:
        for m in widths:
            init = out / "init" / f"m{m}_s{seed}.npz"
            atomic_savez(init, **initial_particles(cfg, m, seed, p["init"]))
            for sc in scalings:
                sub, label = _sub_config(cfg, sc, p["gamma"], m, seed, init)
                run_dir = out / "runs" / label
                built, summary = _run_one(sub, run_dir, label, resume, progress)
                statuses[label] = summary["status"]
                energy[label] = summary.get("checks", {}).get("energy_identity")
                runs[label] = _measure(run_dir, built) | {
                    "status": summary["status"],
                    "scaling": sc,
                    "width": m,
                    "seed": seed,
                }

    stats: dict[str, dict[str, Any]] = {}
    for sc in scalings:
        g = gamma_of(sc, p["gamma"])
        pm, pk = predicted_slopes(g)
        per = {
            key: np.array([[runs[f"{sc}_m{m}_s{s}"][key] for m in widths] for s in seeds])
            for key in ("movement", "kernel_change", "initial_loss", "final_loss")
        }
        mean = {key: v.mean(axis=0) for key, v in per.items()}
        seed_slopes = {
            key: [loglog_slope(widths, row) for row in per[key]]
            for key in ("movement", "kernel_change")
        }
        stats[sc] = {
            "gamma": g,
            "widths": widths,
            "movement": mean["movement"].tolist(),
            "kernel_change": mean["kernel_change"].tolist(),
            "final_loss": mean["final_loss"].tolist(),
            "loss_ratio": (mean["final_loss"] / mean["initial_loss"]).tolist(),
            "max_loss_ratio": float(np.max(per["final_loss"] / per["initial_loss"])),
            "movement_slope": loglog_slope(widths, mean["movement"]),
            "kernel_slope": loglog_slope(widths, mean["kernel_change"]),
            "movement_predicted": pm,
            "kernel_predicted": pk,
            "movement_slope_seed_std": float(np.std(seed_slopes["movement"])),
            "kernel_slope_seed_std": float(np.std(seed_slopes["kernel_change"])),
        }

    tol = p["slope_tolerance"]
    checks = {}
    for sc, s in stats.items():
        for key, name in (("movement", "movement"), ("kernel", "kernel change")):
            slope, pred = s[f"{key}_slope"], s[f"{key}_predicted"]
            checks[f"{key}_slope_{sc}"] = check(
                slope,
                f"|log-log slope of mean {name} against m - ({pred:g})| <= {tol:g}",
                math.isfinite(slope) and abs(slope - pred) <= tol,
            )
    if len(scalings) == len(SCALINGS):
        order = {
            key: [stats[sc][key][-1] for sc in SCALINGS] for key in ("movement", "kernel_change")
        }
        ok = all(v[0] < v[1] < v[2] for v in order.values())
        checks["ordering_at_largest_m"] = check(
            order,
            f"at m = {widths[-1]}: movement and kernel change ntk < general < mean_field",
            ok,
        )
    lr = p["loss_ratio"]
    for sc, s in stats.items():
        checks[f"function_moves_{sc}"] = check(
            s["max_loss_ratio"],
            f"max over widths and seeds of L(T) / L(0) <= {lr:g} (f moved O(1) by T)",
            s["max_loss_ratio"] <= lr,
        )
    values = [c["value"] if c else math.nan for c in energy.values()]
    ok = all(c is not None and c["passed"] for c in energy.values())
    checks["energy_identity"] = check(
        float(np.max(values)) if values else math.nan,
        "every sub-run: median |energy_rel_residual| <= 0.1 (the max is shown)",
        ok,
    )

    table = comparison_table(stats, widths)
    atomic_write_text(out / "table.md", table["markdown"])
    figures = _figures(out, stats, runs, widths, seeds)
    runs_summary = {
        label: {
            k: r[k]
            for k in (
                "status",
                "scaling",
                "width",
                "seed",
                "movement",
                "kernel_change",
                "initial_loss",
                "final_loss",
                "function_change",
                "final_t",
            )
        }
        for label, r in runs.items()
    }
    return write_summary(
        out,
        "lazy_vs_rich",
        statuses,
        checks,
        figures,
        CLAIM,
        t0,
        final_loss=stats[scalings[-1]]["final_loss"][-1],
        T=cfg.dynamics.steps * cfg.dynamics.dt,
        init=p["init"],
        widths=widths,
        seeds=seeds,
        stats=stats,
        table=table,
        runs=runs_summary,
    )


LAZY_VS_RICH = Experiment(
    name="lazy_vs_rich",
    summary="particle movement and tangent-kernel change against width: ntk lazy (slopes "
    "-1/2, -1), mean_field rich (0, 0), general gamma between (seed 000 table)",
    claim=CLAIM,
    quick=(
        "experiment.params.widths=[64, 256, 1024]",
        "experiment.params.seeds=[0]",
        "experiment.params.slope_tolerance=0.2",
    ),
    runner=run_lazy_vs_rich,
)
