"""`teacher_speed`: students reach a teacher atom of weight alpha_1 about alpha_1/alpha_2
times faster than one of weight alpha_2 (teacher-student paper, section 2.2)."""

from __future__ import annotations

import math
from typing import Annotated

import matplotlib.pyplot as plt
import numpy as np
from annotated_types import Gt
from pydantic import Field, field_validator, model_validator

from ..config import Config
from ..errors import ConfigError
from ..plots import save_figure
from ..rundir import list_snapshots
from ..stats import hitting_time
from ..study import CheckSpec, Experiment, Params, Run, Study, check

CLAIM = """\
"Mean field models for neural networks in teacher-student setting", section 2.2: for a
teacher rho* = alpha_1 delta_{c_1} + alpha_2 delta_{c_2} with alpha_1 >> alpha_2 and
students split into an alpha_1 and an alpha_2 fraction, "after an initial short period" the
mean-field PDE decouples into one problem per atom; for the normalized densities
rho^i / alpha_i the two problems are one equation with time scaled by alpha_i, so the
alpha_1 students reach c_1 alpha_1/alpha_2 times faster than the alpha_2 students reach c_2.

Setup (so that the argument applies as stated and only the decoupling is under test): exact
population risk (closed form), x ~ N(0, I_2), f = (1/m) sum_j erf(w_j . x) (no bias, output
weights 1); c_1 = |c| e_1, c_2 = |c| (cos a, sin a) (|c| = teacher_norm, a = angle_deg:
equal norms and a rotation-invariant input law make the two single-atom problems the same up
to a rotation). For r = alpha_1/alpha_2: n_2 = cluster_size students and n_1 = r n_2
(alpha_i = n_i / m exactly), the students of atom i on an equally spaced ring of radius
s = spread around c_i (angles 2 pi (k + 1/2) / n_i: both normalized initial measures are the
same law, as the rescaling argument requires). Euler up to t = steps * dt. The spread is a
near-flat direction of the loss, so the distances below decay algebraically.

Statistic: students are assigned to the nearest atom at the end; D_i(t) = mean over the
students of atom i of |w_j(t) - c_i|; T_i = the first time D_i <= tol (tol = tolerance,
linear interpolation between snapshots, `mfnn.stats.hitting_time`; nan if never reached);
S = T_2 / T_1. Reported: T_ref, the same time for one ring of n_2 students learning one atom
of weight 1 (decoupling predicts T_i = T_ref / alpha_i), and slowdown_i = alpha_i T_i / T_ref
(1 if the decoupling were exact).

Check speed_ratio_<r>: r / f <= S <= f r (f = factor), for each r in ratios.
Informational (where the claim stops holding, with the same band): sweep_speed_ratio_<r> for the
larger ratios sweep_ratios (runs sweep_horizon times longer, same snapshot count), and
random_placement_in_band, the fraction of random_draws runs at r = random_ratio whose
students sit at uniformly random angles on the rings (drawn from `seed`): the two sampled
measures then differ (centroid offsets O(s / sqrt(n_i)), uneven angles), which the rescaling
argument does not cover. The statistic also depends on the geometry (|c|, a); only the
configured one is run.
"""

Ratio = Annotated[float, Gt(1)]


