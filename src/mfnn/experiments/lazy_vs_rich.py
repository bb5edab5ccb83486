"""`lazy_vs_rich`: how far particles and the tangent kernel move against the width m, under
ntk, a general gamma and mean_field scaling."""

from __future__ import annotations

import math
from typing import Any, Literal

import jax
import numpy as np
from pydantic import Field, field_validator, model_validator

from ..build import enable_dtype, init_laws
from ..config import Config
from ..diagnostics import relative_movement
from ..diagnostics.kernel import kernel_change
from ..errors import ConfigError
from ..models import gamma_of
from ..stats import loglog_fit
from ..study import CheckSpec, Experiment, Params, Run, Study, check

CLAIM = """\
Lazy against rich training (Chizat, Oyallon and Bach 2019, "On lazy training in
differentiable programming"; Jacot, Gabriel and Hongler 2018; Mei, Montanari and Nguyen
2018). With f = m^(-gamma) sum_j phi(x; theta_j) and the time scaling
d theta_j/dt = -m^(2 gamma - 1) dR/dtheta_j (gamma = 1/2 ntk, 1 mean_field, `gamma` for the
general curve), f moves O(1) in O(1) time in every scaling and each particle moves
O(m^(gamma - 1)):
    movement = |theta(T) - theta(0)|_F / |theta(0)|_F = O(m^(gamma - 1)),
    predicted log-log slope gamma - 1: -1/2 (ntk), -1/4 (gamma = 3/4), 0 (mean_field).
The tangent kernel m^(2 gamma - 1) K = (1/m) sum_j k_j, k_j(x, x') = grad phi(x; theta_j) .
grad phi(x'; theta_j), changes by (1/m) sum_j [Dk(theta_j)[dtheta_j] + O(|dtheta_j|^2)].
The first-order term is odd under a -> -a; from a start symmetric under a -> -a it averages
out and the second-order term leads:
    kernel change = ||K_T - K_0||_F / ||K_0||_F = Theta(m^(2 (gamma - 1))),
    predicted slope 2 (gamma - 1): -1 (ntk), -1/2 (gamma = 3/4), 0 (mean_field),
the O(1/m) NTK change of Dyer and Gur-Ari ("Asymptotics of wide networks from Feynman
diagrams", 2020). Without the symmetry the first-order term survives and the change is only
O(m^(gamma - 1)) (the general bound of Chizat-Oyallon-Bach), which `init: skewed` shows.

Setup: d = 1, n = 64 inputs x ~ U[-1, 1], a smooth teacher (three tanh units), softplus
units with bias, Euler to T = steps * dt for every width m in `widths`, seed in `seeds` and
scaling in `scalings`. The initial particles are drawn from the laws of `model.init`
(`mfnn.build.init_laws`, a JAX key per (seed, m)) into inputs/m<m>_s<seed>-<digest>.npz,
shared by the scalings. `init`: paired (m/2 draws and their mirrors (-a, w, b): f_0 = 0, the
symmetrized start of Chizat-Oyallon-Bach), iid (m draws: an O(1) random f_0 under ntk), or
skewed (m/3 draws of (w, b), each carried by a = (-1, -1, 2)/sqrt(2): f_0 = 0, E a^3 != 0).

Statistics at T per run: movement (`mfnn.diagnostics.relative_movement`), kernel change on
the training inputs (`mfnn.diagnostics.kernel.kernel_change`), L(0), L(T). Per scaling the
means over seeds at each width and the least-squares slope of log(mean) against log m, with
its 95% confidence interval (`mfnn.stats.loglog_fit`).

Checks (thresholds are params): each fitted slope within slope_tolerance of its
prediction; at the largest m the ordering ntk < general < mean_field of both statistics;
L(T) / L(0) <= loss_ratio in every run (f moved O(1) by T: the time scaling's premise; a run
too short fails it). A skewed start fails kernel_slope_ntk (slope about -0.6 to -0.7).
"""

