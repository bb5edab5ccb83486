"""`lazy_vs_rich`: how far particles and the tangent kernel move against the width m, under
ntk, a general gamma and mean_field scaling."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from annotated_types import Ge
from pydantic import AfterValidator, Field, NonNegativeInt

from ..config import Config
from ..study import CheckSpec, Experiment, Params, Run, Study, check
from .common import Distinct, Increasing, require

CLAIM = """\
Lazy against rich training (Chizat, Oyallon and Bach 2019, "On lazy training in
differentiable programming"; Jacot, Gabriel and Hongler 2018; Mei, Montanari and Nguyen
2018). With f = m^(-gamma) sum_j phi(x; theta_j) and the time scaling d theta_j/dt =
-m^(2 gamma - 1) dR/dtheta_j (gamma = 1/2 ntk, 1 mean_field, `gamma` for the general curve),
f moves O(1) in O(1) time in every scaling, and against the width m
    movement |theta(T) - theta(0)|_F / |theta(0)|_F = O(m^(gamma - 1)),
    kernel change ||K_T - K_0||_F / ||K_0||_F = Theta(m^(2 (gamma - 1)))
from a start symmetric under a -> -a, where the first-order kernel change (odd in a)
averages out (the O(1/m) NTK change of Dyer and Gur-Ari 2020, "Asymptotics of wide networks
from Feynman diagrams"). Without the symmetry the change is only O(m^(gamma - 1)) (the
general bound of Chizat-Oyallon-Bach): `init: skewed` fails kernel_slope_ntk.

Setup: d = 1, n = 64 inputs x ~ U[-1, 1], a smooth teacher (three tanh units), softplus
units with bias, Euler to T = steps * dt for each width, seed and scaling, from particles
drawn from the laws of `model.init` (a JAX key per (seed, m); inputs/m<m>_s<seed>-*.npz,
shared by the scalings). `init`: paired (m/2 draws and their mirrors (-a, w, b): f_0 = 0, the
symmetrized start of Chizat-Oyallon-Bach), iid (an O(1) random f_0 under ntk), or skewed
(m/3 draws of (w, b), each carried by a = (-1, -1, 2)/sqrt(2): f_0 = 0, E a^3 != 0).

