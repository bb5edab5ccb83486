"""`kernel_limit`: an ntk-scaled network follows its infinite-width kernel prediction, with
a gap O(m^-1/2); a mean-field network does not."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from annotated_types import Ge, MinLen
from pydantic import Field

from ..config import Config
from ..stats import loglog_fit
from ..study import CheckSpec, Experiment, Params, Run, Study, check
from ..style import COLORS
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

A third route to the kernel regime is the output scale of Chizat, Oyallon and Bach (2019):
at a fixed width m, the model alpha f_m trained with time scaled by 1/alpha^2
(`model.alpha`) follows the linearisation of the network at theta_0 (kernel gradient flow
with the empirical tangent kernel (1/m) sum_j grad phi(x; theta_j(0)) . grad phi(x';
theta_j(0))) with a deviation O(1/alpha) (their Theorem 2.3). From the paired start
(a, w, b), (-a, w, b) (`model.init.paired`, f_0 = 0) the second-order term of f in the
parameter change cancels between the two copies of a pair (their a-moves are equal, their
w- and b-moves opposite), so for a smooth sigma the deviation is O(1/alpha^2). Runs
`alpha*`: mean_field, width `alpha_width`, erf units (smooth; with relu the kinks leave a
floor), the same data; statistic G_alpha = RMS over the test set of f_alpha(T) -
f_lin(T), f_lin the kernel flow of the empirical kernel at the run's own theta_0 in the
run's Euler steps; its slope against alpha over alpha >= `alpha_fit_min` (-2), and the
ratio G_1 / G_alpha_max (alpha = 1 is the mean-field network, which departs).
"""


class KernelLimitParams(Params):
    widths: Widths = Field((256, 1024, 4096, 16384), description="m of the ntk runs")
    replicas: int = Field(3, ge=1, description="independent draws per width")
    slope_tolerance: float = Field(0.15, gt=0, lt=0.5, description="|slope of G + 1/2|")
    mf_ratio: float = Field(2.0, gt=1, description="G_mean_field / G_ntk at m_max >= this")
    mf_flat: float = Field(0.2, gt=0, description="slope of log G_mean_field(m) >= -this")
    alphas: Annotated[tuple[Annotated[float, Ge(1)], ...], Increasing, MinLen(3)] = Field(
        (1.0, 4.0, 16.0, 64.0, 256.0, 1024.0), description="output scales of the alpha route"
    )
    alpha_width: int = Field(512, ge=2, description="m of the alpha runs (even: paired)")
    alpha_fit_min: float = Field(16.0, ge=1, description="fit the alpha slope from here")
    alpha_slope: float = Field(-2.0, description="expected slope of log G_alpha vs log alpha")
    alpha_tolerance: float = Field(0.25, gt=0, description="|alpha slope - alpha_slope| <= this")
    alpha_departs: float = Field(100.0, gt=1, description="G_1 / G_alpha_max >= this")

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
    for a in p.alphas:  # Chizat-Oyallon-Bach: alpha f at a fixed width, paired start
        change = {"model.width": p.alpha_width, "model.scaling": "mean_field", "model.alpha": a,
                  "model.activation": "erf", "model.init.paired": True, "seed": cfg.seed + 1,
                  "record.snapshot_every": steps}  # fmt: skip
        runs[_alpha_name(a)] = Run(s.sub_config(_alpha_name(a), change), figures=False)
    return runs


def _alpha_name(alpha: float) -> str:
    return f"alpha{alpha:g}"


def _gap(run, cfg: Config) -> tuple[float, dict]:
    """(RMS over the test set of f(T) - f_lin(T), arrays for the figure)."""
    import jax.numpy as jnp

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