SCALINGS = ("ntk", "general", "mean_field")
GROUP = {"paired": 2, "iid": 1, "skewed": 3}  # particles sharing one draw of (w, b)
# output weights of a skewed triple: sum 0 (f_0 = 0), mean square 1, sum of cubes 6 / 2^1.5
SKEWED_A = np.array([-1.0, -1.0, 2.0]) / np.sqrt(2.0)


class LazyParams(Params):
    widths: tuple[int, ...] = Field(
        (64, 256, 1024, 4096, 16384), min_length=3, description="m: distinct widths >= 2"
    )
    seeds: tuple[int, ...] = Field(
        (0, 1, 2), min_length=1, description="RNG seeds (initial particles); means over them"
    )
    gamma: float = Field(0.75, gt=0.5, lt=1, description="gamma of the general curve")
    scalings: tuple[Literal["ntk", "general", "mean_field"], ...] = Field(
        SCALINGS, min_length=1, description="the scalings to train"
    )
    init: Literal["paired", "iid", "skewed"] = Field(
        "paired", description="paired: m/2 draws and their mirrors (-a, w, b); iid; skewed"
    )
    slope_tolerance: float = Field(0.15, gt=0, description="|slope - predicted| <= this")
    loss_ratio: float = Field(0.25, gt=0, le=1, description="L(T) / L(0) <= this, every run")

    @field_validator("widths", "seeds", "scalings")
    @classmethod
    def _distinct(cls, v: tuple, info) -> tuple:
        low = {"widths": 2, "seeds": 0}.get(info.field_name)
        if len(set(v)) != len(v) or (low is not None and min(v) < low):
            rule = "distinct" if low is None else f"distinct integers >= {low}"
            raise ValueError(f"entries must be {rule}; got {list(v)}")
        order = SCALINGS.index if info.field_name == "scalings" else None
        return tuple(sorted(v, key=order))

    @model_validator(mode="after")
    def _groups(self) -> LazyParams:
        k = GROUP[self.init]
        if any(m % k for m in self.widths):
            raise ValueError(
                f"`experiment.params.widths` must be multiples of {k} with `init: {self.init}` "
                f"(groups of {k} particles share (w, b)); got {list(self.widths)}"
            )
        return self

    def check_config(self, cfg: Config) -> None:
        dyn, data = cfg.dynamics, cfg.data
        if dyn.kind != "gradient_flow" or dyn.langevin or dyn.birth_death or dyn.domain:
            raise ConfigError(
                "lazy_vs_rich compares plain gradient flows of free particles: "
                "`dynamics.kind: gradient_flow` without `dynamics.langevin`, "
                f"`dynamics.birth_death` or `dynamics.domain`; got kind {dyn.kind!r}."
            )
        if cfg.objective.l2 != 0:
            raise ConfigError(
                "`objective.l2` must be 0 for lazy_vs_rich (the claim is about the risk's "
                f"flow); got {cfg.objective.l2}."
            )
        if data.population or data.path or data.target not in ("sign", "teacher"):
            raise ConfigError(
                "lazy_vs_rich takes the kernel on a sampled training set: `data.target: sign` "
                "or `teacher` with `data.inputs`, without `data.population` or `data.path`; "
                f"got target {data.target!r}."
            )
        if not cfg.model.train_output:
            raise ConfigError(
                "lazy_vs_rich needs output weights (`model.train_output: true`): the paired "
                "and skewed starts act on a; got false."
            )
        if cfg.model.init.path is not None:
            raise ConfigError(
                "lazy_vs_rich draws the initial particles at every width from the laws "
                f"`model.init.a`, `.w`, `.b`: remove `model.init.path` ({cfg.model.init.path!r})."
            )
        if dyn.steps % cfg.record.every:
            raise ConfigError(
                f"`record.every` must divide `dynamics.steps` ({dyn.steps}) so that T is "
                f"recorded; got {cfg.record.every}."
            )


