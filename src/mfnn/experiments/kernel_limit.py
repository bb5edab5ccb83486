"""`kernel_limit`: an ntk-scaled network follows its infinite-width kernel prediction, with
a gap O(m^-1/2); a mean-field network does not."""

from __future__ import annotations

from typing import Annotated

import jax.numpy as jnp
import numpy as np
from annotated_types import Ge, MinLen
from pydantic import Field

from ..config import Config
from ..plots import plt, save_figure  # plots selects the Agg backend
from ..stats import loglog_fit
from ..study import CheckSpec, Experiment, Params, Run, Study, check
from .common import Increasing, require

Widths = Annotated[tuple[Annotated[int, Ge(2)], ...], Increasing, MinLen(3)]
CLAIM = """\
Under the ntk scaling f = m^(-1/2) sum_j a_j sigma(w_j . x + b_j) the tangent kernel
stays at its initial value as m -> infinity and training is kernel gradient flow with the
neural tangent kernel Theta (Jacot, Gabriel and Hongler 2018; Chizat, Oyallon and Bach
2019): f_t = f_0 + the kernel correction, f_t(x*) = f_0(x*) - Theta(x*, X) V diag((1 -
(1 - dt lambda/n)^k) / lambda) V^T (f_0(X) - y) after k Euler steps (`mfnn.kernels`,
the analytic Theta of the initial law). The gap between the network and this prediction
shrinks like m^(-1/2) (the kernel's fluctuation and its movement, both O(m^-1/2)). Under
the mean_field scaling the same particles move O(1) and the kernel moves with them: the
network leaves the kernel prediction of its own initial kernel, at every width.

Setup: sign(x) on [-1, 1] (the `sign` experiment's task), relu units with bias, initial
a, w, b ~ N(0, 1) (the law Theta is computed for), full-batch gradient descent; the test
set's predictions are read from each run's predictions.npz (final and t = 0). Statistic:
G(m) = RMS over the test points of f_m(T) - f_lin,m(T), the prediction of the kernel flow
started from the run's own f_m(0), RMS over `replicas` independent draws; its log-log
slope against m (-1/2); the same gap for mean_field runs of the same draws at every width
(flat in m: the features it learns do not vanish), and the ratio of the two at m_max.
"""


class KernelLimitParams(Params):
    widths: Widths = Field((256, 1024, 4096, 16384), description="m of the ntk runs")
    replicas: int = Field(3, ge=1, description="independent draws per width")
    slope_tolerance: float = Field(0.15, gt=0, lt=0.5, description="|slope of G + 1/2|")
    mf_ratio: float = Field(2.0, gt=1, description="G_mean_field / G_ntk at m_max >= this")
    mf_flat: float = Field(0.2, gt=0, description="slope of log G_mean_field(m) >= -this")

    def check_config(self, cfg: Config) -> None:
        init = cfg.model.init
        gaussian = all(law.law == "gaussian" and law.mean == 0 for law in (init.a, init.w, init.b))
        require(
            "kernel_limit",
            ("model.init", "gaussian laws of mean 0 for a, w and b (Theta is computed for "
             "them)", gaussian, init),
            ("model.kind", "two_layer", cfg.model.kind == "two_layer", cfg.model.kind),
            ("model.activation", "relu or erf (closed-form kernels)",
             cfg.model.activation in ("relu", "erf"), cfg.model.activation),
            ("data.n_test", ">= 8 (the gap is measured on the test set)",
             cfg.data.n_test >= 8, cfg.data.n_test),
            ("dynamics.kind", "gradient_flow with the euler integrator (the kernel flow is "
             "compared step for step)", cfg.dynamics.kind == "gradient_flow"
             and cfg.dynamics.integrator == "euler" and cfg.dynamics.langevin is None
             and cfg.dynamics.birth_death is None, cfg.dynamics.kind),
        )  # fmt: skip


def plan(s: Study[KernelLimitParams]) -> dict[str, Run]:
    p, cfg, runs = s.params, s.config, {}
    steps = cfg.dynamics.steps
    for r in range(p.replicas):
        for m in p.widths:
            change = {"model.width": m, "model.scaling": "ntk", "seed": cfg.seed + 1 + r,
                      "record.snapshot_every": steps}  # fmt: skip
            runs[f"ntk-m{m}-r{r}"] = Run(s.sub_config(f"ntk-m{m}-r{r}", change), figures=False)
    for m in p.widths:  # the same first draws, under mean_field
        change = {"model.width": m, "model.scaling": "mean_field", "seed": cfg.seed + 1,
                  "record.snapshot_every": steps}  # fmt: skip
        runs[f"mf-m{m}"] = Run(s.sub_config(f"mf-m{m}", change), figures=False)
    return runs


def _gap(run, cfg: Config) -> tuple[float, dict]:
    """(RMS over the test set of f(T) - f_lin(T), arrays for the figure)."""
    from ..kernels import kernel_flow, ntk

    with np.load(run.dir / "predictions.npz") as z:
        p = dict(z)
    init, ms = cfg.model.init, cfg.model
    blocks = ("a", "w", "b") if ms.bias else ("a", "w")
    kw = dict(
        activation=ms.activation, a_std=init.a.std, w_std=init.w.std,
        b_std=init.b.std if ms.bias else 0.0, trainable=tuple(ms.trainable or blocks),
    )  # fmt: skip
    xtr, xte = jnp.asarray(p["x_train"]), jnp.asarray(p["x_test"])
    k, ks = ntk(xtr, **kw), ntk(xte, xtr, **kw)
    f0_train, f0_test = p["f_train_snapshots"][0], p["f_test_snapshots"][0]
    t = cfg.dynamics.steps * cfg.dynamics.dt
    _, lin = kernel_flow(k, jnp.asarray(p["y_train"]), t, k_test=ks,
                         f0_train=jnp.asarray(f0_train), f0_test=jnp.asarray(f0_test),
                         dt=cfg.dynamics.dt)  # fmt: skip
    lin = np.asarray(lin)
    return float(np.sqrt(np.mean((p["f_test"] - lin) ** 2))), {
        "x": p["x_test"][:, 0],
        "f": p["f_test"],
        "lin": lin,
        "f0": f0_test,
    }