class TeacherSpeedParams(Params):
    ratios: tuple[Ratio, ...] = Field((2, 4, 8), min_length=1, description="checked r")
    cluster_size: int = Field(20, ge=1, description="n_2, students of the small atom")
    spread: float = Field(0.3, gt=0, description="radius of each initial ring around c_i")
    tolerance: float = Field(0.2, gt=0, description="T_i: first time D_i <= tolerance")
    factor: float = Field(1.5, gt=1, description="check: S within this factor of r")
    teacher_norm: float = Field(1.0, gt=0, description="|c_1| = |c_2|")
    angle_deg: float = Field(90.0, gt=0, lt=180, description="angle between c_1 and c_2")
    reference: bool = Field(True, description="run one ring against one atom (T_ref)")
    sweep_ratios: tuple[Ratio, ...] = Field(
        (16, 32), description="larger r, ring, informational (where the band stops holding)"
    )
    sweep_horizon: int = Field(4, ge=1, description="sweep runs last this many times longer")
    random_ratio: Ratio = Field(2, description="r of the random-placement runs")
    random_draws: int = Field(8, ge=0, description="random-placement runs (informational)")

    @field_validator("ratios", "sweep_ratios")
    @classmethod
    def _distinct(cls, v):
        if len(set(v)) != len(v):
            raise ValueError(f"must not repeat a value; got {list(v)}")
        return v

    @model_validator(mode="after")
    def _whole_students(self):
        if not self.tolerance < self.spread:
            raise ValueError(
                f"`experiment.params.tolerance` must be < spread = {self.spread} (the initial "
                f"mean distance); got {self.tolerance}"
            )
        for key in ("ratios", "sweep_ratios", "random_ratio"):
            for r in np.atleast_1d(getattr(self, key)):
                if abs(r * self.cluster_size - round(r * self.cluster_size)) > 1e-9:
                    raise ValueError(
                        f"`experiment.params.{key}`: r times `cluster_size` "
                        f"({self.cluster_size}) must be a whole number of students; got r = {r}"
                    )
        return self

    def check_config(self, cfg: Config) -> None:
        pop, model = cfg.data.population, cfg.model
        if pop is None or pop.dim != 2:
            raise ConfigError(
                f"teacher_speed needs `data.population` with `dim: 2`; got {pop and pop.dim}."
            )
        unit = (model.bias, model.train_output, model.scaling)
        if unit != (False, False, "mean_field"):
            raise ConfigError(
                "teacher_speed needs `model.bias, model.train_output, model.scaling` = "
                f"(False, False, 'mean_field') (f = (1/m) sum sigma(w . x)); got {unit}."
            )


def teacher_atoms(norm: float, angle_deg: float) -> np.ndarray:
    """c_1 = norm e_1, c_2 = norm (cos a, sin a): rows of a (2, 2) array."""
    a = math.radians(angle_deg)
    return norm * np.array([[1.0, 0.0], [math.cos(a), math.sin(a)]])


def ring(center: np.ndarray, n: int, radius: float, angles: np.ndarray | None = None):
    """n points center + radius (cos phi u + sin phi u_perp), u = center/|center|;
    phi_k = 2 pi (k + 1/2) / n unless ``angles`` are given.

    Example:
        >>> ring(np.array([2.0, 0.0]), 2, 0.5).round(12).tolist()
        [[2.0, 0.5], [2.0, -0.5]]
    """
    u = center / np.linalg.norm(center)
    v = np.array([-u[1], u[0]])
    phi = 2 * np.pi * (np.arange(n) + 0.5) / n if angles is None else angles
    return center + radius * (np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v)


def initial_particles(c, n1: int, n2: int, spread: float, seed=None) -> np.ndarray:
    """The n1 students of c_1 then the n2 of c_2 on rings (`ring`); with a ``seed`` (a
    list of ints for `numpy.random.default_rng`), at uniformly random angles instead."""
    rng = None if seed is None else np.random.default_rng(seed)
    return np.concatenate(
        [
            ring(c[i], n, spread, None if rng is None else rng.uniform(0, 2 * np.pi, n))
            for i, n in enumerate((n1, n2))
        ]
    )


