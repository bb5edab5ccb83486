"""`stationary_1d`: a stationary full-support student has zero loss; in d = 1 the parity of
sigma fixes the symmetry of rho - rho* (teacher-student paper, Theorem 2 and Example 2)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import matplotlib.pyplot as plt
import numpy as np
from annotated_types import Ge
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..config import Config
from ..errors import ConfigError
from ..plots import save_figure
from ..study import CheckSpec, Experiment, Params, Run, Study, check

CLAIM = """\
"Mean field models for neural networks in teacher-student setting", Theorem 2: with
inputs of positive density, a stationary distribution rho of the mean-field flow with full
support has zero loss: condition (4) int sigma(x theta) (rho - rho*)(theta) dtheta = 0 for
all x. Example 2 (d = 1) reads (4) per activation; for the moments M_k(nu) = int theta^k dnu
of nu = rho - rho*:
- gaussian exp(-z^2/2) (even): nu odd, every even moment vanishes;
- quadratic z^2 (even): (4) is M_2(nu) = 0 and nothing more (the kernel spans x^2 alone),
  so the paper's "if and only if rho - rho* is odd" is only sufficient: gradient flow
  multiplies every particle by one factor s(t), and M_4(rho) = s^4 M_4(rho_0) != M_4(rho*);
- tanh, arctan (odd) and sigmoid (odd + 1/2): nu even, every odd moment vanishes;
- softplus (z/2 + an even function): nu odd with M_1(nu) = 0.

Setup: x ~ N(0, 1), the exact population risk by Gauss-Hermite quadrature, f = (1/m)
sum_j sigma(w_j x) (no bias, output weights 1), the teacher rho* = sum_i alpha_i
delta_{c_i} of `data.teacher` with the student's sigma, students w_j ~ N(0, 1) i.i.d. (full
support; one draw per width for every activation), Euler, for each activation and width m.
`schedule` gives an activation its own dt, steps and record interval: for sigma = z^2 an
Euler step's relative energy residual is 6 dt M_2(rho_t) (E x^4 = 3), so the quadratic runs
take dt = 0.005 (0.04 at rho*; dt = 0.05 gives 0.41) and stop at t = 1.5, where the loss is
about 1e-22 L(0), above float64 round-off (past it the energy identity compares round-off
with round-off).