def predicted_slopes(g: float) -> tuple[float, float]:
    """(movement, kernel change) log-log slopes against m: gamma - 1 and 2 (gamma - 1).

    Example:
        >>> [predicted_slopes(g) for g in (0.5, 0.75, 1.0)]
        [(-0.5, -1.0), (-0.25, -0.5), (0.0, 0.0)]
    """
    return g - 1.0, 2.0 * (g - 1.0)


def initial_particles(cfg: Config, m: int, seed: int, init: str) -> dict[str, np.ndarray]:
    """The particle file (a, w, b) of width m for one seed: k = m / GROUP[init] draws of
    each block from the laws of ``model.init`` with the JAX key fold_in(key(seed), m)
    (block i: fold_in(., i), as `mfnn.measure.sample_particles`).

    paired: the k draws and their mirrors (-a, w, b), so that f_0 = m^(-gamma) sum_j
    phi(x; theta_j) = 0 exactly; iid: m draws; skewed: each (w, b) carried by three
    particles with a = (-1, -1, 2) / sqrt(2): again f_0 = 0, but E a^3 != 0.
    """
    dtype = enable_dtype(cfg.dtype)
    copies, laws = GROUP[init], init_laws(cfg.model.init)
    k, key = m // copies, jax.random.fold_in(jax.random.key(seed), m)
    shapes = {"a": (k,), "w": (k, cfg.data.inputs.dim), "b": (k,)}
    a, w, b = (
        np.asarray(laws[blk].sample(jax.random.fold_in(key, i), shape, dtype))
        for i, (blk, shape) in enumerate(shapes.items())
    )
    a = {"paired": np.concatenate([a, -a]), "iid": a, "skewed": np.repeat(SKEWED_A, k)}[init]
    out = {"a": a, "w": np.tile(w, (copies, 1)), "b": np.tile(b, copies)}
    return out if cfg.model.bias else {"a": out["a"], "w": out["w"]}


def plan(s: Study[LazyParams]) -> dict[str, Run]:
    p, steps, runs = s.params, s.config.dynamics.steps, {}
    for seed in p.seeds:
        for m in p.widths:
            path = s.input_file(f"m{m}_s{seed}", **initial_particles(s.config, m, seed, p.init))
            for sc in p.scalings:
                change = {
                    "seed": seed,
                    "model.width": m,
                    "model.scaling": sc,
                    "model.gamma": p.gamma if sc == "general" else None,
                    "model.init.path": str(path),
                    "record.snapshot_every": steps,  # theta(0) and theta(T)
                }
                name = f"{sc}_m{m}_s{seed}"  # many sub-runs: no per-run figures
                runs[name] = Run(s.sub_config(name, change), figures=False)
    return runs


def measure(r) -> dict[str, Any]:
    """Movement, kernel change, L(0), L(T) and the relative function change of one run."""
    theta0, theta = r.particles("first"), r.particles("last")
    x, y = r.built.train.x, np.asarray(r.built.train.y)
    f0, f = (np.asarray(r.model.predict(t, x)) for t in (theta0, theta))
    loss = r.metrics["loss"]
    return {
        "movement": relative_movement(theta, theta0),
        "kernel_change": kernel_change(r.model, theta0, theta, x),
        "initial_loss": float(loss[0]),
        "final_loss": float(loss[-1]),
        "function_change": float(np.linalg.norm(f - f0) / np.linalg.norm(y)),
        "final_t": r.snapshot_steps()[-1] * r.dt,
    }