def cluster_distances(t: np.ndarray, w: np.ndarray, c: np.ndarray) -> dict[str, np.ndarray]:
    """For snapshots w (T, m, d) at times t: the final nearest-atom assignment, and per atom
    i the mean distance D_i(t) and the centroid distance C_i(t) = |mean w_j - c_i| of its
    students (nan if it has none).

    Example:
        >>> w = np.array([[[1.0, 0.0], [0.0, 2.0]], [[1.0, 0.0], [0.0, 1.5]]])
        >>> d = cluster_distances(np.arange(2.0), w, np.eye(2))
        >>> d["assign"].tolist(), d["D2"].tolist()
        ([0, 1], [1.0, 0.5])
    """
    assign = np.argmin(((w[-1][:, None, :] - c[None]) ** 2).sum(-1), axis=1)
    out = {"t": t, "assign": assign}
    for i in range(c.shape[0]):
        sel = assign == i
        nan = np.full(len(t), np.nan)
        out[f"D{i + 1}"] = np.linalg.norm(w[:, sel] - c[i], axis=-1).mean(-1) if sel.any() else nan
        out[f"C{i + 1}"] = np.linalg.norm(w[:, sel].mean(1) - c[i], axis=-1) if sel.any() else nan
    return out


def speed_check(S: float, r: float, factor: float, tol: float) -> dict:
    """r / factor <= S <= factor r (S = T_2 / T_1; nan fails)."""
    lo, hi = r / factor, factor * r
    return check(
        S,
        f"T_2/T_1 in [r/{factor:g}, {factor:g} r] = [{lo:.4g}, {hi:.4g}] for "
        f"alpha_1/alpha_2 = r = {r:g} (tol {tol:g})",
        bool(np.isfinite(S) and lo <= S <= hi),
    )


def plan(s: Study[TeacherSpeedParams]) -> dict[str, Run]:
    p, cfg = s.params, s.config
    c, n2 = teacher_atoms(p.teacher_norm, p.angle_deg), p.cluster_size
    every, snap = cfg.record.every, cfg.record.snapshot_every or cfg.record.every

    def sub(name, r=None, seed=None, horizon=1):
        if r is None:  # the reference: one ring, one atom of weight 1
            theta0, atoms, alpha = ring(c[0], n2, p.spread), c[:1], [1.0]
        else:
            n1 = round(r * n2)
            theta0 = initial_particles(c, n1, n2, p.spread, seed)
            atoms, alpha = c, [n1 / (n1 + n2), n2 / (n1 + n2)]
        changes = {
            "model.width": theta0.shape[0],
            "model.init.path": str(s.input_file(name, w=theta0)),
            "data.teacher": {"w": atoms.tolist(), "alpha": alpha},
            "dynamics.steps": cfg.dynamics.steps * horizon,
            "record.every": every * horizon,
            "record.snapshot_every": snap * horizon,
        }
        return name, Run(s.sub_config(name, changes), figures=seed is None)

    items = [sub("reference")] if p.reference else []
    items += [sub(f"ratio_{r:g}", r) for r in p.ratios]
    items += [sub(f"sweep_{r:g}", r, horizon=p.sweep_horizon) for r in p.sweep_ratios]
    rr = p.random_ratio
    items += [sub(f"random_{rr:g}_d{i}", rr, [cfg.seed, i]) for i in range(p.random_draws)]
    return dict(items)


def _distances(r, atoms) -> dict[str, np.ndarray]:
    snaps = list_snapshots(r.dir)
    steps = sorted(snaps)
    w = np.stack([np.load(snaps[k])["w"] for k in steps])
    return cluster_distances(np.asarray(steps, float) * r.dt, w, atoms)