Statistics at the last step (rho = rho_m(T)): the loss ratio (L(T) + |R_q - R_2q|) / L(0)
(the flow minimizes the rule's risk R_q; adding the rule's error estimate bounds the finer
rule's risk); for k = 1..max_order, D_k = M_k(rho_m) - M_k(rho*), its standard error
SE_k = std_j(w_j^k) / sqrt(m) (the sampling resolution of a moment of m nearly i.i.d.
particles, propagation of chaos; it shrinks like m^(-1/2): the wider run is the stricter
test) and z_k = |D_k| / SE_k.

Checks per activation a and width m: loss_<a>_m<m>: loss ratio <= loss_ratio;
symmetry_<a>_m<m>: max z_k <= z over the orders k <= checked_order that (4) forces to
vanish; quadrature_<a>_m<m>: |R_q - R_2q| <= 0.5 L(T) + 1e-12 L(0) (the rule resolves the
final loss, or it is at round-off). Controls, showing the moment test can fail (z > z on a
moment (4) leaves free) at the widest m: gaussian_learns_symmetrized_teacher (z_1: from a
symmetric start the flow stays symmetric and reaches the symmetrized teacher, not rho*) and
quadratic_m4_not_forced (z_4).
"""

Activation = Literal["gaussian", "quadratic", "tanh", "arctan", "sigmoid", "softplus"]
FORCED = {  # k -> whether (4) forces M_k(rho - rho*) = 0
    "gaussian": lambda k: k % 2 == 0,
    "quadratic": lambda k: k == 2,
    "tanh": lambda k: k % 2 == 1,
    "arctan": lambda k: k % 2 == 1,
    "sigmoid": lambda k: k % 2 == 1,
    "softplus": lambda k: k % 2 == 0 or k == 1,
}


class Schedule(BaseModel):
    """An activation's own step, run length and record interval (None: the config's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dt: float | None = Field(None, gt=0)
    steps: int | None = Field(None, gt=0)
    record_every: int | None = Field(None, gt=0)


class Stationary1DParams(Params):
    activations: tuple[Activation, ...] = Field(
        tuple(FORCED), min_length=1, description="one run per activation and width"
    )
    widths: tuple[Annotated[int, Ge(2)], ...] = Field(
        (256, 2048), min_length=1, description="student widths m (the z tolerance ~ m^(-1/2))"
    )
    schedule: dict[Activation, Schedule] = Field(
        {"quadratic": Schedule(dt=0.005, steps=300, record_every=3)},
        description="per activation: dt, steps, record_every replacing the config's",
    )
    loss_ratio: float = Field(1e-4, gt=0, lt=1, description='"zero loss": ratio <= this')
    z: float = Field(3.0, gt=0, description="|D_k| <= z SE_k for the orders (4) forces")
    checked_order: int = Field(3, ge=1, le=12, description="check forced orders <= this")
    max_order: int = Field(6, ge=1, le=12, description="report moments up to this order")

    @field_validator("activations", "widths")
    @classmethod
    def _distinct(cls, v):
        if len(set(v)) != len(v):
            raise ValueError(f"must not repeat a value; got {list(v)}")
        return v

    @model_validator(mode="after")
    def _orders(self):
        if self.checked_order > self.max_order:
            raise ValueError(
                f"`experiment.params.checked_order` ({self.checked_order}) must be <= "
                f"`max_order` ({self.max_order})"
            )
        return self

    def check_config(self, cfg: Config) -> None:
        pop, model, t = cfg.data.population, cfg.model, cfg.data.teacher
        law = model.init.w.law
        rules = (  # (fields, received, needed, why)
            (
                "data.population.inputs, .dim, .method",
                pop and (pop.inputs, pop.dim, pop.method),
                ("gaussian", 1, "quadrature"),
                "Theorem 2 needs inputs of positive density on R",
            ),
            (
                "model.bias, model.train_output, model.scaling",
                (model.bias, model.train_output, model.scaling),
                (False, False, "mean_field"),
                "f = (1/m) sum sigma(w x)",
            ),
            (
                "model.init.w.law, model.init.path",
                (law, model.init.path),
                ("gaussian" if law == "constant" else law, None),
                "a full-support start",
            ),
            (
                "data.teacher",
                t and t.model_dump(exclude_none=True),
                t and {"w": t.w, "alpha": t.alpha},
                "inline w and alpha; the student's unit: no a, b, activation",
            ),
        )
        for fields, got, need, why in rules:
            if got is None or got != need:
                raise ConfigError(f"stationary_1d needs `{fields}` = {need} ({why}); got {got}.")


def vanishing_orders(activation: str, max_order: int) -> list[int]:
    """The orders k in 1..max_order with M_k(rho - rho*) = 0 implied by condition (4).

    Example:
        >>> vanishing_orders("tanh", 6), vanishing_orders("softplus", 6)
        ([1, 3, 5], [1, 2, 4, 6])
        >>> vanishing_orders("gaussian", 4), vanishing_orders("quadratic", 6)
        ([2, 4], [2])
    """
    if activation not in FORCED:
        raise ValueError(f"Example 2 covers {sorted(FORCED)}; got {activation!r}.")
    return [k for k in range(1, max_order + 1) if FORCED[activation](k)]


def moment_stats(w: np.ndarray, c: np.ndarray, alpha: np.ndarray, max_order: int) -> dict:
    """D_k = M_k(rho_m) - M_k(rho*), SE_k = std(w^k, ddof=1) / sqrt(m), z_k = |D_k| / SE_k
    for k = 1..max_order (rho_m uniform on w (m,), rho* = sum alpha_i delta_{c_i}).

    Example:
        >>> s = moment_stats(np.array([-1.0, 1.0]), np.array([1.0]), np.array([1.0]), 2)
        >>> s["D"], s["rho"], s["teacher"]
        ([-1.0, 0.0], [0.0, 1.0], [1.0, 1.0])
    """
    out: dict[str, list] = {k: [] for k in ("order", "rho", "teacher", "D", "SE", "z")}
    for k in range(1, max_order + 1):
        wk = w**k
        mk, tk = float(wk.mean()), float(alpha @ c**k)
        se = float(wk.std(ddof=1) / math.sqrt(w.shape[0])) if w.shape[0] > 1 else math.nan
        d = mk - tk
        z = abs(d) / se if se > 0 else (0.0 if d == 0 else math.inf)
        for key, v in zip(out, (k, mk, tk, d, se, z), strict=True):
            out[key].append(v)
    return out


def _teacher(s: Study) -> tuple[np.ndarray, np.ndarray]:
    t = s.config.data.teacher
    return np.asarray(t.w, float).reshape(-1), np.asarray(t.alpha, float)


def plan(s: Study[Stationary1DParams]) -> dict[str, Run]:
    out = {}
    for a in s.params.activations:
        own = s.params.schedule.get(a, Schedule())
        keys = ("dynamics.dt", "dynamics.steps", "record.every")
        changes = {
            k: v for k, v in zip(keys, (own.dt, own.steps, own.record_every), strict=True) if v
        }
        for m in s.params.widths:
            cfg = s.sub_config(f"{a}_m{m}", {"model.activation": a, "model.width": m} | changes)
            out[f"{a}_m{m}"] = Run(cfg, figures=False)  # loss.png shows every run
    return out


def analyze(s: Study[Stationary1DParams], runs) -> dict:
    p, (c, alpha) = s.params, _teacher(s)
    per_run, clouds, curves = {}, {}, {}
    for name, r in runs.items():
        a = r.config.model.activation
        loss0, loss = float(r.metrics["loss"][0]), float(r.metrics["loss"][-1])
        qerr = (r.summary.get("quadrature_error") or {}).get("final", math.nan)
        clouds[name] = (r.particles("first")[:, 0], r.particles("last")[:, 0])
        curves[name] = (r.metrics["t"], r.metrics["loss"] / loss0)
        forced = vanishing_orders(a, p.max_order)
        per_run[name] = {
            "activation": a,
            "width": r.config.model.width,
            "dt": r.dt,
            "initial_loss": loss0,
            "final_loss": loss,
            "loss_ratio": (loss + qerr) / loss0 if loss0 > 0 else math.nan,
            "quadrature_error": qerr,
            "vanishing_orders": forced,
            "checked_orders": [k for k in forced if k <= p.checked_order],
            "moments": moment_stats(clouds[name][1], c, alpha, p.max_order),
        }
    return {"teacher": {"c": c.tolist(), "alpha": alpha.tolist()}, "runs": per_run} | {
        "_clouds": clouds,
        "_curves": curves,
    }


def evaluate(s: Study[Stationary1DParams], stats: dict) -> dict:
    p, checks = s.params, {}
    for name, r in stats["runs"].items():
        mom, ks = r["moments"], r["checked_orders"]
        zmax = max(mom["z"][k - 1] for k in ks)
        tols = ", ".join(f"{p.z * mom['SE'][k - 1]:.3g}" for k in ks)
        checks[f"loss_{name}"] = check(
            r["loss_ratio"],
            f"(L(T) + |R_q - R_2q|) / L(0) <= {p.loss_ratio:g}",
            r["loss_ratio"] <= p.loss_ratio,
        )
        checks[f"symmetry_{name}"] = check(
            zmax,
            f"max_k |D_k| / SE_k <= {p.z:g} over k in {ks} (condition (4) for "
            f"{r['activation']}; |D_k| <= {tols})",
            zmax <= p.z,
        )
        qerr, bound = r["quadrature_error"], 0.5 * r["final_loss"] + 1e-12 * r["initial_loss"]
        checks[f"quadrature_{name}"] = check(
            qerr, "|R_q - R_2q| <= 0.5 L(T) + 1e-12 L(0)", bool(np.isfinite(qerr) and qerr <= bound)
        )
    wide = max(p.widths)
    for a, k, name, why in (
        ("gaussian", 1, "gaussian_learns_symmetrized_teacher", "M_1 is free: rho != rho*"),
        ("quadratic", 4, "quadratic_m4_not_forced", "(4) fixes M_2 only"),
    ):
        if a in p.activations and p.max_order >= k:
            z = stats["runs"][f"{a}_m{wide}"]["moments"]["z"][k - 1]
            checks[name] = check(z, f"z_{k} > {p.z:g} for {a} at m = {wide} ({why})", z > p.z)
    return checks


def figures(s: Study[Stationary1DParams], stats: dict, runs) -> list:
    """particles.png: rho_m(0), rho_m(T) and the teacher at the widest m; moments.png: z_k."""
    p, (c, alpha) = s.params, _teacher(s)
    acts, wide, ks = p.activations, max(p.widths), np.arange(1, p.max_order + 1)
    ncol = min(3, len(acts))
    shape = (math.ceil(len(acts) / ncol), ncol)
    f1, ax1 = plt.subplots(*shape, figsize=(5 * ncol, 3.6 * shape[0]), squeeze=False)
    f2, ax2 = plt.subplots(*shape, figsize=(5 * ncol, 3.4 * shape[0]), squeeze=False)
    for a, hist, bars in zip(acts, ax1.flat, ax2.flat, strict=False):
        (w0, w), r = stats["_clouds"][f"{a}_m{wide}"], stats["runs"][f"{a}_m{wide}"]
        bins = np.linspace(-1, 1, 61) * 1.05 * max(np.abs(w0).max(), np.abs(c).max())
        hist.hist(w0, bins, density=True, histtype="step", color="#7f8c8d", label="t = 0")
        hist.hist(w, bins, density=True, color="#c0392b", alpha=0.55, label="t = T")
        top = hist.get_ylim()[1]
        hist.vlines(c, 0, top, color="#2471a3", lw=2 + 6 * alpha, label="teacher atoms")
        hist.vlines(-c, 0, top, color="#2471a3", lw=1, ls=":", label="mirror images")
        hist.set(title=f"{a}, m = {wide}: loss ratio {r['loss_ratio']:.1e}", xlabel="w")
        hist.legend(fontsize=6, loc="upper left")
        bw = 0.8 / len(p.widths)
        for i, m in enumerate(sorted(p.widths)):
            z = np.maximum(stats["runs"][f"{a}_m{m}"]["moments"]["z"], 1e-3)
            color = ["#2471a3" if k in r["vanishing_orders"] else "#bdc3c7" for k in ks]
            x = ks + (i - (len(p.widths) - 1) / 2) * bw
            bars.bar(x, z, bw, color=color, edgecolor="k", lw=0.4, hatch="" if m == wide else "//")
        bars.axhline(p.z, color="#c0392b", lw=1, ls="--")
        bars.set(title=f"{a}: blue = forced by (4), hatched = smaller m", yscale="log", xticks=ks)
        bars.set(xlabel="moment order k", ylabel="|D_k| / SE_k")
    for ax in [*list(ax1.flat)[len(acts) :], *list(ax2.flat)[len(acts) :]]:
        ax.axis("off")
    f3, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, (t, ratio) in stats["_curves"].items():
        ax.loglog(t[1:], np.where(ratio[1:] > 0, ratio[1:], np.nan), label=name)
    ax.axhline(p.loss_ratio, color="k", lw=0.8, ls=":")
    ax.set(xlabel="t", ylabel="L(t) / L(0)", title="population risk")
    ax.legend(fontsize=6, ncol=2)
    for f in (f1, f2):
        f.tight_layout()
    return [
        save_figure(f3, s.figure_path("loss.png")),
        save_figure(f1, s.figure_path("particles.png")),
        save_figure(f2, s.figure_path("moments.png")),
    ]


STATIONARY_1D = Experiment(
    name="stationary_1d",
    summary="d = 1 students reach zero loss and the parity of sigma fixes the symmetry of "
    "rho - rho* (teacher-student paper, Theorem 2 and Example 2)",
    claim=CLAIM,
    params=Stationary1DParams,
    quick=(
        "experiment.params.activations=[gaussian,quadratic,tanh,softplus]",
        "experiment.params.widths=[128,512]",
        "dynamics.steps=8000",
        "record.every=200",
    ),
    checks=(
        CheckSpec("loss_*", "(L(T) + |R_q - R_2q|) / L(0) <= loss_ratio (1e-4)"),
        CheckSpec("symmetry_*", "max z_k <= z (3) over the forced orders k <= checked_order"),
        CheckSpec("quadrature_*", "|R_q - R_2q| <= 0.5 L(T) + 1e-12 L(0) at the end"),
        CheckSpec("gaussian_learns_symmetrized_teacher", "z_1 > z for gaussian at the widest m"),
        CheckSpec("quadratic_m4_not_forced", "z_4 > z for quadratic at the widest m"),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
