"""Teacher-student statistics: how a student measure rho compares with a teacher
rho* = sum_i alpha_i delta_{c_i} (the setting of "Mean field models for neural networks in
teacher-student setting", where f(x) = int sigma(theta . x) drho(theta)).

- `vanishing_orders` and `moment_zscores`: Theorem 2 and Example 2 (d = 1), the moments of
  rho - rho* that condition (4) forces to vanish for an activation, and how far a sampled
  student is from satisfying them, in standard errors;
- `cluster_distances`: the distance of the students of each teacher atom to it over time,
  and the time they first come within a tolerance; `speed_ratio`: how those times scale
  with the atoms' weights (section 2.2, the speed of learning);
- `sphere_w2`: W2 between student and teacher on the unit sphere, with the output weights
  as mass (the identifiable part of a 1-homogeneous unit such as relu);
- `wall_stats`: the particles held on the wall of a ball by normal reflection (section 2.1),
  and whether they sit at a constrained stationary point.

All functions take and return NumPy values (particles from snapshots).
"""

from __future__ import annotations

import math

import numpy as np

from ..stats import hitting_time
from .transport import w2_exact

EXAMPLE_2 = {
    "gaussian": lambda k: k % 2 == 0,
    "quadratic": lambda k: k == 2,
    "tanh": lambda k: k % 2 == 1,
    "arctan": lambda k: k % 2 == 1,
    "sigmoid": lambda k: k % 2 == 1,
    "softplus": lambda k: k % 2 == 0 or k == 1,
}
"""Activation -> (k -> whether condition (4) forces M_k(rho - rho*) = 0), Example 2."""


def vanishing_orders(activation: str, max_order: int) -> list[int]:
    r"""The orders k in 1..max_order with M_k(rho - rho*) = 0 implied by condition (4).

    Condition (4) of Theorem 2, int sigma(x theta) (rho - rho*)(d theta) = 0 for all x,
    read per activation in d = 1 (Example 2), for nu = rho - rho* and
    M_k(nu) = int theta^k dnu:

    - gaussian exp(-z^2/2) (even): nu odd, every even moment vanishes;
    - quadratic z^2 (even): (4) is M_2(nu) = 0 alone (the kernel spans x^2 only), so the
      paper's "rho - rho* odd" is sufficient, not necessary;
    - tanh, arctan (odd) and sigmoid (odd + 1/2): nu even, every odd moment vanishes;
    - softplus (z/2 + an even function): nu odd and M_1(nu) = 0.

    Args:
        activation: one of `EXAMPLE_2`.
        max_order: the largest order returned.

    Raises:
        ValueError: an activation Example 2 does not cover.

    Example:
        >>> vanishing_orders("tanh", 6), vanishing_orders("softplus", 6)
        ([1, 3, 5], [1, 2, 4, 6])
        >>> vanishing_orders("gaussian", 4), vanishing_orders("quadratic", 6)
        ([2, 4], [2])
    """
    if activation not in EXAMPLE_2:
        raise ValueError(f"Example 2 covers {sorted(EXAMPLE_2)}; got {activation!r}.")
    return [k for k in range(1, max_order + 1) if EXAMPLE_2[activation](k)]


def moment_zscores(w, c, alpha, max_order: int) -> dict[str, list]:
    r"""The moments of rho_m - rho* and their z-scores, for k = 1..max_order.

        D_k = M_k(rho_m) - M_k(rho*) = (1/m) sum_j w_j^k - sum_i alpha_i c_i^k,
        SE_k = std_j(w_j^k, ddof = 1) / sqrt(m),      z_k = |D_k| / SE_k,

    for rho_m uniform on the m students w (m,) and rho* = sum_i alpha_i delta_{c_i}.
    SE_k is the sampling resolution of a moment of m nearly i.i.d. particles (propagation
    of chaos): it shrinks like m^(-1/2). z_k = 0 when D_k = SE_k = 0, inf when only SE_k
    is 0; SE_k is nan for m = 1.

    Args:
        w: (m,) the students.
        c: (k,) the teacher atoms.
        alpha: (k,) their weights.
        max_order: the largest order.

    Returns:
        Lists indexed by k - 1: ``order``, ``rho`` (M_k(rho_m)), ``teacher`` (M_k(rho*)),
        ``D``, ``SE``, ``z``.

    Example:
        >>> s = moment_zscores(np.array([-1.0, 1.0]), np.array([1.0]), np.array([1.0]), 2)
        >>> s["D"], s["rho"], s["teacher"]
        ([-1.0, 0.0], [0.0, 1.0], [1.0, 1.0])
    """
    w, c, alpha = (np.asarray(v, float) for v in (w, c, alpha))
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