def analyze(s: Study[KernelLimitParams], runs) -> dict:
    p = s.params
    gaps = []
    for m in p.widths:
        reps = [_gap(runs[f"ntk-m{m}-r{r}"], runs[f"ntk-m{m}-r{r}"].config)[0]
                for r in range(p.replicas)]  # fmt: skip
        gaps.append(float(np.sqrt(np.mean(np.square(reps)))))
    fit = loglog_fit(p.widths, gaps)
    mf_gaps = [_gap(runs[f"mf-m{m}"], runs[f"mf-m{m}"].config)[0] for m in p.widths]
    mf_fit = loglog_fit(p.widths, mf_gaps)
    mf, mf_curves = _gap(runs[f"mf-m{p.widths[-1]}"], runs[f"mf-m{p.widths[-1]}"].config)
    _, ntk_curves = _gap(runs[f"ntk-m{p.widths[-1]}-r0"], runs[f"ntk-m{p.widths[-1]}-r0"].config)
    return {
        "final_loss": float(runs[f"ntk-m{p.widths[-1]}-r0"].metrics["loss"][-1]),
        "widths": list(p.widths),
        "gap": gaps,
        "slope": fit.slope,
        "slope_fit": fit.as_dict(),
        "mean_field_gap": mf,
        "mean_field_gaps": mf_gaps,
        "mean_field_slope": mf_fit.slope,
        "mf_ratio": mf / gaps[-1],
        "_fit": fit,
        "_curves": {"ntk": ntk_curves, "mean_field": mf_curves},
    }


def evaluate(s: Study[KernelLimitParams], stats: dict) -> dict:
    p = s.params
    slope, ratio = stats["slope"], stats["mf_ratio"]
    return {
        "gap_slope": check(slope, f"|slope of log G(m) vs log m + 1/2| <= {p.slope_tolerance:g}",
                           bool(abs(slope + 0.5) <= p.slope_tolerance)),
        "gap_decreasing": check(float(max(np.diff(np.log(stats["gap"])))),
                                "max_i log G(m_{i+1}) - log G(m_i) < 0",
                                bool(np.all(np.diff(stats["gap"]) < 0))),
        "mean_field_departs": check(ratio, f"G_mean_field / G_ntk at m_max >= {p.mf_ratio:g}",
                                    bool(ratio >= p.mf_ratio)),
        "mean_field_flat": check(stats["mean_field_slope"],
                                 f"slope of log G_mean_field(m) vs log m >= -{p.mf_flat:g} (the "
                                 "features it learns do not vanish with m)",
                                 bool(stats["mean_field_slope"] >= -p.mf_flat)),
    }  # fmt: skip


def figures(s: Study[KernelLimitParams], stats: dict, runs) -> list:
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    w = np.asarray(stats["widths"])
    ax[0].loglog(w, stats["gap"], "o-", label="ntk: RMS(f_m - f_lin)")
    ax[0].loglog(w, stats["_fit"](w), "k:", label=f"slope {stats['slope']:.2f}")
    ax[0].loglog(w, stats["mean_field_gaps"], "s--", color="#c0392b", label="mean_field")
    ax[0].set(xlabel="m", title="gap to the kernel prediction")
    for a, key in zip(ax[1:], ("ntk", "mean_field"), strict=True):
        c = stats["_curves"][key]
        order = np.argsort(c["x"])
        a.plot(c["x"][order], c["f"][order], "-", label="network f(T)")
        a.plot(c["x"][order], c["lin"][order], "--", label="kernel prediction f_lin(T)")
        a.plot(c["x"][order], c["f0"][order], ":", color="0.5", label="f(0)")
        a.set(xlabel="x", title=f"{key}, m = {w[-1]}")
    for a in ax:
        a.legend(fontsize=8)
    return [save_figure(fig, s.figure_path("kernel_limit.png"))]


KERNEL_LIMIT = Experiment(
    name="kernel_limit",
    summary="an ntk network follows the kernel gradient flow of its analytic NTK with a gap "
    "O(m^-1/2); a mean-field network leaves it (Jacot-Gabriel-Hongler 2018)",
    claim=CLAIM,
    params=KernelLimitParams,
    quick=(
        "experiment.params.widths=[128, 512, 2048]",
        "experiment.params.replicas=2",
        "experiment.params.mf_ratio=1.5",
    ),
    checks=(
        CheckSpec("gap_slope", "|slope of log G(m) vs log m + 1/2| <= slope_tolerance"),
        CheckSpec("gap_decreasing", "G(m) decreases along the widths"),
        CheckSpec("mean_field_departs", "G_mean_field / G_ntk at m_max >= mf_ratio"),
        CheckSpec("mean_field_flat", "slope of log G_mean_field(m) vs log m >= -mf_flat"),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
