"""`teacher_speed`: an atom of weight alpha_1 is learned ~alpha_1/alpha_2 times faster."""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from annotated_types import Gt
from pydantic import Field, model_validator

from ..config import Config
from ..rundir import list_snapshots
from ..study import CheckSpec, Experiment, Params, Run, Study, check
from .common import Distinct, fixed_output_units, require

CLAIM = """\
"Mean field models for neural networks in teacher-student setting", section 2.2: for a
teacher rho* = alpha_1 delta_{c_1} + alpha_2 delta_{c_2}, alpha_1 >> alpha_2, and students
split into an alpha_1 and an alpha_2 fraction, "after an initial short period" the mean-field
PDE decouples into one problem per atom, one equation for rho^i / alpha_i in the time
alpha_i t: the alpha_1 students reach c_1 alpha_1/alpha_2 times faster than the alpha_2
students reach c_2.

Setup (only the decoupling under test): exact population risk, x ~ N(0, I_2), f = (1/m)
sum_j erf(w_j . x), |c_1| = |c_2| (one problem up to a rotation); for r = alpha_1/alpha_2,
n_1 = r n_2 students (alpha_i = n_i / m), equally spaced on a ring of radius spread around
c_i (the same normalized law for both atoms); Euler.

Statistic: T_i, the first time the mean distance D_i of atom i's students to c_i is
<= tolerance (`mfnn.diagnostics.cluster_distances`); S = T_2 / T_1 against r. Reported: T_ref
of one ring and one atom of weight 1, slowdown_i = alpha_i T_i / T_ref (1 if decoupled,
`mfnn.diagnostics.speed_ratio`), and where the band stops holding (larger ratios, random
angles). S depends on the geometry (|c|, angle); only the configured one is run.
"""

Ratios = Annotated[tuple[Annotated[float, Gt(1)], ...], Distinct]


class TeacherSpeedParams(Params):
    ratios: Ratios = Field((2, 4, 8), min_length=1, description="checked r")
    cluster_size: int = Field(20, ge=1, description="n_2, students of the small atom")
    spread: float = Field(0.3, gt=0, description="radius of each initial ring around c_i")
    tolerance: float = Field(0.2, gt=0, description="T_i: first time D_i <= tolerance")
    factor: float = Field(1.5, gt=1, description="check: S within this factor of r")
    teacher_norm: float = Field(1.0, gt=0, description="|c_1| = |c_2|")
    angle_deg: float = Field(90.0, gt=0, lt=180, description="angle between c_1 and c_2")
    reference: bool = Field(True, description="run one ring against one atom (T_ref)")
    sweep_ratios: Ratios = Field((16, 32), description="larger r, ring start, informational")
    sweep_horizon: int = Field(4, ge=1, description="sweep runs last this many times longer")
    random_ratio: float = Field(2, gt=1, description="r of the random-placement runs")
    random_draws: int = Field(8, ge=0, description="random-placement runs (informational)")

    @model_validator(mode="after")
    def _whole_students(self):
        if not self.tolerance < self.spread:
            raise ValueError(
                f"`experiment.params.tolerance` must be < spread = {self.spread} (the initial "
                f"mean distance); got {self.tolerance}"
            )
        n, named = self.cluster_size, {"ratios": self.ratios, "sweep_ratios": self.sweep_ratios}
        for key, rs in (named | {"random_ratio": (self.random_ratio,)}).items():
            if bad := [r for r in rs if abs(r * n - round(r * n)) > 1e-9]:
                raise ValueError(
                    f"`experiment.params.{key}`: r times `cluster_size` ({n}) must be a whole "
                    f"number of students; got r = {bad[0]}"
                )
        return self

    def check_config(self, cfg: Config) -> None:
        dim = cfg.data.population and cfg.data.population.dim
        require("teacher_speed", ("data.population.dim", "2", dim == 2, dim))
        fixed_output_units(cfg, "teacher_speed", "f = (1/m) sum erf(w . x)")


def teacher_atoms(norm: float, angle_deg: float) -> np.ndarray:
    """c_1 = norm e_1, c_2 = norm (cos a, sin a): rows of a (2, 2) array."""
    a = math.radians(angle_deg)
    return norm * np.array([[1.0, 0.0], [math.cos(a), math.sin(a)]])