def analyze(s: Study[LazyParams], runs) -> dict[str, Any]:
    p = s.params
    per_run = {name: measure(r) for name, r in runs.items()}
    stats = {}
    for sc in p.scalings:
        first = runs[f"{sc}_m{p.widths[0]}_s{p.seeds[0]}"].config.model
        g = gamma_of(first.scaling, first.gamma)
        per = {
            key: np.array([[per_run[f"{sc}_m{m}_s{sd}"][key] for m in p.widths] for sd in p.seeds])
            for key in ("movement", "kernel_change", "initial_loss", "final_loss")
        }
        mean = {key: v.mean(axis=0) for key, v in per.items()}
        out = {"gamma": g, "widths": list(p.widths)}
        for key, stem, pred in zip(
            ("movement", "kernel_change"), ("movement", "kernel"), predicted_slopes(g), strict=True
        ):
            fit = loglog_fit(p.widths, mean[key])
            out |= {
                key: mean[key].tolist(),
                f"{stem}_slope": fit.slope,
                f"{stem}_slope_ci95": list(fit.ci),
                f"{stem}_predicted": pred,
                f"{stem}_slope_seed_std": float(
                    np.std([loglog_fit(p.widths, row).slope for row in per[key]])
                ),
            }
        stats[sc] = out | {
            "final_loss": mean["final_loss"].tolist(),
            "loss_ratio": (mean["final_loss"] / mean["initial_loss"]).tolist(),
            "max_loss_ratio": float(np.max(per["final_loss"] / per["initial_loss"])),
        }
    return {
        "final_loss": stats[p.scalings[-1]]["final_loss"][-1],
        "T": s.config.dynamics.steps * s.config.dynamics.dt,
        "init": p.init,
        "stats": stats,
        "table": comparison_table(stats, list(p.widths)),
        "runs": per_run,
        "_metrics": {name: r.metrics for name, r in runs.items()},
    }


def evaluate(s: Study[LazyParams], stats: dict[str, Any]) -> dict[str, dict]:
    """The checks of the CLAIM from the summary's statistics (tests doctor them)."""
    p, st, checks = s.params, stats["stats"], {}
    tol = p.slope_tolerance
    for sc, v in st.items():
        for key, what in (("movement", "movement"), ("kernel", "kernel change")):
            slope, pred = v[f"{key}_slope"], v[f"{key}_predicted"]
            checks[f"{key}_slope_{sc}"] = check(
                slope,
                f"|log-log slope of mean {what} against m - ({pred:g})| <= {tol:g}",
                math.isfinite(slope) and abs(slope - pred) <= tol,
            )
    if set(st) == set(SCALINGS):
        order = {k: [st[sc][k][-1] for sc in SCALINGS] for k in ("movement", "kernel_change")}
        checks["ordering_at_largest_m"] = check(
            order,
            f"at m = {p.widths[-1]}: movement and kernel change ntk < general < mean_field",
            all(a < b < c for a, b, c in order.values()),
        )
    for sc, v in st.items():
        checks[f"function_moves_{sc}"] = check(
            v["max_loss_ratio"],
            f"max over widths and seeds of L(T) / L(0) <= {p.loss_ratio:g} (f moved O(1) by T)",
            v["max_loss_ratio"] <= p.loss_ratio,
        )
    return checks


def comparison_table(stats: dict[str, dict], widths: list[int]) -> dict[str, Any]:
    """The lazy-vs-rich table from the measured numbers: one row per scaling, the values
    at the largest m and the fitted slopes [95% CI] next to their predictions."""
    big, rows, lines = widths[-1], [], []
    for sc, s in stats.items():
        row = {"scaling": sc, "gamma": s["gamma"]}
        for key, stem in (("movement", "movement"), ("kernel_change", "kernel")):
            row[key], row[f"{stem}_slope"] = s[key][-1], s[f"{stem}_slope"]
            row[f"{stem}_slope_predicted"] = s[f"{stem}_predicted"]
        row |= {"final_loss": s["final_loss"][-1], "loss_ratio": s["loss_ratio"][-1]}
        rows.append(row)
        fit = {
            k: "{:.3f} [{:.3f}, {:.3f}] ({:g})".format(
                s[f"{k}_slope"], *s[f"{k}_slope_ci95"], s[f"{k}_predicted"]
            )
            for k in ("movement", "kernel")
        }
        cells = [sc, f"{s['gamma']:g}", f"{row['movement']:.3g}", fit["movement"]]
        cells += [f"{row['kernel_change']:.3g}", fit["kernel"]]
        cells += [f"{row['final_loss']:.3g}", f"{row['loss_ratio']:.3g}"]
        lines.append("| " + " | ".join(cells) + " |")
    columns = ["scaling", "gamma", f"movement (m={big})", "movement slope [95% CI] (predicted)"]
    columns += [f"kernel change (m={big})", "kernel slope [95% CI] (predicted)"]
    columns += [f"train loss L(T) (m={big})", "L(T) / L(0)"]
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)
    title = "Lazy vs rich, measured at T; means over seeds; slopes are log-log fits against m."
    markdown = "\n".join([title, "", head, *lines]) + "\n"
    return {"columns": columns, "rows": rows, "markdown": markdown}