def cluster_distances(t, w, c, tol: float | None = None) -> dict:
    r"""The students of each teacher atom and their distance to it over time.

    Each student is assigned to its nearest atom at the last time; for atom i, with S_i
    its students,

        D_i(t) = mean_{j in S_i} |w_j(t) - c_i|,      C_i(t) = |mean_{j in S_i} w_j(t) - c_i|,

    (nan if S_i is empty) and, with ``tol``, T_i = the first time D_i <= tol
    (`mfnn.stats.hitting_time`, linear interpolation between records; nan if never).

    Args:
        t: (T,) times of the snapshots.
        w: (T, m, d) the students at those times.
        c: (k, d) the teacher atoms.
        tol: the level of the hitting times (None: not computed).

    Returns:
        ``t``, ``assign`` (m,) the atom of each student, ``D1``, ``C1``, ``D2``, ... (T,)
        per atom, and ``T`` (k,) the hitting times when ``tol`` is given.

    Example:
        >>> w = np.array([[[1.0, 0.0], [0.0, 2.0]], [[1.0, 0.0], [0.0, 1.5]]])
        >>> d = cluster_distances(np.arange(2.0), w, np.eye(2), tol=0.5)
        >>> d["assign"].tolist(), d["D2"].tolist(), d["T"]
        ([0, 1], [1.0, 0.5], [0.0, 1.0])
    """
    t, w, c = np.asarray(t, float), np.asarray(w), np.asarray(c)
    assign = np.argmin(((w[-1][:, None, :] - c[None]) ** 2).sum(-1), axis=1)
    out = {"t": t, "assign": assign}
    for i in range(c.shape[0]):
        sel = assign == i
        nan = np.full(len(t), np.nan)
        out[f"D{i + 1}"] = np.linalg.norm(w[:, sel] - c[i], axis=-1).mean(-1) if sel.any() else nan
        out[f"C{i + 1}"] = np.linalg.norm(w[:, sel].mean(1) - c[i], axis=-1) if sel.any() else nan
    if tol is not None:
        out["T"] = [hitting_time(t, out[f"D{i + 1}"], tol) for i in range(c.shape[0])]
    return out


def speed_ratio(T, alpha, t_ref: float | None = None) -> dict:
    r"""How much faster the students of a heavier teacher atom learn it (section 2.2).

    From the hitting times T_1, T_2 of two atoms of weights alpha_1, alpha_2
    (`cluster_distances` with ``tol``):

        S = T_2 / T_1,      S / (alpha_1 / alpha_2),      slowdown_i = alpha_i T_i / T_ref.

    If the students of atom i follow one equation in the time alpha_i t (the decoupling of
    section 2.2), T_i = T_ref / alpha_i, with T_ref the time of one atom of weight 1: then
    S = alpha_1 / alpha_2 and every slowdown is 1.

    Args:
        T: (T_1, T_2) the hitting times.
        alpha: (alpha_1, alpha_2) the atoms' weights.
        t_ref: the time of one atom of weight 1 (None or 0: no slowdown).

    Returns:
        ``T_1``, ``T_2``, ``speed_ratio`` S (nan unless T_1 > 0),
        ``speed_ratio_over_alpha_ratio``, and ``slowdown`` with ``t_ref``.

    Example:
        >>> out = speed_ratio([25.0, 100.0], [0.8, 0.2], t_ref=20.0)
        >>> out["speed_ratio"], out["speed_ratio_over_alpha_ratio"], out["slowdown"]
        (4.0, 1.0, [1.0, 1.0])
    """
    S = T[1] / T[0] if T[0] > 0 else math.nan
    out = {"T_1": T[0], "T_2": T[1], "speed_ratio": S}
    out["speed_ratio_over_alpha_ratio"] = S * alpha[1] / alpha[0]
    if t_ref:
        out["slowdown"] = [alpha[i] * T[i] / t_ref for i in (0, 1)]
    return out