def rings(c, ns, radius: float, rng=None) -> np.ndarray:
    """ns[i] points on the circle of ``radius`` around each c_i (rows of c, in the plane), at
    the angles 2 pi (k + 1/2) / n_i from c_i / |c_i| (or uniform ones drawn from ``rng``).

    Example:
        >>> rings(np.array([[2.0, 0.0]]), [2], 0.5).round(12).tolist()
        [[2.0, 0.5], [2.0, -0.5]]
    """
    out = []
    for ci, n in zip(c, ns, strict=True):
        u = ci / np.linalg.norm(ci)
        phi = 2 * np.pi * (np.arange(n) + 0.5) / n if rng is None else rng.uniform(0, 2 * np.pi, n)
        out.append(ci + radius * (np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * [-u[1], u[0]]))
    return np.concatenate(out)


def speed_check(S: float, r: float, factor: float, tol: float) -> dict:
    """r / factor <= S <= factor r (S = T_2 / T_1; nan fails)."""
    lo, hi = r / factor, factor * r
    rule = f"T_2/T_1 in [r/{factor:g}, {factor:g} r] = [{lo:.4g}, {hi:.4g}] for alpha_1/alpha_2"
    return check(S, f"{rule} = r = {r:g} (tol {tol:g})", bool(np.isfinite(S) and lo <= S <= hi))


def plan(s: Study[TeacherSpeedParams]) -> dict[str, Run]:
    p, cfg, rec = s.params, s.config, s.config.record
    c, n2 = teacher_atoms(p.teacher_norm, p.angle_deg), p.cluster_size

    def sub(name, r=None, seed=None, horizon=1):
        ns = [n2] if r is None else [round(r * n2), n2]  # the reference: one ring, one atom
        rng = None if seed is None else np.random.default_rng(seed)
        theta0 = rings(c[: len(ns)], ns, p.spread, rng)
        changes = {
            "model.width": theta0.shape[0],
            "model.init.path": str(s.input_file(name, w=theta0)),
            "data.teacher": {"w": c[: len(ns)].tolist(), "alpha": [n / sum(ns) for n in ns]},
            "dynamics.steps": cfg.dynamics.steps * horizon,
            "record.every": rec.every * horizon,
            "record.snapshot_every": (rec.snapshot_every or rec.every) * horizon,
        }
        return name, Run(s.sub_config(name, changes), figures=seed is None)

    items = [sub("reference")] if p.reference else []
    items += [sub(f"ratio_{r:g}", r) for r in p.ratios]
    items += [sub(f"sweep_{r:g}", r, horizon=p.sweep_horizon) for r in p.sweep_ratios]
    rr = p.random_ratio
    items += [sub(f"random_{rr:g}_d{i}", rr, [cfg.seed, i]) for i in range(p.random_draws)]
    return dict(items)


def analyze(s: Study[TeacherSpeedParams], runs) -> dict:
    from ..diagnostics.teacher import cluster_distances, speed_ratio

    p = s.params
    c = teacher_atoms(p.teacher_norm, p.angle_deg)
    dists, per_run, t_ref = {}, {}, None
    for name, r in runs.items():  # the reference, planned first, gives T_ref
        snaps = list_snapshots(r.dir)
        w = np.stack([np.load(snaps[k])["w"] for k in sorted(snaps)])
        atoms, t = c[:1] if name == "reference" else c, np.asarray(sorted(snaps), float) * r.dt
        d = dists[name] = cluster_distances(t, w, atoms, p.tolerance)
        if name == "reference":
            t_ref = d["T"][0]
            per_run[name] = {"width": p.cluster_size, "T_ref": t_ref}
            per_run[name]["final_mean_distance"] = float(d["D1"][-1])
            continue
        alpha = [float(a) for a in r.config.data.teacher.alpha]
        per_run[name] = {
            "alpha": alpha,
            "ratio": alpha[0] / alpha[1],
            "n": [round(a * r.config.model.width) for a in alpha],
            "assigned": np.bincount(d["assign"], minlength=2).tolist(),
            **speed_ratio(d["T"], alpha, t_ref),
            "final_mean_distance": [float(d["D1"][-1]), float(d["D2"][-1])],
            "final_centroid_distance": [float(d["C1"][-1]), float(d["C2"][-1])],
        }
    over_r = {k: v["speed_ratio_over_alpha_ratio"] for k, v in per_run.items() if k != "reference"}
    drawn = {k: x for k, x in over_r.items() if k.startswith("random_")}
    swept = sorted((per_run[k]["ratio"], x) for k, x in over_r.items() if k not in drawn)
    rand = list(drawn.values())
    upto = math.nan  # the largest r up to which every S / r is in [1/f, f]
    for r, x in swept:
        if not (x > 0 and abs(math.log(x)) <= math.log(p.factor)):
            break
        upto = r
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

    def band(name: str, r: float) -> dict:
        return speed_check(runs[name]["speed_ratio"], r, p.factor, p.tolerance)

    checks = {f"speed_ratio_{r:g}": band(f"ratio_{r:g}", r) for r in p.ratios}
    checks |= {f"sweep_speed_ratio_{r:g}": band(f"sweep_{r:g}", r) for r in p.sweep_ratios}
    if p.random_draws:
        rr, n = p.random_ratio, p.random_draws
        frac = float(np.mean([band(f"random_{rr:g}_d{i}", rr)["passed"] for i in range(n)]))
        rule = f"fraction of the {n} random-placement runs at r = {rr:g} with T_2/T_1 in "
        rule += f"[r/{p.factor:g}, {p.factor:g} r] = 1"
        checks["random_placement_in_band"] = check(frac, rule, frac == 1)
    return checks