def figures(s: Study[LazyParams], stats: dict[str, Any], runs) -> list:
    """table.md; scaling_laws.png (movement and kernel change against m, each scaling's
    fit and its predicted slope); training.png (loss and movement along training)."""
    from ..plots import COLORS, loglog_fits, plt, save_figure
    from ..rundir import atomic_write_text

    atomic_write_text(s.out / "table.md", stats["table"]["markdown"])
    p, st = s.params, stats["stats"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, key, stem in zip(
        axes, ("movement", "kernel_change"), ("movement", "kernel"), strict=True
    ):
        for sc, v in st.items():
            for sd in p.seeds:
                per_seed = [stats["runs"][f"{sc}_m{m}_s{sd}"][key] for m in p.widths]
                ax.loglog(p.widths, per_seed, ".", color=COLORS[sc], alpha=0.35, ms=4)
            pred = v[f"{stem}_predicted"]
            label = f"{sc} (gamma = {v['gamma']:g})"
            loglog_fits(
                ax, p.widths, [(label, v[key], COLORS[sc])], guide=(pred, f"predicted {pred:g}")
            )
        ax.set(xlabel="width m", ylabel=key.replace("_", " "), title=f"{key} at T (k: predicted)")
    fig.tight_layout()
    paths = [save_figure(fig, s.figure_path("scaling_laws.png"))]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for sc in st:
        for i, m in enumerate(p.widths):
            mt = stats["_metrics"][f"{sc}_m{m}_s{p.seeds[0]}"]
            style = {"color": COLORS[sc], "alpha": 0.3 + 0.7 * (i + 1) / len(p.widths)}
            label = sc if i == len(p.widths) - 1 else None
            axes[0].semilogy(mt["t"], mt["loss"], label=label, **style)
            axes[1].loglog(mt["t"][1:], mt["movement"][1:], label=label, **style)
    axes[0].set(xlabel="t", ylabel="train loss", title=f"every width (seed {p.seeds[0]})")
    axes[1].set(xlabel="t", ylabel="relative movement", title="darker: wider")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return paths + [save_figure(fig, s.figure_path("training.png"))]


LAZY_VS_RICH = Experiment(
    name="lazy_vs_rich",
    summary="particle movement and tangent-kernel change against width: ntk lazy (slopes "
    "-1/2, -1), mean_field rich (0, 0), general gamma between",
    claim=CLAIM,
    params=LazyParams,
    # three seeds: one seed's slope at m = 64 .. 1024 scatters by ~0.1; the extra seeds
    # reuse the compiled loop of their width (about a second each)
    quick=("experiment.params.widths=[64, 256, 1024]", "experiment.params.seeds=[0, 1, 2]"),
    checks=(
        CheckSpec(
            "movement_slope_*", "|slope of mean movement vs m - (gamma - 1)| <= slope_tolerance"
        ),
        CheckSpec(
            "kernel_slope_*",
            "|slope of mean kernel change vs m - 2 (gamma - 1)| <= slope_tolerance",
        ),
        CheckSpec("ordering_at_largest_m", "movement and kernel change ntk < general < mean_field"),
        CheckSpec("function_moves_*", "max over widths and seeds of L(T) / L(0) <= loss_ratio"),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