def _alpha_gap(run, cfg: Config) -> float:
    """RMS over the test set of f_alpha(T) - f_lin(T), f_lin the Euler kernel flow of the
    empirical tangent kernel at the run's theta_0 (time convention of
    `mfnn.diagnostics.kernel.tangent_kernel`: s K, the same for every alpha)."""
    import jax.numpy as jnp

    from ..build import make_model
    from ..diagnostics.kernel import tangent_kernel
    from ..kernels import kernel_flow
    from ..measure import load_particles
    from ..rundir import list_snapshots

    with np.load(run.dir / "predictions.npz") as z:
        p = dict(z)
    model = make_model(cfg, p["x_train"].shape[1])
    theta0 = load_particles(list_snapshots(run.dir)[0], model, jnp.float64)
    scale = model.velocity_scale(theta0.shape[0])
    xtr, xte = jnp.asarray(p["x_train"]), jnp.asarray(p["x_test"])
    k = scale * tangent_kernel(model, theta0, xtr)
    ks = scale * tangent_kernel(model, theta0, xte, xtr)
    t = cfg.dynamics.steps * cfg.dynamics.dt
    f0_train, f0_test = (jnp.asarray(p[k][0]) for k in ("f_train_snapshots", "f_test_snapshots"))
    _, lin = kernel_flow(k, jnp.asarray(p["y_train"]), t, k_test=ks, f0_train=f0_train,
                         f0_test=f0_test, dt=cfg.dynamics.dt)  # fmt: skip
    return float(np.sqrt(np.mean((p["f_test"] - np.asarray(lin)) ** 2)))


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
    alpha_gaps = [_alpha_gap(runs[_alpha_name(a)], runs[_alpha_name(a)].config) for a in p.alphas]
    fitted = [i for i, a in enumerate(p.alphas) if a >= p.alpha_fit_min]
    alpha_fit = loglog_fit([p.alphas[i] for i in fitted], [alpha_gaps[i] for i in fitted])
    return {
        "alphas": list(p.alphas),
        "alpha_gap": alpha_gaps,
        "alpha_slope": alpha_fit.slope,
        "alpha_slope_fit": alpha_fit.as_dict(),
        "alpha_departure": alpha_gaps[0] / alpha_gaps[-1],
        "_alpha_fit": alpha_fit,
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
        "alpha_slope": check(stats["alpha_slope"],
                             f"|slope of log G_alpha vs log alpha (alpha >= {p.alpha_fit_min:g}) "
                             f"- ({p.alpha_slope:g})| <= {p.alpha_tolerance:g}",
                             bool(abs(stats["alpha_slope"] - p.alpha_slope)
                                  <= p.alpha_tolerance)),
        "alpha_departs": check(stats["alpha_departure"],
                               f"G_alpha=1 / G_alpha_max >= {p.alpha_departs:g}",
                               bool(stats["alpha_departure"] >= p.alpha_departs)),
    }  # fmt: skip


def figures(s: Study[KernelLimitParams], stats: dict, runs) -> list:
    from ..plots import plt, save_figure

    fig, ax = plt.subplots(1, 4, figsize=(20, 4.6), layout="constrained")
    w = np.asarray(stats["widths"])
    ax[0].loglog(w, stats["gap"], "o-", color=COLORS["ntk"], label="ntk: RMS(f_m - f_lin)")
    ax[0].loglog(w, stats["_fit"](w), "k:", label=f"slope {stats['slope']:.2f}")
    ax[0].loglog(w, stats["mean_field_gaps"], "s--", color=COLORS["mean_field"], label="mean_field")
    ax[0].set(
        xlabel="width m", ylabel="RMS(f_m - f_lin) at T", title="gap to the kernel prediction"
    )
    al = np.asarray(stats["alphas"])
    ax[3].loglog(al, stats["alpha_gap"], "o-", color="#7d3c98", label="RMS(f_alpha - f_lin)")
    ax[3].loglog(al, stats["_alpha_fit"](al), "k:", label=f"slope {stats['alpha_slope']:.2f}")
    ax[3].set(
        xlabel="alpha (output scale, m fixed)",
        ylabel="RMS(f_alpha - f_lin) at T",
        title="lazy training by output scale",
    )
    for a, key in zip(ax[1:3], ("ntk", "mean_field"), strict=True):
        c = stats["_curves"][key]
        order = np.argsort(c["x"])
        a.plot(c["x"][order], c["f"][order], "-", color=COLORS[key], label="network f(T)")
        a.plot(c["x"][order], c["lin"][order], "k--", label="kernel prediction f_lin(T)")
        a.plot(c["x"][order], c["f0"][order], ":", color=COLORS["init"], label="f(0)")
        a.set(xlabel="input x", ylabel="network output f(x)", title=f"{key}, m = {w[-1]}")
    for a in ax:
        a.legend(fontsize=8)
    fig.suptitle(
        "an ntk network follows the kernel gradient flow of its NTK, gap O(m^-1/2); "
        "a mean-field network leaves it"
    )
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
        "experiment.params.alphas=[1, 16, 64, 256]",
        "experiment.params.alpha_width=128",
    ),
    checks=(
        CheckSpec("gap_slope", "|slope of log G(m) vs log m + 1/2| <= slope_tolerance"),
        CheckSpec("gap_decreasing", "G(m) decreases along the widths"),
        CheckSpec("mean_field_departs", "G_mean_field / G_ntk at m_max >= mf_ratio"),
        CheckSpec("mean_field_flat", "slope of log G_mean_field(m) vs log m >= -mf_flat"),
        CheckSpec(
            "alpha_slope",
            "|slope of log G_alpha vs log alpha - alpha_slope| <= "
            "alpha_tolerance (alpha >= alpha_fit_min)",
        ),
        CheckSpec("alpha_departs", "G_alpha=1 / G_alpha_max >= alpha_departs"),
    ),
    plan=plan,
    analyze=analyze,
    evaluate=evaluate,
    figures=figures,
)