def figures(s: Study[TeacherSpeedParams], stats: dict, runs) -> list:
    """T_2/T_1 against r with the band; D_i against alpha_i t (one curve if decoupled)."""
    from ..plots import plt, save_figure, width_axis

    p, per_run, dists = s.params, stats["runs"], stats["_dists"]
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.9), layout="constrained")
    rs = sorted({*p.ratios, *p.sweep_ratios, p.random_ratio})
    xs = np.geomspace(min(rs) / 1.4, max(rs) * 1.4, 50)
    ax[0].fill_between(xs, xs / p.factor, xs * p.factor, color="#2471a3", alpha=0.12)
    ax[0].loglog(xs, xs, "k--", lw=1, label=r"$T_2/T_1 = \alpha_1/\alpha_2$ (band: factor)")
    for kind, style, label in (
        ("random", "x", "random placement"),
        ("ratio", "o", "checked"),
        ("sweep", "s", "wider sweep (informational)"),
    ):
        pts = [(v["ratio"], v["speed_ratio"]) for k, v in per_run.items() if k.startswith(kind)]
        ax[0].loglog(*np.reshape(pts, (-1, 2)).T, style, ms=7, label=label)
    width_axis(ax[0], rs)
    ax[0].set(
        xlabel=r"teacher weight ratio $\alpha_1/\alpha_2$",
        ylabel=r"time ratio $T_2/T_1$",
        title="time to D_i <= tol",
    )
    names = [k for k in per_run if k.startswith(("ratio_", "sweep_"))]
    for col, name in zip(plt.cm.viridis(np.linspace(0, 0.85, len(names))), names, strict=True):
        d, r = dists[name], per_run[name]
        for i, ls in ((1, "-"), (2, "--")):
            t = r["alpha"][i - 1] * d["t"][1:]
            ax[1].loglog(t, d[f"D{i}"][1:], ls, color=col, label=f"r = {r['ratio']:g}, atom {i}")
    if "reference" in dists:
        d = dists["reference"]
        ax[1].loglog(d["t"][1:], d["D1"][1:], "k", lw=2.5, alpha=0.5, label="one atom, weight 1")
    ax[1].axhline(p.tolerance, color="k", ls=":", lw=0.8)
    ax[1].set(
        xlabel=r"rescaled time $\alpha_i t$",
        ylabel="D_i = mean |w_j - c_i|",
        title="decoupled: one curve",
    )
    for a in ax:
        a.legend(fontsize=7, ncol=1 + (a is ax[1]))
    fig.suptitle(
        r"a teacher atom of weight $\alpha_1$ is learned $\alpha_1/\alpha_2$ times faster "
        r"than one of weight $\alpha_2$"
    )
    return [save_figure(fig, s.figure_path("teacher_speed.png"))]


TEACHER_SPEED = Experiment(
    name="teacher_speed",
    summary="a teacher atom of weight alpha_1 is learned ~alpha_1/alpha_2 times faster than "
    "one of weight alpha_2 (teacher-student paper, s.2.2)",
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
            informational="the claim is checked at `ratios`; these report where the band stops "
            "holding (the decoupling of the teacher-student paper, section 2.2, is a scale "
            "argument with no error bound)",
        ),
        CheckSpec(
            "random_placement_in_band",
            "every random-placement run at r = random_ratio has T_2/T_1 in [r/factor, factor r]",
            informational="reported to show where the claim stops holding: at random angles "
            "the two normalized initial measures differ (the rescaling argument does not "
            "cover it) and S scatters with the draw",
        ),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
