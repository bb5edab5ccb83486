r"""The Lagrangian and the Eulerian views side by side: W2 between particles and a grid density.

A particle cloud x (m, D) with weights p (p_j >= 0, sum_j p_j = 1; uniform 1/m when
omitted) is the measure mu_m = sum_j p_j delta_{x_j}; a grid density rho on a
`mfnn.pde.grid.Grid` is the measure with density rho_i on cell i (piecewise constant,
mass rho_i |h| per cell, int rho = 1).

In one dimension W2 is exact through the quantile functions (Villani 2003, Theorem 2.18):

    W2^2(mu, nu) = int_0^1 |Q_mu(u) - Q_nu(u)|^2 du,   Q_mu(u) = inf {x : F_mu(x) >= u}.

The quantile function of the particles is a step function, Q(u) = x_(j) on
(P_{j-1}, P_j], P_j = p_(1) + ... + p_(j) for the sorted points x_(1) <= ... <= x_(m). The
CDF of the grid density is piecewise linear (G_i = sum_{k < i} rho_k h at the edge e_i),
so its quantile is piecewise linear too: Q(u) = e_i + (u - G_i) / rho_i on (G_i, G_{i+1}]
(cells without mass take no u-interval). On every interval [a, b] of the merged
breakpoints {P_j} and {G_i} both quantiles are affine, d(u) = Q_mu(u) - Q_nu(u) is affine
and

    int_a^b d(u)^2 du = (b - a) (d(a)^2 + d(a) d(b) + d(b)^2) / 3

(Simpson's rule, exact for quadratics, with d evaluated from inside [a, b]): the sum over
the intervals is W2^2 up to round-off, at cost O((m + C) log(m + C)). The same formula
compares two grid densities (`w2_grids`) or two clouds.

In two dimensions the grid density is replaced by atoms at the cell centres c_i with
masses rho_i |h| (cells without mass dropped), and W2 is computed between discrete
measures by `mfnn.diagnostics.transport.w2_exact` (network simplex) or its Sinkhorn
divergence `w2_sinkhorn`. Moving each cell's mass to its centre costs at most

    W2(rho, sum_i rho_i |h| delta_{c_i}) <= sqrt(sum_k h_k^2 / 12)

(the W2 radius of a uniform law on a cell about its centre), so by the triangle
inequality the atom estimate is within that of W2 to the piecewise-constant density.

Between the two sides of the mean-field limit (m i.i.d. particles against their law rho),
E W2^2(mu_m, rho) <= 2 J_2(rho) / (m + 1) in 1-D with J_2 = int F (1 - F) / f dx
(Bobkov and Ledoux 2019, Theorem 5.1 and Corollary 5.10): the m^(-1/2) rate of W2 when
J_2 < infinity (a density bounded below on an interval), m^(-1/2) (log log m)^(1/2) for
a Gaussian.

References:
    C. Villani, "Topics in Optimal Transportation", AMS (2003), section 2.2.
    S. Bobkov and M. Ledoux, "One-dimensional empirical measures, order statistics, and
    Kantorovich transport distances", Mem. AMS 261 (2019).
"""

from __future__ import annotations

import math

import numpy as np

from .._typing import Array, Float
from ..errors import ConfigError
from .grid import Grid

MASS_RTOL = 1e-8  # |int rho - 1| and |sum p - 1| allowed before the measure is refused

__all__ = [
    "cell_atoms",
    "loss_gap",
    "w2_grids",
    "w2_particles_grid",
]


# ------------------------------------------------------------------ quantile pieces