Statistics at T per run (`mfnn.diagnostics.training_change` on the training inputs); per
scaling their means over seeds and log-log slopes against m with 95% CIs (`width_fit`),
predicted by `width_exponents`; L(T) / L(0) in every run (f moved O(1) by T: the premise).
"""

SCALINGS = ("ntk", "general", "mean_field")
GROUP = {"paired": 2, "iid": 1, "skewed": 3}  # particles sharing one draw of (w, b)
# output weights of a skewed triple: sum 0 (f_0 = 0), mean square 1, sum of cubes 6 / 2^1.5
SKEWED_A = np.array([-1.0, -1.0, 2.0]) / np.sqrt(2.0)
STATS = ("movement", "kernel_change")  # the statistics against m
STEMS = ("movement", "kernel")  # their names in checks and slopes
Widths = Annotated[tuple[Annotated[int, Ge(2)], ...], Increasing]
Seeds = Annotated[tuple[NonNegativeInt, ...], Distinct]


def _in_order(scalings: tuple[str, ...]) -> tuple[str, ...]:
    """put in the order ntk, general, mean_field"""
    return tuple(sorted(scalings, key=SCALINGS.index))


Scalings = Annotated[tuple[Literal[SCALINGS], ...], Distinct, AfterValidator(_in_order)]


class LazyParams(Params):
    widths: Widths = Field((64, 256, 1024, 4096, 16384), min_length=3, description="m")
    seeds: Seeds = Field((0, 1, 2), min_length=1, description="initial draws, means over them")
    gamma: float = Field(0.75, gt=0.5, lt=1, description="gamma of the general curve")
    scalings: Scalings = Field(SCALINGS, min_length=1, description="the scalings to train")
    init: Literal["paired", "iid", "skewed"] = Field("paired", description="the start (claim)")
    slope_tolerance: float = Field(0.15, gt=0, description="|slope - predicted| <= this")
    loss_ratio: float = Field(0.25, gt=0, le=1, description="L(T) / L(0) <= this, every run")

    def check_config(self, cfg: Config) -> None:
        dyn, data, model, k = cfg.dynamics, cfg.data, cfg.model, GROUP[self.init]
        plain = dyn.kind == "gradient_flow" and not (dyn.langevin or dyn.birth_death or dyn.domain)
        sampled = data.population is None and data.path is None
        require(
            "lazy_vs_rich",
            ("experiment.params.widths", f"multiples of {k} with `init: {self.init}` (groups of "
             f"{k} share (w, b))", all(m % k == 0 for m in self.widths), list(self.widths)),
            ("dynamics.kind`, `dynamics.langevin`, `dynamics.birth_death`, `dynamics.domain",
             "gradient_flow, unset, unset, unset (a plain gradient flow)", plain, dyn.kind),
            ("objective.l2", "0 (the risk's flow)", cfg.objective.l2 == 0, cfg.objective.l2),
            ("data.target`, `data.population`, `data.path", "sign or teacher, unset, unset (a "
             "sampled training set)", sampled and data.target in ("sign", "teacher"), data.target),
            ("model.train_output", "true (the starts act on a)", model.train_output,
             model.train_output),
            ("model.init.path", "unset (drawn from `model.init`)", model.init.path is None,
             model.init.path),
            ("record.every", f"a divisor of dynamics.steps = {dyn.steps} (T is recorded)",
             dyn.steps % cfg.record.every == 0, cfg.record.every),
        )  # fmt: skip


def initial_particles(cfg: Config, m: int, seed: int, init: str) -> dict[str, np.ndarray]:
    """The particle file (a, w, b) of width m for one seed: k = m / GROUP[init] draws of each
    block from the laws of ``model.init`` with the key fold_in(key(seed), m) (block i:
    fold_in(., i), as `mfnn.measure.sample_particles`). paired: the draws and their mirrors
    (-a, w, b), f_0 = 0 exactly; iid: m draws; skewed: each (w, b) carried by three particles
    with a = (-1, -1, 2) / sqrt(2), f_0 = 0 but E a^3 != 0."""
    import jax

    from ..build import enable_dtype, init_laws

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
    """`mfnn.diagnostics.training_change` of one run on its training set, L(0), L(T), T."""
    from ..diagnostics import training_change

    theta0, theta, loss = r.particles("first"), r.particles("last"), r.metrics["loss"]
    out = training_change(r.model, theta0, theta, r.built.train.x, r.built.train.y)
    out |= {"initial_loss": float(loss[0]), "final_loss": float(loss[-1])}
    return out | {"final_t": r.snapshot_steps()[-1] * r.dt}


def analyze(s: Study[LazyParams], runs) -> dict[str, Any]:
    from ..diagnostics import width_exponents, width_fit
    from ..models import gamma_of

    p, stats = s.params, {}
    per_run = {name: measure(r) for name, r in runs.items()}
    for sc in p.scalings:
        first = runs[f"{sc}_m{p.widths[0]}_s{p.seeds[0]}"].config.model
        g = gamma_of(first.scaling, first.gamma)
        per = {
            key: np.array([[per_run[f"{sc}_m{m}_s{sd}"][key] for m in p.widths] for sd in p.seeds])
            for key in ("movement", "kernel_change", "initial_loss", "final_loss")
        }
        stats[sc] = {"gamma": g, "widths": list(p.widths)}
        for key, stem, pred in zip(STATS, STEMS, width_exponents(g), strict=True):
            fit = width_fit(p.widths, per[key]).as_dict()
            stats[sc] |= {key: fit.pop("mean"), f"{stem}_predicted": pred}
            stats[sc] |= {f"{stem}_{k}": v for k, v in fit.items()}  # slope, _ci95, _seed_std
        initial, final = per["initial_loss"], per["final_loss"]
        stats[sc]["final_loss"] = final.mean(axis=0).tolist()
        stats[sc]["loss_ratio"] = (final.mean(axis=0) / initial.mean(axis=0)).tolist()
        stats[sc]["max_loss_ratio"] = float(np.max(final / initial))
    return {
        "final_loss": stats[p.scalings[-1]]["final_loss"][-1],
        "T": s.config.dynamics.steps * s.config.dynamics.dt,
        "init": p.init,
        "stats": stats,
        "table": comparison_table(stats, p.widths[-1]),
        "runs": per_run,
    }


def evaluate(s: Study[LazyParams], stats: dict[str, Any]) -> dict[str, dict]:
    """The checks of the CLAIM from the summary's statistics (tests doctor them)."""
    p, st, checks = s.params, stats["stats"], {}
    for sc, v in st.items():
        for stem, what in (("movement", "movement"), ("kernel", "kernel change")):
            slope, pred = v[f"{stem}_slope"], v[f"{stem}_predicted"]
            rule = f"|log-log slope of mean {what} vs m - ({pred:g})| <= {p.slope_tolerance:g}"
            ok = abs(slope - pred) <= p.slope_tolerance
            checks[f"{stem}_slope_{sc}"] = check(slope, rule, ok)
        rule = f"max over widths and seeds of L(T) / L(0) <= {p.loss_ratio:g} (f moved O(1))"
        ratio = v["max_loss_ratio"]
        checks[f"function_moves_{sc}"] = check(ratio, rule, ratio <= p.loss_ratio)
    if set(st) == set(SCALINGS):
        order = {k: [st[sc][k][-1] for sc in SCALINGS] for k in STATS}
        rule = f"at m = {p.widths[-1]}: movement and kernel change ntk < general < mean_field"
        ok = all(a < b < c for a, b, c in order.values())
        checks["ordering_at_largest_m"] = check(order, rule, ok)
    return checks


