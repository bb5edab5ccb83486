"""Matplotlib figures of runs and experiments (written to RUN_DIR/figures/).

Every figure is written by `save_figure`; with ``MFNN_FIGURE_AUDIT=strict`` in the
environment it first runs `mfnn.style.audit_figure` (every data axes labelled, a histogram's
counts named, a title) and refuses a figure that fails it. Colours of scalings and dynamics
come from `mfnn.style`.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .errors import ConfigError  # noqa: E402
from .style import (  # noqa: E402  (COLORS: re-exported, experiments import it from here)
    COLORS,
    METRIC_LABELS,
    audit_figure,
    color_of,
    dynamics_name,
)

AUDIT_ENV = "MFNN_FIGURE_AUDIT"
"""The environment variable that turns the figure audit on: ``strict`` (refuse a figure
that fails `mfnn.style.audit_figure`) or ``off`` / unset (the default: no audit)."""


def figure_audit_strict() -> bool:
    """Whether ``MFNN_FIGURE_AUDIT`` asks for the strict audit.

    Raises:
        ConfigError: a value other than ``strict``, ``off`` or empty.
    """
    value = os.environ.get(AUDIT_ENV, "").strip().lower()
    if value not in ("", "off", "strict"):
        raise ConfigError(
            f"`{AUDIT_ENV}` must be strict or off (or unset); got {os.environ[AUDIT_ENV]!r}."
        )
    return value == "strict"


def check_figure(fig, path) -> None:
    """Refuse ``fig`` (about to be written to ``path``) when the audit is strict and
    `mfnn.style.audit_figure` finds problems: close it and raise `ValueError` naming the
    file and every problem. Does nothing when ``MFNN_FIGURE_AUDIT`` is off or unset."""
    if not figure_audit_strict():
        return
    problems = audit_figure(fig)
    if problems:
        plt.close(fig)
        raise ValueError(
            f"figure {Path(path).name} ({path}) fails the figure audit "
            f"({AUDIT_ENV}=strict): " + "; ".join(problems)
        )


def save_figure(fig, path, crop: bool = True) -> Path:
    """Write ``fig`` to ``path`` (PNG, dpi 120, cropped to its content: ``bbox_inches=
    "tight"``), creating the parent folders, and close it (pyplot keeps every open figure
    alive otherwise). Returns ``path`` as a `Path`. ``crop=False`` writes the figure as
    laid out, without the extra layout pass the crop costs (about 20 % of the write): for
    a figure whose constrained layout already keeps every artist inside it.

    With ``MFNN_FIGURE_AUDIT=strict`` the figure must pass `mfnn.style.audit_figure` first
    (`check_figure`): otherwise it is closed, nothing is written and `ValueError` lists
    the file and its problems. Unset or ``off`` (the default), no audit runs.

    Example:
        >>> import tempfile
        >>> fig, ax = plt.subplots()
        >>> _ = ax.set_title("an empty figure")
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = save_figure(fig, Path(d) / "figures" / "a.png")
        ...     path.exists(), plt.fignum_exists(fig.number)
        (True, False)
    """
    path = Path(path)
    check_figure(fig, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, **({"bbox_inches": "tight"} if crop else {}))
    plt.close(fig)
    return path


def width_axis(ax, widths) -> None:
    """Log x axis with a labelled tick at each width (2^k widths otherwise get crowded
    minor-tick labels such as 2x10^1 3x10^1 4x10^1 next to each other)."""
    from matplotlib.ticker import NullFormatter, NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks([float(w) for w in widths], [f"{w:g}" for w in widths])


def _positive(v):
    v = np.asarray(v, float)
    return np.where(v > 0, v, np.nan)


def _run_dynamics(cfg) -> str:
    """The `mfnn.style.DYNAMICS_COLORS` key of a run's dynamics (birth-death and Langevin
    name the run over its base kind)."""
    dyn = cfg.dynamics
    return dynamics_name(
        dyn.kind, langevin=dyn.langevin is not None, birth_death=dyn.birth_death is not None
    )


def run_figures(run_dir, metrics: dict, built) -> list[Path]:
    """Loss curves, relative movement and the energy identity of one run (run.png), and the
    W2 metrics when ``record.w2`` recorded them (w2.png). The curves take the colour of the
    run's scaling (`mfnn.style.COLORS`); the title names the scaling, the dynamics, the
    width and what the panels show (the risk from start to end, the median relative
    residual of the energy identity)."""
    fig_dir = Path(run_dir) / "figures"
    t = metrics["t"]
    out = []
    scaling = built.model.scaling.name
    color = color_of(scaling)
    dynamics = _run_dynamics(built.config)
    m = built.theta0.shape[0]
    fig, ax = plt.subplots(1, 3, figsize=(13, 4.0), layout="constrained")
    ax[0].semilogy(t, _positive(metrics["loss"]), color=color, label="train")
    if "test_loss" in metrics:
        ax[0].semilogy(t, _positive(metrics["test_loss"]), "--", color=color, label="test")
    ax[0].set(xlabel="t", ylabel=r"risk $R(\mu_t)$", title="loss")
    ax[0].legend()
    ax[1].plot(t, metrics["movement"], color=color)
    ax[1].set(xlabel="t", ylabel=METRIC_LABELS["movement"], title="relative movement")
    ax[2].semilogy(
        t,
        _positive(metrics["dissipation"]),
        color=color,
        label=r"dissipation $\int|\nabla\delta E/\delta\mu|^2 d\mu$",
    )
    ax[2].semilogy(
        t,
        _positive(np.abs(metrics["energy_residual"])),
        color=COLORS["init"],
        label="|dE/dt + dissipation|",
    )
    ax[2].set(xlabel="t", ylabel="energy rate (per unit t)", title="energy dissipation identity")
    ax[2].legend(fontsize=8)
    loss = np.asarray(metrics["loss"], float)
    claim = f"risk {loss[0]:.3g} -> {loss[-1]:.3g}"
    if "energy_rel_residual" in metrics:
        rel = np.abs(np.asarray(metrics["energy_rel_residual"], float))
        rel = rel[np.isfinite(rel)]
        if rel.size:
            claim += f"; energy identity holds to {np.median(rel):.2g} (median relative residual)"
    fig.suptitle(f"{scaling}, {dynamics.replace('_', ' ')}, m = {m}: {claim}")
    out.append(save_figure(fig, fig_dir / "run.png", crop=False))  # written by every run
    w2 = {k: v for k, v in METRIC_LABELS.items() if k.startswith("w2_") and k in metrics}
    if w2:
        fig, ax = plt.subplots(figsize=(6, 3.8))
        for key, label in w2.items():
            keep = np.isfinite(metrics[key])  # w2_reference: NaN between reference snapshots
            ax.plot(
                t[keep], metrics[key][keep], "o-" if keep.sum() < 30 else "-", ms=3, label=label
            )
        method = built.recorder.w2.method
        ax.set(
            xlabel="t",
            ylabel="W2 distance" + (" (sliced: a lower bound)" if method == "sliced" else ""),
        )
        ax.set_title(f"how far the measure travels in W2 ({scaling}, m = {m})")
        ax.legend(fontsize=8)
        out.append(save_figure(fig, fig_dir / "w2.png"))
    return out


def _sign_claim(scalings: list[str]) -> str:
    """The claim of the `sign` figures for the scalings run."""
    says = {
        "mean_field": "mean-field features move to the jump",
        "ntk": "ntk features stay where they started",
    }
    return "; ".join(says[sc] for sc in scalings if sc in says) or "fitting sign(x)"


def sign_figures(fig_dir, res: dict, xs, target, radius: float) -> list[Path]:
    """The `sign` experiment: fits, breakpoint histograms, losses, movement.

    ``res[scaling]`` holds: ``f0``, ``f`` (predictions on xs at start/end), ``bp0``,
    ``bp`` (breakpoints of significant neurons at start/end), ``metrics``, ``C0``, ``C``.
    """
    fig_dir = Path(fig_dir)
    out = []
    scalings = list(res)
    claim = _sign_claim(scalings)
    # fitted functions
    fig, ax = plt.subplots(figsize=(6, 4.3), layout="constrained")
    ax.plot(xs, target, color=COLORS["teacher"], lw=2, label="sign(x)")
    first = res[scalings[0]]
    ax.plot(xs, first["f0"], color=COLORS["init"], lw=1, ls=":", label="initial f (shared)")
    for sc in scalings:
        ax.plot(xs, res[sc]["f"], color=COLORS[sc], lw=1.6, label=f"{sc}, t = {res[sc]['t']:g}")
    ax.set(xlabel="input x", ylabel="network output f(x)", title="fitted functions")
    ax.legend(fontsize=8)
    fig.suptitle(
        "both scalings fit sign(x)" if len(scalings) > 1 else f"{scalings[0]} fits sign(x)"
    )
    out.append(save_figure(fig, fig_dir / "fit.png"))

    # breakpoint histograms
    fig, axes = plt.subplots(
        1, len(scalings), figsize=(5.5 * len(scalings), 4.0), sharey=True, layout="constrained"
    )
    axes = np.atleast_1d(axes)
    bins = np.linspace(-1.5, 1.5, 61)
    for ax, sc in zip(axes, scalings, strict=True):
        r = res[sc]
        ax.hist(np.clip(r["bp0"], -1.5, 1.5), bins, color=COLORS["init"], alpha=0.5, label="t = 0")
        ax.hist(
            np.clip(r["bp"], -1.5, 1.5), bins, color=COLORS[sc], alpha=0.6, label=f"t = {r['t']:g}"
        )
        ax.axvspan(-radius, radius, color="k", alpha=0.06)
        ax.set(
            xlabel=r"breakpoint $-b_j/w_j$ (clipped to [-1.5, 1.5])",
            title=f"{sc}: C = {r['C0']:.2f} -> {r['C']:.2f}",
        )
        ax.legend(fontsize=8)
    axes[0].set_ylabel("count of significant neurons")
    fig.suptitle(f"{claim} (shaded: |x| < r = {radius:g})")
    out.append(save_figure(fig, fig_dir / "breakpoints.png"))

    # losses and movement
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.0), layout="constrained")
    for sc in scalings:
        m = res[sc]["metrics"]
        ax[0].semilogy(m["t"], _positive(m["loss"]), color=COLORS[sc], label=f"{sc} train")
        if "test_loss" in m:
            ax[0].semilogy(
                m["t"], _positive(m["test_loss"]), color=COLORS[sc], ls="--", label=f"{sc} test"
            )
        ax[1].semilogy(m["t"][1:], _positive(m["movement"][1:]), color=COLORS[sc], label=sc)
    ax[0].set(xlabel="t", ylabel=r"risk $R(\mu_t)$", title="loss")
    ax[1].set(xlabel="t", ylabel=METRIC_LABELS["movement"], title="relative particle movement")
    ax[0].legend(fontsize=8)
    ax[1].legend(fontsize=8)
    fig.suptitle(
        "ntk particles move far less than mean-field ones"
        if {"ntk", "mean_field"} <= set(scalings)
        else "risk and particle movement"
    )
    out.append(save_figure(fig, fig_dir / "loss_movement.png"))

    # one overview figure (the README figure)
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.3), layout="constrained")
    ax[0].plot(xs, target, color=COLORS["teacher"], lw=2, label="sign(x)")
    for sc in scalings:
        ax[0].plot(xs, res[sc]["f"], color=COLORS[sc], lw=1.6, label=sc)
    ax[0].set(xlabel="input x", ylabel="network output f(x)", title="fit after training")
    ax[0].legend(fontsize=8)
    for sc in scalings:
        r = res[sc]
        ax[1].hist(
            np.clip(r["bp"], -1.5, 1.5),
            bins,
            color=COLORS[sc],
            alpha=0.55,
            label=f"{sc} (C={r['C']:.2f})",
        )
    ax[1].hist(
        np.clip(first["bp0"], -1.5, 1.5),
        bins,
        histtype="step",
        color=COLORS["init"],
        lw=1.5,
        label=f"t = 0 (C={first['C0']:.2f})",
    )
    ax[1].set(
        xlabel=r"breakpoint $-b_j/w_j$",
        ylabel="count of significant neurons",
        title="where the features are",
    )
    ax[1].legend(fontsize=8)
    for sc in scalings:
        m = res[sc]["metrics"]
        ax[2].semilogy(m["t"][1:], _positive(m["movement"][1:]), color=COLORS[sc], label=sc)
    ax[2].set(xlabel="t", ylabel=METRIC_LABELS["movement"], title="relative particle movement")
    ax[2].legend(fontsize=8)
    fig.suptitle(claim)
    out.append(save_figure(fig, fig_dir / "overview.png"))
    return out


def loglog_fits(ax, x, series, *, guide: tuple[float, str] | None = None) -> None:
    """Series against ``x`` on log-log axes, each with its least-squares power law.

    Each series is drawn as points and its fit exp(c) x^s (`mfnn.stats.loglog_fit`) as a
    dashed line, the fitted slope s in the legend. ``guide`` = (slope, label) adds a grey
    power law through the first series' first point (the predicted rate). The x axis gets
    a labelled tick at each x (`width_axis`).

    Args:
        ax: matplotlib axes.
        x: (n,) positive abscissae (widths).
        series: [(label, y (n,), color)]; a series with a non-positive y is drawn, not fitted.
        guide: optional (slope, label).

    Example:
        >>> fig, ax = plt.subplots()
        >>> loglog_fits(ax, [1, 2, 4], [("C", [1.0, 0.5, 0.25], "k")], guide=(-1.0, "1/m"))
        >>> [t.get_text() for t in ax.get_legend().get_texts()]
        ['C: slope -1.00', '1/m']
        >>> plt.close(fig)
    """
    from .stats import loglog_fit

    xs = np.asarray(x, float)
    for label, y, color in series:
        y = np.asarray(y, float)
        fit = loglog_fit(xs, y)
        ax.loglog(xs, _positive(y), "o", color=color, ms=4)
        if np.isfinite(fit.slope):
            ax.loglog(xs, fit(xs), "--", color=color, lw=1, label=f"{label}: slope {fit.slope:.2f}")
        else:
            ax.plot([], [], "o", color=color, label=label)
    if guide is not None and series:
        y0 = float(np.asarray(series[0][1], float)[0])
        ax.loglog(xs, y0 * (xs / xs[0]) ** guide[0], color="k", lw=0.8, alpha=0.5, label=guide[1])
    width_axis(ax, [int(v) if float(v).is_integer() else v for v in xs])
    ax.legend(fontsize=7)


def log_curves(ax, series, *, level: float | None = None, **labels) -> None:
    """Curves {label: (t, y)} against t on a log y axis (non-positive values left out), a
    dotted horizontal line at ``level`` (a tolerance), a legend, and ``ax.set(**labels)``
    (xlabel, ylabel, title).

    Example:
        >>> fig, ax = plt.subplots()
        >>> t = np.arange(3.0)
        >>> log_curves(ax, {"a": (t, 2.0**-t), "b": (t, t - 1)}, level=0.1, xlabel="t")
        >>> [line.get_ydata().tolist() for line in ax.get_lines()[:2]], ax.get_yscale()
        ([[1.0, 0.5, 0.25], [nan, nan, 1.0]], 'log')
        >>> plt.close(fig)
    """
    for label, (t, y) in series.items():
        ax.semilogy(t, _positive(y), label=label)
    if level is not None:
        ax.axhline(level, color="k", lw=0.8, ls=":")
    ax.set(**labels)
    ax.legend(fontsize=7)