def _pieces_of_points(x, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C (n+1,), start (n,), slope (n,)): Q(u) = start_j + slope_j (u - C_j) on (C_j, C_j+1]."""
    order = np.argsort(x, kind="stable")
    xs, ps = x[order], p[order]
    c = np.concatenate([[0.0], np.cumsum(ps)])
    c /= c[-1]
    return c, xs, np.zeros_like(xs)


def _pieces_of_density(edges: np.ndarray, rho: np.ndarray):
    """The quantile pieces of a piecewise-constant density on cells with ``edges``.

    The slope of a piece is the cell width over its increment of the *rounded* cumulative
    mass: a cell whose mass is below the resolution of the running sum (1e-24 next to 0.5)
    then spans exactly its cell in Q instead of a rounding error times 1/mass."""
    h = np.diff(edges)
    c = np.concatenate([[0.0], np.cumsum(rho * h)])
    c /= c[-1]
    dc = np.diff(c)
    keep = dc > 0  # empty (or rounded-away) cells occupy no width of [0, 1]
    starts = np.append(c[:-1][keep], 1.0)
    return starts, edges[:-1][keep], h[keep] / dc[keep]


def _w2_sq_pieces(a, b) -> float:
    """int_0^1 |Q_a - Q_b|^2 du for two piecewise-affine quantile functions (Simpson, exact)."""
    ca, sa, ka = a
    cb, sb, kb = b
    u = np.union1d(ca, cb)
    lo, hi = u[:-1], u[1:]
    width = hi - lo
    keep = width > 0
    lo, hi, width = lo[keep], hi[keep], width[keep]
    mid = 0.5 * (lo + hi)

    def at(c, s, k, v):
        i = np.clip(np.searchsorted(c, mid, side="right") - 1, 0, len(s) - 1)
        return s[i] + k[i] * (v - c[i])

    d_lo = at(ca, sa, ka, lo) - at(cb, sb, kb, lo)
    d_hi = at(ca, sa, ka, hi) - at(cb, sb, kb, hi)
    return float(max(np.sum(width * (d_lo**2 + d_lo * d_hi + d_hi**2) / 3.0), 0.0))


# ------------------------------------------------------------------------ checks


def _density(name: str, grid: Grid, rho) -> np.ndarray:
    rho = np.asarray(rho, np.float64)
    if rho.shape != tuple(grid.cells):
        raise ConfigError(
            f"`{name}` must have the grid's shape {tuple(grid.cells)}; got {rho.shape}."
        )
    if not np.all(np.isfinite(rho)) or np.any(rho < 0):
        raise ConfigError(f"`{name}` must be finite and >= 0; got min {np.nanmin(rho):.3g}.")
    mass = float(rho.sum() * grid.volume)
    if not abs(mass - 1.0) <= MASS_RTOL:
        raise ConfigError(f"`{name}` must have mass int rho = 1; got {mass!r}.")
    return rho


def _points(x, p, dim: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    x = x.reshape(-1, 1) if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[1] != dim or x.shape[0] == 0:
        raise ConfigError(
            f"`particles` must be (m, {dim}) points for a grid of dimension {dim}; got shape "
            f"{x.shape}."
        )
    if not np.all(np.isfinite(x)):
        raise ConfigError("`particles` must be finite.")
    if p is None:
        return x, np.full(x.shape[0], 1.0 / x.shape[0])
    p = np.asarray(p, np.float64).reshape(-1)
    if p.shape[0] != x.shape[0] or np.any(p < 0) or not abs(p.sum() - 1.0) <= MASS_RTOL:
        raise ConfigError(
            f"`weights` must be {x.shape[0]} numbers >= 0 summing to 1; got shape {p.shape}, "
            f"sum {p.sum()!r}."
        )
    return x, p


# --------------------------------------------------------------------- public API


def cell_atoms(grid: Grid, rho) -> tuple[Float[Array, "C D"], Float[Array, " C"]]:
    """The grid density as atoms: the centres c_i (C', D) of the cells with mass and their
    masses rho_i |h| (C',), normalised to sum 1.

    Example:
        >>> g = Grid([0.0], [1.0], [4])
        >>> c, w = cell_atoms(g, np.array([0.0, 2.0, 2.0, 0.0]))
        >>> c[:, 0].tolist(), w.tolist()
        ([0.375, 0.625], [0.5, 0.5])
    """
    rho = _density("density", grid, rho)
    mesh = np.meshgrid(*(grid.axis(k) for k in range(grid.dim)), indexing="ij")
    centres = np.stack([a.reshape(-1) for a in mesh], axis=1)  # float64 on the host
    mass = rho.reshape(-1) * grid.volume
    keep = mass > 0
    return centres[keep], mass[keep] / mass[keep].sum()


def w2_particles_grid(
    particles,
    grid: Grid,
    rho,
    weights=None,
    *,
    squared: bool = False,
    method: str = "exact",
    epsilon: float | None = None,
) -> float:
    r"""W2 between a particle measure sum_j p_j delta_{x_j} and a grid density rho.

    D = 1: exact, from the quantile functions (module docstring):
    W2^2 = sum over merged breakpoints [a, b] of (b - a)(d_a^2 + d_a d_b + d_b^2) / 3.
    D = 2: between the particles and the cell atoms (`cell_atoms`), by ``method``
    ``"exact"`` (`mfnn.diagnostics.transport.w2_exact`, network simplex: up to a few
    thousand particles and cells with mass) or ``"sinkhorn"`` (the Sinkhorn divergence
    sqrt(S_eps), `w2_sinkhorn`, at ``epsilon``); within sqrt(sum_k h_k^2 / 12) of W2 to
    the piecewise-constant density.

    Args:
        particles: (m, D) points (or (m,) in 1-D).
        grid: the grid of ``rho``.
        rho: density of shape ``grid.cells``, >= 0, int rho = 1.
        weights: (m,) particle weights >= 0 summing to 1; None for 1/m.
        squared: return W2^2.
        method: for D = 2, ``"exact"`` or ``"sinkhorn"`` (ignored in 1-D, always exact).
        epsilon: the Sinkhorn regularization (None: `w2_sinkhorn`'s default).

    Returns:
        W2 (or W2^2) as a float.

    Raises:
        ConfigError: a density of the wrong shape, negative or of mass != 1; particles of
            the wrong dimension or not finite; bad weights; an unknown ``method``.

    Example:
        >>> g = Grid([-1.0], [1.0], [4])
        >>> rho = np.full(4, 0.5)  # uniform on [-1, 1]: Q(u) = 2u - 1
        >>> round(w2_particles_grid(np.array([[0.0]]), g, rho, squared=True), 12)  # E X^2
        0.333333333333
    """
    if method not in ("exact", "sinkhorn"):
        raise ConfigError(f"`method` must be 'exact' or 'sinkhorn'; got {method!r}.")
    rho = _density("density", grid, rho)
    x, p = _points(particles, weights, grid.dim)
    if grid.dim == 1:
        value = _w2_sq_pieces(_pieces_of_points(x[:, 0], p), _pieces_of_density(grid.edges(0), rho))
    else:
        value = _w2_sq_atoms(x, p, *cell_atoms(grid, rho), method, epsilon)
    return value if squared else math.sqrt(value)


def w2_grids(
    grid_a: Grid,
    rho_a,
    grid_b: Grid,
    rho_b,
    *,
    squared: bool = False,
    method: str = "exact",
    epsilon: float | None = None,
) -> float:
    r"""W2 between two grid densities (the grids may differ).

    D = 1: exact, both quantiles piecewise affine, Simpson's rule on the merged breakpoints
    (module docstring). D = 2: between the two atom measures (`cell_atoms`) by ``method``,
    within sqrt(sum_k h_{a,k}^2 / 12) + sqrt(sum_k h_{b,k}^2 / 12) of W2 between the
    densities.

    Example:
        >>> g = Grid([0.0], [4.0], [4])
        >>> a, b = np.array([1.0, 0, 0, 0]), np.array([0, 0, 1.0, 0])  # a shift by 2
        >>> round(w2_grids(g, a, g, b), 12)
        2.0
    """
    if method not in ("exact", "sinkhorn"):
        raise ConfigError(f"`method` must be 'exact' or 'sinkhorn'; got {method!r}.")
    if grid_a.dim != grid_b.dim:
        raise ConfigError(f"grids of dimension {grid_a.dim} and {grid_b.dim} cannot be compared.")
    rho_a, rho_b = _density("rho_a", grid_a, rho_a), _density("rho_b", grid_b, rho_b)
    if grid_a.dim == 1:
        value = _w2_sq_pieces(
            _pieces_of_density(grid_a.edges(0), rho_a), _pieces_of_density(grid_b.edges(0), rho_b)
        )
    else:
        value = _w2_sq_atoms(
            *cell_atoms(grid_a, rho_a), *cell_atoms(grid_b, rho_b), method, epsilon
        )
    return value if squared else math.sqrt(value)


def _w2_sq_atoms(x, p, y, q, method, epsilon) -> float:
    from ..diagnostics.transport import w2_exact, w2_sinkhorn

    if method == "exact":
        return w2_exact(x, y, p, q, squared=True, method="network_simplex")
    res = w2_sinkhorn(x, y, p, q, epsilon=epsilon, squared=True)
    return float(res.value)


def loss_gap(t_particles, loss_particles, t_grid, loss_grid, times) -> np.ndarray:
    r"""|R(mu_m(t)) - R(rho(t))| at ``times``, from the two runs' recorded risks.

    R is the population (or training) risk the two runs record as ``loss``: for the
    particles R(mu_m) = (1/2) sum_k w_k (f_m(x_k) - y_k)^2 with f_m = sum_j p_j phi(x_k;
    theta_j); for the grid the same with f = sum_i rho_i |h| phi(x_k; c_i)
    (`mfnn.pde.energy`). Each record is read at t by linear interpolation (exact on a
    shared record grid). Expanding R around rho,

        R(mu_m) - R(rho) = sum_k w_k (f - y)(x_k) (f_m - f)(x_k) + (1/2) ||f_m - f||_w^2,

    a fluctuation of size m^(-1/2) (f_m - f = O(m^(-1/2)) by propagation of chaos, Mei,
    Montanari and Nguyen 2018) plus a bias O(1/m).

    Args:
        t_particles, loss_particles: the particle run's record (n_p,), t increasing.
        t_grid, loss_grid: the pde run's record (n_g,), t increasing.
        times: (k,) times inside both records.

    Returns:
        (k,) the gaps.

    Example:
        >>> loss_gap([0, 1, 2], [1.0, 0.5, 0.2], [0, 2], [0.9, 0.3], [0, 2]).tolist()
        [0.09999999999999998, 0.09999999999999998]
    """
    tp, lp = np.asarray(t_particles, float), np.asarray(loss_particles, float)
    tg, lg = np.asarray(t_grid, float), np.asarray(loss_grid, float)
    ts = np.atleast_1d(np.asarray(times, float))
    for name, t in (("t_particles", tp), ("t_grid", tg)):
        if t.size == 0 or np.any(ts < t[0] - 1e-12) or np.any(ts > t[-1] + 1e-12):
            raise ConfigError(
                f"`times` {ts.tolist()} must lie inside `{name}` "
                f"[{t[0] if t.size else 'empty'}, {t[-1] if t.size else ''}]."
            )
    return np.abs(np.interp(ts, tp, lp) - np.interp(ts, tg, lg))
