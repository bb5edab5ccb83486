r"""Statistics of width and coupling: how an m-particle system compares with its mean-field
limit, how a statistic scales with m, and what a run gains over its control.

- `coupling_distance`, `function_distance`, `independent_w2`, `synchronous_coupling`:
  propagation of chaos (Sznitman 1991; Mei, Montanari and Nguyen 2018, Theorem 3). The
  synchronous coupling moves the same initial points theta_j(0) ~ rho_0 twice: by their own
  empirical field (theta_j(t)) and by the field of the limit (tracers theta~_j(t), i.i.d.
  with law mu(t)); then E (1/m) sum_j |theta_j - theta~_j|^2 = O(1/m) and
  ||f_m - f||_L2 = O(m^-1/2), while W2 to an independent m-sample of mu(t) sits on the
  sampling floor m^(-1/D) in dimension D > 4 (Fournier and Guillin 2015);
- `width_exponents`, `width_fit`, `training_change`: lazy against rich training (Chizat,
  Oyallon and Bach 2019): relative movement O(m^(gamma - 1)) and tangent-kernel change
  Theta(m^(2 (gamma - 1))) from a start symmetric under a -> -a, fitted across widths;
- `loss_gain`, `energy_ratio`, `jump_noise_ratio`: a birth-death run against its transport
  control (Rotskoff, Jelassi, Bruna and Vanden-Eijnden 2019): the loss factor at equal
  times, the energy identity with the jump term, and the energy that resampling at finite
  m adds.

All functions take and return NumPy values (particles from snapshots, recorded metrics).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..stats import LogLogFit, loglog_fit, window
from .kernel import kernel_change
from .transport import w2_exact
from .two_layer import relative_movement

__all__ = [
    "WidthFit",
    "coupling_distance",
    "energy_ratio",
    "function_distance",
    "independent_w2",
    "jump_noise_ratio",
    "loss_gain",
    "synchronous_coupling",
    "training_change",
    "width_exponents",
    "width_fit",
]


# --------------------------------------------------------------- propagation of chaos


def coupling_distance(x, y) -> np.ndarray:
    r"""(1/m) sum_j |x_j - y_j|^2 of two coupled clouds (..., m, D): one value a replica.

    Example:
        >>> x = np.zeros((2, 2, 1))
        >>> coupling_distance(x, x + np.array([[[1.0], [3.0]], [[0.0], [2.0]]])).tolist()
        [5.0, 2.0]
    """
    return np.mean(np.sum((np.asarray(x) - np.asarray(y)) ** 2, axis=-1), axis=-1)


def function_distance(model, systems, reference, x) -> float:
    r"""sqrt(mean_r mean_i (f_{m,r}(x_i) - f_M(x_i))^2): the root mean square over R replicas
    of the L2 distance on the inputs ``x`` (n, d) between the function of each m-particle
    system (``systems`` (R, m, D)) and that of the ``reference`` cloud (M, D).

    Example:
        >>> from mfnn import TwoLayer
        >>> net = TwoLayer(d=1, activation="relu", bias=False)  # f = (1/m) sum a relu(w x)
        >>> x, ref = jnp.array([[1.0]]), jnp.array([[1.0, 1.0]])  # f_M(1) = 1
        >>> sys_ = jnp.array([[[2.0, 1.0]], [[1.0, 1.0]]])      # f = 2, then 1
        >>> round(function_distance(net, sys_, ref, x) ** 2, 12)  # (1 + 0) / 2
        0.5
    """
    f_ref = np.asarray(model.predict(jnp.asarray(reference), x))
    f = np.asarray(jax.vmap(lambda t: model.predict(t, x))(jnp.asarray(systems)))
    return float(np.sqrt(np.mean((f - f_ref[None, :]) ** 2)))


def independent_w2(clouds, reference, rng: np.random.Generator) -> float:
    r"""sqrt(mean_k W2^2(x_k, nu_k)), nu_k m points of ``reference`` (M, D) drawn without
    replacement (``rng``, one draw a cloud, in order) and independent of the clouds
    ``clouds`` (K, m, D); exact W2 (`mfnn.diagnostics.w2_exact`). Two independent
    m-samples of one law are W2 ~ m^(-1/D) apart in dimension D > 4 (Fournier and Guillin
    2015): the sampling floor, whatever the dynamics did.

    Example:
        >>> ref = np.array([[0.0], [0.0], [2.0], [2.0]])
        >>> independent_w2(np.full((3, 2, 1), 1.0), ref, np.random.default_rng(0))
        1.0
    """
    ref = np.asarray(reference)
    w2 = [
        w2_exact(c, ref[rng.choice(ref.shape[0], c.shape[0], replace=False)], squared=True)
        for c in np.asarray(clouds)
    ]
    return float(np.sqrt(np.mean(w2)))


def synchronous_coupling(
    model, systems, tracers, reference, x, rng: np.random.Generator, w2_replicas: int
) -> dict[str, float]:
    r"""The coupling statistics of R replicas of an m-particle system (``systems``
    (R, m, D)) and the tracers of a ``reference`` cloud (M, D) started at the same points
    (``tracers`` (R, m, D)).

    Returns:
        ``coupling`` C = mean_r (1/m) sum_j |theta_rj - theta~_rj|^2 (`coupling_distance`);
        ``coupling_rse`` its relative standard error over replicas, std / (C sqrt(R))
        (nan when C = 0); ``function`` (`function_distance`); ``w2_independent``
        (`independent_w2` of the first min(R, w2_replicas) systems); ``w2_tracers``, root
        mean W2^2 of those systems to their own tracer clouds (0 at t = 0: the same points);
        ``coupling_w2_replicas``, C over those replicas (W2^2 to the tracer cloud is at most
        it: the coupling is one transport plan).

    Example:
        >>> from mfnn import TwoLayer
        >>> net = TwoLayer(d=1, activation="relu", bias=False)
        >>> tr = np.ones((2, 2, 2))
        >>> s = synchronous_coupling(net, tr + 0.5, tr, np.ones((4, 2)), np.ones((1, 1)),
        ...                          np.random.default_rng(0), 1)
        >>> s["coupling"], s["coupling_rse"], s["w2_tracers"], s["w2_independent"]
        (0.5, 0.0, 0.7071067811865476, 0.7071067811865476)
    """
    systems, tracers = np.asarray(systems), np.asarray(tracers)
    per = coupling_distance(systems, tracers)
    c = float(per.mean())
    k = min(len(per), w2_replicas)
    w2_tr = [w2_exact(s, t, squared=True) for s, t in zip(systems[:k], tracers[:k], strict=True)]
    return {
        "coupling": c,
        "coupling_rse": float(per.std(ddof=1) / c / math.sqrt(len(per))) if c > 0 else math.nan,
        "function": function_distance(model, systems, reference, x),
        "w2_independent": independent_w2(systems[:k], reference, rng),
        "w2_tracers": float(np.sqrt(np.mean(w2_tr))),
        "coupling_w2_replicas": float(per[:k].mean()),
    }


# ------------------------------------------------------------------- lazy against rich


def width_exponents(gamma: float) -> tuple[float, float]:
    r"""The predicted log-log slopes against m of (relative movement, kernel change) under
    f = m^(-gamma) sum_j phi(x; theta_j) with velocity m^(2 gamma - 1): each particle moves
    O(m^(gamma - 1)); from a start symmetric under a -> -a the first-order kernel change
    averages out and the second order leads, Theta(m^(2 (gamma - 1))) (Chizat, Oyallon and
    Bach 2019; the O(1/m) NTK change of Dyer and Gur-Ari 2020).

    Example:
        >>> [width_exponents(g) for g in (0.5, 0.75, 1.0)]  # ntk, gamma = 3/4, mean_field
        [(-0.5, -1.0), (-0.25, -0.5), (0.0, 0.0)]
    """
    return gamma - 1.0, 2.0 * (gamma - 1.0)


class WidthFit(NamedTuple):
    """A statistic across widths: its mean over seeds at each width, the log-log fit of the
    mean against m (`mfnn.stats.loglog_fit`) and the std over seeds of each seed's slope."""

    mean: np.ndarray
    fit: LogLogFit
    seed_std: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``mean``, ``slope``, ``slope_ci95`` and ``slope_seed_std``."""
        return {
            "mean": self.mean.tolist(),
            "slope": self.fit.slope,
            "slope_ci95": list(self.fit.ci),
            "slope_seed_std": self.seed_std,
        }


def width_fit(widths, per_seed) -> WidthFit:
    """`WidthFit` of ``per_seed`` (S seeds, n widths) against ``widths`` (n,).

    Example:
        >>> w = width_fit([1, 4, 16], [[1.0, 0.5, 0.25], [3.0, 1.5, 0.75]])  # both m^(-1/2)
        >>> w.mean.tolist(), round(w.fit.slope, 12), round(w.seed_std, 12)
        ([2.0, 1.0, 0.5], -0.5, 0.0)
        >>> sorted(w.as_dict())
        ['mean', 'slope', 'slope_ci95', 'slope_seed_std']
    """
    per_seed = np.asarray(per_seed, float)
    slopes = [loglog_fit(widths, row).slope for row in per_seed]
    mean = per_seed.mean(axis=0)
    return WidthFit(mean, loglog_fit(widths, mean), float(np.std(slopes)))


def training_change(model, theta0, theta, x, y) -> dict[str, float]:
    r"""How far training went from ``theta0`` to ``theta`` (m, D) on the inputs ``x`` with
    targets ``y``: ``movement`` |theta - theta0|_F / |theta0|_F
    (`mfnn.diagnostics.relative_movement`), ``kernel_change`` ||K - K_0||_F / ||K_0||_F on
    x (`mfnn.diagnostics.kernel_change`) and ``function_change`` |f(x) - f_0(x)| / |y|.

    Example:
        >>> from mfnn import TwoLayer
        >>> net = TwoLayer(d=1, activation="relu", bias=False)
        >>> x, th0 = jnp.array([[1.0], [2.0]]), jnp.array([[1.0, 1.0]])
        >>> training_change(net, th0, 2 * th0, x, np.array([1.0, 2.0]))
        {'movement': 1.0, 'kernel_change': 3.0, 'function_change': 3.0}
    """
    f0, f = (np.asarray(model.predict(t, x)) for t in (theta0, theta))
    return {
        "movement": relative_movement(theta, theta0),
        "kernel_change": kernel_change(model, theta0, theta, x),
        "function_change": float(np.linalg.norm(f - f0) / np.linalg.norm(np.asarray(y))),
    }


# ------------------------------------------------------- a run against its control


def loss_gain(t, control, run, start: float, stop: float) -> float:
    """exp(mean_i log(control_i / run_i)) over the records with start <= t_i <= stop: the
    geometric-mean factor by which ``run``'s loss is below ``control``'s at equal times
    (both recorded at the times ``t``); nan if the records end before ``stop`` or none
    falls in the window (as `mfnn.stats.window_slope`).

    Example:
        >>> t = np.arange(1.0, 11.0)
        >>> round(loss_gain(t, 1.0 / t, 0.25 / t, 2.0, 8.0), 12), loss_gain(t, t, t, 2, 8)
        (4.0, 1.0)
    """
    t = np.asarray(t, float)
    sel = window(t, start, stop)
    if t[-1] < stop * (1 - 1e-12) or not sel.any():
        return math.nan
    ratio = np.asarray(control, float)[sel] / np.asarray(run, float)[sel]
    return float(np.exp(np.mean(np.log(ratio))))


def energy_ratio(metrics: dict[str, Any], t_end: float) -> dict[str, float]:
    r"""The energy identity with jumps, integrated: the recorded drop over the predicted one,

        [E(t_end) - E(0)] / int_0^t_end -(dissipation + jump_dissipation) dt,

    the integral by the trapezoid rule over the records with t <= t_end: 1 when
    dE/dt = -int |grad dE/dmu|^2 drho - alpha int (dE/dmu - <dE/dmu>)^2 drho holds
    (``with_jumps``), and the same without the jump term (``without_jumps``), which a
    birth-death run does not meet. nan with fewer than two records.

    Example:
        >>> t = np.linspace(0.0, 1.0, 3)  # E = 1 - t, half the rate from the jumps
        >>> half = np.full(3, 0.5)
        >>> m = {"t": t, "energy": 1 - t, "dissipation": half, "jump_dissipation": half}
        >>> energy_ratio(m, 1.0)
        {'with_jumps': 1.0, 'without_jumps': 2.0, 't_end': 1.0}
    """
    sel = metrics["t"] <= t_end * (1 + 1e-12)
    t, energy = metrics["t"][sel], metrics["energy"][sel]
    if t.size < 2:
        return {"with_jumps": math.nan, "without_jumps": math.nan, "t_end": t_end}
    diss = metrics["dissipation"][sel]
    jump = metrics.get("jump_dissipation", np.zeros_like(metrics["t"]))[sel]

    def integral(rate):
        return float(np.sum(0.5 * (rate[1:] + rate[:-1]) * np.diff(t)))

    drop = energy[-1] - energy[0]
    return {
        "with_jumps": float(drop / -integral(diss + jump)),
        "without_jumps": float(drop / -integral(diss)),
        "t_end": float(t[-1]),
    }


def jump_noise_ratio(dynamics, theta) -> float:
    r"""The energy a birth-death step adds by resampling at finite m over the energy it
    removes, at the particles ``theta`` (m, D) of a `mfnn.dynamics.BirthDeath` whose
    objective has a quadratic part U (``objective.interaction``):

        (alpha / (2m)) mean_j |g_j| D_j / (alpha mean_j g_j^2),
        D_j = U_jj - 2 (U mu)_j + mean_k U_kk,

    g the centered first variation. Event j moves mass 1/m from one point to another, so the
    quadratic part adds (1/(2m^2)) |delta_j - delta_k|_U^2 per event; at rate alpha |g_j|
    with a uniform partner k that is alpha mean_j |g_j| D_j / (2m) per unit time. The
    mean-field theorem holds where the ratio is << 1. nan when g = 0.
    """
    g = np.asarray(dynamics.centered_potential(theta))
    u = np.asarray(dynamics.objective.interaction(dynamics.model, theta, theta))
    d = np.diag(u) - 2 * u.mean(axis=1) + np.diag(u).mean()
    jump = float(np.mean(g * g))
    return float(np.mean(np.abs(g) * d) / (2 * theta.shape[0]) / jump) if jump > 0 else math.nan