def analyze(s: Study[TeacherSpeedParams], runs) -> dict:
    p = s.params
    c, tol = teacher_atoms(p.teacher_norm, p.angle_deg), p.tolerance
    dists, per_run, t_ref = {}, {}, None
    if "reference" in runs:
        d = dists["reference"] = _distances(runs["reference"], c[:1])
        t_ref = hitting_time(d["t"], d["D1"], tol)
        per_run["reference"] = {"width": p.cluster_size, "T_ref": t_ref}
        per_run["reference"]["final_mean_distance"] = float(d["D1"][-1])
    for name, r in runs.items():
        if name == "reference":
            continue
        d = dists[name] = _distances(r, c)
        alpha = [float(a) for a in r.config.data.teacher.alpha]
        T = [hitting_time(d["t"], d[f"D{i}"], tol) for i in (1, 2)]
        S = T[1] / T[0] if T[0] > 0 else math.nan
        n = [round(a * r.config.model.width) for a in alpha]
        per_run[name] = {
            "alpha": alpha,
            "ratio": alpha[0] / alpha[1],
            "n": n,
            "assigned": np.bincount(d["assign"], minlength=2).tolist(),
            "T_1": T[0],
            "T_2": T[1],
            "speed_ratio": S,
            "speed_ratio_over_alpha_ratio": S * alpha[1] / alpha[0],
            "final_mean_distance": [float(d["D1"][-1]), float(d["D2"][-1])],
            "final_centroid_distance": [float(d["C1"][-1]), float(d["C2"][-1])],
        }
        if t_ref:
            per_run[name]["slowdown"] = [alpha[i] * T[i] / t_ref for i in (0, 1)]
    swept = sorted(
        (v["ratio"], v["speed_ratio_over_alpha_ratio"])
        for k, v in per_run.items()
        if k.startswith(("ratio_", "sweep_"))
    )
    upto = math.nan  # the largest r up to which every S / r is in [1/f, f]
    for r, x in swept:
        if not (x > 0 and abs(math.log(x)) <= math.log(p.factor)):
            break
        upto = r
    rand = [
        v["speed_ratio_over_alpha_ratio"] for k, v in per_run.items() if k.startswith("random_")
    ]
    return {
        "teacher": {"c": c.tolist()},
        "speed_ratio_over_r": {f"{r:g}": x for r, x in swept},
        "band_holds_up_to_ratio": upto,
        "random_placement": {
            "ratio": p.random_ratio,
            "speed_ratio_over_r": rand,
            "median": float(np.median(rand)) if rand else math.nan,
            "range": [min(rand), max(rand)] if rand else [],
        },
        "runs": per_run,
        "_dists": dists,
    }


def evaluate(s: Study[TeacherSpeedParams], stats: dict) -> dict:
    p, runs = s.params, stats["runs"]
    S = {name: run["speed_ratio"] for name, run in runs.items() if name != "reference"}
    checks = {
        f"speed_ratio_{r:g}": speed_check(S[f"ratio_{r:g}"], r, p.factor, p.tolerance)
        for r in p.ratios
    }
    for r in p.sweep_ratios:
        checks[f"sweep_speed_ratio_{r:g}"] = speed_check(
            S[f"sweep_{r:g}"], r, p.factor, p.tolerance
        )
    if p.random_draws:
        rr = p.random_ratio
        draws = [S[f"random_{rr:g}_d{i}"] for i in range(p.random_draws)]
        frac = float(np.mean([speed_check(x, rr, p.factor, p.tolerance)["passed"] for x in draws]))
        checks["random_placement_in_band"] = check(
            frac,
            f"fraction of the {len(draws)} random-placement runs at r = {rr:g} with T_2/T_1 "
            f"in [r/{p.factor:g}, {p.factor:g} r] = 1",
            frac == 1,
        )
    return checks