def comparison_table(stats: dict[str, dict], big: int) -> dict[str, Any]:
    """One row per scaling: the values at the largest m ``big``, slopes [95% CI] (predicted)."""
    columns = ["scaling", "gamma", f"movement (m={big})", "movement slope [95% CI] (predicted)"]
    columns += [f"kernel change (m={big})", "kernel slope [95% CI] (predicted)"]
    columns += [f"train loss L(T) (m={big})", "L(T) / L(0)"]
    rows, lines = [], ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for sc, s in stats.items():
        row, cells = {"scaling": sc, "gamma": s["gamma"]}, [sc, f"{s['gamma']:g}"]
        for key, stem in zip(STATS, STEMS, strict=True):
            slope, pred, ci = (s[f"{stem}_{k}"] for k in ("slope", "predicted", "slope_ci95"))
            row |= {key: s[key][-1], f"{stem}_slope": slope, f"{stem}_slope_predicted": pred}
            fit = "{:.3f} [{:.3f}, {:.3f}]".format(slope, *ci)
            cells += [f"{s[key][-1]:.3g}", f"{fit} ({pred:g})"]
        row |= {"final_loss": s["final_loss"][-1], "loss_ratio": s["loss_ratio"][-1]}
        cells += [f"{row['final_loss']:.3g}", f"{row['loss_ratio']:.3g}"]
        rows.append(row)
        lines.append("| " + " | ".join(cells) + " |")
    title = "Lazy vs rich, measured at T; means over seeds; slopes are log-log fits against m."
    return {"columns": columns, "rows": rows, "markdown": "\n".join([title, "", *lines]) + "\n"}


def figures(s: Study[LazyParams], stats: dict[str, Any], runs) -> list:
    """table.md; scaling_laws.png: movement and kernel change against m (dots: seeds), each
    scaling's fit and its predicted slope."""
    from ..plots import COLORS, loglog_fits, plt, save_figure
    from ..rundir import atomic_write_text

    atomic_write_text(s.out / "table.md", stats["table"]["markdown"])
    p, st = s.params, stats["stats"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.1), layout="constrained")
    names = {
        "movement": r"relative movement $|\theta_T-\theta_0|_F/|\theta_0|_F$",
        "kernel_change": r"kernel change $\|K_T-K_0\|_F/\|K_0\|_F$",
    }
    for ax, key, stem in zip(axes, STATS, STEMS, strict=True):
        for sc, v in st.items():
            for sd in p.seeds:
                per_seed = [stats["runs"][f"{sc}_m{m}_s{sd}"][key] for m in p.widths]
                ax.loglog(p.widths, per_seed, ".", color=COLORS[sc], alpha=0.35, ms=4)
            pred, label = v[f"{stem}_predicted"], f"{sc} (gamma = {v['gamma']:g})"
            guide = (pred, f"predicted {pred:g}")
            loglog_fits(ax, p.widths, [(label, v[key], COLORS[sc])], guide=guide)
        ax.set(
            xlabel="width m",
            ylabel=names.get(key, key.replace("_", " ")),
            title=f"{key.replace('_', ' ')} at T (grey: predicted slopes)",
        )
    fig.suptitle(
        "ntk training is lazy (movement and kernel change fall with m); "
        "mean-field training is rich (they do not)"
    )
    return [save_figure(fig, s.figure_path("scaling_laws.png"))]


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
