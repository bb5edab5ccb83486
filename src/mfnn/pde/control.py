r"""The entropic regime as a control problem on a 1-D grid (Tzen and Raginsky 2020).

Notation (Tzen and Raginsky 2020, "A mean-field theory of lazy training in two-layer neural
nets: entropic regularization and controlled McKean-Vlasov dynamics"): R~ = 2 R the
unhalved risk (R the halved risk of `mfnn.pde.energy`), gamma_tau = N(0, tau), and

    F_{beta,tau}(mu) = (1/2) R~(mu) + (tau/beta) KL(mu || gamma_tau) = R(mu) + (tau/beta) KL,
    Psi(w; mu)       = d[(1/2) R~]/dmu (w) = dR/dmu (w)   (the grid's ``risk_variation``).

**Gibbs state** (`entropic_gibbs`). The minimiser solves d mu*/d gamma_tau ∝
exp(-(beta/tau) Psi(w; mu*)), i.e.

    mu* ∝ exp(-(beta/tau) [Psi(w; mu*) + |w|^2 / (2 beta)]),

the Boltzmann state (`mfnn.pde.boltzmann.boltzmann`) of Phi = Psi + (lambda/2) |w|^2 with
lambda = 1/beta at inverse temperature beta_B = beta/tau: beta_B Phi = (beta/tau) Psi +
|w|^2/(2 tau). Its free energy E + (1/beta_B) int rho log rho = R + M_2/(2 beta) +
(tau/beta) int rho log rho equals F_{beta,tau} up to the constant (tau/(2 beta)) log(2 pi
tau), so the grid minimiser of one is the grid minimiser of the other.

**Control** (`solve_control`). dW = u dt + sqrt(tau) dB, W_0 = 0, t in [0, 1], cost

    J(u) = E[(1/2) int_0^1 |u_t|^2 dt] + (beta/2) R~(Law W_1) = E[...] + beta R(mu_1).

By Girsanov E[(1/2) int |u|^2] = tau KL(P^u || P^0) >= tau KL(mu_1 || gamma_tau) (P^0 is
sqrt(tau) B, whose law at t = 1 is gamma_tau), with equality for the Foellmer drift; so
inf J = min_mu [tau KL(mu || gamma_tau) + beta R(mu)] = beta F_{beta,tau}(mu*). The
optimality system, terminal cost g = beta Psi(.; mu_1) (the first variation of beta R at
mu_1, a McKean-Vlasov fixed point):

    backward HJB   dV/dt = -(tau/2) V'' + (1/2) |V'|^2,   V(., 1) = g,
    control        u*(w, t) = -V'(w, t),
    forward FP     d rho/dt = (rho V')' + (tau/2) rho'',  rho_0 = delta_0.

Cole-Hopf: V = -tau log h turns the HJB into the backward heat equation dh/dt = -(tau/2)
h'', so h(w, t) = E[exp(-g(w + sqrt(tau (1 - t)) Z) / tau)] and u* = tau (log h)'. The law
is the Doob h-transform of sqrt(tau) B (Foellmer 1985):

    rho_t(w) = N(0, tau t)(w) h(w, t) / h(0, 0),     rho_1 = gamma_tau e^{-g/tau} / h(0, 0),

so with g = beta Psi(.; mu_1) the terminal law is the Gibbs map of mu_1 and its fixed point is
mu*; the control cost is E[(1/2) int |u*|^2] = tau KL(mu* || gamma_tau) and V(0, 0) =
-tau log h(0, 0) = tau KL(mu* || gamma_tau) + beta int Psi dmu*.

Discretisation (grid of n cells, cell centres w_i, width h; N time steps dt = 1/N):

- h by the exact discrete heat semigroup exp((1 - t)(tau/2) L_h) of the cell-centred
  Neumann Laplacian (diagonal in the DCT-II basis, as in `mfnn.pde.solver`); the control on
  the face i+1/2 is u = tau (log h_{i+1} - log h_i) / h, evaluated at the midpoint of each
  step;
- a direct finite-difference HJB for comparison (`hjb_godunov`): in s = 1 - t,
  V_s = (tau/2) V'' - H(V'), H(p) = p^2/2 by Godunov's numerical Hamiltonian
  H_G(p^-, p^+) = max(H(max(p^-, 0)), H(min(p^+, 0))) explicitly and the diffusion
  implicitly (DCT): first order in h and dt;
- the FP as in `mfnn.pde.solver`: upwind flux u^+ rho_i + u^- rho_{i+1} explicitly, the
  diffusion (tau/2) rho'' implicitly (DCT), from a discrete delta: all the mass in the
  cell containing w = 0 (`point_mass`); first order in h and dt;
- the McKean-Vlasov fixed point on mu_1 by damped sweeps mu <- (1 - eta) mu + eta T(mu),
  T(mu) the FP terminal law under the control of g = beta Psi(.; mu).

**Greedy McKean-Vlasov** (`greedy_mckean_vlasov`): d rho/dt = (rho beta Psi'[rho])' +
(tau/2) rho'' from the same discrete delta, the law of dW = -beta grad Psi(W; Law W) dt +
sqrt(tau) dB (`mfnn.pde.solver.FokkerPlanck` with Phi = beta Psi, diffusion tau/2).

**Schroedinger bridge** (`schrodinger_bridge`): between rho_0 and rho_1 with reference
sqrt(tau) B, the static problem min KL(pi || R_01), R_01(x, y) = rho_0(x) K_1(x, y), K_s
the Gaussian kernel of variance tau s on the cells, solved by iterative proportional
fitting (Sinkhorn in the log domain; Fortet 1940, Deming and Stephan 1940); the marginal at
t is sum_{x, y} pi(x, y) [K_t(x, .) K_{1-t}(., y)] / K_1(x, y) (Brownian bridges), its cost
tau KL(pi || R_01) = the control cost of the bridge (Leonard 2014).
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.fft import dct, idct
from jax.scipy.special import logsumexp

from .._typing import Array, Float, Scalar
from ..errors import ConfigError
from .boltzmann import BoltzmannResult, boltzmann
from .energy import AbstractGridEnergy
from .grid import Grid
from .solver import FokkerPlanck

TINY = 1e-300

__all__ = [
    "ControlResult",
    "BridgeResult",
    "ScaledEnergy",
    "cole_hopf",
    "control_cost_rate",
    "entropic_free_energy",
    "entropic_gibbs",
    "gaussian_cells",
    "greedy_drift",
    "greedy_mckean_vlasov",
    "hjb_godunov",
    "heat_semigroup",
    "point_mass",
    "schrodinger_bridge",
    "solve_control",
    "kl_grid",
    "w2_grid",
]


def _check_1d(grid: Grid) -> None:
    if grid.dim != 1:
        raise ConfigError(
            f"the entropic control problem is solved on a 1-D grid (`dynamics.grid.cells` "
            f"with one axis); got {grid.dim} axes."
        )


def _check_positive(name: str, value) -> None:
    if not float(value) > 0:
        raise ConfigError(f"`{name}` must be > 0; got {value!r}.")


class ScaledEnergy(AbstractGridEnergy):
    """c E: the risk, its first variation and the confinement of ``base`` times ``scale``
    (the greedy flow's potential Phi = beta Psi)."""

    base: AbstractGridEnergy
    scale: Array
    confinement: Float[Array, " C"]

    def __init__(self, base: AbstractGridEnergy, scale: float):
        self.base = base
        self.scale = jnp.asarray(scale, base.confinement.dtype)
        self.confinement = self.scale * base.confinement

    def risk(self, mass):
        return self.scale * self.base.risk(mass)

    def risk_variation(self, mass):
        return self.scale * self.base.risk_variation(mass)


# ------------------------------------------------------------------ grid helpers


def point_mass(grid: Grid, at: float = 0.0) -> Float[Array, " n"]:
    """The discrete delta: density 1/h in the cell containing ``at``, 0 elsewhere."""
    _check_1d(grid)
    i = int(np.clip(np.floor((at - grid.low[0]) / grid.h[0]), 0, grid.cells[0] - 1))
    return jnp.zeros(grid.cells[0]).at[i].set(1.0 / grid.h[0])


def gaussian_cells(grid: Grid, variance: float) -> Float[Array, " n"]:
    """N(0, variance) at the cell centres, normalised to mass 1 on the grid (the
    discretisation of gamma_tau that `boltzmann` uses)."""
    w = grid.axis(0)
    logit = -(w**2) / (2.0 * variance)
    p = np.exp(logit - logit.max())
    return jnp.asarray(p / (p.sum() * grid.h[0]))


def _laplacian_eigenvalues(grid: Grid) -> Float[Array, " n"]:
    return jnp.asarray(grid.laplacian_eigenvalues())  # 1-D grids only (`_check_1d`)


def heat_semigroup(grid: Grid, f: Float[Array, "... n"], s) -> Float[Array, "... n"]:
    """exp(s L_h) f along the last axis, L_h the cell-centred Neumann Laplacian (exact in
    time: DCT-II diagonalises L_h); ``s`` a scalar or an array broadcasting against the
    leading axes (shape (..., 1))."""
    lam = _laplacian_eigenvalues(grid)
    coef = dct(f, type=2, norm="ortho", axis=-1)
    return idct(coef * jnp.exp(jnp.asarray(s)[..., None] * lam), type=2, norm="ortho", axis=-1)


def _implicit(grid: Grid, f, coef):
    """(I - coef L_h)^{-1} f (Neumann, by DCT)."""
    lam = _laplacian_eigenvalues(grid)
    return idct(dct(f, type=2, norm="ortho") / (1.0 - coef * lam), type=2, norm="ortho")


def _upwind_divergence(rho, u, h):
    """-(F_{i+1/2} - F_{i-1/2}) / h, F = u^+ rho_i + u^- rho_{i+1} on interior faces."""
    flux = jnp.maximum(u, 0) * rho[:-1] + jnp.minimum(u, 0) * rho[1:]
    full = jnp.pad(flux, (1, 1))
    return -(full[1:] - full[:-1]) / h


# ------------------------------------------------------------------ Gibbs state


def entropic_gibbs(
    energy: AbstractGridEnergy, grid: Grid, beta: float, tau: float, **kwargs
) -> BoltzmannResult:
    """mu* of F_{beta,tau} on the grid: the Boltzmann state of Phi = Psi + |w|^2/(2 beta) at
    inverse temperature beta/tau (module docstring). ``energy`` gives Psi = dR/dmu (its own
    confinement is replaced); ``kwargs`` go to `boltzmann`."""
    _check_1d(grid)
    _check_positive("beta", beta)
    _check_positive("tau", tau)
    w = grid.centers(energy.confinement.dtype)[:, 0]
    confined = eqx.tree_at(lambda e: e.confinement, energy, w**2 / (2.0 * beta))
    return boltzmann(confined, grid, beta / tau, **kwargs)


def entropic_free_energy(
    energy: AbstractGridEnergy, grid: Grid, beta: float, tau: float, rho
) -> dict[str, float]:
    """F_{beta,tau}(rho) = R(rho) + (tau/beta) KL(rho || gamma_tau) on the grid (gamma_tau
    by `gaussian_cells`); returns ``{"F", "risk", "kl"}``."""
    rho = jnp.asarray(rho)
    mass = rho * grid.h[0]
    gam = gaussian_cells(grid, tau)
    kl = jnp.sum(jnp.where(rho > 0, mass * jnp.log(jnp.maximum(rho, TINY) / gam), 0.0))
    risk = energy.risk(mass)
    return {"F": float(risk + tau / beta * kl), "risk": float(risk), "kl": float(kl)}


# ------------------------------------------------------------------ HJB


def cole_hopf(grid: Grid, g: Float[Array, " n"], tau: float, times) -> dict[str, Array]:
    """V, h and the face control u* at ``times`` (T,) for the terminal cost g (n,):
    h(t) = exp((1 - t)(tau/2) L_h) exp(-(g - min g)/tau), V = min g - tau log h,
    u*_{i+1/2} = tau (log h_{i+1} - log h_i) / h. Returns ``{"h", "V", "u"}`` of shapes
    (T, n), (T, n), (T, n - 1) (h carries the factor exp(min g / tau))."""
    g = jnp.asarray(g)
    g0 = jnp.min(g)
    h1 = jnp.exp(-(g - g0) / tau)
    times = jnp.asarray(times, g.dtype)
    hh = jnp.maximum(heat_semigroup(grid, h1, 0.5 * tau * (1.0 - times)), TINY)
    logh = jnp.log(hh)
    return {
        "h": hh,
        "V": g0 - tau * logh,
        "u": tau * jnp.diff(logh, axis=-1) / grid.h[0],
    }


def hjb_godunov(grid: Grid, g: Float[Array, " n"], tau: float, steps: int) -> Float[Array, "N n"]:
    """V at t_k = k/steps, k = 0..steps (shape (steps + 1, n)), by the direct scheme of the
    module docstring (Godunov Hamiltonian explicit, diffusion implicit), marching from
    V(., 1) = g backwards. Stable when max |V'| / steps <= h (checked: `ConfigError`)."""
    _check_1d(grid)
    h, ds = grid.h[0], 1.0 / steps
    g = jnp.asarray(g)

    def step(v, _):
        pm = jnp.pad(jnp.diff(v) / h, (1, 0))  # backward differences (0 at the left edge)
        pp = jnp.pad(jnp.diff(v) / h, (0, 1))  # forward differences (0 at the right edge)
        ham = 0.5 * jnp.maximum(jnp.maximum(pm, 0) ** 2, jnp.minimum(pp, 0) ** 2)
        new = _implicit(grid, v - ds * ham, ds * 0.5 * tau)
        return new, (new, jnp.max(jnp.abs(pm)))

    _, (vs, slopes) = jax.lax.scan(step, g, None, length=steps)
    if float(jnp.max(slopes)) * ds > h:
        raise ConfigError(
            f"the HJB step 1/{steps} is unstable on cells of width {h:.3g}: max |V'| dt / h "
            f"= {float(jnp.max(slopes)) * ds / h:.3g} > 1; use more time steps."
        )
    return jnp.concatenate([vs[::-1], g[None, :]], axis=0)


# ------------------------------------------------------------------ forward FP


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix (n, n): dct(f) = M f, idct(c) = M^T c."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    m = np.sqrt(2.0 / n) * np.cos(np.pi * k * (2 * i + 1) / (2 * n))
    m[0] /= np.sqrt(2.0)
    return m


@eqx.filter_jit
def _controlled_fp(grid: Grid, rho0, g, tau, steps: int):
    """The FP under u* of the terminal cost g: densities at t_k (steps + 1, n), the running
    cost int_0^1 (1/2) int rho |u*|^2 dt (midpoint in time and of the face density), and
    the CFL number max |u| dt / h. The cosine transforms are dense n x n products here
    (one matrix for all the steps' controls, one for the implicit diffusion)."""
    h, dt, n = grid.h[0], 1.0 / steps, grid.cells[0]
    mat = jnp.asarray(_dct_matrix(n), g.dtype)
    lam = _laplacian_eigenvalues(grid).astype(g.dtype)
    g0 = jnp.min(g)
    coef1 = mat @ jnp.exp(-(g - g0) / tau)
    mid = (jnp.arange(steps, dtype=g.dtype) + 0.5) * dt
    hh = (coef1 * jnp.exp(0.5 * tau * (1.0 - mid)[:, None] * lam)) @ mat  # h at midpoints
    controls = tau * jnp.diff(jnp.log(jnp.maximum(hh, TINY)), axis=-1) / h  # (N, n - 1)
    implicit = mat.T @ (mat / (1.0 - dt * 0.5 * tau * lam)[:, None])

    def step(rho, u):
        new = implicit @ (rho + dt * _upwind_divergence(rho, u, h))
        face = 0.25 * (rho[:-1] + rho[1:] + new[:-1] + new[1:])
        return new, (new, 0.5 * jnp.sum(face * u * u) * h * dt)

    _, (rhos, costs) = jax.lax.scan(step, rho0, controls)
    cfl = jnp.max(jnp.abs(controls)) * dt / h
    return jnp.concatenate([rho0[None], rhos], axis=0), jnp.sum(costs), cfl


def control_cost_rate(grid: Grid, rho, u) -> Array:
    """(1/2) int rho |u|^2 with u on the faces and the face density (rho_i + rho_{i+1})/2."""
    return 0.5 * jnp.sum(0.5 * (rho[..., :-1] + rho[..., 1:]) * u * u, axis=-1) * grid.h[0]


@dataclasses.dataclass(frozen=True)
class ControlResult:
    """The solution of the entropic control problem on the grid.

    Attributes:
        times: t_k = k / steps, (N + 1,).
        rho: the controlled marginals rho_t at ``times``, (N + 1, n).
        V: the value function at ``times`` (Cole-Hopf), (N + 1, n).
        u: the optimal control u* = -V' on the faces at ``times``, (N + 1, n - 1).
        g: the terminal cost beta Psi(.; rho_1) of the last sweep, (n,).
        control_cost: E[(1/2) int |u*|^2 dt].
        terminal_cost: beta R(rho_1) = (beta/2) R~(rho_1).
        J: control_cost + terminal_cost.
        residual: max |T(mu) - mu| / max mu at the last sweep (the McKean-Vlasov fixed point).
        sweeps: forward-backward sweeps done.
        cfl: max |u| dt / h of the last sweep (<= 1 for positivity).
        converged: residual <= tol.
    """

    times: np.ndarray
    rho: np.ndarray
    V: np.ndarray
    u: np.ndarray
    g: np.ndarray
    control_cost: float
    terminal_cost: float
    J: float
    residual: float
    sweeps: int
    cfl: float
    converged: bool


def solve_control(
    energy: AbstractGridEnergy,
    grid: Grid,
    beta: float,
    tau: float,
    steps: int,
    *,
    rho0: Float[Array, " n"] | None = None,
    damping: float = 0.5,
    tol: float = 1e-9,
    max_sweeps: int = 300,
) -> ControlResult:
    """The coupled FP (forward) / HJB (backward) system of the module docstring on t in
    [0, 1] with ``steps`` time steps, by damped sweeps on the terminal law mu_1 (starting
    from gamma_tau), each sweep: g = beta Psi(.; mu_1), h by Cole-Hopf, the FP from
    ``rho0`` (default `point_mass` at 0) to T(mu_1); mu_1 <- (1 - damping) mu_1 +
    damping T(mu_1) until max |T(mu) - mu| / max mu <= tol.

    Note:
        The sweeps contract when beta is small against tau (the Gibbs map is then a
        contraction); if they stall, lower ``damping``. A CFL number above 1 means the
        upwind step may lose positivity: use more ``steps``.
    """
    _check_1d(grid)
    _check_positive("beta", beta)
    _check_positive("tau", tau)
    if not 0 < damping <= 1:
        raise ConfigError(f"`damping` must be in (0, 1]; got {damping!r}.")
    if int(steps) < 1:
        raise ConfigError(f"`steps` must be >= 1; got {steps!r}.")
    dtype = energy.confinement.dtype
    rho0 = point_mass(grid).astype(dtype) if rho0 is None else jnp.asarray(rho0, dtype)
    hcell = grid.h[0]
    beta_, tau_ = jnp.asarray(beta, dtype), jnp.asarray(tau, dtype)

    def terminal(mu):
        return beta_ * energy.risk_variation(mu * hcell)

    mu = gaussian_cells(grid, tau).astype(dtype)
    res, sweeps = math.inf, 0
    while sweeps < max_sweeps:
        rhos, _, _ = _controlled_fp(grid, rho0, terminal(mu), tau_, int(steps))
        new = rhos[-1]
        res = float(jnp.max(jnp.abs(new - mu)) / jnp.max(mu))
        sweeps += 1
        if res <= tol:
            break
        mu = (1.0 - damping) * mu + damping * new
    g = terminal(mu)
    rhos, cost, cfl = _controlled_fp(grid, rho0, g, tau_, int(steps))
    times = np.linspace(0.0, 1.0, int(steps) + 1)
    ch = cole_hopf(grid, g, tau, times)
    term = float(beta * energy.risk(rhos[-1] * hcell))
    return ControlResult(
        times=times,
        rho=np.asarray(rhos),
        V=np.asarray(ch["V"]),
        u=np.asarray(ch["u"]),
        g=np.asarray(g),
        control_cost=float(cost),
        terminal_cost=term,
        J=float(cost) + term,
        residual=res,
        sweeps=sweeps,
        cfl=float(cfl),
        converged=res <= tol,
    )


# ------------------------------------------------------------------ greedy flow


def greedy_mckean_vlasov(
    energy: AbstractGridEnergy,
    grid: Grid,
    beta: float,
    tau: float,
    steps: int,
    *,
    rho0: Float[Array, " n"] | None = None,
) -> tuple[np.ndarray, float]:
    """d rho/dt = (rho beta Psi'[rho])' + (tau/2) rho'' on [0, 1] (``steps`` steps, upwind
    + implicit diffusion, `mfnn.pde.solver.FokkerPlanck`) from ``rho0`` (default
    `point_mass` at 0). Returns the densities at t_k = k/steps, (steps + 1, n), and the
    largest CFL number met."""
    _check_1d(grid)
    _check_positive("beta", beta)
    _check_positive("tau", tau)
    dtype = energy.confinement.dtype
    zero = eqx.tree_at(lambda e: e.confinement, energy, jnp.zeros_like(energy.confinement))
    fp = FokkerPlanck(grid, ScaledEnergy(zero, beta), 0.5 * tau, 0.0, "upwind", "imex")
    rho0 = point_mass(grid).astype(dtype) if rho0 is None else jnp.asarray(rho0, dtype)
    return _greedy_loop(fp, rho0, int(steps))


def _greedy_loop(fp: FokkerPlanck, rho0, steps: int):
    dt = 1.0 / steps

    @eqx.filter_jit
    def run(fp, rho0):
        def step(rho, _):
            new = fp.step(rho, dt)
            return new, (new, fp.cfl(rho, dt))

        _, (rhos, cfl) = jax.lax.scan(step, rho0, None, length=steps)
        return jnp.concatenate([rho0[None], rhos], axis=0), jnp.max(cfl)

    rhos, cfl = run(fp, rho0)
    return np.asarray(rhos), float(cfl)


def greedy_drift(energy: AbstractGridEnergy, grid: Grid, beta: float, rho) -> np.ndarray:
    """-beta (Psi_{i+1} - Psi_i) / h on the faces, Psi = Psi(.; rho) (rho of shape (n,) or
    (T, n); returns (n - 1,) or (T, n - 1)): the drift of the greedy flow."""
    rho = jnp.asarray(rho)
    flat = rho.reshape(-1, rho.shape[-1])
    psi = jax.vmap(lambda r: energy.risk_variation(r * grid.h[0]))(flat)
    out = -beta * jnp.diff(psi, axis=-1) / grid.h[0]
    return np.asarray(out.reshape(*rho.shape[:-1], -1))


# ------------------------------------------------------------------ Schroedinger bridge


@dataclasses.dataclass(frozen=True)
class BridgeResult:
    """The Schroedinger bridge on the grid: ``times`` (T,), ``rho`` the marginals at them
    (T, n), ``coupling`` pi (n, n) as masses, ``cost`` = tau KL(pi || R_01), ``iterations``
    of IPF, ``marginal_error`` (L1 distance of pi's marginals to rho_0 and rho_1, the larger)."""

    times: np.ndarray
    rho: np.ndarray
    coupling: np.ndarray
    cost: float
    iterations: int
    marginal_error: float


def _log_kernel(w, var):
    """log of the row-normalised Gaussian kernel exp(-(w_j - w_i)^2 / (2 var)) on the cells."""
    d2 = (w[None, :] - w[:, None]) ** 2
    lk = -d2 / (2.0 * var)
    return lk - logsumexp(lk, axis=1, keepdims=True)


@jax.jit
def _bridge_marginal(w, lphi, lb, tau, t):
    """The bridge's marginal masses at 0 < t < 1: pi / K_1 = (a p0)_x b_y is of rank one,
    so the marginal is phi_t(z) phihat_t(z), phi_t = sum_x a_x p0_x K_t(x, z), phihat_t =
    sum_y K_{1-t}(z, y) b_y, normalised (Chapman-Kolmogorov holds on the cells only up to
    the kernels' normalisation). ``lphi`` = log(a p0), ``lb`` = log b."""
    t = jnp.clip(t, 1e-12, 1 - 1e-12)
    lkt, lks = _log_kernel(w, tau * t), _log_kernel(w, tau * (1 - t))
    m = logsumexp(lphi[:, None] + lkt, axis=0) + logsumexp(lks + lb[None, :], axis=1)
    return jnp.exp(m - logsumexp(m))


def schrodinger_bridge(
    grid: Grid,
    rho0: Float[Array, " n"],
    rho1: Float[Array, " n"],
    tau: float,
    times,
    *,
    tol: float = 1e-12,
    max_iter: int = 2000,
) -> BridgeResult:
    """The Schroedinger bridge from rho0 to rho1 (densities on ``grid``) with reference
    sqrt(tau) B, by IPF (module docstring); marginals at ``times`` in [0, 1]."""
    _check_1d(grid)
    _check_positive("tau", tau)
    w = jnp.asarray(grid.axis(0))
    h = grid.h[0]
    p0 = jnp.asarray(rho0) * h
    p1 = jnp.asarray(rho1) * h
    lp0 = jnp.where(p0 > 0, jnp.log(jnp.maximum(p0, TINY)), -jnp.inf)
    lp1 = jnp.where(p1 > 0, jnp.log(jnp.maximum(p1, TINY)), -jnp.inf)
    lk = _log_kernel(w, tau)  # R_01(i, j) = p0_i K_1(i, j)
    lr = lp0[:, None] + lk

    @jax.jit
    def sweep(lb):
        la = -logsumexp(lk + lb[None, :], axis=1)  # rows: sum_j pi_ij = p0_i
        la = jnp.where(p0 > 0, la, 0.0)
        lb = lp1 - logsumexp(lr + la[:, None], axis=0)  # columns: sum_i pi_ij = p1_j
        lpi = lr + la[:, None] + lb[None, :]
        err = jnp.sum(jnp.abs(jnp.exp(logsumexp(lpi, axis=1)) - p0))
        return lb, lpi, err

    lb = jnp.zeros_like(w)
    err, it = math.inf, 0
    while it < max_iter:
        lb, lpi, err = sweep(lb)
        it += 1
        if float(err) <= tol:
            break
    pi = jnp.exp(lpi)
    err1 = float(jnp.sum(jnp.abs(pi.sum(0) - p1)))
    kl = jnp.sum(jnp.where(pi > 0, pi * (lpi - lr), 0.0))
    la = -logsumexp(lk + lb[None, :], axis=1)
    marg = [_bridge_marginal(w, lp0 + la, lb, tau, float(t)) / h for t in np.asarray(times)]
    marg = [pi.sum(1) / h if t <= 0 else m for t, m in zip(np.asarray(times), marg, strict=True)]
    marg = [pi.sum(0) / h if t >= 1 else m for t, m in zip(np.asarray(times), marg, strict=True)]
    return BridgeResult(
        times=np.asarray(times, float),
        rho=np.asarray(jnp.stack(marg)),
        coupling=np.asarray(pi),
        cost=float(tau * kl),
        iterations=it,
        marginal_error=max(float(err), err1),
    )


def kl_grid(grid: Grid, rho, ref) -> Scalar:
    """KL(rho || ref) = sum_i rho_i log(rho_i / ref_i) h for densities on the grid."""
    rho, ref = jnp.asarray(rho), jnp.asarray(ref)
    r = jnp.where(rho > 0, rho * jnp.log(jnp.maximum(rho, TINY) / jnp.maximum(ref, TINY)), 0.0)
    return jnp.sum(r) * grid.h[0]


def w2_grid(grid: Grid, rho, sigma) -> float:
    """W2 between two densities on the 1-D grid as measures on the cell centres (the
    quantile formula, `mfnn.diagnostics.transport.w2_1d`); round-off negatives (the
    cosine transform of the implicit diffusion leaves ~1e-17) are clipped and the masses
    renormalised."""
    from ..diagnostics.transport import w2_1d

    w = grid.axis(0)
    p, q = (np.clip(np.asarray(r, np.float64), 0, None) for r in (rho, sigma))
    return float(w2_1d(w, w, p / p.sum(), q / q.sum()))