def figures(s: Study[TeacherSpeedParams], stats: dict, runs) -> list:
    """speed_ratio.png: S against r with the band; mean_distance.png: D_i against t and
    against alpha_i t (decoupling predicts one curve), and the centroid distance."""
    p, per_run, dists = s.params, stats["runs"], stats["_dists"]
    f, tol = p.factor, p.tolerance
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    rs = sorted({*p.ratios, *p.sweep_ratios, p.random_ratio})
    xs = np.geomspace(min(rs) / 1.4, max(rs) * 1.4, 50)
    ax.fill_between(xs, xs / f, xs * f, color="#2471a3", alpha=0.12, label=f"factor {f:g} band")
    ax.loglog(xs, xs, "k--", lw=1, label=r"$T_2/T_1 = \alpha_1/\alpha_2$")
    for prefix, style, label in (
        ("random_", "x", "random placement"),
        ("ratio_", "o", "checked"),
        ("sweep_", "s", "wider sweep (informational)"),
    ):
        pts = [(v["ratio"], v["speed_ratio"]) for k, v in per_run.items() if k.startswith(prefix)]
        if pts:
            ax.loglog(*np.array(pts).T, style, ms=7, label=label)
    ax.set_xticks(rs, [f"{r:g}" for r in rs])
    ax.minorticks_off()
    ax.set(xlabel=r"$\alpha_1/\alpha_2$", ylabel=r"$T_2/T_1$", title=f"time to D_i <= {tol:g}")
    ax.legend(fontsize=8)
    paths = [save_figure(fig, s.figure_path("speed_ratio.png"))]

    fig, ax = plt.subplots(1, 3, figsize=(16, 4.4))
    names = [k for k in per_run if k.startswith(("ratio_", "sweep_"))]
    for col, name in zip(plt.cm.viridis(np.linspace(0, 0.85, len(names))), names, strict=True):
        d, r = dists[name], per_run[name]
        for i, ls in ((1, "-"), (2, "--")):
            a, t = r["alpha"][i - 1], d["t"]
            lab = f"r = {r['ratio']:g}, atom {i}"
            ax[0].semilogy(t, d[f"D{i}"], ls, color=col, label=lab)
            ax[1].loglog(a * t[1:], d[f"D{i}"][1:], ls, color=col, label=lab)
            ax[2].loglog(
                a * t[1:], np.where(d[f"C{i}"][1:] > 0, d[f"C{i}"][1:], np.nan), ls, color=col
            )
    if "reference" in dists:
        d = dists["reference"]
        ax[1].loglog(d["t"][1:], d["D1"][1:], "k", lw=2.5, alpha=0.5, label="one atom, weight 1")
        ax[2].loglog(d["t"][1:], d["C1"][1:], "k", lw=2.5, alpha=0.5)
    for a in ax[:2]:
        a.axhline(tol, color="k", ls=":", lw=0.8)
    ax[0].set(xlabel="t", ylabel="D_i(t) = mean |w_j - c_i|", title="cluster mean distance")
    ax[1].set(xlabel="alpha_i t", ylabel="D_i", title="against alpha_i t: decoupled = one curve")
    ax[2].set(xlabel="alpha_i t", ylabel="|mean w_j - c_i|", title="centroid distance")
    ax[0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return [*paths, save_figure(fig, s.figure_path("mean_distance.png"))]


TEACHER_SPEED = Experiment(
    name="teacher_speed",
    summary="students reach a teacher atom of weight alpha_1 about alpha_1/alpha_2 times "
    "faster than one of weight alpha_2 (teacher-student paper, section 2.2)",
    claim=CLAIM,
    params=TeacherSpeedParams,
    quick=(
        "experiment.params.cluster_size=10",
        "experiment.params.sweep_ratios=[16]",
        "experiment.params.sweep_horizon=3",
        "experiment.params.random_draws=4",
        "dynamics.dt=1.0",
        "dynamics.steps=1500",
        "record.every=10",
        "record.snapshot_every=10",
    ),
    checks=(
        CheckSpec("speed_ratio_*", "r / factor <= T_2/T_1 <= factor r (factor 1.5), ring start"),
        CheckSpec(
            "sweep_speed_ratio_*",
            "r / factor <= T_2/T_1 <= factor r at the larger ratios sweep_ratios",
            informational="the checked claim is limited to `ratios`; these runs report where "
            "the band stops holding at larger ratios (the decoupling of section 2.2 is a "
            "scale argument whose error the paper does not bound)",
        ),
        CheckSpec(
            "random_placement_in_band",
            "every random-placement run at r = random_ratio has T_2/T_1 in [r/factor, factor r]",
            informational="reported to show where the claim stops holding: with tens of "
            "students at random angles the two normalized initial measures differ, which the "
            "rescaling argument does not cover, and S scatters with the draw",
        ),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
