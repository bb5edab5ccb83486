"""One look for every figure and page: colours, metric labels and axis scales.

Figures (`mfnn.plots`, the experiments', `mfnn.animate`) and reports (`mfnn.report`) take
their colours and labels from here, so a scaling, a dynamics or a status has the same
colour everywhere:

- scalings: mean_field red, ntk blue, a general gamma purple, the initial state grey;
- dynamics: gradient flow black, sgd orange, Langevin green, birth-death brown, pde teal;
- statuses and check results: pass / completed green, fail / failed / diverged red,
  informational blue, interrupted / running amber.

`METRIC_LABELS` names every column a run records (metrics.csv) as an axis label with its
scale; `log_scale` is the rule the report uses to put a quantity on a log axis;
`audit_figure` lists what a figure lacks (an axis label, a histogram's count/density label,
a title), and `mfnn.plots.save_figure` refuses such a figure when ``MFNN_FIGURE_AUDIT=strict``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "COLORS",
    "DYNAMICS_COLORS",
    "METRIC_LABELS",
    "STATUS_COLORS",
    "audit_figure",
    "color_of",
    "dynamics_name",
    "log_scale",
    "metric_label",
]

COLORS: dict[str, str] = {
    "mean_field": "#c0392b",
    "ntk": "#2471a3",
    "general": "#7d3c98",
    "init": "#7f8c8d",
    "teacher": "#111111",
}

DYNAMICS_COLORS: dict[str, str] = {
    "gradient_flow": "#1c1c1c",
    "sgd": "#d35400",
    "langevin": "#1e8449",
    "birth_death": "#7e5109",
    "pde": "#117a65",
}

STATUS_COLORS: dict[str, str] = {
    "pass": "#1e8449",
    "completed": "#1e8449",
    "fail": "#c0392b",
    "failed": "#c0392b",
    "diverged": "#c0392b",
    "crashed": "#c0392b",
    "info": "#2471a3",
    "interrupted": "#b9770e",
    "running": "#b9770e",
    "cancelled": "#7f8c8d",
}

METRIC_LABELS: dict[str, str] = {
    "loss": r"risk $R(\mu_t)$ (train)",
    "test_loss": r"risk $R(\mu_t)$ (test)",
    "energy": r"energy $E(\mu_t)$",
    "free_energy": r"free energy $F = E - H/\beta$",
    "entropy": r"entropy $H(\mu_t)$ (kNN estimate)",
    "beta": r"inverse temperature $\beta(t)$",
    "dissipation": r"dissipation $\int|\nabla \delta E/\delta\mu|^2 d\mu$",
    "jump_dissipation": r"jump dissipation $\alpha\int(\Phi-\langle\Phi\rangle)^2 d\mu$",
    "energy_residual": r"$|dE/dt + $dissipation$|$",
    "energy_rel_residual": r"$|dE/dt + $dissipation$|$ / dissipation",
    "movement": r"relative movement $|\theta_t-\theta_0|_F/|\theta_0|_F$",
    "w2_initial": r"$W_2(\mu_t, \mu_0)$",
    "w2_teacher": r"$W_2(\mu_t, \rho^*)$",
    "w2_reference": r"$W_2(\mu_t, \nu_t)$ (reference run)",
    "flow_norm": r"flow norm $\exp\int (E_{\rho_s}|\theta|^p)^{1/p} ds$",
    "mass_error": r"$|\int\rho - 1|$",
    "min_density": r"$\min_i \rho_i$",
    "boundary_mass": "mass in the outer cell layer",
    "cfl": "CFL number",
}


def metric_label(name: str) -> str:
    """The axis label of a metrics.csv column (the column's own name when unknown).

    Example:
        >>> metric_label("loss"), metric_label("Q_0_0")
        ('risk $R(\\\\mu_t)$ (train)', 'Q_0_0')
    """
    return METRIC_LABELS.get(name, name)


def color_of(name: str, default: str = "#34495e") -> str:
    """The colour of a scaling, a dynamics or a status (``default`` when none is named).

    Example:
        >>> color_of("ntk"), color_of("langevin"), color_of("fail"), color_of("x", "k")
        ('#2471a3', '#1e8449', '#c0392b', 'k')
    """
    for table in (COLORS, DYNAMICS_COLORS, STATUS_COLORS):
        if name in table:
            return table[name]
    return default


def dynamics_name(kind: str, *, langevin: bool = False, birth_death: bool = False) -> str:
    """The `DYNAMICS_COLORS` key of a run's dynamics: birth-death jumps name it first, then
    the Langevin noise, then ``dynamics.kind`` (gradient_flow, sgd, pde).

    Example:
        >>> dynamics_name("sgd"), dynamics_name("gradient_flow", langevin=True)
        ('sgd', 'langevin')
        >>> dynamics_name("gradient_flow", langevin=True, birth_death=True)
        'birth_death'
    """
    if birth_death:
        return "birth_death"
    if langevin:
        return "langevin"
    return kind


def log_scale(*series, decades: float = 1.0) -> bool:
    """Whether values belong on a log axis: every finite value > 0 and max/min spans at
    least ``decades`` decades (a decaying risk, a dissipation, a residual), so a quantity
    that changes sign or barely moves stays linear.

    Example:
        >>> log_scale([1.0, 0.1, 0.01]), log_scale([1.0, 0.5]), log_scale([1.0, -1e-3])
        (True, False, False)
    """
    values = np.concatenate([np.ravel(np.asarray(s, float)) for s in series] or [np.zeros(0)])
    values = values[np.isfinite(values)]
    if values.size < 2 or np.any(values <= 0):
        return False
    return bool(np.log10(values.max() / values.min()) >= decades)


HISTOGRAM_WORDS: tuple[str, ...] = (
    "count",
    "number",
    "#",
    "density",
    "frequency",
    "fraction",
    "probability",
    "proportion",
    "pdf",
    "per bin",
)
"""What the count axis of a histogram must say (one of these words, case-insensitive)."""


def _figures(fig) -> list:
    """``fig`` and its subfigures, depth first."""
    out = [fig]
    for sub in fig.subfigs:
        out += _figures(sub)
    return out


def _colorbar_axes(axes: list) -> set[int]:
    """ids of the colorbar axes among ``axes``: made by ``fig.colorbar(..., ax=...)`` (their
    label is ``"<colorbar>"``) or drawn for an image or collection of one of ``axes``."""
    found = {id(ax) for ax in axes if ax.get_label() == "<colorbar>"}
    for ax in axes:
        for mappable in [*ax.images, *ax.collections]:
            if mappable.colorbar is not None:
                found.add(id(mappable.colorbar.ax))
    return found


def _histogram_count_axes(ax) -> set[str]:
    """Which axes of ``ax`` ("x", "y") carry the counts of a histogram drawn there.

    A histogram is a bar container whose bars touch (``ax.hist``'s bars, or ``ax.bar`` with
    adjacent bins) or the staircase outline of ``histtype="step"``/``"stepfilled"`` (a
    Polygon whose every edge is horizontal or vertical); the count axis is y for vertical
    bars and x for horizontal ones.
    """
    from matplotlib.container import BarContainer
    from matplotlib.patches import Polygon

    axes: set[str] = set()
    for container in ax.containers:
        if not isinstance(container, BarContainer) or len(container.patches) < 2:
            continue
        vertical = container.orientation == "vertical"
        bars = sorted(
            (r.get_x(), r.get_x() + r.get_width())
            if vertical
            else (r.get_y(), r.get_y() + r.get_height())
            for r in container.patches
        )
        span = bars[-1][1] - bars[0][0]
        touching = all(
            abs(nxt[0] - prev[1]) <= 1e-9 * max(abs(span), 1e-300)
            for prev, nxt in zip(bars, bars[1:], strict=False)
        )
        if touching:
            axes.add("y" if vertical else "x")
    for patch in ax.patches:
        if type(patch) is not Polygon:  # not a Rectangle (axvspan) nor an arrow
            continue
        xy = np.asarray(patch.get_xy(), float)
        if xy.shape[0] < 4:
            continue
        step = np.diff(xy, axis=0)
        if not np.all((step[:, 0] == 0) | (step[:, 1] == 0)):
            continue
        # a vertical outline runs (b0, 0), (b0, n0), (b1, n0), (b1, n1), ...: its vertices
        # pair up by x; a horizontal one by y (this holds when a bin is empty too)
        x, y = xy[:4, 0], xy[:4, 1]
        axes.add("y" if x[0] == x[1] and y[1] == y[2] and x[2] == x[3] else "x")
    return axes


def _label(ax, key: str) -> str:
    """The stripped x or y label of ``ax``."""
    return (ax.get_xlabel() if key == "x" else ax.get_ylabel()).strip()


def audit_figure(fig) -> list[str]:
    r"""The problems of a matplotlib figure, one sentence each (empty when it passes).

    Rules:

    - every visible axes that holds data (lines, collections, images or patches) names
      both its axes: an x label and a y label. A label counts when it is not blank; it may
      come from an axes that shares that axis (the bottom row of ``sharex``, the left
      column of ``sharey``, the parent of a ``twinx``) or from the figure's
      ``supxlabel`` / ``supylabel``. An axis hidden with ``ax.xaxis.set_visible(False)``
      needs no label.
    - a histogram (touching bars, or a ``histtype="step"`` staircase) says what its bars
      count: the label of its count axis (y, or x for ``orientation="horizontal"``)
      contains one of `HISTOGRAM_WORDS` (count, number, #, density, frequency, fraction,
      probability, proportion, pdf, per bin).
    - the figure has a title: a ``suptitle`` (of it or of a subfigure) or the title of at
      least one axes.

    Exempt: colorbar axes (``fig.colorbar``), axes that are hidden (``set_visible(False)``,
    ``ax.axis("off")``) and axes without data (a legend or a text panel).

    Args:
        fig: a ``matplotlib.figure.Figure``.

    Returns:
        One string per problem, naming the axes by its position in ``fig.axes`` and its
        title when it has one.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> fig, ax = plt.subplots()
        >>> _ = ax.plot([0, 1], [1, 0])
        >>> for problem in audit_figure(fig):
        ...     print(problem)
        axes 0: no x label
        axes 0: no y label
        the figure has no title (no suptitle, no axes title)
        >>> _ = ax.set(xlabel="t", ylabel="risk R", title="the risk decays")
        >>> audit_figure(fig)
        []
        >>> plt.close(fig)
    """
    figures = _figures(fig)
    # each axes once, in the order of fig.axes (which lists the subfigures' axes too)
    axes = list({id(ax): ax for f in figures for ax in f.axes}.values())
    colorbars = _colorbar_axes(axes)
    sup = {
        "x": any(f.get_supxlabel().strip() for f in figures),
        "y": any(f.get_supylabel().strip() for f in figures),
    }
    problems: list[str] = []
    for i, ax in enumerate(axes):
        if id(ax) in colorbars or not ax.get_visible() or not ax.axison:
            continue
        if not (ax.lines or ax.collections or ax.images or ax.patches):
            continue
        title = ax.get_title(loc="center") or ax.get_title(loc="left") or ax.get_title(loc="right")
        name = f"axes {i}" + (f" ({title!r})" if title else "")
        labels = {}
        for key, axis, shared in (
            ("x", ax.xaxis, ax.get_shared_x_axes()),
            ("y", ax.yaxis, ax.get_shared_y_axes()),
        ):
            # its own label first, then any from an axes sharing this axis
            texts = [_label(a, key) for a in (ax, *shared.get_siblings(ax))]
            labels[key] = next((t for t in texts if t), "")
            if axis.get_visible() and not labels[key] and not sup[key]:
                problems.append(f"{name}: no {key} label")
        for key in sorted(_histogram_count_axes(ax)):
            text = labels[key].lower()
            if text and not any(word in text for word in HISTOGRAM_WORDS):
                problems.append(
                    f"{name}: a histogram whose {key} label {labels[key]!r} does not say "
                    "count or density"
                )
    titled = any(f.get_suptitle().strip() for f in figures) or any(
        ax.get_title(loc=k).strip() for ax in axes for k in ("center", "left", "right")
    )
    if not titled:
        problems.append("the figure has no title (no suptitle, no axes title)")
    return problems