def sphere_w2(theta, c, alpha) -> tuple[float, float]:
    r"""W2 on the unit sphere between a two-layer student and the teacher, output weights
    as mass, and the student's negative mass fraction.

    A unit a relu(w . x) is 1-homogeneous, so only the direction and a |w| are
    identifiable: a neuron (a_j, w_j) with a_j > 0 is the point w_j / |w_j| with mass
    a_j |w_j|, the teacher atom i the point c_i / |c_i| with mass alpha_i |c_i|, both
    normalized to probability measures; the mass sum_{a_j <= 0} |a_j| |w_j| / sum_j
    |a_j| |w_j| cannot be matched by the teacher and is returned apart.

    Args:
        theta: (m, 1 + d) particles (a, w).
        c: (k, d) the teacher atoms.
        alpha: (k,) their weights (> 0).

    Returns:
        (W2, negative mass fraction); W2 is nan when no neuron has a_j > 0.

    Example:
        >>> c, alpha = np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([0.5, 0.25])
        >>> theta = np.array([[1.0, 2.0, 0.0], [2.0, 0.0, 1.0], [-1.0, 3.0, 4.0]])
        >>> w2, neg = sphere_w2(theta, c, alpha)  # masses 2, 2 at e_1, e_2; 5 negative
        >>> round(w2, 12), round(neg, 12)
        (0.0, 0.555555555556)
    """
    theta, c, alpha = (np.asarray(v, float) for v in (theta, c, alpha))
    a, w = theta[:, 0], theta[:, 1:]
    norm = np.linalg.norm(w, axis=1)
    mass = np.abs(a) * norm
    pos = (a > 0) & (norm > 0)
    total = mass.sum()
    neg = float(mass[~pos].sum() / total) if total > 0 else 0.0
    if not pos.any():
        return float("nan"), neg
    cn = np.linalg.norm(c, axis=1)
    q = alpha * cn / (alpha * cn).sum()
    x, p = w[pos] / norm[pos, None], mass[pos] / mass[pos].sum()
    return w2_exact(x, c / cn[:, None], p, q), neg


def wall_stats(w, v, radius: float, dt: float) -> dict[str, float]:
    r"""The particles held on the wall of the ball |w| <= radius (centered at 0) by normal
    reflection, and how far they are from a constrained stationary point.

    With v_j the free velocity -grad dE/drho at w_j, n_j = w_j / |w_j| and the wall set
    B = {j : radius - |w_j| <= dt |v_j|} (a particle the wall holds bounces within one
    step of it):

        kappa = sqrt( sum_B |v_j - (v_j . n_j) n_j|^2 + min(v_j . n_j, 0)^2 )
                / sqrt( sum_B |v_j|^2 ),
        held  = sum_B max(v_j . n_j, 0)^2 / sum_j |v_j|^2.

    kappa = 0 when every particle on the wall is pushed along its outward normal (the
    first-order condition of the constrained problem: tangential part 0, normal part
    >= 0); held is the share of the free flow's speed^2 the wall stops (the rest belongs to
    particles still moving).

    Args:
        w: (m, d) particles.
        v: (m, d) their free velocities.
        radius: the ball's radius.
        dt: the step of the run.

    Returns:
        ``kappa`` (nan with nobody on the wall), ``held``, ``on_wall`` = |B|,
        ``interior_rms_speed`` = sqrt(mean_{j not in B} |v_j|^2) and ``free_rms_speed`` =
        sqrt(mean_j |v_j|^2).

    Example:
        >>> w = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.2]])
        >>> out = wall_stats(w, np.array([[0.5, 0.0], [0.0, 0.5], [0.0, 0.0]]), 1.0, 0.1)
        >>> out["kappa"], out["held"], out["on_wall"]
        (0.0, 1.0, 2)
        >>> wall_stats(w, np.array([[0.0, 0.5], [0.5, 0.0], [0.0, 0.0]]), 1.0, 0.1)["kappa"]
        1.0
    """
    w, v = np.asarray(w, float), np.asarray(v, float)
    r = np.linalg.norm(w, axis=1)
    speed2 = (v * v).sum(1)
    on = radius - r <= dt * np.sqrt(speed2) + 1e-9 * radius
    n = w / np.where(r > 0, r, 1.0)[:, None]
    vn = (v * n).sum(1)
    off_normal = ((v - vn[:, None] * n) ** 2).sum(1) + np.minimum(vn, 0.0) ** 2
    wall = float(speed2[on].sum())
    return {
        "kappa": float(np.sqrt(off_normal[on].sum() / wall)) if wall > 0 else np.nan,
        "held": float((np.maximum(vn, 0.0) ** 2)[on].sum() / speed2.sum()),
        "on_wall": int(on.sum()),
        "interior_rms_speed": float(np.sqrt(speed2[~on].mean())) if (~on).any() else 0.0,
        "free_rms_speed": float(np.sqrt(speed2.mean())),
    }


__all__ = [
    "EXAMPLE_2",
    "cluster_distances",
    "moment_zscores",
    "speed_ratio",
    "sphere_w2",
    "vanishing_orders",
    "wall_stats",
]
