r"""The Boltzmann (Gibbs) fixed point of the free energy on a grid.

The free energy F(rho) = E(rho) + (1/beta) int rho log rho, E = R + (lambda/2) int |theta|^2,
is strictly convex in rho (R is a convex quadratic of rho for the square loss) and its
unique minimiser on the grid's domain solves

    rho = G(rho) := exp(-beta Phi[rho]) / Z,   Z = int exp(-beta Phi[rho]),      (*)

Phi[rho] = dE/drho (Mei, Montanari and Nguyen 2018, Lemma 10.2; Hu, Ren, Siska and Szpruch
2021 for the mean-field Langevin dynamics that converges to it). `boltzmann` solves (*) on
the cells in the log-density g = log rho:

1. damped fixed-point (Picard) steps g <- g + eta (log G(e^g) - g), eta halved when the
   residual grows and raised again when it falls;
2. Newton steps on r(g) = g - log G(e^g) = g + beta Phi[e^g] + log Z, the Newton system
   J dg = -r solved by GMRES with the Jacobian-vector products of `jax.jvp` (matrix-free,
   so any grid size), with a backtracking line search on |r|.

The residual reported is the relative sup norm max_i |rho_i - G(rho)_i| / max_i rho_i.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.sparse.linalg import gmres

from .._typing import Array, Float
from ..errors import ConfigError
from .energy import AbstractGridEnergy
from .grid import Grid


@dataclasses.dataclass(frozen=True)
class BoltzmannResult:
    """``rho`` (shape ``grid.cells``), its ``residual`` (relative sup norm of rho - G(rho)),
    ``iterations`` (Picard + Newton), ``history`` (the residual after each iteration) and
    ``converged`` (residual <= tol)."""

    rho: Float[Array, "..."]
    residual: float
    iterations: int
    history: tuple[float, ...]
    converged: bool


def boltzmann(
    energy: AbstractGridEnergy,
    grid: Grid,
    beta: float,
    *,
    rho0: Float[Array, "..."] | None = None,
    tol: float = 1e-10,
    max_iter: int = 200,
    picard_tol: float = 1e-3,
) -> BoltzmannResult:
    """Solve rho = exp(-beta Phi[rho]) / Z on ``grid`` (module docstring).

    Args:
        energy: E and Phi (`mfnn.pde.grid_energy`; the L2 weight lambda is in it).
        grid: the cells; a grid truncating R^D must hold the solution (checked: the mass
            in its outer cell layer must stay below 1e-6, else `ConfigError`).
        beta: the inverse temperature (> 0).
        rho0: the starting density (default exp(-beta (lambda/2) |theta|^2), normalised).
        tol: the residual to reach.
        max_iter: Picard + Newton iterations at most.
        picard_tol: the residual at which Picard hands over to Newton.
    """
    if not float(beta) > 0:
        raise ConfigError(f"the inverse temperature beta must be > 0; got {beta!r}.")
    dtype = energy.confinement.dtype
    inside = np.asarray(grid.inside()).reshape(-1)
    idx = jnp.asarray(np.flatnonzero(inside))

    if rho0 is None:
        g0 = -float(beta) * energy.confinement[idx]
        g0 = g0 - jax.scipy.special.logsumexp(g0) - np.log(grid.volume)
    else:
        g0 = jnp.log(jnp.maximum(jnp.asarray(rho0, dtype).reshape(-1)[idx], 1e-300))
    g, res, history = _solve(energy, grid, float(beta), idx, g0, tol, max_iter, picard_tol)
    if res > tol:  # continuation in beta: from beta / 2^k up, each solve warm-starting the next
        for k in range(1, 11):
            ladder = [float(beta) / 2.0**j for j in range(k, -1, -1)]
            g = jnp.log(jnp.full(idx.shape, 1.0 / (grid.volume * idx.size), dtype))
            history = []
            for b in ladder:
                g, res, part = _solve(energy, grid, b, idx, g, tol, max_iter, picard_tol)
                history += part
                if res > tol:
                    break
            if res <= tol:
                break
    rho = _full(grid, idx, g)
    if not grid.bounded and float(grid.boundary_mass(rho)) > 1e-6:
        raise ConfigError(
            f"the Boltzmann density puts {float(grid.boundary_mass(rho)):.2e} of its mass in "
            "the outer cells of the grid, which truncates R^D: widen `dynamics.grid.low/high`."
        )
    return BoltzmannResult(rho, res, len(history), tuple(history), res <= tol)


def _solve(energy, grid: Grid, beta: float, idx, g, tol, max_iter, picard_tol):
    """Picard then Newton from g at one beta: (g, residual, residual history)."""
    beta = jnp.asarray(beta, g.dtype)

    def residual(g):
        return float(_residual(energy, grid, beta, idx, g))

    history: list[float] = []
    res = residual(g)
    eta = 1.0
    it = 0
    while res > max(picard_tol, tol) and it < max_iter:  # damped Picard
        trial = g - eta * _r(energy, grid, beta, idx, g)
        new = residual(trial)
        if new < res:
            g, res, eta = trial, new, min(1.0, 1.5 * eta)
        else:
            eta *= 0.5
            if eta < 1e-6:
                break
        it += 1
        history.append(res)
    while res > tol and it < max_iter:  # Newton with backtracking
        dg = _newton_direction(energy, grid, beta, idx, g)
        step, improved = 1.0, False
        while step > 1e-4:
            trial = g + step * dg
            new = residual(trial)
            if np.isfinite(new) and new < res:
                g, res, improved = trial, new, True
                break
            step *= 0.5
        it += 1
        history.append(res)
        if not improved:
            break
    return g, res, history


def _full(grid: Grid, idx, g):
    """The log-density g on the domain's cells -> the density on the grid."""
    return jnp.zeros(grid.size, g.dtype).at[idx].set(jnp.exp(g)).reshape(grid.cells)


def _log_gibbs(energy, grid: Grid, beta, idx, g):
    """log G(e^g) on the domain's cells."""
    phi = energy.first_variation(_full(grid, idx, g).reshape(-1) * grid.volume)[idx]
    logit = -beta * phi
    return logit - jax.scipy.special.logsumexp(logit) - np.log(grid.volume)


@eqx.filter_jit
def _r(energy, grid: Grid, beta, idx, g):
    return g - _log_gibbs(energy, grid, beta, idx, g)


@eqx.filter_jit
def _residual(energy, grid: Grid, beta, idx, g):
    rho, gib = jnp.exp(g), jnp.exp(_log_gibbs(energy, grid, beta, idx, g))
    return jnp.max(jnp.abs(rho - gib)) / jnp.max(rho)


@eqx.filter_jit
def _newton_direction(energy, grid: Grid, beta, idx, g):
    """dg solving J dg = -r(g) by GMRES on Jacobian-vector products."""

    def r(v):
        return v - _log_gibbs(energy, grid, beta, idx, v)

    jvp = lambda v: jax.jvp(r, (g,), (v,))[1]  # noqa: E731
    dg, _ = gmres(jvp, -r(g), tol=1e-13, atol=0.0, restart=50, maxiter=20)
    return dg
