"""One look for every figure and page: colours, metric labels and axis scales.

Figures (`mfnn.plots`, the experiments', `mfnn.animate`) and reports (`mfnn.report`) take
their colours and labels from here, so a scaling, a dynamics or a status has the same
colour everywhere:

- scalings: mean_field red, ntk blue, a general gamma purple, the initial state grey;
- dynamics: gradient flow black, sgd orange, Langevin green, birth-death brown, pde teal;
- statuses and check results: pass / completed green, fail / failed / diverged red,
  informational blue, interrupted / running amber.

`METRIC_LABELS` names every column a run records (metrics.csv) as an axis label with its
scale; `log_scale` is the rule the report uses to put a quantity on a log axis.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "COLORS",
    "DYNAMICS_COLORS",
    "METRIC_LABELS",
    "STATUS_COLORS",
    "color_of",
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
